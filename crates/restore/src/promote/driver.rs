//! The state machine: admission (fence, restore lock), the steps in order, each recorded in the
//! tracker, the rollback of every node when a step after the restore began fails, and the
//! restore lock given back whatever the outcome.

use chrono::Utc;
use etcd_dr_core::{PromotionState, RestoreLock, StepName};
use etcd_dr_transport::{release_restore_lock, restore_lock_path};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::front_end::FrontEndChanges;
use super::promoter::Promoter;
use crate::{admit, take_restore_lock, HookPhase, PromoteError, PromotionTracker};

/// Records the failure of `step` before any node changed and ends the promotion.
fn fail(tracker: &PromotionTracker, step: StepName, error: PromoteError) -> PromotionState {
    let text = error.to_string();
    tracing::error!(step = step.as_str(), error = %text, "step failed");
    tracker.failed(step, &text);
    tracker.finish(
        PromotionState::Failed,
        Some(format!("{}: {text}", step.as_str())),
    );
    PromotionState::Failed
}

impl Promoter {
    /// Runs the promotion the tracker describes to its end and returns how it ended. Every
    /// step, node, timing and error is in the tracker.
    pub async fn run(
        &self,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> PromotionState {
        let record = tracker.snapshot();
        let span = tracing::info_span!(
            "promote",
            id = %record.id,
            mode = record.request.mode.as_str(),
            dry_run = record.request.dry_run
        );
        async {
            tracing::info!(snapshot = %record.request.snapshot, "promotion started");
            let state = self.run_admitted(tracker, cancel).await;
            let record = tracker.snapshot();
            match state {
                PromotionState::Succeeded | PromotionState::Planned => tracing::info!(
                    state = state.as_str(),
                    seconds = record.duration_seconds,
                    "promotion finished"
                ),
                _ => tracing::error!(
                    state = state.as_str(),
                    error = record.error.as_deref().unwrap_or(""),
                    "promotion failed"
                ),
            }
            state
        }
        .instrument(span)
        .await
    }

    /// Refuses a fenced prefix or a held restore lock (before the primary is asked for
    /// anything), takes the lock (not for a dry run), runs the steps and gives the lock back,
    /// whatever the outcome.
    async fn run_admitted(
        &self,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> PromotionState {
        let record = tracker.snapshot();
        let request = record.request;
        match admit(&self.store, &self.layout, &request, cancel).await {
            Ok(admission) => tracker.update(|r| r.warnings.extend(admission.warnings)),
            Err(error) => return fail(tracker, StepName::Fence, error.into()),
        }
        if request.dry_run {
            return self.steps(tracker, cancel).await;
        }
        let lock = RestoreLock {
            promotion_id: record.id.clone(),
            mode: request.mode,
            requested_by: record.requested_by,
            locked_at: Utc::now(),
        };
        if let Err(error) =
            take_restore_lock(&self.store, &self.layout, &lock, request.force, cancel).await
        {
            return fail(tracker, StepName::Fence, error.into());
        }
        let state = self.steps(tracker, cancel).await;
        // Given back even when the run was cancelled (shutdown): never on `cancel`.
        let release = CancellationToken::new();
        match release_restore_lock(&self.store, &self.layout, &record.id, &release).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("another run took the restore lock over; left to it"),
            Err(error) => {
                let text = format!(
                    "could not remove the restore lock `{}` ({error}); delete it before the next restore or promotion, or run that with force",
                    restore_lock_path(&self.layout)
                );
                tracing::warn!("{text}");
                tracker.update(|r| r.warnings.push(text));
            }
        }
        state
    }

    /// The steps themselves, from the switchover to the `after` hooks (and the rollback).
    async fn steps(
        &self,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> PromotionState {
        let record = tracker.snapshot();
        let final_snapshot = match self.switchover(&record, tracker, cancel).await {
            Ok(found) => found,
            Err(error) => return fail(tracker, StepName::Switchover, error),
        };
        let manifest = match self
            .select(&record.request, final_snapshot, tracker, cancel)
            .await
        {
            Ok(manifest) => manifest,
            Err(error) => return fail(tracker, StepName::Select, error),
        };
        if let Err(error) = self.fence(&record, &manifest, tracker, cancel).await {
            return fail(tracker, StepName::Fence, error);
        }
        let local = match self.verify(&manifest, tracker, cancel).await {
            Ok(local) => local,
            Err(error) => return fail(tracker, StepName::Verify, error),
        };
        // A dry run leaves no plain copy behind, however it ends.
        let _discard = record
            .request
            .dry_run
            .then(|| local.discard_on_drop())
            .flatten();
        let (plan, keys) = match self.preflight(&record.id, &manifest, tracker, cancel).await {
            Ok(found) => found,
            Err(error) => return fail(tracker, StepName::Preflight, error),
        };
        tracker.update(|r| {
            r.warnings.extend(plan.warnings.iter().cloned());
            r.plan = Some(plan.clone());
        });
        if record.request.dry_run {
            self.plan_hooks(HookPhase::Before, tracker);
            self.plan_front_end(&manifest, tracker);
            self.plan_hooks(HookPhase::After, tracker);
            tracker.finish(PromotionState::Planned, None);
            return PromotionState::Planned;
        }
        if let Err(error) = self
            .hooks(HookPhase::Before, &record, &manifest, tracker, cancel)
            .await
        {
            return fail(tracker, StepName::HooksBefore, error);
        }

        // From here on nodes change: a failure puts every node (and hosts file) back.
        let mut front_end = FrontEndChanges::default();
        if let Err(error) = self
            .restore(&plan, &local, keys.as_ref(), tracker, cancel)
            .await
        {
            return self
                .roll_back(StepName::Restore, error, &plan, &front_end, tracker)
                .await;
        }
        if let Err(error) = self
            .front_end(&manifest, &mut front_end, tracker, cancel)
            .await
        {
            return self
                .roll_back(StepName::FrontEnd, error, &plan, &front_end, tracker)
                .await;
        }
        if let Err(error) = self.health(&plan, tracker, cancel).await {
            return self
                .roll_back(StepName::Health, error, &plan, &front_end, tracker)
                .await;
        }

        // After-steps: failures are reported, the restore stands.
        self.after(tracker, cancel).await;
        if let Err(error) = self
            .hooks(HookPhase::After, &record, &manifest, tracker, cancel)
            .await
        {
            return self
                .roll_back(StepName::HooksAfter, error, &plan, &front_end, tracker)
                .await;
        }
        tracker.finish(PromotionState::Succeeded, None);
        PromotionState::Succeeded
    }
}
