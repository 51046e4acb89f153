//! Promote through a real Kubernetes API: a primary kube-apiserver on etcd 3.6 (or 3.7) whose
//! objects are snapshotted by `etcd-dr snapshot`, and a secondary of three namespace nodes, each
//! running etcd and kube-apiserver from kubeadm-shaped static pod manifests, onto which the
//! promotion restores them (and whose worker's kubelet it restarts). What the secondary's API
//! serves afterwards is compared with what the primary's served; the snapshot's recorded shape
//! and `etcd-dr inspect` with what the test created. The 3.7 run authenticates with a bearer
//! token (`token_file`), the 3.6 one with `admin.conf`'s client certificate.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_dr_e2e::kube_ground::{
    etcd_version_of, kube_version, process_alive, whoami_with_token, ApiAuth, KubePrimary,
    KubeSecondary, Kubectl, ADMIN_TOKEN, CONTAINER_RUNTIME_VERSION, MANIFESTS, TOKEN_USER, WORKER,
    WORKER_INDEX,
};
use etcd_dr_e2e::kube_informer::{Informer, Seen};
use etcd_dr_e2e::node_runtime::RUNTIME_UNREACHABLE;
use etcd_dr_e2e::promotion::{after_results, triples};
use etcd_dr_e2e::{json_differences, tail, wait_for, EtcdDr, EtcdVersion, StoreTarget};
use etcd_dr_restore::{
    AfterAction, PromoteConfig, Promoter, PromotionRecord, PromotionRequest, PromotionState,
    PromotionTracker, StepName,
};
use etcd_dr_scheduler::EtcdConfig;
use etcd_dr_transport::SnapshotLayout;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Label on every object the test creates, so that lists leave out what the API servers make
/// for themselves.
const LABEL: &str = "etcd-dr-test=objects";

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {etcd-dr-test: objects}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops, labels: {etcd-dr-test: objects}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop, labels: {etcd-dr-test: objects}}
data: {currency: EUR, "limits.json": '{"cart": 50}'}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: flags, namespace: ops, labels: {etcd-dr-test: objects}}
data: {dark-launch: "true"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: hello, namespace: default, labels: {etcd-dr-test: objects}}
data: {greeting: hello from the primary}
---
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: shop, labels: {etcd-dr-test: objects}}
type: Opaque
stringData: {password: s3cr3t-of-the-primary, user: cart}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default, labels: {etcd-dr-test: objects}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "registry.k8s.io/pause:3.10"}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: shop, labels: {etcd-dr-test: objects}}
spec:
  replicas: 1
  selector: {matchLabels: {app: cart}}
  template:
    metadata: {labels: {app: cart}}
    spec:
      containers: [{name: cart, image: "registry.k8s.io/pause:3.10"}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: ops, labels: {etcd-dr-test: objects}}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: "registry.k8s.io/pause:3.10"}]
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com, labels: {etcd-dr-test: objects}}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              colour: {type: string}
"#;

const WIDGETS: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1, namespace: shop, labels: {etcd-dr-test: objects}}
spec: {size: 1, colour: red}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w2, namespace: shop, labels: {etcd-dr-test: objects}}
spec: {size: 2, colour: green}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w3, namespace: ops, labels: {etcd-dr-test: objects}}
spec: {size: 3, colour: blue}
"#;

