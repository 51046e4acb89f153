use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use etcd_dr_core::{
    SnapshotId, SnapshotManifest, MANIFEST_FORMAT_VERSION, MIN_MANIFEST_FORMAT_VERSION,
};
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio_util::sync::CancellationToken;

use crate::json_object::put_json;
use crate::{ManifestSigner, ManifestTrust, SnapshotLayout, TransportError, MANIFEST_OBJECT_NAME};

/// What a listing of the store found for one cluster.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Complete snapshots (manifest present and readable), oldest first.
    pub snapshots: Vec<SnapshotManifest>,
    /// Snapshot folders with objects but no manifest: uploads in progress, or left by a crash.
    pub incomplete: Vec<IncompleteSnapshot>,
    /// Manifests that exist but cannot be read.
    pub unreadable: Vec<UnreadableManifest>,
    /// Manifests this reader refuses (unsigned, unknown signer, altered, another cluster, plain
    /// where encryption is required): never used; retention deletes them only once they are
    /// older than every snapshot it keeps.
    pub refused: Vec<RefusedSnapshot>,
}

/// A snapshot whose manifest the reader refuses.
#[derive(Debug, Clone)]
pub struct RefusedSnapshot {
    /// The snapshot id from the folder name.
    pub id: SnapshotId,
    /// Every reason it is refused.
    pub reason: String,
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

/// Lists every snapshot folder of the cluster and reads each manifest; those `trust` refuses
/// are listed apart, in [`Catalog::refused`].
pub async fn list_snapshots(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    trust: &ManifestTrust,
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
        match read_manifest(store, layout, trust, &id).await {
            Ok(manifest) => catalog.snapshots.push(manifest),
            Err(TransportError::Untrusted { reason, .. }) => {
                catalog.refused.push(RefusedSnapshot { id, reason })
            }
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

/// Reads and checks one snapshot's manifest: readable, in its own folder, and trusted.
pub async fn read_manifest(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    trust: &ManifestTrust,
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
        Some(v)
            if (u64::from(MIN_MANIFEST_FORMAT_VERSION)..=u64::from(MANIFEST_FORMAT_VERSION))
                .contains(&v) => {}
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
    trust
        .check(&manifest)
        .map_err(|reason| TransportError::Untrusted {
            id: id.clone(),
            reason,
        })?;
    Ok(manifest)
}

/// Finds the manifest an operator asked for. `latest` is the newest manifest in the store: when
/// the reader refuses it, that is the error (an older snapshot is used only when named).
pub async fn resolve_snapshot(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    trust: &ManifestTrust,
    selector: &SnapshotSelector,
    cancel: &CancellationToken,
) -> Result<SnapshotManifest, TransportError> {
    match selector {
        SnapshotSelector::Id(id) => read_manifest(store, layout, trust, id).await,
        SnapshotSelector::Latest => {
            let mut catalog = list_snapshots(store, layout, trust, cancel).await?;
            let newest_trusted = catalog.snapshots.last().map(|m| m.id.clone());
            if let Some(refused) = catalog.refused.pop() {
                if newest_trusted.as_ref().is_none_or(|id| refused.id > *id) {
                    let fallback = newest_trusted.map_or_else(String::new, |id| {
                        format!(
                            "; the newest snapshot this reader accepts is {id}: name it to use it"
                        )
                    });
                    return Err(TransportError::Untrusted {
                        id: refused.id,
                        reason: format!("{}{fallback}", refused.reason),
                    });
                }
            }
            catalog
                .snapshots
                .pop()
                .ok_or_else(|| TransportError::NoSnapshots {
                    prefix: layout.snapshots_prefix().to_string(),
                })
        }
    }
}

/// Signs a snapshot's manifest with `signer` (unsigned without one, where the configuration
/// allows it) and writes it with a create-only put: the commit point. An existing manifest is
/// never replaced.
pub async fn commit_manifest(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    signer: Option<&ManifestSigner>,
    manifest: &mut SnapshotManifest,
) -> Result<(), TransportError> {
    if let Some(signer) = signer {
        signer.sign(manifest);
    }
    let manifest = &*manifest;
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
