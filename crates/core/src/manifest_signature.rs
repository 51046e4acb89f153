//! What a manifest's signature covers: a canonical byte encoding of every field a reader relies
//! on, independent of JSON formatting, so that any implementation can rebuild it.
//!
//! The encoding is the domain tag [`SIGNED_PAYLOAD_DOMAIN`] followed by named records, each
//! `len(name) name len(value) value` with 4-byte big-endian lengths; numbers are decimal text,
//! times RFC 3339 with nanoseconds, booleans `true`/`false`. An optional field that is absent is
//! not written at all, and lists write their length first, then their items.
//!
//! Extension point: a later field (continuous capture's segment headers and their chain) is
//! appended as further named records after the node bundles, written only when present, so
//! that manifests without it keep verifying with the signatures they already carry. A change
//! to an existing record changes the domain tag instead. The first such record is
//! `kubernetes` (the cluster shape), whose value is the shape's compact JSON; the second is
//! `etcd.previous_cluster_id` (the start of a new etcd generation), the third
//! `etcd.replication_generation` (whose segments replay onto the snapshot), the fourth
//! `etcd.rewound_from_revision` (a new history of the same etcd cluster id).

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};

use crate::{Compression, EtcdMember, NodeBundle, ObjectDigest, SnapshotManifest, StoredObject};

/// The first bytes of every signed payload: what is signed and in which encoding version.
pub const SIGNED_PAYLOAD_DOMAIN: &[u8] = b"etcd-dr manifest signature v1\n";

/// A manifest's signature, stored in the manifest itself (`signature`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "lowercase", deny_unknown_fields)]
pub enum ManifestSignature {
    /// Ed25519 over [`SnapshotManifest::signed_payload`].
    Ed25519 {
        /// The signer's public key as configured in readers' `signing.trusted_keys`
        /// (`ed25519:<base64>`).
        public_key: String,
        /// The 64-byte signature, base64.
        signature: String,
    },
}

impl ManifestSignature {
    /// The signer's public key text.
    pub fn public_key(&self) -> &str {
        match self {
            Self::Ed25519 { public_key, .. } => public_key,
        }
    }
}

/// Builds the canonical encoding record by record.
struct Payload(Vec<u8>);

impl Payload {
    fn record(&mut self, name: &str, value: &[u8]) {
        for part in [name.as_bytes(), value] {
            // Every field is far below 4 GiB; a longer one saturates and cannot verify.
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            self.0.extend_from_slice(&len.to_be_bytes());
            self.0.extend_from_slice(part);
        }
    }

    fn text(&mut self, name: &str, value: &str) {
        self.record(name, value.as_bytes());
    }

    fn number(&mut self, name: &str, value: impl ToString) {
        self.text(name, &value.to_string());
    }

    fn texts(&mut self, name: &str, values: &[String]) {
        self.number(name, values.len());
        for value in values {
            self.text(name, value);
        }
    }

    fn digest(&mut self, name: &str, digest: &ObjectDigest) {
        self.number(&format!("{name}.size"), digest.size);
        self.text(&format!("{name}.sha256"), &digest.sha256);
    }

    fn object(&mut self, name: &str, object: &StoredObject) {
        self.text(&format!("{name}.name"), &object.name);
        self.number(&format!("{name}.size"), object.size);
        self.text(&format!("{name}.sha256"), &object.sha256);
        let Compression::Zstd { level } = object.compression;
        self.text(&format!("{name}.compression"), "zstd");
        self.number(&format!("{name}.compression.level"), level);
        if let Some(encryption) = &object.encryption {
            self.text(&format!("{name}.encryption"), "age");
            self.texts(
                &format!("{name}.encryption.recipients"),
                encryption.recipients(),
            );
        }
    }

