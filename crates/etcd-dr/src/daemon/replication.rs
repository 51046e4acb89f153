//! The primary's continuous replication: the capture (`etcd_dr_replication::ContinuousCapture`)
//! run while not fenced, its full snapshots taken through the daemon's snapshot cycle (one at a
//! time with the schedule), its progress shown in status and metrics, and its heartbeat.
//! What the snapshot cycle needs of it (the generation a snapshot names, segment retention)
//! is in `generations`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use etcd_dr_control::{LastError, ReplicationStatus, SnapshotSummary, Trigger};
use etcd_dr_core::SnapshotManifest;
use etcd_dr_replication::{
    keep_heartbeat, restorable_revision, BaseCandidate, CaptureHost, CaptureProgress,
    ContinuousCapture, GenerationBreak, GenerationId, ReplicationError, SegmentSigner,
    SegmentStore,
};
use etcd_dr_scheduler::EtcdSource;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::generations::layout;
use super::{primary, DaemonState};

/// How often a capture checks whether a promotion fenced this primary.
const FENCE_LOOK_INTERVAL: Duration = Duration::from_millis(100);

/// How long after start-up a new generation may start from the schedule's first snapshot
/// instead of its own: well inside the 5 minutes of history kube-apiserver's compaction leaves.
const START_UP_SNAPSHOT_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// What status shows of replication, kept by the loops; the primary's capture progress is
/// read at each status request, so it is never stale.
#[derive(Default)]
pub struct ReplicationView {
    recorded: Mutex<Option<ReplicationStatus>>,
    capture: Mutex<Option<watch::Receiver<CaptureProgress>>>,
    /// The snapshots of the store as last listed: which can be a generation's base.
    listed: Mutex<Vec<SnapshotSummary>>,
}

impl ReplicationView {
    /// Replication is on: status shows it from now on.
    pub fn enable(&self) {
        *lock(&self.recorded) = Some(ReplicationStatus::default());
    }

    /// Changes the recorded part (no-op while replication is off).
    pub fn update(&self, change: impl FnOnce(&mut ReplicationStatus)) {
        if let Some(status) = lock(&self.recorded).as_mut() {
            change(status);
        }
    }

    fn follow_capture(&self, progress: watch::Receiver<CaptureProgress>) {
        *lock(&self.capture) = Some(progress);
    }

    /// The store's snapshots as just listed.
    pub fn observe_snapshots(&self, snapshots: &[SnapshotManifest]) {
        *lock(&self.listed) = snapshots.iter().map(SnapshotSummary::from).collect();
    }

    /// The newest revision a restore reaches with the chain ending at `chain_end` in
    /// `generation`: its end when a snapshot listed (or `newest_snapshot`) is a base of the
    /// generation at or below it, else the newest snapshot's.
    pub fn restorable_revision(
        &self,
        generation: Option<&GenerationId>,
        chain_end: i64,
        newest_snapshot: Option<&SnapshotSummary>,
    ) -> Option<i64> {
        let listed = lock(&self.listed);
        restorable_revision(
            generation,
            chain_end,
            listed.iter().chain(newest_snapshot).map(base_candidate),
            newest_snapshot.map(|s| s.revision),
        )
    }

    /// The capture's progress now; `None` before the capture runs.
    pub fn capture_progress(&self) -> Option<CaptureProgress> {
        lock(&self.capture)
            .as_ref()
            .map(|progress| progress.borrow().clone())
    }

    /// The status to show; `newest_snapshot` decides what a restore reaches.
    pub fn status(&self, newest_snapshot: Option<&SnapshotSummary>) -> Option<ReplicationStatus> {
        let mut status = lock(&self.recorded).clone()?;
        if let Some(progress) = self.capture_progress() {
            status.generation = progress.generation.as_ref().map(ToString::to_string);
            status.etcd_revision = progress.etcd_revision;
            status.captured_revision = progress.captured_revision;
            status.stored_revision = progress.stored_revision;
            status.segments = progress.stored_segments;
            status.segment_bytes = progress.stored_bytes;
            status.complete_as_of = progress.complete_as_of().map(DateTime::<Utc>::from);
            status.restorable_revision = self.restorable_revision(
                progress.generation.as_ref(),
                progress.stored_revision,
                newest_snapshot,
            );
        }
        Some(status)
    }
}

