//! The Kubernetes half of the after-steps, in kubeadm's recovery order: wait for every Node to
//! report Ready (those that do not are named, the promotion goes on), rollout-restart the
//! workloads, delete the pods that cache the old cluster's state (kube-proxy, controller
//! manager, scheduler).

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::kube::KubeClient;
use crate::{AfterConfig, PromoteError};

/// How a wait for the Nodes ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodesReady {
    /// Every Node reported Ready (how many there are).
    All(usize),
    /// These were still not Ready when the time was up (sorted), of this many.
    NotReady(Vec<String>, usize),
}

impl NodesReady {
    /// One line for the record.
    pub fn describe(&self, timeout: Duration) -> String {
        match self {
            Self::All(total) => format!("every Node Ready ({total})"),
            Self::NotReady(names, total) => format!(
                "{} of {total} Node(s) not Ready after {}: {}",
                names.len(),
                humantime::format_duration(timeout),
                names.join(", ")
            ),
        }
    }
}

/// Polls the Nodes every 2 s until all are Ready or `timeout` passes. API errors while waiting
/// are retried; the last one is returned when the time is up without a single answer.
pub async fn wait_nodes_ready(
    kube: &KubeClient,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<NodesReady, PromoteError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<Result<NodesReady, PromoteError>> = None;
    loop {
        match kube.nodes_not_ready().await {
            Ok((names, total)) if names.is_empty() => return Ok(NodesReady::All(total)),
            Ok((names, total)) => last = Some(Ok(NodesReady::NotReady(names, total))),
            Err(error) => {
                if !matches!(last, Some(Ok(_))) {
                    last = Some(Err(error));
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return last.unwrap_or_else(|| Ok(NodesReady::All(0)));
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(PromoteError::Cancelled),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// What the workload steps did: one line per kind and selector in `done`, each failure (an
/// object that could not be patched, a list or delete that failed) in `errors`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadResults {
    /// What was done.
    pub done: Vec<String>,
    /// What failed.
    pub errors: Vec<String>,
}

/// Rollout-restarts `after.rollout_restart`'s kinds, then deletes `after.delete_pods`' pods.
/// Nothing failing stops the rest. `progress` is told what runs.
pub async fn restart_workloads(
    kube: &KubeClient,
    after: &AfterConfig,
    mut progress: impl FnMut(String),
) -> WorkloadResults {
    let mut results = WorkloadResults::default();
    let now = Utc::now();
    for kind in &after.rollout_restart {
        progress(format!("rollout restart of {kind}"));
        match kube.rollout_restart(kind, now).await {
            Ok(report) => {
                results.done.push(format!(
                    "{} {kind} restarted{}",
                    report.restarted.len(),
                    if report.failed.is_empty() {
                        String::new()
                    } else {
                        format!(", {} failed", report.failed.len())
                    }
                ));
                results.errors.extend(report.failed);
            }
            Err(error) => results.errors.push(error.to_string()),
        }
    }
    for pods in &after.delete_pods {
        progress(format!(
            "deleting pods {} in {}",
            pods.label_selector, pods.namespace
        ));
        match kube.delete_pods(pods).await {
            Ok(count) => results.done.push(format!(
                "{count} pod(s) {} deleted in {}",
                pods.label_selector, pods.namespace
            )),
            Err(error) => results.errors.push(error.to_string()),
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_the_nodes() {
        let timeout = Duration::from_secs(300);
        assert_eq!(NodesReady::All(5).describe(timeout), "every Node Ready (5)");
        assert_eq!(
            NodesReady::NotReady(vec!["w1".into(), "w9".into()], 5).describe(timeout),
            "2 of 5 Node(s) not Ready after 5m: w1, w9"
        );
    }
}
