//! Promote end to end: a real primary etcd snapshotted by `etcd-dr snapshot`, a secondary control
//! plane whose etcd is run by a kubelet stand-in from a kubeadm-shaped static pod manifest, and
//! the promotion restoring the primary's snapshot onto it.
//!
//! Two grounds: the local executor (an in-place restore on this machine, one node named after
//! this host), and three namespace nodes cp1..cp3 with their own sshd, `/etc/kubernetes` and
//! `/var/lib/etcd`, reached over ssh, whose files also provide the snapshot's (encrypted) node
//! bundles with the primary's service-account keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use etcd_dr_core::PromotionMode;
use etcd_dr_e2e::kubelet::{
    answers, dump_member, etcd_pod_manifest, kill_pidfile, member_names, member_revision, put_keys,
    write_standin, EtcdPodSpec,
};
use etcd_dr_e2e::nodes::{ControlPlaneNodes, KubeadmFiles};
use etcd_dr_e2e::{
    free_port, wait_for, EtcdCluster, EtcdDr, EtcdOptions, EtcdVersion, FillSpec, StoreTarget,
};
use etcd_dr_nodes::{LocalExecutor, Node, NodeRole, SshExecutor};
use etcd_dr_restore::{
    PromoteConfig, Promoter, PromotionRecord, PromotionRequest, PromotionState, PromotionTracker,
    ServiceAccountKeys, StepName, StepState,
};
use etcd_dr_scheduler::EtcdConfig;
use etcd_dr_transport::{generate_identity, read_promotion_marker, Identities, SnapshotLayout};
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// One secondary control-plane node on this machine: its own Kubernetes dir, data dir and etcd
/// (run by the kubelet stand-in), killed on drop.
struct LocalSecondary {
    dir: tempfile::TempDir,
    standin: PathBuf,
    client_url: String,
}

impl LocalSecondary {
    fn start(host: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("etcd-dr-secondary-")
            .tempdir()
            .unwrap();
        let kube = dir.path().join("etc-kubernetes");
        std::fs::create_dir_all(kube.join("manifests")).unwrap();
        std::fs::create_dir_all(kube.join("pki")).unwrap();
        std::fs::write(kube.join("pki/sa.key"), "secondary sa.key").unwrap();
        std::fs::write(kube.join("pki/sa.pub"), "secondary sa.pub").unwrap();
        let data = dir.path().join("var-lib-etcd");
        let client_url = format!("http://127.0.0.1:{}", free_port());
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let manifest = etcd_pod_manifest(&EtcdPodSpec {
            name: host,
            data_dir: data.to_str().unwrap(),
            client_url: &client_url,
            peer_url: &peer_url,
            initial_cluster: &format!("{host}={peer_url}"),
            token: "secondary",
        });
        std::fs::write(kube.join("manifests/etcd.yaml"), manifest).unwrap();
        let standin = write_standin(dir.path());
        let node = Self {
            dir,
            standin,
            client_url,
        };
        node.kubelet("start");
        node.wait_serving();
        node
    }

    fn endpoints(&self) -> Vec<String> {
        vec![self.client_url.clone()]
    }

    fn kube(&self) -> PathBuf {
        self.dir.path().join("etc-kubernetes")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("var-lib-etcd")
    }

    fn kubelet_argv(&self, action: &str) -> Vec<String> {
        vec![
            "sh".into(),
            self.standin.display().to_string(),
            action.into(),
            self.kube()
                .join("manifests/etcd.yaml")
                .display()
                .to_string(),
            self.kube().join("standin").display().to_string(),
            EtcdVersion::V3_5.bin("etcd").display().to_string(),
        ]
    }

    fn kubelet(&self, action: &str) {
        let argv = self.kubelet_argv(action);
        let status = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .status()
            .unwrap();
        assert!(status.success(), "kubelet stand-in {action}");
    }

    fn wait_serving(&self) {
        wait_for("the secondary's etcd", Duration::from_secs(20), || {
            answers(&self.client_url).then_some(())
        });
    }