/// A snapshot as a possible base of a generation.
pub fn base_candidate(snapshot: &SnapshotSummary) -> BaseCandidate<'_> {
    BaseCandidate {
        revision: snapshot.revision,
        created_at: snapshot.created_at,
        generation: snapshot.replication_generation.as_deref(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The daemon as the capture sees it.
struct DaemonCaptureHost<'a> {
    state: &'a DaemonState,
    /// No generation started since start-up yet: a snapshot taken since start-up (the
    /// schedule's first run) can be its base, within [`START_UP_SNAPSHOT_WINDOW`]. Later
    /// generations start from a snapshot taken for them (or one that completed while they
    /// waited for the lock), so a base that etcd has compacted past is never offered twice.
    first_generation: AtomicBool,
}

impl CaptureHost for DaemonCaptureHost<'_> {
    async fn full_snapshot(&self, cancel: &CancellationToken) -> Result<GenerationId, String> {
        let state = self.state;
        let now = Utc::now();
        let started_at = state.started_at();
        let since = if self.first_generation.swap(false, Ordering::Relaxed)
            && now - started_at <= START_UP_SNAPSHOT_WINDOW
        {
            started_at
        } else {
            now
        };
        let _guard = tokio::select! {
            guard = state.snapshot_lock.lock() => guard,
            () = cancel.cancelled() => return Err("shutting down".into()),
        };
        // A snapshot that completed since (at start-up, typically the schedule's first run) is
        // as good a base as a new one when it names the generation it may start: no second
        // full snapshot back to back.
        if let Some(snapshot) = state.snapshot_committed_since(since) {
            if let Some(generation) = starting_generation(&snapshot) {
                tracing::info!(id = %snapshot.id, "the new replication generation starts from the snapshot just taken");
                return Ok(generation);
            }
        }
        match primary::snapshot_cycle(state, Trigger::Replication, None, false, None).await {
            Some(snapshot) => starting_generation(&snapshot).ok_or_else(|| {
                format!(
                    "snapshot {} names no replication generation to start",
                    snapshot.id
                )
            }),
            None => Err(state
                .status_last_error()
                .unwrap_or_else(|| "no snapshot was taken".into())),
        }
    }

    fn generation_ended(&self, generation: &GenerationId, reason: &GenerationBreak) {
        self.state
            .metrics
            .replication_generation_break(reason.kind());
        let message = format!("replication generation {generation} ended: {reason}");
        self.state.replication.update(|status| {
            status.generation_breaks += 1;
            status.last_problem = Some(LastError {
                at: Utc::now(),
                message: message.clone(),
            });
        });
        self.state.note_error(message);
    }

    fn capture_failed(&self, error: &ReplicationError) {
        let message = format!("replication capture failed: {error}");
        self.state.replication.update(|status| {
            status.last_problem = Some(LastError {
                at: Utc::now(),
                message: message.clone(),
            });
        });
        self.state.note_error(message);
    }
}

/// The generation `snapshot` starts: the one its manifest names, when based at its revision.
fn starting_generation(snapshot: &SnapshotSummary) -> Option<GenerationId> {
    snapshot
        .replication_generation
        .as_deref()
        .and_then(|name| name.parse::<GenerationId>().ok())
        .filter(|generation| generation.base_revision() == snapshot.revision)
}

/// Captures until shutdown (paused while fenced). Returns once what was captured is stored.
pub async fn run(state: Arc<DaemonState>) -> anyhow::Result<()> {
    let settings = &state.settings;
    let config = &settings.replication;
    let layout = layout(&state)?;
    // The manifests' signing key signs the segments and the heartbeat too.
    let signer = state
        .snapshots
        .as_ref()
        .and_then(|context| context.signer.clone())
        .map(|signer| SegmentSigner::new(signer, &settings.cluster));
    let sink = SegmentStore {
        store: state.store.clone(),
        layout: layout.clone(),
        recipients: settings.encryption.recipients()?,
        signer: signer.clone(),
    };
    let source = EtcdSource::new(settings.etcd()?.clone())?;
    let client = loop {
        match source.long_lived_client().await {
            Ok(client) => break client,
            Err(error) => {
                tracing::warn!(%error, "replication: cannot connect to etcd; retrying");
                tokio::select! {
                    () = tokio::time::sleep(config.retry_interval) => {}
                    () = state.cancel.cancelled() => return Ok(()),
                }
            }
        }
    };
    let capture = ContinuousCapture {
        client,
        sink,
        identities: settings.identities()?,
        trust: state.trust.clone(),
        options: config.capture_options(),
        retry_interval: config.retry_interval,
        max_generation_age: Some(config.max_generation_age),
    };
    let (progress_tx, progress_rx) = watch::channel(CaptureProgress::default());
    state.replication.follow_capture(progress_rx.clone());
    let heartbeat_cancel = CancellationToken::new();
    let heartbeat = tokio::spawn(keep_heartbeat(
        state.store.clone(),
        layout,
        signer,
        progress_rx,
        config.heartbeat_interval,
        heartbeat_cancel.clone(),
    ));
    let host = DaemonCaptureHost {
        state: &state,
        first_generation: AtomicBool::new(true),
    };
    while !state.cancel.is_cancelled() {
        if state.fenced_reason().is_some() {
            tokio::select! {
                () = tokio::time::sleep(FENCE_LOOK_INTERVAL) => continue,
                () = state.cancel.cancelled() => break,
            }
        }
        let capture_cancel = state.cancel.child_token();
        let fence_watch = {
            let state = state.clone();
            let capture_cancel = capture_cancel.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(FENCE_LOOK_INTERVAL) => {}
                        () = capture_cancel.cancelled() => return,
                    }
                    if let Some(reason) = state.fenced_reason() {
                        tracing::warn!(%reason, "fenced: replication capture stops");
                        capture_cancel.cancel();
                        return;
                    }
                }
            })
        };
        capture.run(&host, &progress_tx, &capture_cancel).await;
        capture_cancel.cancel();
        let _ = fence_watch.await;
    }
    // The last heartbeat counts what was stored on the way out.
    heartbeat_cancel.cancel();
    let _ = heartbeat.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_break_reasons_of_the_metrics_are_those_of_the_capture() {
        assert_eq!(
            etcd_dr_control::GENERATION_BREAK_REASONS,
            GenerationBreak::KINDS
        );
    }
}
