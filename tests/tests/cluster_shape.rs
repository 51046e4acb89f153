//! The cluster's shape and object counts, read from a real etcd (online, at a revision) and
//! from a real snapshot file (offline, by the bbolt reader), agree with what was written.

use std::collections::BTreeMap;

use etcd_dr_cluster_shape::{cluster_shape, count_objects, ShapeKeys, DEFAULT_KUBERNETES_PREFIX};
use etcd_dr_e2e::{block_on, EtcdCluster, EtcdDr, EtcdOptions, EtcdVersion, FillSpec, StoreTarget};
use etcd_dr_etcd_backend::read_keyspace;
use etcd_dr_scheduler::{EtcdConfig, EtcdSource};
use tokio_util::sync::CancellationToken;

/// Objects encoded by Kubernetes' own serializer (crates/cluster-shape/tests/fixtures).
fn fixture(name: &str) -> Vec<u8> {
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

/// A Kubernetes-shaped etcd: generated objects, the kubeadm objects, overwrites, deletions
/// and values larger than a page.
fn kubernetes_etcd(version: EtcdVersion) -> EtcdCluster {
    let etcd = EtcdCluster::start(EtcdOptions {
        version,
        ..EtcdOptions::default()
    });
    etcd.fill(FillSpec {
        objects: 2_000,
        value_bytes: 1_500,
        seed: 7,
    });
    etcd.put(
        "/registry/configmaps/kube-system/kubeadm-config",
        &fixture("configmap_kubeadm_config"),
    );
    etcd.put(
        "/registry/configmaps/kube-system/kubelet-config",
        &fixture("configmap_kubelet_config"),
    );
    etcd.put("/registry/minions/cp1", &fixture("node_cp1"));
    etcd.put("/registry/minions/worker1", b"stale");
    etcd.put("/registry/minions/worker1", &fixture("node_worker1"));
    etcd.put("/registry/minions/gone", &fixture("node_worker1"));
    etcd.put(
        "/registry/daemonsets/kube-system/calico-node",
        &fixture("daemonset_calico_node"),
    );
    etcd.put("/registry/configmaps/default/big", &vec![b'x'; 300_000]);
    let output = etcd.etcdctl(&etcd.endpoints(), &["del", "/registry/minions/gone"]);
    assert!(output.status.success(), "etcdctl del: {output:?}");
    etcd
}

fn shape_and_counts_agree(version: EtcdVersion) {
    let etcd = kubernetes_etcd(version);
    let revision = etcd.revision();
    let expected = etcd.dump();

    // Online, at the revision, as a snapshot run reads it.
    let source = EtcdSource::new(EtcdConfig::plain(etcd.endpoints())).expect("source");
    let endpoint = etcd.endpoint(0);
    let online = block_on(async move {
        source
            .read_cluster_shape(
                &endpoint,
                DEFAULT_KUBERNETES_PREFIX,
                revision,
                &CancellationToken::new(),
            )
            .await
    })
    .expect("read shape")
    .expect("a Kubernetes etcd");
    let names: Vec<&str> = online.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["cp1", "worker1"], "the deleted node is gone");
    assert_eq!(online.kubernetes_version.as_deref(), Some("v1.34.4"));
    assert_eq!(online.cni.len(), 1);
    assert!(online.unreadable.is_empty(), "{:?}", online.unreadable);

    // Offline, from a snapshot file.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("snapshot.db");
    let output = etcd.etcdctl(
        &etcd.endpoints(),
        &["snapshot", "save", db.to_str().unwrap()],
    );
    assert!(output.status.success(), "snapshot save: {output:?}");
    let keyspace = read_keyspace(&db, |_| true).expect("read the snapshot");
    assert_eq!(keyspace.revision, revision);
    let offline: BTreeMap<Vec<u8>, Vec<u8>> = keyspace
        .keys
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().expect("every value kept")))
        .collect();
    assert_eq!(offline.len(), expected.len());
    assert!(offline == expected, "the snapshot's keyspace equals etcd's");

    let keys = ShapeKeys::new(DEFAULT_KUBERNETES_PREFIX);
    let from_file = cluster_shape(
        &keys,
        offline.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
    );
    assert_eq!(
        from_file.as_ref(),
        Some(&online),
        "offline and online agree"
    );

    let counts = count_objects(DEFAULT_KUBERNETES_PREFIX, offline.keys().map(Vec::as_slice));
    assert_eq!(
        counts.total as usize + counts.other_keys as usize,
        expected.len()
    );
    assert_eq!(counts.resources["minions"].total, 2);
    let kube_system_configmaps = expected
        .keys()
        .filter(|k| k.starts_with(b"/registry/configmaps/kube-system/"))
        .count() as u64;
    assert_eq!(
        counts.resources["configmaps"].namespaces["kube-system"],
        kube_system_configmaps
    );
}

