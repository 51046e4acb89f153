//! The restore on every node at once (one node failing stops the others), and the rollback of
//! every node when the restore or the health check fails.

use etcd_dr_core::{PromotionPlan, PromotionState, StepName, StepState};
use etcd_dr_nodes::NodeError;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::front_end::FrontEndChanges;
use super::promoter::Promoter;
use crate::node_ops::{restore_node, rollback_node};
use crate::{wait_healthy, LocalSnapshot, PromoteError, PromotionTracker, ServiceAccountKeys};

impl Promoter {
    /// Restores every node of the plan at once.
    pub(super) async fn restore(
        &self,
        plan: &PromotionPlan,
        local: &LocalSnapshot,
        keys: Option<&ServiceAccountKeys>,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> Result<(), PromoteError> {
        let step = StepName::Restore;
        tracker.start(step, None);
        // One node failing stops the others early: everything is rolled back anyway.
        let abort = cancel.child_token();
        let results = join_all(plan.nodes.iter().map(|node_plan| {
            let abort = abort.clone();
            async move {
                let node = self.control_plane_node(&node_plan.node).ok_or_else(|| {
                    (
                        node_plan.node.clone(),
                        PromoteError::UnknownNode {
                            node: node_plan.node.clone(),
                        },
                    )
                })?;
                tracker.node_start(step, node.name(), "starting");
                let result = restore_node(
                    node,
                    node_plan,
                    plan,
                    &self.config,
                    &local.path,
                    local.size,
                    keys,
                    tracker,
                    &abort,
                )
                .await;
                match &result {
                    Ok(()) => {
                        tracker.node_done(step, node.name(), "restored and started".to_string())
                    }
                    Err(_) if abort.is_cancelled() && !cancel.is_cancelled() => {
                        tracker.node_failed(step, node.name(), "stopped: another node failed")
                    }
                    Err(error) => {
                        tracing::error!(node = node.name(), %error, "restore failed on node");
                        tracker.node_failed(step, node.name(), error);
                        abort.cancel();
                    }
                }
                result.map_err(|e| (node.name().to_string(), e))
            }
        }))
        .await;
        let failures: Vec<String> = results
            .into_iter()
            .filter_map(Result::err)
            // Nodes stopped because another failed are not failures of their own.
            .filter(|(_, e)| {
                !matches!(
                    e,
                    PromoteError::Cancelled | PromoteError::Node(NodeError::Cancelled { .. })
                )
            })
            .map(|(node, e)| format!("{node}: {e}"))
            .collect();
        if failures.is_empty() && !abort.is_cancelled() {
            tracker.done(step, format!("{} node(s) restored", plan.nodes.len()));
            Ok(())
        } else if failures.is_empty() {
            Err(PromoteError::Cancelled)
        } else {
            Err(PromoteError::NodesFailed { failures })
        }
    }

    /// Records the failure of `step`, puts every node (and every hosts file the front-end step
    /// changed) back and ends the promotion.
    pub(super) async fn roll_back(
        &self,
        step: StepName,
        error: PromoteError,
        plan: &PromotionPlan,
        front_end: &FrontEndChanges,
        tracker: &PromotionTracker,
    ) -> PromotionState {
        let text = error.to_string();
        tracing::error!(step = step.as_str(), error = %text, "step failed; rolling every node back");
        tracker.failed(step, &text);
        tracker.start(
            StepName::Rollback,
            "putting every node's old data dir and files back".to_string(),
        );
        let names: Vec<&str> = plan.nodes.iter().map(|n| n.node.as_str()).collect();
        tracker.add_nodes(StepName::Rollback, &names);
        // The rollback runs to its end even during shutdown: a half-restored node is worse.
        let cancel = CancellationToken::new();
        let results = join_all(plan.nodes.iter().map(|node_plan| {
            let cancel = cancel.clone();
            async move {
                let Some(node) = self.control_plane_node(&node_plan.node) else {
                    return false;
                };
                tracker.node_start(StepName::Rollback, node.name(), "putting back");
                match rollback_node(node, node_plan, &self.config, &cancel).await {
                    Ok(detail) => {
                        tracker.node_done(StepName::Rollback, node.name(), detail);
                        tracker.node_state(StepName::Restore, node.name(), StepState::RolledBack);
                        true
                    }
                    Err(error) => {
                        tracing::error!(node = node.name(), %error, "rollback failed on node");
                        tracker.node_failed(StepName::Rollback, node.name(), error);
                        false
                    }
                }
            }
        }))
        .await;
        let hosts_failed = self.put_front_end_back(front_end, tracker).await;
        let failed: Vec<&str> = plan
            .nodes
            .iter()
            .zip(&results)
            .filter(|(_, ok)| !**ok)
            .map(|(n, _)| n.node.as_str())
            .chain(hosts_failed.iter().map(|n| n.as_str()))
            .collect();
        if step != StepName::Restore {
            tracker.set_state(StepName::Restore, StepState::RolledBack);
        }
        if !failed.is_empty() {
            tracker.failed(
                StepName::Rollback,
                format!("could not put back {}: see each node; the old data is in <data dir>/etcd-dr-<id>/old", failed.join(", ")),
            );
            tracker.finish(
                PromotionState::RollbackFailed,
                Some(format!(
                    "{}: {text}; the rollback failed on {}",
                    step.as_str(),
                    failed.join(", ")
                )),
            );
            return PromotionState::RollbackFailed;
        }
        // The old cluster should come back as it was; say so if it does not.
        let back = wait_healthy(
            &self.etcd,
            &[],
            0,
            self.config.health_timeout,
            |_| {},
            &cancel,
        )
        .await;
        let detail = match back {
            Ok(healthy) => format!(
                "every node put back; the old cluster is healthy (leader {}, revision {})",
                healthy.leader, healthy.revision
            ),
            Err(error) => {
                tracker.update(|r| r.warnings.push(format!("after the rollback: {error}")));
                format!("every node put back, but the old cluster is not healthy: {error}")
            }
        };
        tracker.done(StepName::Rollback, detail);
        tracker.finish(
            PromotionState::RolledBack,
            Some(format!("{}: {text}", step.as_str())),
        );
        PromotionState::RolledBack
    }
}
