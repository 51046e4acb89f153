//! The running daemon (`etcd-dr run`): its HTTP API as the tests call it, a primary daemon on a
//! one-member etcd, and stopping a daemon as systemd would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{
    free_port, http_request, terminate, wait_for, EtcdCluster, EtcdDr, EtcdOptions, FillSpec,
    HttpResponse, MotoServer, StoreTarget,
};

/// The API token every test daemon is given (through `http.token_file`).
pub const API_TOKEN: &str = "e2e-token-5f0c3b9a7d2e4f61";

/// Writes [`API_TOKEN`] to `<dir>/api-token` and returns the path.
pub fn write_token(dir: &Path) -> PathBuf {
    let path = dir.join("api-token");
    std::fs::write(&path, format!("{API_TOKEN}\n")).expect("write the API token");
    path
}

/// A daemon's HTTP API.
pub struct Api {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Api {
    /// An API address on a free loopback port.
    pub fn on_free_port() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
        }
    }

    /// The `[http]` section: this address, the token file, quick store checks, `extra` lines.
    pub fn section(&self, token_file: &Path, extra: &str) -> String {
        format!(
            "[http]\nlisten = \"{}\"\ntoken_file = \"{}\"\nstore_check_interval = \"300ms\"\nstore_check_timeout = \"2s\"\n{extra}\n",
            self.addr,
            token_file.display()
        )
    }

    /// A request without a body, with `Authorization: Bearer <token>` when `token` is given.
    pub fn request(&self, method: &str, path: &str, token: Option<&str>) -> HttpResponse {
        let authorization = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        http_request(self.addr, method, path, &headers, b"")
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A `POST` of a JSON `body` with [`API_TOKEN`].
    pub fn post_json(&self, path: &str, body: &str) -> HttpResponse {
        let authorization = format!("Bearer {API_TOKEN}");
        http_request(
            self.addr,
            "POST",
            path,
            &[
                ("Authorization", authorization.as_str()),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `GET path` without a token.
    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, None)
    }

    /// `GET path`, which must answer 200, as JSON.
    pub fn json(&self, path: &str) -> Value {
        let response = self.get(path);
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        response.json()
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Value {
        self.json("/v1/status")
    }

    /// The samples of `/metrics`: `name{labels}` → value.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let response = self.get("/metrics");
        assert_eq!(response.status, 200);
        assert!(response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
        response
            .text()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').expect("sample line");
                (name.to_string(), value.parse().expect("sample value"))
            })
            .collect()
    }

    /// One sample of `/metrics` (`name` with its labels, if any).
    pub fn metric(&self, name: &str) -> f64 {
        let metrics = self.metrics();
        *metrics
            .get(name)
            .unwrap_or_else(|| panic!("{name} not exported: {metrics:?}"))
    }

    /// Waits until `/healthz` answers.
    pub fn wait_ready(&self) {
        wait_for("the API to answer", Duration::from_secs(20), || {
            http_request(self.addr, "GET", "/healthz", &[], b"").ok()
        });
    }

    /// Waits until `GET /v1/promote` shows a promotion that is no longer running; returns it.
    pub fn wait_promotion(&self) -> Value {
        wait_for("the promotion to end", Duration::from_secs(90), || {
            let record = self.json("/v1/promote");
            (record["state"] != "running").then_some(record)
        })
    }
}

/// Asserts an error answer: `status`, the error `code`, and a `detail` that says something.
pub fn assert_error(response: &HttpResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json();
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

/// SIGTERMs a daemon and asserts it exits successfully within 10 s (its log `log` on failure).
pub fn stop(child: impl Into<Child>, dr: &EtcdDr, log: &str) {
    let child = child.into();
    terminate(&child);
    let started = Instant::now();
    let output = child.wait_with_output().expect("wait for the daemon");
    assert!(output.status.success(), "{}", dr.log(log));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "slow shutdown: {:?}",
        started.elapsed()
    );
}

/// A primary's configuration: `etcd` reached at `endpoints`, shipping to `bucket` (prefix `dr`)
/// on `s3`, its API at `api` with the token, a 1 h schedule (the first run comes at start-up).
pub fn primary_on_s3(
    etcd: &EtcdCluster,
    endpoints: &[String],
    s3: &MotoServer,
    bucket: &str,
    api: &Api,
) -> EtcdDr {
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(endpoints),
        &StoreTarget::S3 {
            server: s3,
            bucket,
            prefix: "dr",
        },
        "",
    );
    let token = write_token(dr.dir());
    dr.append_config(&format!(
        "{}[schedule]\ninterval = \"1h\"\n",
        api.section(&token, "")
    ));
    dr
}

/// A primary daemon (`etcd-dr run`) on a one-member etcd named after a host, shipping into a
/// local store, looking for fences every 200 ms; SIGTERMed on drop.
pub struct PrimaryDaemon {
    /// Its etcd (100 Kubernetes-shaped objects at start).
    pub etcd: EtcdCluster,
    /// Its configuration (the daemon's log is `primary.log`).
    pub dr: EtcdDr,
    child: Option<Child>,
    /// Its API.
    pub api: Api,
}

impl PrimaryDaemon {
    /// Starts it on `host`'s etcd with the schedule's `interval`; waits until the API answers.
    pub fn start(host: &str, store: &Path, interval: &str) -> Self {
        let etcd = EtcdCluster::start(EtcdOptions {
            member_names: vec![host.to_string()],
            ..EtcdOptions::default()
        });
        etcd.fill(FillSpec::objects(100));
        let api = Api::on_free_port();
        let dr = EtcdDr::with_sections(
            "prod",
            &etcd.config_section(&etcd.endpoints()),
            &StoreTarget::Local(store),
            "",
        );
        let token = write_token(dr.dir());
        dr.append_config(&format!(
            "[schedule]\ninterval = \"{interval}\"\n[fencing]\npoll_interval = \"200ms\"\n{}",
            api.section(&token, "")
        ));
        let mut child = dr.spawn(&["run"], "primary.log");
        wait_for("the primary's API", Duration::from_secs(20), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the primary exited ({status}): {}", dr.log("primary.log"));
            }
            http_request(api.addr, "GET", "/healthz", &[], b"").ok()
        });
        Self {
            etcd,
            dr,
            child: Some(child),
            api,
        }
    }

    /// `etcd-dr list --json` of its store.
    pub fn snapshots(&self) -> Vec<Value> {
        self.dr.list_json()
    }
}

impl Drop for PrimaryDaemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(&child);
            let _ = child.wait_with_output();
        }
    }
}
