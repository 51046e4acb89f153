//! A snapshot before its manifest: whether it is committed yet, and removing what a failed
//! attempt stored.

use std::future::Future;
use std::sync::Arc;

use etcd_dr_core::SnapshotId;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio_util::sync::CancellationToken;

use crate::{AttemptToken, SnapshotLayout, TransportError, MANIFEST_OBJECT_NAME};

/// True when snapshot `id` has a manifest, i.e. is committed.
pub async fn is_committed(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    id: &SnapshotId,
    cancel: &CancellationToken,
) -> Result<bool, TransportError> {
    let key = layout.manifest_path(id);
    match until_cancelled(cancel, store.head(&key)).await? {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(TransportError::store("head", &key, e)),
    }
}

/// Deletes every object a failed snapshot attempt stored in its own folder, and returns how
/// many. A snapshot that has a manifest is committed (perhaps by this very attempt, whose
/// commit's answer was lost): nothing is deleted then; retention removes what no manifest
/// names.
pub async fn delete_uncommitted(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    id: &SnapshotId,
    attempt: &AttemptToken,
    cancel: &CancellationToken,
) -> Result<usize, TransportError> {
    if is_committed(store, layout, id, cancel).await? {
        return Ok(0);
    }
    let folder = layout.attempt_dir(id, attempt);
    let objects: Vec<ObjectMeta> = until_cancelled(cancel, store.list(Some(&folder)).try_collect())
        .await?
        .map_err(|e| TransportError::store("list", &folder, e))?;
    if objects
        .iter()
        .any(|o| o.location.filename() == Some(MANIFEST_OBJECT_NAME))
    {
        return Ok(0);
    }
    let mut deleted = 0;
    for object in objects {
        delete_if_present(store, &object.location, cancel).await?;
        deleted += 1;
    }
    Ok(deleted)
}

async fn delete_if_present(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    cancel: &CancellationToken,
) -> Result<(), TransportError> {
    match until_cancelled(cancel, store.delete(key)).await? {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(TransportError::store("delete", key, e)),
    }
}

/// Runs `operation` unless `cancel` fires first.
async fn until_cancelled<T>(
    cancel: &CancellationToken,
    operation: impl Future<Output = T>,
) -> Result<T, TransportError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(TransportError::Cancelled),
        outcome = operation => Ok(outcome),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use object_store::memory::InMemory;
    use object_store::PutPayload;

    fn id(revision: i64) -> SnapshotId {
        SnapshotId::new(chrono::Utc::now(), revision)
    }

    async fn put(store: &Arc<dyn ObjectStore>, key: &Path) {
        store
            .put(key, PutPayload::from(Bytes::from_static(b"x")))
            .await
            .unwrap();
    }

    async fn keys(store: &Arc<dyn ObjectStore>) -> Vec<String> {
        let mut keys: Vec<String> = store
            .list(None)
            .map_ok(|o| o.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    #[tokio::test]
    async fn an_uncommitted_attempt_is_emptied_and_its_neighbours_kept() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let layout = SnapshotLayout::new("dr", "prod").unwrap();
        let (failed, other) = (id(7), id(8));
        let (attempt, concurrent) = (AttemptToken::random(), AttemptToken::random());
        let in_attempt = |id: &SnapshotId, attempt: &AttemptToken, name: &str| {
            layout.object_path(id, &attempt.object_name(name))
        };
        put(&store, &in_attempt(&failed, &attempt, "etcd.db.zst")).await;
        put(&store, &in_attempt(&failed, &attempt, "nodes/cp1.tar.zst")).await;
        // Another attempt at the same id, and another snapshot: neither is touched.
        put(&store, &in_attempt(&failed, &concurrent, "etcd.db.zst")).await;
        put(&store, &layout.data_path(&other)).await;
        let cancel = CancellationToken::new();
        assert!(!is_committed(&store, &layout, &failed, &cancel)
            .await
            .unwrap());
        let deleted = delete_uncommitted(&store, &layout, &failed, &attempt, &cancel)
            .await
            .unwrap();
        assert_eq!(deleted, 2);
        let mut expected = vec![
            in_attempt(&failed, &concurrent, "etcd.db.zst").to_string(),
            layout.data_path(&other).to_string(),
        ];
        expected.sort();
        assert_eq!(keys(&store).await, expected);
    }

    #[tokio::test]
    async fn a_committed_folder_is_left_whole() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let layout = SnapshotLayout::new("dr", "prod").unwrap();
        let committed = id(9);
        let attempt = AttemptToken::random();
        put(
            &store,
            &layout.object_path(&committed, &attempt.object_name("etcd.db.zst")),
        )
        .await;
        put(&store, &layout.manifest_path(&committed)).await;
        let cancel = CancellationToken::new();
        assert!(is_committed(&store, &layout, &committed, &cancel)
            .await
            .unwrap());
        let deleted = delete_uncommitted(&store, &layout, &committed, &attempt, &cancel)
            .await
            .unwrap();
        assert_eq!(deleted, 0);
        assert_eq!(keys(&store).await.len(), 2);
    }

    #[tokio::test]
    async fn a_cancelled_cleanup_deletes_nothing() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let layout = SnapshotLayout::new("dr", "prod").unwrap();
        let failed = id(10);
        put(&store, &layout.data_path(&failed)).await;
        let cancel = CancellationToken::new();
        cancel.cancel();
        let error = delete_uncommitted(&store, &layout, &failed, &AttemptToken::random(), &cancel)
            .await
            .unwrap_err();
        assert!(matches!(error, TransportError::Cancelled), "{error}");
        assert_eq!(keys(&store).await.len(), 1);
    }
}