    fn config(&self, etcdutl: &Path) -> PromoteConfig {
        let mut config = PromoteConfig::new(EtcdConfig::plain(vec![self.client_url.clone()]));
        config.etcd_manifest = self
            .kube()
            .join("manifests/etcd.yaml")
            .display()
            .to_string();
        config.kubernetes_dir = self.kube().display().to_string();
        config.etcdutl = etcdutl.display().to_string();
        config.stop_control_plane = vec![self.kubelet_argv("stop")];
        config.start_control_plane = vec![self.kubelet_argv("start")];
        config.etcd_stopped_check = self.kubelet_argv("stopped");
        config.stop_timeout = Duration::from_secs(20);
        config.health_timeout = Duration::from_secs(30);
        config.work_dir = self.dir.path().join("bastion-work");
        config
    }
}

impl Drop for LocalSecondary {
    fn drop(&mut self) {
        kill_pidfile(&self.kube().join("standin/etcd.pid"));
    }
}

struct Primary {
    etcd: EtcdCluster,
    store: tempfile::TempDir,
    dr: EtcdDr,
}

/// A one-member primary named `host`, filled and snapshotted into a local store.
fn primary_with_snapshot(host: &str) -> Primary {
    let etcd = EtcdCluster::start(EtcdOptions {
        member_names: vec![host.to_string()],
        ..EtcdOptions::default()
    });
    etcd.fill(FillSpec::objects(200));
    let store = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        "",
    );
    dr.run_ok(&["snapshot"]);
    Primary { etcd, store, dr }
}

fn keys() -> ServiceAccountKeys {
    ServiceAccountKeys {
        key: b"-----BEGIN PRIVATE KEY-----\nprimary\n-----END PRIVATE KEY-----\n".to_vec(),
        public: b"-----BEGIN PUBLIC KEY-----\nprimary\n-----END PUBLIC KEY-----\n".to_vec(),
    }
}

fn promote(
    config: PromoteConfig,
    store_dir: &Path,
    host: &str,
    request: PromotionRequest,
) -> PromotionRecord {
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(store_dir).unwrap());
    let layout = SnapshotLayout::new("", "prod").unwrap();
    let node = Node::new(NodeRole::ControlPlane, Arc::new(LocalExecutor::new(host)));
    let mut promoter = Promoter::new(config, store, layout, vec![node], vec![]).unwrap();
    promoter.service_account_keys = Some(keys());
    let tracker = PromotionTracker::new(PromotionRecord::new(
        etcd_dr_restore::new_promotion_id(chrono_now()),
        request,
        "test@here".into(),
    ));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(promoter.run(&tracker, &CancellationToken::new()));
    tracker.snapshot()
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn marker_of(store_dir: &Path) -> Option<etcd_dr_core::PromotionMarker> {
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(store_dir).unwrap());
    let layout = SnapshotLayout::new("", "prod").unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(read_promotion_marker(&store, &layout))
        .unwrap()
}

fn dump_json(record: &PromotionRecord) -> String {
    serde_json::to_string_pretty(record).unwrap()
}

