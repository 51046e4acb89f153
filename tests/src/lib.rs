//! The etcd-dr test ground: real etcd, a real S3-compatible server (moto) and the real `etcd-dr`
//! binary on loopback, on free ports, torn down on drop.
//!
//! Everything it starts comes from the tools `scripts/install-test-deps.sh` installs; the tests
//! find them through the `TESTGROUND_*` variables of `.tools/env.sh` (or `.tools/` next to the
//! workspace when the variables are unset).

#![forbid(unsafe_code)]

pub mod certs;
pub mod daemon;
pub mod etcd;
pub mod etcd_dr;
pub mod files;
pub mod fill;
pub mod k8s_fixtures;
pub mod kube_ground;
pub mod kube_informer;
pub mod kube_pki;
pub mod kube_recorder;
pub mod kubelet;
pub mod local_secondary;
pub mod markdown_links;
pub mod net;
pub mod node_runtime;
pub mod nodes;
pub mod promotion;
pub mod replication_ground;
pub mod s3;
pub mod secondary;
pub mod store_backend;
pub mod tools;

pub use certs::TlsFiles;
pub use etcd::{EtcdCluster, EtcdOptions, EtcdVersion};
pub use etcd_dr::{
    output_text, segment_signer, sign_with_test_key, signing_section, terminate, test_signing_key,
    test_signing_key_file, test_trust, EtcdDr, KillOnDrop, StoreTarget,
};
pub use fill::{fill_kubernetes_shaped, kubernetes_object, FillSpec};
pub use net::{free_port, http_request, wait_for_port, HttpResponse, ProxyMode, TcpProxy};
pub use s3::MotoServer;
pub use store_backend::{StoreBackend, StoreUnderTest};
pub use tools::{tools, Tools};

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs an async block to completion on a private runtime in its own thread, so that blocking
/// test code can call async clients whether or not it already runs inside a runtime.
pub fn block_on<F, T>(future: F) -> T
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime")
            .block_on(future)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The JSON paths where `a` and `b` differ, with both values.
pub fn json_differences(
    a: &serde_json::Value,
    b: &serde_json::Value,
    path: String,
    out: &mut Vec<String>,
) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let (va, vb) = (
                    x.get(key).unwrap_or(&serde_json::Value::Null),
                    y.get(key).unwrap_or(&serde_json::Value::Null),
                );
                json_differences(va, vb, format!("{path}/{key}"), out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} != {b}")),
        _ => {}
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
