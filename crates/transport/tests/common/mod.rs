//! Helpers shared by the transport crate's integration tests.

use chrono::Utc;
use etcd_dr_core::{
    EtcdClusterInfo, Producer, SnapshotId, SnapshotManifest, MANIFEST_FORMAT_VERSION,
};

/// The manifest of snapshot `id` for uploaded `data`.
pub fn manifest(id: SnapshotId, data: etcd_dr_transport::UploadedData) -> SnapshotManifest {
    SnapshotManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id,
        cluster: "prod".into(),
        label: None,
        etcd: EtcdClusterInfo {
            cluster_id: "1".into(),
            version: "3.5.16".into(),
            revision: 7,
            raft_index: 1,
            raft_term: 1,
            source_endpoint: "http://x".into(),
            source_member_id: "1".into(),
            members: vec![],
            previous_cluster_id: None,
            replication_generation: None,
            rewound_from_revision: None,
        },
        raw: data.raw,
        etcd_sha256: data.etcd_sha256,
        stored: data.stored,
        created_at: Utc::now(),
        completed_at: Utc::now(),
        duration_seconds: 0.0,
        producer: Producer {
            tool: "test".into(),
            host: "test".into(),
        },
        nodes: vec![],
        signature: None,
        kubernetes: None,
    }
}
