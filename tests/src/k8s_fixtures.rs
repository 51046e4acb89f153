//! Kubernetes objects encoded by Kubernetes' own serializer
//! (`crates/cluster-shape/tests/fixtures/objects.hex`, one `name hex` per line).

/// The stored bytes of fixture `name` (e.g. `node_cp1`).
pub fn fixture(name: &str) -> Vec<u8> {
    include_str!("../../crates/cluster-shape/tests/fixtures/objects.hex")
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .unwrap_or_else(|| panic!("fixture {name}"))
}

/// A kubeadm cluster's shape as JSON objects (as an API server with JSON storage writes them):
/// `(etcd key, value)` for the kubeadm-config ConfigMap and one control-plane Node per name.
pub struct KubeadmCluster<'a> {
    /// `kubernetesVersion`, e.g. `v1.34.4`.
    pub version: &'a str,
    /// `controlPlaneEndpoint`, e.g. `k8s-api.dr.test:6443`.
    pub control_plane_endpoint: &'a str,
    /// `etcd.local.imageTag`, e.g. `3.5.16-0`.
    pub etcd_image_tag: &'a str,
    /// The control-plane nodes' names.
    pub nodes: &'a [&'a str],
    /// Their CRI socket (kubeadm's `kubeadm.alpha.kubernetes.io/cri-socket` annotation).
    pub cri_socket: &'a str,
    /// Their `containerRuntimeVersion`, e.g. `containerd://1.7.27`.
    pub runtime_version: &'a str,
}

impl KubeadmCluster<'_> {
    /// The objects to put into etcd; node `i`'s InternalIP is `10.0.0.1<i+1>`.
    pub fn objects(&self) -> Vec<(String, Vec<u8>)> {
        let cluster_configuration = format!(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: {}\n\
             controlPlaneEndpoint: {}\nnetworking:\n  podSubnet: 10.244.0.0/16\n  serviceSubnet: 10.96.0.0/12\n  \
             dnsDomain: cluster.local\netcd:\n  local:\n    dataDir: /var/lib/etcd\n    imageTag: {}\n\
             imageRepository: registry.k8s.io\n",
            self.version, self.control_plane_endpoint, self.etcd_image_tag
        );
        let mut objects = vec![(
            "/registry/configmaps/kube-system/kubeadm-config".to_string(),
            serde_json::json!({
                "kind": "ConfigMap", "apiVersion": "v1",
                "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
                "data": {"ClusterConfiguration": cluster_configuration},
            }),
        )];
        for (index, name) in self.nodes.iter().enumerate() {
            objects.push((
                format!("/registry/minions/{name}"),
                serde_json::json!({
                    "kind": "Node", "apiVersion": "v1",
                    "metadata": {
                        "name": name,
                        "labels": {"node-role.kubernetes.io/control-plane": ""},
                        "annotations": {"kubeadm.alpha.kubernetes.io/cri-socket": self.cri_socket},
                    },
                    "status": {
                        "nodeInfo": {"kubeletVersion": self.version, "containerRuntimeVersion": self.runtime_version},
                        "addresses": [{"type": "InternalIP", "address": format!("10.0.0.1{}", index + 1)}],
                    },
                }),
            ));
        }
        objects
            .into_iter()
            .map(|(key, value)| (key, value.to_string().into_bytes()))
            .collect()
    }
}
