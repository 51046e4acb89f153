//! The cluster's shape from the few objects that describe it.

use etcd_dr_core::{ClusterNode, ClusterShape, CniDaemonSet, KubeadmShape, NodeAddress};
use serde::Deserialize;

use crate::decode::decode_object;
use crate::proto;
use crate::ShapeError;

/// The key prefix kube-apiserver stores objects under unless `--etcd-prefix` says otherwise.
pub const DEFAULT_KUBERNETES_PREFIX: &str = "/registry";

/// DaemonSet names of the common network plugins (CNI), in any namespace.
const CNI_DAEMONSETS: &[&str] = &[
    "calico-node",
    "canal",
    "cilium",
    "kube-flannel-ds",
    "weave-net",
    "kube-router",
    "antrea-agent",
    "ovnkube-node",
    "kindnet",
];

/// What to read from etcd for a [`ClusterShape`], under one Kubernetes key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeKeys {
    /// kubeadm's ClusterConfiguration ConfigMap.
    pub kubeadm_config: String,
    /// kubeadm's cluster-wide kubelet configuration ConfigMap.
    pub kubelet_config: String,
    /// Every Node object (the API server keeps them under `minions`).
    pub nodes_prefix: String,
    /// Every DaemonSet, for the network plugin.
    pub daemonsets_prefix: String,
}

impl ShapeKeys {
    /// The keys under `prefix` (normally [`DEFAULT_KUBERNETES_PREFIX`]).
    pub fn new(prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        Self {
            kubeadm_config: format!("{prefix}/configmaps/kube-system/kubeadm-config"),
            kubelet_config: format!("{prefix}/configmaps/kube-system/kubelet-config"),
            nodes_prefix: format!("{prefix}/minions/"),
            daemonsets_prefix: format!("{prefix}/daemonsets/"),
        }
    }

    /// True when `key` is one of the objects a shape is made of.
    pub fn wants(&self, key: &str) -> bool {
        key == self.kubeadm_config
            || key == self.kubelet_config
            || key.starts_with(&self.nodes_prefix)
            || key.starts_with(&self.daemonsets_prefix)
    }
}

/// Builds the shape from `(key, value)` pairs read at one revision (extra keys are ignored).
/// `None` when none of them is a Kubernetes object of interest: an etcd that does not back a
/// Kubernetes cluster. Objects that cannot be read are named in `unreadable`, never fatal.
pub fn cluster_shape<'a>(
    keys: &ShapeKeys,
    objects: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Option<ClusterShape> {
    let mut shape = ClusterShape::default();
    let mut found = false;
    for (key, value) in objects {
        let Ok(key) = std::str::from_utf8(key) else {
            continue;
        };
        if !keys.wants(key) {
            continue;
        }
        found = true;
        if let Err(error) = add_object(&mut shape, keys, key, value) {
            shape.unreadable.push(error.to_string());
        }
    }
    if !found {
        return None;
    }
    shape.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    shape.cni.sort_by(|a, b| a.name.cmp(&b.name));
    Some(shape)
}

fn add_object(
    shape: &mut ClusterShape,
    keys: &ShapeKeys,
    key: &str,
    value: &[u8],
) -> Result<(), ShapeError> {
    if key == keys.kubeadm_config {
        let config: proto::ConfigMap = decode_object(key, value, "ConfigMap")?;
        if let Some(document) = config.data.get("ClusterConfiguration") {
            let parsed = parse_cluster_configuration(key, document)?;
            shape.kubernetes_version = parsed.kubernetes_version.clone();
            shape.kubeadm = Some(parsed.into_shape());
        }
    } else if key == keys.kubelet_config {
        let config: proto::ConfigMap = decode_object(key, value, "ConfigMap")?;
        if let Some(document) = config.data.get("kubelet") {
            let parsed: KubeletConfiguration =
                serde_yaml_ng::from_str(document).map_err(|source| ShapeError::Yaml {
                    key: key.into(),
                    document: "kubelet",
                    source,
                })?;
            shape.kubelet_cgroup_driver = parsed.cgroup_driver;
        }
    } else if key.starts_with(&keys.nodes_prefix) {
        let node: proto::Node = decode_object(key, value, "Node")?;
        shape.nodes.push(cluster_node(key, node));
    } else if key.starts_with(&keys.daemonsets_prefix) {
        let daemonset: proto::DaemonSet = decode_object(key, value, "DaemonSet")?;
        let meta = daemonset.metadata.unwrap_or_default();
        let name = meta.name.unwrap_or_default();
        if CNI_DAEMONSETS.contains(&name.as_str()) {
            let spec = daemonset
                .spec
                .and_then(|spec| spec.template)
                .and_then(|template| template.spec)
                .unwrap_or_default();
            let images = spec
                .init_containers
                .iter()
                .chain(&spec.containers)
                .filter_map(|container| container.image.clone())
                .collect();
            let namespace = meta.namespace.unwrap_or_default();
            shape.cni.push(CniDaemonSet {
                name: format!("{namespace}/{name}"),
                images,
            });
        }
    }
    Ok(())
}

