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
/// `<prefix>/<cluster>/snapshots/<id>/{<attempt>/etcd.db.zst,manifest.json}`.
///
/// Ids sort by time then revision, so a listing alone is enough to order snapshots. Each
/// attempt at a snapshot writes its objects into a folder of its own ([`AttemptToken`]), so two
/// attempts that get the same id never write the same key; the manifest names the objects of
/// the attempt that committed it. (Snapshots written before attempt folders hold their objects
/// directly in the snapshot's folder; readers follow the manifest either way.)
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

    /// The cluster's folder (`<prefix>/<cluster>`), parent of `snapshots/`: the fence, the
    /// locks and the producer lease live there.
    pub fn cluster_dir(&self) -> Path {
        let parts: Vec<_> = self.snapshots.parts().collect();
        let keep = parts.len().saturating_sub(1);
        Path::from_iter(parts.into_iter().take(keep))
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

    /// The folder of one attempt at a snapshot: everything that attempt uploads.
    pub fn attempt_dir(&self, id: &SnapshotId, attempt: &AttemptToken) -> Path {
        self.snapshot_dir(id).join(attempt.as_str())
    }

    /// Splits a listed key into the snapshot id it belongs to and its name in the snapshot's
    /// folder (`manifest.json`, `<attempt>/etcd.db.zst`, `<attempt>/nodes/cp1.tar.zst`, or
    /// the older `etcd.db.zst`, `nodes/cp1.tar.zst`), or `None` for keys that are not in a
    /// snapshot folder.
    pub fn parse_key(&self, key: &Path) -> Option<(SnapshotId, String)> {
        let mut rest = key.prefix_match(&self.snapshots)?;
        let id = rest.next()?.as_ref().parse().ok()?;
        let parts: Vec<String> = rest.map(|p| p.as_ref().to_string()).collect();
        let shape_ok = match parts.as_slice() {
            [_file] => true,
            [folder, _file] => folder == NODES_FOLDER || AttemptToken::is_token(folder),
            [attempt, nodes, _file] => AttemptToken::is_token(attempt) && nodes == NODES_FOLDER,
            _ => false,
        };
        shape_ok.then(|| (id, parts.join("/")))
    }
}

/// The name of one attempt at a snapshot: 16 random lower-case hex digits, the folder its
/// objects go to inside the snapshot's folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttemptToken(String);

impl AttemptToken {
    /// A fresh random token (64 bits: two attempts never share one in practice).
    pub fn random() -> Self {
        Self(format!("{:016x}", rand::random::<u64>()))
    }

    /// The token as it appears in keys.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name inside the snapshot's folder of this attempt's object `name`.
    pub fn object_name(&self, name: &str) -> String {
        format!("{}/{name}", self.0)
    }

    /// True when `text` has the shape of a token.
    pub fn is_token(text: &str) -> bool {
        text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
}

impl std::fmt::Display for AttemptToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
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
            Some((id.clone(), "nodes/cp1.tar.zst".to_string()))
        );
        let attempt = AttemptToken::random();
        let name = attempt.object_name(&SnapshotLayout::node_bundle_name("cp1"));
        let key = layout.object_path(&id, &name);
        assert_eq!(
            key.as_ref(),
            format!("dr/prod/snapshots/20261125T121900Z-r48211/{attempt}/nodes/cp1.tar.zst")
        );
        assert!(key.prefix_matches(&layout.attempt_dir(&id, &attempt)));
        assert_eq!(layout.parse_key(&key), Some((id, name)));
    }

    #[test]
    fn attempt_tokens_differ_and_have_their_shape() {
        let (a, b) = (AttemptToken::random(), AttemptToken::random());
        assert_ne!(a, b);
        assert!(AttemptToken::is_token(a.as_str()), "{a}");
        assert!(!AttemptToken::is_token("nodes"));
        assert!(!AttemptToken::is_token("0123456789ABCDEF"));
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
            "dr/prod/snapshots/20261125T121900Z-r1/0123456789abcdef/a/b",
            "dr/prod/snapshots/20261125T121900Z-r1/0123456789abcdef/nodes/a/b",
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
