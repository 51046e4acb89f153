//! `[promote.kubernetes]` (reaching the secondary's kube-apiserver) and `[promote.after]`
//! (the steps after a healthy restore).

use std::path::PathBuf;
use std::time::Duration;

use etcd_dr_core::ConfigProblems;
use serde::{Deserialize, Serialize};

use super::{default_true, words};

/// `[promote.kubernetes]`: how to reach the secondary's kube-apiserver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The API server URL, e.g. `https://k8s-eu.example:6443`. Taken from `kubeconfig` when
    /// unset.
    #[serde(default)]
    pub api_server: Option<String>,
    /// A kubeconfig (e.g. `/etc/kubernetes/admin.conf`): server, CA and credentials (client
    /// certificate, token, exec plugin).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of its `current-context`; one it does not have is
    /// an error.
    #[serde(default)]
    pub context: Option<String>,
    /// CA bundle of the API server (instead of the kubeconfig's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (instead of the kubeconfig's).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client key (instead of the kubeconfig's).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// A file holding a bearer token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Time allowed for one request.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Each control-plane node's own kube-apiserver (e.g. `https://10.1.0.11:6443`): the health
    /// step waits for `/readyz` and a list on every one. Empty: the kubeconfig's server only.
    #[serde(default)]
    pub control_plane_servers: Vec<String>,
}

/// `[promote.after]`: the steps after a healthy restore; each can be turned off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfterConfig {
    /// How long the first after-step waits for every Node to report Ready; those still not
    /// Ready then are named in a warning and the promotion goes on.
    #[serde(default = "default_nodes_ready_timeout", with = "humantime_serde")]
    pub nodes_ready_timeout: Duration,
    /// Run `worker_restart_command` on every worker node (`[nodes] workers`).
    #[serde(default = "default_true")]
    pub restart_workers: bool,
    /// What restarts kubelet on a worker.
    #[serde(default = "default_worker_restart")]
    pub worker_restart_command: Vec<String>,
    /// Workload kinds to rollout-restart (`deployments`, `daemonsets`, `statefulsets`).
    #[serde(default = "default_rollout_kinds")]
    pub rollout_restart: Vec<String>,
    /// Pods deleted (by label) so they start fresh.
    #[serde(default = "default_delete_pods")]
    pub delete_pods: Vec<PodSelector>,
}

/// Pods of one namespace chosen by a label selector.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PodSelector {
    /// The namespace.
    pub namespace: String,
    /// A label selector, e.g. `k8s-app=kube-proxy`.
    pub label_selector: String,
}

impl Default for AfterConfig {
    fn default() -> Self {
        Self {
            nodes_ready_timeout: default_nodes_ready_timeout(),
            restart_workers: true,
            worker_restart_command: default_worker_restart(),
            rollout_restart: default_rollout_kinds(),
            delete_pods: default_delete_pods(),
        }
    }
}

impl KubernetesConfig {
    /// Reports every bad field under `field` (e.g. `promote.kubernetes`).
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        if self.api_server.is_none() && self.kubeconfig.is_none() {
            problems.push(
                format!("{field}.api_server"),
                "set api_server or kubeconfig (e.g. \"/etc/kubernetes/admin.conf\")",
            );
        }
        if let Some(url) = &self.api_server {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(
                    format!("{field}.api_server"),
                    "must be a URL such as https://k8s.example:6443",
                );
            }
        }
        for (i, url) in self.control_plane_servers.iter().enumerate() {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(
                    format!("{field}.control_plane_servers[{i}]"),
                    "must be a URL such as https://10.1.0.11:6443",
                );
            }
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            problems.push(
                format!("{field}.key_file"),
                "cert_file and key_file go together: set both or neither",
            );
        }
        for (name, path) in [
            ("kubeconfig", &self.kubeconfig),
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
            ("token_file", &self.token_file),
        ] {
            problems.check_file(format!("{field}.{name}"), path.as_deref());
        }
        if self.request_timeout < Duration::from_secs(1) {
            problems.push(format!("{field}.request_timeout"), "must be at least 1s");
        }
    }
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_nodes_ready_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_worker_restart() -> Vec<String> {
    words(&["systemctl", "restart", "kubelet"])
}
fn default_rollout_kinds() -> Vec<String> {
    words(&["deployments", "daemonsets"])
}
fn default_delete_pods() -> Vec<PodSelector> {
    [
        "k8s-app=kube-proxy",
        "component=kube-controller-manager",
        "component=kube-scheduler",
    ]
    .iter()
    .map(|selector| PodSelector {
        namespace: "kube-system".into(),
        label_selector: selector.to_string(),
    })
    .collect()
}
