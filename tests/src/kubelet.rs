//! A kubelet stand-in for the promote tests: it runs the etcd member described by a kubeadm-shaped
//! static pod manifest (`/etc/kubernetes/manifests/etcd.yaml`) and stops it when "kubelet" is
//! stopped. etcd-dr's `[promote]` stop/start commands call it instead of systemctl and crictl.
//!
//! Also: plain-HTTP etcd client helpers for any list of endpoints (the secondary's members).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use crate::block_on;

/// The stand-in: `kubelet-standin.sh start|stop|stopped MANIFEST STATE_DIR ETCD_BINARY`.
///
/// `start` runs etcd with the manifest's `--flags` (detached, pid in `STATE_DIR/etcd.pid`, log in
/// `STATE_DIR/etcd.log`); `stop` kills it and waits until it is gone; `stopped` succeeds when no
/// etcd of this node runs. A zombie counts as gone.
pub const STANDIN_SCRIPT: &str = r#"#!/bin/sh
set -u
action=$1
manifest=$2
state=$3
etcd=$4
pidfile=$state/etcd.pid
alive() {
    [ -e "/proc/$1" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null
}
running() {
    [ -f "$pidfile" ] && alive "$(cat "$pidfile")"
}
case $action in
start)
    running && exit 0
    mkdir -p "$state"
    flags=$(grep -E '^ *- --' "$manifest" | sed -E 's/^ *- //')
    # shellcheck disable=SC2086
    setsid "$etcd" $flags >>"$state/etcd.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    ;;
stop)
    if running; then
        pid=$(cat "$pidfile")
        kill "$pid"
        i=0
        while alive "$pid" && [ $i -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        alive "$pid" && kill -9 "$pid"
    fi
    rm -f "$pidfile"
    ;;
stopped)
    ! running
    ;;
*)
    echo "unknown action $action" >&2
    exit 2
    ;;
esac
"#;

/// Writes the stand-in script into `dir` and returns its path.
pub fn write_standin(dir: &Path) -> PathBuf {
    let path = dir.join("kubelet-standin.sh");
    std::fs::write(&path, STANDIN_SCRIPT).expect("write kubelet stand-in");
    path
}

/// The argv that runs the stand-in's `action` for one node, as a TOML array.
pub fn standin_command(
    script: &Path,
    action: &str,
    manifest: &str,
    state: &str,
    etcd: &Path,
) -> String {
    format!(
        "[\"sh\", \"{}\", \"{action}\", \"{manifest}\", \"{state}\", \"{}\"]",
        script.display(),
        etcd.display()
    )
}

/// Words as a TOML array of strings (`["sh", "/path", …]`), for argv settings in a config.
pub fn toml_array(words: &[String]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// What a kubeadm-shaped etcd static pod manifest needs for one member.
pub struct EtcdPodSpec<'a> {
    /// `--name` (the host name).
    pub name: &'a str,
    /// The data dir (host path and `--data-dir`).
    pub data_dir: &'a str,
    /// Client URL (listen and advertise).
    pub client_url: &'a str,
    /// Peer URL (listen and advertise).
    pub peer_url: &'a str,
    /// `--initial-cluster`.
    pub initial_cluster: &'a str,
    /// `--initial-cluster-token`.
    pub token: &'a str,
    /// The etcd version its image names (`3.6.16`: `registry.k8s.io/etcd:3.6.16-0`).
    pub version: &'a str,
}