fn cluster_node(key: &str, node: proto::Node) -> ClusterNode {
    let meta = node.metadata.unwrap_or_default();
    let status = node.status.unwrap_or_default();
    let info = status.node_info.unwrap_or_default();
    let mut roles: Vec<String> = meta
        .labels
        .keys()
        .filter_map(|label| label.strip_prefix("node-role.kubernetes.io/"))
        .filter(|role| !role.is_empty())
        .map(str::to_string)
        .collect();
    roles.sort();
    ClusterNode {
        // The key ends in the name; the metadata says it too, but trust neither alone.
        name: meta
            .name
            .unwrap_or_else(|| key.rsplit('/').next().unwrap_or_default().to_string()),
        roles,
        kubelet_version: non_empty(info.kubelet_version),
        container_runtime_version: non_empty(info.container_runtime_version),
        cri_socket: non_empty(
            meta.annotations
                .get("kubeadm.alpha.kubernetes.io/cri-socket")
                .cloned(),
        ),
        os_image: non_empty(info.os_image),
        architecture: non_empty(info.architecture),
        addresses: status
            .addresses
            .into_iter()
            .map(|address| NodeAddress {
                kind: address.r#type.unwrap_or_default(),
                address: address.address.unwrap_or_default(),
            })
            .collect(),
        ready: status
            .conditions
            .into_iter()
            .find(|condition| condition.r#type.as_deref() == Some("Ready"))
            .and_then(|condition| condition.status),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// kubeadm's ClusterConfiguration (v1beta3 and v1beta4 agree on these fields).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ClusterConfiguration {
    kubernetes_version: Option<String>,
    control_plane_endpoint: Option<String>,
    image_repository: Option<String>,
    networking: Networking,
    etcd: EtcdSection,
    api_server: ApiServer,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Networking {
    pod_subnet: Option<String>,
    service_subnet: Option<String>,
    dns_domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EtcdSection {
    local: Option<LocalEtcd>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct LocalEtcd {
    image_repository: Option<String>,
    image_tag: Option<String>,
    data_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ApiServer {
    #[serde(rename = "certSANs")]
    cert_sans: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct KubeletConfiguration {
    cgroup_driver: Option<String>,
}

fn parse_cluster_configuration(
    key: &str,
    document: &str,
) -> Result<ClusterConfiguration, ShapeError> {
    serde_yaml_ng::from_str(document).map_err(|source| ShapeError::Yaml {
        key: key.into(),
        document: "ClusterConfiguration",
        source,
    })
}

impl ClusterConfiguration {
    fn into_shape(self) -> KubeadmShape {
        let etcd_image = self.etcd.local.as_ref().and_then(|local| {
            let tag = local.image_tag.as_deref()?;
            let repository = local
                .image_repository
                .as_deref()
                .or(self.image_repository.as_deref())
                .unwrap_or("registry.k8s.io");
            Some(format!("{}/etcd:{tag}", repository.trim_end_matches('/')))
        });
        KubeadmShape {
            control_plane_endpoint: non_empty(self.control_plane_endpoint),
            pod_subnet: non_empty(self.networking.pod_subnet),
            service_subnet: non_empty(self.networking.service_subnet),
            dns_domain: non_empty(self.networking.dns_domain),
            image_repository: non_empty(self.image_repository),
            etcd_image,
            etcd_data_dir: self.etcd.local.and_then(|local| non_empty(local.data_dir)),
            api_server_cert_sans: self.api_server.cert_sans,
        }
    }
}
