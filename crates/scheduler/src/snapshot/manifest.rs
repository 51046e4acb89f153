//! What a snapshot's manifest says, and whether a new snapshot is needed at all: pure
//! functions of what was surveyed and stored.

use std::time::Instant;

use chrono::{DateTime, Utc};
use etcd_dr_core::{
    etcd_id_hex, ClusterShape, EtcdClusterInfo, NodeBundle, Producer, SnapshotId, SnapshotManifest,
    MANIFEST_FORMAT_VERSION,
};
use etcd_dr_transport::UploadedData;

use super::SnapshotOutcome;
use crate::{ClusterSurvey, EndpointStatus};

/// One attempt at a snapshot: the member streamed from, and when the run started.
pub(super) struct Attempt<'a> {
    /// The survey the member was chosen from.
    pub survey: &'a ClusterSurvey,
    /// The member streamed from.
    pub candidate: &'a EndpointStatus,
    /// The id this attempt stores under (it carries the member's revision).
    pub id: SnapshotId,
    /// The operator's label, if any.
    pub label: Option<String>,
    /// When the run started (the id's time).
    pub created_at: DateTime<Utc>,
    /// When the run started, for its duration.
    pub started: Instant,
    /// The etcd cluster id of the newest stored snapshot when it differs from this one's: the
    /// snapshot starts a new etcd generation and says so (signed).
    pub previous_cluster_id: Option<String>,
    /// The revision of the newest stored snapshot of this cluster id when etcd is below it:
    /// restored from an older snapshot, the snapshot starts a new history (signed).
    pub rewound_from_revision: Option<i64>,
}

/// The etcd cluster id this snapshot's generation follows: the newest stored snapshot's, when
/// the survey found another cluster id (etcd rebuilt or restored into a new cluster).
pub(super) fn new_generation_after(
    newest: Option<&SnapshotManifest>,
    survey: &ClusterSurvey,
) -> Option<String> {
    newest
        .map(|newest| &newest.etcd.cluster_id)
        .filter(|previous| **previous != etcd_id_hex(survey.cluster_id))
        .cloned()
}

/// The newest stored snapshot's revision when the survey found the same etcd cluster id below
/// it: etcd was restored from an older snapshot under the same identity (its revisions go
/// back), and this snapshot starts a new history of it.
pub(super) fn rewound_below(
    newest: Option<&SnapshotManifest>,
    survey: &ClusterSurvey,
) -> Option<i64> {
    let (newest, revision) = (newest?, survey.revision()?);
    (newest.etcd.cluster_id == etcd_id_hex(survey.cluster_id) && revision < newest.etcd.revision)
        .then_some(newest.etcd.revision)
}

/// `Unchanged` when the newest stored snapshot is of the same etcd cluster at the revision
/// the survey found: a new one would hold the same data.
pub(super) fn unchanged_since(
    newest: Option<&SnapshotManifest>,
    survey: &ClusterSurvey,
) -> Option<SnapshotOutcome> {
    let (newest, revision) = (newest?, survey.revision()?);
    (newest.etcd.revision == revision && newest.etcd.cluster_id == etcd_id_hex(survey.cluster_id))
        .then(|| SnapshotOutcome::Unchanged {
            revision,
            newest: newest.id.clone(),
        })
}

