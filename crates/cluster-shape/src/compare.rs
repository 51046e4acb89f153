//! Does the secondary match the cluster a snapshot comes from? The procedure's list: same
//! Kubernetes minor, same control-plane and worker names, same container runtime, same
//! subnets and DNS domain, same etcd image minor, same API front-end name, same network
//! plugin. Each check is an error, a warning or off, by configuration.

use std::collections::BTreeSet;

use etcd_dr_core::{ClusterNode, ClusterShape};
use serde::{Deserialize, Serialize};

/// What a failed check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckSeverity {
    /// Refuse the restore.
    Error,
    /// Report it and go on.
    Warn,
    /// Do not check.
    Off,
}

/// The severity of each shape check (`[promote.shape_checks]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShapeChecks {
    /// Kubernetes minor version (`v1.34.x` on both sides).
    pub kubernetes_version: CheckSeverity,
    /// The same control-plane node names.
    pub control_plane_nodes: CheckSeverity,
    /// The same worker node names.
    pub worker_nodes: CheckSeverity,
    /// The same container runtime (kind and CRI socket).
    pub container_runtime: CheckSeverity,
    /// The same pod and service subnets and DNS domain.
    pub networking: CheckSeverity,
    /// The same etcd image minor version.
    pub etcd_image: CheckSeverity,
    /// The same API front-end name (`controlPlaneEndpoint`).
    pub control_plane_endpoint: CheckSeverity,
    /// The same network plugin DaemonSets.
    pub network_plugin: CheckSeverity,
    /// Each node's etcd data dir (its static pod's `etcd-data` hostPath) equal to the
    /// snapshot's `etcd.local.dataDir`.
    pub etcd_data_dir: CheckSeverity,
    /// On each node, the API front-end name resolves, and not to an address of the snapshot's
    /// nodes (the primary's). Not judged when `[promote.front_end]` points the name itself.
    pub front_end_resolution: CheckSeverity,
    /// On each control-plane node, kube-apiserver's serving certificate (`pki/apiserver.crt`)
    /// names the API front-end name among its SANs.
    pub api_server_cert_sans: CheckSeverity,
}

impl Default for ShapeChecks {
    fn default() -> Self {
        Self {
            kubernetes_version: CheckSeverity::Error,
            control_plane_nodes: CheckSeverity::Error,
            worker_nodes: CheckSeverity::Warn,
            container_runtime: CheckSeverity::Error,
            networking: CheckSeverity::Error,
            etcd_image: CheckSeverity::Error,
            control_plane_endpoint: CheckSeverity::Error,
            network_plugin: CheckSeverity::Warn,
            etcd_data_dir: CheckSeverity::Warn,
            front_end_resolution: CheckSeverity::Warn,
            api_server_cert_sans: CheckSeverity::Warn,
        }
    }
}

/// One difference between the snapshot's cluster and the secondary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShapeDifference {
    /// The check (`kubernetes_version`, `control_plane_nodes`, …).
    pub check: &'static str,
    /// Error or warning.
    pub severity: CheckSeverity,
    /// What differs, both sides named.
    pub detail: String,
}

/// Compares the snapshot's recorded shape with the secondary's; every difference is listed,
/// none hidden behind the first. A side that could not read an object (`unreadable`) is
/// reported as one warning, and checks whose data is missing on either side are skipped.
pub fn compare_shapes(
    snapshot: &ClusterShape,
    secondary: &ClusterShape,
    checks: &ShapeChecks,
) -> Vec<ShapeDifference> {
    let mut out = Vec::new();
    let mut add = |check: &'static str, severity: CheckSeverity, detail: String| {
        if severity != CheckSeverity::Off {
            out.push(ShapeDifference {
                check,
                severity,
                detail,
            });
        }
    };
    for (side, shape) in [("snapshot", snapshot), ("secondary", secondary)] {
        if !shape.unreadable.is_empty() {
            add(
                "readable",
                CheckSeverity::Warn,
                format!(
                    "the {side}'s cluster could not be read in full ({}); those parts are not compared",
                    shape.unreadable.join("; ")
                ),
            );
        }
    }

    if let (Some(a), Some(b)) = (&snapshot.kubernetes_version, &secondary.kubernetes_version) {
        if minor(a) != minor(b) {
            add(
                "kubernetes_version",
                checks.kubernetes_version,
                format!("Kubernetes {a} in the snapshot, {b} on the secondary (minor versions must match)"),
            );
        }
    }
    for (check, severity, role, control_plane) in [
        (
            "control_plane_nodes",
            checks.control_plane_nodes,
            "control-plane",
            true,
        ),
        ("worker_nodes", checks.worker_nodes, "worker", false),
    ] {
        let names = |shape: &ClusterShape| -> BTreeSet<String> {
            shape
                .nodes
                .iter()
                .filter(|n| n.is_control_plane() == control_plane)
                .map(|n| n.name.clone())
                .collect()
        };
        let (a, b) = (names(snapshot), names(secondary));
        if snapshot.nodes.is_empty() || secondary.nodes.is_empty() || a == b {
            continue;
        }
        let missing: Vec<&String> = a.difference(&b).collect();
        let extra: Vec<&String> = b.difference(&a).collect();
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing on the secondary: {}", join(&missing)));
        }
        if !extra.is_empty() {
            parts.push(format!("only on the secondary: {}", join(&extra)));
        }
        add(
            check,
            severity,
            format!("{role} nodes differ ({})", parts.join("; ")),
        );
    }
    let runtimes = |shape: &ClusterShape| -> BTreeSet<String> {
        shape.nodes.iter().filter_map(runtime_of).collect()
    };
    let (a, b) = (runtimes(snapshot), runtimes(secondary));
    if !a.is_empty() && !b.is_empty() && a != b {
        add(
            "container_runtime",
            checks.container_runtime,
            format!(
                "container runtime {} in the snapshot, {} on the secondary",
                join(&a.iter().collect::<Vec<_>>()),
                join(&b.iter().collect::<Vec<_>>())
            ),
        );
    }
    if let (Some(a), Some(b)) = (&snapshot.kubeadm, &secondary.kubeadm) {
        for (name, x, y) in [
            ("podSubnet", &a.pod_subnet, &b.pod_subnet),
            ("serviceSubnet", &a.service_subnet, &b.service_subnet),
            ("dnsDomain", &a.dns_domain, &b.dns_domain),
        ] {
            if x != y {
                add(
                    "networking",
                    checks.networking,
                    format!(
                        "networking.{name} {} in the snapshot, {} on the secondary",
                        show(x),
                        show(y)
                    ),
                );
            }
        }
        if let (Some(x), Some(y)) = (&a.etcd_image, &b.etcd_image) {
            if image_minor(x) != image_minor(y) {
                add(
                    "etcd_image",
                    checks.etcd_image,
                    format!("etcd image {x} in the snapshot, {y} on the secondary (restoring onto another etcd minor is unsupported)"),
                );
            }
        }
        if a.control_plane_endpoint != b.control_plane_endpoint {
            add(
                "control_plane_endpoint",
                checks.control_plane_endpoint,
                format!(
                    "controlPlaneEndpoint {} in the snapshot, {} on the secondary (the API front-end name must be the same in both regions)",
                    show(&a.control_plane_endpoint),
                    show(&b.control_plane_endpoint)
                ),
            );
        }
    }
    let plugins = |shape: &ClusterShape| -> BTreeSet<String> {
        shape.cni.iter().map(|c| c.name.clone()).collect()
    };
    let (a, b) = (plugins(snapshot), plugins(secondary));
    if a != b {
        add(
            "network_plugin",
            checks.network_plugin,
            format!(
                "network plugin {} in the snapshot, {} on the secondary",
                join_or_none(&a),
                join_or_none(&b)
            ),
        );
    }
    out
}

