//! Promotions run by the daemon (`POST /v1/promote`, `GET /v1/promote`): one at a time, the
//! current or last one kept for the API, status and metrics.

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use etcd_dr_control::{
    ActionError, ApiCaller, PromotionAccepted, PromotionSummary, RunningKind, RunningWork,
};
use etcd_dr_core::{PromotionMode, PromotionRecord, PromotionRequest};
use etcd_dr_restore::{
    admit, AdmissionError, LockHolder, Promoter, PromotionState, PromotionTracker,
};
use etcd_dr_transport::SnapshotSelector;
use tokio::task::JoinHandle;

use super::DaemonState;
use crate::requester::requested_through_api;

/// The daemon's promotions: the promoter (when `[promote]` is configured) and the current or
/// last promotion.
#[derive(Default)]
pub struct Promotions {
    promoter: Option<Arc<Promoter>>,
    current: Mutex<Option<(PromotionTracker, JoinHandle<()>)>>,
}

impl Promotions {
    /// Promotions with `promoter`.
    pub fn new(promoter: Promoter) -> Self {
        Self {
            promoter: Some(Arc::new(promoter)),
            current: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<(PromotionTracker, JoinHandle<()>)>> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current or last promotion, every step and node.
    pub fn record(&self) -> Option<PromotionRecord> {
        self.lock().as_ref().map(|(tracker, _)| tracker.snapshot())
    }

    /// The current or last promotion in short, for status and metrics.
    pub fn summary(&self) -> Option<PromotionSummary> {
        let record = self
            .lock()
            .as_ref()
            .map(|(tracker, _)| tracker.snapshot())?;
        Some(PromotionSummary {
            id: record.id,
            state: record.state.as_str().to_string(),
            state_code: record.state.metric_value(),
            duration_seconds: record.duration_seconds,
        })
    }

    /// Waits for a running promotion to end (its rollback included) at shutdown.
    pub async fn wait(&self) {
        let handle = self.lock().as_mut().map(|(tracker, handle)| {
            tracing::warn!(id = %tracker.id(), "waiting for the running promotion to end");
            std::mem::replace(handle, tokio::spawn(async {}))
        });
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

/// Starts a promotion unless one runs, one succeeded or a marker fences the cluster (each a
/// 409 unless `force`). `caller` is recorded as who asked.
pub async fn start(
    state: &Arc<DaemonState>,
    request: PromotionRequest,
    caller: ApiCaller,
) -> Result<PromotionAccepted, ActionError> {
    let Some(promoter) = state.promotions.promoter.clone() else {
        return Err(ActionError::Unsupported(
            "this instance has no [promote] section; configure it on the secondary (docs/configuration.md: [promote])"
                .into(),
        ));
    };
    if request.mode == PromotionMode::InPlace {
        return Err(ActionError::BadRequest(
            "mode \"in-place\" is not offered over HTTP: restore this cluster in place with `etcd-dr restore` on the command line".into(),
        ));
    }
    if request.mode == PromotionMode::Failover {
        request
            .snapshot
            .parse::<SnapshotSelector>()
            .map_err(|e| ActionError::BadRequest(e.to_string()))?;
    }
    // The promoter asks again when it runs; asking first answers 409 instead of 202. A dry run
    // or a forced run is refused by neither the fence nor the lock.
    if !request.dry_run && !request.force {
        match admit(&state.store, &state.layout, &request, &state.cancel).await {
            Ok(_) => {}
            Err(AdmissionError::Locked { holder }) => return Err(lock_held(holder)),
            Err(error @ AdmissionError::Fenced { .. }) => {
                return Err(ActionError::Busy(error.to_string()))
            }
            Err(AdmissionError::Store(error)) => {
                return Err(ActionError::Unavailable(format!("store: {error}")))
            }
        }
    }
    let mut current = state.promotions.lock();
    if let Some((tracker, _)) = current.as_ref() {
        let record = tracker.snapshot();
        match record.state {
            PromotionState::Running => {
                return Err(ActionError::AlreadyRunning {
                    detail: format!(
                        "promotion {} (asked by {}) is running since {}; follow it with GET /v1/promote",
                        record.id,
                        record.requested_by,
                        record.started_at.to_rfc3339()
                    ),
                    running: Box::new(RunningWork {
                        kind: RunningKind::Promotion,
                        id: Some(record.id),
                        since: record.started_at,
                        holder: Some(record.requested_by),
                    }),
                })
            }
            PromotionState::Succeeded if !request.force && !request.dry_run => {
                return Err(ActionError::Busy(format!(
                    "promotion {} succeeded: this cluster is promoted; send \"force\": true to promote again",
                    record.id
                )))
            }
            _ => {}
        }
    }
    let tracker = PromotionTracker::begin(request, requested_through_api(&caller));
    let id = tracker.id();
    let handle = {
        let tracker = tracker.clone();
        let cancel = state.cancel.clone();
        tokio::spawn(async move {
            promoter.run(&tracker, &cancel).await;
        })
    };
    *current = Some((tracker, handle));
    Ok(PromotionAccepted { id })
}

/// A restore or promotion (of this or another process) holds the restore lock: a 409 naming it.
fn lock_held(holder: LockHolder) -> ActionError {
    let detail = AdmissionError::Locked {
        holder: holder.clone(),
    }
    .to_string();
    let Ok(since) = holder.locked_at.parse::<DateTime<Utc>>() else {
        return ActionError::Busy(detail);
    };
    let kind = if holder.mode == PromotionMode::InPlace.as_str() {
        RunningKind::Restore
    } else {
        RunningKind::Promotion
    };
    ActionError::AlreadyRunning {
        detail,
        running: Box::new(RunningWork {
            kind,
            id: Some(holder.promotion_id),
            since,
            holder: Some(holder.requested_by),
        }),
    }
}
