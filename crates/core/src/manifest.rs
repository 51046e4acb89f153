use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ClusterShape, ManifestSignature, SnapshotId};

/// The manifest format this build writes; readers refuse newer ones rather than guess.
/// Version 2 added `signature`.
pub const MANIFEST_FORMAT_VERSION: u32 = 2;

/// The oldest manifest format this build reads (version 1 manifests are never signed).
pub const MIN_MANIFEST_FORMAT_VERSION: u32 = 1;

/// The commit record of one snapshot, stored as `manifest.json` beside the data and written
/// last: data without a manifest does not exist for readers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotManifest {
    /// Manifest format version ([`MANIFEST_FORMAT_VERSION`] when written by this build).
    pub format_version: u32,
    /// The snapshot's id, also the name of its folder in the store.
    pub id: SnapshotId,
    /// The configured name of the Kubernetes cluster the snapshot comes from.
    pub cluster: String,
    /// Free text given by the operator (`etcd-dr snapshot --label`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The etcd cluster as seen when the snapshot was taken.
    pub etcd: EtcdClusterInfo,
    /// The plain snapshot (`etcdutl snapshot restore` input), as etcd streamed it.
    pub raw: ObjectDigest,
    /// SHA-256 that etcd appended to its stream, checked against the content (lower-case hex).
    pub etcd_sha256: String,
    /// The stored object holding the compressed snapshot.
    pub stored: StoredObject,
    /// When the snapshot was started.
    pub created_at: DateTime<Utc>,
    /// When the data upload completed (just before this manifest was written).
    pub completed_at: DateTime<Utc>,
    /// Wall time from start to completed upload, in seconds.
    pub duration_seconds: f64,
    /// What wrote the snapshot.
    pub producer: Producer,
    /// The control-plane node bundles taken with this snapshot, one per node (absent in
    /// manifests written without bundles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeBundle>,
    /// The primary's signature over [`SnapshotManifest::signed_payload`]; absent in manifests
    /// written without a signing key (readers refuse those unless told otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ManifestSignature>,
    /// The Kubernetes cluster as its etcd recorded it at the snapshot's revision (absent when
    /// the etcd holds no Kubernetes objects, or in manifests written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<ClusterShape>,
}

/// The etcd cluster a snapshot was taken from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdClusterInfo {
    /// etcd cluster id, lower-case hex as etcdctl prints it.
    pub cluster_id: String,
    /// Server version of the member the snapshot was streamed from (e.g. `3.5.16`).
    pub version: String,
    /// Revision reported by that member just before the stream started.
    pub revision: i64,
    /// Raft index of that member just before the stream started.
    pub raft_index: u64,
    /// Raft term of that member just before the stream started.
    pub raft_term: u64,
    /// Client URL the snapshot was streamed from.
    pub source_endpoint: String,
    /// Member id (hex) the snapshot was streamed from.
    pub source_member_id: String,
    /// Every member of the cluster, from the member list.
    pub members: Vec<EtcdMember>,
    /// Set on the first snapshot of a new etcd generation: the etcd cluster id of the snapshot
    /// committed before it, which the producer saw change (an etcd rebuilt or restored into a
    /// new cluster id). Signed; readers refuse a change of cluster id that does not name the
    /// id it follows (docs/security.md, "etcd generations").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_cluster_id: Option<String>,
    /// The continuous-replication generation whose history this snapshot is in: the one it
    /// starts (taken for it) or the one whose capture ran unbroken while it was taken. Only a
    /// snapshot naming a generation is a base for replaying that generation's segments: an etcd
    /// restored under the same cluster id numbers a new history over the old one's revisions,
    /// and a revision range alone cannot tell them apart. Signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_generation: Option<String>,
    /// Set when the producer found etcd below the newest stored snapshot of the same cluster
    /// id (its revision here): etcd was restored from an older snapshot under the same
    /// identity, and this snapshot starts a new history of it. Readers order every snapshot of
    /// a cluster id committed from it on after every one committed before, whatever their
    /// revisions: `latest` is the etcd as it is now, not the history it went back from. Signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewound_from_revision: Option<i64>,
}

