//! Segment retention: a generation is removed once it is wholly older than the oldest full
//! snapshot kept (no kept snapshot can be a base for any revision it holds); the newest
//! generation (the one being written) is always kept, and so is every segment newer than the
//! oldest kept snapshot.

use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt};
use tokio_util::sync::CancellationToken;

use crate::store::{list_generations, list_segments};
use crate::{GenerationId, ReplicationError, ReplicationLayout};

/// The generations to remove, given each one's newest listed revision (oldest generation
/// first) and the revision of the oldest full snapshot kept.
pub fn plan_generation_removal(
    generations: &[(GenerationId, i64)],
    oldest_kept_snapshot_revision: i64,
) -> Vec<GenerationId> {
    let Some((_, older)) = generations.split_last() else {
        return Vec::new();
    };
    older
        .iter()
        .filter(|(_, last_revision)| *last_revision < oldest_kept_snapshot_revision)
        .map(|(generation, _)| generation.clone())
        .collect()
}

/// Removes the generations wholly older than the oldest kept full snapshot (at
/// `oldest_kept_snapshot_revision`). Each generation's segments go newest first, so that one
/// cut short is still a valid (shorter) chain. Returns what was removed.
pub async fn prune_generations(
    store: &Arc<dyn ObjectStore>,
    layout: &ReplicationLayout,
    oldest_kept_snapshot_revision: i64,
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
    let removed = plan_generation_removal(&reaches, oldest_kept_snapshot_revision);
    for (generation, names) in names_of {
        if !removed.contains(&generation) {
            continue;
        }
        tracing::info!(%generation, segments = names.len(), oldest_kept_snapshot_revision, "removing a replication generation older than every kept snapshot");
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
        let removed = prune_generations(&sink.store, &sink.layout, 100, &cancel)
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
    fn removes_only_generations_wholly_older_than_the_oldest_kept_snapshot() {
        let generations = [
            (generation(10), 99),
            (generation(100), 250),
            (generation(251), 400),
        ];
        // Oldest kept snapshot at 200: the first generation ends before it.
        assert_eq!(plan_generation_removal(&generations, 200), [generation(10)]);
        // A kept snapshot at 99 is a base for revision 99 of the first generation.
        assert!(plan_generation_removal(&generations, 99).is_empty());
        // The newest generation is kept whatever the snapshots say.
        assert_eq!(
            plan_generation_removal(&generations, 1_000),
            [generation(10), generation(100)]
        );
        assert!(plan_generation_removal(&[], 5).is_empty());
    }
}
