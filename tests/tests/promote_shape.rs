//! Preflight compares the secondary's cluster with the snapshot's recorded shape: every
//! difference refused and listed, or, set to `warn`, carried in the record while the
//! promotion goes on. The configured `[nodes]` are compared with the snapshot's Nodes even when
//! the secondary's etcd holds no Kubernetes objects.

use etcd_dr_core::{PromotionRequest, PromotionState};
use etcd_dr_e2e::k8s_fixtures::fixture;
use etcd_dr_e2e::kubelet::put_keys;
use etcd_dr_e2e::local_secondary::{this_host, LocalSecondary};
use etcd_dr_e2e::promotion::{assert_state, promote_locally};
use etcd_dr_e2e::{EtcdCluster, EtcdDr, EtcdOptions, EtcdVersion, StoreTarget};

/// The kubeadm cluster of the fixtures (v1.34.4, podSubnet 10.244.0.0/16, nodes cp1 and
/// worker1 on containerd), in a primary named `host`, snapshotted into a local store.
fn primary(host: &str) -> (EtcdCluster, tempfile::TempDir) {
    let etcd = EtcdCluster::start(EtcdOptions {
        member_names: vec![host.to_string()],
        ..EtcdOptions::default()
    });
    for (key, name) in [
        (
            "/registry/configmaps/kube-system/kubeadm-config",
            "configmap_kubeadm_config",
        ),
        (
            "/registry/configmaps/kube-system/kubelet-config",
            "configmap_kubelet_config",
        ),
        ("/registry/minions/cp1", "node_cp1"),
        ("/registry/minions/worker1", "node_worker1"),
        (
            "/registry/daemonsets/kube-system/calico-node",
            "daemonset_calico_node",
        ),
    ] {
        etcd.put(key, &fixture(name));
    }
    let store = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        "",
    );
    dr.run_ok(&["snapshot"]);
    (etcd, store)
}

/// A secondary that differs: Kubernetes one minor behind, another podSubnet, the worker
/// missing, cp1 on CRI-O (objects stored as JSON, as an API server with JSON storage does).
fn differing_secondary(host: &str) -> LocalSecondary {
    let node = LocalSecondary::start(host);
    let cluster_configuration = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.33.2\ncontrolPlaneEndpoint: k8s-api.example.internal:6443\nnetworking:\n  podSubnet: 192.168.0.0/16\n  serviceSubnet: 10.96.0.0/12\n  dnsDomain: cluster.local\netcd:\n  local:\n    dataDir: /var/lib/etcd\n    imageTag: 3.6.4-0\nimageRepository: registry.k8s.io\n";
    let configmap = serde_json::json!({
        "kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
        "data": {"ClusterConfiguration": cluster_configuration},
    });
    let cp1 = serde_json::json!({
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": "cp1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "status": {"nodeInfo": {"kubeletVersion": "v1.33.2", "containerRuntimeVersion": "cri-o://1.33.0"}},
    });
    let calico = serde_json::json!({
        "kind": "DaemonSet", "apiVersion": "apps/v1",
        "metadata": {"name": "calico-node", "namespace": "kube-system"},
    });
    let etcd = EtcdVersion::V3_5.bin("etcdctl");
    for (key, value) in [
        ("/registry/configmaps/kube-system/kubeadm-config", configmap),
        ("/registry/minions/cp1", cp1),
        ("/registry/daemonsets/kube-system/calico-node", calico),
    ] {
        let status = std::process::Command::new(&etcd)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", node.endpoints().join(",")))
            .args(["put", key, &value.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("etcdctl put");
        assert!(status.success(), "etcdctl put {key}");
    }
    put_keys(&node.endpoints(), "/secondary-only", 2);
    node
}

/// What preflight says of `[nodes] control_plane = [host]` against the snapshot's cp1.
fn configured_nodes_finding(host: &str) -> String {
    let short = host.split('.').next().unwrap_or(host).to_ascii_lowercase();
    format!("configured nodes, control_plane_nodes: the configured control-plane nodes are not the snapshot's (in the snapshot, not in [nodes] control_plane: cp1; in [nodes] control_plane, not in the snapshot: {short})")
}

fn dry_run() -> PromotionRequest {
    PromotionRequest {
        dry_run: true,
        ..PromotionRequest::default()
    }
}

#[test]
fn a_secondary_that_differs_is_refused_with_every_difference() {
    let host = this_host();
    let (_primary, store) = primary(&host);
    let node = differing_secondary(&host);
    let record = promote_locally(
        node.config(&EtcdVersion::V3_5.bin("etcdutl")),
        store.path(),
        &host,
        dry_run(),
    );
    assert_state(&record, PromotionState::Failed);
    let error = record.error.clone().unwrap_or_default();
    for expected in [
        "kubernetes_version: Kubernetes v1.34.4 in the snapshot, v1.33.2 on the secondary",
        "networking: networking.podSubnet 10.244.0.0/16 in the snapshot, 192.168.0.0/16 on the secondary",
        "container_runtime",
        "[promote.shape_checks] kubernetes_version = \"warn\"",
        &configured_nodes_finding(&host),
        "[promote.shape_checks] control_plane_nodes = \"warn\"",
    ] {
        assert!(error.contains(expected), "missing `{expected}` in:\n{error}");
    }
    // The missing worker is a warning by default, not a refusal.
    assert!(!error.contains("worker1"), "{error}");
}

#[test]
fn set_to_warn_the_differences_are_recorded_and_the_plan_goes_on() {
    let host = this_host();
    let (_primary, store) = primary(&host);
    let node = differing_secondary(&host);
    let mut config = node.config(&EtcdVersion::V3_5.bin("etcdutl"));
    let warn = etcd_dr_cluster_shape::CheckSeverity::Warn;
    config.shape_checks.kubernetes_version = warn;
    config.shape_checks.networking = warn;
    config.shape_checks.container_runtime = warn;
    config.shape_checks.control_plane_nodes = warn;
    let record = promote_locally(config, store.path(), &host, dry_run());
    assert_state(&record, PromotionState::Planned);
    let warnings = record.warnings.join("\n");
    for expected in [
        "kubernetes_version",
        "192.168.0.0/16",
        "cri-o",
        "missing on the secondary: worker1",
        &configured_nodes_finding(&host),
        "configured nodes, worker_nodes: the configured worker nodes are not the snapshot's (in the snapshot, not in [nodes] workers: worker1)",
    ] {
        assert!(
            warnings.contains(expected),
            "missing `{expected}` in:\n{warnings}"
        );
    }
}

#[test]
fn configured_nodes_are_judged_against_the_snapshot_when_the_secondary_etcd_is_empty() {
    let host = this_host();
    let (_primary, store) = primary(&host);
    // A fresh secondary: its etcd holds no Kubernetes objects to compare.
    let node = LocalSecondary::start(&host);
    put_keys(&node.endpoints(), "/secondary-only", 2);
    let record = promote_locally(
        node.config(&EtcdVersion::V3_5.bin("etcdutl")),
        store.path(),
        &host,
        dry_run(),
    );
    assert_state(&record, PromotionState::Failed);
    let error = record.error.clone().unwrap_or_default();
    assert!(
        error.contains(&configured_nodes_finding(&host)),
        "missing the configured nodes' finding in:\n{error}"
    );
}
