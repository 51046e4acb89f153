//! Promote end to end: a real primary etcd snapshotted by `etcd-dr snapshot`, a secondary control
//! plane whose etcd is run by a kubelet stand-in from a kubeadm-shaped static pod manifest, and
//! the promotion restoring the primary's snapshot onto it.
//!
//! Two grounds: the local executor (an in-place restore on this machine, one node named after
//! this host), and three namespace nodes cp1..cp3 with their own sshd, `/etc/kubernetes` and
//! `/var/lib/etcd`, reached over ssh, whose files also provide the snapshot's (encrypted) node
//! bundles with the primary's service-account keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use etcd_dr_core::PromotionMode;
use etcd_dr_e2e::kube_recorder::KubeRecorder;
use etcd_dr_e2e::kubelet::{
    answers, delete_key, dump_member, etcd_pod_manifest, kill_pidfile, member_names,
    member_revision, put_keys, write_standin, EtcdPodSpec,
};
use etcd_dr_e2e::secondary::SshSecondary;
use etcd_dr_e2e::{
    free_port, http_request, terminate, wait_for, EtcdCluster, EtcdDr, EtcdOptions, EtcdVersion,
    FillSpec, HttpResponse, StoreTarget,
};
use etcd_dr_nodes::{LocalExecutor, Node, NodeRole};
use etcd_dr_restore::{
    PromoteConfig, Promoter, PromotionRecord, PromotionRequest, PromotionState, PromotionTracker,
    RestoreTool, ServiceAccountKeys, StepName, StepState,
};
use etcd_dr_scheduler::EtcdConfig;
use etcd_dr_transport::{
    acquire_restore_lock, generate_identity, read_promotion_marker, Identities, SnapshotLayout,
};
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
    version: EtcdVersion,
}

impl LocalSecondary {
    fn start(host: &str) -> Self {
        Self::start_version(host, EtcdVersion::V3_5)
    }

