//! The after-steps: every Node Ready (names of those that are not become warnings), kubelet restarted on the workers, workloads rollout-restarted, stale pods
//! deleted. Their failures are reported as warnings; the restore stands.

use etcd_dr_core::{AfterAction, AfterOutcome, AfterResult, StepName, ALL_TARGETS};
use etcd_dr_nodes::Node;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::promoter::Promoter;
use crate::after_kube::{self, NodesReady};
use crate::PromotionTracker;

impl Promoter {
    /// Runs every configured after-step; never fails the promotion.
    pub(super) async fn after(&self, tracker: &PromotionTracker, cancel: &CancellationToken) {
        let step = StepName::After;
        let after = &self.config.after;
        tracker.start(step, None);
        let mut done = Vec::new();
        let mut errors = Vec::new();
        let record = |results: Vec<AfterResult>| {
            tracker.update(|r| r.after_results.extend(results));
        };
        const NO_KUBE: &str = "no [promote.kubernetes]";
        match &self.kube {
            None => record(vec![AfterResult::new(
                AfterAction::NodesReady,
                ALL_TARGETS,
                AfterOutcome::Skipped,
            )
            .on("nodes")
            .saying(NO_KUBE)]),
            Some(kube) => {
                tracker.detail(step, "waiting for every Node to be Ready");
                let timeout = after.nodes_ready_timeout;
                match after_kube::wait_nodes_ready(kube, timeout, cancel).await {
                    Ok(ready @ NodesReady::All(_)) => {
                        done.push(ready.describe(timeout));
                        record(ready.results(timeout));
                    }
                    Ok(ready) => {
                        let text = ready.describe(timeout);
                        tracing::warn!(nodes = %text, "Nodes not Ready; the promotion goes on");
                        tracker.update(|r| r.warnings.push(text.clone()));
                        done.push(text);
                        record(ready.results(timeout));
                    }
                    Err(error) => {
                        let text = format!("waiting for the Nodes: {error}");
                        record(vec![AfterResult::new(
                            AfterAction::NodesReady,
                            ALL_TARGETS,
                            AfterOutcome::Failed,
                        )
                        .on("nodes")
                        .saying(text.clone())]);
                        errors.push(text);
                    }
                }
            }
        }
        let kubelet =
            |target: &str, outcome| AfterResult::new(AfterAction::KubeletRestart, target, outcome);
        if !after.restart_workers {
            record(vec![kubelet(ALL_TARGETS, AfterOutcome::Skipped)
                .saying("[promote.after] restart_workers = false")]);
        } else if self.workers.is_empty() {
            record(vec![
                kubelet(ALL_TARGETS, AfterOutcome::Skipped).saying("no workers in [nodes]")
            ]);
        } else {
            let names: Vec<&str> = self.workers.iter().map(Node::name).collect();
            tracker.add_nodes(step, &names);
            let results = join_all(self.workers.iter().map(|node| async {
                tracker.node_start(step, node.name(), "restarting kubelet");
                match node
                    .command(after.worker_restart_command.iter().cloned())
                    .run(cancel)
                    .await
                {
                    Ok(_) => {
                        tracker.node_done(step, node.name(), "kubelet restarted".to_string());
                        kubelet(node.name(), AfterOutcome::Done)
                    }
                    Err(error) => {
                        let result =
                            kubelet(node.name(), AfterOutcome::Failed).saying(error.to_string());
                        tracker.node_failed(step, node.name(), error);
                        result
                    }
                }
            }))
            .await;
            let failed = results
                .iter()
                .filter(|r| r.outcome == AfterOutcome::Failed)
                .count();
            record(results);
            if failed > 0 {
                errors.push(format!("kubelet restart failed on {failed} worker(s)"));
            } else {
                done.push(format!(
                    "kubelet restarted on {} worker(s)",
                    self.workers.len()
                ));
            }
        }
        match &self.kube {
            None => {
                done.push(format!("{NO_KUBE}: workloads not restarted"));
                record(
                    after
                        .rollout_restart
                        .iter()
                        .map(|kind| {
                            AfterResult::new(
                                AfterAction::RolloutRestart,
                                ALL_TARGETS,
                                AfterOutcome::Skipped,
                            )
                            .on(kind.as_str())
                            .saying(NO_KUBE)
                        })
                        .collect(),
                );
                record(
                    after
                        .delete_pods
                        .iter()
                        .map(|pods| {
                            AfterResult::new(
                                AfterAction::PodDelete,
                                format!("{}/{ALL_TARGETS}", pods.namespace),
                                AfterOutcome::Skipped,
                            )
                            .on("pods")
                            .saying(format!("label {}: {NO_KUBE}", pods.label_selector))
                        })
                        .collect(),
                );
            }
            Some(kube) => {
                let progress = |what: String| tracker.detail(step, what);
                let results = after_kube::restart_workloads(kube, after, progress).await;
                record(results.results);
                done.extend(results.done);
                errors.extend(results.errors);
            }
        }
        if errors.is_empty() {
            tracker.done(step, done.join("; "));
        } else {
            let text = errors.join("; ");
            tracing::warn!(errors = %text, "after-steps failed; the restore stands");
            tracker.failed(step, &text);
            tracker.update(|r| {
                r.warnings.push(format!(
                    "after-steps failed (the restore stands; do them by hand): {text}"
                ))
            });
        }
    }
}
