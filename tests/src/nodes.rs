//! Control-plane (and worker) nodes on this machine: each its own host name (UTS namespace), its own
//! `/etc/kubernetes`, `/var/lib/etcd`, `/var/lib/kubelet`, `/usr/local/sbin` and `/etc/hosts`
//! (bind mounts in a private mount namespace; the hosts file starts as a copy of this
//! machine's), its own processes (a PID namespace with its own `/proc`, whose first process is
//! the node's real `sshd` on its own loopback address `127.0.0.1N`), reached through a
//! generated ssh config file with a generated key. Needs root.
//!
//! Anything started inside a node (through its sshd, or with [`ControlPlaneNodes::spawn_in`])
//! lives in that node's namespaces, sees that node's files and only that node's processes
//! (`pgrep`, `pkill` and pids on the node are the node's own; [`TestNode::process`] translates
//! one to this machine's). Stopping a node kills its first process, and with it every process of
//! the node; dropping the nodes stops them all, so nothing a test started on a node outlives it.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use etcd_dr_nodes::{Node, NodeRole, SshExecutor};

use crate::{free_port, tools, wait_for_port};

/// The paths each node gets its own copy of (host mount points created if missing): kubeadm's,
/// and `/usr/local/sbin` (first on the nodes' PATH) for tools a ground installs on a node.
pub const NODE_MOUNTS: [&str; 4] = [
    "/etc/kubernetes",
    "/var/lib/etcd",
    "/var/lib/kubelet",
    "/usr/local/sbin",
];

/// One process of a node, as this machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeProcess {
    /// Its pid on this machine.
    pub host_pid: u32,
    /// Its pid on the node.
    pub pid: u32,
    /// Its parent's pid on the node (0: a parent outside the node's namespace).
    pub parent: u32,
    /// Its name (`comm`: at most 15 characters).
    pub name: String,
    /// When it started, in clock ticks after boot (tells a new process from an old one).
    pub start_ticks: u64,
}

/// One node.
pub struct TestNode {
    /// Host name (`cp1`, …), also its `Host` in the ssh config and its etcd member name.
    pub name: String,
    /// Its loopback address (`127.0.0.11`, …).
    pub address: String,
    /// Its sshd port.
    pub ssh_port: u16,
    /// Host-side directory holding the node's mounted directories.
    pub root: PathBuf,
    /// `unshare`, whose child is the node's first process.
    sshd: Option<Child>,
    /// The node's first process (its sshd), by its pid on this machine.
    init: Option<u32>,
    sshd_config: PathBuf,
    log: PathBuf,
}

impl TestNode {
    /// Host-side path of what the node sees at `node_path` (one of [`NODE_MOUNTS`], or below).
    pub fn host_path(&self, node_path: &str) -> PathBuf {
        let mount = NODE_MOUNTS
            .iter()
            .find(|m| node_path == **m || node_path.starts_with(&format!("{m}/")))
            .unwrap_or_else(|| panic!("{node_path} is not under a node mount"));
        let rest = node_path[mount.len()..].trim_start_matches('/');
        let dir = self
            .root
            .join(mount.trim_start_matches('/').replace('/', "-"));
        if rest.is_empty() {
            dir
        } else {
            dir.join(rest)
        }
    }

    /// Pid on this machine of the node's sshd (the first process of its namespaces), while it
    /// runs.
    pub fn sshd_pid(&self) -> Option<u32> {
        self.init
    }

    /// The node's process `pid` (a pid on the node), while it runs and is not a zombie.
    pub fn process(&self, pid: u32) -> Option<NodeProcess> {
        let init = self.init?;
        let namespace = std::fs::read_link(format!("/proc/{init}/ns/pid")).ok()?;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(host_pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if std::fs::read_link(format!("/proc/{host_pid}/ns/pid")).ok()
                != Some(namespace.clone())
            {
                continue;
            }
            let Some(found) = read_node_process(host_pid) else {
                continue;
            };
            if found.pid == pid {
                return Some(found);
            }
        }
        None
    }

