//! The Kubernetes cluster a snapshot comes from, as its own etcd records it: what a secondary
//! must match before the snapshot can be restored there.

use serde::{Deserialize, Serialize};

/// The shape of the Kubernetes cluster at a snapshot's revision, read from etcd itself (the
/// kubeadm and kubelet ConfigMaps in `kube-system`, the Node objects, the DaemonSets of
/// `kube-system`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterShape {
    /// Kubernetes version from kubeadm's ClusterConfiguration (`kubernetesVersion`, e.g.
    /// `v1.34.4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// The kubeadm ClusterConfiguration fields a restore depends on, when the cluster was built
    /// with kubeadm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeadm: Option<KubeadmShape>,
    /// The cgroup driver of the cluster-wide kubelet configuration (`kubelet-config` ConfigMap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_cgroup_driver: Option<String>,
    /// Every Node object, sorted by name.
    #[serde(default)]
    pub nodes: Vec<ClusterNode>,
    /// DaemonSets of `kube-system` recognised as a network plugin (CNI), with their images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cni: Vec<CniDaemonSet>,
    /// What could not be read (an encrypted or undecodable object), with the key: the shape is
    /// then partial, and preflight says so instead of comparing what is missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

/// kubeadm's ClusterConfiguration, the fields that must match between the two regions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeadmShape {
    /// The API front-end name and port (`controlPlaneEndpoint`), e.g. `k8s-api.example:6443`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_endpoint: Option<String>,
    /// `networking.podSubnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_subnet: Option<String>,
    /// `networking.serviceSubnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_subnet: Option<String>,
    /// `networking.dnsDomain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_domain: Option<String>,
    /// The image repository of the control plane (`imageRepository`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_repository: Option<String>,
    /// The local etcd's image (`etcd.local.imageRepository`/`imageTag`, defaults filled in
    /// from the cluster's `imageRepository`); absent for an external etcd or kubeadm's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_image: Option<String>,
    /// The local etcd's data directory (`etcd.local.dataDir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_data_dir: Option<String>,
    /// Extra names in the API server certificate (`apiServer.certSANs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_server_cert_sans: Vec<String>,
}

/// One Node object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterNode {
    /// The node's name (its short host name under kubeadm).
    pub name: String,
    /// Roles from the `node-role.kubernetes.io/<role>` labels, sorted (e.g. `control-plane`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// `status.nodeInfo.kubeletVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_version: Option<String>,
    /// `status.nodeInfo.containerRuntimeVersion` (e.g. `containerd://1.7.27`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime_version: Option<String>,
    /// The CRI socket kubeadm recorded on the node (annotation
    /// `kubeadm.alpha.kubernetes.io/cri-socket`), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cri_socket: Option<String>,
    /// `status.nodeInfo.osImage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_image: Option<String>,
    /// `status.nodeInfo.architecture`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// `status.addresses`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    /// The Ready condition's status when the snapshot was taken (`True`, `False`, `Unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
}

impl ClusterNode {
    /// True when the node carries the `control-plane` (or the older `master`) role.
    pub fn is_control_plane(&self) -> bool {
        self.roles
            .iter()
            .any(|role| role == "control-plane" || role == "master")
    }
}

/// One entry of a Node's `status.addresses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The address itself.
    pub address: String,
}

/// A network plugin's DaemonSet in `kube-system`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniDaemonSet {
    /// The DaemonSet's name (e.g. `calico-node`, `kube-flannel-ds`, `cilium`).
    pub name: String,
    /// The images of its containers and init containers, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
}

/// The objects of a snapshot counted by resource type and namespace (`etcd-dr inspect`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectCounts {
    /// Every key under the Kubernetes prefix.
    pub total: u64,
    /// Per resource (`deployments`, `apiextensions.k8s.io/customresourcedefinitions`,
    /// `example.com/widgets`, …): objects in all namespaces, and per namespace.
    pub resources: std::collections::BTreeMap<String, ResourceCount>,
    /// Keys outside the Kubernetes prefix (other users of the same etcd).
    pub other_keys: u64,
}

/// How many objects of one resource a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceCount {
    /// Objects in all namespaces (or cluster-scoped).
    pub total: u64,
    /// Per namespace; empty for a cluster-scoped resource.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub namespaces: std::collections::BTreeMap<String, u64>,
}
