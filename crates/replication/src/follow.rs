//! The secondary's view of the chain: each poll lists the segments stored after the last one
//! verified (the newest generation only), reads and chain-verifies them, and remembers where
//! the verified chain ends. Never the whole chain every poll: the first poll of a generation
//! verifies it from its start, later polls only what is new.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use etcd_dr_transport::{Identities, ManifestTrust};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::store::{list_generations, list_segments_after};
use crate::{
    BaseCandidate, ChainLink, ChainReader, GenerationId, ReplicationError, ReplicationLayout,
    SegmentName,
};

/// Where the verified chain of the newest generation ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowedChain {
    /// The newest generation in the store.
    pub generation: Option<GenerationId>,
    /// The end of its verified chain (`None` before its first segment is verified).
    pub verified: Option<ChainLink>,
    /// When the primary observed the newest verified revision.
    pub last_observed: Option<DateTime<Utc>>,
    /// Segments verified since start-up.
    pub verified_segments: u64,
}

/// The newest revision a restore reaches: the chain's end when one of `snapshots` is a base
/// for the newest generation (`base.rs`) at or below the end, else the newest snapshot's.
pub fn restorable_revision<'a>(
    generation: Option<&GenerationId>,
    chain_end: i64,
    snapshots: impl IntoIterator<Item = BaseCandidate<'a>>,
    newest_snapshot: Option<i64>,
) -> Option<i64> {
    let based = generation.is_some_and(|generation| {
        snapshots
            .into_iter()
            .any(|s| s.revision <= chain_end && s.serves(generation, None))
    });
    if based {
        Some(chain_end)
    } else {
        newest_snapshot
    }
}

/// Follows the newest generation's chain, incrementally.
pub struct ChainFollower {
    store: Arc<dyn ObjectStore>,
    layout: ReplicationLayout,
    identities: Identities,
    trust: ManifestTrust,
    /// Segments read per poll at most, so that a long chain verified for the first time shows
    /// progress between polls.
    max_segments_per_poll: usize,
    chain: FollowedChain,
    last_name: Option<SegmentName>,
}

impl ChainFollower {
    /// A follower that has verified nothing yet.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        layout: ReplicationLayout,
        identities: Identities,
        trust: ManifestTrust,
        max_segments_per_poll: usize,
    ) -> Self {
        Self {
            store,
            layout,
            identities,
            trust,
            max_segments_per_poll: max_segments_per_poll.max(1),
            chain: FollowedChain::default(),
            last_name: None,
        }
    }

    /// Where the verified chain stands.
    pub fn chain(&self) -> &FollowedChain {
        &self.chain
    }

    /// Identities to decrypt segments with (re-read by the caller when rotated).
    pub fn set_identities(&mut self, identities: Identities) {
        self.identities = identities;
    }

    /// Lists and verifies what is new. A segment that does not verify stops the poll with its
    /// error; what was verified before it stays verified, and the next poll starts there again.
    pub async fn poll(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<&FollowedChain, ReplicationError> {
        let generations = list_generations(&self.store, &self.layout, cancel).await?;
        let Some(newest) = generations.last() else {
            self.chain.generation = None;
            self.chain.verified = None;
            self.chain.last_observed = None;
            self.last_name = None;
            return Ok(&self.chain);
        };
        if self.chain.generation.as_ref() != Some(newest) {
            tracing::info!(generation = %newest, "following a new replication generation");
            self.chain.generation = Some(newest.clone());
            self.chain.verified = None;
            self.chain.last_observed = None;
            self.last_name = None;
        }
        let mut names = list_segments_after(
            &self.store,
            &self.layout,
            newest,
            self.last_name.as_ref(),
            cancel,
        )
        .await?;
        names.truncate(self.max_segments_per_poll);
        let mut reader = ChainReader::continuing(
            self.store.clone(),
            self.layout.clone(),
            newest.clone(),
            self.identities.clone(),
            self.trust.clone(),
            names.clone(),
            self.chain.verified,
        );
        for name in names {
            let Some((_, segment)) = reader.next_segment(cancel).await? else {
                break;
            };
            self.chain.verified = reader.verified();
            self.chain.last_observed =
                DateTime::from_timestamp_millis(segment.header.last_observed_unix_ms);
            self.chain.verified_segments += 1;
            self.last_name = Some(name);
        }
        Ok(&self.chain)
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;
    use crate::segment::tests::{generation, sample};
    use crate::store::SegmentStore;
    use crate::NO_PREVIOUS_SEGMENT;

    #[test]
    fn a_restore_reaches_the_chain_end_only_with_a_base_of_its_generation() {
        let generation = GenerationId::new(chrono::Utc::now(), 100);
        let name = generation.to_string();
        let named = |revision| BaseCandidate {
            revision,
            created_at: generation.started(),
            generation: Some(&name),
        };
        assert_eq!(
            restorable_revision(Some(&generation), 150, [named(100)], Some(100)),
            Some(150)
        );
        assert_eq!(
            restorable_revision(Some(&generation), 150, [named(120)], Some(120)),
            Some(150)
        );
        // The only snapshot predates the generation: the chain is no use.
        let before = BaseCandidate {
            revision: 90,
            created_at: generation.started() - chrono::TimeDelta::minutes(1),
            generation: None,
        };
        assert_eq!(
            restorable_revision(Some(&generation), 150, [before], Some(90)),
            Some(90)
        );
        // Inside the range but of another history (another generation named).
        let other = BaseCandidate {
            generation: Some("20261201T000000Z-r0000000000000000007"),
            ..named(120)
        };
        assert_eq!(
            restorable_revision(Some(&generation), 150, [other], Some(120)),
            Some(120)
        );
        assert_eq!(restorable_revision(None, 0, [], None), None);
    }

    #[tokio::test]
    async fn verifies_only_what_is_new_and_stops_at_a_broken_link() {
        let sink = SegmentStore {
            store: Arc::new(InMemory::new()),
            layout: ReplicationLayout::new("dr", "prod").unwrap(),
            recipients: None,
            signer: None,
        };
        let cancel = CancellationToken::new();
        let mut follower = ChainFollower::new(
            sink.store.clone(),
            sink.layout.clone(),
            Identities::none(),
            crate::segment_signature::tests::trusting(&[], true),
            2,
        );
        assert_eq!(follower.poll(&cancel).await.unwrap().verified, None);
        let mut previous = NO_PREVIOUS_SEGMENT;
        for first in [11, 14, 17] {
            previous = sink
                .put(&sample(first, 3, previous), &cancel)
                .await
                .unwrap()
                .digest;
        }
        // Two segments per poll at most.
        let chain = follower.poll(&cancel).await.unwrap().clone();
        assert_eq!(chain.generation, Some(generation()));
        assert_eq!(chain.verified.map(|l| l.last_revision), Some(16));
        let chain = follower.poll(&cancel).await.unwrap().clone();
        assert_eq!(chain.verified.map(|l| l.last_revision), Some(19));
        assert_eq!(chain.verified_segments, 3);
        // Nothing new: nothing read again.
        assert_eq!(follower.poll(&cancel).await.unwrap().verified_segments, 3);

        // A segment that does not link to its predecessor is refused; the chain stays at 19.
        sink.put(&sample(20, 2, [7; 32]), &cancel).await.unwrap();
        let error = follower.poll(&cancel).await.unwrap_err().to_string();
        assert!(error.contains("previous-segment digest"), "{error}");
        assert_eq!(follower.chain().verified.map(|l| l.last_revision), Some(19));
    }
}
