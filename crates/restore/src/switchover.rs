//! The secondary's side of a planned switchover: ask the primary, through the store, for a
//! final snapshot, and wait for its answer.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use etcd_dr_core::{SnapshotId, SwitchoverRequest};
use etcd_dr_transport::{read_switchover_request, write_switchover_request, SnapshotLayout};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::PromoteError;

/// How often the answer is looked for.
const POLL: Duration = Duration::from_secs(1);

/// Writes the switchover request for `promotion_id` and waits up to `timeout` for the primary to
/// name its final snapshot (it takes it with label `switchover`, commits it, then stops
/// shipping).
pub async fn request_final_snapshot(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    promotion_id: &str,
    requested_by: &str,
    timeout: Duration,
    mut on_wait: impl FnMut(Duration),
    cancel: &CancellationToken,
) -> Result<SnapshotId, PromoteError> {
    let request = SwitchoverRequest {
        promotion_id: promotion_id.to_string(),
        requested_by: requested_by.to_string(),
        requested_at: Utc::now(),
        final_snapshot: None,
        error: None,
    };
    write_switchover_request(store, layout, &request, cancel).await?;
    let started = tokio::time::Instant::now();
    loop {
        if let Some(answer) = read_switchover_request(store, layout, cancel).await? {
            if answer.promotion_id != promotion_id {
                return Err(PromoteError::Switchover(format!(
                    "another switchover ({}) replaced this one's request",
                    answer.promotion_id
                )));
            }
            if let Some(error) = answer.error {
                return Err(PromoteError::Switchover(format!(
                    "the primary could not take its final snapshot: {error}"
                )));
            }
            if let Some(id) = answer.final_snapshot {
                return Ok(id);
            }
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(PromoteError::Switchover(format!(
                "the primary did not answer within {}; is its etcd-dr daemon running? If the primary is gone, promote with mode \"failover\"",
                humantime::format_duration(timeout)
            )));
        }
        on_wait(waited);
        tokio::select! {
            _ = cancel.cancelled() => return Err(PromoteError::Cancelled),
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}