    /// Host-side path of the node's own `/etc/hosts`.
    pub fn hosts_file(&self) -> PathBuf {
        self.root.join("etc-hosts")
    }

    /// sshd's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One etcd member per node: named after the node, plain HTTP on its address.
#[derive(Debug, Clone)]
pub struct NodeMember {
    /// The node's (and member's) name.
    pub name: String,
    /// `http://<node address>:<free port>`.
    pub client_url: String,
    /// `http://<node address>:<free port>`.
    pub peer_url: String,
}

/// Several control-plane nodes and the client side of ssh to reach them.
pub struct ControlPlaneNodes {
    dir: tempfile::TempDir,
    nodes: Vec<TestNode>,
    ssh_config: PathBuf,
    extra: Vec<Child>,
}

impl ControlPlaneNodes {
    /// Starts `count` nodes `cp1`… on `127.0.0.11`…, each with an empty `/etc/kubernetes`,
    /// `/var/lib/etcd` and `/var/lib/kubelet`, reachable as root over ssh.
    pub fn start(count: usize) -> Self {
        let names: Vec<String> = (1..=count).map(|index| format!("cp{index}")).collect();
        Self::start_named(&names)
    }

    /// [`Self::start`] with nodes of these host names (the N-th on `127.0.0.1N`).
    pub fn start_named(names: &[String]) -> Self {
        let count = names.len();
        assert!((1..=9).contains(&count), "1 to 9 nodes");
        assert!(
            nix_is_root(),
            "the node test ground needs root (namespaces, bind mounts, sshd)"
        );
        for mount in NODE_MOUNTS {
            std::fs::create_dir_all(mount).expect("host mount point");
        }
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("etcd-dr-nodes-")
            .tempdir()
            .expect("temp dir");
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).expect("keys dir");
        let host_key = keys.join("host_ed25519");
        let client_key = keys.join("client_ed25519");
        for key in [&host_key, &client_key] {
            let status = Command::new(ssh_keygen())
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "etcd-dr-test", "-f"])
                .arg(key)
                .stdin(Stdio::null())
                .status()
                .expect("ssh-keygen");
            assert!(status.success(), "ssh-keygen failed");
        }
        let authorized = keys.join("authorized_keys");
        std::fs::copy(keys.join("client_ed25519.pub"), &authorized).expect("authorized_keys");
        let host_public = std::fs::read_to_string(keys.join("host_ed25519.pub")).expect("host key");
        let host_public: Vec<&str> = host_public.split_whitespace().take(2).collect();
        let host_public = host_public.join(" ");

        // The nodes find etcdutl/etcdctl on their PATH, as on a real control-plane node.
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            tools().etcd35_bin.display()
        );
        let mut nodes = Vec::new();
        let mut known_hosts = String::new();
        let mut ssh_config = String::new();
        for (index, name) in (1..=count).zip(names.iter().cloned()) {
            let address = format!("127.0.0.1{index}");
            let ssh_port = free_port();
            let root = dir.path().join(&name);
            for mount in NODE_MOUNTS {
                let dir = root.join(mount.trim_start_matches('/').replace('/', "-"));
                std::fs::create_dir_all(&dir).expect("node dir");
            }
            let hosts = std::fs::read("/etc/hosts").unwrap_or_default();
            std::fs::write(root.join("etc-hosts"), hosts).expect("node hosts file");
            let sshd_config = root.join("sshd_config");
            std::fs::write(
                &sshd_config,
                format!(
                    "ListenAddress {address}:{ssh_port}\n\
                     HostKey {}\n\
                     PidFile none\n\
                     UsePAM no\n\
                     StrictModes no\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     PubkeyAuthentication yes\n\
                     PermitRootLogin prohibit-password\n\
                     AuthorizedKeysFile {}\n\
                     SetEnv PATH={path}\n\
                     MaxStartups 100\n\
                     MaxSessions 100\n\
                     LogLevel ERROR\n",
                    host_key.display(),
                    authorized.display()
                ),
            )
            .expect("sshd_config");
            known_hosts.push_str(&format!("{name} {host_public}\n"));
            ssh_config.push_str(&format!(
                "Host {name}\n  HostName {address}\n  Port {ssh_port}\n  User root\n  HostKeyAlias {name}\n\n"
            ));
            nodes.push(TestNode {
                log: root.join("sshd.log"),
                name,
                address,
                ssh_port,
                root,
                sshd: None,
                init: None,
                sshd_config,
            });
        }
        let known_hosts_file = keys.join("known_hosts");
        std::fs::write(&known_hosts_file, known_hosts).expect("known_hosts");
        ssh_config.push_str(&format!(
            "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  IdentityAgent none\n  BatchMode yes\n  \
             StrictHostKeyChecking yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  \
             UpdateHostKeys no\n  ConnectTimeout 5\n",
            client_key.display(),
            known_hosts_file.display()
        ));
        let ssh_config_file = dir.path().join("ssh_config");
        std::fs::write(&ssh_config_file, ssh_config).expect("ssh_config");

        let mut ground = Self {
            dir,
            nodes,
            ssh_config: ssh_config_file,
            extra: Vec::new(),
        };
        for index in 0..count {
            ground.start_node(index);
        }
        ground
    }

    /// (Re)starts node `index`'s sshd in fresh namespaces with its own host name, mounts and
    /// processes (`unshare --fork --kill-child`: killing `unshare` kills the node too).
    pub fn start_node(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        assert!(node.sshd.is_none(), "{} already runs", node.name);
        let mut script = format!("set -e\nhostname {}\n", node.name);
        for mount in NODE_MOUNTS {
            let dir = node
                .root
                .join(mount.trim_start_matches('/').replace('/', "-"));
            script.push_str(&format!(
                "mount --bind {} {mount}\n",
                crate::nodes::sh_quote(&dir.display().to_string())
            ));
        }
        script.push_str(&format!(
            "mount --bind {} /etc/hosts\n",
            crate::nodes::sh_quote(&node.hosts_file().display().to_string())
        ));
        script.push_str(&format!(
            "exec {} -D -e -f {}\n",
            tools().sshd.display(),
            crate::nodes::sh_quote(&node.sshd_config.display().to_string())
        ));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("sshd log");
        let child = Command::new("unshare")
            .args(["--uts", "--mount", "--propagation", "private"])
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "sh",
                "-c",
            ])
            .arg(script)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log)
            .spawn()
            .expect("spawn unshare + sshd");
        node.init = Some(first_child(child.id()));
        node.sshd = Some(child);
        let addr = format!("{}:{}", node.address, node.ssh_port)
            .parse()
            .expect("socket address");
        if !wait_for_port(addr, Duration::from_secs(10)) {
            panic!("sshd of {} did not start:\n{}", node.name, node.log());
        }
    }

    /// Stops node `index`: its first process (sshd) is killed, and with it every process of the
    /// node; returns once they are all gone (`unshare` waits for its child, whose end waits for
    /// the rest of its PID namespace). The node becomes unreachable; its files stay.
    pub fn stop_node(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        if let Some(mut child) = node.sshd.take() {
            kill_pid(node.init.take().unwrap_or(child.id()));
            let _ = child.wait();
        }
    }

    /// The nodes.
    pub fn nodes(&self) -> &[TestNode] {
        &self.nodes
    }

    /// Node `index` (0-based: `cp1` is 0).
    pub fn node(&self, index: usize) -> &TestNode {
        &self.nodes[index]
    }

    /// Their names.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The ssh config file that maps `cp1`… to the nodes (`ssh -F`).
    pub fn ssh_config(&self) -> &Path {
        &self.ssh_config
    }

    /// A scratch directory that lives as long as the nodes.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `[nodes]` section listing the nodes as control plane, reached over ssh with this
    /// ground's ssh config.
    pub fn config_section(&self) -> String {
        let names: Vec<String> = self.names().iter().map(|n| format!("\"{n}\"")).collect();
        format!(
            "[nodes]\ncontrol_plane = [{}]\n[nodes.access]\ntype = \"ssh\"\nssh_config = \"{}\"\nconnect_timeout = \"5s\"\ncommand_timeout = \"60s\"\n",
            names.join(", "),
            self.ssh_config.display()
        )
    }

    /// An etcd member for each of the first `count` nodes (free ports on its address) and their
    /// `--initial-cluster`.
    pub fn etcd_members(&self, count: usize) -> (Vec<NodeMember>, String) {
        let members: Vec<NodeMember> = self.nodes[..count]
            .iter()
            .map(|n| NodeMember {
                name: n.name.clone(),
                client_url: format!("http://{}:{}", n.address, free_port()),
                peer_url: format!("http://{}:{}", n.address, free_port()),
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        (members, initial_cluster)
    }

    /// The nodes as the product reaches them: control plane, over ssh with this ground's ssh
    /// config.
    pub fn ssh_nodes(&self) -> Vec<Node> {
        (0..self.nodes.len())
            .map(|index| self.ssh_node(index, NodeRole::ControlPlane))
            .collect()
    }

    /// Node `index` as the product reaches it, in `role`, over ssh with this ground's ssh
    /// config.
    pub fn ssh_node(&self, index: usize, role: NodeRole) -> Node {
        let executor = SshExecutor {
            ssh_config: Some(self.ssh_config.clone()),
            connect_timeout: Duration::from_secs(5),
            ..SshExecutor::new(self.nodes[index].name.clone())
        };
        Node::new(role, Arc::new(executor))
    }

    /// Runs `script` with `sh -c` on node `index` through the system ssh client.
    pub fn ssh(&self, index: usize, script: &str) -> Output {
        Command::new("ssh")
            .arg("-F")
            .arg(&self.ssh_config)
            .arg(&self.nodes[index].name)
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    /// A command that runs `program` inside node `index`'s namespaces (`nsenter -m -u -p`).
    pub fn command_in(&self, index: usize, program: &str) -> Command {
        let pid = self.nodes[index]
            .sshd_pid()
            .unwrap_or_else(|| panic!("{} is stopped", self.nodes[index].name));
        let mut command = Command::new("nsenter");
        command
            .args(["-t", &pid.to_string(), "-m", "-u", "-p", "--"])
            .arg(program);
        command
    }

    /// Starts `command` (from [`Self::command_in`]) in the background; it is killed by pid when
    /// the nodes are dropped. Returns its pid.
    pub fn spawn_in(&mut self, mut command: Command) -> u32 {
        let child = command.spawn().expect("spawn in node");
        let pid = child.id();
        self.extra.push(child);
        pid
    }

    /// Writes kubeadm-shaped control-plane files into every node: `/etc/kubernetes/pki` (with
    /// `sa.key`, `sa.pub`, `etcd/…`), `manifests/`, the kubeconfigs, and kubelet's
    /// `config.yaml` and `kubeadm-flags.env`, with kubeadm's modes (0600 keys and kubeconfigs,
    /// 0644 certificates) and one file owned by uid/gid 4321. The service-account key pair is
    /// the same on every node, as kubeadm copies it; everything else names its node.
    pub fn populate_kubeadm(&self) -> KubeadmFiles {
        let sa_key = format!(
            "-----BEGIN PRIVATE KEY-----\nETCD-DR-TEST-SA-KEY-{}\n-----END PRIVATE KEY-----\n",
            std::process::id()
        );
        let mut files = KubeadmFiles {
            sa_key: sa_key.clone(),
            per_node: Vec::new(),
        };
        for node in &self.nodes {
            let n = &node.name;
            let entries: Vec<(&str, String, u32)> = vec![
                (
                    "/etc/kubernetes/pki/ca.crt",
                    "CA CERT (cluster)\n".to_string(),
                    0o644,
                ),
                (
                    "/etc/kubernetes/pki/ca.key",
                    "CA KEY (cluster)\n".to_string(),
                    0o600,
                ),
                ("/etc/kubernetes/pki/sa.key", sa_key.clone(), 0o600),
                (
                    "/etc/kubernetes/pki/sa.pub",
                    "-----BEGIN PUBLIC KEY-----\nSA\n-----END PUBLIC KEY-----\n".into(),
                    0o644,
                ),
                (
                    "/etc/kubernetes/pki/apiserver.crt",
                    format!("apiserver cert of {n}\n"),
                    0o644,
                ),
                (
                    "/etc/kubernetes/pki/apiserver.key",
                    format!("apiserver key of {n}\n"),
                    0o600,
                ),
                (
                    "/etc/kubernetes/pki/front-proxy-ca.crt",
                    "front proxy CA\n".into(),
                    0o644,
                ),
                ("/etc/kubernetes/pki/etcd/ca.crt", "etcd CA\n".into(), 0o644),
                (
                    "/etc/kubernetes/pki/etcd/ca.key",
                    "etcd CA key\n".into(),
                    0o600,
                ),
                (
                    "/etc/kubernetes/pki/etcd/server.crt",
                    format!("etcd server cert of {n}\n"),
                    0o644,
                ),
                (
                    "/etc/kubernetes/pki/etcd/server.key",
                    format!("etcd server key of {n}\n"),
                    0o600,
                ),
                (
                    "/etc/kubernetes/pki/etcd/peer.key",
                    format!("etcd peer key of {n}\n"),
                    0o600,
                ),
                (
                    "/etc/kubernetes/pki/etcd/healthcheck-client.key",
                    format!("hc key of {n}\n"),
                    0o600,
                ),
                (
                    "/etc/kubernetes/manifests/etcd.yaml",
                    etcd_manifest(n, &node.address),
                    0o600,
                ),
                (
                    "/etc/kubernetes/manifests/kube-apiserver.yaml",
                    format!("# kube-apiserver of {n}\n"),
                    0o600,
                ),
                (
                    "/etc/kubernetes/admin.conf",
                    format!("# admin kubeconfig of {n}\n"),
                    0o600,
                ),
                (
                    "/etc/kubernetes/super-admin.conf",
                    format!("# super-admin of {n}\n"),
                    0o600,
                ),
                (
                    "/etc/kubernetes/controller-manager.conf",
                    format!("# kcm of {n}\n"),
                    0o600,
                ),
                (
                    "/etc/kubernetes/scheduler.conf",
                    format!("# scheduler of {n}\n"),
                    0o600,
                ),
                (
                    "/etc/kubernetes/kubelet.conf",
                    format!("# kubelet of {n}\n"),
                    0o600,
                ),
                (
                    "/var/lib/kubelet/config.yaml",
                    "kind: KubeletConfiguration\n".into(),
                    0o644,
                ),
                (
                    "/var/lib/kubelet/kubeadm-flags.env",
                    format!("KUBELET_KUBEADM_ARGS=\"--node-ip={}\"\n", node.address),
                    0o644,
                ),
            ];
            let mut written = BTreeMap::new();
            for (path, content, mode) in entries {
                let host = node.host_path(path);
                std::fs::create_dir_all(host.parent().expect("parent")).expect("mkdir");
                std::fs::write(&host, &content).expect("write kubeadm file");
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode))
                    .expect("chmod");
                written.insert(path.to_string(), (content.into_bytes(), mode));
            }
            let owned = node.host_path("/etc/kubernetes/pki/front-proxy-ca.crt");
            std::os::unix::fs::chown(&owned, Some(4321), Some(4321)).expect("chown");
            files.per_node.push(written);
        }
        files
    }
}

