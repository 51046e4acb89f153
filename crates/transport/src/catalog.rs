use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use etcd_dr_core::{SnapshotId, SnapshotManifest, MANIFEST_FORMAT_VERSION};
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio_util::sync::CancellationToken;

use crate::json_object::put_json;
use crate::{SnapshotLayout, TransportError, MANIFEST_OBJECT_NAME};

/// What a listing of the store found for one cluster.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Complete snapshots (manifest present and readable), oldest first.
    pub snapshots: Vec<SnapshotManifest>,
    /// Snapshot folders with objects but no manifest: uploads in progress, or left by a crash.
    pub incomplete: Vec<IncompleteSnapshot>,
    /// Manifests that exist but cannot be read.
    pub unreadable: Vec<UnreadableManifest>,
}

/// Objects of a snapshot that was never committed.
#[derive(Debug, Clone)]
pub struct IncompleteSnapshot {
    /// The snapshot id from the folder name.
    pub id: SnapshotId,
    /// Its objects.
    pub objects: Vec<ObjectMeta>,
    /// When the newest of its objects was written.
    pub last_modified: DateTime<Utc>,
}

/// A manifest that could not be read.
#[derive(Debug, Clone)]
pub struct UnreadableManifest {
    /// The snapshot id from the folder name.
    pub id: SnapshotId,
    /// Why it could not be read.
    pub error: String,
}

impl Catalog {
    /// The newest complete snapshot.
    pub fn newest(&self) -> Option<&SnapshotManifest> {
        self.snapshots.last()
    }
}

/// Which snapshot an operator means: `latest` or an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotSelector {
    /// The newest complete snapshot.
    Latest,
    /// One snapshot by id.
    Id(SnapshotId),
}

impl FromStr for SnapshotSelector {
    type Err = etcd_dr_core::SnapshotIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "latest" {
            Ok(Self::Latest)
        } else {
            text.parse().map(Self::Id)
        }
    }
}

/// Lists every snapshot folder of the cluster and reads each manifest.
pub async fn list_snapshots(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    cancel: &CancellationToken,
) -> Result<Catalog, TransportError> {
    let prefix = layout.snapshots_prefix();
    let listing = async {
        store
            .list(Some(prefix))
            .try_collect::<Vec<ObjectMeta>>()
            .await
            .map_err(|e| TransportError::store("list", prefix, e))
    };
    let objects = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Err(TransportError::Cancelled),
        objects = listing => objects?,
    };

    let mut folders: BTreeMap<SnapshotId, Vec<ObjectMeta>> = BTreeMap::new();
    for object in objects {
        if let Some((id, _)) = layout.parse_key(&object.location) {
            folders.entry(id).or_default().push(object);
        }
    }

    let mut catalog = Catalog::default();
    for (id, objects) in folders {
        let has_manifest = objects
            .iter()
            .any(|o| o.location.filename() == Some(MANIFEST_OBJECT_NAME));
        if !has_manifest {
            let last_modified = objects
                .iter()
                .map(|o| o.last_modified)
                .max()
                .unwrap_or_default();
            catalog.incomplete.push(IncompleteSnapshot {
                id,
                objects,
                last_modified,
            });
            continue;
        }
        if cancel.is_cancelled() {
            return Err(TransportError::Cancelled);
        }
        match read_manifest(store, layout, &id).await {
            Ok(manifest) => catalog.snapshots.push(manifest),
            Err(TransportError::BadManifest { detail, .. }) => catalog
                .unreadable
                .push(UnreadableManifest { id, error: detail }),
            // Deleted between list and read (retention elsewhere): it no longer exists.
            Err(TransportError::SnapshotNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(catalog)
}

/// Reads and checks one snapshot's manifest.
pub async fn read_manifest(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    id: &SnapshotId,
) -> Result<SnapshotManifest, TransportError> {
    let key = layout.manifest_path(id);
    let bytes = match store.get(&key).await {
        Ok(object) => object
            .bytes()
            .await
            .map_err(|e| TransportError::store("get", &key, e))?,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(TransportError::SnapshotNotFound {
                id: id.clone(),
                key: key.to_string(),
            })
        }
        Err(e) => return Err(TransportError::store("get", &key, e)),
    };
    let bad = |detail: String| TransportError::BadManifest {
        key: key.to_string(),
        detail,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let version = value.get("format_version").and_then(|v| v.as_u64());
    match version {
        Some(v) if v == u64::from(MANIFEST_FORMAT_VERSION) => {}
        Some(v) => {
            return Err(bad(format!(
                "format version {v}; this etcd-dr reads version {MANIFEST_FORMAT_VERSION}: upgrade etcd-dr"
            )))
        }
        None => return Err(bad("no format_version".into())),
    }
    let manifest: SnapshotManifest =
        serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    if &manifest.id != id {
        return Err(bad(format!(
            "it describes snapshot {} but sits in the folder of {id}",
            manifest.id
        )));
    }
    Ok(manifest)
}

/// Finds the manifest an operator asked for.
pub async fn resolve_snapshot(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    selector: &SnapshotSelector,
    cancel: &CancellationToken,
) -> Result<SnapshotManifest, TransportError> {
    match selector {
        SnapshotSelector::Id(id) => read_manifest(store, layout, id).await,
        SnapshotSelector::Latest => list_snapshots(store, layout, cancel)
            .await?
            .snapshots
            .pop()
            .ok_or_else(|| TransportError::NoSnapshots {
                prefix: layout.snapshots_prefix().to_string(),
            }),
    }
}

/// Writes a snapshot's manifest with a create-only put: the commit point. An existing manifest
/// is never replaced.
pub async fn commit_manifest(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    manifest: &SnapshotManifest,
) -> Result<(), TransportError> {
    let key = layout.manifest_path(&manifest.id);
    if put_json(store, &key, manifest, false).await? {
        Ok(())
    } else {
        Err(TransportError::AlreadyExists {
            id: manifest.id.clone(),
            key: key.to_string(),
        })
    }
}
