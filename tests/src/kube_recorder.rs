//! A stand-in for kube-apiserver (none installs here): a small HTTP/1.1 server on loopback that
//! records every request and answers the few calls a promotion makes with canned Kubernetes
//! shaped JSON. Tests assert on the exact requests it saw.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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

fn answer(method: &str, target: &str) -> (u16, String) {
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

fn serve(stream: TcpStream, requests: &Mutex<Vec<RecordedRequest>>) -> std::io::Result<()> {
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
    let (status, reply) = answer(&method, &target);
    requests.lock().unwrap().push(RecordedRequest {
        method,
        target,
        content_type,
        authorization,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    )?;
    stream.flush()
}

impl KubeRecorder {
    /// Starts on a free loopback port.
    pub fn start() -> Self {
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
                        let _ = serve(stream, &requests);
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
