//! The primary's side of the fence and of a planned switchover: a promotion marker in the store
//! fences it (no more snapshots into that prefix); a pending switchover request makes it take a
//! final snapshot, fence itself, and name that snapshot in the request.
//!
//! The primary ships only while neither a promotion marker nor an answered switchover request
//! is in its prefix; removing both (fail-back) lets it resume. The binary wires this to its
//! status and its snapshot loop.

use std::future::Future;
use std::sync::Arc;

use etcd_dr_core::SnapshotId;
use etcd_dr_transport::{
    read_promotion_marker, read_switchover_request, write_switchover_request, SnapshotLayout,
    TransportError,
};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

/// Why a fence check did not finish.
#[derive(Debug, thiserror::Error)]
pub enum FenceCheckError {
    /// The marker or the request could not be read: nothing was changed.
    #[error("cannot read the promotion marker or the switchover request: {0}")]
    Read(#[source] TransportError),
    /// The final snapshot was taken (or failed) but the answer could not be written.
    #[error("cannot answer the switchover request of promotion {promotion_id}: {source}")]
    Answer {
        /// The promotion that asked.
        promotion_id: String,
        /// The store's error.
        #[source]
        source: TransportError,
    },
}

/// Reads the store once and reports the fence through `set_fenced` (`Some(reason)` or `None`).
/// A pending switchover request is answered: `take_final_snapshot` takes the final snapshot
/// (its id, or why it failed); the primary is fenced before the answer is written, so nothing
/// follows the final snapshot; a failure is written as the request's `error` and leaves the
/// fence as it was. `cancel` stops the reads; the answer, once due, is always written.
pub async fn check_fence_once<Take, Taking>(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    mut set_fenced: impl FnMut(Option<String>),
    take_final_snapshot: Take,
    cancel: &CancellationToken,
) -> Result<(), FenceCheckError>
where
    Take: FnOnce() -> Taking,
    Taking: Future<Output = Result<SnapshotId, String>>,
{
    let marker = read_promotion_marker(store, layout, cancel)
        .await
        .map_err(FenceCheckError::Read)?;
    let request = read_switchover_request(store, layout, cancel)
        .await
        .map_err(FenceCheckError::Read)?;
    if let Some(marker) = marker {
        set_fenced(Some(format!(
            "promotion {} ({}, snapshot {}) by {} at {}",
            marker.promotion_id,
            marker.mode.as_str(),
            marker.snapshot,
            marker.requested_by,
            marker.fenced_at
        )));
        return Ok(());
    }
    let Some(mut request) = request else {
        set_fenced(None);
        return Ok(());
    };
    let handed_over = |id: &SnapshotId| {
        format!(
            "switchover {}: final snapshot {id} handed over",
            request.promotion_id
        )
    };
    if let Some(id) = &request.final_snapshot {
        set_fenced(Some(handed_over(id)));
        return Ok(());
    }
    if request.error.is_some() {
        // A failed switchover leaves the primary as it was.
        set_fenced(None);
        return Ok(());
    }
    tracing::warn!(
        promotion = %request.promotion_id,
        requested_by = %request.requested_by,
        "switchover requested: taking the final snapshot"
    );
    match take_final_snapshot().await {
        Ok(id) => {
            // Fence first: nothing may follow the final snapshot.
            set_fenced(Some(handed_over(&id)));
            tracing::warn!(%id, "final snapshot committed; this primary no longer ships");
            request.final_snapshot = Some(id);
        }
        Err(error) => request.error = Some(error),
    }
    // Answered even when `cancel` fired meanwhile (shutdown): the final snapshot is taken and
    // the secondary waits for its id.
    write_switchover_request(store, layout, &request, &CancellationToken::new())
        .await
        .map_err(|source| FenceCheckError::Answer {
            promotion_id: request.promotion_id.clone(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use etcd_dr_core::{PromotionMarker, PromotionMode, SwitchoverRequest};
    use etcd_dr_transport::write_promotion_marker;
    use object_store::memory::InMemory;

    use super::*;

    fn ground() -> (Arc<dyn ObjectStore>, SnapshotLayout, CancellationToken) {
        (
            Arc::new(InMemory::new()),
            SnapshotLayout::new("", "prod").unwrap(),
            CancellationToken::new(),
        )
    }

    fn request(id: &str) -> SwitchoverRequest {
        SwitchoverRequest {
            promotion_id: id.into(),
            requested_by: "ops@b".into(),
            requested_at: Utc::now(),
            final_snapshot: None,
            error: None,
        }
    }

    /// Runs one check; returns what it set the fence to and whether a snapshot was asked for.
    async fn check(
        store: &Arc<dyn ObjectStore>,
        layout: &SnapshotLayout,
        outcome: Result<SnapshotId, String>,
    ) -> (Vec<Option<String>>, bool) {
        let mut fenced = Vec::new();
        let mut taken = false;
        check_fence_once(
            store,
            layout,
            |reason| fenced.push(reason),
            || {
                taken = true;
                async { outcome }
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        (fenced, taken)
    }

    #[tokio::test]
    async fn an_open_prefix_is_not_fenced_and_a_marker_fences_it() {
        let (store, layout, cancel) = ground();
        let id = SnapshotId::new(Utc::now(), 5);
        assert_eq!(
            check(&store, &layout, Ok(id.clone())).await,
            (vec![None], false)
        );
        let marker = PromotionMarker {
            promotion_id: "p1".into(),
            mode: PromotionMode::Failover,
            snapshot: id.clone(),
            requested_by: "ops@b".into(),
            fenced_at: Utc::now(),
            replaces: None,
        };
        write_promotion_marker(&store, &layout, &marker, false, &cancel)
            .await
            .unwrap();
        let (fenced, taken) = check(&store, &layout, Ok(id)).await;
        assert!(!taken);
        assert!(
            fenced[0]
                .as_deref()
                .unwrap()
                .starts_with("promotion p1 (failover"),
            "{fenced:?}"
        );
    }

    #[tokio::test]
    async fn a_pending_switchover_is_answered_with_the_final_snapshot_after_the_fence() {
        let (store, layout, cancel) = ground();
        write_switchover_request(&store, &layout, &request("p2"), &cancel)
            .await
            .unwrap();
        let id = SnapshotId::new(Utc::now(), 9);
        let (fenced, taken) = check(&store, &layout, Ok(id.clone())).await;
        assert!(taken);
        assert_eq!(
            fenced,
            [Some(format!(
                "switchover p2: final snapshot {id} handed over"
            ))]
        );
        let answer = read_switchover_request(&store, &layout, &cancel)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer.final_snapshot, Some(id.clone()));
        // Answered: it stays fenced and takes no second snapshot.
        let (fenced, taken) = check(&store, &layout, Ok(id)).await;
        assert!(!taken);
        assert!(fenced[0].is_some());
    }

    #[tokio::test]
    async fn a_failed_final_snapshot_is_answered_and_leaves_the_primary_shipping() {
        let (store, layout, cancel) = ground();
        write_switchover_request(&store, &layout, &request("p3"), &cancel)
            .await
            .unwrap();
        let (fenced, taken) = check(&store, &layout, Err("etcd is down".into())).await;
        assert!(taken);
        assert!(fenced.is_empty());
        let answer = read_switchover_request(&store, &layout, &cancel)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer.error.as_deref(), Some("etcd is down"));
        assert_eq!(
            check(&store, &layout, Err(String::new())).await,
            (vec![None], false)
        );
    }
}