/// kube-system pods as kubeadm's control plane and kube-proxy name them (unscheduled: without a
/// kubelet, only unscheduled pods go away at once when deleted), and one that must stay.
const SYSTEM_PODS: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: kube-system}
---
apiVersion: v1
kind: Pod
metadata: {name: kube-proxy-x7k2p, namespace: kube-system, labels: {k8s-app: kube-proxy}}
spec: {automountServiceAccountToken: false, containers: [{name: p, image: "registry.k8s.io/pause:3.10"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: kube-controller-manager-cp1, namespace: kube-system, labels: {component: kube-controller-manager}}
spec: {automountServiceAccountToken: false, containers: [{name: p, image: "registry.k8s.io/pause:3.10"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: kube-scheduler-cp1, namespace: kube-system, labels: {component: kube-scheduler}}
spec: {automountServiceAccountToken: false, containers: [{name: p, image: "registry.k8s.io/pause:3.10"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: coredns-keeps-running, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec: {automountServiceAccountToken: false, containers: [{name: p, image: "registry.k8s.io/pause:3.10"}]}
"#;

/// The kinds compared between primary and secondary.
const KINDS: [&str; 7] = [
    "namespaces",
    "configmaps",
    "secrets",
    "deployments.apps",
    "daemonsets.apps",
    "customresourcedefinitions.apiextensions.k8s.io",
    "widgets.example.com",
];

const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The Deployment controller's record of the ReplicaSet revision it rolled out.
const DEPLOYMENT_REVISION: &str = "deployment.kubernetes.io/revision";

fn create_objects(kubectl: &Kubectl) {
    kubectl.apply(OBJECTS);
    kubectl.ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/widgets.example.com",
    ]);
    // The CRD's REST mapping reaches kubectl's discovery a moment after Established.
    wait_for("widgets to be served", Duration::from_secs(60), || {
        kubectl
            .run(&["get", "widgets.example.com", "-A"])
            .status
            .success()
            .then_some(())
    });
    kubectl.apply(WIDGETS);
    kubectl.apply(&SYSTEM_PODS[..SYSTEM_PODS.find("---").expect("separator")]);
    kubectl.apply(SYSTEM_PODS);
}

/// `(namespace/name) → object` of `kind` with the test's label, without what an API server
/// changes by itself, a rollout restart changes or the secondary's controller manager writes
/// (resourceVersion, managedFields, generation and its DaemonSet annotation, status, the
/// restartedAt annotation, a Deployment's revision annotation: the primary runs no controller
/// manager, so its Deployments have none).
fn labelled(kubectl: &Kubectl, kind: &str) -> BTreeMap<String, Value> {
    let list = kubectl.get_json(&[kind, "-A", "-l", LABEL]);
    let mut out = BTreeMap::new();
    for item in list["items"].as_array().expect("items") {
        let mut item = item.clone();
        let meta = item["metadata"].as_object_mut().expect("metadata");
        for field in ["resourceVersion", "managedFields", "generation"] {
            meta.remove(field);
        }
        let key = format!(
            "{}/{}",
            meta.get("namespace").and_then(Value::as_str).unwrap_or(""),
            meta["name"].as_str().expect("name")
        );
        item.as_object_mut().expect("object").remove("status");
        // The API server's mirror of a DaemonSet's generation, which the restart bumps.
        if let Some(annotations) = item["metadata"]["annotations"].as_object_mut() {
            annotations.remove("deprecated.daemonset.template.generation");
            annotations.remove(DEPLOYMENT_REVISION);
        }
        if let Some(annotations) =
            item["spec"]["template"]["metadata"]["annotations"].as_object_mut()
        {
            annotations.remove(RESTARTED_AT);
            if annotations.is_empty() {
                item["spec"]["template"]["metadata"]
                    .as_object_mut()
                    .expect("template metadata")
                    .remove("annotations");
            }
        }
        out.insert(key, item);
    }
    out
}

/// kubeadm's `kube-system/kubeadm-config`, as `kubeadm init` writes it for this cluster.
fn kubeadm_config(version: EtcdVersion) -> String {
    let cluster_configuration = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: {}\n\
         controlPlaneEndpoint: k8s-api.kube.test:6443\nnetworking:\n  podSubnet: 10.244.0.0/16\n  \
         serviceSubnet: 10.96.0.0/12\n  dnsDomain: cluster.local\netcd:\n  local:\n    \
         dataDir: /var/lib/etcd\n    imageTag: {}-0\nimageRepository: registry.k8s.io\n\
         apiServer:\n  certSANs: [k8s-api.kube.test]\n",
        kube_version(),
        etcd_version_of(version)
    );
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
        "data": {"ClusterConfiguration": cluster_configuration},
    })
    .to_string()
}

/// The snapshot's recorded cluster, read through the real API server's own encoding: kubeadm's
/// ClusterConfiguration, and the Nodes the status loop registered (protobuf in etcd) with the
/// kubelet and container runtime versions it reported.
fn assert_recorded_shape(dr: &EtcdDr, version: EtcdVersion) {
    let shape = &dr.list_json()[0]["kubernetes"];
    assert_eq!(shape["kubernetes_version"], kube_version(), "{shape:#}");
    let kubeadm = &shape["kubeadm"];
    assert_eq!(kubeadm["control_plane_endpoint"], "k8s-api.kube.test:6443");
    assert_eq!(kubeadm["pod_subnet"], "10.244.0.0/16");
    assert_eq!(kubeadm["service_subnet"], "10.96.0.0/12");
    assert_eq!(kubeadm["dns_domain"], "cluster.local");
    assert_eq!(kubeadm["etcd_data_dir"], "/var/lib/etcd");
    assert_eq!(
        kubeadm["etcd_image"],
        format!("registry.k8s.io/etcd:{}-0", etcd_version_of(version))
    );
    assert_eq!(kubeadm["api_server_cert_sans"][0], "k8s-api.kube.test");
    let nodes: Vec<(&str, &Value, &str)> = shape["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let name = n["name"].as_str().unwrap_or_default();
            assert_eq!(n["kubelet_version"], kube_version(), "{name}: {n:#}");
            assert_eq!(
                n["container_runtime_version"], CONTAINER_RUNTIME_VERSION,
                "{name}: {n:#}"
            );
            (name, &n["roles"], n["ready"].as_str().unwrap_or_default())
        })
        .collect();
    let control_plane = serde_json::json!(["control-plane"]);
    assert_eq!(
        nodes,
        [
            ("cp1", &control_plane, "True"),
            ("cp2", &control_plane, "True"),
            ("cp3", &control_plane, "True"),
            ("worker-gone", &Value::Null, "False"),
            ("worker1", &Value::Null, "True"),
        ],
        "{shape:#}"
    );
}

/// Namespaces kube-apiserver makes for itself.
const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-node-lease", "kube-public", "kube-system"];

/// `etcd-dr inspect latest --json` on the snapshot `dr` took counts what the test created
/// (`before`: the labelled objects the primary's API served): namespaces (with the API
/// server's own), ConfigMaps per namespace the test put some in, the CRD and its Widgets,
/// Deployments and DaemonSets per namespace.
fn assert_inspect_counts(dr: &EtcdDr, before: &BTreeMap<&str, BTreeMap<String, Value>>) {
    let inspection: Value = serde_json::from_str(&dr.run_ok(&["inspect", "latest", "--json"]))
        .expect("inspect --json: JSON");
    assert_eq!(inspection["id"], dr.list_json()[0]["id"], "{inspection:#}");
    let resources = &inspection["contents"]["objects"]["resources"];
    // Objects of `kind` the test created, per namespace.
    let created = |kind: &str| {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for key in before[kind].keys() {
            *out.entry(key.split('/').next().unwrap_or("").to_string())
                .or_default() += 1;
        }
        out
    };
    assert_eq!(
        resources["namespaces"]["total"],
        before["namespaces"].len() + SYSTEM_NAMESPACES.len(),
        "{inspection:#}"
    );
    for (kind, resource, namespaced) in [
        ("configmaps", "configmaps", true),
        ("deployments.apps", "deployments", true),
        ("daemonsets.apps", "daemonsets", true),
        ("widgets.example.com", "example.com/widgets", true),
        (
            "customresourcedefinitions.apiextensions.k8s.io",
            "apiextensions.k8s.io/customresourcedefinitions",
            false,
        ),
    ] {
        let created = created(kind);
        assert!(!created.is_empty(), "the test created no {kind}");
        let counted = &resources[resource];
        if namespaced {
            // The primary runs no controller manager: no `kube-root-ca.crt` or other
            // ConfigMaps of its own in the test's namespaces.
            for (namespace, count) in &created {
                assert_eq!(
                    counted["namespaces"][namespace], *count,
                    "{resource} in {namespace}: {inspection:#}"
                );
            }
        }
        if kind != "configmaps" {
            // Every other one of these the test created (kube-system's ConfigMaps are the
            // API server's and kubeadm-config).
            assert_eq!(
                counted["total"],
                created.values().sum::<u64>(),
                "{resource}: {inspection:#}"
            );
        }
    }
}

fn snapshot_of(primary: &KubePrimary, store: &Path) -> EtcdDr {
    let dr = EtcdDr::with_sections(
        "prod",
        &primary.etcd.config_section(&primary.etcd.endpoints()),
        &StoreTarget::Local(store),
        "",
    );
    dr.run_ok(&["snapshot"]);
    dr
}

fn promote_with(secondary: &KubeSecondary, config: PromoteConfig, store: &Path) -> PromotionRecord {
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(store).unwrap());
    let layout = SnapshotLayout::new("", "prod").unwrap();
    let mut promoter = Promoter::new(
        config,
        store,
        layout,
        secondary.nodes(),
        secondary.workers(),
    )
    .unwrap();
    promoter.trust = etcd_dr_e2e::test_trust("prod", false);
    let tracker = PromotionTracker::new(PromotionRecord::new(
        etcd_dr_restore::new_promotion_id(chrono::Utc::now()),
        PromotionRequest::default(),
        "test@here".into(),
    ));
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(promoter.run(&tracker, &CancellationToken::new()));
    tracker.snapshot()
}