/// A kubeadm-shaped etcd static pod manifest (plain HTTP, fast elections for tests).
pub fn etcd_pod_manifest(spec: &EtcdPodSpec<'_>) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: {client}
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls={client}
    - --data-dir={data}
    - --initial-advertise-peer-urls={peer}
    - --initial-cluster={cluster}
    - --initial-cluster-state=new
    - --initial-cluster-token={token}
    - --listen-client-urls={client}
    - --listen-peer-urls={peer}
    - --name={name}
    - --heartbeat-interval=50
    - --election-timeout=500
    - --logger=zap
    - --log-level=warn
    image: registry.k8s.io/etcd:{version}-0
    name: etcd
    volumeMounts:
    - mountPath: {data}
      name: etcd-data
  hostNetwork: true
  priorityClassName: system-node-critical
  volumes:
  - hostPath:
      path: {data}
      type: DirectoryOrCreate
    name: etcd-data
status: {{}}
"#,
        client = spec.client_url,
        data = spec.data_dir,
        peer = spec.peer_url,
        cluster = spec.initial_cluster,
        token = spec.token,
        name = spec.name,
        version = spec.version,
    )
}

/// Kills the process whose pid is in `pidfile`, if any (cleanup of what a stand-in started).
pub fn kill_pidfile(pidfile: &Path) {
    if let Ok(text) = std::fs::read_to_string(pidfile) {
        if let Ok(pid) = text.trim().parse::<i32>() {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
}

fn options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(10))
}

async fn connect(endpoints: Vec<String>) -> Client {
    Client::connect(endpoints, Some(options()))
        .await
        .expect("connect to etcd")
}

/// Every key and value, read through `endpoint` alone (serializable reads: that member's own
/// data).
pub fn dump_member(endpoint: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let endpoint = endpoint.to_string();
    block_on(async move {
        let mut client = connect(vec![endpoint]).await;
        crate::etcd::read_all(&mut client, true).await
    })
}

/// The revision `endpoint` reports.
pub fn member_revision(endpoint: &str) -> i64 {
    let endpoint = endpoint.to_string();
    block_on(async move {
        let mut client = connect(vec![endpoint]).await;
        let status = client.status().await.expect("status");
        status.header().map(|h| h.revision()).unwrap_or(0)
    })
}

/// The member names the cluster behind `endpoints` lists, sorted.
pub fn member_names(endpoints: &[String]) -> Vec<String> {
    let endpoints = endpoints.to_vec();
    block_on(async move {
        let mut client = connect(endpoints).await;
        let list = client.member_list().await.expect("member list");
        let mut names: Vec<String> = list
            .members()
            .iter()
            .map(|m| m.name().to_string())
            .collect();
        names.sort();
        names
    })
}

/// Puts `count` keys `prefix/<i>` through `endpoints`; returns the revision after the last.
pub fn put_keys(endpoints: &[String], prefix: &str, count: usize) -> i64 {
    let endpoints = endpoints.to_vec();
    let prefix = prefix.to_string();
    block_on(async move {
        let mut client = connect(endpoints).await;
        let mut revision = 0;
        for i in 0..count {
            let response = client
                .put(format!("{prefix}/{i}"), format!("value {i}"), None)
                .await
                .expect("put");
            revision = response.header().map(|h| h.revision()).unwrap_or(0);
        }
        revision
    })
}

/// Deletes `key` through `endpoints`; returns the revision after the delete.
pub fn delete_key(endpoints: &[String], key: &str) -> i64 {
    let endpoints = endpoints.to_vec();
    let key = key.to_string();
    block_on(async move {
        let mut client = connect(endpoints).await;
        let response = client.delete(key, None).await.expect("delete");
        assert_eq!(response.deleted(), 1, "nothing deleted");
        response.header().map(|h| h.revision()).unwrap_or(0)
    })
}

/// True when `endpoint` answers a status call within a second.
pub fn answers(endpoint: &str) -> bool {
    let endpoint = endpoint.to_string();
    block_on(async move {
        let connect = Client::connect(
            vec![endpoint],
            Some(
                ConnectOptions::new()
                    .with_connect_timeout(Duration::from_millis(500))
                    .with_timeout(Duration::from_secs(1)),
            ),
        );
        match tokio::time::timeout(Duration::from_secs(2), connect).await {
            Ok(Ok(mut client)) => client.status().await.is_ok(),
            _ => false,
        }
    })
}
