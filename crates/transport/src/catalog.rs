use std::collections::{BTreeMap, HashMap};
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
    /// Complete snapshots (manifest present and readable), oldest first: by etcd revision
    /// within one history of one etcd cluster id, commit time (the store's clock) breaking
    /// ties; histories of a cluster id (etcd restored under the same id: a snapshot naming
    /// `rewound_from_revision` starts one) by their start's commit time; clusters (an etcd
    /// restored into a new cluster id) by their latest commit. A producer's clock never
    /// decides which snapshot is the newest.
    pub snapshots: Vec<SnapshotManifest>,
    /// When the store wrote each snapshot's manifest (its Last-Modified): the commit time by
    /// the store's own clock.
    pub committed_at: BTreeMap<SnapshotId, DateTime<Utc>>,
    /// Snapshot folders with objects but no manifest: uploads in progress, or left by a crash.
    pub incomplete: Vec<IncompleteSnapshot>,
    /// Manifests that exist but cannot be read.
    pub unreadable: Vec<UnreadableManifest>,
    /// Manifests this reader refuses (unsigned, unknown signer, altered, another cluster, plain
    /// where encryption is required, another etcd's without a new generation): never used; retention deletes them only once they are
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
    /// When the store wrote its manifest (its Last-Modified).
    pub committed_at: DateTime<Utc>,
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
    /// When the store wrote it (its Last-Modified).
    pub committed_at: DateTime<Utc>,
}

impl Catalog {
    /// The newest complete snapshot.
    pub fn newest(&self) -> Option<&SnapshotManifest> {
        self.snapshots.last()
    }

    /// When the store committed `manifest` (its Last-Modified), else the producer's own
    /// `completed_at`.
    pub fn commit_time(&self, manifest: &SnapshotManifest) -> DateTime<Utc> {
        self.committed_at
            .get(&manifest.id)
            .copied()
            .unwrap_or(manifest.completed_at)
    }

    /// How far the store's clock was ahead of the producer's when `manifest` was committed
    /// (its Last-Modified minus the manifest's `completed_at`), in seconds: negative when the
    /// producer's clock runs ahead. A few seconds is the commit itself; more is a wrong clock.
    pub fn clock_skew_seconds(&self, manifest: &SnapshotManifest) -> Option<f64> {
        let committed = self.committed_at.get(&manifest.id)?;
        Some((*committed - manifest.completed_at).num_milliseconds() as f64 / 1000.0)
    }