#[test]
fn shape_and_counts_agree_on_etcd_3_5() {
    shape_and_counts_agree(EtcdVersion::V3_5);
}

#[test]
fn shape_and_counts_agree_on_etcd_3_4() {
    shape_and_counts_agree(EtcdVersion::V3_4);
}

#[test]
fn only_kept_values_are_held() {
    let etcd = kubernetes_etcd(EtcdVersion::V3_5);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("snapshot.db");
    let output = etcd.etcdctl(
        &etcd.endpoints(),
        &["snapshot", "save", db.to_str().unwrap()],
    );
    assert!(output.status.success(), "snapshot save: {output:?}");
    let keys = ShapeKeys::new(DEFAULT_KUBERNETES_PREFIX);
    let keyspace = read_keyspace(&db, |key| {
        std::str::from_utf8(key).is_ok_and(|key| keys.wants(key))
    })
    .expect("read");
    let held = keyspace.keys.values().filter(|v| v.is_some()).count();
    assert_eq!(
        held, 5,
        "kubeadm-config, kubelet-config, 2 nodes, 1 DaemonSet"
    );
    assert!(keyspace.revisions_stored as usize > keyspace.keys.len());
}

#[test]
fn inspect_reports_the_shape_and_counts_of_a_stored_snapshot() {
    let etcd = kubernetes_etcd(EtcdVersion::V3_5);
    let expected = etcd.dump();
    let store = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        "",
    );
    dr.run_ok(&["snapshot"]);

    // The snapshot run recorded the shape in the manifest, read from etcd at its revision.
    let list = dr.list_json();
    let recorded = &list[0]["kubernetes"];
    assert_eq!(recorded["kubernetes_version"], "v1.34.4");
    assert_eq!(
        recorded["kubeadm"]["control_plane_endpoint"],
        "k8s-api.example.internal:6443"
    );
    assert_eq!(recorded["nodes"].as_array().map(Vec::len), Some(2));

    let json: serde_json::Value =
        serde_json::from_str(&dr.run_ok(&["inspect", "latest", "--json"])).expect("JSON");
    assert_eq!(&json["recorded"], recorded);
    let contents = &json["contents"];
    assert_eq!(contents["revision"], etcd.revision());
    assert_eq!(contents["keys"], expected.len());
    let nodes: Vec<&str> = contents["kubernetes"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["cp1", "worker1"]);
    assert_eq!(contents["kubernetes"]["kubernetes_version"], "v1.34.4");
    let deployments = expected
        .keys()
        .filter(|k| k.starts_with(b"/registry/deployments/"))
        .count();
    assert!(deployments > 0, "the fill wrote Deployments");
    assert_eq!(
        contents["objects"]["resources"]["deployments"]["total"],
        deployments
    );

    let text = dr.run_ok(&["inspect"]);
    assert!(text.contains("Kubernetes v1.34.4"), "{text}");
    assert!(
        text.contains("network plugin: kube-system/calico-node"),
        "{text}"
    );
    assert!(text.contains(&format!("{} keys", expected.len())), "{text}");
}
