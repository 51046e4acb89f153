//! The long-running daemon: its shared state, what it offers the HTTP API, and one file per
//! loop (primary snapshots, secondary polling, store checks, progress log, systemd
//! notifications).

pub mod catalog_cache;
pub mod fencing;
pub mod generations;
pub mod primary;
pub mod progress_log;
pub mod promote;
pub mod refused;
pub mod replication;
pub mod replication_follow;
pub mod secondary;
pub mod store_check;
pub mod systemd;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use etcd_dr_control::{
    ActionError, Activity, ApiCaller, DaemonStatus, InFlight, LastError, Metrics,
    PromotionAccepted, RunningKind, RunningWork, SnapshotAccepted, SnapshotRequest,
    SnapshotSummary, Trigger,
};
use etcd_dr_core::{PromotionRecord, PromotionRequest, SnapshotId, SnapshotManifest};
use etcd_dr_scheduler::SnapshotContext;
use etcd_dr_transport::{
    read_manifest, Catalog, ManifestTrust, ShipProgress, SnapshotLayout, TransportError,
};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;

/// Clock skew between a producer and the store worth a warning in the log (the alert rule
/// has its own threshold).
const CLOCK_SKEW_WARN_SECONDS: f64 = 300.0;

/// How long `POST /v1/snapshots` waits for the new snapshot's id (etcd must be surveyed first).
const TRIGGER_ID_WAIT: Duration = Duration::from_secs(60);

/// Everything the daemon's loops and the HTTP API share.
pub struct DaemonState {
    status: Mutex<DaemonStatus>,
    /// Byte counters of the running snapshot or verification.
    pub progress: Arc<ShipProgress>,
    /// Held while a snapshot runs: the schedule and `POST /v1/snapshots` take it, so there are
    /// never two snapshots at once.
    pub snapshot_lock: Arc<tokio::sync::Mutex<()>>,
    /// The snapshot run holding the lock (its start, trigger and id), for the 409's body.
    snapshot_run: Mutex<Option<(RunningWork, Trigger)>>,
    /// The one metrics registry.
    pub metrics: Metrics,
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The cluster's folder in the store.
    pub layout: SnapshotLayout,
    /// What this instance accepts from the store (signatures, cluster, encryption).
    pub trust: ManifestTrust,
    /// The primary's snapshot machinery; `None` on a secondary.
    pub snapshots: Option<SnapshotContext>,
    /// The configuration.
    pub settings: Settings,
    /// Why this primary does not ship (a promotion fenced its prefix), if it does not.
    fenced: Mutex<Option<String>>,
    /// Refused snapshots already logged.
    refused: refused::RefusedSnapshots,
    /// The last listing of the store, for `GET /v1/snapshots`.
    catalog_cache: catalog_cache::CatalogCache,
    /// Promotions this instance runs (`[promote]` configured).
    pub promotions: promote::Promotions,
    /// Continuous replication as status shows it (`[replication] enabled`).
    pub replication: replication::ReplicationView,
    /// Fires on shutdown.
    pub cancel: CancellationToken,
}

impl DaemonState {
    /// The shared state at start-up.
    pub fn new(
        settings: Settings,
        metrics: Metrics,
        store: Arc<dyn ObjectStore>,
        layout: SnapshotLayout,
        trust: ManifestTrust,
        snapshots: Option<SnapshotContext>,
        cancel: CancellationToken,
    ) -> Self {
        let status = DaemonStatus::starting(
            settings.role,
            &settings.cluster,
            &settings.store.describe(),
            Utc::now(),
        );
        let replication = replication::ReplicationView::default();
        if settings.replication.enabled {
            replication.enable();
        }
        Self {
            status: Mutex::new(status),
            progress: Arc::new(ShipProgress::default()),
            snapshot_lock: Arc::new(tokio::sync::Mutex::new(())),
            snapshot_run: Mutex::new(None),
            metrics,
            store,
            layout,
            trust,
            snapshots,
            settings,
            fenced: Mutex::new(None),
            refused: refused::RefusedSnapshots::default(),
            catalog_cache: catalog_cache::CatalogCache::default(),
            promotions: promote::Promotions::default(),
            replication,
            cancel,
        }
    }

    /// Changes the status. A poisoned lock (a panic while updating) still holds a usable status.
    pub fn update<R>(&self, change: impl FnOnce(&mut DaemonStatus) -> R) -> R {
        change(&mut self.lock_status())
    }

