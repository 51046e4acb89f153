use std::path::PathBuf;
use std::time::Duration;

use etcd_dr_core::ConfigProblems;
use serde::Deserialize;

/// How to reach the etcd cluster (`[etcd]`). kubeadm keeps the client material under
/// `/etc/kubernetes/pki/etcd/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the members, e.g. `["https://10.0.0.11:2379", "https://10.0.0.12:2379"]`.
    pub endpoints: Vec<String>,
    /// CA that signed the etcd server certificates (`/etc/kubernetes/pki/etcd/ca.crt`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (`/etc/kubernetes/pki/etcd/healthcheck-client.crt`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client key (`/etc/kubernetes/pki/etcd/healthcheck-client.key`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// TLS server name to check instead of the endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Time allowed to connect to one endpoint.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for one status or member-list call.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A snapshot stream that delivers nothing for this long is abandoned.
    #[serde(default = "default_stall_timeout", with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// The key prefix kube-apiserver stores objects under (its `--etcd-prefix`): where each
    /// snapshot reads the cluster's shape.
    #[serde(default = "default_kubernetes_prefix")]
    pub kubernetes_prefix: String,
}

fn default_kubernetes_prefix() -> String {
    etcd_dr_cluster_shape::DEFAULT_KUBERNETES_PREFIX.to_string()
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_stall_timeout() -> Duration {
    Duration::from_secs(30)
}

impl EtcdConfig {
    /// Plain-HTTP endpoints with default timeouts (tests, local runs).
    pub fn plain(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name: None,
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
            stall_timeout: default_stall_timeout(),
            kubernetes_prefix: default_kubernetes_prefix(),
        }
    }

    /// True when the endpoints use TLS.
    pub fn uses_tls(&self) -> bool {
        self.endpoints.iter().any(|e| e.starts_with("https://"))
    }

    /// Reports every bad field under `field` (e.g. `etcd`).
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        if self.endpoints.is_empty() {
            problems.push(
                format!("{field}.endpoints"),
                "list at least one client URL, e.g. [\"https://10.0.0.11:2379\"]",
            );
        }
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                problems.push(
                    format!("{field}.endpoints[{index}]"),
                    format!("`{endpoint}` must start with https:// (or http:// for a cluster without TLS)"),
                );
            }
        }
        let https = self
            .endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        if https != 0 && https != self.endpoints.len() {
            problems.push(
                format!("{field}.endpoints"),
                "mix of http:// and https:// endpoints; use one scheme",
            );
        }
        for (name, path) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            problems.check_file(format!("{field}.{name}"), path.as_deref());
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            problems.push(
                format!("{field}.key_file"),
                "cert_file and key_file go together: set both or neither",
            );
        }
        if https > 0 && self.ca_file.is_none() {
            problems.push(
                format!("{field}.ca_file"),
                "required for https:// endpoints: the etcd CA, e.g. /etc/kubernetes/pki/etcd/ca.crt",
            );
        }
        if https == 0 && (self.ca_file.is_some() || self.cert_file.is_some()) {
            problems.push(
                format!("{field}.endpoints"),
                "TLS files are set but the endpoints are http://; use https:// URLs",
            );
        }
        if !self.kubernetes_prefix.starts_with('/') {
            problems.push(
                format!("{field}.kubernetes_prefix"),
                format!(
                    "`{}` must start with / (kube-apiserver's default is \"/registry\")",
                    self.kubernetes_prefix
                ),
            );
        }
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("stall_timeout", self.stall_timeout),
        ] {
            if value.is_zero() {
                problems.push(
                    format!("{field}.{name}"),
                    "must be longer than 0s, e.g. \"10s\"",
                );
            }
        }
    }
}
