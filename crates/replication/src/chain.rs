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
mod tests {
    use std::time::Duration;

    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    use super::*;
    use crate::segment::tests::{generation, sample};
    use crate::segment_signature::tests::{test_signer, trusting};
    use crate::store::SegmentStore;

    /// A chain of three segments signed by the key `trust()` trusts.
    async fn stored_chain() -> (SegmentStore, Vec<Segment>) {
        let sink = SegmentStore {
            store: Arc::new(InMemory::new()),
            layout: ReplicationLayout::new("dr", "prod").unwrap(),
            recipients: None,
            signer: Some(test_signer(1)),
        };
        let cancel = CancellationToken::new();
        let mut previous = NO_PREVIOUS_SEGMENT;
        let mut segments = Vec::new();
        for first in [11, 14, 17] {
            let segment = sample(first, 3, previous);
            previous = sink.put(&segment, &cancel).await.unwrap().digest;
            segments.push(segment);
        }
        (sink, segments)
    }

    fn trust() -> ManifestTrust {
        trusting(&[1], false)
    }

    /// Where `stored_chain` put the (plain) segment of revisions `first..=last`.
    fn stored_key(sink: &SegmentStore, first: i64, last: i64) -> object_store::path::Path {
        let name = SegmentName {
            first_revision: first,
            last_revision: last,
            encrypted: false,
        };
        sink.layout.segment_path(&generation(), &name)
    }

    async fn read_all(sink: &SegmentStore) -> Result<Vec<Segment>, ReplicationError> {
        read_all_trusting(sink, trust()).await
    }

