//! The promotion fence and the switchover handshake, as objects beside the snapshots:
//! `<prefix>/<cluster>/promotion.json` and `<prefix>/<cluster>/switchover-request.json`.

use std::sync::Arc;

use etcd_dr_core::{PromotionMarker, SwitchoverRequest};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{SnapshotLayout, TransportError};

/// File name of the promotion marker in the cluster's folder.
pub const PROMOTION_MARKER_NAME: &str = "promotion.json";
/// File name of the switchover request in the cluster's folder.
pub const SWITCHOVER_REQUEST_NAME: &str = "switchover-request.json";

/// The cluster's folder (`<prefix>/<cluster>`), parent of `snapshots/`.
fn cluster_dir(layout: &SnapshotLayout) -> Path {
    let parts: Vec<_> = layout.snapshots_prefix().parts().collect();
    let keep = parts.len().saturating_sub(1);
    Path::from_iter(parts.into_iter().take(keep))
}

/// Where the promotion marker of the cluster lives.
pub fn promotion_marker_path(layout: &SnapshotLayout) -> Path {
    cluster_dir(layout).join(PROMOTION_MARKER_NAME)
}

/// Where the switchover request of the cluster lives.
pub fn switchover_request_path(layout: &SnapshotLayout) -> Path {
    cluster_dir(layout).join(SWITCHOVER_REQUEST_NAME)
}

async fn read_json<T: DeserializeOwned>(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
) -> Result<Option<T>, TransportError> {
    let bytes = match store.get(key).await {
        Ok(object) => object
            .bytes()
            .await
            .map_err(|e| TransportError::store("get", key, e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(TransportError::store("get", key, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| TransportError::BadManifest {
            key: key.to_string(),
            detail: e.to_string(),
        })
}

fn to_json<T: Serialize>(value: &T) -> Result<PutPayload, TransportError> {
    serde_json::to_vec_pretty(value)
        .map(PutPayload::from)
        .map_err(|e| TransportError::Pipeline(format!("serialising JSON: {e}")))
}

/// The promotion marker, if a promotion fenced this cluster's prefix.
pub async fn read_promotion_marker(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
) -> Result<Option<PromotionMarker>, TransportError> {
    read_json(store, &promotion_marker_path(layout)).await
}

/// Writes the promotion marker. Create-only unless `replace` (an operator's `force`): when a
/// marker exists, [`TransportError::Fenced`] names the promotion that wrote it.
pub async fn write_promotion_marker(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    marker: &PromotionMarker,
    replace: bool,
) -> Result<(), TransportError> {
    let key = promotion_marker_path(layout);
    let mode = if replace {
        PutMode::Overwrite
    } else {
        PutMode::Create
    };
    let options = PutOptions {
        mode,
        ..PutOptions::default()
    };
    match store.put_opts(&key, to_json(marker)?, options).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => {
            let existing = read_promotion_marker(store, layout).await.ok().flatten();
            Err(TransportError::Fenced {
                key: key.to_string(),
                promotion_id: existing
                    .map(|m| m.promotion_id)
                    .unwrap_or_else(|| "unknown".into()),
            })
        }
        Err(e) => Err(TransportError::store("put", &key, e)),
    }
}

/// The pending (or answered) switchover request, if any.
pub async fn read_switchover_request(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
) -> Result<Option<SwitchoverRequest>, TransportError> {
    read_json(store, &switchover_request_path(layout)).await
}

/// Writes (or replaces) the switchover request: the secondary asks with it, the primary answers
/// in it.
pub async fn write_switchover_request(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    request: &SwitchoverRequest,
) -> Result<(), TransportError> {
    let key = switchover_request_path(layout);
    store
        .put(&key, to_json(request)?)
        .await
        .map(|_| ())
        .map_err(|e| TransportError::store("put", &key, e))
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
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let layout = SnapshotLayout::new("dr", "prod").unwrap();
        assert_eq!(
            promotion_marker_path(&layout).as_ref(),
            "dr/prod/promotion.json"
        );
        assert!(read_promotion_marker(&store, &layout)
            .await
            .unwrap()
            .is_none());
        write_promotion_marker(&store, &layout, &marker("p1"), false)
            .await
            .unwrap();
        let error = write_promotion_marker(&store, &layout, &marker("p2"), false)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, TransportError::Fenced { promotion_id, .. } if promotion_id == "p1"),
            "{error}"
        );
        write_promotion_marker(&store, &layout, &marker("p3"), true)
            .await
            .unwrap();
        let read = read_promotion_marker(&store, &layout)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.promotion_id, "p3");
    }

    #[tokio::test]
    async fn switchover_requests_are_replaced() {
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
        write_switchover_request(&store, &layout, &request)
            .await
            .unwrap();
        request.final_snapshot = Some(SnapshotId::new(Utc::now(), 9));
        write_switchover_request(&store, &layout, &request)
            .await
            .unwrap();
        let read = read_switchover_request(&store, &layout)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read, request);
    }
}
