//! An informer-like client for the promote tests: it lists one resource across all namespaces,
//! watches from the list's resourceVersion, re-watches from the last one it saw when a watch
//! ends, and relists when the API says that version has expired (410 Gone), as client-go's
//! reflector does. Everything it sees is recorded with the time it saw it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::kube_pki::KubePki;

/// One thing the informer saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A list: its resourceVersion and the `namespace/name` of every item.
    Listed(u64, Vec<String>),
    /// A watch event (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`) at a resourceVersion.
    Event(String, u64),
    /// The API said the version the watch asked for is gone (HTTP 410 or an ERROR event 410).
    Expired,
    /// A watch stream ended or could not be opened; the informer retries.
    WatchEnded(String),
}

/// The running informer; stopped on drop.
pub struct Informer {
    seen: Arc<Mutex<Vec<(Instant, Seen)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Informer {
    /// Starts list+watch of `path` (e.g. `/api/v1/configmaps`) on `server` as the admin of `pki`.
    pub fn start(server: &str, pki: &KubePki, path: &str) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let identity = format!("{}\n{}", pki.admin.cert, pki.admin.key);
        let ca = pki.ca.cert.clone();
        let url = format!("{server}{path}");
        let thread = {
            let seen = seen.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("informer runtime")
                    .block_on(run(url, ca, identity, seen, stop));
            })
        };
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything seen so far, in order.
    pub fn seen(&self) -> Vec<(Instant, Seen)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Informer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn rv_of(value: &serde_json::Value) -> u64 {
    value["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

async fn run(
    url: String,
    ca: String,
    identity: String,
    seen: Arc<Mutex<Vec<(Instant, Seen)>>>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca.as_bytes()).expect("ca"))
        .identity(reqwest::Identity::from_pem(identity.as_bytes()).expect("identity"))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("informer client");
    let record = |what: Seen| seen.lock().unwrap().push((Instant::now(), what));
    let mut version: Option<u64> = None;
    while !stop.load(Ordering::SeqCst) {
        let Some(from) = version else {
            // List.
            match list(&client, &url).await {
                Ok((rv, names)) => {
                    record(Seen::Listed(rv, names));
                    version = Some(rv);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
            continue;
        };
        // Watch from `from` until the stream ends, the version expires or we are stopped.
        let watch = format!(
            "{url}?watch=1&allowWatchBookmarks=true&resourceVersion={from}&timeoutSeconds=60"
        );
        let response = match client.get(&watch).send().await {
            Ok(response) => response,
            Err(error) => {
                record(Seen::WatchEnded(format!("connect: {error}")));
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        };
        if response.status().as_u16() == 410 {
            record(Seen::Expired);
            version = None;
            continue;
        }
        if !response.status().is_success() {
            record(Seen::WatchEnded(format!("HTTP {}", response.status())));
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        let mut response = response;
        let mut buffer: Vec<u8> = Vec::new();
        let ended = loop {
            if stop.load(Ordering::SeqCst) {
                break "stopped".to_string();
            }
            let chunk =
                match tokio::time::timeout(Duration::from_millis(500), response.chunk()).await {
                    Err(_) => continue,
                    Ok(Ok(Some(chunk))) => chunk,
                    Ok(Ok(None)) => break "stream ended".to_string(),
                    Ok(Err(error)) => break format!("stream: {error}"),
                };
            buffer.extend_from_slice(&chunk);
            let mut expired = false;
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let Ok(event) = serde_json::from_slice::<serde_json::Value>(&line) else {
                    continue;
                };
                let kind = event["type"].as_str().unwrap_or("").to_string();
                if kind == "ERROR" {
                    if event["object"]["code"] == 410 {
                        expired = true;
                    }
                    continue;
                }
                let rv = rv_of(&event["object"]);
                record(Seen::Event(kind, rv));
                version = Some(rv);
            }
            if expired {
                break "expired".to_string();
            }
        };
        if ended == "expired" {
            record(Seen::Expired);
            version = None;
        } else if ended != "stopped" {
            record(Seen::WatchEnded(ended));
        }
    }
}

async fn list(client: &reqwest::Client, url: &str) -> Result<(u64, Vec<String>), String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            format!(
                "{}/{}",
                item["metadata"]["namespace"].as_str().unwrap_or(""),
                item["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    names.sort();
    Ok((rv_of(&body), names))
}
