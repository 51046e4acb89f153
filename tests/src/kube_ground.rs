//! A real Kubernetes control plane for the promote tests: kube-apiserver and
//! kube-controller-manager (built from `k8s.io/kubernetes` by the install script) on etcd
//! 3.6/3.7, run from kubeadm-shaped static pod manifests by a kubelet stand-in on three namespace
//! nodes (with the `systemctl` and `crictl` the promotion's default commands call:
//! [`crate::node_runtime`]), with kubeadm's PKI layout and client-certificate `admin.conf` and
//! `controller-manager.conf` (and a static bearer token, [`ADMIN_TOKEN`]), plus a worker node
//! running only the kubelet stand-in; a primary API on this machine; a status loop that keeps
//! Node objects Ready as kubelets would; and `kubectl`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_dr_nodes::{Node, NodeRole};
use etcd_dr_restore::{KubernetesConfig, PromoteConfig};
use etcd_dr_scheduler::EtcdConfig;

use crate::kube_pki::KubePki;
use crate::kubelet::{answers, etcd_pod_manifest, EtcdPodSpec};
use crate::node_runtime::recorded_pid;
use crate::nodes::{ControlPlaneNodes, NodeProcess};
use crate::{free_port, tools, wait_for, EtcdCluster, EtcdOptions, EtcdVersion};

pub use crate::node_runtime::{MANIFESTS, STATE_DIR as STANDIN_STATE};

/// A static bearer token kube-apiserver accepts (`--token-auth-file`) for the user
/// [`TOKEN_USER`] in group `system:masters`: the promotion's `token_file` path meets the real
/// API with it.
pub const ADMIN_TOKEN: &str = "etcd-dr-test-0f3c9a7b5e2d4c18a6b1";
/// The user [`ADMIN_TOKEN`] authenticates as.
pub const TOKEN_USER: &str = "etcd-dr-token-admin";
/// The static token file's name, beside the PKI (`<pki>/token-auth.csv`).
pub const TOKEN_AUTH_FILE: &str = "token-auth.csv";

/// Writes kube-apiserver's `--token-auth-file` into the PKI directory `pki`: [`ADMIN_TOKEN`]
/// for [`TOKEN_USER`] in `system:masters` (`token,user,uid,"groups"`).
pub fn write_token_auth(pki: &Path) {
    std::fs::write(
        pki.join(TOKEN_AUTH_FILE),
        format!("{ADMIN_TOKEN},{TOKEN_USER},{TOKEN_USER},\"system:masters\"\n"),
    )
    .expect("token-auth.csv");
}

/// How the promotion authenticates to the secondary's API servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAuth {
    /// The client certificate of `admin.conf` (`kubeconfig`).
    ClientCertificate,
    /// [`ADMIN_TOKEN`] from a `token_file`, with `api_server` and `ca_file` and no kubeconfig:
    /// the token is the only credential.
    Token,
}

/// kube-apiserver's flags (kubeadm's, trimmed to what runs without a kubelet, plus a static
/// token file: [`write_token_auth`]), for a server on `address:port` with the PKI under `pki`
/// and etcd at `etcd_servers`.
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
        format!("--token-auth-file={pki}/{TOKEN_AUTH_FILE}"),
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

