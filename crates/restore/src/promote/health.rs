//! The health step: the restored etcd (every member, one leader, the revision above the bump),
//! then the API server's `/readyz`.

use std::time::Duration;

use etcd_dr_core::{PromotionPlan, StepName};
use tokio_util::sync::CancellationToken;

use super::promoter::Promoter;
use crate::{wait_healthy, KubeClient, PromoteError, PromotionTracker};

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
            tracker.detail(
                step,
                format!("{detail}; waiting for the API server's /readyz"),
            );
            self.wait_api_ready(kube, cancel).await?;
            detail.push_str("; API server ready");
        }
        tracker.done(step, detail);
        Ok(())
    }

    async fn wait_api_ready(
        &self,
        kube: &KubeClient,
        cancel: &CancellationToken,
    ) -> Result<(), PromoteError> {
        let deadline = tokio::time::Instant::now() + self.config.health_timeout;
        loop {
            let error = match kube.readyz().await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(error);
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(PromoteError::Cancelled),
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}