/// What [`ControlPlaneNodes::populate_kubeadm`] wrote.
pub struct KubeadmFiles {
    /// The service-account private key (same on every node); its text is distinctive.
    pub sa_key: String,
    /// Per node (index as in the ground): node path → (content, mode).
    pub per_node: Vec<BTreeMap<String, (Vec<u8>, u32)>>,
}

impl KubeadmFiles {
    /// Asserts that `dir` (a fetched bundle) holds exactly node `index`'s files, byte for byte,
    /// with their modes, owned by whoever fetched them (the uid 4321 owner recorded for one
    /// file is not restored without `--keep-owners`).
    pub fn assert_unpacked(&self, index: usize, dir: &Path) {
        self.assert_files(index, dir);
        let fetcher = std::fs::metadata(dir).expect("metadata").uid();
        let owned = dir.join("etc/kubernetes/pki/front-proxy-ca.crt");
        let meta = std::fs::metadata(&owned).expect("metadata");
        assert_eq!(meta.uid(), fetcher, "owner of {}", owned.display());
    }

    /// [`Self::assert_unpacked`] for a bundle fetched with `--keep-owners` (as root): the uid
    /// 4321 owner where it was set.
    pub fn assert_unpacked_with_owners(&self, index: usize, dir: &Path) {
        self.assert_files(index, dir);
        let owned = dir.join("etc/kubernetes/pki/front-proxy-ca.crt");
        let meta = std::fs::metadata(&owned).expect("metadata");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (4321, 4321),
            "owner of {}",
            owned.display()
        );
    }

    fn assert_files(&self, index: usize, dir: &Path) {
        for (path, (content, mode)) in &self.per_node[index] {
            let unpacked = dir.join(path.trim_start_matches('/'));
            let got = std::fs::read(&unpacked)
                .unwrap_or_else(|e| panic!("{} in the bundle: {e}", unpacked.display()));
            assert!(got == *content, "{path} differs after the round trip");
            let meta = std::fs::metadata(&unpacked).expect("metadata");
            assert_eq!(meta.permissions().mode() & 0o7777, *mode, "mode of {path}");
        }
    }
}