/// `kubectl auth whoami -o json` against `server` (CA file `ca`) with `token` as the only
/// credential (no kubeconfig), parsed.
pub fn whoami_with_token(server: &str, ca: &Path, token: &str) -> serde_json::Value {
    let output = Command::new(tools().kube_bin().join("kubectl"))
        .env("KUBECONFIG", "/nonexistent/etcd-dr-no-kubeconfig")
        .args([
            "--server",
            server,
            "--token",
            token,
            "--certificate-authority",
        ])
        .arg(ca)
        .args(["--request-timeout", "20s", "auth", "whoami", "-o", "json"])
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl auth whoami");
    assert!(
        output.status.success(),
        "kubectl auth whoami: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("kubectl auth whoami: JSON")
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

/// The container runtime every Node's `status.nodeInfo` names (the `crictl` stand-in speaks for
/// containerd).
pub const CONTAINER_RUNTIME_VERSION: &str = "containerd://2.1.4";

/// What kubelet's status loop does, for nodes that have no kubelet here: registers each Node,
/// reports its Ready condition and `nodeInfo` (kubelet version: the built Kubernetes version,
/// [`kube_version`]; container runtime: [`CONTAINER_RUNTIME_VERSION`]) and renews its
/// `kube-node-lease` Lease every second, through the first of `servers` that answers. API errors (a server down during a promote) are retried on
/// the next round. Stopped on drop.
pub struct NodeStatusLoop {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NodeStatusLoop {
    /// Starts reporting `nodes` to `servers` (URLs) as the admin of `pki`.
    pub fn start(servers: Vec<String>, pki: &KubePki, nodes: Vec<SimulatedNode>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let kubelet_version = kube_version();
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
                            if report_all(&client, server, &nodes, &kubelet_version)
                                .await
                                .is_ok()
                            {
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
    kubelet_version: &str,
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
        }], "nodeInfo": {
            "kubeletVersion": kubelet_version,
            "containerRuntimeVersion": CONTAINER_RUNTIME_VERSION,
        } } });
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
        write_token_auth(&pki_dir);
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
/// kube-controller-manager (leader-elected among the three), run by the node's kubelet stand-in
/// ([`crate::node_runtime`]), which the promotion's default commands (`systemctl`, `crictl`,
/// `pgrep`, `pkill`) stop and start. A status loop keeps cp1..cp3 and `worker1` Ready through
/// any of the three API servers. A fourth namespace node, the worker [`WORKER`], runs only the
/// kubelet stand-in (no manifests), for the promotion's kubelet restart on workers. Everything
/// on the nodes ends with them (their PID namespaces). The primary runs no controller manager:
/// its objects only need to exist.
pub struct KubeSecondary {
    /// The nodes: cp1..cp3 (indexes 0..3), then [`WORKER`] (index [`WORKER_INDEX`]).
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

/// The secondary's worker node: a kubelet stand-in and nothing else.
pub const WORKER: &str = "worker1";
/// [`WORKER`]'s index among the secondary's nodes (after cp1..cp3).
pub const WORKER_INDEX: usize = 3;

/// The control-plane components every secondary node runs.
pub const COMPONENTS: [&str; 3] = ["etcd", "kube-apiserver", "kube-controller-manager"];

impl KubeSecondary {
    /// Starts the nodes, writes their files, starts kubelet (and through it etcd,
    /// kube-apiserver and kube-controller-manager) on each control-plane node and on the
    /// worker, waits for every `/readyz` and starts the status loop.
    pub fn start(version: EtcdVersion) -> Self {
        let names: Vec<String> = ["cp1", "cp2", "cp3", WORKER]
            .iter()
            .map(|n| n.to_string())
            .collect();
        let ground = ControlPlaneNodes::start_named(&names);
        let control_plane = &ground.nodes()[..WORKER_INDEX];
        let addresses: Vec<String> = control_plane.iter().map(|n| n.address.clone()).collect();
        let mut names: Vec<&str> = addresses.iter().map(String::as_str).collect();
        names.extend(control_plane.iter().map(|n| n.name.as_str()));
        let pki = KubePki::generate(&names);
        let (members, initial_cluster) = ground.etcd_members(WORKER_INDEX);
        let etcd_version = etcd_version_of(version);
        let kube = kube_version();
        let images = [
            version.bin_dir().to_path_buf(),
            tools().kube_bin().to_path_buf(),
        ];
        let mut servers = Vec::new();
        for (index, member) in members.iter().enumerate() {
            let node = ground.node(index);
            crate::node_runtime::install(node, &images, &kube);
            pki.write(&node.host_path("/etc/kubernetes/pki"));
            write_token_auth(&node.host_path("/etc/kubernetes/pki"));
            let manifests = node.host_path(MANIFESTS);
            std::fs::create_dir_all(&manifests).expect("manifests dir");
            std::fs::write(
                manifests.join("etcd.yaml"),
                etcd_pod_manifest(&EtcdPodSpec {
                    name: &member.name,
                    data_dir: "/var/lib/etcd",
                    client_url: &member.client_url,
                    peer_url: &member.peer_url,
                    initial_cluster: &initial_cluster,
                    token: "secondary",
                    version: &etcd_version,
                }),
            )
            .expect("etcd.yaml");
            let port = free_port();
            let flags = apiserver_flags(
                &node.address,
                port,
                "/etc/kubernetes/pki",
                &member.client_url,
            );
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
        crate::node_runtime::install(ground.node(WORKER_INDEX), &[], &kube);
        let kubeconfig = ground.dir().join("admin.conf");
        std::fs::write(&kubeconfig, pki.admin_conf(&servers[0])).expect("admin.conf");
        let mut secondary = Self {
            ground,
            pki,
            version,
            client_urls: members.into_iter().map(|m| m.client_url).collect(),
            servers,
            kubectl: Kubectl { kubeconfig },
            status_loop: None,
        };
        for index in 0..=WORKER_INDEX {
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

    /// Runs `script` on node `index` over ssh; panics with its stderr unless it succeeds;
    /// returns its stdout.
    pub fn on_node(&self, index: usize, script: &str) -> String {
        let out = self.ground.ssh(index, script);
        assert!(
            out.status.success(),
            "`{script}` on {}: {}",
            self.ground.node(index).name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl VERB kubelet` on node `index` (`start`, `stop`, `restart`); panics when it
    /// fails. Stopping kubelet leaves the components running, as on a kubeadm node.
    pub fn kubelet(&self, index: usize, verb: &str) {
        self.on_node(index, &format!("systemctl {verb} kubelet"));
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

    /// A component's log on node `index` (`etcd`, `kube-apiserver`, `kube-controller-manager`,
    /// `kubelet`).
    pub fn log(&self, index: usize, component: &str) -> String {
        let path = self
            .ground
            .node(index)
            .host_path(&format!("{STANDIN_STATE}/{component}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The control-plane nodes, reached over ssh with the ground's ssh config.
    pub fn nodes(&self) -> Vec<Node> {
        (0..WORKER_INDEX)
            .map(|index| self.ground.ssh_node(index, NodeRole::ControlPlane))
            .collect()
    }

    /// The worker nodes ([`WORKER`]), reached the same way.
    pub fn workers(&self) -> Vec<Node> {
        vec![self.ground.ssh_node(WORKER_INDEX, NodeRole::Worker)]
    }

    /// A promote configuration for these nodes with the default commands to stop (`systemctl
    /// stop kubelet`, `crictl stop`), force-stop (`pkill -KILL`) and start (`systemctl start
    /// kubelet`) the control plane and to tell that etcd is down (`pgrep`); this etcd version's
    /// `etcdutl` restores; the API is reached with `admin.conf`.
    pub fn promote_config(&self, work: &Path) -> PromoteConfig {
        let mut config = PromoteConfig::new(EtcdConfig::plain(self.client_urls.clone()));
        config.etcdutl = self.version.bin("etcdutl").display().to_string();
        config.require_service_account_keys = false;
        config.stop_timeout = Duration::from_secs(30);
        config.health_timeout = Duration::from_secs(180);
        config.work_dir = work.to_path_buf();
        config.kubernetes = Some(self.kubernetes_config(ApiAuth::ClientCertificate));
        config.after.nodes_ready_timeout = Duration::from_secs(30);
        config
    }

    /// `[promote.kubernetes]` for these API servers (cp1's as the server, all three for the
    /// health step), authenticated by `auth`; the token and CA files are written beside the
    /// nodes.
    pub fn kubernetes_config(&self, auth: ApiAuth) -> KubernetesConfig {
        let mut config = KubernetesConfig {
            api_server: None,
            kubeconfig: None,
            context: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            token_file: None,
            request_timeout: Duration::from_secs(30),
            control_plane_servers: self.servers.clone(),
        };
        match auth {
            ApiAuth::ClientCertificate => config.kubeconfig = Some(self.kubectl.kubeconfig.clone()),
            ApiAuth::Token => {
                let (token, ca) = (
                    self.ground.dir().join("admin.token"),
                    self.ground.dir().join("ca.crt"),
                );
                std::fs::write(&token, format!("{ADMIN_TOKEN}\n")).expect("admin.token");
                std::fs::write(&ca, &self.pki.ca.cert).expect("ca.crt");
                config.api_server = Some(self.servers[0].clone());
                config.ca_file = Some(ca);
                config.token_file = Some(token);
            }
        }
        config
    }

    /// The running process of `component` (`etcd`, `kube-apiserver`, `kubelet`) on node
    /// `index`, as the stand-ins recorded it.
    pub fn process(&self, index: usize, component: &str) -> Option<NodeProcess> {
        let node = self.ground.node(index);
        node.process(recorded_pid(node, component)?)
    }

    /// Pid on this machine of a component on node `index`, while it runs.
    pub fn pid(&self, index: usize, component: &str) -> Option<u32> {
        self.process(index, component).map(|p| p.host_pid)
    }

    /// Every node's [`COMPONENTS`] as they run now, by node.
    pub fn control_plane(&self) -> Vec<Vec<NodeProcess>> {
        (0..3)
            .map(|index| {
                COMPONENTS
                    .iter()
                    .map(|c| {
                        self.process(index, c)
                            .unwrap_or_else(|| panic!("no {c} runs on cp{}", index + 1))
                    })
                    .collect()
            })
            .collect()
    }

    /// Asserts that every one of `before` (from [`Self::control_plane`]) is gone and that a new
    /// process of each component runs in its place, started by the node's kubelet.
    pub fn assert_restarted_by_kubelet(&self, before: &[Vec<NodeProcess>]) {
        for (index, processes) in before.iter().enumerate() {
            let node = self.ground.node(index);
            let kubelet = self
                .process(index, "kubelet")
                .unwrap_or_else(|| panic!("kubelet does not run on cp{}", index + 1));
            for (component, old) in COMPONENTS.iter().zip(processes) {
                assert_eq!(
                    node.process(old.pid)
                        .filter(|p| p.start_ticks == old.start_ticks),
                    None,
                    "cp{}: the {component} from before still runs",
                    index + 1
                );
                let new = self
                    .process(index, component)
                    .unwrap_or_else(|| panic!("no {component} runs on cp{}", index + 1));
                assert_ne!(
                    (new.pid, new.start_ticks),
                    (old.pid, old.start_ticks),
                    "cp{}: {component}",
                    index + 1
                );
                assert_eq!(
                    new.parent,
                    kubelet.pid,
                    "cp{}: {component} ({new:?}) was not started by kubelet ({kubelet:?})",
                    index + 1
                );
            }
        }
    }
}

impl Drop for KubeSecondary {
    fn drop(&mut self) {
        // The components end with the nodes (`ground`, dropped next).
        self.status_loop.take();
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
