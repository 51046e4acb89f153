//! The promotion fence and the switchover handshake, as objects beside the snapshots:
//! `<prefix>/<cluster>/promotion.json` and `<prefix>/<cluster>/switchover-request.json`; and
//! the restore lock `<prefix>/<cluster>/restore-lock.json` that keeps two restores or
//! promotions of one prefix from running at once.

use std::sync::Arc;

use etcd_dr_core::{PromotionMarker, RestoreLock, SwitchoverRequest};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio_util::sync::CancellationToken;

use crate::json_object::{put_json, read_json};
use crate::{SnapshotLayout, TransportError};

/// File name of the promotion marker in the cluster's folder.
pub const PROMOTION_MARKER_NAME: &str = "promotion.json";
/// File name of the switchover request in the cluster's folder.
pub const SWITCHOVER_REQUEST_NAME: &str = "switchover-request.json";

/// File name of the restore lock in the cluster's folder.
pub const RESTORE_LOCK_NAME: &str = "restore-lock.json";

fn cluster_dir(layout: &SnapshotLayout) -> Path {
    layout.cluster_dir()
}

/// Where the promotion marker of the cluster lives.
pub fn promotion_marker_path(layout: &SnapshotLayout) -> Path {
    cluster_dir(layout).join(PROMOTION_MARKER_NAME)
}

/// Where the switchover request of the cluster lives.
pub fn switchover_request_path(layout: &SnapshotLayout) -> Path {
    cluster_dir(layout).join(SWITCHOVER_REQUEST_NAME)
}

/// Where the restore lock of the cluster lives.
pub fn restore_lock_path(layout: &SnapshotLayout) -> Path {
    cluster_dir(layout).join(RESTORE_LOCK_NAME)
}

/// The promotion marker, if a promotion fenced this cluster's prefix.
pub async fn read_promotion_marker(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    cancel: &CancellationToken,
) -> Result<Option<PromotionMarker>, TransportError> {
    read_json(store, &promotion_marker_path(layout), cancel).await
}

/// Writes the promotion marker. Create-only unless `replace` (an operator's `force`): when a
/// marker exists, [`TransportError::Fenced`] names the promotion that wrote it.
pub async fn write_promotion_marker(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    marker: &PromotionMarker,
    replace: bool,
    cancel: &CancellationToken,
) -> Result<(), TransportError> {
    let key = promotion_marker_path(layout);
    if put_json(store, &key, marker, replace, cancel).await? {
        return Ok(());
    }
    let existing = read_promotion_marker(store, layout, cancel)
        .await
        .ok()
        .flatten();
    Err(TransportError::Fenced {
        key: key.to_string(),
        promotion_id: existing
            .map(|m| m.promotion_id)
            .unwrap_or_else(|| "unknown".into()),
    })
}

/// The restore lock, if a restore or promotion holds it (or crashed holding it).
pub async fn read_restore_lock(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    cancel: &CancellationToken,
) -> Result<Option<RestoreLock>, TransportError> {
    read_json(store, &restore_lock_path(layout), cancel).await
}

/// Takes the restore lock with a create-only put; `replace` (an operator's `force`) takes it
/// over from a crashed holder. When it is held, [`TransportError::Locked`] names the holder.
pub async fn acquire_restore_lock(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    lock: &RestoreLock,
    replace: bool,
    cancel: &CancellationToken,
) -> Result<(), TransportError> {
    let key = restore_lock_path(layout);
    if put_json(store, &key, lock, replace, cancel).await? {
        return Ok(());
    }
    let holder = read_restore_lock(store, layout, cancel)
        .await
        .ok()
        .flatten();
    Err(TransportError::Locked {
        key: key.to_string(),
        promotion_id: holder
            .as_ref()
            .map_or_else(|| "unknown".into(), |h| h.promotion_id.clone()),
        mode: holder
            .as_ref()
            .map_or("restore", |h| h.mode.as_str())
            .to_string(),
        requested_by: holder
            .as_ref()
            .map_or_else(|| "unknown".into(), |h| h.requested_by.clone()),
        locked_at: holder.map_or_else(|| "unknown".into(), |h| h.locked_at.to_rfc3339()),
    })
}

/// Deletes the restore lock if `promotion_id` still holds it (a forced run may have taken it
/// over). Returns whether it was deleted.
pub async fn release_restore_lock(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    promotion_id: &str,
    cancel: &CancellationToken,
) -> Result<bool, TransportError> {
    let key = restore_lock_path(layout);
    match read_restore_lock(store, layout, cancel).await? {
        Some(lock) if lock.promotion_id == promotion_id => {}
        _ => return Ok(false),
    }
    let deleted = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(TransportError::Cancelled),
        deleted = store.delete(&key) => deleted,
    };
    match deleted {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
        Err(e) => Err(TransportError::store("delete", &key, e)),
    }
}

