//! The steps before any node changes: the switchover handshake, choosing the snapshot, the
//! fence, and the verified local copy of the snapshot.

use chrono::Utc;
use etcd_dr_core::{
    PromotionMarker, PromotionMode, PromotionRecord, PromotionRequest, SnapshotId,
    SnapshotManifest, StepName,
};
use etcd_dr_transport::{
    read_promotion_marker, resolve_snapshot, write_promotion_marker, SnapshotSelector,
};
use tokio_util::sync::CancellationToken;

use super::promoter::Promoter;
use crate::{
    local_snapshot, request_final_snapshot, LocalSnapshot, PromoteError, PromotionTracker,
};

impl Promoter {
    /// A real switchover asks the primary for a final snapshot and returns its id; every other
    /// run skips the step (`None`).
    pub(super) async fn switchover(
        &self,
        record: &PromotionRecord,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> Result<Option<SnapshotId>, PromoteError> {
        let step = StepName::Switchover;
        let request = &record.request;
        match (request.mode, request.dry_run) {
            (PromotionMode::Switchover, false) => {
                tracker.start(step, "asking the primary for a final snapshot".to_string());
                let snapshot = request_final_snapshot(
                    &self.store,
                    &self.layout,
                    &record.id,
                    &record.requested_by,
                    self.config.switchover_timeout,
                    |waited| {
                        tracker.detail(
                            step,
                            format!(
                                "waiting for the primary's final snapshot ({}s)",
                                waited.as_secs()
                            ),
                        )
                    },
                    cancel,
                )
                .await?;
                tracker.done(
                    step,
                    format!("the primary committed {snapshot} and stopped shipping"),
                );
                Ok(Some(snapshot))
            }
            (PromotionMode::Switchover, true) => {
                tracker.skipped(
                    step,
                    "dry run: the primary is not asked; the plan uses the newest snapshot",
                );
                Ok(None)
            }
            (PromotionMode::InPlace, _) => {
                tracker.skipped(
                    step,
                    "in place: this cluster goes back to one of its own snapshots",
                );
                Ok(None)
            }
            (PromotionMode::Failover, _) => {
                tracker.skipped(step, "failover");
                Ok(None)
            }
        }
    }

    /// Resolves the snapshot to restore: the switchover's final one, the newest for a dry-run
    /// switchover, else what the request names (`latest` or an id).
    pub(super) async fn select(
        &self,
        request: &PromotionRequest,
        final_snapshot: Option<SnapshotId>,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> Result<SnapshotManifest, PromoteError> {
        let step = StepName::Select;
        let selector = match (final_snapshot, request.mode) {
            (Some(id), _) => SnapshotSelector::Id(id),
            (None, PromotionMode::Switchover) => SnapshotSelector::Latest,
            (None, _) => request.snapshot.parse::<SnapshotSelector>()?,
        };
        tracker.start(step, None);
        let manifest =
            resolve_snapshot(&self.store, &self.layout, &self.trust, &selector, cancel).await?;
        tracker.update(|r| r.snapshot = Some(manifest.id.clone()));
        tracker.done(
            step,
            format!(
                "snapshot {} (etcd {}, revision {}, taken {})",
                manifest.id, manifest.etcd.version, manifest.etcd.revision, manifest.created_at
            ),
        );
        Ok(manifest)
    }

    /// Writes the promotion marker (replacing one with `force`): a primary that sees it stops
    /// shipping. Skipped in place (the cluster stays the primary of its prefix) and for a dry run.
    pub(super) async fn fence(
        &self,
        record: &PromotionRecord,
        manifest: &SnapshotManifest,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> Result<(), PromoteError> {
        let step = StepName::Fence;
        let request = &record.request;
        if request.mode == PromotionMode::InPlace {
            tracker.skipped(
                step,
                "in place: no promotion marker; this cluster stays the primary of its prefix and keeps shipping",
            );
            return Ok(());
        }
        if request.dry_run {
            tracker.skipped(step, "dry run: nothing is written");
            return Ok(());
        }
        tracker.start(step, None);
        let replaces = if request.force {
            read_promotion_marker(&self.store, &self.layout, cancel)
                .await
                .ok()
                .flatten()
                .map(|m| m.promotion_id)
        } else {
            None
        };
        let marker = PromotionMarker {
            promotion_id: record.id.clone(),
            mode: request.mode,
            snapshot: manifest.id.clone(),
            requested_by: record.requested_by.clone(),
            fenced_at: Utc::now(),
            replaces,
        };
        write_promotion_marker(&self.store, &self.layout, &marker, request.force, cancel).await?;
        tracing::warn!(snapshot = %manifest.id, "fenced: the primary stops shipping into this prefix");
        tracker.done(
            step,
            "promotion marker written; a primary that sees it stops shipping".to_string(),
        );
        Ok(())
    }

    /// The snapshot on local disk, checked against its manifest: the pre-staged copy when one
    /// matches, else downloaded.
    pub(super) async fn verify(
        &self,
        manifest: &SnapshotManifest,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> Result<LocalSnapshot, PromoteError> {
        let step = StepName::Verify;
        tracker.start(step, None);
        let download = tracker.watch_transfer(step, None, manifest.raw.size);
        let local = local_snapshot(
            &self.store,
            &self.layout,
            manifest,
            &self.identities,
            self.prestage_dir.as_deref(),
            &self.config.work_dir,
            download.counter(),
            cancel,
        )
        .await;
        drop(download);
        let local = local?;
        tracker.done(
            step,
            format!(
                "{} ({} bytes, SHA-256 matches the manifest{})",
                local.path.display(),
                local.size,
                if local.prestaged {
                    ", pre-staged"
                } else {
                    ", downloaded and checked"
                }
            ),
        );
        Ok(local)
    }
}
