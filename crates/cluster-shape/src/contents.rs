//! What a snapshot file holds, for `etcd-dr inspect`.

use std::path::Path;

use etcd_dr_core::{ClusterShape, ObjectCounts};
use etcd_dr_etcd_backend::{read_keyspace, BackendError};
use serde::Serialize;

use crate::{cluster_shape, count_objects, ShapeKeys};

/// The contents of one etcd snapshot file at its newest revision.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotContents {
    /// The newest revision in the file.
    pub revision: i64,
    /// Revisions the file holds (history not yet compacted included).
    pub revisions_stored: u64,
    /// Live keys.
    pub keys: u64,
    /// The Kubernetes cluster as the file records it (`None`: no Kubernetes objects).
    pub kubernetes: Option<ClusterShape>,
    /// Objects by resource and namespace.
    pub objects: ObjectCounts,
}

/// Reads the etcd snapshot file at `path` (a plain `.db`) without etcd, Kubernetes objects
/// under `prefix`. Only the few objects of the shape are held in memory with their values.
pub fn read_snapshot_contents(path: &Path, prefix: &str) -> Result<SnapshotContents, BackendError> {
    let keys = ShapeKeys::new(prefix);
    let keyspace = read_keyspace(path, |key| {
        std::str::from_utf8(key).is_ok_and(|key| keys.wants(key))
    })?;
    let kubernetes = cluster_shape(
        &keys,
        keyspace
            .keys
            .iter()
            .filter_map(|(key, value)| Some((key.as_slice(), value.as_deref()?))),
    );
    Ok(SnapshotContents {
        revision: keyspace.revision,
        revisions_stored: keyspace.revisions_stored,
        keys: keyspace.keys.len() as u64,
        kubernetes,
        objects: count_objects(prefix, keyspace.keys.keys().map(Vec::as_slice)),
    })
}