/// One etcd member, from the member list plus its endpoint status where it answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdMember {
    /// Member id, lower-case hex.
    pub id: String,
    /// Member name (kubeadm: the node's host name).
    pub name: String,
    /// Peer URLs (`https://<host>:2380`).
    pub peer_urls: Vec<String>,
    /// Client URLs (`https://<host>:2379`).
    pub client_urls: Vec<String>,
    /// True for the raft leader at snapshot time.
    pub is_leader: bool,
    /// True for a learner (non-voting) member.
    #[serde(default)]
    pub is_learner: bool,
    /// Endpoint status, when this member was among the configured endpoints and answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MemberStatus>,
}

/// What a member's status RPC said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberStatus {
    /// The endpoint that was asked.
    pub endpoint: String,
    /// Server version.
    pub version: String,
    /// Backend database size in bytes.
    pub db_size: i64,
    /// Current revision.
    pub revision: i64,
    /// Raft index.
    pub raft_index: u64,
}

/// Size and SHA-256 of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectDigest {
    /// Length in bytes.
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

/// An object in the store that belongs to a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredObject {
    /// File name inside the snapshot's folder (e.g. `etcd.db.zst`).
    pub name: String,
    /// Size and SHA-256 of the object's bytes as stored.
    pub size: u64,
    /// SHA-256 of the object's bytes as stored, lower-case hex.
    pub sha256: String,
    /// How the plain data was compressed before storing.
    pub compression: Compression,
    /// How the compressed data was encrypted before storing; absent for plain objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// Encryption applied after compression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Encryption {
    /// An age file (X25519 recipients): decrypts with any identity matching one recipient.
    Age {
        /// The recipients (public keys, `age1…`) it was encrypted to.
        recipients: Vec<String>,
    },
}

impl Encryption {
    /// The public keys the object was encrypted to.
    pub fn recipients(&self) -> &[String] {
        match self {
            Self::Age { recipients } => recipients,
        }
    }
}

/// One control-plane node's files, taken with a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase", deny_unknown_fields)]
pub enum NodeBundle {
    /// The node's tar was stored.
    Stored {
        /// The node's host name.
        node: String,
        /// The stored object (`nodes/<node>.tar.zst[.age]`).
        object: StoredObject,
        /// The plain tar.
        raw: ObjectDigest,
        /// Entries in the tar.
        entries: u64,
        /// Paths inside the tar of the service-account signing keys (`sa.key`, `sa.pub`).
        service_account_keys: Vec<String>,
    },
    /// The node could not be reached; the snapshot was committed without its files.
    Missing {
        /// The node's host name.
        node: String,
        /// Why it is missing.
        reason: String,
    },
}

impl NodeBundle {
    /// The node's host name.
    pub fn node(&self) -> &str {
        match self {
            Self::Stored { node, .. } | Self::Missing { node, .. } => node,
        }
    }
}

/// Compression applied before storing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Compression {
    /// Zstandard at the given level.
    Zstd {
        /// zstd compression level.
        level: i32,
    },
}

/// The program and host that wrote a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Producer {
    /// Program name and version, e.g. `etcd-dr 0.1.0`.
    pub tool: String,
    /// Host name of the machine that took the snapshot.
    pub host: String,
}

impl SnapshotManifest {
    /// The bundle of `node`, if one was taken.
    pub fn node_bundle(&self, node: &str) -> Option<&NodeBundle> {
        self.nodes.iter().find(|b| b.node() == node)
    }

