//! Capture: one watch over the whole keyspace, events grouped by revision, cut into segments at
//! the first of an age or a size, stored through a bounded queue (backpressure on the watch).
//!
//! Memory bound: one watch message (`max_watch_message_bytes`) plus the segment being built
//! (`max_segment_bytes` plus one revision) plus `upload_queue_segments` encoded segments, plus
//! 8 bytes per lease id seen in the generation.

mod breaks;
mod builder;
mod progress;
mod watch_loop;

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use breaks::GenerationBreak;
pub use progress::CaptureProgress;

use crate::store::{SegmentStore, StoredSegment};
use crate::{ChainLink, GenerationId, ReplicationError};
use builder::PendingSegment;

/// How capture cuts segments and bounds its memory.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Cut a segment this long after its first revision arrived (and, idle, ask etcd for its
    /// revision as often).
    pub max_segment_age: Duration,
    /// Cut a segment once its events reach this many bytes (a revision is never split).
    pub max_segment_bytes: usize,
    /// Largest watch response accepted (etcd-client's decode limit; tonic's default is 4 MiB).
    pub max_watch_message_bytes: usize,
    /// Encoded segments waiting for the store before the watch is paused.
    pub upload_queue_segments: usize,
    /// How long, after cancellation, captured revisions may still take to reach the store.
    pub shutdown_grace: Duration,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        Self {
            max_segment_age: Duration::from_secs(1),
            max_segment_bytes: 8 << 20,
            max_watch_message_bytes: 256 << 20,
            upload_queue_segments: 2,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Where a capture starts: a new generation, or the stored end of one.
#[derive(Debug, Clone)]
pub struct CaptureStart {
    /// The generation to write.
    pub generation: GenerationId,
    /// The stored end of the generation when continuing it; `None` for a new generation.
    pub resume: Option<ChainLink>,
}

/// Captures revisions into `start.generation` until cancelled or the generation breaks.
///
/// Returns `Ok` with the stored end of the chain after a cancellation (what was captured is
/// stored first, within `shutdown_grace`); `GenerationEnded` when the generation cannot
/// continue; other errors (etcd unreachable, store failing) leave the chain continuable from
/// its stored tail.
pub async fn capture_generation(
    client: &etcd_client::Client,
    sink: SegmentStore,
    start: CaptureStart,
    options: &CaptureOptions,
    progress: &watch::Sender<CaptureProgress>,
    cancel: &CancellationToken,
) -> Result<Option<ChainLink>, ReplicationError> {
    let upload_cancel = CancellationToken::new();
    let (segments_tx, segments_rx) = mpsc::channel(options.upload_queue_segments.max(1));
    // Segments are signed where they are cut: the next one's header carries this digest.
    let signer = sink.signer.clone();
    let uploader = tokio::spawn(upload_segments(
        sink,
        segments_rx,
        progress.clone(),
        upload_cancel.clone(),
    ));
    let watched = watch_loop::watch_into_segments(
        client,
        &start,
        options,
        signer,
        progress,
        &segments_tx,
        cancel,
    )
    .await;
    drop(segments_tx);
    // Whatever was captured is stored before returning, within the grace period.
    let grace = tokio::time::sleep(options.shutdown_grace);
    let uploaded = tokio::select! {
        joined = uploader => joined.map_err(|e| ReplicationError::Config(format!("segment uploader panicked: {e}")))?,
        () = grace => {
            upload_cancel.cancel();
            Err(ReplicationError::Cancelled)
        }
    };
    // Nothing stored by this run: the chain still ends where it started.
    let tail = uploaded?.or(start.resume);
    watched.map(|()| tail)
}

async fn upload_segments(
    sink: SegmentStore,
    mut segments: mpsc::Receiver<PendingSegment>,
    progress: watch::Sender<CaptureProgress>,
    cancel: CancellationToken,
) -> Result<Option<ChainLink>, ReplicationError> {
    let mut tail = None;
    while let Some(pending) = segments.recv().await {
        let stored: StoredSegment = sink
            .put_encoded(
                &pending.generation,
                pending.first_revision..=pending.last_revision,
                pending.plain,
                pending.digest,
                &cancel,
            )
            .await?;
        info!(segment = %stored.key, bytes = stored.stored_bytes, "segment stored");
        let link = ChainLink {
            last_revision: pending.last_revision,
            digest: stored.digest,
            cluster_id: pending.cluster_id,
        };
        progress.send_modify(|p| {
            p.stored_up_to(pending.last_revision);
            p.stored_segments += 1;
            p.stored_bytes += stored.stored_bytes;
            p.stored_tail = Some(link);
        });
        tail = Some(link);
    }
    Ok(tail)
}
