//! Reading a generation's segments in order, each checked against its predecessor: the chain,
//! not a mutable index, is the truth. Every segment read is signed by a trusted key (or the
//! reader allows unsigned ones), so a store writer cannot plant or relink one.

use std::collections::VecDeque;
use std::sync::Arc;

use etcd_dr_transport::{Identities, ManifestTrust};
use object_store::ObjectStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::{list_segments, read_segment};
use crate::{
    GenerationId, ReplicationError, ReplicationLayout, Segment, SegmentDigest, SegmentName,
    NO_PREVIOUS_SEGMENT,
};

/// Where a chain stands after its verified segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainLink {
    /// The last revision verified.
    pub last_revision: i64,
    /// The digest of the segment holding it.
    pub digest: SegmentDigest,
    /// The cluster id the chain records.
    pub cluster_id: u64,
}

/// Segments read ahead of the one handed out: their GETs and decoding overlap, so a store that
/// answers in tens of milliseconds is not read one round trip at a time. At most this many
/// decoded segments wait (each about the cut size, 8 MiB by default, unless one revision is
/// larger). They are checked against the chain in order, when handed out.
const READ_AHEAD: usize = 8;

/// A segment being read (fetched, decrypted, decompressed, decoded, signature checked).
type SegmentRead = JoinHandle<Result<(Segment, SegmentDigest), ReplicationError>>;

/// Yields a generation's segments oldest first, verified against each other.
pub struct ChainReader {
    store: Arc<dyn ObjectStore>,
    layout: ReplicationLayout,
    generation: GenerationId,
    identities: Identities,
    trust: ManifestTrust,
    names: Vec<SegmentName>,
    next_index: usize,
    verified: Option<ChainLink>,
    /// Reads of `names[next_index..]`, in order.
    ahead: VecDeque<SegmentRead>,
}

impl Drop for ChainReader {
    fn drop(&mut self) {
        self.stop_reading_ahead();
    }
}

impl ChainReader {
    /// Lists the generation's segments (nothing is read yet). Each segment read must satisfy
    /// `trust` (signer, cluster; unsigned only when it allows).
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        layout: ReplicationLayout,
        generation: GenerationId,
        identities: Identities,
        trust: ManifestTrust,
        cancel: &CancellationToken,
    ) -> Result<Self, ReplicationError> {
        let names = list_segments(&store, &layout, &generation, cancel).await?;
        Ok(Self {
            store,
            layout,
            generation,
            identities,
            trust,
            names,
            next_index: 0,
            verified: None,
            ahead: VecDeque::new(),
        })
    }

    /// Continues a chain already verified up to `verified` with the segments `names` (listed
    /// after it, oldest first): each is checked against its predecessor as by [`open`](Self::open).
    pub fn continuing(
        store: Arc<dyn ObjectStore>,
        layout: ReplicationLayout,
        generation: GenerationId,
        identities: Identities,
        trust: ManifestTrust,
        names: Vec<SegmentName>,
        verified: Option<ChainLink>,
    ) -> Self {
        Self {
            store,
            layout,
            generation,
            identities,
            trust,
            names,
            next_index: 0,
            verified,
            ahead: VecDeque::new(),
        }
    }

    /// The generation.
    pub fn generation(&self) -> &GenerationId {
        &self.generation
    }

    /// The segment names listed, oldest first.
    pub fn names(&self) -> &[SegmentName] {
        &self.names
    }

    /// The newest revision the listing claims (unverified until read).
    pub fn listed_last_revision(&self) -> Option<i64> {
        self.names.last().map(|name| name.last_revision)
    }

    /// Where the verified part of the chain ends (`None` before the first segment).
    pub fn verified(&self) -> Option<ChainLink> {
        self.verified
    }

    /// Reads and verifies the next segment; `None` after the last one. Returns its key too.
    pub async fn next_segment(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<Option<(String, Segment)>, ReplicationError> {
        let Some(name) = self.names.get(self.next_index) else {
            return Ok(None);
        };
        let key = self.layout.segment_path(&self.generation, name).to_string();
        self.read_ahead(cancel);
        let read = self
            .ahead
            .front_mut()
            .expect("the next segment is being read");
        let read = tokio::select! {
            read = read => read,
            () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
        };
        self.ahead.pop_front();
        let read = read
            .map_err(|e| ReplicationError::corrupt(&key, format!("reading task: {e}")))
            .and_then(|read| read);
        let (segment, digest) = match read {
            Ok(read) => read,
            Err(error) => {
                // A later call reads this segment again rather than the one after it.
                self.stop_reading_ahead();
                return Err(error);
            }
        };
        let header = &segment.header;
        let broken = |detail: String| ReplicationError::ChainBroken {
            generation: self.generation.to_string(),
            segment: key.clone(),
            detail,
        };
        if header.generation != self.generation {
            return Err(broken(format!(
                "it belongs to generation {}",
                header.generation
            )));
        }
        let (expected_first, expected_previous) = match self.verified {
            None => (self.generation.base_revision() + 1, NO_PREVIOUS_SEGMENT),
            Some(link) => {
                if header.cluster_id != link.cluster_id {
                    return Err(broken(format!(
                        "cluster id {:x} where the chain has {:x}",
                        header.cluster_id, link.cluster_id
                    )));
                }
                (link.last_revision + 1, link.digest)
            }
        };
        if header.first_revision != expected_first {
            return Err(broken(format!(
                "it starts at revision {}, the chain continues at {expected_first} (a missing segment)",
                header.first_revision
            )));
        }
        if header.previous_digest != expected_previous {
            return Err(broken(
                "its previous-segment digest does not match the segment before it".into(),
            ));
        }
        self.verified = Some(ChainLink {
            last_revision: header.last_revision,
            digest,
            cluster_id: header.cluster_id,
        });
        self.next_index += 1;
        Ok(Some((key, segment)))
    }

    /// Starts reading the next segments not being read yet, up to [`READ_AHEAD`].
    fn read_ahead(&mut self, cancel: &CancellationToken) {
        while self.ahead.len() < READ_AHEAD {
            let Some(name) = self.names.get(self.next_index + self.ahead.len()) else {
                break;
            };
            let path = self.layout.segment_path(&self.generation, name);
            let (store, identities, trust, cancel) = (
                self.store.clone(),
                self.identities.clone(),
                self.trust.clone(),
                cancel.clone(),
            );
            self.ahead.push_back(tokio::spawn(async move {
                read_segment(&store, &path, &identities, &trust, &cancel).await
            }));
        }
    }

    fn stop_reading_ahead(&mut self) {
        for read in self.ahead.drain(..) {
            read.abort();
        }
    }
}

/// The end of a generation as stored (its newest segment, read and checked on its own), to
/// continue the chain after a restart. `None` when the generation holds no segment. The
/// segment must satisfy `trust`: a capture never continues a chain from a planted tail.
pub async fn read_chain_tail(
    store: &Arc<dyn ObjectStore>,
    layout: &ReplicationLayout,
    generation: &GenerationId,
    identities: &Identities,
    trust: &ManifestTrust,
    cancel: &CancellationToken,
) -> Result<Option<ChainLink>, ReplicationError> {
    let names = list_segments(store, layout, generation, cancel).await?;
    let Some(last) = names.last() else {
        return Ok(None);
    };
    let path = layout.segment_path(generation, last);
    let (segment, digest) = read_segment(store, &path, identities, trust, cancel).await?;
    Ok(Some(ChainLink {
        last_revision: segment.header.last_revision,
        digest,
        cluster_id: segment.header.cluster_id,
    }))
}

#[cfg(test)]
mod tests;
