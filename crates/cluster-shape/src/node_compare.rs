//! The secondary's nodes themselves (what their files and tools say, read over the executor)
//! against the snapshot's recorded shape: the container runtime endpoint kubeadm gave kubelet,
//! kubelet's version, the etcd static pod's image and data dir, and what the API front-end name
//! resolves to. The secondary's etcd may say one thing and a node another (a node rebuilt with
//! another runtime); preflight reads both.

use etcd_dr_core::ClusterShape;

use crate::compare::{image_minor, minor, runtime_of};
use crate::{sans_cover, CheckSeverity, ShapeChecks, ShapeDifference};

/// What one node of the secondary says about itself. `None` fields could not be read there
/// (no kubelet on the PATH, no `kubeadm-flags.env`) and are not compared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeShape {
    /// The node's name (its short host name, as in the snapshot's Node objects).
    pub node: String,
    /// True for a control-plane node (it has an etcd static pod).
    pub control_plane: bool,
    /// kubelet's `--container-runtime-endpoint` from kubeadm's `kubeadm-flags.env`.
    pub runtime_endpoint: Option<String>,
    /// `kubelet --version` (`v1.34.4`).
    pub kubelet_version: Option<String>,
    /// The runtime's own version line (`containerd --version`, `crio --version`), shown only.
    pub runtime_version: Option<String>,
    /// The image of the etcd static pod.
    pub etcd_image: Option<String>,
    /// The etcd static pod's `etcd-data` hostPath.
    pub etcd_data_dir: Option<String>,
    /// What the API front-end name resolves to on the node (`getent hosts`), when it was asked.
    pub front_end_addresses: Option<Vec<String>>,
    /// kube-apiserver's serving certificate on a control-plane node, when it was read.
    pub api_server_cert: Option<ApiServerCert>,
}

/// kube-apiserver's serving certificate as read on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServerCert {
    /// Its path on the node.
    pub path: String,
    /// What was found there.
    pub read: CertRead,
}

/// A certificate file as read on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertRead {
    /// Its subject alternative names (DNS names and IP addresses).
    Sans(Vec<String>),
    /// No such file.
    Missing,
    /// There, but not readable as a certificate: why.
    Unreadable(String),
}

/// The host part of kubeadm's `controlPlaneEndpoint` (`k8s-api.example:6443` →
/// `k8s-api.example`, `[fd00::10]:6443` → `fd00::10`).
pub fn front_end_host(endpoint: &str) -> &str {
    if let Some(rest) = endpoint.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match endpoint.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => endpoint,
    }
}

/// kubelet's `--container-runtime-endpoint` in a `kubeadm-flags.env`
/// (`KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock …"`).
pub fn parse_kubeadm_flags(text: &str) -> Option<String> {
    const FLAG: &str = "--container-runtime-endpoint";
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .filter(|w| !w.is_empty())
        .collect();
    let mut found = None;
    for (i, word) in words.iter().enumerate() {
        let word = word.rsplit_once("ARGS=").map(|(_, w)| w).unwrap_or(word);
        if let Some(value) = word.strip_prefix(FLAG).and_then(|v| v.strip_prefix('=')) {
            found = Some(value.to_string());
        } else if word == FLAG {
            found = words.get(i + 1).map(|v| v.to_string());
        }
    }
    found.filter(|v| !v.is_empty())
}

/// The runtime a CRI socket belongs to, by its conventional path.
pub fn runtime_kind_of_endpoint(endpoint: &str) -> Option<&'static str> {
    if endpoint.contains("containerd") {
        Some("containerd")
    } else if endpoint.contains("crio") || endpoint.contains("cri-o") {
        Some("cri-o")
    } else if endpoint.contains("docker") {
        Some("docker")
    } else {
        None
    }
}

fn socket(endpoint: &str) -> &str {
    endpoint.trim_start_matches("unix://")
}

