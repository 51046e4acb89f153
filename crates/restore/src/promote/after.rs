//! The after-steps: kubelet restarted on the workers, workloads rollout-restarted, stale pods
//! deleted. Their failures are reported as warnings; the restore stands.

use chrono::Utc;
use etcd_dr_core::{StepName, StepState};
use etcd_dr_nodes::Node;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::promoter::Promoter;
use crate::PromotionTracker;

impl Promoter {
    /// Runs every configured after-step; never fails the promotion.
    pub(super) async fn after(&self, tracker: &PromotionTracker, cancel: &CancellationToken) {
        let step = StepName::After;
        let after = &self.config.after;
        tracker.start(step, None);
        let mut done = Vec::new();
        let mut errors = Vec::new();
        if after.restart_workers && !self.workers.is_empty() {
            let names: Vec<&str> = self.workers.iter().map(Node::name).collect();
            tracker.add_nodes(step, &names);
            join_all(self.workers.iter().map(|node| async {
                tracker.node_start(step, node.name(), "restarting kubelet");
                match node
                    .command(after.worker_restart_command.iter().cloned())
                    .run(cancel)
                    .await
                {
                    Ok(_) => tracker.node_done(step, node.name(), "kubelet restarted".to_string()),
                    Err(error) => tracker.node_failed(step, node.name(), error),
                }
            }))
            .await;
            let failed = tracker
                .snapshot()
                .step(step)
                .nodes
                .iter()
                .filter(|n| n.progress.state == StepState::Failed)
                .count();
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
            None => done.push("no [promote.kubernetes]: workloads not restarted".into()),
            Some(kube) => {
                let now = Utc::now();
                for kind in &after.rollout_restart {
                    tracker.detail(step, format!("rollout restart of {kind}"));
                    match kube.rollout_restart(kind, now).await {
                        Ok(count) => done.push(format!("{count} {kind} restarted")),
                        Err(error) => errors.push(error.to_string()),
                    }
                }
                for pods in &after.delete_pods {
                    match kube.delete_pods(pods).await {
                        Ok(count) => done.push(format!(
                            "{count} pod(s) {} deleted in {}",
                            pods.label_selector, pods.namespace
                        )),
                        Err(error) => errors.push(error.to_string()),
                    }
                }
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
