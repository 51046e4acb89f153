//! Promote end to end: a real primary etcd snapshotted by `etcd-dr snapshot`, a secondary control
//! plane whose etcd is run by a kubelet stand-in from a kubeadm-shaped static pod manifest, and
//! the promotion restoring the primary's snapshot onto it.
//!
//! Here: the local executor (an in-place restore on this machine, one node named after this
//! host).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use etcd_dr_core::PromotionMode;
use etcd_dr_e2e::kubelet::{
    answers, dump_member, etcd_pod_manifest, kill_pidfile, member_names, member_revision, put_keys,
    write_standin, EtcdPodSpec,
};
use etcd_dr_e2e::{
    free_port, wait_for, EtcdCluster, EtcdDr, EtcdOptions, EtcdVersion, FillSpec, StoreTarget,
};
use etcd_dr_nodes::{LocalExecutor, Node, NodeRole};
use etcd_dr_restore::{
    PromoteConfig, Promoter, PromotionRecord, PromotionRequest, PromotionState, PromotionTracker,
    ServiceAccountKeys, StepName, StepState,
};
use etcd_dr_scheduler::EtcdConfig;
use etcd_dr_transport::{read_promotion_marker, SnapshotLayout};
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
