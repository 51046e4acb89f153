//! The primary role: snapshots on the schedule (or on request), then retention.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use etcd_dr_control::{
    ActionError, Activity, RunningKind, RunningWork, ScheduleStatus, SnapshotSummary, Trigger,
};
use etcd_dr_core::SnapshotId;
use etcd_dr_scheduler::{Schedule, SnapshotError, SnapshotHooks, SnapshotOutcome};
use etcd_dr_transport::{
    apply_retention, list_snapshots, plan_verified_retention, sweep_upload_leftovers,
    TransportError,
};
use tokio::sync::oneshot;

use super::{generations, DaemonState};

/// Tells `POST /v1/snapshots` the id of the snapshot it started, or why none started.
pub type IdSender = oneshot::Sender<Result<SnapshotId, ActionError>>;

/// The expected time between two runs of `schedule`, for the lag alert.
pub fn expected_interval(schedule: &Schedule) -> Duration {
    let first = schedule.next_after(None, Utc::now());
    // Interval: first + interval. Cron: the slot after `first`.
    let second = schedule.next_after(Some(first), first + chrono::Duration::seconds(1));
    (second - first)
        .to_std()
        .unwrap_or(Duration::from_secs(900))
}

/// Reads what the store already holds, so status and metrics start from it.
pub async fn load_baseline(state: &DaemonState) {
    match list_snapshots(&state.store, &state.layout, &state.trust, &state.cancel).await {
        Ok(catalog) => {
            state.cache_catalog(&catalog).await;
            state.observe_catalog(&catalog);
            state.metrics.set_snapshots_stored(catalog.snapshots.len());
            if let Some(newest) = catalog.newest() {
                let summary = SnapshotSummary::from(newest);
                state.metrics.record_newest(&summary);
                state.update(|status| {
                    status.last_snapshot = Some(summary.clone());
                    // The primary checked every checksum while uploading it.
                    status.newest_verified = Some(summary);
                });
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot list the store at start-up; status starts empty");
        }
    }
}

/// Runs snapshots on the schedule until shutdown. Each run takes the snapshot lock, so a run
/// requested through the API meanwhile makes the scheduled one wait.
pub async fn run(state: &DaemonState, schedule: &Schedule) {
    let description = schedule.describe();
    let first_run = AtomicBool::new(true);
    etcd_dr_scheduler::run_schedule(
        schedule,
        &state.cancel,
        |at| {
            tracing::debug!(next_run = %at, "next snapshot planned");
            state.update(|status| {
                status.schedule = Some(ScheduleStatus {
                    description: description.clone(),
                    next_run: Some(at),
                })
            });
        },
        || async {
            let _guard = state.snapshot_lock.lock().await;
            // At start-up with replication on, a new generation's full snapshot may have just
            // been taken (before this first run, or while it waited for the lock): it serves
            // this run too.
            if first_run.swap(false, Ordering::Relaxed) {
                if let Some(snapshot) = state.snapshot_committed_since(state.started_at()) {
                    tracing::info!(id = %snapshot.id, "the first scheduled snapshot is skipped: {} was taken since start-up", snapshot.id);
                    return;
                }
            }
            let skip_unchanged = state.settings.schedule.skip_unchanged;
            snapshot_cycle(state, Trigger::Schedule, None, skip_unchanged, None).await;
        },
    )
    .await;
}

/// One snapshot (the caller holds the snapshot lock), then retention and a fresh count.
/// Returns the snapshot it committed. A fenced primary takes none. While it runs,
/// `POST /v1/snapshots` answers 409 naming it.
pub async fn snapshot_cycle(
    state: &DaemonState,
    trigger: Trigger,
    label: Option<String>,
    skip_unchanged: bool,
    id_sender: Option<IdSender>,
) -> Option<SnapshotSummary> {
    state.snapshot_run_started(trigger);
    let taken = snapshot_and_prune(state, trigger, label, skip_unchanged, id_sender).await;
    state.snapshot_run_ended();
    taken
}

async fn snapshot_and_prune(
    state: &DaemonState,
    trigger: Trigger,
    label: Option<String>,
    skip_unchanged: bool,
    id_sender: Option<IdSender>,
) -> Option<SnapshotSummary> {
    let Some(context) = &state.snapshots else {
        return None;
    };
    if let Some(reason) = state.fenced_reason() {
        tracing::info!(%reason, "fenced: no snapshot is shipped into this prefix");
        if let Some(sender) = id_sender {
            let _ = sender.send(Err(ActionError::Unsupported(format!(
                "fenced: {reason}; this primary no longer ships snapshots"
            ))));
        }
        return None;
    }
    let cancel = &state.cancel;
    state.begin(Activity::Snapshot, trigger, None);
    let id_sender = Mutex::new(id_sender);
    let send_id = |result: Result<SnapshotId, ActionError>| {
        if let Some(sender) = id_sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        {
            let _ = sender.send(result);
        }
    };
    let on_attempt = |id: &SnapshotId| {
        state.snapshot_run_attempt(id);
        state.update(|status| {
            if let Some(in_flight) = &mut status.in_flight {
                in_flight.id = Some(id.clone());
            }
        });
        send_id(Ok(id.clone()));
    };
    let capture_before = state.replication.capture_progress();
    let replication_generation = |revision| {
        generations::generation_of_snapshot(state, trigger, capture_before.as_ref(), revision)
    };
    let hooks = SnapshotHooks {
        on_attempt: &on_attempt,
        replication_generation: &replication_generation,
    };
    let result = context
        .take_snapshot(label, skip_unchanged, &state.progress, hooks, cancel)
        .await;
    // Before the run shows as finished: the next request lists the new snapshot.
    state.forget_catalog().await;
    state
        .metrics
        .add_uploaded_bytes(state.progress.stored_bytes.load(Ordering::Relaxed));
    state.finish();
    let taken;
    match result {
        Ok(SnapshotOutcome::Taken(manifest)) => {
            tracing::info!(id = %manifest.id, revision = manifest.etcd.revision, trigger = ?trigger, "snapshot stored");
            let summary = SnapshotSummary::from(manifest.as_ref());
            state.metrics.snapshot_taken(&summary);
            state.update(|status| {
                status.last_snapshot = Some(summary.clone());
                status.newest_verified = Some(summary.clone());
            });
            state.cycle_succeeded();
            taken = Some(summary);
        }
        Ok(SnapshotOutcome::Unchanged { revision, newest }) => {
            tracing::info!(revision, newest = %newest, "revision unchanged since the newest snapshot; skipped");
            state.metrics.snapshot_unchanged();
            state.cycle_succeeded();
            send_id(Err(ActionError::Failed(format!(
                "etcd's revision {revision} is that of snapshot {newest}; nothing to take"
            ))));
            return None;
        }
        Err(
            ref error @ SnapshotError::Transport(TransportError::ProducerBusy {
                ref host,
                pid,
                since,
                ..
            }),
        ) => {
            // Another producer (a CLI run, a second daemon) is shipping into this prefix: this
            // run refuses without writing anything; not a failure of this daemon.
            tracing::warn!(%error, trigger = ?trigger, "snapshot skipped");
            state.metrics.snapshot_skipped_busy();
            state.note_error(format!("snapshot skipped: {error}"));
            let running = RunningWork {
                kind: RunningKind::OtherProducer,
                id: None,
                since,
                holder: Some(format!("{host} (pid {pid})")),
            };
            send_id(Err(ActionError::AlreadyRunning {
                detail: format!("snapshot skipped: {error}"),
                running: Box::new(running),
            }));
            return None;
        }
        Err(SnapshotError::Transport(TransportError::AlreadyExists { id, .. })) => {
            // Another producer committed this very id (same second, same revision) first.
            tracing::info!(%id, "another producer committed this snapshot first; nothing was replaced");
            state.metrics.snapshot_unchanged();
            state.cycle_succeeded();
            send_id(Err(ActionError::Failed(format!(
                "snapshot {id} already exists; nothing was replaced"
            ))));
            return None;
        }
        Err(error) if cancel.is_cancelled() => {
            tracing::info!(%error, "snapshot interrupted by shutdown; its upload was aborted");
            send_id(Err(ActionError::Unavailable("shutting down".into())));
            return None;
        }
        Err(error) => {
            tracing::error!(%error, trigger = ?trigger, "snapshot failed");
            state.metrics.snapshot_failed();
            state.cycle_failed(format!("snapshot failed: {error}"));
            send_id(Err(ActionError::Failed(format!(
                "snapshot failed: {error}"
            ))));
            return None;
        }
    }
    // Retention is part of the run: /v1/status shows it in flight, so a trigger refused meanwhile
    // (409, "see in_flight") points at something there.
    state.begin(
        Activity::Retention,
        trigger,
        taken.as_ref().map(|s| s.id.clone()),
    );
    if let Err(error) = prune(state).await {
        tracing::error!(%error, "retention failed");
        state.note_error(format!("retention failed: {error}"));
    }
    state.finish();
    taken
}

/// Applies retention (keeping the newest snapshot that reads back intact) and refreshes the
/// stored count.
async fn prune(state: &DaemonState) -> anyhow::Result<()> {
    let catalog = list_snapshots(&state.store, &state.layout, &state.trust, &state.cancel).await?;
    state.cache_catalog(&catalog).await;
    state.observe_catalog(&catalog);
    let (plan, check) = plan_verified_retention(
        &state.store,
        &state.layout,
        &catalog,
        &state.settings.retention,
        Utc::now(),
        &state.cancel,
    )
    .await?;
    if let Some((id, detail)) = check.corrupt.first() {
        state.metrics.verify_failed();
        state.note_error(format!(
            "retention: snapshot {id} does not match its manifest ({detail}); kept {} and everything newer",
            check
                .newest_intact
                .as_ref()
                .map_or_else(|| "every snapshot".to_string(), |id| id.to_string())
        ));
    }
    sweep_leftovers(state).await;
    let mut kept = catalog;
    if !plan.is_empty() {
        apply_retention(&state.store, &state.layout, &plan, &state.cancel).await?;
        kept = list_snapshots(&state.store, &state.layout, &state.trust, &state.cancel).await?;
        state.cache_catalog(&kept).await;
    }
    state.metrics.set_snapshots_stored(kept.snapshots.len());
    // Segments go only once no kept snapshot can be their base.
    super::generations::prune_segments(state, &kept.snapshots).await
}

/// Removes upload leftovers older than the grace (pending multipart uploads, local staging
/// files), counting what went and what could not; never stops retention.
async fn sweep_leftovers(state: &DaemonState) {
    let swept = sweep_upload_leftovers(
        &state.store,
        &state.settings.store,
        &state.layout,
        state.settings.retention.incomplete_grace,
        &etcd_dr_scheduler::host_name(),
        &state.cancel,
    )
    .await;
    match swept {
        Ok(sweep) => {
            state
                .metrics
                .upload_leftovers_swept(sweep.removed.len(), sweep.failed.len());
            if let Some((name, error)) = sweep.failed.first() {
                state.note_error(format!(
                    "retention: {} upload leftover(s) could not be removed, first {name}: {error}",
                    sweep.failed.len()
                ));
            }
        }
        // An upload in progress is not a leftover: the next pass sweeps.
        Err(TransportError::ProducerBusy { .. } | TransportError::Cancelled) => {}
        Err(error) => {
            tracing::warn!(%error, "could not sweep upload leftovers");
            state.metrics.upload_leftovers_swept(0, 1);
            state.note_error(format!("retention: upload leftovers not swept: {error}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_dr_scheduler::ScheduleConfig;

    #[test]
    fn the_expected_interval_follows_the_schedule() {
        assert_eq!(
            expected_interval(&Schedule::every(Duration::from_secs(900))),
            Duration::from_secs(900)
        );
        let cron = ScheduleConfig {
            interval: None,
            cron: Some("*/5 * * * *".into()),
            ..ScheduleConfig::default()
        };
        assert_eq!(
            expected_interval(&cron.schedule().unwrap()),
            Duration::from_secs(300)
        );
    }
}