#[test]
fn local_in_place_restore_serves_the_primary_with_a_bumped_revision() {
    let host = this_host();
    let primary = primary_with_snapshot(&host);
    let primary_keys = primary.etcd.dump();
    let primary_revision = primary.etcd.revision();

    let node = LocalSecondary::start(&host);
    // The secondary is ahead of the primary: the bump must clear its revision too.
    let secondary_revision = put_keys(&node.endpoints(), "/secondary-only", 400);
    assert!(secondary_revision > primary_revision);

    let config = node.config(&EtcdVersion::V3_5.bin("etcdutl"));
    let record = promote(
        config.clone(),
        primary.store.path(),
        &host,
        PromotionRequest::default(),
    );
    assert_eq!(
        record.state,
        PromotionState::Succeeded,
        "{}",
        dump_json(&record)
    );
    for step in [
        StepName::Select,
        StepName::Fence,
        StepName::Verify,
        StepName::Preflight,
        StepName::Restore,
        StepName::Health,
        StepName::After,
    ] {
        assert_eq!(
            record.step(step).progress.state,
            StepState::Done,
            "{step:?}: {}",
            dump_json(&record)
        );
    }
    assert_eq!(
        record.step(StepName::Rollback).progress.state,
        StepState::Skipped
    );
    assert_eq!(record.step(StepName::Restore).nodes[0].node, host);

    // Every primary key, nothing of the secondary's own.
    let restored = dump_member(&node.client_url);
    assert_eq!(restored.len(), primary_keys.len());
    assert!(
        restored == primary_keys,
        "restored keys differ from the primary's"
    );
    assert_eq!(member_names(&node.endpoints()), vec![host.clone()]);
    let revision = member_revision(&node.client_url);
    assert!(
        revision > secondary_revision + 999_000_000 && revision > primary_revision + 999_000_000,
        "revision {revision} not bumped above {secondary_revision} and {primary_revision}"
    );
    let plan = record.plan.as_ref().unwrap();
    assert_eq!(plan.secondary_revision, Some(secondary_revision));
    assert_eq!(
        plan.bump_revision,
        Some((secondary_revision - primary_revision) as u64 + 1_000_000_000)
    );

    // The primary's service-account keys, the old ones kept.
    let work = node.data().join(format!("etcd-dr-{}", record.id));
    assert_eq!(
        std::fs::read(node.kube().join("pki/sa.key")).unwrap(),
        keys().key
    );
    assert_eq!(
        std::fs::read(node.kube().join("pki/sa.pub")).unwrap(),
        keys().public
    );
    assert_eq!(
        std::fs::read_to_string(work.join("kubernetes/pki/sa.key")).unwrap(),
        "secondary sa.key"
    );
    // The old data dir kept aside, never deleted.
    assert!(work.join("old/member/snap/db").is_file());
    assert!(!work.join("snapshot.db").exists());

    // The fence names this promotion and snapshot.
    let marker = marker_of(primary.store.path()).unwrap();
    assert_eq!(marker.promotion_id, record.id);
    assert_eq!(marker.mode, PromotionMode::Failover);
    assert_eq!(Some(marker.snapshot), record.snapshot);

    // A second promotion stops at the fence and changes nothing.
    let again = promote(
        config,
        primary.store.path(),
        &host,
        PromotionRequest::default(),
    );
    assert_eq!(again.state, PromotionState::Failed, "{}", dump_json(&again));
    assert_eq!(
        again.step(StepName::Fence).progress.state,
        StepState::Failed
    );
    assert!(
        again.error.as_deref().unwrap().contains(&record.id),
        "{:?}",
        again.error
    );
    assert_eq!(member_revision(&node.client_url), revision);
    drop(primary.dr);
}

#[test]
fn a_failing_restore_is_rolled_back_and_the_old_cluster_serves() {
    let host = this_host();
    let primary = primary_with_snapshot(&host);
    let node = LocalSecondary::start(&host);
    put_keys(&node.endpoints(), "/secondary-only", 20);
    let before = dump_member(&node.client_url);
    let before_revision = member_revision(&node.client_url);

    // An etcdutl that answers the preflight like the real one but fails to restore.
    let wrapper = node.dir.path().join("etcdutl-failing");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1 $2\" = \"snapshot restore\" ] && [ \"$3\" != --help ]; then echo 'simulated: disk on fire' >&2; exit 3; fi\nexec {} \"$@\"\n",
            EtcdVersion::V3_5.bin("etcdutl").display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x", wrapper.to_str().unwrap()])
        .status()
        .unwrap();

    let record = promote(
        node.config(&wrapper),
        primary.store.path(),
        &host,
        PromotionRequest::default(),
    );
    assert_eq!(
        record.state,
        PromotionState::RolledBack,
        "{}",
        dump_json(&record)
    );
    let restore = record.step(StepName::Restore);
    assert_eq!(restore.progress.state, StepState::Failed);
    assert_eq!(restore.nodes[0].progress.state, StepState::RolledBack);
    assert!(
        record
            .error
            .as_deref()
            .unwrap()
            .contains("simulated: disk on fire"),
        "{:?}",
        record.error
    );
    assert_eq!(
        record.step(StepName::Rollback).progress.state,
        StepState::Done,
        "{}",
        dump_json(&record)
    );

    // The old cluster serves its own data at its own revision, with its own keys.
    node.wait_serving();
    assert!(
        dump_member(&node.client_url) == before,
        "the secondary's data changed"
    );
    assert_eq!(member_revision(&node.client_url), before_revision);
    assert_eq!(
        std::fs::read_to_string(node.kube().join("pki/sa.key")).unwrap(),
        "secondary sa.key"
    );
}

