//! Wiring of the primary's fence watch (`etcd_dr_restore::check_fence_once`): its status
//! receives the fence, its snapshot loop takes a switchover's final snapshot.

use std::time::Duration;

use etcd_dr_control::Trigger;
use etcd_dr_core::SWITCHOVER_LABEL;
use etcd_dr_restore::{check_fence_once, FenceCheckError};

use super::{primary, DaemonState};

/// Reads the store once and updates the fence; answers a pending switchover request.
pub async fn check_once(state: &DaemonState) {
    let take_final_snapshot = || async {
        let _guard = state.snapshot_lock.lock().await;
        primary::snapshot_cycle(
            state,
            Trigger::Api,
            Some(SWITCHOVER_LABEL.to_string()),
            false,
            None,
        )
        .await
        .map(|snapshot| snapshot.id)
        .ok_or_else(|| {
            state
                .status_last_error()
                .unwrap_or_else(|| "the final snapshot failed".into())
        })
    };
    let checked = check_fence_once(
        &state.store,
        &state.layout,
        |reason| state.set_fenced(reason),
        take_final_snapshot,
        &state.cancel,
    )
    .await;
    match checked {
        Ok(()) => {}
        // A store that does not answer changes nothing: the store check reports it.
        Err(error @ FenceCheckError::Read(_)) => tracing::debug!(%error),
        Err(error @ FenceCheckError::Answer { .. }) => tracing::error!(%error),
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
