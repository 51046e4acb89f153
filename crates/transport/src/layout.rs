use etcd_dr_core::SnapshotId;
use object_store::path::Path;

use crate::TransportError;

/// File name of the compressed snapshot inside a snapshot's folder.
pub const DATA_OBJECT_NAME: &str = "etcd.db.zst";
/// Folder of the node bundles inside a snapshot's folder.
pub const NODES_FOLDER: &str = "nodes";
/// File name of the manifest inside a snapshot's folder.
pub const MANIFEST_OBJECT_NAME: &str = "manifest.json";

/// Where a cluster's snapshots live in the store:
/// `<prefix>/<cluster>/snapshots/<id>/{etcd.db.zst,manifest.json}`.
///
/// Ids sort by time then revision, so a listing alone is enough to order snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotLayout {
    snapshots: Path,
}

impl SnapshotLayout {
    /// The layout for `cluster` under `prefix` (which may be empty).
    pub fn new(prefix: &str, cluster: &str) -> Result<Self, TransportError> {
        if cluster.is_empty() || cluster.contains('/') {
            return Err(TransportError::Config(format!(
                "cluster name `{cluster}` must be a non-empty single path segment"
            )));
        }
        let mut parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
        parts.push(cluster);
        parts.push("snapshots");
        let joined = parts.join("/");
        let snapshots = Path::parse(&joined).map_err(|e| {
            TransportError::Config(format!(
                "store prefix `{prefix}` is not a valid object path: {e}"
            ))
        })?;
        Ok(Self { snapshots })
    }

    /// The folder holding every snapshot of the cluster.
    pub fn snapshots_prefix(&self) -> &Path {
        &self.snapshots
    }

    /// The folder of one snapshot.
    pub fn snapshot_dir(&self, id: &SnapshotId) -> Path {
        self.snapshots.clone().join(id.to_string())
    }

    /// The compressed (plain) snapshot object.
    pub fn data_path(&self, id: &SnapshotId) -> Path {
        self.snapshot_dir(id).join(DATA_OBJECT_NAME)
    }

    /// An object of a snapshot by its name in the folder, which may hold one `/`
    /// (`nodes/cp1.tar.zst`).
    pub fn object_path(&self, id: &SnapshotId, name: &str) -> Path {
        name.split('/')
            .fold(self.snapshot_dir(id), |path, part| path.join(part))
    }

    /// The name (inside the snapshot folder) of `node`'s plain bundle: `nodes/<node>.tar.zst`.
    pub fn node_bundle_name(node: &str) -> String {
        format!("{NODES_FOLDER}/{node}.tar.zst")
    }

    /// The manifest object.
    pub fn manifest_path(&self, id: &SnapshotId) -> Path {
        self.snapshot_dir(id).join(MANIFEST_OBJECT_NAME)
    }

    /// Splits a listed key into the snapshot id it belongs to and its file name, or `None` for
    /// keys that are not in a snapshot folder.
    pub fn parse_key(&self, key: &Path) -> Option<(SnapshotId, String)> {
        let mut rest = key.prefix_match(&self.snapshots)?;
        let id = rest.next()?.as_ref().parse().ok()?;
        let mut name = rest.next()?.as_ref().to_string();
        if name == NODES_FOLDER {
            name = format!("{NODES_FOLDER}/{}", rest.next()?.as_ref());
        }
        if rest.next().is_some() {
            return None;
        }
        Some((id, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_documented_keys() {
        let layout = SnapshotLayout::new("/dr/", "prod").unwrap();
        let id: SnapshotId = "20261125T121900Z-r48211".parse().unwrap();
        assert_eq!(
            layout.data_path(&id).as_ref(),
            "dr/prod/snapshots/20261125T121900Z-r48211/etcd.db.zst"
        );
        assert_eq!(
            layout.manifest_path(&id).as_ref(),
            "dr/prod/snapshots/20261125T121900Z-r48211/manifest.json"
        );
        assert_eq!(
            layout.parse_key(&layout.manifest_path(&id)),
            Some((id.clone(), "manifest.json".to_string()))
        );
        let bundle = layout.object_path(&id, &SnapshotLayout::node_bundle_name("cp1"));
        assert_eq!(
            bundle.as_ref(),
            "dr/prod/snapshots/20261125T121900Z-r48211/nodes/cp1.tar.zst"
        );
        assert_eq!(
            layout.parse_key(&bundle),
            Some((id, "nodes/cp1.tar.zst".to_string()))
        );
    }

    #[test]
    fn empty_prefix_is_allowed() {
        let layout = SnapshotLayout::new("", "prod").unwrap();
        assert_eq!(layout.snapshots_prefix().as_ref(), "prod/snapshots");
    }

    #[test]
    fn ignores_foreign_keys() {
        let layout = SnapshotLayout::new("dr", "prod").unwrap();
        for key in [
            "dr/prod/snapshots/not-an-id/manifest.json",
            "dr/other/snapshots/20261125T121900Z-r1/manifest.json",
            "dr/prod/snapshots/20261125T121900Z-r1",
            "dr/prod/snapshots/20261125T121900Z-r1/a/b",
            "dr/prod/snapshots/20261125T121900Z-r1/nodes/a/b",
        ] {
            assert_eq!(layout.parse_key(&Path::from(key)), None, "{key}");
        }
    }

    #[test]
    fn rejects_bad_cluster_names() {
        assert!(SnapshotLayout::new("", "").is_err());
        assert!(SnapshotLayout::new("", "a/b").is_err());
    }
}