#[test]
fn a_dry_run_plans_and_changes_nothing() {
    let host = this_host();
    let primary = primary_with_snapshot(&host);
    let node = LocalSecondary::start(&host);
    let revision = put_keys(&node.endpoints(), "/secondary-only", 5);
    let pid = std::fs::read_to_string(node.kube().join("standin/etcd.pid")).unwrap();

    let request = PromotionRequest {
        dry_run: true,
        ..PromotionRequest::default()
    };
    let record = promote(
        node.config(&EtcdVersion::V3_5.bin("etcdutl")),
        primary.store.path(),
        &host,
        request,
    );
    assert_eq!(
        record.state,
        PromotionState::Planned,
        "{}",
        dump_json(&record)
    );
    assert_eq!(
        record.step(StepName::Fence).progress.state,
        StepState::Skipped
    );
    assert_eq!(
        record.step(StepName::Restore).progress.state,
        StepState::Skipped
    );
    let plan = record.plan.as_ref().unwrap();
    assert_eq!(plan.nodes[0].member_name, host);
    assert_eq!(plan.nodes[0].data_dir, node.data().display().to_string());
    assert!(plan
        .initial_cluster
        .starts_with(&format!("{host}=http://127.0.0.1:")));

    assert!(
        marker_of(primary.store.path()).is_none(),
        "a dry run wrote the fence"
    );
    assert_eq!(member_revision(&node.client_url), revision);
    assert_eq!(
        std::fs::read_to_string(node.kube().join("standin/etcd.pid")).unwrap(),
        pid
    );
    let entries: Vec<_> = std::fs::read_dir(node.data())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["member"]);
}

// ---------------------------------------------------------------------------------------------
// Three namespace nodes over ssh.

/// The secondary control plane on three namespace nodes: each node's etcd (3 members, plain
/// HTTP on the node's own loopback address) run by the kubelet stand-in from its own
/// `/etc/kubernetes/manifests/etcd.yaml`.
struct SshSecondary {
    ground: ControlPlaneNodes,
    standin: PathBuf,
    client_urls: Vec<String>,
    files: KubeadmFiles,
}

const STANDIN_STATE: &str = "/etc/kubernetes/standin";
const ETCD_MANIFEST: &str = "/etc/kubernetes/manifests/etcd.yaml";

impl SshSecondary {
    /// Starts the nodes with kubeadm-shaped files (these play the primary's nodes for the
    /// bundles); call [`Self::become_secondary`] once the snapshot is taken.
    fn start() -> Self {
        let ground = ControlPlaneNodes::start(3);
        let files = ground.populate_kubeadm();
        let standin = write_standin(ground.dir());
        Self {
            ground,
            standin,
            client_urls: Vec::new(),
            files,
        }
    }

