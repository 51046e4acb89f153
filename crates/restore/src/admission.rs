//! Whether a restore or promotion may start on a prefix: the promotion marker (the fence) and the
//! restore lock. One implementation, with one wording, for the command line (`etcd-dr promote`,
//! `etcd-dr restore`) and the daemon (`POST /v1/promote`), which asks before it answers 202.

use std::sync::Arc;

use etcd_dr_core::{PromotionMarker, PromotionMode, PromotionRequest, RestoreLock};
use etcd_dr_transport::{
    acquire_restore_lock, promotion_marker_path, read_promotion_marker, read_restore_lock,
    restore_lock_path, SnapshotLayout, TransportError,
};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

/// Who holds the restore lock, as the lock object says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The restore or promotion holding it.
    pub promotion_id: String,
    /// Its mode (`failover`, `switchover`, `in-place`).
    pub mode: String,
    /// Who took it.
    pub requested_by: String,
    /// When (RFC 3339).
    pub locked_at: String,
    /// The lock's key in the store.
    pub key: String,
}

impl LockHolder {
    fn from_lock(lock: &RestoreLock, layout: &SnapshotLayout) -> Self {
        Self {
            promotion_id: lock.promotion_id.clone(),
            mode: lock.mode.as_str().to_string(),
            requested_by: lock.requested_by.clone(),
            locked_at: lock.locked_at.to_rfc3339(),
            key: restore_lock_path(layout).to_string(),
        }
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} by {} since {} holds the restore lock `{}`",
            self.mode, self.promotion_id, self.requested_by, self.locked_at, self.key
        )
    }
}

/// Why a restore or promotion may not start.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// A promotion fenced the prefix: another promotion is refused unless forced, an in-place
    /// restore always.
    #[error("{}", fenced_text(.marker, .key, *.in_place))]
    Fenced {
        /// The marker in the store.
        marker: PromotionMarker,
        /// Its key.
        key: String,
        /// Whether an in-place restore was refused (no force passes the fence then).
        in_place: bool,
    },
    /// Another restore or promotion holds the restore lock (or crashed holding it).
    #[error("{holder}; only one restore or promotion runs at a time. If it still runs, wait for it to end; if it crashed, run again with force (`--force`, `\"force\": true`: it takes the lock over) or delete `{}`", .holder.key)]
    Locked {
        /// Who holds it.
        holder: LockHolder,
    },
    /// Reading the marker or the lock failed.
    #[error(transparent)]
    Store(#[from] TransportError),
}

fn fenced_text(marker: &PromotionMarker, key: &str, in_place: bool) -> String {
    let by = format!(
        "promotion {} ({}, snapshot {}, by {} at {})",
        marker.promotion_id,
        marker.mode.as_str(),
        marker.snapshot,
        marker.requested_by,
        marker.fenced_at
    );
    if in_place {
        format!(
            "{by} fenced this prefix: another cluster was promoted from it, and restoring this one in place would bring back a primary that must not ship. To make this cluster primary again, follow \"Failing back\" (docs/runbooks/failback.md); remove `{key}` only if you deliberately want this cluster back as the primary of this prefix"
        )
    } else {
        format!(
            "{by} already fenced this cluster; promote with force (`--force`, `\"force\": true`) to replace it"
        )
    }
}

/// What admission found that does not stop the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// For a dry run: who holds the restore lock, which would refuse the real run.
    pub warnings: Vec<String>,
}

/// Looks at the fence and the restore lock of the prefix for `request`, changing nothing:
///
/// - a promotion marker refuses an in-place restore always, and a promotion unless it is a dry
///   run or forced (a forced promotion replaces the marker);
/// - a held restore lock refuses a real run unless forced (a forced run takes the lock over);
///   a dry run only gets a warning.
///
/// A real run then takes the lock with [`take_restore_lock`], which refuses in the same words
/// when another run took it in between.
pub async fn admit(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    request: &PromotionRequest,
    cancel: &CancellationToken,
) -> Result<Admission, AdmissionError> {
    let in_place = request.mode == PromotionMode::InPlace;
    // An in-place restore never passes the fence: the prefix belongs to a promoted cluster now.
    if in_place || (!request.dry_run && !request.force) {
        if let Some(marker) = read_promotion_marker(store, layout, cancel).await? {
            return Err(AdmissionError::Fenced {
                marker,
                key: promotion_marker_path(layout).to_string(),
                in_place,
            });
        }
    }
    let mut admission = Admission::default();
    if request.force && !request.dry_run {
        return Ok(admission);
    }
    if let Some(lock) = read_restore_lock(store, layout, cancel).await? {
        let holder = LockHolder::from_lock(&lock, layout);
        if !request.dry_run {
            return Err(AdmissionError::Locked { holder });
        }
        admission.warnings.push(format!(
            "{holder}: a real run is refused until it ends (or with force, if it crashed)"
        ));
    }
    Ok(admission)
}