fn etcd_manifest(name: &str, address: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - etcd\n    - --name={name}\n    - --data-dir=/var/lib/etcd\n    - --listen-client-urls=https://{address}:2379\n    - --listen-peer-urls=https://{address}:2380\n    image: registry.k8s.io/etcd:3.5.16-0\n    name: etcd\n  hostNetwork: true\n  volumes:\n  - hostPath:\n      path: /var/lib/etcd\n      type: DirectoryOrCreate\n    name: etcd-data\n  - hostPath:\n      path: /etc/kubernetes/pki/etcd\n      type: DirectoryOrCreate\n    name: etcd-certs\n"
    )
}

impl Drop for ControlPlaneNodes {
    fn drop(&mut self) {
        for child in &mut self.extra {
            kill_pid(child.id());
            let _ = child.wait();
        }
        for index in 0..self.nodes.len() {
            self.stop_node(index);
        }
    }
}

/// Single-quotes a word for `sh`.
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The first child of `parent` (`unshare --fork`'s, the node's first process), once forked.
fn first_child(parent: u32) -> u32 {
    let children = format!("/proc/{parent}/task/{parent}/children");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        if let Some(pid) = text.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "unshare {parent} did not fork the node's first process"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `host_pid`'s pids on its node (the last of `NSpid`, `PPid` translated likewise), name and
/// start time; `None` once it is gone or a zombie.
fn read_node_process(host_pid: u32) -> Option<NodeProcess> {
    let stat = std::fs::read_to_string(format!("/proc/{host_pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (3rd field of stat), ppid (4th), …, starttime (22nd).
    if fields.first() == Some(&"Z") {
        return None;
    }
    let start_ticks = fields.get(19)?.parse().ok()?;
    let host_parent: u32 = fields.get(1)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{host_pid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .map(str::to_string)
    };
    let pid = field("NSpid:")?.split_whitespace().last()?.parse().ok()?;
    let parent = std::fs::read_to_string(format!("/proc/{host_parent}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        })
        .filter(|pids| pids.len() > 1)
        .and_then(|pids| pids.last()?.parse().ok())
        .unwrap_or(0);
    Some(NodeProcess {
        host_pid,
        pid,
        parent,
        name: field("Name:")?,
        start_ticks,
    })
}

fn kill_pid(pid: u32) {
    // The `kill` command keeps the harness free of unsafe code.
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn ssh_keygen() -> PathBuf {
    std::env::var_os("TESTGROUND_SSH_KEYGEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("ssh-keygen"))
}