    /// Gives every node the secondary's own service-account keys and etcd (its own peer URLs,
    /// same member names), starts them and waits until the cluster serves.
    fn become_secondary(&mut self) {
        let peers: Vec<(String, String, String)> = self
            .ground
            .nodes()
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    format!("http://{}:{}", n.address, free_port()),
                    format!("http://{}:{}", n.address, free_port()),
                )
            })
            .collect();
        let initial_cluster = peers
            .iter()
            .map(|(name, _, peer)| format!("{name}={peer}"))
            .collect::<Vec<_>>()
            .join(",");
        for (index, (name, client, peer)) in peers.iter().enumerate() {
            let node = self.ground.node(index);
            std::fs::write(
                node.host_path(ETCD_MANIFEST),
                etcd_pod_manifest(&EtcdPodSpec {
                    name,
                    data_dir: "/var/lib/etcd",
                    client_url: client,
                    peer_url: peer,
                    initial_cluster: &initial_cluster,
                    token: "secondary",
                }),
            )
            .unwrap();
            std::fs::write(
                node.host_path("/etc/kubernetes/pki/sa.key"),
                format!("secondary sa.key of {name}"),
            )
            .unwrap();
            std::fs::write(
                node.host_path("/etc/kubernetes/pki/sa.pub"),
                format!("secondary sa.pub of {name}"),
            )
            .unwrap();
        }
        self.client_urls = peers.into_iter().map(|(_, client, _)| client).collect();
        for index in 0..3 {
            let out = self
                .ground
                .ssh(index, &self.kubelet_argv("start").join(" "));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.wait_serving();
    }

    fn kubelet_argv(&self, action: &str) -> Vec<String> {
        vec![
            "sh".into(),
            self.standin.display().to_string(),
            action.into(),
            ETCD_MANIFEST.into(),
            STANDIN_STATE.into(),
            EtcdVersion::V3_5.bin("etcd").display().to_string(),
        ]
    }

    fn wait_serving(&self) {
        for url in &self.client_urls {
            wait_for("a secondary member", Duration::from_secs(30), || {
                answers(url).then_some(())
            });
        }
        wait_for("the secondary's leader", Duration::from_secs(30), || {
            (member_names(&self.client_urls).len() == 3).then_some(())
        });
    }

    fn config(&self, work: &Path) -> PromoteConfig {
        let mut config = PromoteConfig::new(EtcdConfig::plain(self.client_urls.clone()));
        config.stop_control_plane = vec![self.kubelet_argv("stop")];
        config.start_control_plane = vec![self.kubelet_argv("start")];
        config.etcd_stopped_check = self.kubelet_argv("stopped");
        config.stop_timeout = Duration::from_secs(20);
        config.health_timeout = Duration::from_secs(40);
        config.work_dir = work.to_path_buf();
        config
    }

    fn nodes(&self) -> Vec<Node> {
        (0..3)
            .map(|index| {
                let executor = SshExecutor {
                    ssh_config: Some(self.ground.ssh_config().to_path_buf()),
                    connect_timeout: Duration::from_secs(5),
                    ..SshExecutor::new(self.ground.node(index).name.clone())
                };
                Node::new(NodeRole::ControlPlane, Arc::new(executor))
            })
            .collect()
    }

    fn promote(&self, config: PromoteConfig, store_dir: &Path, identity: &Path) -> PromotionRecord {
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(store_dir).unwrap());
        let layout = SnapshotLayout::new("", "prod").unwrap();
        let mut promoter = Promoter::new(config, store, layout, self.nodes(), vec![]).unwrap();
        promoter.identities = Identities::load(identity).unwrap();
        let tracker = PromotionTracker::new(PromotionRecord::new(
            etcd_dr_restore::new_promotion_id(chrono_now()),
            PromotionRequest::default(),
            "test@here".into(),
        ));
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(promoter.run(&tracker, &CancellationToken::new()));
        tracker.snapshot()
    }
}

impl Drop for SshSecondary {
    fn drop(&mut self) {
        for node in self.ground.nodes() {
            kill_pidfile(&node.host_path(&format!("{STANDIN_STATE}/etcd.pid")));
        }
    }
}

/// A three-member primary named cp1..cp3, filled, snapshotted with encrypted node bundles taken
/// from the ground's nodes.
fn primary_with_bundles(secondary: &SshSecondary) -> (Primary, PathBuf) {
    let etcd = EtcdCluster::start(EtcdOptions {
        members: 3,
        member_names: vec!["cp1".into(), "cp2".into(), "cp3".into()],
        ..EtcdOptions::default()
    });
    etcd.fill(FillSpec::objects(200));
    let store = tempfile::tempdir().unwrap();
    let (identity, recipient) = generate_identity();
    let identity_file = store.path().join("identity.txt");
    std::fs::write(&identity_file, identity).unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(&store.path().join("bucket")),
        &format!(
            "{}\n[encryption]\nrecipients = [\"{recipient}\"]\n",
            secondary.ground.config_section()
        ),
    );
    dr.run_ok(&["snapshot"]);
    let manifest = &dr.list_json()[0];
    assert_eq!(manifest["nodes"].as_array().unwrap().len(), 3, "{manifest}");
    (Primary { etcd, store, dr }, identity_file)
}