    fn start_version(host: &str, version: EtcdVersion) -> Self {
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
            version,
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
            self.version.bin("etcd").display().to_string(),
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

    /// `[nodes]` (this host, local executor) and `[promote]` sections for the binary.
    fn sections(&self, work: &Path, extra_promote: &str) -> String {
        let toml_argv = |action: &str| {
            let words: Vec<String> = self
                .kubelet_argv(action)
                .iter()
                .map(|w| format!("\"{w}\""))
                .collect();
            format!("[{}]", words.join(", "))
        };
        format!(
            "[nodes]\ncontrol_plane = [\"{host}\"]\n[nodes.access]\ntype = \"local\"\n\
             [promote]\netcd_manifest = \"{manifest}\"\nkubernetes_dir = \"{kube}\"\netcdutl = \"{etcdutl}\"\n\
             require_service_account_keys = false\nstop_control_plane = [{stop}]\nstart_control_plane = [{start}]\n\
             etcd_stopped_check = {stopped}\nstop_timeout = \"20s\"\nhealth_timeout = \"30s\"\nwork_dir = \"{work}\"\n\
             {extra_promote}\n[promote.etcd]\nendpoints = [\"{client}\"]\n",
            host = this_host(),
            manifest = self.kube().join("manifests/etcd.yaml").display(),
            kube = self.kube().display(),
            etcdutl = EtcdVersion::V3_5.bin("etcdutl").display(),
            stop = toml_argv("stop"),
            start = toml_argv("start"),
            stopped = toml_argv("stopped"),
            work = work.display(),
            client = self.client_url,
        )
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
    primary_of_version(host, EtcdVersion::V3_5)
}

fn primary_of_version(host: &str, version: EtcdVersion) -> Primary {
    let etcd = EtcdCluster::start(EtcdOptions {
        member_names: vec![host.to_string()],
        version,
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
    promoter.trust = etcd_dr_e2e::test_trust("prod", false);
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
    write_failing_etcdutl(&wrapper, "true", "simulated: disk on fire");

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

#[test]
fn an_etcd_34_snapshot_is_restored_with_etcdctl_without_a_bump() {
    let host = this_host();
    let primary = primary_of_version(&host, EtcdVersion::V3_4);
    let primary_keys = primary.etcd.dump();
    let primary_revision = primary.etcd.revision();
    let node = LocalSecondary::start_version(&host, EtcdVersion::V3_4);
    put_keys(&node.endpoints(), "/secondary-only", 5);

    let mut config = node.config(&EtcdVersion::V3_5.bin("etcdutl"));
    config.etcdctl = EtcdVersion::V3_4.bin("etcdctl").display().to_string();
    let record = promote(
        config,
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
    let plan = record.plan.as_ref().unwrap();
    assert!(
        matches!(&plan.tool, RestoreTool::Etcdctl(p) if p.ends_with("etcdctl")),
        "{:?}",
        plan.tool
    );
    assert_eq!(plan.bump_revision, None);
    assert!(
        record
            .warnings
            .iter()
            .any(|w| w.contains("no --bump-revision")),
        "{:?}",
        record.warnings
    );
    assert!(dump_member(&node.client_url) == primary_keys);
    assert_eq!(member_revision(&node.client_url), primary_revision);
}

// ---------------------------------------------------------------------------------------------
// Three namespace nodes over ssh.

/// Runs the promoter in this process against `secondary`'s nodes, with the identity that opens
/// the snapshot's node bundles.
fn promote_over_ssh(
    secondary: &SshSecondary,
    config: PromoteConfig,
    store_dir: &Path,
    identity: &Path,
) -> PromotionRecord {
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(store_dir).unwrap());
    let layout = SnapshotLayout::new("", "prod").unwrap();
    let mut promoter = Promoter::new(config, store, layout, secondary.nodes(), vec![]).unwrap();
    promoter.identities = Identities::load(identity).unwrap();
    promoter.trust = etcd_dr_e2e::test_trust("prod", true);
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
    let record = promote_over_ssh(
        &secondary,
        config,
        &primary.store.path().join("bucket"),
        &identity,
    );
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
    write_failing_etcdutl(
        &wrapper,
        "[ \"$(hostname)\" = cp2 ]",
        "simulated: cp2 disk full",
    );
    let mut config = secondary.config(&primary.store.path().join("work"));
    config.etcdutl = wrapper.display().to_string();

    let record = promote_over_ssh(
        &secondary,
        config,
        &primary.store.path().join("bucket"),
        &identity,
    );
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

// ---------------------------------------------------------------------------------------------
// The binary: `POST /v1/promote` on the secondary daemon, `etcd-dr promote` on the command line,
// fencing and switchover in the primary daemon.

const TOKEN: &str = "promote-e2e-token-8d1f2a";

fn http_section(addr: SocketAddr, token_file: &Path) -> String {
    format!(
        "[http]\nlisten = \"{addr}\"\ntoken_file = \"{}\"\nstore_check_interval = \"500ms\"\n",
        token_file.display()
    )
}

fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("api-token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path
}

fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> HttpResponse {
    let authorization = format!("Bearer {TOKEN}");
    http_request(
        addr,
        method,
        path,
        &[
            ("Authorization", authorization.as_str()),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let response = http_request(addr, "GET", path, &[], b"").unwrap();
    assert_eq!(response.status, 200, "GET {path}: {}", response.text());
    response.json()
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let text = http_request(addr, "GET", "/metrics", &[], b"")
        .unwrap()
        .text();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name} "))
                .map(|v| v.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{name} not exported"))
}

fn wait_api(addr: SocketAddr) {
    wait_for("the API", Duration::from_secs(20), || {
        http_request(addr, "GET", "/healthz", &[], b"").ok()
    });
}

/// A primary daemon (`etcd-dr run`) on a one-member etcd named after this host, shipping into
/// `store`, looking for fences every 200 ms.
struct PrimaryDaemon {
    etcd: EtcdCluster,
    dr: EtcdDr,
    child: Option<Child>,
    api: SocketAddr,
}

impl PrimaryDaemon {
    fn start(host: &str, store: &Path, interval: &str) -> Self {
        let etcd = EtcdCluster::start(EtcdOptions {
            member_names: vec![host.to_string()],
            ..EtcdOptions::default()
        });
        etcd.fill(FillSpec::objects(100));
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let scratch = tempfile::tempdir().unwrap();
        let token = token_file(scratch.path());
        let dr = EtcdDr::with_sections(
            "prod",
            &etcd.config_section(&etcd.endpoints()),
            &StoreTarget::Local(store),
            &format!(
                "[schedule]\ninterval = \"{interval}\"\n[fencing]\npoll_interval = \"200ms\"\n{}",
                http_section(api, &token)
            ),
        );
        std::mem::forget(scratch);
        let mut child = dr.spawn(&["run"], "primary.log");
        wait_for("the primary's API", Duration::from_secs(20), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the primary exited ({status}): {}", dr.log("primary.log"));
            }
            http_request(api, "GET", "/healthz", &[], b"").ok()
        });
        Self {
            etcd,
            dr,
            child: Some(child),
            api,
        }
    }

    fn snapshots(&self) -> Vec<serde_json::Value> {
        self.dr.list_json()
    }
}

impl Drop for PrimaryDaemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(&child);
            let _ = child.wait_with_output();
        }
    }
}

fn wait_promotion(api: SocketAddr) -> serde_json::Value {
    wait_for("the promotion to end", Duration::from_secs(90), || {
        let record = get_json(api, "/v1/promote");
        (record["state"] != "running").then_some(record)
    })
}

/// Kubernetes API steps: no kube-apiserver installs here, so they run against a small recording
/// HTTP server that checks the exact requests.
#[test]
fn the_api_promotes_once_fences_the_primary_and_calls_the_kubernetes_api() {
    let host = this_host();
    let store = tempfile::tempdir().unwrap();
    let primary = PrimaryDaemon::start(&host, store.path(), "10s");
    // The first run of the schedule comes at once.
    wait_for(
        "the primary's first snapshot",
        Duration::from_secs(30),
        || (!primary.snapshots().is_empty()).then_some(()),
    );
    let primary_keys = primary.etcd.dump();

    let node = LocalSecondary::start(&host);
    let kube = KubeRecorder::start();
    let kube_token = node.dir.path().join("kube-token");
    std::fs::write(&kube_token, "kube-bearer-123\n").unwrap();
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let secondary = EtcdDr::with_sections(
        "prod",
        "",
        &StoreTarget::Local(store.path()),
        &format!(
            "role = \"secondary\"\n{}{}[promote.kubernetes]\napi_server = \"{}\"\ntoken_file = \"{}\"\n[secondary]\npoll_interval = \"1s\"\n",
            http_section(api, &token_file(node.dir.path())),
            node.sections(&node.dir.path().join("bastion"), ""),
            kube.url(),
            kube_token.display()
        ),
    );
    let child = secondary.spawn(&["run"], "secondary.log");
    wait_api(api);
    assert_eq!(metric(api, "etcd_dr_promotion_state"), 0.0);
    let response = http_request(api, "GET", "/v1/promote", &[], b"").unwrap();
    assert_eq!(response.status, 404, "{}", response.text());

    // No token, no promotion; a bad body is named.
    let response = http_request(api, "POST", "/v1/promote", &[], b"{}").unwrap();
    assert_eq!(response.status, 401, "{}", response.text());
    let response = request(api, "POST", "/v1/promote", r#"{"mode":"sideways"}"#);
    assert_eq!(response.status, 400, "{}", response.text());
    // In place is the command line's `etcd-dr restore`, not the daemon's.
    let response = request(api, "POST", "/v1/promote", r#"{"mode":"in-place"}"#);
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response.text().contains("etcd-dr restore"),
        "{}",
        response.text()
    );
    // A restore lock left by a crashed run is a conflict, not a start.
    write_lock(store.path(), "r-crashed");
    let response = request(api, "POST", "/v1/promote", "{}");
    assert_eq!(response.status, 409, "{}", response.text());
    assert!(response.text().contains("r-crashed"), "{}", response.text());
    std::fs::remove_file(store.path().join("prod/restore-lock.json")).unwrap();

    let response = request(
        api,
        "POST",
        "/v1/promote",
        r#"{"snapshot":"latest","mode":"failover"}"#,
    );
    assert_eq!(response.status, 202, "{}", response.text());
    let id = response.json()["id"].as_str().unwrap().to_string();
    // While it runs (or once it ran), a second one is refused.
    let again = request(api, "POST", "/v1/promote", "{}");
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(again.json()["error"], "promotion_conflict");

    let record = wait_promotion(api);
    assert_eq!(record["id"], id.as_str());
    assert_eq!(
        record["state"],
        "succeeded",
        "{record:#}\n{}",
        secondary.log("secondary.log")
    );
    let steps: Vec<(&str, &str)> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("switchover", "skipped"),
            ("select", "done"),
            ("fence", "done"),
            ("verify", "done"),
            ("preflight", "done"),
            ("restore", "done"),
            ("health", "done"),
            ("after", "done"),
            ("rollback", "skipped"),
        ]
    );
    assert!(
        record["steps"][6]["detail"]
            .as_str()
            .unwrap()
            .contains("API server ready"),
        "{record:#}"
    );
    assert!(
        dump_member(&node.client_url) == primary_keys,
        "restored data differs from the primary's"
    );
    assert_eq!(metric(api, "etcd_dr_promotion_state"), 2.0);
    assert!(metric(api, "etcd_dr_promotion_duration_seconds") > 0.0);
    let status = get_json(api, "/v1/status");
    assert_eq!(status["promotion"]["id"], id.as_str());
    assert_eq!(status["promotion"]["state"], "succeeded");
    let again = request(api, "POST", "/v1/promote", "{}");
    assert_eq!(again.status, 409, "{}", again.text());
    assert!(again.json()["detail"].as_str().unwrap().contains(&id));

    // The Kubernetes API saw exactly: readiness, then rollout restarts, then pod deletions.
    let requests = kube.requests();
    let first_non_ready = requests.iter().position(|r| r.target != "/readyz").unwrap();
    assert!(first_non_ready >= 1);
    assert!(requests
        .iter()
        .all(|r| r.authorization.as_deref() == Some("Bearer kube-bearer-123")));
    let calls: Vec<String> = requests[first_non_ready..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(
        calls,
        [
            "GET /apis/apps/v1/deployments",
            "PATCH /apis/apps/v1/namespaces/default/deployments/web",
            "PATCH /apis/apps/v1/namespaces/shop/deployments/cart",
            "GET /apis/apps/v1/daemonsets",
            "PATCH /apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy",
            "DELETE /api/v1/namespaces/kube-system/pods?labelSelector=k8s-app%3Dkube-proxy",
            "DELETE /api/v1/namespaces/kube-system/pods?labelSelector=component%3Dkube-controller-manager",
            "DELETE /api/v1/namespaces/kube-system/pods?labelSelector=component%3Dkube-scheduler",
        ]
    );
    for patch in requests.iter().filter(|r| r.method == "PATCH") {
        assert_eq!(
            patch.content_type.as_deref(),
            Some("application/strategic-merge-patch+json")
        );
        let body: serde_json::Value = serde_json::from_str(&patch.body).unwrap();
        let stamp = body["spec"]["template"]["metadata"]["annotations"]
            ["kubectl.kubernetes.io/restartedAt"]
            .as_str()
            .unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "{stamp}"
        );
    }

    // The primary sees the marker, says so, and ships no more.
    wait_for("the primary to be fenced", Duration::from_secs(10), || {
        (get_json(primary.api, "/v1/status")["fenced"] == true).then_some(())
    });
    let status = get_json(primary.api, "/v1/status");
    assert!(
        status["fenced_reason"].as_str().unwrap().contains(&id),
        "{status:#}"
    );
    assert_eq!(metric(primary.api, "etcd_dr_fenced"), 1.0);
    let shipped = primary.snapshots().len();
    primary.etcd.put("/registry/after-the-fence", b"x");
    // Longer than the schedule's interval: a run came and shipped nothing.
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(
        primary.snapshots().len(),
        shipped,
        "a fenced primary shipped"
    );
    let trigger = request(primary.api, "POST", "/v1/snapshots", "");
    assert_eq!(trigger.status, 409, "{}", trigger.text());
    assert!(primary.dr.log("primary.log").contains("fenced"));

    terminate(&child);
    let _ = child.wait_with_output();
}

#[test]
fn a_switchover_restores_the_primarys_final_snapshot_exactly() {
    let host = this_host();
    let store = tempfile::tempdir().unwrap();
    // The schedule never comes round during the test: only the switchover snapshot is taken.
    let primary = PrimaryDaemon::start(&host, store.path(), "1h");
    let last_revision = put_keys(
        &primary.etcd.endpoints(),
        "/registry/configmaps/default/last",
        25,
    );
    let primary_keys = primary.etcd.dump();

    let node = LocalSecondary::start(&host);
    put_keys(&node.endpoints(), "/secondary-only", 10);
    let secondary = EtcdDr::with_sections(
        "prod",
        "",
        &StoreTarget::Local(store.path()),
        &format!(
            "role = \"secondary\"\n{}",
            node.sections(
                &node.dir.path().join("bastion"),
                "switchover_timeout = \"30s\""
            )
        ),
    );
    // A dry run prints the plan and asks the primary nothing.
    let plan = secondary.run_ok(&["promote", "--switchover", "--dry-run"]);
    assert!(plan.contains("plan (nothing was changed):"), "{plan}");
    assert!(
        plan.contains(&format!("{host}: data dir {}", node.data().display())),
        "{plan}"
    );
    assert!(plan.contains("revision bump  +"), "{plan}");
    assert!(!store.path().join("prod/switchover-request.json").exists());
    assert!(!store.path().join("prod/promotion.json").exists());
    assert_eq!(get_json(primary.api, "/v1/status")["fenced"], false);

    let output = secondary.run(&["promote", "--switchover", "--json"]);
    let progress = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{progress}\n{}",
        primary.dr.log("primary.log")
    );
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["state"], "succeeded", "{record:#}");
    assert!(progress.contains("switchover: done"), "{progress}");
    assert!(progress.contains("restore "), "{progress}");