    fn lock_status(&self) -> MutexGuard<'_, DaemonStatus> {
        self.status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Why this primary is fenced, if it is.
    pub fn fenced_reason(&self) -> Option<String> {
        self.fenced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Records whether (and why) this primary is fenced (status `fenced` from the first check
    /// on); logs each change.
    pub fn set_fenced(&self, reason: Option<String>) {
        let mut fenced = self
            .fenced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *fenced != reason {
            match &reason {
                Some(reason) => {
                    tracing::warn!(%reason, "fenced: this primary stops shipping snapshots into its prefix")
                }
                None => tracing::warn!(
                    "not fenced: no promotion marker or answered switchover request; shipping"
                ),
            }
            *fenced = reason.clone();
        }
        drop(fenced);
        self.update(|status| {
            status.fenced = Some(reason.is_some());
            status.fenced_reason = reason;
        });
    }

    fn lock_snapshot_run(&self) -> MutexGuard<'_, Option<(RunningWork, Trigger)>> {
        self.snapshot_run
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A snapshot run (snapshot, then retention) started under the snapshot lock.
    pub fn snapshot_run_started(&self, trigger: Trigger) {
        let running = RunningWork {
            kind: RunningKind::Snapshot,
            id: None,
            since: Utc::now(),
            holder: None,
        };
        *self.lock_snapshot_run() = Some((running, trigger));
    }

    /// The running snapshot's attempt has its id (a failover to another member gives a new one).
    pub fn snapshot_run_attempt(&self, id: &SnapshotId) {
        if let Some((running, _)) = self.lock_snapshot_run().as_mut() {
            running.id = Some(id.to_string());
        }
    }

    /// The snapshot run ended (retention included).
    pub fn snapshot_run_ended(&self) {
        *self.lock_snapshot_run() = None;
    }

    /// Why `POST /v1/snapshots` cannot start one now: the run that holds the snapshot lock.
    fn snapshot_busy(&self) -> ActionError {
        let run = self.lock_snapshot_run().clone();
        let (running, detail) = match run {
            Some((running, trigger)) => {
                let retention = self.update(|status| {
                    status
                        .in_flight
                        .as_ref()
                        .is_some_and(|f| f.activity == Activity::Retention)
                });
                let what = match &running.id {
                    Some(id) if retention => format!("retention after snapshot {id}"),
                    Some(id) => format!("snapshot {id}"),
                    None => "a snapshot (its id not known yet: etcd is being surveyed)".into(),
                };
                let by = match trigger {
                    Trigger::Schedule => "on the schedule",
                    Trigger::Api => "through the API",
                    Trigger::Replication => "for a new replication generation",
                };
                let detail = format!(
                    "{what}, started {by}, is running since {}; see in_flight in /v1/status and try again once it ended",
                    running.since.to_rfc3339()
                );
                (running, detail)
            }
            // The lock was taken an instant ago and the run has not said so yet.
            None => (
                RunningWork {
                    kind: RunningKind::Snapshot,
                    id: None,
                    since: Utc::now(),
                    holder: None,
                },
                "a snapshot is starting; see in_flight in /v1/status".to_string(),
            ),
        };
        ActionError::AlreadyRunning {
            detail,
            running: Box::new(running),
        }
    }

    /// Marks the start of a snapshot or verification: counters reset, status shows it.
    pub fn begin(&self, activity: Activity, trigger: Trigger, id: Option<SnapshotId>) {
        self.progress.reset();
        self.update(|status| {
            status.in_flight = Some(InFlight {
                activity,
                trigger,
                started_at: Utc::now(),
                id,
                raw_bytes: 0,
                stored_bytes: 0,
            })
        });
    }

    /// Marks the end of the running activity.
    pub fn finish(&self) {
        self.update(|status| status.in_flight = None);
    }

    /// A cycle succeeded: no longer failing.
    pub fn cycle_succeeded(&self) {
        self.update(|status| status.failing_since = None);
    }

    /// A cycle failed: remembered as the last error, and failing since the first such cycle.
    pub fn cycle_failed(&self, message: String) {
        let now = Utc::now();
        self.update(|status| {
            status.last_error = Some(LastError { at: now, message });
            status.failing_since.get_or_insert(now);
        });
    }

    /// The newest snapshot this daemon committed whose upload completed at or after `since`:
    /// one snapshot serves a run that waited meanwhile (the schedule's and a new replication
    /// generation's at start-up).
    pub fn snapshot_committed_since(&self, since: DateTime<Utc>) -> Option<SnapshotSummary> {
        self.lock_status()
            .last_snapshot
            .clone()
            .filter(|snapshot| snapshot.completed_at >= since)
    }

    /// When this daemon started.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.lock_status().started_at
    }

    /// The message of the most recent failure, if any.
    pub fn status_last_error(&self) -> Option<String> {
        self.lock_status()
            .last_error
            .as_ref()
            .map(|e| e.message.clone())
    }

    /// Exports what a listing found that needs attention: unreadable manifests (counted and
    /// named in `last_error`, never skipped silently) and the newest snapshot's clock skew.
    pub fn observe_catalog(&self, catalog: &Catalog) {
        self.replication.observe_snapshots(&catalog.snapshots);
        self.metrics
            .set_unreadable_manifests(catalog.unreadable.len());
        if let Some(bad) = catalog.unreadable.last() {
            tracing::error!(snapshot = %bad.id, error = %bad.error, count = catalog.unreadable.len(), "unreadable manifest in the store");
            self.note_error(format!(
                "unreadable manifest of snapshot {} ({} unreadable): {}",
                bad.id,
                catalog.unreadable.len(),
                bad.error
            ));
        }
        if let Some(skew) = catalog.newest().and_then(|m| catalog.clock_skew_seconds(m)) {
            self.metrics.set_clock_skew(skew);
            if skew.abs() > CLOCK_SKEW_WARN_SECONDS {
                tracing::warn!(skew_seconds = skew, "the producer's clock disagrees with the store's (manifest Last-Modified vs completed_at)");
            }
        }
    }

    /// Something went wrong that does not make the cycle fail (retention, say).
    pub fn note_error(&self, message: String) {
        self.update(|status| {
            status.last_error = Some(LastError {
                at: Utc::now(),
                message,
            })
        });
    }
}

/// What the HTTP API calls.
#[derive(Clone)]
pub struct DaemonHandle(pub Arc<DaemonState>);

#[async_trait]
impl etcd_dr_control::Daemon for DaemonHandle {
    fn status(&self) -> DaemonStatus {
        let mut status = self.0.lock_status().clone();
        status.promotion = self.0.promotions.summary();
        status.replication = self.0.replication.status(status.newest_verified.as_ref());
        if let Some(in_flight) = &mut status.in_flight {
            in_flight.raw_bytes = self.0.progress.raw_bytes.load(Ordering::Relaxed);
            in_flight.stored_bytes = self.0.progress.stored_bytes.load(Ordering::Relaxed);
        }
        status
    }

