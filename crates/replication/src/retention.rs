//! Segment retention: a generation is removed once no kept full snapshot is a base for any
//! revision it holds (`base.rs`: of its history, at or below its last revision), since nothing
//! can then replay it; the newest generation (the one being written) is always kept.

use std::sync::Arc;

use etcd_dr_core::SnapshotManifest;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio_util::sync::CancellationToken;

use crate::base::with_next;
use crate::store::{list_generations, list_segments};
use crate::{BaseCandidate, GenerationId, ReplicationError, ReplicationLayout};

/// The generations to remove, given each one's newest listed revision (oldest generation
/// first) and the full snapshots kept.
pub fn plan_generation_removal(
    generations: &[(GenerationId, i64)],
    kept: &[BaseCandidate<'_>],
) -> Vec<GenerationId> {
    let ids: Vec<GenerationId> = generations.iter().map(|(g, _)| g.clone()).collect();
    let Some((_, older)) = generations.split_last() else {
        return Vec::new();
    };
    older
        .iter()
        .zip(with_next(&ids))
        .filter(|((_, last_revision), (generation, next))| {
            !kept.iter().any(|snapshot| {
                snapshot.revision <= *last_revision && snapshot.serves(generation, *next)
            })
        })
        .map(|((generation, _), _)| generation.clone())
        .collect()
}

/// Removes the generations that no kept full snapshot (`kept`) can be a base for. Each
/// generation's segments go newest first, so that one cut short is still a valid (shorter)
/// chain. Returns what was removed.
pub async fn prune_generations(
    store: &Arc<dyn ObjectStore>,
    layout: &ReplicationLayout,
    kept: &[SnapshotManifest],
    cancel: &CancellationToken,
) -> Result<Vec<GenerationId>, ReplicationError> {
    let generations = list_generations(store, layout, cancel).await?;
    let mut reaches = Vec::with_capacity(generations.len());
    let mut names_of = Vec::with_capacity(generations.len());
    for generation in generations {
        let names = list_segments(store, layout, &generation, cancel).await?;
        let last = names
            .last()
            .map_or(generation.base_revision(), |name| name.last_revision);
        reaches.push((generation.clone(), last));
        names_of.push((generation, names));
    }
    let kept: Vec<BaseCandidate<'_>> = kept.iter().map(BaseCandidate::from).collect();
    let removed = plan_generation_removal(&reaches, &kept);
    for (generation, names) in names_of {
        if !removed.contains(&generation) {
            continue;
        }
        tracing::info!(%generation, segments = names.len(), "removing a replication generation no kept snapshot is a base for");
        for name in names.iter().rev() {
            let path = layout.segment_path(&generation, name);
            let delete = store.delete(&path);
            tokio::select! {
                result = delete => match result {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(source) => return Err(ReplicationError::store("delete", &path, source)),
                },
                () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_removed_generation_is_listed_no_more() {
        use crate::segment::tests::sample;
        use crate::store::SegmentStore;
        let dir = tempfile::tempdir().unwrap();
        let sink = SegmentStore {
            store: Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap(),
            ),
            layout: ReplicationLayout::new("dr", "prod").unwrap(),
            recipients: None,
            signer: None,
        };
        let cancel = CancellationToken::new();
        let old = sink
            .put(&sample(11, 3, crate::NO_PREVIOUS_SEGMENT), &cancel)
            .await
            .unwrap();
        // Started a day after the sample's generation.
        let newer_generation = GenerationId::new("2026-12-02T12:00:00Z".parse().unwrap(), 500);
        let newer = crate::Segment::new(
            42,
            newer_generation.clone(),
            crate::NO_PREVIOUS_SEGMENT,
            Vec::new(),
            vec![crate::RevisionEvents {
                revision: 501,
                observed_unix_ms: 1_764_590_400_000,
                events: vec![crate::segment::tests::delete(501, "k")],
            }],
        )
        .unwrap();
        sink.put(&newer, &cancel).await.unwrap();
        // A kept snapshot named for the newer generation only.
        let mut kept = crate::base::tests::manifest(500, "2026-12-02T11:59:00Z");
        kept.etcd.replication_generation = Some(newer_generation.to_string());
        let removed = prune_generations(&sink.store, &sink.layout, &[kept], &cancel)
            .await
            .unwrap();
        assert_eq!(removed.len(), 1, "{}", old.key);
        // The local directory stays behind, empty: it is no generation.
        assert_eq!(
            list_generations(&sink.store, &sink.layout, &cancel)
                .await
                .unwrap(),
            [newer_generation]
        );
    }

    fn generation(base: i64) -> GenerationId {
        GenerationId::new(
            chrono::DateTime::from_timestamp(1_764_590_400 + base, 0).unwrap(),
            base,
        )
    }

    #[test]
    fn removes_only_generations_no_kept_snapshot_is_a_base_for() {
        let generations = [
            (generation(10), 99),
            (generation(100), 250),
            (generation(251), 400),
        ];
        let names: Vec<String> = generations.iter().map(|(g, _)| g.to_string()).collect();
        let named = |revision, index: usize| BaseCandidate {
            revision,
            created_at: generations[index].0.started(),
            generation: Some(&names[index]),
        };
        // Kept: a base of the second generation only.
        assert_eq!(
            plan_generation_removal(&generations, &[named(200, 1)]),
            [generation(10)]
        );
        // A kept base of the first generation at its last revision keeps it.
        assert!(plan_generation_removal(&generations, &[named(99, 0), named(200, 1)]).is_empty());
        // Named for the first generation but above where its chain ends: replays nothing.
        assert_eq!(
            plan_generation_removal(&generations, &[named(120, 0), named(200, 1)]),
            [generation(10)]
        );
        // An unnamed snapshot started while the second generation was the newest.
        let unnamed = BaseCandidate {
            revision: 150,
            created_at: generations[1].0.started() + chrono::TimeDelta::seconds(5),
            generation: None,
        };
        assert_eq!(
            plan_generation_removal(&generations, &[unnamed]),
            [generation(10)]
        );
        // The newest generation is kept whatever the snapshots say.
        assert_eq!(
            plan_generation_removal(&generations, &[]),
            [generation(10), generation(100)]
        );
        assert!(plan_generation_removal(&[], &[]).is_empty());
    }
}
