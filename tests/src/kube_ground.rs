//! A real Kubernetes control plane for the promote tests: kube-apiserver and
//! kube-controller-manager (built from `k8s.io/kubernetes` by the install script) on etcd
//! 3.6/3.7, run from kubeadm-shaped static pod manifests by a kubelet stand-in on three namespace
//! nodes, with kubeadm's PKI layout and client-certificate `admin.conf` and
//! `controller-manager.conf`; a primary API on this machine; a status loop that keeps Node
//! objects Ready as kubelets would; and `kubectl`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_dr_nodes::{Node, NodeRole, SshExecutor};
use etcd_dr_restore::{KubernetesConfig, PromoteConfig};
use etcd_dr_scheduler::EtcdConfig;

use crate::kube_pki::KubePki;
use crate::kubelet::answers;
use crate::nodes::ControlPlaneNodes;
use crate::{free_port, tools, wait_for, EtcdCluster, EtcdOptions, EtcdVersion};

/// The kubelet stand-in for a whole control plane:
/// `kube-standin.sh start|stop|stopped MANIFEST_DIR STATE_DIR BIN_DIRS`.
///
/// `start` runs the command of every `*.yaml` static pod manifest in `MANIFEST_DIR` (etcd first,
/// the binaries found on `BIN_DIRS`), detached, pid in `STATE_DIR/<manifest>.pid`, log in
/// `STATE_DIR/<manifest>.log`; `stop` stops them (TERM, then KILL after 10 s) and waits until
/// they are gone; `stopped` succeeds when this node's etcd does not run. A zombie counts as gone.
pub const KUBE_STANDIN_SCRIPT: &str = r#"#!/bin/sh
set -u
action=$1
manifests=$2
state=$3
PATH=$4:$PATH
alive() {
    [ -e "/proc/$1" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null
}
running() {
    [ -f "$state/$1.pid" ] && alive "$(cat "$state/$1.pid")"
}
components() {
    # etcd first, then the rest in name order.
    for f in "$manifests"/etcd.yaml "$manifests"/*.yaml; do
        [ -f "$f" ] && basename "$f" .yaml
    done | awk '!seen[$0]++'
}
case $action in
start)
    mkdir -p "$state"
    for c in $(components); do
        running "$c" && continue
        words=$(awk '/^ *- command:/ { on = 1; next } on && /^ *- / { sub(/^ *- /, ""); print; next } on { exit }' "$manifests/$c.yaml")
        [ -n "$words" ] || { echo "no command in $manifests/$c.yaml" >&2; exit 1; }
        # shellcheck disable=SC2086
        setsid $words >>"$state/$c.log" 2>&1 </dev/null &
        echo $! >"$state/$c.pid"
    done
    ;;
stop)
    for pidfile in "$state"/*.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        alive "$pid" && kill "$pid"
    done
    for pidfile in "$state"/*.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        i=0
        while alive "$pid" && [ $i -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        alive "$pid" && kill -9 "$pid"
        rm -f "$pidfile"
    done
    ;;
stopped)
    ! running etcd
    ;;
*)
    echo "unknown action $action" >&2
    exit 2
    ;;
esac
"#;

/// Where the stand-in keeps pids and logs, on each node.
pub const STANDIN_STATE: &str = "/etc/kubernetes/standin";
/// The static pod manifests, on each node.
pub const MANIFESTS: &str = "/etc/kubernetes/manifests";

/// A kubeadm-shaped etcd static pod manifest (plain HTTP clients and peers, fast elections).
pub fn etcd_manifest(
    name: &str,
    client_url: &str,
    peer_url: &str,
    initial_cluster: &str,
    token: &str,
    version: &str,
) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: {client_url}
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls={client_url}
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls={peer_url}
    - --initial-cluster={initial_cluster}
    - --initial-cluster-state=new
    - --initial-cluster-token={token}
    - --listen-client-urls={client_url}
    - --listen-peer-urls={peer_url}
    - --name={name}
    - --heartbeat-interval=50
    - --election-timeout=500
    - --logger=zap
    - --log-level=warn
    image: registry.k8s.io/etcd:{version}-0
    name: etcd
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
  hostNetwork: true
  priorityClassName: system-node-critical
  volumes:
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
status: {{}}
"#
    )
}

/// kube-apiserver's flags (kubeadm's, trimmed to what runs without a kubelet), for a server on
/// `address:port` with the PKI under `pki` and etcd at `etcd_servers`.
pub fn apiserver_flags(address: &str, port: u16, pki: &str, etcd_servers: &str) -> Vec<String> {
    [
        format!("--advertise-address={address}"),
        format!("--bind-address={address}"),
        format!("--secure-port={port}"),
        "--allow-privileged=true".into(),
        "--authorization-mode=Node,RBAC".into(),
        format!("--client-ca-file={pki}/ca.crt"),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--enable-bootstrap-token-auth=true".into(),
        format!("--etcd-servers={etcd_servers}"),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={pki}/sa.pub"),
        format!("--service-account-signing-key-file={pki}/sa.key"),
        "--service-cluster-ip-range=10.96.0.0/12".into(),
        format!("--tls-cert-file={pki}/apiserver.crt"),
        format!("--tls-private-key-file={pki}/apiserver.key"),
        // The `kubernetes` Service's endpoints may not be loopback addresses, which is all
        // this ground has.
        "--endpoint-reconciler-type=none".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ]
    .into()
}

/// A kubeadm-shaped kube-apiserver static pod manifest.
pub fn apiserver_manifest(flags: &[String], version: &str) -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    component: kube-apiserver\n    \
         tier: control-plane\n  name: kube-apiserver\n  namespace: kube-system\nspec:\n  \
         containers:\n  - command:\n    - kube-apiserver\n",
    );
    for flag in flags {
        text.push_str(&format!("    - {flag}\n"));
    }
    text.push_str(&format!(
        "    image: registry.k8s.io/kube-apiserver:{version}\n    name: kube-apiserver\n    \
         volumeMounts:\n    - mountPath: /etc/kubernetes/pki\n      name: k8s-certs\n      \
         readOnly: true\n  hostNetwork: true\n  priorityClassName: system-node-critical\n  \
         volumes:\n  - hostPath:\n      path: /etc/kubernetes/pki\n      type: DirectoryOrCreate\n    \
         name: k8s-certs\nstatus: {{}}\n"
    ));
    text
}

/// kube-controller-manager's flags as kubeadm 1.34 writes them (the PKI under
/// `/etc/kubernetes/pki`, `controller-manager.conf` beside it), serving on `127.0.0.1:port`:
/// kubeadm leaves the port at its default, but the nodes of this ground share one loopback.
/// With the client and front-proxy CAs given as files it looks nothing up in the API at start,
/// so it may start before kube-apiserver answers (leader election waits for it).
pub fn controller_manager_flags(port: u16) -> Vec<String> {
    let conf = "/etc/kubernetes/controller-manager.conf";
    let pki = "/etc/kubernetes/pki";
    [
        "--allocate-node-cidrs=true".to_string(),
        format!("--authentication-kubeconfig={conf}"),
        format!("--authorization-kubeconfig={conf}"),
        "--bind-address=127.0.0.1".into(),
        format!("--client-ca-file={pki}/ca.crt"),
        "--cluster-cidr=10.244.0.0/16".into(),
        "--cluster-name=kubernetes".into(),
        format!("--cluster-signing-cert-file={pki}/ca.crt"),
        format!("--cluster-signing-key-file={pki}/ca.key"),
        // No file matches the `*` here, so the stand-in's unquoted words keep it as it is.
        "--controllers=*,bootstrapsigner,tokencleaner".into(),
        format!("--kubeconfig={conf}"),
        "--leader-elect=true".into(),
        format!("--requestheader-client-ca-file={pki}/front-proxy-ca.crt"),
        format!("--root-ca-file={pki}/ca.crt"),
        format!("--secure-port={port}"),
        format!("--service-account-private-key-file={pki}/sa.key"),
        "--service-cluster-ip-range=10.96.0.0/12".into(),
        "--use-service-account-credentials=true".into(),
    ]
    .into()
}

/// A kubeadm-shaped kube-controller-manager static pod manifest.
pub fn controller_manager_manifest(flags: &[String], version: &str) -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    component: kube-controller-manager\n    \
         tier: control-plane\n  name: kube-controller-manager\n  namespace: kube-system\nspec:\n  \
         containers:\n  - command:\n    - kube-controller-manager\n",
    );
    for flag in flags {
        text.push_str(&format!("    - {flag}\n"));
    }
    text.push_str(&format!(
        "    image: registry.k8s.io/kube-controller-manager:{version}\n    \
         name: kube-controller-manager\n    volumeMounts:\n    - mountPath: /etc/kubernetes/pki\n      \
         name: k8s-certs\n      readOnly: true\n    - mountPath: /etc/kubernetes/controller-manager.conf\n      \
         name: kubeconfig\n      readOnly: true\n  hostNetwork: true\n  \
         priorityClassName: system-node-critical\n  volumes:\n  - hostPath:\n      \
         path: /etc/kubernetes/pki\n      type: DirectoryOrCreate\n    name: k8s-certs\n  \
         - hostPath:\n      path: /etc/kubernetes/controller-manager.conf\n      type: FileOrCreate\n    \
         name: kubeconfig\nstatus: {{}}\n"
    ));
    text
}

/// The Kubernetes version the install script built (`TESTGROUND_KUBE_VERSION`), e.g. `v1.34.4`.
pub fn kube_version() -> String {
    let output = Command::new(tools().kube_bin().join("kube-apiserver"))
        .arg("--version")
        .output()
        .expect("kube-apiserver --version");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .trim_start_matches("Kubernetes ")
        .to_string()
}

/// `kubectl --kubeconfig KUBECONFIG …`.
#[derive(Debug, Clone)]
pub struct Kubectl {
    /// The kubeconfig it uses.
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// Runs kubectl with `args`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(tools().kube_bin().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--request-timeout", "20s"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl with `args`; panics with its stderr unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `kubectl apply -f -` with `yaml` on stdin.
    pub fn apply(&self, yaml: &str) {
        use std::io::Write;
        let mut child = Command::new(tools().kube_bin().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl apply");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write manifest");
        let output = child.wait_with_output().expect("kubectl apply");
        assert!(
            output.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `kubectl get ARGS -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl get: JSON")
    }
}

/// What the status loop reports for one node.
#[derive(Debug, Clone)]
pub struct SimulatedNode {
    /// The Node's name.
    pub name: String,
    /// Control plane (`node-role.kubernetes.io/control-plane`) or worker.
    pub control_plane: bool,
    /// Its Ready condition.
    pub ready: bool,
}

impl SimulatedNode {
    /// A node reporting Ready.
    pub fn ready(name: &str, control_plane: bool) -> Self {
        Self {
            name: name.into(),
            control_plane,
            ready: true,
        }
    }
}

/// What kubelet's status loop does, for nodes that have no kubelet here: registers each Node,
/// reports its Ready condition and renews its `kube-node-lease` Lease every second, through the
/// first of `servers` that answers. API errors (a server down during a promote) are retried on
/// the next round. Stopped on drop.
pub struct NodeStatusLoop {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NodeStatusLoop {
    /// Starts reporting `nodes` to `servers` (URLs) as the admin of `pki`.
    pub fn start(servers: Vec<String>, pki: &KubePki, nodes: Vec<SimulatedNode>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let identity = format!("{}\n{}", pki.admin.cert, pki.admin.key);
        let ca = pki.ca.cert.clone();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("status loop runtime");
                runtime.block_on(async move {
                    let client = reqwest::Client::builder()
                        .tls_certs_only(
                            reqwest::Certificate::from_pem_bundle(ca.as_bytes()).expect("ca"),
                        )
                        .identity(
                            reqwest::Identity::from_pem(identity.as_bytes()).expect("identity"),
                        )
                        .timeout(Duration::from_secs(5))
                        .build()
                        .expect("status loop client");
                    while !stop.load(Ordering::SeqCst) {
                        for server in &servers {
                            if report_all(&client, server, &nodes).await.is_ok() {
                                break;
                            }
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                });
            })
        };
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NodeStatusLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    content_type: &str,
    body: serde_json::Value,
) -> Result<u16, reqwest::Error> {
    let response = client
        .request(method, url)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await?;
    Ok(response.status().as_u16())
}

async fn report_all(
    client: &reqwest::Client,
    server: &str,
    nodes: &[SimulatedNode],
) -> Result<(), String> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let micro = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let bad = |what: &str, status: u16| format!("{what}: HTTP {status}");
    let json = "application/json";
    let merge = "application/merge-patch+json";
    for node in nodes {
        let name = &node.name;
        let mut labels = serde_json::json!({ "kubernetes.io/hostname": name });
        if node.control_plane {
            labels["node-role.kubernetes.io/control-plane"] = "".into();
        }
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": name, "labels": labels },
        });
        let status = send(
            client,
            reqwest::Method::POST,
            format!("{server}/api/v1/nodes"),
            json,
            body,
        )
        .await
        .map_err(|e| e.to_string())?;
        if status != 201 && status != 409 {
            return Err(bad("create node", status));
        }
        let (state, reason) = if node.ready {
            ("True", "KubeletReady")
        } else {
            ("False", "KubeletNotReady")
        };
        let body = serde_json::json!({ "status": { "conditions": [{
            "type": "Ready", "status": state, "reason": reason,
            "message": format!("status loop of the test ground: {reason}"),
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }] } });
        let status = send(
            client,
            reqwest::Method::PATCH,
            format!("{server}/api/v1/nodes/{name}/status"),
            merge,
            body,
        )
        .await
        .map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(bad("node status", status));
        }
        let lease =
            format!("{server}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases");
        let spec = serde_json::json!({
            "holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro,
        });
        let status = send(
            client,
            reqwest::Method::PATCH,
            format!("{lease}/{name}"),
            merge,
            serde_json::json!({ "spec": spec }),
        )
        .await
        .map_err(|e| e.to_string())?;
        if status == 404 {
            let body = serde_json::json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": { "name": name, "namespace": "kube-node-lease" },
                "spec": spec,
            });
            let status = send(client, reqwest::Method::POST, lease, json, body)
                .await
                .map_err(|e| e.to_string())?;
            if status != 201 && status != 409 {
                return Err(bad("create lease", status));
            }
        } else if status != 200 {
            return Err(bad("renew lease", status));
        }
    }
    Ok(())
}

/// Waits until `GET /readyz` on `server` answers 200 (through kubectl's raw call).
pub fn wait_ready(kubectl: &Kubectl, server: &str, timeout: Duration) {
    let config = kubectl.kubeconfig.display().to_string();
    wait_for(&format!("{server}/readyz"), timeout, || {
        let output = Command::new(tools().kube_bin().join("kubectl"))
            .args(["--kubeconfig", &config, "--server", server])
            .args(["--request-timeout", "5s", "get", "--raw", "/readyz"])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        output.status.success().then_some(())
    });
}

/// The primary: a three-member etcd (members cp1..cp3) and one kube-apiserver on 127.0.0.1,
/// with its own PKI and `admin.conf`; its Nodes kept by a status loop (cp1..cp3 and `worker1`
/// Ready, `worker-gone` not Ready). Everything is killed on drop.
pub struct KubePrimary {
    /// Its etcd.
    pub etcd: EtcdCluster,
    /// Its PKI.
    pub pki: KubePki,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// kubectl with the primary's admin.conf.
    pub kubectl: Kubectl,
    dir: tempfile::TempDir,
    apiserver: Option<Child>,
    status_loop: Option<NodeStatusLoop>,
}

/// The Nodes the primary reports: three control-plane nodes and two workers, one of which is
/// not Ready (and has no kubelet at the secondary either).
pub fn primary_nodes() -> Vec<SimulatedNode> {
    vec![
        SimulatedNode::ready("cp1", true),
        SimulatedNode::ready("cp2", true),
        SimulatedNode::ready("cp3", true),
        SimulatedNode::ready("worker1", false),
        SimulatedNode {
            name: "worker-gone".into(),
            control_plane: false,
            ready: false,
        },
    ]
}

impl KubePrimary {
    /// Starts etcd `version` and kube-apiserver, waits for `/readyz`, starts the status loop.
    pub fn start(version: EtcdVersion) -> Self {
        let etcd = EtcdCluster::start(EtcdOptions {
            members: 3,
            member_names: vec!["cp1".into(), "cp2".into(), "cp3".into()],
            version,
            ..EtcdOptions::default()
        });
        let dir = tempfile::Builder::new()
            .prefix("etcd-dr-kube-primary-")
            .tempdir()
            .expect("temp dir");
        let pki = KubePki::generate(&[]);
        let pki_dir = dir.path().join("pki");
        pki.write(&pki_dir);
        let port = free_port();
        let server = format!("https://127.0.0.1:{port}");
        let kubeconfig = dir.path().join("admin.conf");
        std::fs::write(&kubeconfig, pki.admin_conf(&server)).expect("admin.conf");
        let flags = apiserver_flags(
            "127.0.0.1",
            port,
            &pki_dir.display().to_string(),
            &etcd.endpoints().join(","),
        );
        let log = std::fs::File::create(dir.path().join("kube-apiserver.log")).expect("log");
        let apiserver = Command::new(tools().kube_bin().join("kube-apiserver"))
            .args(&flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn kube-apiserver");
        let kubectl = Kubectl { kubeconfig };
        let mut primary = Self {
            etcd,
            pki,
            server,
            kubectl,
            dir,
            apiserver: Some(apiserver),
            status_loop: None,
        };
        wait_ready(&primary.kubectl, &primary.server, Duration::from_secs(120));
        primary.status_loop = Some(NodeStatusLoop::start(
            vec![primary.server.clone()],
            &primary.pki,
            primary_nodes(),
        ));
        primary
    }

    /// kube-apiserver's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kube-apiserver.log")).unwrap_or_default()
    }

    /// Stops the status loop (before a snapshot, so that nothing changes under it).
    pub fn stop_status_loop(&mut self) {
        self.status_loop.take();
    }
}

impl Drop for KubePrimary {
    fn drop(&mut self) {
        self.status_loop.take();
        if let Some(mut child) = self.apiserver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The secondary: three namespace nodes cp1..cp3, each with kubeadm's PKI (one cluster CA, a
/// serving certificate naming all three addresses), `admin.conf`, `controller-manager.conf`
/// (its own kube-apiserver) and static pod manifests for etcd (three members, plain HTTP),
/// kube-apiserver (on the node's own address, its own member as etcd) and
/// kube-controller-manager (leader-elected among the three), run by [`KUBE_STANDIN_SCRIPT`]. A
/// status loop keeps cp1..cp3 and `worker1` Ready through any of the three API servers. The
/// primary runs no controller manager: its objects only need to exist.
pub struct KubeSecondary {
    /// The nodes.
    pub ground: ControlPlaneNodes,
    /// Its PKI (the same files on every node).
    pub pki: KubePki,
    /// Which etcd the nodes run.
    pub version: EtcdVersion,
    /// etcd client URLs, cp1..cp3.
    pub client_urls: Vec<String>,
    /// kube-apiserver URLs, cp1..cp3.
    pub servers: Vec<String>,
    /// kubectl with `admin.conf` (server: cp1).
    pub kubectl: Kubectl,
    /// The stand-in script.
    pub standin: PathBuf,
    status_loop: Option<NodeStatusLoop>,
}

/// The Nodes the secondary's kubelets would report: the control plane and `worker1`.
pub fn secondary_nodes() -> Vec<SimulatedNode> {
    vec![
        SimulatedNode::ready("cp1", true),
        SimulatedNode::ready("cp2", true),
        SimulatedNode::ready("cp3", true),
        SimulatedNode::ready("worker1", false),
    ]
}

impl KubeSecondary {
    /// Starts the nodes, writes their files, starts etcd, kube-apiserver and
    /// kube-controller-manager on each, waits for every `/readyz` and starts the status loop.
    pub fn start(version: EtcdVersion) -> Self {
        let ground = ControlPlaneNodes::start(3);
        let addresses: Vec<String> = ground.nodes().iter().map(|n| n.address.clone()).collect();
        let mut names: Vec<&str> = addresses.iter().map(String::as_str).collect();
        let hosts = ground.names();
        names.extend(hosts.iter().map(String::as_str));
        let pki = KubePki::generate(&names);
        let standin = ground.dir().join("kube-standin.sh");
        std::fs::write(&standin, KUBE_STANDIN_SCRIPT).expect("write stand-in");
        let peers: Vec<(String, String, String)> = ground
            .nodes()
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    format!("http://{}:{}", n.address, free_port()),
                    format!("http://{}:{}", n.address, free_port()),
                )
            })
            .collect();
        let initial_cluster = peers
            .iter()
            .map(|(name, _, peer)| format!("{name}={peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let etcd_version = etcd_version_of(version);
        let kube = kube_version();
        let mut servers = Vec::new();
        for (index, (name, client, peer)) in peers.iter().enumerate() {
            let node = ground.node(index);
            pki.write(&node.host_path("/etc/kubernetes/pki"));
            let manifests = node.host_path(MANIFESTS);
            std::fs::create_dir_all(&manifests).expect("manifests dir");
            std::fs::write(
                manifests.join("etcd.yaml"),
                etcd_manifest(
                    name,
                    client,
                    peer,
                    &initial_cluster,
                    "secondary",
                    &etcd_version,
                ),
            )
            .expect("etcd.yaml");
            let port = free_port();
            let flags = apiserver_flags(&node.address, port, "/etc/kubernetes/pki", client);
            std::fs::write(
                manifests.join("kube-apiserver.yaml"),
                apiserver_manifest(&flags, &kube),
            )
            .expect("kube-apiserver.yaml");
            let server = format!("https://{}:{port}", node.address);
            std::fs::write(
                node.host_path("/etc/kubernetes/admin.conf"),
                pki.admin_conf(&server),
            )
            .expect("admin.conf");
            std::fs::write(
                node.host_path("/etc/kubernetes/controller-manager.conf"),
                pki.controller_manager_conf(&server),
            )
            .expect("controller-manager.conf");
            std::fs::write(
                manifests.join("kube-controller-manager.yaml"),
                controller_manager_manifest(&controller_manager_flags(free_port()), &kube),
            )
            .expect("kube-controller-manager.yaml");
            servers.push(server);
        }
        let kubeconfig = ground.dir().join("admin.conf");
        std::fs::write(&kubeconfig, pki.admin_conf(&servers[0])).expect("admin.conf");
        let mut secondary = Self {
            ground,
            pki,
            version,
            client_urls: peers.into_iter().map(|(_, client, _)| client).collect(),
            servers,
            kubectl: Kubectl { kubeconfig },
            standin,
            status_loop: None,
        };
        for index in 0..3 {
            secondary.kubelet(index, "start");
        }
        secondary.wait_serving(Duration::from_secs(180));
        secondary.status_loop = Some(NodeStatusLoop::start(
            secondary.servers.clone(),
            &secondary.pki,
            secondary_nodes(),
        ));
        secondary
    }

    /// The stand-in's argv for `action` on a node.
    pub fn kubelet_argv(&self, action: &str) -> Vec<String> {
        let bins = format!(
            "{}:{}",
            self.version.bin_dir().display(),
            tools().kube_bin().display()
        );
        vec![
            "sh".into(),
            self.standin.display().to_string(),
            action.into(),
            MANIFESTS.into(),
            STANDIN_STATE.into(),
            bins,
        ]
    }

    /// Runs the stand-in's `action` on node `index` over ssh; panics when it fails.
    pub fn kubelet(&self, index: usize, action: &str) {
        let words: Vec<String> = self
            .kubelet_argv(action)
            .iter()
            .map(|w| crate::nodes::sh_quote(w))
            .collect();
        let out = self.ground.ssh(index, &words.join(" "));
        assert!(
            out.status.success(),
            "kubelet stand-in {action} on cp{}: {}",
            index + 1,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until every etcd member answers and every kube-apiserver is ready.
    pub fn wait_serving(&self, timeout: Duration) {
        for url in &self.client_urls {
            wait_for("a secondary etcd member", timeout, || {
                answers(url).then_some(())
            });
        }
        for server in &self.servers {
            wait_ready(&self.kubectl, server, timeout);
        }
    }

    /// kubectl against node `index`'s kube-apiserver.
    pub fn kubectl_on(&self, index: usize) -> Kubectl {
        let path = self
            .ground
            .dir()
            .join(format!("admin-cp{}.conf", index + 1));
        if !path.exists() {
            std::fs::write(&path, self.pki.admin_conf(&self.servers[index])).expect("kubeconfig");
        }
        Kubectl { kubeconfig: path }
    }

    /// A component's log on node `index` (`etcd`, `kube-apiserver`, `kube-controller-manager`).
    pub fn log(&self, index: usize, component: &str) -> String {
        let path = self
            .ground
            .node(index)
            .host_path(&format!("{STANDIN_STATE}/{component}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The nodes, reached over ssh with the ground's ssh config.
    pub fn nodes(&self) -> Vec<Node> {
        (0..3)
            .map(|index| {
                let executor = SshExecutor {
                    ssh_config: Some(self.ground.ssh_config().to_path_buf()),
                    connect_timeout: Duration::from_secs(5),
                    ..SshExecutor::new(self.ground.node(index).name.clone())
                };
                Node::new(NodeRole::ControlPlane, Arc::new(executor))
            })
            .collect()
    }

    /// A promote configuration for these nodes: the stand-in stops and starts the control
    /// plane, this etcd version's `etcdutl` restores, the API is reached with `admin.conf`.
    pub fn promote_config(&self, work: &Path) -> PromoteConfig {
        let mut config = PromoteConfig::new(EtcdConfig::plain(self.client_urls.clone()));
        config.stop_control_plane = vec![self.kubelet_argv("stop")];
        config.start_control_plane = vec![self.kubelet_argv("start")];
        config.etcd_stopped_check = self.kubelet_argv("stopped");
        // The default force stop kills by name machine-wide: these nodes share one pid space.
        config.force_stop_command = self.kubelet_argv("stop");
        config.etcdutl = self.version.bin("etcdutl").display().to_string();
        config.require_service_account_keys = false;
        config.stop_timeout = Duration::from_secs(30);
        config.health_timeout = Duration::from_secs(180);
        config.work_dir = work.to_path_buf();
        config.kubernetes = Some(KubernetesConfig {
            api_server: None,
            kubeconfig: Some(self.kubectl.kubeconfig.clone()),
            context: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            token_file: None,
            request_timeout: Duration::from_secs(30),
            control_plane_servers: self.servers.clone(),
        });
        config.after.nodes_ready_timeout = Duration::from_secs(30);
        config
    }

    /// Pid of a component on node `index`, while the stand-in runs it.
    pub fn pid(&self, index: usize, component: &str) -> Option<u32> {
        let path = self
            .ground
            .node(index)
            .host_path(&format!("{STANDIN_STATE}/{component}.pid"));
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }
}

impl Drop for KubeSecondary {
    fn drop(&mut self) {
        self.status_loop.take();
        for node in self.ground.nodes() {
            for component in ["kube-controller-manager", "kube-apiserver", "etcd"] {
                crate::kubelet::kill_pidfile(
                    &node.host_path(&format!("{STANDIN_STATE}/{component}.pid")),
                );
            }
        }
    }
}

/// The etcd version string of `version`'s binary (`3.6.16`…).
pub fn etcd_version_of(version: EtcdVersion) -> String {
    let output = Command::new(version.bin("etcd"))
        .arg("--version")
        .output()
        .expect("etcd --version");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version: "))
        .unwrap_or("unknown")
        .trim()
        .to_string()
}

/// True while process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}
