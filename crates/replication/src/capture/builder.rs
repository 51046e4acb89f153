//! The segment being built, and the cut that hands it to the uploader.

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    GenerationId, LeaseRecord, ReplicationError, RevisionEvents, Segment, SegmentDigest,
    SegmentSigner,
};

/// An encoded segment on its way to the store.
pub(super) struct PendingSegment {
    pub generation: GenerationId,
    pub cluster_id: u64,
    pub first_revision: i64,
    pub last_revision: i64,
    pub plain: Vec<u8>,
    pub digest: SegmentDigest,
}

/// The segment being built, and where the chain stands before it.
pub(super) struct SegmentBuilder {
    pub generation: GenerationId,
    /// Signs each segment as it is cut (the next header carries the signed digest).
    pub signer: Option<SegmentSigner>,
    pub cluster_id: Option<u64>,
    pub previous_digest: SegmentDigest,
    pub revisions: Vec<RevisionEvents>,
    pub leases: Vec<LeaseRecord>,
    pub bytes: usize,
    /// When the first revision of this segment arrived; `None` while it is empty.
    pub opened_at: Option<Instant>,
}

impl SegmentBuilder {
    pub fn new(
        generation: GenerationId,
        signer: Option<SegmentSigner>,
        cluster_id: Option<u64>,
        previous: SegmentDigest,
    ) -> Self {
        Self {
            generation,
            signer,
            cluster_id,
            previous_digest: previous,
            revisions: Vec::new(),
            leases: Vec::new(),
            bytes: 0,
            opened_at: None,
        }
    }

    /// Adds one revision (a revision is never split across segments).
    pub fn push(&mut self, revision: RevisionEvents) {
        if self.revisions.is_empty() {
            self.opened_at = Some(Instant::now());
        }
        self.bytes += revision.encoded_len();
        self.revisions.push(revision);
    }

    /// Encodes the segment being built (if any) and sends it to the uploader, waiting while
    /// the queue is full: that wait is the backpressure on the watch.
    pub async fn cut(
        &mut self,
        segments: &mpsc::Sender<PendingSegment>,
        cancel: &CancellationToken,
    ) -> Result<(), ReplicationError> {
        self.opened_at = None;
        if self.revisions.is_empty() {
            return Ok(());
        }
        let revisions = std::mem::take(&mut self.revisions);
        let leases = std::mem::take(&mut self.leases);
        self.bytes = 0;
        let segment = Segment::new(
            self.cluster_id.unwrap_or(0),
            self.generation.clone(),
            self.previous_digest,
            leases,
            revisions,
        )?;
        let (plain, digest) = match &self.signer {
            Some(signer) => segment.encode_signed(signer),
            None => segment.encode(),
        };
        self.previous_digest = digest;
        let pending = PendingSegment {
            generation: self.generation.clone(),
            cluster_id: segment.header.cluster_id,
            first_revision: segment.header.first_revision,
            last_revision: segment.header.last_revision,
            plain,
            digest,
        };
        tokio::select! {
            sent = segments.send(pending) => sent.map_err(|_| ReplicationError::Config("the segment uploader stopped".into())),
            () = cancel.cancelled() => Err(ReplicationError::Cancelled),
        }
    }
}

/// Sleeps until `deadline`; forever without one.
pub(super) async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
