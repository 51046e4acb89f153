//! A throw-away single-member etcd on loopback, restored from a base snapshot, tuned for replay:
//! no fsync, huge transactions and requests, no auto-compaction. Killed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::ReplicationError;

/// Largest transaction replay sends (etcd's `--max-txn-ops`): a revision is one transaction.
const MAX_TXN_OPS: u32 = 1_000_000;
/// etcd's `--max-request-bytes` for replay: a revision of tens of MB is one request.
const MAX_REQUEST_BYTES: u64 = 1 << 30;
/// etcd's `--quota-backend-bytes` for replay (etcd's largest recommended quota).
const QUOTA_BACKEND_BYTES: u64 = 8 << 30;
/// How long the restored etcd may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the etcd binaries are.
#[derive(Debug, Clone)]
pub struct EtcdBinaries {
    /// `etcd` (3.5+).
    pub etcd: PathBuf,
    /// `etcdutl` (3.5+), for `snapshot restore`.
    pub etcdutl: PathBuf,
}

/// A running throw-away etcd restored from a snapshot.
pub struct ScratchEtcd {
    dir: tempfile::TempDir,
    child: Child,
    client: Client,
    endpoint: String,
}

impl ScratchEtcd {
    /// Restores `base_db` (a `.db` from etcd's snapshot RPC) into a fresh data directory under
    /// `work_dir`, starts etcd on free loopback ports and waits until it answers.
    pub async fn restore(
        binaries: &EtcdBinaries,
        base_db: &Path,
        work_dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<Self, ReplicationError> {
        let dir = tempfile::Builder::new()
            .prefix("etcd-dr-replay-")
            .tempdir_in(work_dir)
            .map_err(|source| ReplicationError::LocalIo {
                action: "creating the replay directory in",
                path: work_dir.display().to_string(),
                source,
            })?;
        let data_dir = dir.path().join("data");
        let (client_port, peer_port) = (free_loopback_port()?, free_loopback_port()?);
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let client_url = format!("http://127.0.0.1:{client_port}");
        let initial_cluster = format!("replay={peer_url}");
        let token = "etcd-dr-replay";

        let restore = Command::new(&binaries.etcdutl)
            .arg("snapshot")
            .arg("restore")
            .arg(base_db)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--name", "replay", "--initial-cluster", &initial_cluster])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster-token", token])
            .env_clear()
            .envs(etcd_dr_core::allowed_child_environment())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::select! {
            output = restore => output.map_err(|e| ReplicationError::ScratchEtcd {
                action: "running etcdutl snapshot restore",
                detail: format!("`{}`: {e}", binaries.etcdutl.display()),
            })?,
            () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
        };
        if !output.status.success() {
            return Err(ReplicationError::ScratchEtcd {
                action: "etcdutl snapshot restore",
                detail: format!(
                    "{} on `{}`: {}",
                    output.status,
                    base_db.display(),
                    tail(&String::from_utf8_lossy(&output.stderr))
                ),
            });
        }

        let log_path = dir.path().join("etcd.log");
        let log = std::fs::File::create(&log_path).map_err(|source| ReplicationError::LocalIo {
            action: "creating",
            path: log_path.display().to_string(),
            source,
        })?;
        let log_err = log
            .try_clone()
            .map_err(|source| ReplicationError::LocalIo {
                action: "opening",
                path: log_path.display().to_string(),
                source,
            })?;
        let child = Command::new(&binaries.etcd)
            .args(["--name", "replay"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", token])
            .arg("--unsafe-no-fsync")
            .arg(format!("--max-txn-ops={MAX_TXN_OPS}"))
            .arg(format!("--max-request-bytes={MAX_REQUEST_BYTES}"))
            .arg(format!("--quota-backend-bytes={QUOTA_BACKEND_BYTES}"))
            .arg("--auto-compaction-retention=0")
            .args(["--logger", "zap", "--log-level", "warn"])
            // etcd reads every `ETCD_*` variable and logs unknown ones with their value.
            .env_clear()
            .envs(etcd_dr_core::allowed_child_environment())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ReplicationError::ScratchEtcd {
                action: "starting etcd",
                detail: format!("`{}`: {e}", binaries.etcd.display()),
            })?;
        let mut scratch = Self {
            client: Client::connect([client_url.clone()], Some(connect_options()))
                .await
                .map_err(|e| ReplicationError::etcd("connect to the throw-away etcd", e))?,
            dir,
            child,
            endpoint: client_url,
        };
        scratch.wait_ready(cancel).await?;
        Ok(scratch)
    }