/// Takes the restore lock for `lock`'s run (over a crashed holder's with `force`).
pub async fn take_restore_lock(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    lock: &RestoreLock,
    force: bool,
    cancel: &CancellationToken,
) -> Result<(), AdmissionError> {
    match acquire_restore_lock(store, layout, lock, force, cancel).await {
        Ok(()) => Ok(()),
        Err(TransportError::Locked {
            key,
            promotion_id,
            mode,
            requested_by,
            locked_at,
        }) => Err(AdmissionError::Locked {
            holder: LockHolder {
                promotion_id,
                mode,
                requested_by,
                locked_at,
                key,
            },
        }),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use etcd_dr_core::SnapshotId;
    use etcd_dr_transport::write_promotion_marker;
    use object_store::memory::InMemory;

    fn store() -> (Arc<dyn ObjectStore>, SnapshotLayout) {
        (
            Arc::new(InMemory::new()),
            SnapshotLayout::new("", "prod").unwrap(),
        )
    }

    fn request(mode: PromotionMode, dry_run: bool, force: bool) -> PromotionRequest {
        PromotionRequest {
            snapshot: "latest".into(),
            mode,
            dry_run,
            force,
        }
    }

    fn lock(id: &str) -> RestoreLock {
        RestoreLock {
            promotion_id: id.into(),
            mode: PromotionMode::InPlace,
            requested_by: "ops@crashed-bastion".into(),
            locked_at: Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap(),
        }
    }

    #[tokio::test]
    async fn a_fence_refuses_promotions_unless_forced_and_in_place_restores_always() {
        let (store, layout) = store();
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap();
        let marker = PromotionMarker {
            promotion_id: "p-elsewhere".into(),
            mode: PromotionMode::Failover,
            snapshot: SnapshotId::new(at, 42),
            requested_by: "ops@bastion-us".into(),
            fenced_at: at,
            replaces: None,
        };
        write_promotion_marker(&store, &layout, &marker, false, &CancellationToken::new())
            .await
            .unwrap();
        let refused = admit(
            &store,
            &layout,
            &request(PromotionMode::Failover, false, false),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(
            refused,
            AdmissionError::Fenced {
                in_place: false,
                ..
            }
        ));
        let text = refused.to_string();
        assert!(
            text.contains("p-elsewhere") && text.contains("already fenced"),
            "{text}"
        );
        for (dry_run, force) in [(true, false), (false, true)] {
            admit(
                &store,
                &layout,
                &request(PromotionMode::Switchover, dry_run, force),
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        }
        for (dry_run, force) in [(false, false), (true, false), (false, true)] {
            let refused = admit(
                &store,
                &layout,
                &request(PromotionMode::InPlace, dry_run, force),
                &CancellationToken::new(),
            )
            .await
            .unwrap_err();
            let text = refused.to_string();
            assert!(
                text.contains("p-elsewhere") && text.contains("Failing back"),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn a_held_lock_refuses_a_real_run_warns_a_dry_run_and_yields_to_force() {
        let (store, layout) = store();
        take_restore_lock(
            &store,
            &layout,
            &lock("r-crashed"),
            false,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        for mode in [PromotionMode::Failover, PromotionMode::InPlace] {
            let refused = admit(
                &store,
                &layout,
                &request(mode, false, false),
                &CancellationToken::new(),
            )
            .await
            .unwrap_err();
            let text = refused.to_string();
            assert!(
                text.contains("r-crashed")
                    && text.contains("ops@crashed-bastion")
                    && text.contains("holds the restore lock `prod/restore-lock.json`")
                    && text.contains("with force"),
                "{text}"
            );
        }
        let dry = admit(
            &store,
            &layout,
            &request(PromotionMode::InPlace, true, false),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(dry.warnings.len(), 1);
        assert!(dry.warnings[0].contains("r-crashed"), "{:?}", dry.warnings);
        let forced = admit(
            &store,
            &layout,
            &request(PromotionMode::InPlace, false, true),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(forced.warnings.is_empty());

        // Taking a held lock is refused in the same words; force takes it over.
        let taken = take_restore_lock(
            &store,
            &layout,
            &lock("r-second"),
            false,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            taken.to_string(),
            admit(
                &store,
                &layout,
                &request(PromotionMode::InPlace, false, false),
                &CancellationToken::new()
            )
            .await
            .unwrap_err()
            .to_string()
        );
        take_restore_lock(
            &store,
            &layout,
            &lock("r-second"),
            true,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        let held = read_restore_lock(&store, &layout, &CancellationToken::new())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(held.promotion_id, "r-second");
    }
}