    fn member(&mut self, member: &EtcdMember) {
        self.text("etcd.member.id", &member.id);
        self.text("etcd.member.name", &member.name);
        self.texts("etcd.member.peer_urls", &member.peer_urls);
        self.texts("etcd.member.client_urls", &member.client_urls);
        self.number("etcd.member.is_leader", member.is_leader);
        self.number("etcd.member.is_learner", member.is_learner);
    }

    fn node(&mut self, bundle: &NodeBundle) {
        match bundle {
            NodeBundle::Stored {
                node,
                object,
                raw,
                entries,
                service_account_keys,
            } => {
                self.text("node.state", "stored");
                self.text("node.name", node);
                self.object("node.object", object);
                self.digest("node.raw", raw);
                self.number("node.entries", entries);
                self.texts("node.service_account_keys", service_account_keys);
            }
            NodeBundle::Missing { node, reason } => {
                self.text("node.state", "missing");
                self.text("node.name", node);
                self.text("node.reason", reason);
            }
        }
    }
}

impl SnapshotManifest {
    /// The bytes a signature covers: id, cluster, label, the etcd cluster (id, version, revision,
    /// raft position, source, members), the plain and stored data (sizes, digests, compression,
    /// recipients), the times, every node bundle and the Kubernetes cluster shape when
    /// recorded. Not covered: `producer`,
    /// `duration_seconds` and the members' status, which are informational only.
    pub fn signed_payload(&self) -> Vec<u8> {
        let mut payload = Payload(SIGNED_PAYLOAD_DOMAIN.to_vec());
        payload.number("format_version", self.format_version);
        payload.text("id", &self.id.to_string());
        payload.text("cluster", &self.cluster);
        if let Some(label) = &self.label {
            payload.text("label", label);
        }
        let etcd = &self.etcd;
        payload.text("etcd.cluster_id", &etcd.cluster_id);
        payload.text("etcd.version", &etcd.version);
        payload.number("etcd.revision", etcd.revision);
        payload.number("etcd.raft_index", etcd.raft_index);
        payload.number("etcd.raft_term", etcd.raft_term);
        payload.text("etcd.source_endpoint", &etcd.source_endpoint);
        payload.text("etcd.source_member_id", &etcd.source_member_id);
        payload.number("etcd.members", etcd.members.len());
        for member in &etcd.members {
            payload.member(member);
        }
        payload.digest("raw", &self.raw);
        payload.text("etcd_sha256", &self.etcd_sha256);
        payload.object("stored", &self.stored);
        let time =
            |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Nanos, true);
        payload.text("created_at", &time(&self.created_at));
        payload.text("completed_at", &time(&self.completed_at));
        payload.number("nodes", self.nodes.len());
        for bundle in &self.nodes {
            payload.node(bundle);
        }
        // Extension point: records of later fields go here, written only when present.
        if let Some(kubernetes) = &self.kubernetes {
            // The cluster shape as its JSON (fields in declaration order, absent options
            // omitted): a preflight decision rests on it, so a signature must cover it.
            let json = serde_json::to_vec(kubernetes).expect("a cluster shape serialises");
            payload.record("kubernetes", &json);
        }
        if let Some(previous) = &self.etcd.previous_cluster_id {
            // A new etcd generation: readers accept the change of cluster id on its word.
            payload.text("etcd.previous_cluster_id", previous);
        }
        if let Some(generation) = &self.etcd.replication_generation {
            // Which segments a restore may replay onto this snapshot.
            payload.text("etcd.replication_generation", generation);
        }
        if let Some(revision) = self.etcd.rewound_from_revision {
            // A new history of the same cluster id: readers order it after the old one.
            payload.number("etcd.rewound_from_revision", revision);
        }
        payload.0
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::tests::sample;
    use crate::{Encryption, NodeBundle, ObjectDigest, StoredObject};

    #[test]
    fn the_payload_is_stable_and_ignores_the_informational_fields() {
        let manifest = sample();
        let payload = manifest.signed_payload();
        assert!(payload.starts_with(super::SIGNED_PAYLOAD_DOMAIN));
        // A JSON round trip (what a reader sees) gives the same bytes.
        let json = serde_json::to_string(&manifest).unwrap();
        let back: crate::SnapshotManifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back.signed_payload(), payload);