    // The primary took one final snapshot at its last revision, labelled, and stopped.
    let snapshots = primary.snapshots();
    let last = snapshots.last().unwrap();
    assert_eq!(last["label"], "switchover");
    assert_eq!(last["etcd"]["revision"], last_revision);
    assert_eq!(record["snapshot"], last["id"]);
    let status = get_json(primary.api, "/v1/status");
    assert_eq!(status["fenced"], true, "{status:#}");
    assert_eq!(
        primary.etcd.revision(),
        last_revision,
        "the primary moved on"
    );

    // Nothing lost: the restored data is the primary's last state, its revision that of the
    // primary's last write lifted by exactly the bump.
    assert!(dump_member(&node.client_url) == primary_keys);
    let bump = record["plan"]["bump_revision"].as_i64().unwrap();
    assert_eq!(member_revision(&node.client_url) - bump, last_revision);

    // A second promotion is refused at the fence.
    let output = secondary.run(&["promote"]);
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("already fenced"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// `etcd-dr restore`: a cluster goes back in place to one of its own snapshots.

/// A cluster on this machine (its etcd run by the kubelet stand-in from a kubeadm-shaped
/// manifest) that is the primary of `prod` in `store`: `[etcd]` for its snapshots,
/// `[nodes]`/`[promote]` for restoring it in place.
fn own_cluster(host: &str, store: &Path) -> (LocalSecondary, EtcdDr) {
    let node = LocalSecondary::start(host);
    let dr = EtcdDr::with_sections(
        "prod",
        &format!(
            "[etcd]\nendpoints = [\"{}\"]\nconnect_timeout = \"2s\"\nrequest_timeout = \"5s\"\n",
            node.client_url
        ),
        &StoreTarget::Local(store),
        &format!(
            "[bundle]\nenabled = false\n{}",
            node.sections(&node.dir.path().join("bastion"), "")
        ),
    );
    (node, dr)
}

fn write_lock(store_dir: &Path, id: &str) {
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(store_dir).unwrap());
    let layout = SnapshotLayout::new("", "prod").unwrap();
    let lock = etcd_dr_core::RestoreLock {
        promotion_id: id.into(),
        mode: PromotionMode::InPlace,
        requested_by: "ops@crashed-bastion".into(),
        locked_at: chrono_now(),
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(acquire_restore_lock(&store, &layout, &lock, false))
        .unwrap();
}

fn stdout_and_stderr(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn restore_in_place_goes_back_to_an_earlier_snapshot_and_the_primary_keeps_shipping() {
    let host = this_host();
    let store = tempfile::tempdir().unwrap();
    let (node, dr) = own_cluster(&host, store.path());
    let endpoints = node.endpoints();
    put_keys(&endpoints, "/registry/configmaps/default/kept", 20);
    put_keys(
        &endpoints,
        "/registry/deployments/shop/deleted-by-mistake",
        1,
    );
    let snapshot = dr.snapshot_json(&[]);
    let id = snapshot["id"].as_str().unwrap().to_string();
    let earlier = dump_member(&node.client_url);

    // The mistake: a key written and a key deleted after the snapshot.
    put_keys(&endpoints, "/registry/configmaps/default/written-after", 3);
    let revision = delete_key(
        &endpoints,
        "/registry/deployments/shop/deleted-by-mistake/0",
    );
    assert!(dump_member(&node.client_url) != earlier);
    let pid = std::fs::read_to_string(node.kube().join("standin/etcd.pid")).unwrap();
    let cluster_dir = store.path().join("prod");

    // A dry run prints the plan and changes nothing.
    let plan = dr.run_ok(&["restore", "--snapshot", &id, "--dry-run"]);
    assert!(plan.contains("plan (nothing was changed):"), "{plan}");
    assert!(plan.contains(&format!("snapshot       {id}")), "{plan}");
    assert!(
        plan.contains(&format!("now {revision})")),
        "the plan names the current revision: {plan}"
    );
    assert!(plan.contains("restore r-"), "{plan}");
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
    assert!(!cluster_dir.join("restore-lock.json").exists());
    assert!(!cluster_dir.join("promotion.json").exists());

    // The restore.
    let output = dr.run(&["restore", "--snapshot", &id, "--json"]);
    let progress = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{progress}");
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["state"], "succeeded", "{record:#}");
    assert_eq!(record["request"]["mode"], "in-place");
    assert_eq!(record["snapshot"], id.as_str());
    let restore_id = record["id"].as_str().unwrap();
    assert!(restore_id.starts_with("r-"), "{restore_id}");
    let steps: Vec<(&str, &str)> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("switchover", "skipped"),
            ("select", "done"),
            ("fence", "skipped"),
            ("verify", "done"),
            ("preflight", "done"),
            ("restore", "done"),
            ("health", "done"),
            ("after", "done"),
            ("rollback", "skipped"),
        ]
    );
    assert!(
        progress.contains(&format!("restore {restore_id}: succeeded")),
        "{progress}"
    );

