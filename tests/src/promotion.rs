//! The promote tests' common ground: a primary with a snapshot in a local store, the promoter run
//! in this process, the fence and lock objects read and written as another bastion would, and
//! an etcdutl that fails on purpose.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use etcd_dr_core::{PromotionMarker, PromotionMode, RestoreLock};
use etcd_dr_nodes::{LocalExecutor, Node, NodeRole};
use etcd_dr_restore::{
    AfterAction, PromoteConfig, Promoter, PromotionRecord, PromotionRequest, PromotionState,
    PromotionTracker, ServiceAccountKeys,
};
use etcd_dr_transport::{
    acquire_restore_lock, generate_identity, read_promotion_marker, write_promotion_marker,
    Identities, SnapshotLayout,
};
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::local_secondary::LocalSecondary;
use crate::secondary::SshSecondary;
use crate::{EtcdCluster, EtcdDr, EtcdOptions, EtcdVersion, FillSpec, StoreTarget};

/// A primary etcd, filled and snapshotted into a local store (cluster `prod`).
pub struct Primary {
    /// Its etcd.
    pub etcd: EtcdCluster,
    /// The store directory (with [`primary_with_bundles`], the store is its `bucket`).
    pub store: tempfile::TempDir,
    /// The configuration that took the snapshot.
    pub dr: EtcdDr,
}

/// A one-member etcd 3.5 primary named `host`, filled and snapshotted into a local store.
pub fn primary_with_snapshot(host: &str) -> Primary {
    primary_of_version(host, EtcdVersion::V3_5)
}

/// A one-member primary of etcd `version` named `host`, filled and snapshotted.
pub fn primary_of_version(host: &str, version: EtcdVersion) -> Primary {
    let etcd = EtcdCluster::start(EtcdOptions {
        member_names: vec![host.to_string()],
        version,
        ..EtcdOptions::default()
    });
    etcd.fill(FillSpec::objects(200));
    let store = tempfile::tempdir().expect("store dir");
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        "",
    );
    dr.run_ok(&["snapshot"]);
    Primary { etcd, store, dr }
}

/// A three-member primary named cp1..cp3 (of `secondary`'s etcd version), filled, snapshotted
/// into `<store>/bucket` with encrypted node bundles taken from `secondary`'s nodes; returns
/// the identity file too.
pub fn primary_with_bundles(secondary: &SshSecondary) -> (Primary, PathBuf) {
    primary_with_bundles_and_objects(secondary, &[])
}

/// [`primary_with_bundles`] whose etcd also holds `objects` (key, value) when the snapshot is
/// taken (a recorded cluster shape, with [`crate::k8s_fixtures::KubeadmCluster`]).
pub fn primary_with_bundles_and_objects(
    secondary: &SshSecondary,
    objects: &[(String, Vec<u8>)],
) -> (Primary, PathBuf) {
    let etcd = EtcdCluster::start(EtcdOptions {
        members: 3,
        member_names: vec!["cp1".into(), "cp2".into(), "cp3".into()],
        version: secondary.version,
        ..EtcdOptions::default()
    });
    etcd.fill(FillSpec::objects(200));
    for (key, value) in objects {
        etcd.put(key, value);
    }
    let store = tempfile::tempdir().expect("store dir");
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

/// The primary's service-account keys the in-process promoter installs.
pub fn service_account_keys() -> ServiceAccountKeys {
    ServiceAccountKeys {
        key: b"-----BEGIN PRIVATE KEY-----\nprimary\n-----END PRIVATE KEY-----\n".to_vec(),
        public: b"-----BEGIN PUBLIC KEY-----\nprimary\n-----END PUBLIC KEY-----\n".to_vec(),
    }
}

/// The local store in `dir`.
pub fn local_store(dir: &Path) -> Arc<dyn ObjectStore> {
    Arc::new(LocalFileSystem::new_with_prefix(dir).expect("local store"))
}

/// The layout of cluster `prod` without a prefix.
pub fn prod_layout() -> SnapshotLayout {
    SnapshotLayout::new("", "prod").expect("layout")
}

fn run_promoter(promoter: Promoter, request: PromotionRequest) -> PromotionRecord {
    let tracker = PromotionTracker::new(PromotionRecord::new(
        etcd_dr_restore::new_promotion_id(chrono::Utc::now()),
        request,
        "test@here".into(),
    ));
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(promoter.run(&tracker, &CancellationToken::new()));
    tracker.snapshot()
}

/// Runs the promoter in this process onto `host` through the local executor, with
/// [`service_account_keys`] standing in for the bundles.
pub fn promote_locally(
    config: PromoteConfig,
    store_dir: &Path,
    host: &str,
    request: PromotionRequest,
) -> PromotionRecord {
    let node = Node::new(NodeRole::ControlPlane, Arc::new(LocalExecutor::new(host)));
    let mut promoter = Promoter::new(
        config,
        local_store(store_dir),
        prod_layout(),
        vec![node],
        vec![],
    )
    .unwrap();
    promoter.trust = crate::test_trust("prod", false);
    promoter.service_account_keys = Some(service_account_keys());
    run_promoter(promoter, request)
}

/// Runs the promoter in this process against `secondary`'s nodes over ssh, with the identity
/// that opens the snapshot's node bundles.
pub fn promote_over_ssh(
    secondary: &SshSecondary,
    config: PromoteConfig,
    store_dir: &Path,
    identity: &Path,
) -> PromotionRecord {
    promote_over_ssh_request(
        secondary,
        config,
        store_dir,
        identity,
        PromotionRequest::default(),
    )
}

/// [`promote_over_ssh`] with `request` (a dry run, another mode).
pub fn promote_over_ssh_request(
    secondary: &SshSecondary,
    config: PromoteConfig,
    store_dir: &Path,
    identity: &Path,
    request: PromotionRequest,
) -> PromotionRecord {
    let mut promoter = Promoter::new(
        config,
        local_store(store_dir),
        prod_layout(),
        secondary.nodes(),
        vec![],
    )
    .unwrap();
    promoter.identities = Identities::load(identity).unwrap();
    promoter.trust = crate::test_trust("prod", true);
    run_promoter(promoter, request)
}

/// Asserts a promotion ended in `expected`, showing the whole record when not.
pub fn assert_state(record: &PromotionRecord, expected: PromotionState) {
    assert_eq!(record.state, expected, "{}", record_json(record));
}

/// `(name, state)` of every step of a promotion record as JSON (`--json`, `GET /v1/promote`).
pub fn step_states(record: &serde_json::Value) -> Vec<(&str, &str)> {
    record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| {
            let field = |name: &str| step[name].as_str().expect("step field");
            (field("name"), field("state"))
        })
        .collect()
}