/// Compares one secondary node with the snapshot's recorded shape; every difference names the
/// node. `snapshot_etcd_version` is the manifest's etcd version (the etcd image minor to
/// expect). `front_end_managed`: the promotion
/// points the front-end name itself, so what it resolves to now is not judged.
/// `front_end_name`: the name kube-apiserver's certificate must be valid for (configured, else
/// the host of `controlPlaneEndpoint`), if there is one.
pub fn compare_node(
    recorded: &ClusterShape,
    snapshot_etcd_version: &str,
    node: &NodeShape,
    checks: &ShapeChecks,
    front_end_managed: bool,
    front_end_name: Option<&str>,
) -> Vec<ShapeDifference> {
    let mut out = Vec::new();
    let mut add = |check: &'static str, severity: CheckSeverity, detail: String| {
        if severity != CheckSeverity::Off {
            out.push(ShapeDifference {
                check,
                severity,
                detail: format!("{}: {detail}", node.node),
            });
        }
    };
    let short = node.node.split('.').next().unwrap_or(&node.node);
    let same_name = recorded
        .nodes
        .iter()
        .find(|n| n.name.split('.').next() == Some(short));

    if let Some(endpoint) = &node.runtime_endpoint {
        // The node's own record when the snapshot has one, else every recorded node.
        let candidates: Vec<_> = match same_name {
            Some(recorded_node) => vec![recorded_node],
            None => recorded.nodes.iter().collect(),
        };
        let sockets: Vec<&str> = candidates
            .iter()
            .filter_map(|n| n.cri_socket.as_deref())
            .map(socket)
            .collect();
        let kinds: Vec<String> = candidates
            .iter()
            .filter_map(|n| n.container_runtime_version.as_deref())
            .filter_map(|v| v.split("://").next())
            .map(str::to_string)
            .collect();
        let kind = runtime_kind_of_endpoint(endpoint);
        let socket_differs = !sockets.is_empty() && !sockets.contains(&socket(endpoint));
        let kind_differs = match kind {
            Some(kind) => !kinds.is_empty() && !kinds.iter().any(|k| k == kind),
            None => false,
        };
        if socket_differs || kind_differs {
            let mut expected: Vec<String> =
                candidates.iter().filter_map(|n| runtime_of(n)).collect();
            expected.sort();
            expected.dedup();
            add(
                "container_runtime",
                checks.container_runtime,
                format!(
                    "kubelet's container runtime endpoint is {endpoint} (kubeadm-flags.env), the snapshot's {} {}",
                    match same_name {
                        Some(_) => "node of that name ran",
                        None => "nodes ran",
                    },
                    expected.join(", ")
                ),
            );
        }
    }
    if let (Some(found), Some(wanted)) = (&node.kubelet_version, &recorded.kubernetes_version) {
        if minor(found) != minor(wanted) {
            add(
                "kubernetes_version",
                checks.kubernetes_version,
                format!("kubelet {found}, the snapshot's Kubernetes is {wanted} (minor versions must match)"),
            );
        }
    }
    if node.control_plane {
        // The etcd that was snapshotted, not the ClusterConfiguration's imageTag (which may
        // lag behind an upgrade): what the restored data was written by.
        if let Some(image) = &node.etcd_image {
            if image_minor(image) != minor(snapshot_etcd_version) {
                add(
                    "etcd_image",
                    checks.etcd_image,
                    format!(
                        "the etcd static pod runs {image}, the snapshot is of etcd {snapshot_etcd_version} (restoring onto another etcd minor is unsupported)"
                    ),
                );
            }
        }
        let recorded_dir = recorded
            .kubeadm
            .as_ref()
            .and_then(|k| k.etcd_data_dir.as_deref());
        if let (Some(found), Some(wanted)) = (&node.etcd_data_dir, recorded_dir) {
            if found.trim_end_matches('/') != wanted.trim_end_matches('/') {
                add(
                    "etcd_data_dir",
                    checks.etcd_data_dir,
                    format!("the etcd data dir is {found}, the snapshot's cluster used {wanted}"),
                );
            }
        }
        // Whether or not the promotion points the name itself: the API server must present a
        // certificate valid for it either way.
        if let (Some(cert), Some(name)) = (&node.api_server_cert, front_end_name) {
            let path = &cert.path;
            let detail = match &cert.read {
                CertRead::Sans(sans) if sans_cover(sans, name) => None,
                CertRead::Sans(sans) => Some(format!(
                    "kube-apiserver's certificate {path} is not valid for the API front-end name {name} (its names: {}): clients reaching the API through {name} will refuse it; re-issue it with {name} in apiServer.certSANs",
                    if sans.is_empty() { "none".to_string() } else { sans.join(", ") }
                )),
                CertRead::Missing => Some(format!(
                    "kube-apiserver's certificate {path} is missing, so whether it is valid for the API front-end name {name} is unknown"
                )),
                CertRead::Unreadable(why) => Some(format!(
                    "kube-apiserver's certificate {path} cannot be read ({why}), so whether it is valid for the API front-end name {name} is unknown"
                )),
            };
            if let Some(detail) = detail {
                add("api_server_cert_sans", checks.api_server_cert_sans, detail);
            }
        }
    }
    let endpoint = recorded
        .kubeadm
        .as_ref()
        .and_then(|k| k.control_plane_endpoint.as_deref());
    if let (false, Some(endpoint), Some(addresses)) =
        (front_end_managed, endpoint, &node.front_end_addresses)
    {
        let name = front_end_host(endpoint);
        if addresses.is_empty() {
            add(
                "front_end_resolution",
                checks.front_end_resolution,
                format!("the API front-end name {name} does not resolve (kubelet and the control plane reach the API through it): add it to /etc/hosts or DNS, or set [promote.front_end]"),
            );
        }
        for address in addresses {
            let primary = recorded.nodes.iter().find(|n| {
                n.addresses
                    .iter()
                    .any(|a| a.address == *address && a.kind != "Hostname")
            });
            if let Some(primary) = primary {
                add(
                    "front_end_resolution",
                    checks.front_end_resolution,
                    format!(
                        "the API front-end name {name} resolves to {address}, an address of the snapshot's node {} (the primary's): point it at the secondary, or set [promote.front_end]",
                        primary.name
                    ),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_dr_core::{ClusterNode, KubeadmShape, NodeAddress};

    fn recorded() -> ClusterShape {
        ClusterShape {
            kubernetes_version: Some("v1.34.4".into()),
            kubeadm: Some(KubeadmShape {
                control_plane_endpoint: Some("k8s-api.example:6443".into()),
                etcd_image: Some("registry.k8s.io/etcd:3.6.4-0".into()),
                etcd_data_dir: Some("/var/lib/etcd".into()),
                ..KubeadmShape::default()
            }),
            nodes: vec![ClusterNode {
                name: "cp1".into(),
                roles: vec!["control-plane".into()],
                container_runtime_version: Some("containerd://1.7.27".into()),
                cri_socket: Some("unix:///var/run/containerd/containerd.sock".into()),
                addresses: vec![NodeAddress {
                    kind: "InternalIP".into(),
                    address: "10.0.0.11".into(),
                }],
                ..ClusterNode::default()
            }],
            ..ClusterShape::default()
        }
    }

    fn matching() -> NodeShape {
        NodeShape {
            node: "cp1".into(),
            control_plane: true,
            runtime_endpoint: Some("unix:///var/run/containerd/containerd.sock".into()),
            kubelet_version: Some("v1.34.1".into()),
            runtime_version: None,
            etcd_image: Some("registry.k8s.io/etcd:3.6.1-0".into()),
            etcd_data_dir: Some("/var/lib/etcd/".into()),
            front_end_addresses: Some(vec!["10.1.0.10".into()]),
            api_server_cert: Some(ApiServerCert {
                path: "/etc/kubernetes/pki/apiserver.crt".into(),
                read: CertRead::Sans(vec!["cp1".into(), "k8s-api.example".into()]),
            }),
        }
    }

    #[test]
    fn reads_kubeadm_flags_and_endpoints() {
        assert_eq!(
            parse_kubeadm_flags(
                "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/crio/crio.sock --pod-infra-container-image=x\"\n"
            )
            .as_deref(),
            Some("unix:///run/crio/crio.sock")
        );
        assert_eq!(
            parse_kubeadm_flags(
                "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint unix:///a.sock\""
            )
            .as_deref(),
            Some("unix:///a.sock")
        );
        assert_eq!(
            parse_kubeadm_flags("KUBELET_KUBEADM_ARGS=\"--node-ip=10.0.0.1\""),
            None
        );
        assert_eq!(front_end_host("k8s-api.example:6443"), "k8s-api.example");
        assert_eq!(front_end_host("[fd00::10]:6443"), "fd00::10");
        assert_eq!(front_end_host("k8s-api"), "k8s-api");
        assert_eq!(
            runtime_kind_of_endpoint("unix:///var/run/crio/crio.sock"),
            Some("cri-o")
        );
    }

    #[test]
    fn a_matching_node_has_no_difference() {
        let found = compare_node(
            &recorded(),
            "3.6.4",
            &matching(),
            &ShapeChecks::default(),
            false,
            Some("k8s-api.example"),
        );
        assert_eq!(found, vec![]);
    }

    #[test]
    fn every_difference_names_the_node() {
        let node = NodeShape {
            runtime_endpoint: Some("unix:///var/run/crio/crio.sock".into()),
            kubelet_version: Some("v1.33.0".into()),
            etcd_image: Some("registry.k8s.io/etcd:3.5.16-0".into()),
            etcd_data_dir: Some("/data/etcd".into()),
            front_end_addresses: Some(vec!["10.0.0.11".into()]),
            ..matching()
        };
        let found = compare_node(
            &recorded(),
            "3.6.4",
            &node,
            &ShapeChecks::default(),
            false,
            Some("k8s-api.example"),
        );
        let checks: Vec<(&str, CheckSeverity)> =
            found.iter().map(|d| (d.check, d.severity)).collect();
        assert_eq!(
            checks,
            vec![
                ("container_runtime", CheckSeverity::Error),
                ("kubernetes_version", CheckSeverity::Error),
                ("etcd_image", CheckSeverity::Error),
                ("etcd_data_dir", CheckSeverity::Warn),
                ("front_end_resolution", CheckSeverity::Warn),
            ]
        );
        assert!(found.iter().all(|d| d.detail.starts_with("cp1: ")));
        assert!(found[0].detail.contains("crio.sock"), "{}", found[0].detail);
        assert!(found[4].detail.contains("snapshot's node cp1"));

        // The promotion points the name itself: what it resolves to now is not judged, and an
        // unresolvable name is only a problem when it is not.
        let unresolved = NodeShape {
            front_end_addresses: Some(vec![]),
            ..matching()
        };
        assert!(compare_node(
            &recorded(),
            "3.6.4",
            &unresolved,
            &ShapeChecks::default(),
            true,
            Some("k8s-api.example"),
        )
        .is_empty());
        let found = compare_node(
            &recorded(),
            "3.6.4",
            &unresolved,
            &ShapeChecks::default(),
            false,
            Some("k8s-api.example"),
        );
        assert!(found[0].detail.contains("does not resolve"), "{found:?}");
    }

    #[test]
    fn a_control_plane_certificate_without_the_front_end_name_is_named() {
        let checks = ShapeChecks::default();
        let with = |read: CertRead| NodeShape {
            api_server_cert: Some(ApiServerCert {
                path: "/etc/kubernetes/pki/apiserver.crt".into(),
                read,
            }),
            ..matching()
        };
        let judge = |node: &NodeShape, name: Option<&str>| {
            compare_node(&recorded(), "3.6.4", node, &checks, true, name)
        };
        let lacking = with(CertRead::Sans(vec!["cp1".into(), "10.96.0.1".into()]));
        let found = judge(&lacking, Some("k8s-api.example"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].check, "api_server_cert_sans");
        assert_eq!(found[0].severity, CheckSeverity::Warn);
        assert!(
            found[0].detail.starts_with("cp1: kube-apiserver's certificate /etc/kubernetes/pki/apiserver.crt is not valid for the API front-end name k8s-api.example (its names: cp1, 10.96.0.1)"),
            "{}",
            found[0].detail
        );
        // A configured name other than the endpoint's is the one asked for.
        assert!(judge(&lacking, Some("cp1")).is_empty());
        // No name to ask for: nothing to judge.
        assert!(judge(&lacking, None).is_empty());
        let missing = judge(&with(CertRead::Missing), Some("k8s-api.example"));
        assert!(
            missing[0]
                .detail
                .contains("/etc/kubernetes/pki/apiserver.crt is missing"),
            "{missing:?}"
        );
        let unreadable = judge(
            &with(CertRead::Unreadable("no PEM block".into())),
            Some("k8s-api.example"),
        );
        assert!(
            unreadable[0].detail.contains("(no PEM block)"),
            "{unreadable:?}"
        );
        // Workers run no API server.
        let worker = NodeShape {
            control_plane: false,
            ..lacking.clone()
        };
        assert!(judge(&worker, Some("k8s-api.example")).is_empty());
        let off = ShapeChecks {
            api_server_cert_sans: CheckSeverity::Off,
            ..ShapeChecks::default()
        };
        assert!(compare_node(
            &recorded(),
            "3.6.4",
            &lacking,
            &off,
            true,
            Some("k8s-api.example")
        )
        .is_empty());
    }
}
