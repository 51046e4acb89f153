//! The pure part of the preflight: what it found on each node, and whether that allows a
//! restore (a [`PromotionPlan`]) or not (every problem, each naming its node).

use std::collections::BTreeSet;

use etcd_dr_core::{EtcdVersion, NodePlan, PromotionPlan, RestoreTool, SnapshotManifest};

use crate::EtcdPod;

/// What the preflight learned about one node (gathered over its executor).
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// The node as configured.
    pub node: String,
    /// `hostname` as the node reports it.
    pub host_name: String,
    /// Its etcd static pod manifest, or why it could not be read.
    pub pod: Result<EtcdPod, String>,
    /// The data dir used (configured, or the manifest's `etcd-data` hostPath).
    pub data_dir: Option<String>,
    /// Whether the data dir exists.
    pub data_dir_exists: bool,
    /// Where the restore tool was found, if it was.
    pub tool_path: Option<String>,
    /// The version the tool reports.
    pub tool_version: Option<EtcdVersion>,
    /// Whether `snapshot restore` offers `--bump-revision` and `--mark-compacted`.
    pub tool_bumps: bool,
    /// Bytes free on the data dir's file system (or its nearest existing parent's).
    pub free_bytes: Option<u64>,
}

impl NodeFacts {
    /// The node's short host name (the part before the first dot).
    pub fn short_host_name(&self) -> &str {
        self.host_name.split('.').next().unwrap_or(&self.host_name)
    }
}

/// What the preflight is judged against.
#[derive(Debug, Clone)]
pub struct PreflightInputs<'a> {
    /// The snapshot to restore (the base of a replay with `at`).
    pub manifest: &'a SnapshotManifest,
    /// The revision of the `.db` restored: the snapshot's, or the target of a replay.
    pub restored_revision: i64,
    /// The size of the `.db` restored.
    pub restored_size: u64,
    /// The promotion id (names the token and the work dirs).
    pub promotion_id: &'a str,
    /// The secondary's revision before the restore.
    pub secondary_revision: Option<i64>,
    /// `[promote] revision_bump_margin`.
    pub bump_margin: u64,
    /// `[promote] free_space_factor`.
    pub free_space_factor: u64,
    /// `[promote] etcdutl`.
    pub etcdutl: &'a str,
    /// `[promote] etcdctl`.
    pub etcdctl: &'a str,
    /// Problems found outside the node facts (service-account keys…).
    pub extra_problems: Vec<String>,
    /// Warnings found outside the node facts.
    pub extra_warnings: Vec<String>,
}

/// `--bump-revision`: lifts the restored revision above both the snapshot's and the
/// secondary's own, plus `margin`, so no watcher on either side sees revisions go backwards.
/// etcdutl adds the bump to the snapshot's revision.
pub fn bump_revision(snapshot_revision: i64, secondary_revision: Option<i64>, margin: u64) -> u64 {
    let behind = secondary_revision
        .map(|rev| rev.saturating_sub(snapshot_revision).max(0) as u64)
        .unwrap_or(0);
    behind.saturating_add(margin)
}