    async fn list_snapshots(&self) -> Result<Vec<SnapshotManifest>, ActionError> {
        self.0.cached_snapshots().await.map_err(action_error)
    }

    async fn get_snapshot(&self, id: &SnapshotId) -> Result<SnapshotManifest, ActionError> {
        // Its own manifest first (404 for no such snapshot, 422 for an untrusted one, without
        // a listing), then its place among the others: its etcd generation.
        read_manifest(
            &self.0.store,
            &self.0.layout,
            &self.0.trust,
            id,
            &self.0.cancel,
        )
        .await
        .map_err(action_error)?;
        self.0.judged_snapshot(id).await
    }

    async fn trigger_snapshot(
        &self,
        request: SnapshotRequest,
    ) -> Result<SnapshotAccepted, ActionError> {
        let state = self.0.clone();
        if state.snapshots.is_none() {
            return Err(ActionError::Unsupported(format!(
                "role {} does not take snapshots; trigger them on the primary",
                state.settings.role.as_str()
            )));
        }
        if let Some(reason) = state.fenced_reason() {
            return Err(ActionError::Unsupported(format!(
                "fenced: {reason}; this primary no longer ships snapshots"
            )));
        }
        let guard = state
            .snapshot_lock
            .clone()
            .try_lock_owned()
            .map_err(|_| state.snapshot_busy())?;
        let (id_tx, id_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            primary::snapshot_cycle(&state, Trigger::Api, request.label, false, Some(id_tx)).await;
            drop(guard);
        });
        match tokio::time::timeout(TRIGGER_ID_WAIT, id_rx).await {
            Ok(Ok(Ok(id))) => Ok(SnapshotAccepted { id }),
            Ok(Ok(Err(refusal))) => Err(refusal),
            Ok(Err(_)) => Err(ActionError::Failed(
                "the snapshot ended before it had an id (shutting down?)".into(),
            )),
            Err(_) => Err(ActionError::Unavailable(format!(
                "etcd did not answer within {TRIGGER_ID_WAIT:?}; the snapshot goes on, see /v1/status"
            ))),
        }
    }

    async fn start_promotion(
        &self,
        request: PromotionRequest,
        caller: ApiCaller,
    ) -> Result<PromotionAccepted, ActionError> {
        promote::start(&self.0, request, caller).await
    }

    fn promotion(&self) -> Option<PromotionRecord> {
        self.0.promotions.record()
    }
}

/// Transient store failures are the store being away (503); a missing snapshot is 404.
pub(crate) fn action_error(error: TransportError) -> ActionError {
    match error {
        TransportError::SnapshotNotFound { .. } => ActionError::NotFound(error.to_string()),
        TransportError::Untrusted { .. } => ActionError::Refused(error.to_string()),
        TransportError::Cancelled => ActionError::Unavailable(error.to_string()),
        error if error.is_transient() => ActionError::Unavailable(error.to_string()),
        other => ActionError::Failed(other.to_string()),
    }
}
