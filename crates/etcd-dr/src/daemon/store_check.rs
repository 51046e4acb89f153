//! Periodic check that the store answers, for `/readyz` and `etcd_dr_store_reachable`.

use chrono::Utc;
use object_store::ObjectStore;

use super::DaemonState;

/// Lists the cluster's folder (one page) now and every `http.store_check_interval` until
/// shutdown. A check that takes longer than `http.store_check_timeout` counts as a failure:
/// the store client's own retries must not hide an outage.
pub async fn run(state: &DaemonState) {
    let interval = state.settings.http.store_check_interval;
    loop {
        check_once(state).await;
        tokio::select! {
            biased;
            _ = state.cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// One check; updates the status.
pub async fn check_once(state: &DaemonState) {
    let timeout = state.settings.http.store_check_timeout;
    let prefix = state.layout.snapshots_prefix();
    let result = tokio::select! {
        biased;
        _ = state.cancel.cancelled() => return,
        result = tokio::time::timeout(timeout, state.store.list_with_delimiter(Some(prefix))) => result,
    };
    let error = match result {
        Ok(Ok(_)) => None,
        Ok(Err(error)) => Some(format!("listing `{prefix}` failed: {error}")),
        Err(_) => Some(format!("listing `{prefix}` took longer than {timeout:?}")),
    };
    let was = state.update(|status| {
        let was = status.store.reachable;
        status.store.reachable = Some(error.is_none());
        status.store.checked_at = Some(Utc::now());
        status.store.error = error.clone();
        was
    });
    match (&error, was) {
        (Some(error), Some(true) | None) => tracing::warn!(%error, "store unreachable"),
        (None, Some(false)) => tracing::info!("store reachable again"),
        _ => {}
    }
}
