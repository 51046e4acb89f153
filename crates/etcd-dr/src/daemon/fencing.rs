//! The primary's watch for promotions of its cluster: a promotion marker in the store fences it
//! (no more snapshots into that prefix); a switchover request makes it take a final snapshot
//! (label `switchover`), name it in the request, and fence itself.
//!
//! The primary ships only while neither a promotion marker nor an answered switchover request
//! is in its prefix; removing both (fail-back) lets it resume.

use std::time::Duration;

use etcd_dr_control::Trigger;
use etcd_dr_core::SWITCHOVER_LABEL;
use etcd_dr_transport::{read_promotion_marker, read_switchover_request, write_switchover_request};

use super::{primary, DaemonState};

/// Reads the store once and updates the fence; answers a pending switchover request.
pub async fn check_once(state: &DaemonState) {
    let marker = match read_promotion_marker(&state.store, &state.layout).await {
        Ok(marker) => marker,
        Err(error) => {
            // A store that does not answer changes nothing: the store check reports it.
            tracing::debug!(%error, "cannot read the promotion marker");
            return;
        }
    };
    let request = match read_switchover_request(&state.store, &state.layout).await {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(%error, "cannot read the switchover request");
            return;
        }
    };
    if let Some(marker) = marker {
        state.set_fenced(Some(format!(
            "promotion {} ({}, snapshot {}) by {} at {}",
            marker.promotion_id,
            marker.mode.as_str(),
            marker.snapshot,
            marker.requested_by,
            marker.fenced_at
        )));
        return;
    }
    let Some(mut request) = request else {
        state.set_fenced(None);
        return;
    };
    if let Some(id) = &request.final_snapshot {
        state.set_fenced(Some(format!(
            "switchover {}: final snapshot {id} handed over",
            request.promotion_id
        )));
        return;
    }
    if request.error.is_some() {
        // A failed switchover leaves the primary as it was.
        state.set_fenced(None);
        return;
    }
    tracing::warn!(
        promotion = %request.promotion_id,
        requested_by = %request.requested_by,
        "switchover requested: taking the final snapshot"
    );
    let taken = {
        let _guard = state.snapshot_lock.lock().await;
        primary::snapshot_cycle(
            state,
            Trigger::Api,
            Some(SWITCHOVER_LABEL.to_string()),
            false,
            None,
        )
        .await
    };
    match taken {
        Some(id) => {
            // Fence first: nothing may follow the final snapshot.
            state.set_fenced(Some(format!(
                "switchover {}: final snapshot {id} handed over",
                request.promotion_id
            )));
            request.final_snapshot = Some(id.clone());
            tracing::warn!(%id, "final snapshot committed; this primary no longer ships");
        }
        None => {
            request.error = Some(
                state
                    .status_last_error()
                    .unwrap_or_else(|| "the final snapshot failed".into()),
            );
        }
    }
    if let Err(error) = write_switchover_request(&state.store, &state.layout, &request).await {
        tracing::error!(%error, "cannot answer the switchover request");
    }
}

/// Checks every `interval` until shutdown.
pub async fn run(state: &DaemonState, interval: Duration) {
    loop {
        tokio::select! {
            _ = state.cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        check_once(state).await;
    }
}
