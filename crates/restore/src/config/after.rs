//! `[promote.after]`: the steps after a healthy restore.

use std::time::Duration;

use etcd_dr_core::ConfigProblems;
use serde::{Deserialize, Serialize};

use super::default_true;
use super::node_commands::{check_argv, words};

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

impl AfterConfig {
    /// Reports every bad field under `field` (e.g. `promote.after`).
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        if self.restart_workers {
            check_argv(
                problems,
                format!("{field}.worker_restart_command"),
                &self.worker_restart_command,
            );
        }
        for (i, kind) in self.rollout_restart.iter().enumerate() {
            if !matches!(kind.as_str(), "deployments" | "daemonsets" | "statefulsets") {
                problems.push(
                    format!("{field}.rollout_restart[{i}]"),
                    "must be one of \"deployments\", \"daemonsets\", \"statefulsets\"",
                );
            }
        }
        for (i, pods) in self.delete_pods.iter().enumerate() {
            if pods.namespace.is_empty() || pods.label_selector.is_empty() {
                problems.push(
                    format!("{field}.delete_pods[{i}]"),
                    "needs a namespace and a label_selector, e.g. { namespace = \"kube-system\", label_selector = \"k8s-app=kube-proxy\" }",
                );
            }
        }
    }
}
