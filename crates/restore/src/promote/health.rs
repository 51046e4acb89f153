//! The health step: the restored etcd (every member, one leader, the revision above the bump),
//! then `/readyz` and a list on every control-plane API server.

use etcd_dr_core::{PromotionPlan, StepName};
use tokio_util::sync::CancellationToken;

use super::promoter::Promoter;
use crate::{wait_api_ready, wait_healthy, PromoteError, PromotionTracker};

impl Promoter {
    /// Waits for the restored cluster; an error rolls every node back.
    pub(super) async fn health(
        &self,
        plan: &PromotionPlan,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> Result<(), PromoteError> {
        let step = StepName::Health;
        tracker.start(step, "waiting for every etcd member".to_string());
        let healthy = wait_healthy(
            &self.etcd,
            &plan.member_names(),
            plan.expected_min_revision,
            self.config.health_timeout,
            |why| tracker.detail(step, format!("waiting: {why}")),
            cancel,
        )
        .await?;
        let mut detail = format!(
            "etcd healthy: members {}, leader {}, revision {}",
            healthy.members.join(", "),
            healthy.leader,
            healthy.revision
        );
        if let Some(kube) = &self.kube {
            let waiting = |why: &str| tracker.detail(step, format!("{detail}; waiting: {why}"));
            let servers = wait_api_ready(kube, self.config.health_timeout, waiting, cancel).await?;
            detail.push_str(&format!(
                "; kube-apiserver ready and serving lists: {}",
                servers.join(", ")
            ));
        }
        tracker.done(step, detail);
        Ok(())
    }
}