        let mut informational = manifest.clone();
        informational.producer.host = "elsewhere".into();
        informational.duration_seconds = 99.5;
        informational.etcd.members[0].status = None;
        assert_eq!(informational.signed_payload(), payload);
    }

    #[test]
    fn every_field_a_reader_relies_on_changes_the_payload() {
        let base = sample();
        let payload = base.signed_payload();
        type Change = Box<dyn Fn(&mut crate::SnapshotManifest)>;
        fn change(f: impl Fn(&mut crate::SnapshotManifest) + 'static) -> Change {
            Box::new(f)
        }
        let changes: Vec<(&str, Change)> = vec![
            (
                "id",
                change(|m| m.id = crate::SnapshotId::new(m.created_at, 43)),
            ),
            ("cluster", change(|m| m.cluster = "other".into())),
            ("label", change(|m| m.label = None)),
            ("cluster id", change(|m| m.etcd.cluster_id = "1".into())),
            (
                "new etcd generation",
                change(|m| m.etcd.previous_cluster_id = Some("1".into())),
            ),
            (
                "replication generation",
                change(|m| m.etcd.replication_generation = Some("g".into())),
            ),
            (
                "rewound etcd",
                change(|m| m.etcd.rewound_from_revision = Some(90)),
            ),
            ("revision", change(|m| m.etcd.revision += 1)),
            (
                "member name",
                change(|m| m.etcd.members[0].name = "cp9".into()),
            ),
            ("raw digest", change(|m| m.raw.sha256 = "00".repeat(32))),
            ("stored size", change(|m| m.stored.size += 1)),
            (
                "recipients",
                change(|m| {
                    m.stored.encryption = Some(Encryption::Age {
                        recipients: vec!["age1attacker".into()],
                    })
                }),
            ),
            (
                "bundles",
                change(|m| {
                    m.nodes.push(NodeBundle::Stored {
                        node: "cp1".into(),
                        object: StoredObject {
                            name: "nodes/cp1.tar.zst".into(),
                            ..m.stored.clone()
                        },
                        raw: ObjectDigest {
                            size: 1,
                            sha256: "11".repeat(32),
                        },
                        entries: 3,
                        service_account_keys: vec!["etc/kubernetes/pki/sa.key".into()],
                    })
                }),
            ),
            (
                "created_at",
                change(|m| m.created_at += chrono::Duration::seconds(1)),
            ),
            (
                "kubernetes",
                change(|m| {
                    m.kubernetes = Some(crate::ClusterShape {
                        kubernetes_version: Some("v1.31.2".into()),
                        ..Default::default()
                    })
                }),
            ),
        ];
        for (what, change) in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(changed.signed_payload(), payload, "{what} is not covered");
        }
    }

    #[test]
    fn a_recorded_cluster_shape_is_signed_and_its_changes_are_seen() {
        let mut with_shape = sample();
        with_shape.kubernetes = Some(crate::ClusterShape {
            kubernetes_version: Some("v1.31.2".into()),
            ..Default::default()
        });
        let payload = with_shape.signed_payload();
        // Appended after everything else: a manifest without a shape signs as before.
        assert!(payload.starts_with(&sample().signed_payload()));
        let mut changed = with_shape.clone();
        if let Some(shape) = changed.kubernetes.as_mut() {
            shape.kubernetes_version = Some("v1.30.0".into());
        }
        assert_ne!(changed.signed_payload(), payload);
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_payload() {
        // Length prefixes: "ab" + "c" is not "a" + "bc".
        let mut one = sample();
        one.cluster = "ab".into();
        one.label = Some("c".into());
        let mut two = sample();
        two.cluster = "a".into();
        two.label = Some("bc".into());
        assert_ne!(one.signed_payload(), two.signed_payload());
    }
}