/// The manifest of a finished attempt: the etcd side from the survey and the member streamed
/// from, the data as uploaded, the node bundles, the Kubernetes cluster's shape.
pub(super) fn build_manifest(
    cluster: &str,
    attempt: &Attempt<'_>,
    data: UploadedData,
    nodes: Vec<NodeBundle>,
    kubernetes: Option<ClusterShape>,
    producer: Producer,
) -> SnapshotManifest {
    let (survey, candidate) = (attempt.survey, attempt.candidate);
    SnapshotManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: attempt.id.clone(),
        cluster: cluster.to_string(),
        label: attempt.label.clone(),
        etcd: EtcdClusterInfo {
            cluster_id: etcd_id_hex(survey.cluster_id),
            version: candidate.version.clone(),
            revision: candidate.revision,
            raft_index: candidate.raft_index,
            raft_term: candidate.raft_term,
            source_endpoint: candidate.endpoint.clone(),
            source_member_id: etcd_id_hex(candidate.member_id),
            members: survey.members.clone(),
            previous_cluster_id: attempt.previous_cluster_id.clone(),
            replication_generation: None,
            rewound_from_revision: attempt.rewound_from_revision,
        },
        raw: data.raw,
        etcd_sha256: data.etcd_sha256,
        stored: data.stored,
        created_at: attempt.created_at,
        completed_at: Utc::now(),
        duration_seconds: attempt.started.elapsed().as_secs_f64(),
        producer,
        nodes,
        kubernetes,
        signature: None,
    }
}

/// This program on this machine, for the manifest.
pub(super) fn producer() -> Producer {
    Producer {
        tool: format!("etcd-dr {}", env!("CARGO_PKG_VERSION")),
        host: host_name(),
    }
}