    /// Puts `snapshots` in the documented order (see [`Catalog::snapshots`]).
    pub(crate) fn order(&mut self) {
        let commit: HashMap<SnapshotId, DateTime<Utc>> = self
            .snapshots
            .iter()
            .map(|m| (m.id.clone(), self.commit_time(m)))
            .collect();
        let mut cluster_rank: HashMap<String, DateTime<Utc>> = HashMap::new();
        for manifest in &self.snapshots {
            let at = commit[&manifest.id];
            cluster_rank
                .entry(manifest.etcd.cluster_id.clone())
                .and_modify(|latest| *latest = (*latest).max(at))
                .or_insert(at);
        }
        // Where each new history of a cluster id starts (etcd restored under the same id):
        // the commit times of the snapshots that say so.
        let mut history_starts: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
        for manifest in &self.snapshots {
            if manifest.etcd.rewound_from_revision.is_some() {
                history_starts
                    .entry(manifest.etcd.cluster_id.clone())
                    .or_default()
                    .push(commit[&manifest.id]);
            }
        }
        let history_of = |m: &SnapshotManifest| {
            let at = commit[&m.id];
            history_starts
                .get(m.etcd.cluster_id.as_str())
                .and_then(|starts| starts.iter().filter(|start| **start <= at).max().copied())
        };
        let mut keyed: Vec<_> = std::mem::take(&mut self.snapshots)
            .into_iter()
            .map(|m| {
                let key = (
                    cluster_rank[&m.etcd.cluster_id],
                    m.etcd.cluster_id.clone(),
                    history_of(&m),
                    m.etcd.revision,
                    commit[&m.id],
                    m.id.clone(),
                );
                (key, m)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        self.snapshots = keyed.into_iter().map(|(_, m)| m).collect();
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
        let committed_at = objects
            .iter()
            .find(|o| {
                layout
                    .parse_key(&o.location)
                    .is_some_and(|(_, name)| name == MANIFEST_OBJECT_NAME)
            })
            .map(|o| o.last_modified);
        let Some(committed_at) = committed_at else {
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
        };
        if cancel.is_cancelled() {
            return Err(TransportError::Cancelled);
        }
        match read_manifest(store, layout, trust, &id, cancel).await {
            Ok(manifest) => {
                catalog.committed_at.insert(id, committed_at);
                catalog.snapshots.push(manifest);
            }
            Err(TransportError::Untrusted { reason, .. }) => {
                catalog.refused.push(RefusedSnapshot {
                    id,
                    reason,
                    committed_at,
                })
            }
            Err(TransportError::BadManifest { detail, .. }) => {
                catalog.unreadable.push(UnreadableManifest {
                    id,
                    error: detail,
                    committed_at,
                })
            }
            // Deleted between list and read (retention elsewhere): it no longer exists.
            Err(TransportError::SnapshotNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    catalog.refuse_undeclared_generations();
    catalog.order();
    Ok(catalog)
}

/// Reads and checks one snapshot's manifest: readable, in its own folder, and trusted.
pub async fn read_manifest(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    trust: &ManifestTrust,
    id: &SnapshotId,
    cancel: &CancellationToken,
) -> Result<SnapshotManifest, TransportError> {
    let key = layout.manifest_path(id);
    let get = async { store.get(&key).await?.bytes().await };
    let got = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(TransportError::Cancelled),
        got = get => got,
    };
    let bytes = match got {
        Ok(bytes) => bytes,
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
/// the reader refuses it, that is the error (an older snapshot is used only when named). A
/// named snapshot is checked against the others too (its etcd generation).
pub async fn resolve_snapshot(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    trust: &ManifestTrust,
    selector: &SnapshotSelector,
    cancel: &CancellationToken,
) -> Result<SnapshotManifest, TransportError> {
    match selector {
        SnapshotSelector::Id(id) => {
            let manifest = read_manifest(store, layout, trust, id, cancel).await?;
            let catalog = list_snapshots(store, layout, trust, cancel).await?;
            if let Some(refused) = catalog.refused.iter().find(|r| r.id == *id) {
                return Err(TransportError::Untrusted {
                    id: id.clone(),
                    reason: refused.reason.clone(),
                });
            }
            Ok(manifest)
        }
        SnapshotSelector::Latest => {
            let mut catalog = list_snapshots(store, layout, trust, cancel).await?;
            let newest_commit = catalog.newest().map(|m| catalog.commit_time(m));
            // `latest` never skips an unreadable manifest silently: one written after the
            // newest readable snapshot may well be the newest snapshot.
            if let Some(bad) = catalog
                .unreadable
                .iter()
                .find(|u| newest_commit.is_none_or(|newest| u.committed_at >= newest))
            {
                return Err(TransportError::BadManifest {
                    key: layout.manifest_path(&bad.id).to_string(),
                    detail: format!(
                        "{}; it was written after every readable snapshot, so `latest` cannot be told: repair or delete it, or name a snapshot id",
                        bad.error
                    ),
                });
            }
            // Nor a refused one written after the newest trusted snapshot (the same second: the
            // later id): that is the error.
            let newest_trusted = catalog.newest().map(|m| m.id.clone());
            if let Some(refused) = catalog
                .refused
                .iter()
                .filter(|r| match (newest_commit, &newest_trusted) {
                    (Some(newest), Some(id)) => {
                        r.committed_at > newest || (r.committed_at == newest && r.id > *id)
                    }
                    _ => true,
                })
                .max_by_key(|r| (r.committed_at, r.id.clone()))
            {
                let fallback = newest_trusted.map_or_else(String::new, |id| {
                    format!("; the newest snapshot this reader accepts is {id}: name it to use it")
                });
                return Err(TransportError::Untrusted {
                    id: refused.id.clone(),
                    reason: format!("{}{fallback}", refused.reason),
                });
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
    cancel: &CancellationToken,
) -> Result<(), TransportError> {
    if let Some(signer) = signer {
        signer.sign(manifest);
    }
    let manifest = &*manifest;
    let key = layout.manifest_path(&manifest.id);
    if put_json(store, &key, manifest, false, cancel).await? {
        Ok(())
    } else {
        Err(TransportError::AlreadyExists {
            id: manifest.id.clone(),
            key: key.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn manifest(cluster_id: &str, revision: i64, created_at: DateTime<Utc>) -> SnapshotManifest {
        serde_json::from_value(serde_json::json!({
            "format_version": 1,
            "id": SnapshotId::new(created_at, revision).to_string(),
            "cluster": "prod",
            "etcd": {"cluster_id": cluster_id, "version": "3.5.16", "revision": revision, "raft_index": 1,
                     "raft_term": 1, "source_endpoint": "x", "source_member_id": "1", "members": []},
            "raw": {"size": 1, "sha256": "00"},
            "etcd_sha256": "00",
            "stored": {"name": "etcd.db.zst", "size": 1, "sha256": "00", "compression": {"type": "zstd", "level": 3}},
            "created_at": created_at.to_rfc3339(),
            "completed_at": created_at.to_rfc3339(),
            "duration_seconds": 1.0,
            "producer": {"tool": "t", "host": "h"},
        }))
        .unwrap()
    }

    #[test]
    fn order_goes_by_revision_within_a_cluster_whatever_the_producers_clock() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let hours = |h: i64| now + chrono::Duration::hours(h);
        // A producer 30 days ahead took revision 200; honest ones took 100 before it and 300
        // after it. An older etcd cluster (before a restore) committed long ago.
        let ahead = manifest("c2", 200, hours(24 * 30));
        let before = manifest("c2", 100, hours(-2));
        let after = manifest("c2", 300, hours(-1));
        let old_cluster = manifest("c1", 900, hours(-48));
        let mut catalog = Catalog::default();
        for (manifest, committed) in [
            (&ahead, hours(-1) - chrono::Duration::minutes(30)),
            (&before, hours(-2)),
            (&after, hours(-1)),
            (&old_cluster, hours(-48)),
        ] {
            catalog.committed_at.insert(manifest.id.clone(), committed);
            catalog.snapshots.push(manifest.clone());
        }
        catalog.order();
        let revisions: Vec<i64> = catalog.snapshots.iter().map(|m| m.etcd.revision).collect();
        assert_eq!(revisions, [900, 100, 200, 300]);
        assert_eq!(catalog.newest().unwrap().id, after.id);
        let skew = catalog.clock_skew_seconds(&ahead).unwrap();
        assert!(skew < -29.0 * 86400.0, "{skew}");
    }

    #[test]
    fn a_new_history_of_the_same_cluster_id_orders_after_the_old_one() {
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap();
        let minutes = |m: i64| now + chrono::Duration::minutes(m);
        // The old history reached revision 900; etcd was restored to revision 300 under the
        // same cluster id, and the snapshot after says so; then the new history went on.
        let old_a = manifest("c1", 500, minutes(0));
        let old_b = manifest("c1", 900, minutes(10));
        let mut rewound = manifest("c1", 300, minutes(20));
        rewound.etcd.rewound_from_revision = Some(900);
        let new_b = manifest("c1", 450, minutes(30));
        let mut catalog = Catalog::default();
        for (manifest, committed) in [
            (&new_b, minutes(30)),
            (&old_b, minutes(10)),
            (&rewound, minutes(20)),
            (&old_a, minutes(0)),
        ] {
            catalog.committed_at.insert(manifest.id.clone(), committed);
            catalog.snapshots.push(manifest.clone());
        }
        catalog.order();
        let revisions: Vec<i64> = catalog.snapshots.iter().map(|m| m.etcd.revision).collect();
        assert_eq!(revisions, [500, 900, 300, 450]);
        assert_eq!(catalog.newest().unwrap().id, new_b.id);
    }
}
