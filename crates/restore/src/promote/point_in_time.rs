//! A promotion or in-place restore to a point in history (`at`): planned in the select step
//! (target revision, base snapshot, generation of segments), replayed in the verify step into a
//! plain `.db` at exactly the target, which the rest of the promotion restores like any
//! snapshot.

use std::sync::Arc;
use std::time::Duration;

use etcd_dr_core::{create_private_dir, ReplaySummary, RestorePoint, StepName};
use etcd_dr_replication::{
    plan_restore, replay_generation, ReplayProgress, ReplayRequest, ReplayStage, ReplicationLayout,
    RestorePlan, RevisionSource,
};
use tokio_util::sync::CancellationToken;

use super::promoter::Promoter;
use crate::{LocalSnapshot, PromoteError, PromotionTracker};

/// How often a running replay's progress is written into the verify step's detail.
const REPLAY_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

impl Promoter {
    fn revision_source(&self) -> RevisionSource {
        RevisionSource {
            store: self.store.clone(),
            snapshots: self.layout.clone(),
            segments: ReplicationLayout::beside(&self.layout),
            identities: self.identities.clone(),
            trust: self.trust.clone(),
            engine: self.config.replay.engine(),
        }
    }

    /// Resolves `point` and chooses the base snapshot and generation; records them.
    pub(super) async fn plan_point(
        &self,
        point: RestorePoint,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> Result<RestorePlan, PromoteError> {
        let plan = plan_restore(&self.revision_source(), point, cancel).await?;
        tracker.update(|r| {
            r.replay = Some(ReplaySummary {
                target_revision: plan.target,
                base_snapshot: plan.base.id.to_string(),
                base_revision: plan.base.etcd.revision,
                generation: plan
                    .generation
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                segments_used: 0,
                first_segment: None,
                last_segment: None,
                replayed_revisions: 0,
                replay_seconds: 0.0,
                engine: String::new(),
            })
        });
        Ok(plan)
    }

    /// Replays the plan's generation onto the verified `base` up to the target, into
    /// `<work_dir>/<base id>-at-r<target>.db`; the base itself when the target is its revision.
    pub(super) async fn replay_point(
        &self,
        plan: &RestorePlan,
        base: &LocalSnapshot,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> Result<LocalSnapshot, PromoteError> {
        let Some(generation) = &plan.generation else {
            return Ok(base.clone());
        };
        let work_dir = &self.config.work_dir;
        create_private_dir(work_dir)
            .map_err(|e| PromoteError::local_io("creating", work_dir.display(), e))?;
        let output = work_dir.join(format!("{}-at-r{}.db", plan.base.id, plan.target));
        // A leftover of an earlier attempt at the same point is ours and never trusted.
        match tokio::fs::remove_file(&output).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PromoteError::local_io("removing", output.display(), e)),
        }
        let replaying = format!(
            "replaying generation {generation} onto snapshot {} up to revision {}",
            plan.base.id, plan.target
        );
        tracker.detail(StepName::Verify, replaying.clone());
        let progress = Arc::new(ReplayProgress::default());
        let request = ReplayRequest {
            base_db: base.path.clone(),
            target_revision: plan.target,
            output_db: output.clone(),
            work_dir: work_dir.clone(),
            base_cluster_id: plan.base_cluster_id(),
            progress: Some(progress.clone()),
        };
        let source = self.revision_source();
        let replay = replay_generation(&source, generation, &request, cancel);
        tokio::pin!(replay);
        // The step's detail says how far the replay is, for status, the CLI and the logs.
        let mut ticks = tokio::time::interval(REPLAY_PROGRESS_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let report = loop {
            tokio::select! {
                report = &mut replay => break report?,
                _ = ticks.tick() => {
                    if let ReplayStage::Replaying { done, total } = progress.stage() {
                        tracker.detail(
                            StepName::Verify,
                            format!("{replaying}: {done} of {total} revisions"),
                        );
                    }
                }
            }
        };
        tracker.update(|r| {
            if let Some(summary) = r.replay.as_mut() {
                summary.base_revision = report.base_revision;
                summary.segments_used = report.segments_read;
                summary.first_segment = report.first_segment.clone();
                summary.last_segment = report.last_segment.clone();
                summary.replayed_revisions = report.replayed_revisions;
                summary.replay_seconds = report.replay_time.as_secs_f64();
                summary.engine = report.engine.to_string();
            }
        });
        Ok(LocalSnapshot {
            path: output,
            size: report.snapshot_bytes,
            prestaged: false,
            created_work_dir: false,
        })
    }
}
