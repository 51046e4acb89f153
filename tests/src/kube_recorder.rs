//! A stand-in for kube-apiserver, for the faults the real one (the ground of
//! [`crate::kube_ground`]) cannot produce on demand: a small HTTP/1.1 server on loopback that
//! records every request, answers the few calls a promotion makes with canned Kubernetes shaped
//! JSON and, as [`KubeFaults`] says, fails one rollout restart with a 500 or answers the first
//! `/readyz` late. Tests assert on the exact requests it saw.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `PATCH`, `DELETE`…
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// `Authorization`, if any.
    pub authorization: Option<String>,
    /// The body.
    pub body: String,
}

/// Faults the recorder injects; none by default.
#[derive(Debug, Clone, Default)]
pub struct KubeFaults {
    /// `namespace/name` of the Deployment or DaemonSet whose rollout-restart PATCH is answered
    /// with a 500 ([`INJECTED_ERROR`]).
    pub failing_rollout: Option<String>,
    /// How long the first `GET /readyz` waits before its answer (one slow API server).
    pub first_readyz_delay: Option<Duration>,
}

/// The message of the 500 [`KubeFaults::failing_rollout`] answers with.
pub const INJECTED_ERROR: &str = "etcdserver: request timed out (injected by the test recorder)";

/// The recording server; stopped on drop.
pub struct KubeRecorder {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Deployments the recorder lists (namespace, name).
pub const DEPLOYMENTS: [(&str, &str); 2] = [("default", "web"), ("shop", "cart")];
/// DaemonSets the recorder lists (namespace, name).
pub const DAEMONSETS: [(&str, &str); 1] = [("kube-system", "kube-proxy")];

fn list(list_kind: &str, api_version: &str, kind: &str, items: &[(&str, &str)]) -> String {
    let items: Vec<serde_json::Value> = items
        .iter()
        .map(|(ns, name)| {
            serde_json::json!({
                "apiVersion": api_version, "kind": kind,
                "metadata": { "namespace": ns, "name": name },
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": api_version, "kind": list_kind, "metadata": {}, "items": items,
    })
    .to_string()
}

/// The recorder's one Node, Ready.
pub const NODE: &str = "cp1";

fn answer(method: &str, target: &str, faults: &KubeFaults) -> (u16, String) {
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/readyz") => (200, "ok".into()),
        ("GET", "/api/v1/namespaces") => (
            200,
            list("NamespaceList", "v1", "Namespace", &[("", "default")]),
        ),
        ("GET", "/api/v1/nodes") => (
            200,
            serde_json::json!({
                "apiVersion": "v1", "kind": "NodeList", "metadata": {},
                "items": [{
                    "apiVersion": "v1", "kind": "Node", "metadata": { "name": NODE },
                    "status": { "conditions": [{ "type": "Ready", "status": "True" }] },
                }],
            })
            .to_string(),
        ),
        ("GET", "/apis/apps/v1/deployments") => (
            200,
            list("DeploymentList", "apps/v1", "Deployment", &DEPLOYMENTS),
        ),
        ("GET", "/apis/apps/v1/daemonsets") => (
            200,
            list("DaemonSetList", "apps/v1", "DaemonSet", &DAEMONSETS),
        ),
        ("PATCH", p) if p.starts_with("/apis/apps/v1/namespaces/") => {
            let parts: Vec<&str> = p.split('/').collect();
            let kind = if parts.get(6) == Some(&"daemonsets") {
                "DaemonSet"
            } else {
                "Deployment"
            };
            let object = format!(
                "{}/{}",
                parts.get(5).unwrap_or(&""),
                parts.get(7).unwrap_or(&"")
            );
            if faults.failing_rollout.as_deref() == Some(object.as_str()) {
                return (
                    500,
                    serde_json::json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "message": INJECTED_ERROR,
                        "reason": "InternalError", "code": 500,
                    })
                    .to_string(),
                );
            }
            (
                200,
                serde_json::json!({
                    "apiVersion": "apps/v1", "kind": kind,
                    "metadata": { "namespace": parts.get(5), "name": parts.get(7) },
                })
                .to_string(),
            )
        }
        ("DELETE", p) if p.starts_with("/api/v1/namespaces/") && p.ends_with("/pods") => (
            200,
            list("PodList", "v1", "Pod", &[("kube-system", "deleted-1")]),
        ),
        _ => (
            404,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":404}"#.into(),
        ),
    }
}

fn serve(
    stream: TcpStream,
    requests: &Mutex<Vec<RecordedRequest>>,
    faults: &KubeFaults,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let target = words.next().unwrap_or("").to_string();
    let (mut length, mut content_type, mut authorization) = (0usize, None, None);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim().to_string();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "content-type" => content_type = Some(value),
                "authorization" => authorization = Some(value),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let (status, reply) = answer(&method, &target, faults);
    let delay = {
        let mut requests = requests.lock().unwrap();
        let is_readyz = method == "GET" && target.split('?').next() == Some("/readyz");
        let first_readyz = is_readyz
            && !requests
                .iter()
                .any(|r| r.method == "GET" && r.target.split('?').next() == Some("/readyz"));
        requests.push(RecordedRequest {
            method,
            target,
            content_type,
            authorization,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        faults.first_readyz_delay.filter(|_| first_readyz)
    };
    if let Some(delay) = delay {
        std::thread::sleep(delay);
    }
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    )?;
    stream.flush()
}

impl KubeRecorder {
    /// Starts on a free loopback port, without faults.
    pub fn start() -> Self {
        Self::start_with(KubeFaults::default())
    }

    /// Starts on a free loopback port, injecting `faults`. Each connection is served on a
    /// thread of its own, so a delayed answer holds up no other request.
    pub fn start_with(faults: KubeFaults) -> Self {
        let faults = Arc::new(faults);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        let addr = listener.local_addr().expect("recorder address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let requests = requests.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let (requests, faults) = (requests.clone(), faults.clone());
                        std::thread::spawn(move || {
                            let _ = serve(stream, &requests, &faults);
                        });
                    }
                }
            })
        };
        Self {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for KubeRecorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