#[test]
fn promote_over_ssh_restores_the_primary_on_three_nodes() {
    let mut secondary = SshSecondary::start();
    let (primary, identity) = primary_with_bundles(&secondary);
    let primary_keys = primary.etcd.dump();
    let primary_revision = primary.etcd.revision();
    secondary.become_secondary();
    let secondary_revision = put_keys(&secondary.client_urls, "/secondary-only", 400);
    assert!(secondary_revision > primary_revision);

    let config = secondary.config(&primary.store.path().join("work"));
    let record = secondary.promote(config, &primary.store.path().join("bucket"), &identity);
    assert_eq!(
        record.state,
        PromotionState::Succeeded,
        "{}",
        dump_json(&record)
    );
    let restore = record.step(StepName::Restore);
    assert_eq!(restore.nodes.len(), 3);
    assert!(restore
        .nodes
        .iter()
        .all(|n| n.progress.state == StepState::Done));

    // The restored cluster: the secondary's peer URLs, the primary's member names and keys.
    let plan = record.plan.as_ref().unwrap();
    for (index, node) in plan.nodes.iter().enumerate() {
        assert_eq!(node.member_name, format!("cp{}", index + 1));
        assert!(
            node.peer_urls[0].starts_with(&format!("http://127.0.0.1{}:", index + 1)),
            "{:?}",
            node.peer_urls
        );
    }
    assert_eq!(member_names(&secondary.client_urls), ["cp1", "cp2", "cp3"]);
    for url in &secondary.client_urls {
        let restored = dump_member(url);
        assert_eq!(restored.len(), primary_keys.len(), "{url}");
        assert!(
            restored == primary_keys,
            "{url} serves other data than the primary's"
        );
        let revision = member_revision(url);
        assert!(
            revision > secondary_revision + 999_000_000,
            "{url}: revision {revision}"
        );
    }
    for (index, node) in secondary.ground.nodes().iter().enumerate() {
        // The primary's service-account keys, from the encrypted bundle; the node's own kept.
        assert_eq!(
            std::fs::read_to_string(node.host_path("/etc/kubernetes/pki/sa.key")).unwrap(),
            secondary.files.sa_key
        );
        let work = format!("/var/lib/etcd/etcd-dr-{}", record.id);
        assert_eq!(
            std::fs::read_to_string(node.host_path(&format!("{work}/kubernetes/pki/sa.key")))
                .unwrap(),
            format!("secondary sa.key of cp{}", index + 1)
        );
        assert!(node
            .host_path(&format!("{work}/old/member/snap/db"))
            .is_file());
    }
}

#[test]
fn a_restore_failing_on_one_node_rolls_every_node_back() {
    let mut secondary = SshSecondary::start();
    let (primary, identity) = primary_with_bundles(&secondary);
    secondary.become_secondary();
    put_keys(&secondary.client_urls, "/secondary-only", 30);
    let before = dump_member(&secondary.client_urls[0]);
    let before_revision = member_revision(&secondary.client_urls[0]);

    // etcdutl fails on cp2 only (the preflight still sees a good tool everywhere).
    let wrapper = secondary.ground.dir().join("etcdutl-fails-on-cp2");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$(hostname)\" = cp2 ] && [ \"$1 $2\" = \"snapshot restore\" ] && [ \"$3\" != --help ]; then echo 'simulated: cp2 disk full' >&2; exit 3; fi\nexec {} \"$@\"\n",
            EtcdVersion::V3_5.bin("etcdutl").display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x", wrapper.to_str().unwrap()])
        .status()
        .unwrap();
    let mut config = secondary.config(&primary.store.path().join("work"));
    config.etcdutl = wrapper.display().to_string();

    let record = secondary.promote(config, &primary.store.path().join("bucket"), &identity);
    assert_eq!(
        record.state,
        PromotionState::RolledBack,
        "{}",
        dump_json(&record)
    );
    let error = record.error.as_deref().unwrap();
    assert!(
        error.contains("cp2") && error.contains("simulated: cp2 disk full"),
        "{error}"
    );
    let rollback = record.step(StepName::Rollback);
    assert_eq!(
        rollback.progress.state,
        StepState::Done,
        "{}",
        dump_json(&record)
    );
    assert_eq!(rollback.nodes.len(), 3);
    assert!(
        record
            .step(StepName::Restore)
            .nodes
            .iter()
            .all(|n| n.progress.state == StepState::RolledBack),
        "{}",
        dump_json(&record)
    );

    // Every member serves the secondary's own data again, at its old revision, with its keys.
    secondary.wait_serving();
    assert_eq!(member_names(&secondary.client_urls), ["cp1", "cp2", "cp3"]);
    for url in &secondary.client_urls {
        wait_for("the old data", Duration::from_secs(20), || {
            (dump_member(url) == before).then_some(())
        });
        assert_eq!(member_revision(url), before_revision, "{url}");
    }
    for (index, node) in secondary.ground.nodes().iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(node.host_path("/etc/kubernetes/pki/sa.key")).unwrap(),
            format!("secondary sa.key of cp{}", index + 1)
        );
    }
}