    /// The member the snapshot was streamed from, if it is in the member list.
    pub fn source_member(&self) -> Option<&EtcdMember> {
        self.etcd
            .members
            .iter()
            .find(|m| m.id == self.etcd.source_member_id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn sample() -> SnapshotManifest {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        SnapshotManifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: SnapshotId::new(at, 42),
            cluster: "prod".into(),
            label: Some("before upgrade".into()),
            etcd: EtcdClusterInfo {
                cluster_id: "cdf818194e3a8c32".into(),
                version: "3.5.16".into(),
                revision: 42,
                raft_index: 100,
                raft_term: 2,
                source_endpoint: "https://127.0.0.1:2379".into(),
                source_member_id: "8e9e05c52164694d".into(),
                members: vec![EtcdMember {
                    id: "8e9e05c52164694d".into(),
                    name: "cp1".into(),
                    peer_urls: vec!["https://cp1:2380".into()],
                    client_urls: vec!["https://cp1:2379".into()],
                    is_leader: true,
                    is_learner: false,
                    status: Some(MemberStatus {
                        endpoint: "https://127.0.0.1:2379".into(),
                        version: "3.5.16".into(),
                        db_size: 20480,
                        revision: 42,
                        raft_index: 100,
                    }),
                }],
                previous_cluster_id: None,
                replication_generation: None,
                rewound_from_revision: None,
            },
            raw: ObjectDigest {
                size: 20512,
                sha256: "ab".repeat(32),
            },
            etcd_sha256: "cd".repeat(32),
            stored: StoredObject {
                name: "etcd.db.zst".into(),
                size: 900,
                sha256: "ef".repeat(32),
                compression: Compression::Zstd { level: 3 },
                encryption: None,
            },
            created_at: at,
            completed_at: at + chrono::Duration::seconds(3),
            duration_seconds: 3.0,
            producer: Producer {
                tool: "etcd-dr 0.1.0".into(),
                host: "bastion".into(),
            },
            nodes: Vec::new(),
            signature: None,
            kubernetes: None,
        }
    }

    #[test]
    fn round_trips_through_json() {
        let manifest = sample();
        let json = serde_json::to_string_pretty(&manifest).unwrap();
        assert!(json.contains("\"id\": \"20261125T120000Z-r42\""));
        assert!(json.contains("\"type\": \"zstd\""));
        let back: SnapshotManifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, manifest);
        assert_eq!(back.source_member().unwrap().name, "cp1");
    }

    #[test]
    fn manifests_without_the_new_fields_still_read() {
        let mut value = serde_json::to_value(sample()).unwrap();
        assert!(value.get("nodes").is_none());
        assert!(value["stored"].get("encryption").is_none());
        value.as_object_mut().unwrap().remove("nodes");
        let back: SnapshotManifest = serde_json::from_value(value).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn encryption_and_node_bundles_round_trip() {
        let mut manifest = sample();
        let age = Encryption::Age {
            recipients: vec!["age1example".into()],
        };
        manifest.stored.encryption = Some(age.clone());
        manifest.nodes = vec![
            NodeBundle::Stored {
                node: "cp1".into(),
                object: StoredObject {
                    name: "nodes/cp1.tar.zst.age".into(),
                    size: 10,
                    sha256: "01".repeat(32),
                    compression: Compression::Zstd { level: 3 },
                    encryption: Some(age),
                },
                raw: ObjectDigest {
                    size: 20480,
                    sha256: "02".repeat(32),
                },
                entries: 12,
                service_account_keys: vec!["etc/kubernetes/pki/sa.key".into()],
            },
            NodeBundle::Missing {
                node: "cp2".into(),
                reason: "unreachable".into(),
            },
        ];
        let json = serde_json::to_string_pretty(&manifest).unwrap();
        assert!(json.contains("\"state\": \"missing\""), "{json}");
        assert!(json.contains("\"type\": \"age\""), "{json}");
        let back: SnapshotManifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, manifest);
        assert_eq!(back.node_bundle("cp2").unwrap().node(), "cp2");
        let mut value = serde_json::to_value(&manifest).unwrap();
        value["nodes"][1]["surprise"] = serde_json::json!(1);
        assert!(serde_json::from_value::<SnapshotManifest>(value).is_err());
    }

    #[test]
    fn rejects_unknown_fields() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["surprise"] = serde_json::json!(1);
        assert!(serde_json::from_value::<SnapshotManifest>(value).is_err());
    }
}