/// The pending (or answered) switchover request, if any.
pub async fn read_switchover_request(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    cancel: &CancellationToken,
) -> Result<Option<SwitchoverRequest>, TransportError> {
    read_json(store, &switchover_request_path(layout), cancel).await
}

/// Writes (or replaces) the switchover request: the secondary asks with it, the primary answers
/// in it.
pub async fn write_switchover_request(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    request: &SwitchoverRequest,
    cancel: &CancellationToken,
) -> Result<(), TransportError> {
    put_json(
        store,
        &switchover_request_path(layout),
        request,
        true,
        cancel,
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use etcd_dr_core::{PromotionMode, SnapshotId};
    use object_store::local::LocalFileSystem;

    fn marker(id: &str) -> PromotionMarker {
        PromotionMarker {
            promotion_id: id.into(),
            mode: PromotionMode::Failover,
            snapshot: SnapshotId::new(Utc::now(), 7),
            requested_by: "ops@here".into(),
            fenced_at: Utc::now(),
            replaces: None,
        }
    }

    #[tokio::test]
    async fn the_marker_is_create_only() {
        let cancel = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let layout = SnapshotLayout::new("dr", "prod").unwrap();
        assert_eq!(
            promotion_marker_path(&layout).as_ref(),
            "dr/prod/promotion.json"
        );
        assert!(read_promotion_marker(&store, &layout, &cancel)
            .await
            .unwrap()
            .is_none());
        write_promotion_marker(&store, &layout, &marker("p1"), false, &cancel)
            .await
            .unwrap();
        let error = write_promotion_marker(&store, &layout, &marker("p2"), false, &cancel)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, TransportError::Fenced { promotion_id, .. } if promotion_id == "p1"),
            "{error}"
        );
        write_promotion_marker(&store, &layout, &marker("p3"), true, &cancel)
            .await
            .unwrap();
        let read = read_promotion_marker(&store, &layout, &cancel)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.promotion_id, "p3");
    }

    #[tokio::test]
    async fn the_restore_lock_admits_one_at_a_time() {
        let cancel = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let layout = SnapshotLayout::new("dr", "prod").unwrap();
        assert_eq!(
            restore_lock_path(&layout).as_ref(),
            "dr/prod/restore-lock.json"
        );
        let lock = |id: &str| RestoreLock {
            promotion_id: id.into(),
            mode: PromotionMode::InPlace,
            requested_by: "ops@here".into(),
            locked_at: Utc::now(),
        };
        acquire_restore_lock(&store, &layout, &lock("r1"), false, &cancel)
            .await
            .unwrap();
        let error = acquire_restore_lock(&store, &layout, &lock("r2"), false, &cancel)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, TransportError::Locked { promotion_id, mode, .. } if promotion_id == "r1" && mode == "in-place"),
            "{error}"
        );
        // Only the holder releases it.
        assert!(!release_restore_lock(&store, &layout, "r2", &cancel)
            .await
            .unwrap());
        assert!(read_restore_lock(&store, &layout, &cancel)
            .await
            .unwrap()
            .is_some());
        // A forced run takes it over; the crashed holder's release then leaves it alone.
        acquire_restore_lock(&store, &layout, &lock("r3"), true, &cancel)
            .await
            .unwrap();
        assert!(!release_restore_lock(&store, &layout, "r1", &cancel)
            .await
            .unwrap());
        assert!(release_restore_lock(&store, &layout, "r3", &cancel)
            .await
            .unwrap());
        assert!(read_restore_lock(&store, &layout, &cancel)
            .await
            .unwrap()
            .is_none());
        acquire_restore_lock(&store, &layout, &lock("r4"), false, &cancel)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn switchover_requests_are_replaced() {
        let cancel = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let layout = SnapshotLayout::new("", "prod").unwrap();
        assert_eq!(
            switchover_request_path(&layout).as_ref(),
            "prod/switchover-request.json"
        );
        let mut request = SwitchoverRequest {
            promotion_id: "p1".into(),
            requested_by: "ops@here".into(),
            requested_at: Utc::now(),
            final_snapshot: None,
            error: None,
        };
        write_switchover_request(&store, &layout, &request, &cancel)
            .await
            .unwrap();
        request.final_snapshot = Some(SnapshotId::new(Utc::now(), 9));
        write_switchover_request(&store, &layout, &request, &cancel)
            .await
            .unwrap();
        let read = read_switchover_request(&store, &layout, &cancel)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read, request);
    }

    #[tokio::test]
    async fn a_cancelled_call_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let layout = SnapshotLayout::new("", "prod").unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let error = write_promotion_marker(&store, &layout, &marker("p1"), false, &cancel)
            .await
            .unwrap_err();
        assert!(matches!(error, TransportError::Cancelled), "{error}");
        assert!(matches!(
            read_promotion_marker(&store, &layout, &cancel).await,
            Err(TransportError::Cancelled)
        ));
        assert!(!dir.path().join("prod/promotion.json").exists());
    }
}