    /// A client of this etcd.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Its client URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// CPU time (user + system) it has used so far; `None` where /proc cannot tell.
    pub fn cpu_time(&self) -> Option<Duration> {
        process_cpu_time(&self.child.id()?.to_string())
    }

    /// Its current revision.
    pub async fn revision(&self) -> Result<i64, ReplicationError> {
        let status = self
            .client
            .maintenance_client()
            .status()
            .await
            .map_err(|e| ReplicationError::etcd("status", e))?;
        Ok(status.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Streams etcd's snapshot (with its SHA-256 trailer) into `path`; returns its size.
    pub async fn snapshot_to(
        &self,
        path: &Path,
        cancel: &CancellationToken,
    ) -> Result<u64, ReplicationError> {
        let io_error = |source| ReplicationError::LocalIo {
            action: "writing the replayed snapshot",
            path: path.display().to_string(),
            source,
        };
        // Never replaces a file; a failed write leaves nothing behind; private whatever the umask.
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .await
            .map_err(io_error)?;
        let written = self.stream_snapshot(file, path, cancel).await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(path).await;
        }
        written
    }

    async fn stream_snapshot(
        &self,
        mut file: tokio::fs::File,
        path: &Path,
        cancel: &CancellationToken,
    ) -> Result<u64, ReplicationError> {
        let io_error = |source| ReplicationError::LocalIo {
            action: "writing the replayed snapshot",
            path: path.display().to_string(),
            source,
        };
        let mut stream = self
            .client
            .maintenance_client()
            .snapshot()
            .await
            .map_err(|e| ReplicationError::etcd("snapshot", e))?;
        let mut written = 0u64;
        loop {
            let message = tokio::select! {
                message = stream.message() => message.map_err(|e| ReplicationError::etcd("snapshot", e))?,
                () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
            };
            let Some(message) = message else { break };
            file.write_all(message.blob()).await.map_err(io_error)?;
            written += message.blob().len() as u64;
        }
        file.sync_all().await.map_err(io_error)?;
        Ok(written)
    }

    /// Stops etcd and removes its data directory.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.dir.close();
    }

    async fn wait_ready(&mut self, cancel: &CancellationToken) -> Result<(), ReplicationError> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failed_to_start(format!("etcd exited with {status}")));
            }
            if self.revision().await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(self.failed_to_start(format!("no answer within {START_TIMEOUT:?}")));
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
            }
        }
    }

    fn failed_to_start(&self, what: String) -> ReplicationError {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        ReplicationError::ScratchEtcd {
            action: "starting etcd",
            detail: format!("{what}; log: {}", tail(&log)),
        }
    }
}

fn connect_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(300))
}

/// CPU time (user + system) of process `pid` (`"self"` for this one) from `/proc/<pid>/stat`;
/// `None` where there is no such file (not Linux, or the process is gone).
pub(crate) fn process_cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the `)` that ends the command name: the state is field 0, utime 11, stime 12.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    // Clock ticks of USER_HZ, 100 per second on every Linux architecture etcd runs on.
    Some(Duration::from_millis((user + system) * 10))
}

/// A port on 127.0.0.1 free right now (etcd binds it a moment later).
fn free_loopback_port() -> Result<u16, ReplicationError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|source| ReplicationError::LocalIo {
            action: "finding a free port on",
            path: "127.0.0.1".into(),
            source,
        })
}

/// The last few lines of a tool's output, for error messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_of_this_process_grows_with_work() {
        let before = process_cpu_time("self").expect("/proc/self/stat on Linux");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = process_cpu_time("self").unwrap();
        assert!(
            after >= before + Duration::from_millis(100),
            "{before:?} → {after:?}"
        );
        assert_eq!(process_cpu_time("no-such-process"), None);
    }
}