fn pretty(record: &PromotionRecord) -> String {
    serde_json::to_string_pretty(record).unwrap()
}

fn pod_names(kubectl: &Kubectl) -> Vec<String> {
    let pods = kubectl.get_json(&["pods", "-n", "kube-system"]);
    let mut names: Vec<String> = pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Each labelled Deployment's new ReplicaSet: one it controls whose pod template carries its
/// `restartedAt`, created after `promoted_at` by the secondary's kube-controller-manager, with
/// pods of its own. Waits up to `timeout` (leader election and informer sync after the
/// restart take a while on a loaded machine) and panics naming the Deployments that got none.
/// The pods stay Pending: this ground has no scheduler and no kubelet.
fn assert_new_replica_sets(
    secondary: &KubeSecondary,
    promoted_at: chrono::DateTime<chrono::Utc>,
    timeout: Duration,
) {
    let kubectl = &secondary.kubectl;
    let deadline = Instant::now() + timeout;
    let owned_by = |item: &Value, uid: &Value| {
        item["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|o| o["uid"] == *uid && o["controller"] == true)
    };
    loop {
        let deployments = kubectl.get_json(&["deployments.apps", "-A", "-l", LABEL]);
        let replica_sets = kubectl.get_json(&["replicasets.apps", "-A"]);
        let pods = kubectl.get_json(&["pods", "-A"]);
        let mut missing = Vec::new();
        for deployment in deployments["items"].as_array().expect("items") {
            let name = format!(
                "{}/{}",
                deployment["metadata"]["namespace"].as_str().unwrap_or(""),
                deployment["metadata"]["name"].as_str().unwrap_or("")
            );
            let stamp = &deployment["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT];
            let new_set = replica_sets["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|rs| {
                    owned_by(rs, &deployment["metadata"]["uid"])
                        && rs["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == *stamp
                });
            let Some(new_set) = new_set else {
                missing.push(format!("{name}: no ReplicaSet with restartedAt {stamp}"));
                continue;
            };
            let created = new_set["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("");
            let created = chrono::DateTime::parse_from_rfc3339(created).expect("creationTimestamp");
            assert!(
                created >= promoted_at - chrono::Duration::seconds(1),
                "{name}: its ReplicaSet was created at {created}, before the promotion ({promoted_at})"
            );
            let own_pods: Vec<&Value> = pods["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| owned_by(p, &new_set["metadata"]["uid"]))
                .collect();
            if own_pods.is_empty() {
                missing.push(format!("{name}: its new ReplicaSet has no pods yet"));
                continue;
            }
            for pod in own_pods {
                assert_eq!(pod["status"]["phase"], "Pending", "{name}: {pod}");
                assert!(pod["spec"]["nodeName"].is_null(), "{name}: {pod}");
            }
        }
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Deployments without a new ReplicaSet from the controller manager after {timeout:?}: \
             {missing:?}\ncp1's kube-controller-manager log (tail):\n{}",
            tail(&secondary.log(0, "kube-controller-manager"), 40)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Objects of every kind come back with their uids and content on all three API servers; the
/// workloads carry a new restartedAt; the named kube-system pods are gone; the promotion reaches
/// the API with `auth`.
fn objects_survive_promote(version: EtcdVersion, auth: ApiAuth) {
    let secondary = KubeSecondary::start(version);
    let mut primary = KubePrimary::start(version);
    create_objects(&primary.kubectl);
    primary.kubectl.apply(&kubeadm_config(version));
    let before: BTreeMap<&str, BTreeMap<String, Value>> = KINDS
        .iter()
        .map(|kind| (*kind, labelled(&primary.kubectl, kind)))
        .collect();
    assert_eq!(before["namespaces"].len(), 2);
    assert_eq!(before["configmaps"].len(), 3);
    assert_eq!(before["widgets.example.com"].len(), 3);
    assert_eq!(
        pod_names(&primary.kubectl),
        [
            "coredns-keeps-running",
            "kube-controller-manager-cp1",
            "kube-proxy-x7k2p",
            "kube-scheduler-cp1"
        ]
    );
    // No controller manager on the primary: no ReplicaSet there, so any one the secondary
    // serves after the promotion is new.
    assert_eq!(
        primary.kubectl.get_json(&["replicasets.apps", "-A"])["items"],
        serde_json::json!([])
    );
    primary.stop_status_loop();

    // The secondary has objects of its own, which the promotion replaces, and a client that
    // lists and watches its ConfigMaps the way an informer does.
    let informer = Informer::start(&secondary.servers[0], &secondary.pki, "/api/v1/configmaps");
    wait_for("the informer's first list", Duration::from_secs(30), || {
        informer
            .seen()
            .iter()
            .any(|(_, seen)| matches!(seen, Seen::Listed(..)))
            .then_some(())
    });
    secondary
        .kubectl
        .ok(&["create", "namespace", "secondary-only"]);
    secondary.kubectl.ok(&[
        "create",
        "configmap",
        "-n",
        "secondary-only",
        "mine",
        "--from-literal=k=v",
    ]);
    wait_for(
        "the informer to see the secondary's ConfigMap",
        Duration::from_secs(30),
        || {
            informer
                .seen()
                .iter()
                .any(|(_, seen)| matches!(seen, Seen::Event(kind, _) if kind == "ADDED"))
                .then_some(())
        },
    );

    let store = tempfile::tempdir().unwrap();
    let dr = snapshot_of(&primary, &store.path().join("bucket"));
    assert_recorded_shape(&dr, version);
    assert_inspect_counts(&dr, &before);
    let promoted_at = chrono::Utc::now();
    let promote_started = Instant::now();
    let control_plane = secondary.control_plane();
    let worker_kubelet = secondary
        .process(WORKER_INDEX, "kubelet")
        .expect("the worker's kubelet runs");
    let mut config = secondary.promote_config(&store.path().join("work"));
    let kube = secondary.kubernetes_config(auth);
    if auth == ApiAuth::Token {
        // The token alone authenticates (no client certificate, no kubeconfig; anonymous
        // requests may not list or patch): the API servers know it as the ground's user.
        assert_eq!(kube.kubeconfig, None);
        assert_eq!(kube.cert_file, None);
        let ca = kube.ca_file.as_deref().expect("ca_file");
        for server in &secondary.servers {
            let who = whoami_with_token(server, ca, ADMIN_TOKEN);
            assert_eq!(who["status"]["userInfo"]["username"], TOKEN_USER, "{who}");
        }
    }
    config.kubernetes = Some(kube);
    let record = promote_with(&secondary, config, &store.path().join("bucket"));
    assert_eq!(
        record.state,
        PromotionState::Succeeded,
        "{}",
        pretty(&record)
    );
    // The default commands stopped every node's etcd and kube-apiserver, and kubelet started
    // new ones; none needed the force stop.
    secondary.assert_restarted_by_kubelet(&control_plane);
    assert!(
        !record.warnings.iter().any(|w| w.contains("force stop")),
        "{:?}",
        record.warnings
    );
    let after_step = record.step(StepName::After);
    let detail = after_step.progress.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("2 deployments restarted") && detail.contains("1 daemonsets restarted"),
        "{detail}"
    );
    // The same, per object, in the record's typed results.
    assert_eq!(
        after_results(&record, AfterAction::RolloutRestart),
        triples(&[
            ("daemonsets", "ops/agent", "done"),
            ("deployments", "default/web", "done"),
            ("deployments", "shop/cart", "done"),
        ]),
        "{}",
        pretty(&record)
    );
    assert_eq!(
        after_results(&record, AfterAction::PodDelete),
        triples(&[
            ("pods", "kube-system/kube-controller-manager-cp1", "done"),
            ("pods", "kube-system/kube-proxy-x7k2p", "done"),
            ("pods", "kube-system/kube-scheduler-cp1", "done"),
        ]),
        "{}",
        pretty(&record)
    );
    assert_eq!(
        after_results(&record, AfterAction::NodesReady),
        triples(&[("nodes", "worker-gone", "warning")]),
        "{}",
        pretty(&record)
    );
    // The worker's kubelet was restarted (`systemctl restart kubelet`): a new process.
    assert_eq!(
        after_results(&record, AfterAction::KubeletRestart),
        triples(&[("", WORKER, "done")]),
        "{}",
        pretty(&record)
    );
    let restarted = secondary
        .process(WORKER_INDEX, "kubelet")
        .expect("the worker's kubelet runs after the promotion");
    assert_ne!(
        (restarted.pid, restarted.start_ticks),
        (worker_kubelet.pid, worker_kubelet.start_ticks),
        "the worker's kubelet was not restarted"
    );
    assert!(
        !process_alive(worker_kubelet.host_pid),
        "{worker_kubelet:?}"
    );

    for index in 0..3 {
        let kubectl = secondary.kubectl_on(index);
        for kind in KINDS {
            let served = labelled(&kubectl, kind);
            assert_eq!(
                served.keys().collect::<Vec<_>>(),
                before[kind].keys().collect::<Vec<_>>(),
                "cp{}: {kind}",
                index + 1
            );
            for (key, object) in &served {
                let mut diff = Vec::new();
                json_differences(&before[kind][key], object, String::new(), &mut diff);
                assert!(
                    diff.is_empty(),
                    "cp{}: {kind} {key} differs from the primary's: {diff:#?}",
                    index + 1
                );
            }
        }
        let namespaces = kubectl.ok(&["get", "namespaces", "-o", "name"]);
        assert!(!namespaces.contains("secondary-only"), "{namespaces}");
    }

    // Rollout restarts: each pod template carries a restartedAt from this promotion.
    for kind in ["deployments.apps", "daemonsets.apps"] {
        let list = secondary.kubectl.get_json(&[kind, "-A", "-l", LABEL]);
        for item in list["items"].as_array().unwrap() {
            let stamp = item["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
                .as_str()
                .unwrap_or_else(|| panic!("{kind} without {RESTARTED_AT}: {item}"));
            let stamp = chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
            assert!(
                stamp >= promoted_at - chrono::Duration::seconds(1),
                "{kind}: {stamp} is older than the promotion ({promoted_at})"
            );
        }
    }
    // The secondary's kube-controller-manager (restarted by the promotion with the rest of the
    // control plane) rolls each restarted Deployment out: a new ReplicaSet per Deployment.
    assert_new_replica_sets(&secondary, promoted_at, Duration::from_secs(240));
    // kube-proxy, controller-manager and scheduler pods deleted; the others stay (the
    // controller manager makes pods only in the workloads' namespaces, none in kube-system).
    assert_eq!(pod_names(&secondary.kubectl), ["coredns-keeps-running"]);

    // The Node that never turns Ready is named in a warning; the promotion still succeeded.
    assert!(
        record
            .warnings
            .iter()
            .any(|w| w.contains("1 of 5 Node(s) not Ready") && w.ends_with(": worker-gone")),
        "{:?}",
        record.warnings
    );

    // The informer: its watch expired (410) and its relist serves the restored ConfigMaps;
    // no list or event version after the promote is below one it saw before.
    let relisted = wait_for("the informer's relist", Duration::from_secs(60), || {
        let seen = informer.seen();
        let expired = seen
            .iter()
            .position(|(at, s)| *at > promote_started && *s == Seen::Expired)?;
        seen[expired..].iter().find_map(|(_, s)| match s {
            Seen::Listed(rv, names) => Some((*rv, names.clone())),
            _ => None,
        })
    });
    for name in ["shop/settings", "ops/flags", "default/hello"] {
        assert!(relisted.1.contains(&name.to_string()), "{relisted:?}");
    }
    assert!(
        !relisted.1.iter().any(|n| n.starts_with("secondary-only/")),
        "{relisted:?}"
    );
    let seen = informer.seen();
    let version = |s: &Seen| match s {
        Seen::Listed(rv, _) | Seen::Event(_, rv) => Some(*rv),
        _ => None,
    };
    let before_max = seen
        .iter()
        .filter(|(at, _)| *at < promote_started)
        .filter_map(|(_, s)| version(s))
        .max()
        .expect("versions before the promote");
    for (_, s) in seen.iter().filter(|(at, _)| *at > promote_started) {
        if let Some(rv) = version(s) {
            assert!(rv >= before_max, "{s:?} is below {before_max}: {seen:?}");
        }
    }
}

#[test]
fn objects_created_on_the_primary_are_served_by_the_secondary_after_promote_on_etcd_36() {
    objects_survive_promote(EtcdVersion::V3_6, ApiAuth::ClientCertificate);
}

#[test]
fn objects_created_on_the_primary_are_served_by_the_secondary_after_promote_on_etcd_37() {
    // The promotion authenticates with a bearer token from `token_file`.
    objects_survive_promote(EtcdVersion::V3_7, ApiAuth::Token);
}

#[test]
fn the_secondary_runs_its_control_plane_from_static_pod_manifests_with_nodes_ready() {
    let secondary = KubeSecondary::start(EtcdVersion::V3_6);
    // Every node runs etcd and kube-apiserver from its manifests, in its own namespaces.
    for index in 0..3 {
        for component in ["etcd", "kube-apiserver"] {
            let pid = secondary
                .pid(index, component)
                .unwrap_or_else(|| panic!("no {component} on cp{}", index + 1));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(
                cmdline.contains(&format!("127.0.0.1{}", index + 1)),
                "{component} on cp{}: {cmdline}",
                index + 1
            );
        }
    }
    // kube-controller-manager runs from its manifest on every node with kubeadm's kubeconfig,
    // and one of the three holds its leader lease (its identity: the node's host name + uuid).
    for index in 0..3 {
        let pid = secondary
            .pid(index, "kube-controller-manager")
            .unwrap_or_else(|| panic!("no kube-controller-manager on cp{}", index + 1));
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            cmdline.contains("--kubeconfig=/etc/kubernetes/controller-manager.conf")
                && cmdline.contains("--use-service-account-credentials=true"),
            "cp{}: {cmdline}",
            index + 1
        );
    }
    let leader = wait_for(
        "a kube-controller-manager to lead",
        Duration::from_secs(180),
        || {
            let output = secondary.kubectl.run(&[
                "get",
                "lease",
                "-n",
                "kube-system",
                "kube-controller-manager",
                "-o",
                "json",
            ]);
            let lease: Value = serde_json::from_slice(&output.stdout).ok()?;
            lease["spec"]["holderIdentity"].as_str().map(str::to_string)
        },
    );
    assert!(
        ["cp1_", "cp2_", "cp3_"]
            .iter()
            .any(|p| leader.starts_with(p)),
        "{leader}"
    );
    let version = secondary.kubectl.ok(&["version", "-o", "json"]);
    let version: Value = serde_json::from_str(&version).unwrap();
    assert_eq!(
        version["serverVersion"]["gitVersion"],
        etcd_dr_e2e::kube_ground::kube_version()
    );
    // The status loop registers the nodes Ready and renews their leases.
    wait_for("every node Ready", Duration::from_secs(60), || {
        let nodes = secondary.kubectl.get_json(&["nodes"]);
        let ready: Vec<String> = nodes["items"]
            .as_array()?
            .iter()
            .filter(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .map(|n| n["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect();
        (ready == ["cp1", "cp2", "cp3", "worker1"]).then_some(())
    });
    let lease = secondary
        .kubectl
        .get_json(&["lease", "-n", "kube-node-lease", "cp2"]);
    let first = lease["spec"]["renewTime"].as_str().unwrap().to_string();
    wait_for("the lease renewed", Duration::from_secs(20), || {
        let lease = secondary
            .kubectl
            .get_json(&["lease", "-n", "kube-node-lease", "cp2"]);
        (lease["spec"]["renewTime"].as_str()? != first).then_some(())
    });
    // kubelet starts again a component that dies while it runs.
    let etcd = secondary.process(1, "etcd").unwrap();
    assert_eq!(etcd.parent, secondary.process(1, "kubelet").unwrap().pid);
    secondary.on_node(1, &format!("kill -KILL {}", etcd.pid));
    wait_for(
        "kubelet to start etcd again",
        Duration::from_secs(20),
        || secondary.process(1, "etcd").filter(|p| p.pid != etcd.pid),
    );
    // The default stop commands: kubelet stopped leaves the components running; crictl finds
    // them by name and stops them; then nothing of the control plane runs.
    let control_plane = secondary.control_plane();
    let stop = PromoteConfig::new(EtcdConfig::plain(vec![])).stop_control_plane;
    let argv = |words: &[String]| {
        words
            .iter()
            .map(|w| etcd_dr_e2e::nodes::sh_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (index, processes) in control_plane.iter().enumerate() {
        secondary.on_node(index, &argv(&stop[0]));
        let inactive = secondary.ground.ssh(index, "systemctl is-active kubelet");
        assert_eq!(inactive.status.code(), Some(3));
        // etcd and kube-apiserver are the witnesses: a controller manager exits by design when
        // it loses its leader lease (a loaded machine), and only a running kubelet restarts it.
        for process in &processes[..2] {
            assert!(
                process_alive(process.host_pid),
                "{process:?} ended with kubelet"
            );
        }
        let ids = secondary.on_node(index, "crictl ps -q --name '^kube-apiserver$'");
        assert_eq!(ids.trim(), processes[1].pid.to_string());
        secondary.on_node(index, &argv(&stop[1]));
        for process in processes {
            assert!(!process_alive(process.host_pid), "{process:?} still runs");
        }
        assert!(!secondary
            .ground
            .ssh(index, "pgrep -x etcd")
            .status
            .success());
    }
    for index in 0..3 {
        secondary.kubelet(index, "start");
    }
    secondary.wait_serving(Duration::from_secs(180));
    secondary.assert_restarted_by_kubelet(&control_plane);
}

/// A kube-scheduler that ignores SIGTERM, as a hung one would.
const STUBBORN_SCHEDULER: &str = "#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 1; done\n";

#[test]
fn a_node_whose_container_runtime_does_not_answer_is_force_stopped_by_the_default_commands() {
    let secondary = KubeSecondary::start(EtcdVersion::V3_6);
    // cp2 also runs a kube-scheduler that SIGTERM does not stop.
    let cp2 = secondary.ground.node(1);
    let program = cp2.host_path("/usr/local/sbin/kube-scheduler");
    std::fs::write(&program, STUBBORN_SCHEDULER).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        cp2.host_path(&format!("{MANIFESTS}/kube-scheduler.yaml")),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-scheduler\n  namespace: kube-system\n\
         spec:\n  containers:\n  - command:\n    - /usr/local/sbin/kube-scheduler\n    \
         image: registry.k8s.io/kube-scheduler:v1.34.4\n    name: kube-scheduler\n  hostNetwork: true\n",
    )
    .unwrap();
    let scheduler = wait_for(
        "kubelet to start kube-scheduler",
        Duration::from_secs(20),
        || secondary.process(1, "kube-scheduler"),
    );
    assert_eq!(scheduler.name, "kube-scheduler");
    secondary.on_node(1, &format!("kill -TERM {}", scheduler.pid));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(cp2.process(scheduler.pid).as_ref(), Some(&scheduler));

    let mut primary = KubePrimary::start(EtcdVersion::V3_6);
    primary.kubectl.apply(&kubeadm_config(EtcdVersion::V3_6));
    primary.kubectl.ok(&[
        "create",
        "configmap",
        "from-the-primary",
        "--from-literal=k=v",
    ]);
    primary.stop_status_loop();
    let store = tempfile::tempdir().unwrap();
    snapshot_of(&primary, &store.path().join("bucket"));

    // cp2's crictl gets no answer from the container runtime: the stop commands stop its
    // kubelet but none of its containers.
    let control_plane = secondary.control_plane();
    std::fs::write(cp2.host_path(RUNTIME_UNREACHABLE), "").unwrap();
    let mut config = secondary.promote_config(&store.path().join("work"));
    config.stop_timeout = Duration::from_secs(3);
    let record = promote_with(&secondary, config, &store.path().join("bucket"));
    assert_eq!(
        record.state,
        PromotionState::Succeeded,
        "{}",
        pretty(&record)
    );
    let force_stops: Vec<&String> = record
        .warnings
        .iter()
        .filter(|w| w.contains("force stop"))
        .collect();
    assert_eq!(
        force_stops,
        ["node cp2: etcd still ran 3s after the stop commands; the force stop ([promote] force_stop_command) ended it"],
        "{}",
        pretty(&record)
    );
    // The force stop SIGKILLed cp2's etcd, kube-apiserver and kube-scheduler (SIGTERM would
    // not have stopped the last); kubelet started new ones everywhere.
    assert!(!process_alive(scheduler.host_pid), "{scheduler:?} survived");
    secondary.assert_restarted_by_kubelet(&control_plane);
    let kubelet = secondary.process(1, "kubelet").unwrap();
    let restarted = secondary.process(1, "kube-scheduler").unwrap();
    assert_eq!(restarted.parent, kubelet.pid, "{restarted:?}");
    // The restored cluster serves the primary's objects through cp2's API server.
    let served = secondary.kubectl_on(1).ok(&[
        "get",
        "configmap",
        "from-the-primary",
        "-o",
        "jsonpath={.data.k}",
    ]);
    assert_eq!(served, "v");
}
