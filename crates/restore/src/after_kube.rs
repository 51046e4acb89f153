//! The Kubernetes half of the after-steps, in kubeadm's recovery order: wait for every Node to
//! report Ready (those that do not are named, the promotion goes on), rollout-restart the
//! workloads, delete the pods that cache the old cluster's state (kube-proxy, controller
//! manager, scheduler).

use std::time::Duration;

use chrono::Utc;
use etcd_dr_core::{AfterAction, AfterOutcome, AfterResult, ALL_TARGETS};
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

    /// The record's results: every Node Ready as one `done`, else a `warning` per Node that
    /// is not.
    pub fn results(&self, timeout: Duration) -> Vec<AfterResult> {
        let result = |target: &str, outcome| {
            AfterResult::new(AfterAction::NodesReady, target, outcome).on("nodes")
        };
        match self {
            Self::All(_) => {
                vec![result(ALL_TARGETS, AfterOutcome::Done).saying(self.describe(timeout))]
            }
            Self::NotReady(names, _) => names
                .iter()
                .map(|name| {
                    result(name, AfterOutcome::Warning).saying(format!(
                        "not Ready after {}",
                        humantime::format_duration(timeout)
                    ))
                })
                .collect(),
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

/// What the workload steps did: one result per object restarted or pod deleted (or per list
/// that failed, per selector that matched nothing), and the lines of the step's detail: one
/// per kind and selector in `done`, each failure in `errors`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadResults {
    /// Per object.
    pub results: Vec<AfterResult>,
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
    let mut out = WorkloadResults::default();
    let now = Utc::now();
    for kind in &after.rollout_restart {
        progress(format!("rollout restart of {kind}"));
        let result = |target: &str, outcome| {
            AfterResult::new(AfterAction::RolloutRestart, target, outcome).on(kind.as_str())
        };
        match kube.rollout_restart(kind, now).await {
            Ok(report) => {
                out.done.push(format!(
                    "{} {kind} restarted{}",
                    report.restarted.len(),
                    if report.failed.is_empty() {
                        String::new()
                    } else {
                        format!(", {} failed", report.failed.len())
                    }
                ));
                out.results.extend(
                    report
                        .restarted
                        .iter()
                        .map(|key| result(key, AfterOutcome::Done)),
                );
                for (key, why) in report.failed {
                    out.errors.push(format!("{kind} {key}: {why}"));
                    out.results
                        .push(result(&key, AfterOutcome::Failed).saying(why));
                }
            }
            Err(error) => {
                out.errors.push(error.to_string());
                out.results
                    .push(result(ALL_TARGETS, AfterOutcome::Failed).saying(error.to_string()));
            }
        }
    }
    for pods in &after.delete_pods {
        progress(format!(
            "deleting pods {} in {}",
            pods.label_selector, pods.namespace
        ));
        let result = |target: &str, outcome| {
            AfterResult::new(AfterAction::PodDelete, target, outcome)
                .on("pods")
                .saying(format!("label {}", pods.label_selector))
        };
        match kube.delete_pods(pods).await {
            Ok(names) => {
                out.done.push(format!(
                    "{} pod(s) {} deleted in {}",
                    names.len(),
                    pods.label_selector,
                    pods.namespace
                ));
                if names.is_empty() {
                    out.results.push(
                        result(
                            &format!("{}/{ALL_TARGETS}", pods.namespace),
                            AfterOutcome::Skipped,
                        )
                        .saying(format!("no pod with label {}", pods.label_selector)),
                    );
                }
                out.results
                    .extend(names.iter().map(|name| result(name, AfterOutcome::Done)));
            }
            Err(error) => {
                out.errors.push(error.to_string());
                out.results.push(
                    result(
                        &format!("{}/{ALL_TARGETS}", pods.namespace),
                        AfterOutcome::Failed,
                    )
                    .saying(format!("label {}: {error}", pods.label_selector)),
                );
            }
        }
    }
    out
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
        let all = NodesReady::All(5).results(timeout);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].target, ALL_TARGETS);
        assert_eq!(all[0].outcome, AfterOutcome::Done);
        assert_eq!(all[0].detail.as_deref(), Some("every Node Ready (5)"));
        let some = NodesReady::NotReady(vec!["w1".into(), "w9".into()], 5).results(timeout);
        assert_eq!(
            some.iter()
                .map(|r| (r.target.as_str(), r.outcome, r.resource.as_deref()))
                .collect::<Vec<_>>(),
            [
                ("w1", AfterOutcome::Warning, Some("nodes")),
                ("w9", AfterOutcome::Warning, Some("nodes"))
            ]
        );
        assert_eq!(some[0].detail.as_deref(), Some("not Ready after 5m"));
    }
}
