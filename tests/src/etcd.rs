//! Real etcd servers on loopback: one member or several, with or without TLS, 3.4 to 3.7.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};

use crate::{block_on, free_port, tools, wait_for, TlsFiles};

/// Which etcd to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdVersion {
    /// Debian trixie's 3.5.16 (etcdutl with `--bump-revision`).
    V3_5,
    /// Debian bookworm's 3.4.23 (`etcdctl snapshot restore` only).
    V3_4,
    /// 3.6.x built from the `go.etcd.io/etcd/*/v3` modules (kubeadm's etcd since 1.34).
    V3_6,
    /// 3.7.x built the same way.
    V3_7,
}

impl EtcdVersion {
    /// The directory of this version's binaries.
    pub fn bin_dir(self) -> &'static Path {
        match self {
            Self::V3_5 => &tools().etcd35_bin,
            Self::V3_4 => &tools().etcd34_bin,
            Self::V3_6 => tools().etcd36_bin(),
            Self::V3_7 => tools().etcd37_bin(),
        }
    }

    /// The path of one of its binaries.
    pub fn bin(self, name: &str) -> PathBuf {
        self.bin_dir().join(name)
    }
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Number of members.
    pub members: usize,
    /// Serve clients over mTLS (peers stay on plain HTTP).
    pub tls: bool,
    /// Which etcd.
    pub version: EtcdVersion,
    /// `--quota-backend-bytes`, when the default (2 GiB) is not right.
    pub quota_bytes: Option<u64>,
    /// Member names (kubeadm: host names); `m1`, `m2`… when empty.
    pub member_names: Vec<String>,
    /// More flags for every member (`--max-request-bytes=…`, `--max-txn-ops=…`).
    pub extra_args: Vec<String>,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            members: 1,
            tls: false,
            version: EtcdVersion::V3_5,
            quota_bytes: None,
            member_names: Vec::new(),
            extra_args: Vec::new(),
        }
    }
}

/// One member.
#[derive(Debug)]
pub struct EtcdMemberProcess {
    /// Member name (`m1`, `m2`…).
    pub name: String,
    /// Client port on 127.0.0.1.
    pub client_port: u16,
    /// Peer port on 127.0.0.1.
    pub peer_port: u16,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Log file.
    pub log: PathBuf,
    process: Option<Child>,
}

/// A running etcd cluster, killed on drop.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<EtcdMemberProcess>,
    tls: Option<TlsFiles>,
    version: EtcdVersion,
    token: String,
    quota_bytes: Option<u64>,
    extra_args: Vec<String>,
}

impl EtcdCluster {
    /// Starts a new cluster and waits until it has a leader.
    pub fn start(options: EtcdOptions) -> Self {
        assert!(options.members >= 1, "a cluster has at least one member");
        let dir = tempfile::Builder::new()
            .prefix("etcd-dr-etcd-")
            .tempdir()
            .expect("temp dir");
        let tls = options
            .tls
            .then(|| TlsFiles::generate(&dir.path().join("pki"), &[]));
        let members = (1..=options.members)
            .map(|i| {
                let name = options
                    .member_names
                    .get(i - 1)
                    .cloned()
                    .unwrap_or_else(|| format!("m{i}"));
                EtcdMemberProcess {
                    data_dir: dir.path().join(format!("{name}.etcd")),
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    client_port: free_port(),
                    peer_port: free_port(),
                    process: None,
                }
            })
            .collect();
        let mut cluster = Self {
            dir,
            members,
            tls,
            version: options.version,
            token: format!("etcd-dr-test-{}", rand::random::<u32>()),
            quota_bytes: options.quota_bytes,
            extra_args: options.extra_args,
        };
        for index in 0..cluster.members.len() {
            cluster.spawn_member(index, "new");
        }
        cluster.wait_healthy();
        cluster
    }

    /// Restores `snapshot` (a plain `.db`) into a fresh single-member cluster with `version`'s
    /// restore tool, starts it, and waits until it has a leader.
    pub fn start_restored(snapshot: &Path, version: EtcdVersion) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("etcd-dr-restored-")
            .tempdir()
            .expect("temp dir");
        let member = EtcdMemberProcess {
            name: "restored".into(),
            data_dir: dir.path().join("restored.etcd"),
            log: dir.path().join("restored.log"),
            client_port: free_port(),
            peer_port: free_port(),
            process: None,
        };
        let token = "etcd-dr-restored".to_string();
        restore_member_data(version, snapshot, &member, &token);
        let mut cluster = Self {
            dir,
            members: vec![member],
            tls: None,
            version,
            token,
            quota_bytes: None,
            extra_args: Vec::new(),
        };
        cluster.spawn_member(0, "existing");
        cluster.wait_healthy();
        cluster
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn spawn_member(&mut self, index: usize, state: &str) {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let scheme = self.scheme();
        let member = &self.members[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .expect("etcd log file");
        let client_url = format!("{scheme}://127.0.0.1:{}", member.client_port);
        let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
        let mut command = Command::new(self.version.bin("etcd"));
        command
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(&member.data_dir)
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(&initial_cluster)
            .arg("--initial-cluster-state")
            .arg(state)
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log);
        if let Some(quota) = self.quota_bytes {
            command.arg(format!("--quota-backend-bytes={quota}"));
        }
        command.args(&self.extra_args);
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command.spawn().expect("spawn etcd");
        self.members[index].process = Some(child);
    }