/// This machine's host name, for the manifest.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use etcd_dr_core::{Compression, EtcdMember, ObjectDigest, StoredObject};

    /// A member's status as the survey reports it.
    pub fn member(endpoint: &str, member_id: u64, leader_id: u64, revision: i64) -> EndpointStatus {
        EndpointStatus {
            endpoint: endpoint.into(),
            cluster_id: 0xc1,
            member_id,
            leader_id,
            version: "3.5.16".into(),
            db_size: 4096,
            revision,
            raft_index: 40,
            raft_term: 3,
            is_learner: false,
            errors: Vec::new(),
        }
    }

    /// A survey of one cluster with these members (names `cp1`, `cp2`…).
    pub fn survey(statuses: Vec<EndpointStatus>) -> ClusterSurvey {
        let members = statuses
            .iter()
            .enumerate()
            .map(|(index, status)| EtcdMember {
                id: etcd_id_hex(status.member_id),
                name: format!("cp{}", index + 1),
                peer_urls: vec![format!("https://10.0.0.{}:2380", index + 1)],
                client_urls: vec![status.endpoint.clone()],
                is_leader: status.is_leader(),
                is_learner: false,
                status: None,
            })
            .collect();
        ClusterSurvey {
            cluster_id: 0xc1,
            endpoints: statuses
                .into_iter()
                .map(|status| crate::EndpointReport {
                    endpoint: status.endpoint.clone(),
                    status: Ok(status),
                })
                .collect(),
            members,
        }
    }

    fn uploaded() -> UploadedData {
        UploadedData {
            raw: ObjectDigest {
                size: 1000,
                sha256: "aa".repeat(32),
            },
            etcd_sha256: "bb".repeat(32),
            stored: StoredObject {
                name: "etcd.db.zst".into(),
                size: 300,
                sha256: "cc".repeat(32),
                compression: Compression::Zstd { level: 3 },
                encryption: None,
            },
        }
    }

    fn manifest_of(survey: &ClusterSurvey, candidate: &EndpointStatus) -> SnapshotManifest {
        let attempt = Attempt {
            survey,
            candidate,
            id: SnapshotId::new(Utc::now(), candidate.revision),
            label: Some("before upgrade".into()),
            created_at: Utc::now(),
            started: Instant::now(),
            previous_cluster_id: None,
            rewound_from_revision: None,
        };
        build_manifest(
            "prod",
            &attempt,
            uploaded(),
            Vec::new(),
            None,
            Producer {
                tool: "etcd-dr test".into(),
                host: "dr1".into(),
            },
        )
    }

    #[test]
    fn the_manifest_names_the_member_streamed_from_in_hex() {
        let survey = survey(vec![
            member("https://a:2379", 0xa1, 0xb2, 70),
            member("https://b:2379", 0xb2, 0xb2, 71),
        ]);
        let candidate = &survey.candidates()[0].clone();
        let manifest = manifest_of(&survey, candidate);
        assert_eq!(manifest.cluster, "prod");
        assert_eq!(manifest.label.as_deref(), Some("before upgrade"));
        assert_eq!(manifest.id.revision(), candidate.revision);
        assert_eq!(manifest.etcd.cluster_id, "c1");
        assert_eq!(manifest.etcd.source_endpoint, candidate.endpoint);
        assert_eq!(
            manifest.etcd.source_member_id,
            format!("{:x}", candidate.member_id)
        );
        assert_eq!(manifest.etcd.revision, candidate.revision);
        assert_eq!((manifest.etcd.raft_index, manifest.etcd.raft_term), (40, 3));
        assert_eq!(manifest.etcd.members.len(), 2);
        assert_eq!(manifest.raw.size, 1000);
        assert_eq!(manifest.etcd_sha256, "bb".repeat(32));
        assert_eq!(manifest.stored.size, 300);
        assert_eq!(manifest.producer.host, "dr1");
        assert!(manifest.completed_at >= manifest.created_at);
        assert!(manifest.duration_seconds >= 0.0);
        // The leader (cp2) was streamed from, and the manifest finds it in its member list.
        assert_eq!(
            manifest.source_member().map(|m| m.name.as_str()),
            Some("cp2")
        );
    }

    #[test]
    fn an_unchanged_revision_of_the_same_cluster_is_skipped() {
        let survey = survey(vec![member("https://a:2379", 0xa1, 0xa1, 70)]);
        let stored = manifest_of(&survey, &survey.candidates()[0].clone());
        match unchanged_since(Some(&stored), &survey) {
            Some(SnapshotOutcome::Unchanged { revision, newest }) => {
                assert_eq!(revision, 70);
                assert_eq!(newest, stored.id);
            }
            other => panic!("expected unchanged, got {other:?}"),
        }
    }

    #[test]
    fn a_new_revision_another_cluster_or_an_empty_store_takes_a_snapshot() {
        let survey = survey(vec![member("https://a:2379", 0xa1, 0xa1, 70)]);
        let mut stored = manifest_of(&survey, &survey.candidates()[0].clone());
        assert!(unchanged_since(None, &survey).is_none());
        stored.etcd.revision = 69;
        assert!(unchanged_since(Some(&stored), &survey).is_none());
        stored.etcd.revision = 70;
        stored.etcd.cluster_id = "d2".into();
        assert!(unchanged_since(Some(&stored), &survey).is_none());
    }

    #[test]
    fn another_etcd_cluster_id_starts_a_new_generation_naming_the_previous_one() {
        let survey = survey(vec![member("https://a:2379", 0xa1, 0xa1, 70)]);
        let mut stored = manifest_of(&survey, &survey.candidates()[0].clone());
        assert_eq!(new_generation_after(None, &survey), None);
        assert_eq!(new_generation_after(Some(&stored), &survey), None);
        stored.etcd.cluster_id = "d2".into();
        assert_eq!(
            new_generation_after(Some(&stored), &survey).as_deref(),
            Some("d2")
        );
    }

    #[test]
    fn the_same_cluster_below_the_newest_snapshot_starts_a_new_history() {
        let survey = survey(vec![member("https://a:2379", 0xa1, 0xa1, 70)]);
        let mut stored = manifest_of(&survey, &survey.candidates()[0].clone());
        assert_eq!(rewound_below(None, &survey), None);
        // At or below etcd's revision: the same history.
        assert_eq!(rewound_below(Some(&stored), &survey), None);
        stored.etcd.revision = 69;
        assert_eq!(rewound_below(Some(&stored), &survey), None);
        // etcd went back below a stored snapshot: a new history, naming where the old ended.
        stored.etcd.revision = 90;
        assert_eq!(rewound_below(Some(&stored), &survey), Some(90));
        // Another cluster id is a new etcd generation instead.
        stored.etcd.cluster_id = "d2".into();
        assert_eq!(rewound_below(Some(&stored), &survey), None);
        let built = manifest_of(&survey, &survey.candidates()[0].clone());
        assert_eq!(built.etcd.rewound_from_revision, None);
    }
}
