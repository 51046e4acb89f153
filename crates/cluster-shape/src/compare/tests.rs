use super::*;
use etcd_dr_core::{CniDaemonSet, KubeadmShape};

fn node(name: &str, control_plane: bool, runtime: &str) -> ClusterNode {
    ClusterNode {
        name: name.into(),
        roles: if control_plane {
            vec!["control-plane".into()]
        } else {
            vec![]
        },
        kubelet_version: Some("v1.34.4".into()),
        container_runtime_version: Some(runtime.into()),
        ..ClusterNode::default()
    }
}

fn shape() -> ClusterShape {
    ClusterShape {
        kubernetes_version: Some("v1.34.4".into()),
        kubeadm: Some(KubeadmShape {
            control_plane_endpoint: Some("k8s-api:6443".into()),
            pod_subnet: Some("10.244.0.0/16".into()),
            service_subnet: Some("10.96.0.0/12".into()),
            dns_domain: Some("cluster.local".into()),
            etcd_image: Some("registry.k8s.io/etcd:3.6.4-0".into()),
            ..KubeadmShape::default()
        }),
        nodes: vec![
            node("cp1", true, "containerd://1.7.27"),
            node("cp2", true, "containerd://1.7.27"),
            node("w1", false, "containerd://1.7.27"),
            node("w2", false, "containerd://1.7.27"),
        ],
        cni: vec![CniDaemonSet {
            name: "kube-system/calico-node".into(),
            images: vec![],
        }],
        ..ClusterShape::default()
    }
}

#[test]
fn a_matching_secondary_has_no_difference() {
    let mut secondary = shape();
    // Patch versions and runtime versions may differ.
    secondary.kubernetes_version = Some("v1.34.1".into());
    secondary.nodes[0].container_runtime_version = Some("containerd://1.7.20".into());
    if let Some(k) = secondary.kubeadm.as_mut() {
        k.etcd_image = Some("registry.k8s.io/etcd:3.6.1-0".into());
    }
    assert_eq!(
        compare_shapes(&shape(), &secondary, &ShapeChecks::default()),
        vec![]
    );
}

#[test]
fn every_difference_is_listed_with_its_severity() {
    let mut secondary = shape();
    secondary.kubernetes_version = Some("v1.33.5".into());
    secondary.nodes.retain(|n| n.name != "w2");
    secondary.nodes[0].container_runtime_version = Some("cri-o://1.34.1".into());
    if let Some(k) = secondary.kubeadm.as_mut() {
        k.pod_subnet = Some("192.168.0.0/16".into());
        k.control_plane_endpoint = Some("other:6443".into());
        k.etcd_image = Some("registry.k8s.io/etcd:3.5.16-0".into());
    }
    secondary.cni.clear();
    let found = compare_shapes(&shape(), &secondary, &ShapeChecks::default());
    let checks: Vec<(&str, CheckSeverity)> = found.iter().map(|d| (d.check, d.severity)).collect();
    assert_eq!(
        checks,
        vec![
            ("kubernetes_version", CheckSeverity::Error),
            ("worker_nodes", CheckSeverity::Warn),
            ("container_runtime", CheckSeverity::Error),
            ("networking", CheckSeverity::Error),
            ("etcd_image", CheckSeverity::Error),
            ("control_plane_endpoint", CheckSeverity::Error),
            ("network_plugin", CheckSeverity::Warn),
        ]
    );
    assert!(
        found[1].detail.contains("missing on the secondary: w2"),
        "{}",
        found[1].detail
    );
    assert!(found[3].detail.contains("192.168.0.0/16"));
}

#[test]
fn severities_follow_the_configuration() {
    let mut secondary = shape();
    secondary.kubernetes_version = Some("v1.33.5".into());
    secondary.nodes.retain(|n| n.name != "cp2");
    let checks = ShapeChecks {
        kubernetes_version: CheckSeverity::Off,
        control_plane_nodes: CheckSeverity::Warn,
        ..ShapeChecks::default()
    };
    let found = compare_shapes(&shape(), &secondary, &checks);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].check, "control_plane_nodes");
    assert_eq!(found[0].severity, CheckSeverity::Warn);
}

#[test]
fn a_partial_shape_warns_and_skips_what_is_missing() {
    let mut secondary = shape();
    secondary.nodes.clear();
    secondary.unreadable = vec!["/registry/minions/cp1: encrypted".into()];
    let found = compare_shapes(&shape(), &secondary, &ShapeChecks::default());
    let checks: Vec<&str> = found.iter().map(|d| d.check).collect();
    assert_eq!(checks, vec!["readable"]);
}

#[test]
fn config_parses_with_defaults() {
    let checks: ShapeChecks =
        serde_json::from_str(r#"{"worker_nodes": "error", "network_plugin": "off"}"#).unwrap();
    assert_eq!(checks.worker_nodes, CheckSeverity::Error);
    assert_eq!(checks.network_plugin, CheckSeverity::Off);
    assert_eq!(checks.kubernetes_version, CheckSeverity::Error);
    assert!(serde_json::from_str::<ShapeChecks>(r#"{"typo": "off"}"#).is_err());
}

#[test]
fn configured_nodes_are_compared_with_the_recorded_ones_by_short_name() {
    let checks = ShapeChecks::default();
    assert_eq!(
        compare_configured_nodes(
            &shape(),
            &["CP1.example.internal", "cp2"],
            &["w1", "w2"],
            &checks
        ),
        vec![]
    );
    let found = compare_configured_nodes(&shape(), &["cp1", "cp9"], &["w1"], &checks);
    let found: Vec<(&str, CheckSeverity, &str)> = found
        .iter()
        .map(|d| (d.check, d.severity, d.detail.as_str()))
        .collect();
    assert_eq!(
            found,
            vec![
                (
                    "control_plane_nodes",
                    CheckSeverity::Error,
                    "the configured control-plane nodes are not the snapshot's (in the snapshot, not in [nodes] control_plane: cp2; in [nodes] control_plane, not in the snapshot: cp9)"
                ),
                (
                    "worker_nodes",
                    CheckSeverity::Warn,
                    "the configured worker nodes are not the snapshot's (in the snapshot, not in [nodes] workers: w2)"
                ),
            ]
        );
    let off = ShapeChecks {
        worker_nodes: CheckSeverity::Off,
        ..ShapeChecks::default()
    };
    assert_eq!(
        compare_configured_nodes(&shape(), &["cp1", "cp2"], &[], &off),
        vec![]
    );
    // A snapshot that recorded no Nodes has nothing to compare.
    let empty = ClusterShape {
        nodes: vec![],
        ..shape()
    };
    assert_eq!(
        compare_configured_nodes(&empty, &["x"], &[], &checks),
        vec![]
    );
}