    /// Waits until every running member answers and one of them is the leader.
    pub fn wait_healthy(&self) {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|i| self.members[*i].process.is_some())
            .collect();
        wait_for(
            "etcd members to be healthy",
            Duration::from_secs(30),
            || {
                let statuses: Vec<_> = running
                    .iter()
                    .map(|i| self.member_status(*i).ok())
                    .collect();
                let all_up = statuses.iter().all(Option::is_some);
                // Every running member follows a leader that is itself running (not a stale
                // one that was just killed).
                let running_ids: Vec<u64> = statuses.iter().flatten().map(|(id, _)| *id).collect();
                let leader_known = statuses
                    .iter()
                    .flatten()
                    .all(|(_, leader)| running_ids.contains(leader));
                (all_up && leader_known).then_some(())
            },
        );
    }

    /// (member id, leader id) as member `index` reports them.
    pub fn member_status(&self, index: usize) -> Result<(u64, u64), String> {
        let endpoint = self.endpoint(index);
        let options = self.connect_options();
        block_on(async move {
            let mut client = Client::connect([endpoint], Some(options))
                .await
                .map_err(|e| e.to_string())?;
            let status = client.status().await.map_err(|e| e.to_string())?;
            let member = status.header().map(|h| h.member_id()).unwrap_or(0);
            Ok((member, status.leader()))
        })
    }

    /// The index of the current leader.
    pub fn leader_index(&self) -> usize {
        wait_for("an etcd leader", Duration::from_secs(10), || {
            (0..self.members.len()).find(|i| {
                self.members[*i].process.is_some()
                    && self
                        .member_status(*i)
                        .is_ok_and(|(member, leader)| member == leader)
            })
        })
    }

    /// The members.
    pub fn members(&self) -> &[EtcdMemberProcess] {
        &self.members
    }

    /// Which etcd runs.
    pub fn version(&self) -> EtcdVersion {
        self.version
    }

    /// The TLS files, when clients use mTLS.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The cluster's scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Member `index`'s client URL.
    pub fn endpoint(&self, index: usize) -> String {
        format!(
            "{}://127.0.0.1:{}",
            self.scheme(),
            self.members[index].client_port
        )
    }

    /// Member `index`'s client address.
    pub fn client_addr(&self, index: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.members[index].client_port))
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// The `[etcd]` section of an etcd-dr config for `endpoints` (with this cluster's TLS files).
    pub fn config_section(&self, endpoints: &[String]) -> String {
        let mut text = format!(
            "[etcd]\nendpoints = [{}]\nconnect_timeout = \"2s\"\nrequest_timeout = \"5s\"\nstall_timeout = \"5s\"\n",
            endpoints
                .iter()
                .map(|e| format!("\"{e}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(tls) = &self.tls {
            text.push_str(&format!(
                "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                tls.ca.display(),
                tls.client_cert.display(),
                tls.client_key.display()
            ));
        }
        text
    }

    fn connect_options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(10));
        if let Some(tls) = &self.tls {
            let read = |p: &Path| std::fs::read(p).expect("read pem");
            options = options.with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(read(&tls.ca)))
                    .identity(Identity::from_pem(
                        read(&tls.client_cert),
                        read(&tls.client_key),
                    )),
            );
        }
        options
    }

    /// A client connected to every running member.
    pub async fn client(&self) -> Client {
        let endpoints: Vec<String> = (0..self.members.len())
            .filter(|i| self.members[*i].process.is_some())
            .map(|i| self.endpoint(i))
            .collect();
        Client::connect(endpoints, Some(self.connect_options()))
            .await
            .expect("connect to etcd")
    }

    /// The running members' endpoints and the options to connect to them.
    pub fn connect_parts(&self) -> (Vec<String>, ConnectOptions) {
        let endpoints = (0..self.members.len())
            .filter(|i| self.members[*i].process.is_some())
            .map(|i| self.endpoint(i))
            .collect();
        (endpoints, self.connect_options())
    }

    /// Puts one key.
    pub fn put(&self, key: &str, value: &[u8]) -> i64 {
        let (endpoints, options) = self.connect_parts();
        let (key, value) = (key.to_string(), value.to_vec());
        block_on(async move {
            let mut client = Client::connect(endpoints, Some(options))
                .await
                .expect("connect");
            let response = client.put(key, value, None).await.expect("put");
            response.header().map(|h| h.revision()).unwrap_or(0)
        })
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        let (endpoints, options) = self.connect_parts();
        block_on(async move {
            let mut client = Client::connect(endpoints, Some(options))
                .await
                .expect("connect");
            let response = client.status().await.expect("status");
            response.header().map(|h| h.revision()).unwrap_or(0)
        })
    }

    /// Every key and value.
    pub fn dump(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let (endpoints, options) = self.connect_parts();
        block_on(async move {
            let mut client = Client::connect(endpoints, Some(options))
                .await
                .expect("connect");
            read_all(&mut client, false).await
        })
    }

    /// Runs this version's etcdctl against `endpoints` (this cluster's TLS flags added).
    pub fn etcdctl(&self, endpoints: &[String], args: &[&str]) -> Output {
        let mut command = Command::new(self.version.bin("etcdctl"));
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")));
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cacert={}", tls.ca.display()))
                .arg(format!("--cert={}", tls.client_cert.display()))
                .arg(format!("--key={}", tls.client_key.display()));
        }
        command.args(args).output().expect("run etcdctl")
    }

    /// Kills member `index` (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts a killed member on its old ports and data.
    pub fn restart(&mut self, index: usize) {
        assert!(self.members[index].process.is_none(), "member is running");
        self.spawn_member(index, "existing");
        self.wait_healthy();
    }

    /// Replaces a one-member cluster's data with `snapshot` (a plain `.db`), restored under the
    /// member's name and peer URL, as an operator's restore without a revision bump does: with
    /// `new_cluster_id` false under the same token (the same cluster id, at the snapshot's
    /// revision: etcd went back in time), else under a new one (another cluster id). The
    /// member keeps its client port.
    pub fn rewind_to(&mut self, snapshot: &Path, new_cluster_id: bool) {
        assert_eq!(
            self.members.len(),
            1,
            "rewind_to is for one-member clusters"
        );
        self.kill(0);
        if new_cluster_id {
            self.token = format!("etcd-dr-test-{}", rand::random::<u32>());
        }
        let member = &self.members[0];
        std::fs::remove_dir_all(&member.data_dir).expect("remove the member's data");
        restore_member_data(self.version, snapshot, member, &self.token);
        self.spawn_member(0, "existing");
        self.wait_healthy();
    }

    /// The pid of member `index`, when it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.members[index].process.as_ref().map(Child::id)
    }
}