    // Exactly the earlier state: the later key gone, the deleted one back.
    assert!(
        dump_member(&node.client_url) == earlier,
        "the restored data is not the snapshot's"
    );
    // Above everything any watcher saw, by the margin.
    let restored_revision = member_revision(&node.client_url);
    assert!(
        restored_revision > revision + 999_000_000,
        "revision {restored_revision} not bumped above {revision}"
    );
    assert_eq!(record["plan"]["secondary_revision"], revision);
    // The nodes keep their own service-account keys and the old data.
    assert_eq!(
        std::fs::read_to_string(node.kube().join("pki/sa.key")).unwrap(),
        "secondary sa.key"
    );
    assert!(node
        .data()
        .join(format!("etcd-dr-{restore_id}/old/member/snap/db"))
        .is_file());

    // No fence, no lock left: the primary keeps shipping into the same prefix.
    assert!(!cluster_dir.join("promotion.json").exists());
    assert!(!cluster_dir.join("restore-lock.json").exists());
    let after = dr.snapshot_json(&[]);
    assert!(
        after["etcd"]["revision"].as_i64().unwrap() >= restored_revision,
        "{after:#}"
    );
    assert_eq!(dr.list_json().len(), 2);
}

#[test]
fn restore_in_place_refuses_a_fenced_prefix_and_runs_one_at_a_time() {
    let host = this_host();
    let store = tempfile::tempdir().unwrap();
    let (node, dr) = own_cluster(&host, store.path());
    put_keys(&node.endpoints(), "/registry/configmaps/default/a", 5);
    dr.run_ok(&["snapshot"]);
    let revision = put_keys(&node.endpoints(), "/registry/configmaps/default/b", 5);
    let lock_file = store.path().join("prod/restore-lock.json");

    // A restore that crashed holding the lock: refused, naming the holder and the way out.
    write_lock(store.path(), "r-crashed");
    let output = dr.run(&["restore"]);
    assert!(!output.status.success());
    let text = stdout_and_stderr(&output);
    assert!(
        text.contains("r-crashed")
            && text.contains("ops@crashed-bastion")
            && text.contains("restore-lock.json")
            && text.contains("with force"),
        "{text}"
    );
    assert_eq!(member_revision(&node.client_url), revision);
    // `--force` takes the lock over, restores, and gives it back.
    let forced = dr.run_ok(&["restore", "--force"]);
    assert!(forced.contains(": succeeded after"), "{forced}");
    assert!(!lock_file.exists());
    assert!(member_revision(&node.client_url) > revision + 999_000_000);
    let revision = member_revision(&node.client_url);

    // Two at once: one restores, the other is refused at the lock.
    let spawn = || {
        dr.command(&["restore"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let succeeded = outputs.iter().filter(|o| o.status.success()).count();
    let texts: Vec<String> = outputs.iter().map(stdout_and_stderr).collect();
    assert_eq!(succeeded, 1, "{texts:#?}");
    let refused = outputs
        .iter()
        .zip(&texts)
        .find(|(o, _)| !o.status.success())
        .map(|(_, t)| t)
        .unwrap();
    assert!(refused.contains("holds the restore lock"), "{refused}");
    assert!(!lock_file.exists());
    assert!(member_revision(&node.client_url) > revision);
    let revision = member_revision(&node.client_url);

    // A promotion fenced the prefix: refused, even forced and as a dry run; nothing changes.
    let store_handle: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(store.path()).unwrap());
    let marker = etcd_dr_core::PromotionMarker {
        promotion_id: "p-elsewhere".into(),
        mode: PromotionMode::Failover,
        snapshot: dr.list_json()[0]["id"].as_str().unwrap().parse().unwrap(),
        requested_by: "ops@bastion-us".into(),
        fenced_at: chrono_now(),
        replaces: None,
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(etcd_dr_transport::write_promotion_marker(
            &store_handle,
            &SnapshotLayout::new("", "prod").unwrap(),
            &marker,
            false,
        ))
        .unwrap();
    for args in [
        &["restore"][..],
        &["restore", "--force"],
        &["restore", "--dry-run"],
    ] {
        let output = dr.run(args);
        assert!(!output.status.success(), "{args:?}");
        let text = stdout_and_stderr(&output);
        assert!(
            text.contains("p-elsewhere") && text.contains("Failing back"),
            "{args:?}: {text}"
        );
    }
    assert!(!lock_file.exists());
    assert_eq!(member_revision(&node.client_url), revision);
}

/// Writes an etcdutl that answers like the real one (the preflight's version and `--help`
/// checks pass) but fails `snapshot restore` with `message` where the shell test `condition`
/// holds on the node.
fn write_failing_etcdutl(path: &std::path::Path, condition: &str, message: &str) {
    std::fs::write(
        path,
        format!(
            "#!/bin/sh\nif {condition} && [ \"$1 $2\" = \"snapshot restore\" ] && [ \"$3\" != --help ]; then echo '{message}' >&2; exit 3; fi\nexec {} \"$@\"\n",
            EtcdVersion::V3_5.bin("etcdutl").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}