/// The configured `[nodes]` control-plane and worker names against the snapshot's recorded
/// Nodes (by role), compared by short name without regard to case: what preflight can judge
/// even when the secondary's etcd holds nothing or does not answer. Nothing when the snapshot
/// recorded no Nodes.
pub fn compare_configured_nodes(
    snapshot: &ClusterShape,
    control_plane: &[&str],
    workers: &[&str],
    checks: &ShapeChecks,
) -> Vec<ShapeDifference> {
    let mut out = Vec::new();
    if snapshot.nodes.is_empty() {
        return out;
    }
    let short = |name: &str| name.split('.').next().unwrap_or(name).to_ascii_lowercase();
    for (check, severity, role, field, configured, is_control_plane) in [
        (
            "control_plane_nodes",
            checks.control_plane_nodes,
            "control-plane",
            "control_plane",
            control_plane,
            true,
        ),
        (
            "worker_nodes",
            checks.worker_nodes,
            "worker",
            "workers",
            workers,
            false,
        ),
    ] {
        if severity == CheckSeverity::Off {
            continue;
        }
        let recorded: BTreeSet<String> = snapshot
            .nodes
            .iter()
            .filter(|n| n.is_control_plane() == is_control_plane)
            .map(|n| short(&n.name))
            .collect();
        let configured: BTreeSet<String> = configured.iter().map(|n| short(n)).collect();
        if recorded == configured {
            continue;
        }
        let missing: Vec<&String> = recorded.difference(&configured).collect();
        let extra: Vec<&String> = configured.difference(&recorded).collect();
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!(
                "in the snapshot, not in [nodes] {field}: {}",
                join(&missing)
            ));
        }
        if !extra.is_empty() {
            parts.push(format!(
                "in [nodes] {field}, not in the snapshot: {}",
                join(&extra)
            ));
        }
        out.push(ShapeDifference {
            check,
            severity,
            detail: format!(
                "the configured {role} nodes are not the snapshot's ({})",
                parts.join("; ")
            ),
        });
    }
    out
}

/// `v1.34.4` → `1.34`.
pub(crate) fn minor(version: &str) -> String {
    let version = version.trim_start_matches('v');
    let mut parts = version.split('.');
    format!(
        "{}.{}",
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("")
    )
}

/// `registry.k8s.io/etcd:3.6.4-0` → `3.6`.
pub(crate) fn image_minor(image: &str) -> String {
    minor(image.rsplit(':').next().unwrap_or(image))
}

/// The runtime's kind (`containerd`, `cri-o`) and the CRI socket kubeadm recorded, if any.
pub(crate) fn runtime_of(node: &ClusterNode) -> Option<String> {
    let kind = node
        .container_runtime_version
        .as_deref()
        .and_then(|v| v.split("://").next())
        .map(str::to_string);
    match (kind, &node.cri_socket) {
        (Some(kind), Some(socket)) => Some(format!("{kind} ({socket})")),
        (Some(kind), None) => Some(kind),
        (None, Some(socket)) => Some(socket.clone()),
        (None, None) => None,
    }
}

fn show(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "(unset)".into())
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn join_or_none(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        "none seen".into()
    } else {
        names.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests;