/// A promotion record as pretty JSON, for assertion messages.
pub fn record_json(record: &PromotionRecord) -> String {
    serde_json::to_string_pretty(record).expect("record as JSON")
}

fn block_on_store<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(future)
}

/// The fence (`prod/promotion.json`) in the local store `store_dir`, if any.
pub fn marker_of(store_dir: &Path) -> Option<PromotionMarker> {
    let store = local_store(store_dir);
    block_on_store(read_promotion_marker(
        &store,
        &prod_layout(),
        &CancellationToken::new(),
    ))
    .expect("read the fence")
}

/// Fences `prod` in `store_dir` as a promotion `promotion_id` elsewhere would, naming `snapshot`.
pub fn write_marker(store_dir: &Path, promotion_id: &str, snapshot: &str) {
    let marker = PromotionMarker {
        promotion_id: promotion_id.into(),
        mode: PromotionMode::Failover,
        snapshot: snapshot.parse().expect("snapshot id"),
        requested_by: "ops@bastion-us".into(),
        fenced_at: chrono::Utc::now(),
        replaces: None,
    };
    let store = local_store(store_dir);
    block_on_store(write_promotion_marker(
        &store,
        &prod_layout(),
        &marker,
        false,
        &CancellationToken::new(),
    ))
    .expect("write the fence");
}

/// Leaves the restore lock of `prod` in `store_dir` as a crashed restore `id` would.
pub fn write_lock(store_dir: &Path, id: &str) {
    let lock = RestoreLock {
        promotion_id: id.into(),
        mode: PromotionMode::InPlace,
        requested_by: "ops@crashed-bastion".into(),
        locked_at: chrono::Utc::now(),
    };
    let store = local_store(store_dir);
    block_on_store(acquire_restore_lock(
        &store,
        &prod_layout(),
        &lock,
        false,
        &CancellationToken::new(),
    ))
    .expect("take the restore lock");
}

/// A cluster on this machine (its etcd run by the kubelet stand-in from a kubeadm-shaped
/// manifest) that is the primary of `prod` in `store`: `[etcd]` for its snapshots,
/// `[nodes]`/`[promote]` for restoring it in place.
pub fn own_cluster(host: &str, store: &Path) -> (LocalSecondary, EtcdDr) {
    own_cluster_of_version(host, store, EtcdVersion::V3_5)
}

/// [`own_cluster`] on etcd `version`.
pub fn own_cluster_of_version(
    host: &str,
    store: &Path,
    version: EtcdVersion,
) -> (LocalSecondary, EtcdDr) {
    let node = LocalSecondary::start_version(host, version);
    let dr = EtcdDr::with_sections(
        "prod",
        &format!(
            "[etcd]\nendpoints = [\"{}\"]\nconnect_timeout = \"2s\"\nrequest_timeout = \"5s\"\n",
            node.client_url
        ),
        &StoreTarget::Local(store),
        &format!(
            "[bundle]\nenabled = false\n{}",
            node.sections(&node.dir().join("bastion"), "")
        ),
    );
    (node, dr)
}

/// Writes an etcdutl that answers like the real one (the preflight's version and `--help`
/// checks pass) but fails `snapshot restore` with `message` where the shell test `condition`
/// holds on the node.
pub fn write_failing_etcdutl(path: &Path, condition: &str, message: &str) {
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

/// `(action, resource, target, outcome)` of each after-step result of `action`, sorted.
pub fn after_results(
    record: &PromotionRecord,
    action: AfterAction,
) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = record
        .after_results
        .iter()
        .filter(|r| r.action == action)
        .map(|r| {
            (
                r.resource.clone().unwrap_or_default(),
                r.target.clone(),
                r.outcome.as_str().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `(resource, target, outcome)` triples as [`after_results`] gives them.
pub fn triples(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    items
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}
