//! The shape read from objects encoded by Kubernetes' own serializer (see fixtures/README.md).

use std::collections::BTreeMap;

use etcd_dr_cluster_shape::{cluster_shape, decode_object, proto, ShapeError, ShapeKeys};
use etcd_dr_core::{ClusterNode, CniDaemonSet, KubeadmShape, NodeAddress};

fn fixtures() -> BTreeMap<String, Vec<u8>> {
    include_str!("fixtures/objects.hex")
        .lines()
        .map(|line| {
            let (name, hex) = line.split_once(' ').expect("name hex");
            (name.to_string(), hex::decode(hex).expect("hex"))
        })
        .collect()
}

fn stored(keys: &ShapeKeys) -> Vec<(Vec<u8>, Vec<u8>)> {
    let f = fixtures();
    vec![
        (
            keys.kubeadm_config.clone(),
            f["configmap_kubeadm_config"].clone(),
        ),
        (
            keys.kubelet_config.clone(),
            f["configmap_kubelet_config"].clone(),
        ),
        (format!("{}cp1", keys.nodes_prefix), f["node_cp1"].clone()),
        (
            format!("{}worker1", keys.nodes_prefix),
            f["node_worker1"].clone(),
        ),
        (
            format!("{}kube-system/calico-node", keys.daemonsets_prefix),
            f["daemonset_calico_node"].clone(),
        ),
        // Not part of the shape: ignored.
        (
            "/registry/pods/default/web".to_string(),
            b"k8s\0garbage".to_vec(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.into_bytes(), v))
    .collect()
}

#[test]
fn the_shape_of_a_kubeadm_cluster() {
    let keys = ShapeKeys::new("/registry");
    let objects = stored(&keys);
    let shape = cluster_shape(
        &keys,
        objects.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
    )
    .expect("a Kubernetes etcd");
    assert_eq!(shape.kubernetes_version.as_deref(), Some("v1.34.4"));
    assert_eq!(
        shape.kubeadm,
        Some(KubeadmShape {
            control_plane_endpoint: Some("k8s-api.example.internal:6443".into()),
            pod_subnet: Some("10.244.0.0/16".into()),
            service_subnet: Some("10.96.0.0/12".into()),
            dns_domain: Some("cluster.local".into()),
            image_repository: Some("registry.k8s.io".into()),
            etcd_image: Some("registry.k8s.io/etcd:3.6.4-0".into()),
            etcd_data_dir: Some("/var/lib/etcd".into()),
            api_server_cert_sans: vec!["k8s-api.example.internal".into(), "10.0.0.100".into()],
        })
    );
    assert_eq!(shape.kubelet_cgroup_driver.as_deref(), Some("systemd"));
    assert_eq!(
        shape.nodes,
        vec![
            ClusterNode {
                name: "cp1".into(),
                roles: vec!["control-plane".into()],
                kubelet_version: Some("v1.34.4".into()),
                container_runtime_version: Some("containerd://1.7.27".into()),
                cri_socket: Some("unix:///var/run/containerd/containerd.sock".into()),
                os_image: Some("Debian GNU/Linux 12 (bookworm)".into()),
                architecture: Some("amd64".into()),
                addresses: vec![
                    NodeAddress {
                        kind: "InternalIP".into(),
                        address: "10.0.0.11".into()
                    },
                    NodeAddress {
                        kind: "Hostname".into(),
                        address: "cp1".into()
                    },
                ],
                ready: Some("True".into()),
            },
            ClusterNode {
                name: "worker1".into(),
                roles: vec![],
                kubelet_version: Some("v1.34.4".into()),
                container_runtime_version: Some("cri-o://1.34.1".into()),
                cri_socket: None,
                os_image: None,
                architecture: None,
                addresses: vec![],
                ready: Some("Unknown".into()),
            },
        ]
    );
    assert!(shape.nodes[0].is_control_plane());
    assert!(!shape.nodes[1].is_control_plane());
    assert_eq!(
        shape.cni,
        vec![CniDaemonSet {
            name: "kube-system/calico-node".into(),
            images: vec![
                "docker.io/calico/cni:v3.29.1".into(),
                "docker.io/calico/node:v3.29.1".into()
            ],
        }]
    );
    assert!(shape.unreadable.is_empty(), "{:?}", shape.unreadable);
}

#[test]
fn an_etcd_without_kubernetes_has_no_shape() {
    let keys = ShapeKeys::new("/registry");
    let objects: Vec<(&[u8], &[u8])> = vec![(b"/app/config", b"{}"), (b"/registry", b"x")];
    assert_eq!(cluster_shape(&keys, objects), None);
}

#[test]
fn unreadable_objects_are_named_not_fatal() {
    let keys = ShapeKeys::new("/registry");
    let mut objects = stored(&keys);
    // Encrypted at rest, and a truncated protobuf.
    objects.push((
        format!("{}cp2", keys.nodes_prefix).into_bytes(),
        b"k8s:enc:aescbc:v1:key1:...".to_vec(),
    ));
    let mut truncated = fixtures()["node_cp1"].clone();
    truncated.truncate(truncated.len() / 2);
    objects.push((format!("{}cp3", keys.nodes_prefix).into_bytes(), truncated));
    let shape = cluster_shape(
        &keys,
        objects.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
    )
    .unwrap();
    assert_eq!(shape.nodes.len(), 2, "the readable nodes are still there");
    assert_eq!(shape.unreadable.len(), 2, "{:?}", shape.unreadable);
    assert!(shape.unreadable[0].contains("/registry/minions/cp2"));
    assert!(shape.unreadable[0].contains("encrypted"));
    assert!(shape.unreadable[1].contains("/registry/minions/cp3"));
}

#[test]
fn json_objects_decode_like_protobuf_ones() {
    let json = br#"{"kind":"Node","apiVersion":"v1","metadata":{"name":"cp9","labels":{"node-role.kubernetes.io/control-plane":""}},
        "status":{"conditions":[{"type":"Ready","status":"False"}],"nodeInfo":{"kubeletVersion":"v1.35.0","containerRuntimeVersion":"containerd://2.0.0"}}}"#;
    let keys = ShapeKeys::new("/registry");
    let objects: Vec<(&[u8], &[u8])> = vec![(b"/registry/minions/cp9", json)];
    let shape = cluster_shape(&keys, objects).unwrap();
    assert_eq!(shape.nodes[0].name, "cp9");
    assert_eq!(shape.nodes[0].roles, vec!["control-plane".to_string()]);
    assert_eq!(shape.nodes[0].ready.as_deref(), Some("False"));
    assert_eq!(shape.nodes[0].kubelet_version.as_deref(), Some("v1.35.0"));
    assert_eq!(shape.kubeadm, None);
}

#[test]
fn decode_errors_name_the_key() {
    let error = decode_object::<proto::Node>("/registry/minions/x", b"plain text", "Node")
        .expect_err("not an object");
    assert!(matches!(error, ShapeError::UnknownEncoding { .. }));
    assert!(error.to_string().contains("/registry/minions/x"));
}