/// Judges every node's facts at once: a plan when everything allows the restore, else every
/// problem (each naming its node), so the operator fixes them in one go. A node that could not
/// be asked comes as its error's text.
pub fn evaluate_preflight(
    facts: &[Result<NodeFacts, String>],
    inputs: PreflightInputs<'_>,
) -> Result<PromotionPlan, Vec<String>> {
    let manifest = inputs.manifest;
    let mut problems = inputs.extra_problems.clone();
    let mut warnings = inputs.extra_warnings.clone();
    let version = EtcdVersion::parse(&manifest.etcd.version);
    if version.is_none() {
        problems.push(format!(
            "snapshot {}: etcd version `{}` is not a version",
            manifest.id, manifest.etcd.version
        ));
    }
    let tool = version
        .map(|v| RestoreTool::for_version(&v, inputs.etcdutl, inputs.etcdctl))
        .unwrap_or_else(|| RestoreTool::Etcdutl(inputs.etcdutl.to_string()));
    let members: BTreeSet<&str> = manifest
        .etcd
        .members
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    let member_list = members.iter().copied().collect::<Vec<_>>().join(", ");
    let needed = inputs
        .restored_size
        .saturating_mul(inputs.free_space_factor);

    let mut nodes = Vec::new();
    let mut not_members = Vec::new();
    let mut all_bump = true;
    for fact in facts {
        let fact = match fact {
            Ok(fact) => fact,
            Err(error) => {
                problems.push(error.clone());
                continue;
            }
        };
        let node = &fact.node;
        let host = fact.short_host_name();
        if !members.contains(host) {
            not_members.push(format!("{node} (host name `{host}`)"));
        }
        let pod = match &fact.pod {
            Ok(pod) => Some(pod),
            Err(error) => {
                problems.push(format!("{node}: {error}"));
                None
            }
        };
        if let Some(pod) = pod {
            match &pod.name {
                Some(name) if name == host => {}
                Some(name) => problems.push(format!(
                    "{node}: the etcd manifest names the member `{name}` but the host is `{host}`; kubeadm names members after their host"
                )),
                None => problems.push(format!("{node}: the etcd manifest has no --name")),
            }
            if pod.peer_urls.is_empty() {
                problems.push(format!(
                    "{node}: the etcd manifest has no --initial-advertise-peer-urls"
                ));
            }
        }
        match (&fact.tool_path, &fact.tool_version, &version) {
            (None, _, _) => problems.push(format!(
                "{node}: `{}` not found; install etcd's tools matching the snapshot's etcd {}",
                tool.program(),
                manifest.etcd.version
            )),
            (Some(path), None, _) => problems.push(format!(
                "{node}: `{path}` does not say its version"
            )),
            (Some(path), Some(found), Some(wanted)) if !found.same_minor(wanted) => {
                problems.push(format!(
                    "{node}: `{path}` is etcd {found}, the snapshot is etcd {wanted}; restoring onto another minor version is unsupported"
                ))
            }
            _ => {}
        }
        all_bump &= fact.tool_bumps;
        match (&fact.data_dir, fact.free_bytes) {
            (None, _) => problems.push(format!(
                "{node}: no data dir: the etcd manifest has no `etcd-data` hostPath volume; set [promote] data_dir"
            )),
            (Some(dir), None) => problems.push(format!("{node}: cannot tell the free space at `{dir}`")),
            (Some(dir), Some(free)) if free < needed => problems.push(format!(
                "{node}: {free} bytes free at `{dir}`, the restore needs {needed} ({}× the {}-byte snapshot)",
                inputs.free_space_factor, inputs.restored_size
            )),
            _ => {}
        }
        if let (Some(dir), false) = (&fact.data_dir, fact.data_dir_exists) {
            warnings.push(format!(
                "{node}: the data dir `{dir}` does not exist; there is nothing to keep aside"
            ));
        }
        if let (Some(pod), Some(dir)) = (pod, &fact.data_dir) {
            if pod.name.as_deref() == Some(host) && !pod.peer_urls.is_empty() {
                let dir = dir.trim_end_matches('/').to_string();
                nodes.push(NodePlan {
                    node: node.clone(),
                    member_name: host.to_string(),
                    peer_urls: pod.peer_urls.clone(),
                    work_dir: format!("{dir}/etcd-dr-{}", inputs.promotion_id),
                    data_dir: dir,
                });
            }
        }
    }
    if !not_members.is_empty() {
        problems.push(format!(
            "host names that are not members of the primary's etcd ({member_list}): {}; the secondary must use the primary's host names",
            not_members.join(", ")
        ));
    }
    let mut seen = BTreeSet::new();
    for plan in &nodes {
        if !seen.insert(plan.member_name.as_str()) {
            problems.push(format!(
                "two nodes have the host name `{}`",
                plan.member_name
            ));
        }
    }
    let restored: BTreeSet<&str> = nodes.iter().map(|n| n.member_name.as_str()).collect();
    let left_out: Vec<&str> = members.difference(&restored).copied().collect();
    if !left_out.is_empty() && not_members.is_empty() && problems.is_empty() {
        warnings.push(format!(
            "the primary's members {} have no node here; the restored cluster has {} member(s)",
            left_out.join(", "),
            nodes.len()
        ));
    }
    if facts.is_empty() {
        problems.push("no control-plane node is configured ([nodes] control_plane)".into());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let bump = if all_bump {
        if inputs.secondary_revision.is_none() {
            warnings.push(format!(
                "the secondary's etcd did not answer, so its revision is unknown: the bump is the snapshot's revision plus {}",
                inputs.bump_margin
            ));
        }
        Some(bump_revision(
            inputs.restored_revision,
            inputs.secondary_revision,
            inputs.bump_margin,
        ))
    } else {
        warnings.push(
            "the restore tool has no --bump-revision (etcd before 3.5.10): revisions restart at the snapshot's; every watcher must be restarted (the after-steps do)".into(),
        );
        None
    };
    let expected_min_revision = inputs
        .restored_revision
        .saturating_add(bump.map(|b| b.min(i64::MAX as u64) as i64).unwrap_or(0));
    let initial_cluster = nodes
        .iter()
        .flat_map(|n| {
            n.peer_urls
                .iter()
                .map(move |u| format!("{}={u}", n.member_name))
        })
        .collect::<Vec<_>>()
        .join(",");
    Ok(PromotionPlan {
        etcd_version: manifest.etcd.version.clone(),
        tool,
        snapshot_revision: inputs.restored_revision,
        secondary_revision: inputs.secondary_revision,
        bump_revision: bump,
        expected_min_revision,
        initial_cluster,
        initial_cluster_token: format!("etcd-dr-{}", inputs.promotion_id),
        nodes,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_dr_core::{
        Compression, EtcdClusterInfo, EtcdMember, ObjectDigest, Producer, SnapshotId, StoredObject,
        MANIFEST_FORMAT_VERSION,
    };

    fn manifest(version: &str, revision: i64, members: &[&str]) -> SnapshotManifest {
        let at = chrono::Utc::now();
        SnapshotManifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: SnapshotId::new(at, revision),
            cluster: "prod".into(),
            label: None,
            etcd: EtcdClusterInfo {
                cluster_id: "1".into(),
                version: version.into(),
                revision,
                raft_index: 1,
                raft_term: 1,
                source_endpoint: "https://10.0.0.11:2379".into(),
                source_member_id: "a".into(),
                members: members
                    .iter()
                    .map(|name| EtcdMember {
                        id: format!("id-{name}"),
                        name: name.to_string(),
                        peer_urls: vec![format!("https://{name}.primary:2380")],
                        client_urls: vec![],
                        is_leader: false,
                        is_learner: false,
                        status: None,
                    })
                    .collect(),
                previous_cluster_id: None,
                replication_generation: None,
                rewound_from_revision: None,
            },
            raw: ObjectDigest {
                size: 1000,
                sha256: "00".repeat(32),
            },
            etcd_sha256: "11".repeat(32),
            stored: StoredObject {
                name: "etcd.db.zst".into(),
                size: 100,
                sha256: "22".repeat(32),
                compression: Compression::Zstd { level: 3 },
                encryption: None,
            },
            created_at: at,
            completed_at: at,
            duration_seconds: 1.0,
            producer: Producer {
                tool: "etcd-dr".into(),
                host: "bastion".into(),
            },
            nodes: Vec::new(),
            signature: None,
            kubernetes: None,
        }
    }

    fn facts(node: &str, host: &str, ip: &str) -> NodeFacts {
        NodeFacts {
            node: node.into(),
            host_name: host.into(),
            pod: Ok(EtcdPod {
                name: Some(host.split('.').next().unwrap().into()),
                data_dir: Some("/var/lib/etcd".into()),
                data_dir_flag: Some("/var/lib/etcd".into()),
                peer_urls: vec![format!("https://{ip}:2380")],
                client_urls: vec![format!("https://{ip}:2379")],
                image: None,
            }),
            data_dir: Some("/var/lib/etcd".into()),
            data_dir_exists: true,
            tool_path: Some("/usr/bin/etcdutl".into()),
            tool_version: EtcdVersion::parse("3.5.16"),
            tool_bumps: true,
            free_bytes: Some(1 << 30),
        }
    }

    fn inputs(manifest: &SnapshotManifest, secondary: Option<i64>) -> PreflightInputs<'_> {
        PreflightInputs {
            manifest,
            restored_revision: manifest.etcd.revision,
            restored_size: manifest.raw.size,
            promotion_id: "p1",
            secondary_revision: secondary,
            bump_margin: 1_000_000_000,
            free_space_factor: 2,
            etcdutl: "etcdutl",
            etcdctl: "etcdctl",
            extra_problems: vec![],
            extra_warnings: vec![],
        }
    }

    #[test]
    fn the_bump_clears_both_sides() {
        // Secondary ahead of the snapshot: the bump covers the gap plus the margin.
        assert_eq!(bump_revision(100, Some(5000), 1000), 4900 + 1000);
        // Secondary behind: the margin alone.
        assert_eq!(bump_revision(5000, Some(100), 1000), 1000);
        assert_eq!(bump_revision(5000, None, 1000), 1000);
        let plan_revision =
            |snap: i64, secondary: i64| snap + bump_revision(snap, Some(secondary), 1) as i64;
        assert!(plan_revision(100, 5000) > 5000);
        assert!(plan_revision(5000, 100) > 5000);
    }

    #[test]
    fn three_nodes_make_one_plan() {
        let manifest = manifest("3.5.16", 4000, &["cp1", "cp2", "cp3"]);
        let facts: Vec<_> = [
            ("cp1", "10.1.0.11"),
            ("cp2", "10.1.0.12"),
            ("cp3", "10.1.0.13"),
        ]
        .iter()
        .map(|(n, ip)| Ok(facts(n, &format!("{n}.eu.example"), ip)))
        .collect();
        let plan = evaluate_preflight(&facts, inputs(&manifest, Some(9000))).unwrap();
        assert_eq!(
            plan.initial_cluster,
            "cp1=https://10.1.0.11:2380,cp2=https://10.1.0.12:2380,cp3=https://10.1.0.13:2380"
        );
        assert_eq!(plan.bump_revision, Some(5000 + 1_000_000_000));
        assert_eq!(plan.expected_min_revision, 9000 + 1_000_000_000);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        let argv = plan.restore_argv(
            &plan.nodes[1],
            "/var/lib/etcd/etcd-dr-p1/snapshot.db",
            "/var/lib/etcd/etcd-dr-p1/restored",
        );
        assert_eq!(
            argv.join(" "),
            "etcdutl snapshot restore /var/lib/etcd/etcd-dr-p1/snapshot.db --name cp2 \
             --initial-cluster cp1=https://10.1.0.11:2380,cp2=https://10.1.0.12:2380,cp3=https://10.1.0.13:2380 \
             --initial-cluster-token etcd-dr-p1 --initial-advertise-peer-urls https://10.1.0.12:2380 \
             --data-dir /var/lib/etcd/etcd-dr-p1/restored --bump-revision 1000005000 --mark-compacted"
        );
        assert_eq!(plan.nodes[0].work_dir, "/var/lib/etcd/etcd-dr-p1");
    }

    #[test]
    fn etcd_34_restores_with_etcdctl_and_no_bump() {
        let manifest = manifest("3.4.23", 50, &["cp1"]);
        let mut node = facts("cp1", "cp1", "10.1.0.11");
        node.tool_path = Some("/usr/bin/etcdctl".into());
        node.tool_version = EtcdVersion::parse("3.4.23");
        node.tool_bumps = false;
        let plan = evaluate_preflight(&[Ok(node)], inputs(&manifest, Some(10))).unwrap();
        assert_eq!(plan.bump_revision, None);
        assert_eq!(plan.expected_min_revision, 50);
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
        let argv = plan.restore_argv(&plan.nodes[0], "/s.db", "/t");
        assert_eq!(
            &argv[..5],
            ["env", "ETCDCTL_API=3", "etcdctl", "snapshot", "restore"]
        );
        assert!(!argv.contains(&"--bump-revision".to_string()));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let manifest = manifest("3.5.16", 4000, &["cp1", "cp2", "cp3"]);
        let mut wrong_version = facts("cp1", "cp1", "10.1.0.11");
        wrong_version.tool_version = EtcdVersion::parse("3.4.23");
        let mut stranger = facts("cp2", "node-b", "10.1.0.12");
        stranger.free_bytes = Some(1500);
        let mut no_tool = facts("cp3", "cp3", "10.1.0.13");
        no_tool.tool_path = None;
        no_tool.pod = Err("cannot read `/etc/kubernetes/manifests/etcd.yaml`".into());
        let facts = vec![
            Ok(wrong_version),
            Ok(stranger),
            Ok(no_tool),
            Err("cp4: unreachable over ssh".into()),
        ];
        let mut inputs = inputs(&manifest, None);
        inputs
            .extra_problems
            .push("snapshot has no service-account keys".into());
        let problems = evaluate_preflight(&facts, inputs).unwrap_err();
        let expected = [
            "snapshot has no service-account keys",
            "cp1: `/usr/bin/etcdutl` is etcd 3.4.23, the snapshot is etcd 3.5.16",
            "cp2: 1500 bytes free at `/var/lib/etcd`, the restore needs 2000",
            "cp3: cannot read",
            "cp3: `etcdutl` not found",
            "cp4: unreachable over ssh",
            "host names that are not members of the primary's etcd (cp1, cp2, cp3): cp2 (host name `node-b`)",
        ];
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for (problem, start) in problems.iter().zip(expected) {
            assert!(problem.starts_with(start), "{problem} / {start}");
        }
    }

    #[test]
    fn fewer_nodes_than_members_is_a_warning() {
        let manifest = manifest("3.5.16", 10, &["cp1", "cp2", "cp3"]);
        let plan = evaluate_preflight(
            &[Ok(facts("cp1", "cp1", "127.0.0.1"))],
            inputs(&manifest, Some(5)),
        )
        .unwrap();
        assert_eq!(plan.initial_cluster, "cp1=https://127.0.0.1:2380");
        assert!(
            plan.warnings[0].contains("cp2, cp3 have no node here"),
            "{:?}",
            plan.warnings
        );
    }
}