/// Restores `snapshot` into `member`'s data dir, as a one-member cluster under its name and
/// peer URL and `token` (which with them decides the cluster id), with `version`'s tool.
fn restore_member_data(
    version: EtcdVersion,
    snapshot: &Path,
    member: &EtcdMemberProcess,
    token: &str,
) {
    let tool = match version {
        EtcdVersion::V3_4 => version.bin("etcdctl"),
        _ => version.bin("etcdutl"),
    };
    let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
    let output = Command::new(&tool)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(snapshot)
        .args(["--name", &member.name])
        .arg(format!("--initial-cluster={}={peer_url}", member.name))
        .arg(format!("--initial-cluster-token={token}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg("--data-dir")
        .arg(&member.data_dir)
        .output()
        .expect("run snapshot restore");
    assert!(
        output.status.success(),
        "{} snapshot restore failed: {}",
        tool.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
    }
}

/// Every key and value through `client`, in pages (a whole database in one response would
/// pass gRPC's 4 MiB message limit), all at the first page's revision. `serializable`: the
/// answering member's own data.
pub(crate) async fn read_all(
    client: &mut Client,
    serializable: bool,
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut all = BTreeMap::new();
    let mut from = vec![0u8];
    let mut revision = 0;
    loop {
        let mut options = GetOptions::new()
            .with_from_key()
            .with_limit(500)
            .with_revision(revision);
        if serializable {
            options = options.with_serializable();
        }
        let response = client.get(from, Some(options)).await.expect("get all");
        if revision == 0 {
            revision = response.header().map_or(0, |h| h.revision());
        }
        for kv in response.kvs() {
            all.insert(kv.key().to_vec(), kv.value().to_vec());
        }
        match response.kvs().last() {
            Some(last) if response.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return all,
        }
    }
}