    async fn read_all_trusting(
        sink: &SegmentStore,
        trust: ManifestTrust,
    ) -> Result<Vec<Segment>, ReplicationError> {
        let cancel = CancellationToken::new();
        let mut reader = ChainReader::open(
            sink.store.clone(),
            sink.layout.clone(),
            generation(),
            Identities::none(),
            trust,
            &cancel,
        )
        .await?;
        let mut out = Vec::new();
        while let Some((_, segment)) = reader.next_segment(&cancel).await? {
            out.push(segment);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_stored_chain_reads_back_in_order() {
        let (sink, segments) = stored_chain().await;
        let read = read_all(&sink).await.unwrap();
        let headers = |segments: &[Segment]| -> Vec<(i64, i64, SegmentDigest)> {
            segments
                .iter()
                .map(|s| {
                    let h = &s.header;
                    (h.first_revision, h.last_revision, h.previous_digest)
                })
                .collect()
        };
        assert_eq!(headers(&read), headers(&segments));
        for (read, written) in read.iter().zip(&segments) {
            assert_eq!(read.revisions, written.revisions);
            assert_eq!(read.header.extension.len(), 97, "signed");
        }
        let tail = read_chain_tail(
            &sink.store,
            &sink.layout,
            &generation(),
            &Identities::none(),
            &trust(),
            &CancellationToken::new(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(tail.last_revision, 19);
    }

    #[tokio::test]
    async fn the_next_segments_are_fetched_while_one_is_handed_out() {
        use etcd_dr_transport::fault_store::{Call, Fault, FaultStore};
        let (sink, _) = stored_chain().await;
        let slow = FaultStore::new(sink.store.clone());
        for nth in 1..=3 {
            slow.arm(Call::Get, nth, Fault::Delay(Duration::from_millis(300)));
        }
        let cancel = CancellationToken::new();
        let mut reader = ChainReader::open(
            Arc::new(slow.clone()),
            sink.layout.clone(),
            generation(),
            Identities::none(),
            trust(),
            &cancel,
        )
        .await
        .unwrap();
        let (_, first) = reader.next_segment(&cancel).await.unwrap().unwrap();
        assert_eq!(first.header.first_revision, 11);
        // The two after it were requested before the first came back, not after.
        assert_eq!(slow.count(Call::Get), 3);
        let mut rest = Vec::new();
        while let Some((_, segment)) = reader.next_segment(&cancel).await.unwrap() {
            rest.push(segment.header.first_revision);
        }
        assert_eq!(rest, [14, 17]);
        assert_eq!(slow.count(Call::Get), 3, "each segment is read once");
    }

    #[tokio::test]
    async fn a_retried_put_meets_its_own_object_and_a_different_one_conflicts() {
        let (sink, segments) = stored_chain().await;
        let cancel = CancellationToken::new();
        sink.put(&segments[1], &cancel).await.unwrap();
        let mut other = segments[1].clone();
        other.revisions[0].observed_unix_ms += 1;
        other.header.first_observed_unix_ms += 1;
        let error = sink.put(&other, &cancel).await.unwrap_err();
        assert!(
            matches!(error, ReplicationError::SegmentConflict { .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_missing_segment_breaks_the_chain() {
        let (sink, _) = stored_chain().await;
        let middle = stored_key(&sink, 14, 16);
        sink.store.delete(&middle).await.unwrap();
        let error = read_all(&sink).await.unwrap_err().to_string();
        assert!(error.contains("a missing segment"), "{error}");
        assert!(error.contains("0000000000000000017-"), "{error}");
    }

    #[tokio::test]
    async fn a_segment_from_another_chain_breaks_it() {
        let (sink, segments) = stored_chain().await;
        let cancel = CancellationToken::new();
        let last = stored_key(&sink, 17, 19);
        sink.store.delete(&last).await.unwrap();
        // Same revisions, but linked to a different predecessor (signed by the producer's
        // key: a bug, not an attack, since a store writer cannot sign).
        let forged = sample(17, 3, [1; 32]);
        assert_ne!(forged, segments[2]);
        sink.put(&forged, &cancel).await.unwrap();
        let error = read_all(&sink).await.unwrap_err().to_string();
        assert!(error.contains("previous-segment digest"), "{error}");
    }

    #[tokio::test]
    async fn a_planted_segment_is_refused_unless_signed_by_a_trusted_key() {
        let (sink, segments) = stored_chain().await;
        let cancel = CancellationToken::new();
        let last = stored_key(&sink, 17, 19);
        // A store writer replaces the newest segment with one that links correctly, unsigned
        // and then signed by a key of its own.
        let previous = segments[1].encode_signed(&test_signer(1)).1;
        for (planter, expected) in [
            (None, "is not signed"),
            (Some(test_signer(2)), "not among signing.trusted_keys"),
        ] {
            sink.store.delete(&last).await.unwrap();
            let planting = SegmentStore {
                signer: planter,
                ..sink.clone()
            };
            planting
                .put(&sample(17, 3, previous), &cancel)
                .await
                .unwrap();
            let error = read_all(&sink).await.unwrap_err();
            assert!(
                matches!(&error, ReplicationError::UntrustedSegment { segment, .. } if segment.ends_with("0000000000000000017-0000000000000000019.seg.zst")),
                "{error}"
            );
            assert!(error.to_string().contains(expected), "{error}");
            let tail = read_chain_tail(
                &sink.store,
                &sink.layout,
                &generation(),
                &Identities::none(),
                &trust(),
                &cancel,
            )
            .await;
            assert!(tail.is_err(), "a capture must not continue a planted tail");
        }
        // Rotation: a reader trusting both keys reads the chain; allow_unsigned alone does not
        // make an unknown signer trusted.
        assert_eq!(
            read_all_trusting(&sink, trusting(&[1, 2], false))
                .await
                .unwrap()
                .len(),
            3
        );
        let error = read_all_trusting(&sink, trusting(&[1], true))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("not among"), "{error}");
    }

    #[tokio::test]
    async fn unsigned_chains_are_read_only_where_allowed() {
        let (signed, _) = stored_chain().await;
        let sink = SegmentStore {
            store: Arc::new(InMemory::new()),
            signer: None,
            ..signed
        };
        let cancel = CancellationToken::new();
        let mut previous = NO_PREVIOUS_SEGMENT;
        for first in [11, 14] {
            previous = sink
                .put(&sample(first, 3, previous), &cancel)
                .await
                .unwrap()
                .digest;
        }
        let error = read_all(&sink).await.unwrap_err().to_string();
        assert!(
            error.contains("is not signed (signing.allow_unsigned is off)"),
            "{error}"
        );
        assert_eq!(
            read_all_trusting(&sink, trusting(&[], true))
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            read_all_trusting(&sink, trusting(&[1], true))
                .await
                .unwrap()
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn a_corrupt_object_is_named() {
        let (sink, _) = stored_chain().await;
        let first = stored_key(&sink, 11, 13);
        let stored = sink.store.get(&first).await.unwrap().bytes().await.unwrap();
        let mut plain = zstd::decode_all(&stored[..]).unwrap();
        let middle = plain.len() / 2;
        plain[middle] ^= 1;
        let altered = zstd::encode_all(&plain[..], 3).unwrap();
        sink.store.put(&first, altered.into()).await.unwrap();
        let error = read_all(&sink).await.unwrap_err().to_string();
        assert!(
            error.contains("0000000000000000011-0000000000000000013.seg.zst` is corrupt"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn encrypted_segments_read_back_only_with_the_identity() {
        let (identity_file, recipient) = etcd_dr_transport::generate_identity();
        let dir = tempfile::tempdir().unwrap();
        let identity_path = dir.path().join("id.txt");
        std::fs::write(&identity_path, identity_file).unwrap();
        let sink = SegmentStore {
            store: Arc::new(InMemory::new()),
            layout: ReplicationLayout::new("dr", "prod").unwrap(),
            recipients: Some(etcd_dr_transport::Recipients::parse(&[recipient]).unwrap()),
            signer: Some(test_signer(1)),
        };
        let cancel = CancellationToken::new();
        let segment = sample(11, 2, NO_PREVIOUS_SEGMENT);
        let stored = sink.put(&segment, &cancel).await.unwrap();
        assert!(stored.key.ends_with(".seg.zst.age"), "{}", stored.key);
        let path = object_store::path::Path::from(stored.key.as_str());
        let identities = Identities::load(&identity_path).unwrap();
        let (read, digest) = read_segment(&sink.store, &path, &identities, &trust(), &cancel)
            .await
            .unwrap();
        assert_eq!((read.revisions, digest), (segment.revisions, stored.digest));
        let error = read_segment(&sink.store, &path, &Identities::none(), &trust(), &cancel)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("no identity is configured"), "{error}");
    }
}
