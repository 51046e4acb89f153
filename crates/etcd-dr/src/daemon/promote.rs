//! Promotions run by the daemon (`POST /v1/promote`, `GET /v1/promote`): one at a time, the
//! current or last one kept for the API, status and metrics.

use std::sync::{Arc, Mutex, MutexGuard};

use etcd_dr_control::{ActionError, PromotionAccepted, PromotionSummary};
use etcd_dr_core::{PromotionMode, PromotionRequest};
use etcd_dr_restore::{
    new_promotion_id, Promoter, PromotionRecord, PromotionState, PromotionTracker,
};
use etcd_dr_transport::{
    read_promotion_marker, read_restore_lock, restore_lock_path, SnapshotSelector,
};
use tokio::task::JoinHandle;

use super::DaemonState;
use crate::cmd::promote::requested_by;

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
    pub fn record(&self) -> Option<serde_json::Value> {
        let record = self
            .lock()
            .as_ref()
            .map(|(tracker, _)| tracker.snapshot())?;
        serde_json::to_value(record).ok()
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
/// 409 unless `force`).
pub async fn start(
    state: &Arc<DaemonState>,
    request: PromotionRequest,
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
    if !request.dry_run && !request.force {
        match read_promotion_marker(&state.store, &state.layout).await {
            Ok(Some(marker)) => {
                return Err(ActionError::Busy(format!(
                    "promotion {} ({}, snapshot {}) by {} at {} already fenced this cluster; send \"force\": true to replace it",
                    marker.promotion_id,
                    marker.mode.as_str(),
                    marker.snapshot,
                    marker.requested_by,
                    marker.fenced_at
                )))
            }
            Ok(None) => {}
            Err(error) => return Err(ActionError::Unavailable(format!("store: {error}"))),
        }
        match read_restore_lock(&state.store, &state.layout).await {
            Ok(Some(lock)) => {
                return Err(ActionError::Busy(format!(
                    "{} {} by {} since {} holds the restore lock `{}`; wait for it to end, or if it crashed send \"force\": true to take the lock over",
                    lock.mode.as_str(),
                    lock.promotion_id,
                    lock.requested_by,
                    lock.locked_at,
                    restore_lock_path(&state.layout)
                )))
            }
            Ok(None) => {}
            Err(error) => return Err(ActionError::Unavailable(format!("store: {error}"))),
        }
    }
    let mut current = state.promotions.lock();
    if let Some((tracker, _)) = current.as_ref() {
        let record = tracker.snapshot();
        match record.state {
            PromotionState::Running => {
                return Err(ActionError::Busy(format!(
                    "promotion {} is running; follow it with GET /v1/promote",
                    record.id
                )))
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
    let tracker = PromotionTracker::new(PromotionRecord::new(
        new_promotion_id(chrono::Utc::now()),
        request,
        requested_by(),
    ));
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
