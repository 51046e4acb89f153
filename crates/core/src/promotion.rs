use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{RestorePoint, SnapshotId};

/// Why a restore happens: the primary is lost, a planned move without data loss, or this
/// cluster goes back to an earlier point of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromotionMode {
    /// The primary is lost: restore the newest good snapshot.
    Failover,
    /// Planned: the primary takes a final snapshot and stops shipping; exactly that one is
    /// restored.
    Switchover,
    /// `etcd-dr restore`: the cluster this prefix belongs to is restored in place to one of its
    /// own snapshots. No fence (it stays the primary and keeps shipping), no switchover, the
    /// nodes' own service-account keys stay.
    #[serde(rename = "in-place")]
    InPlace,
}

impl PromotionMode {
    /// `failover` or `switchover`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failover => "failover",
            Self::Switchover => "switchover",
            Self::InPlace => "in-place",
        }
    }
}

/// What was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionRequest {
    /// `latest` or a snapshot id (failover; a switchover restores the primary's final one).
    #[serde(default = "latest")]
    pub snapshot: String,
    /// Failover (default) or switchover.
    #[serde(default = "failover")]
    pub mode: PromotionMode,
    /// Stop after the preflight and return the plan; nothing changes.
    #[serde(default)]
    pub dry_run: bool,
    /// Promote even though a promotion marker exists (replacing it).
    #[serde(default)]
    pub force: bool,
    /// Restore this point in history instead of a snapshot as it is: the newest snapshot at
    /// or below it, replayed with the replication segments to exactly that revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<RestorePoint>,
}

fn latest() -> String {
    "latest".into()
}
fn failover() -> PromotionMode {
    PromotionMode::Failover
}

impl Default for PromotionRequest {
    fn default() -> Self {
        Self {
            snapshot: latest(),
            mode: PromotionMode::Failover,
            dry_run: false,
            force: false,
            at: None,
        }
    }
}

/// The fence: written into the store (create-only) when a promotion starts. Two promotions
/// cannot both write it, and a primary that sees it stops shipping into that prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionMarker {
    /// The promotion's id.
    pub promotion_id: String,
    /// Failover or switchover.
    pub mode: PromotionMode,
    /// The snapshot being restored.
    pub snapshot: SnapshotId,
    /// Who asked: `user@host` of the etcd-dr that promotes.
    pub requested_by: String,
    /// When the marker was written.
    pub fenced_at: DateTime<Utc>,
    /// The promotion this one replaced (`force`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// The restore lock: one restore or promotion at a time per prefix. Written create-only when
/// one starts, deleted when it ends; a crash leaves it behind for the operator to remove
/// (`etcd-dr restore --force`, `etcd-dr promote --force`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreLock {
    /// The restore or promotion holding it.
    pub promotion_id: String,
    /// What it is.
    pub mode: PromotionMode,
    /// Who: `user@host`.
    pub requested_by: String,
    /// When it was taken.
    pub locked_at: DateTime<Utc>,
}

/// A planned switchover's request to the primary, written into the store by the secondary:
/// take a final snapshot labelled [`SWITCHOVER_LABEL`], then stop shipping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchoverRequest {
    /// The promotion that asks.
    pub promotion_id: String,
    /// Who asked.
    pub requested_by: String,
    /// When it asked.
    pub requested_at: DateTime<Utc>,
    /// Set by the primary once its final snapshot is committed: that snapshot's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_snapshot: Option<SnapshotId>,
    /// Set by the primary when it could not take the final snapshot: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The label of a switchover's final snapshot.
pub const SWITCHOVER_LABEL: &str = "switchover";

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn marker_round_trips() {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap();
        let marker = PromotionMarker {
            promotion_id: "p-20261125T030000Z-1a2b".into(),
            mode: PromotionMode::Failover,
            snapshot: SnapshotId::new(at, 42),
            requested_by: "ops@bastion-eu".into(),
            fenced_at: at,
            replaces: None,
        };
        let json = serde_json::to_string(&marker).unwrap();
        assert!(json.contains("\"mode\":\"failover\""));
        assert!(!json.contains("replaces"));
        assert_eq!(
            serde_json::from_str::<PromotionMarker>(&json).unwrap(),
            marker
        );
    }

    #[test]
    fn in_place_is_spelt_with_a_dash() {
        let json = serde_json::to_string(&PromotionMode::InPlace).unwrap();
        assert_eq!(json, "\"in-place\"");
        assert_eq!(PromotionMode::InPlace.as_str(), "in-place");
        let request: PromotionRequest = serde_json::from_str(r#"{"mode":"in-place"}"#).unwrap();
        assert_eq!(request.mode, PromotionMode::InPlace);
    }

    #[test]
    fn switchover_request_reads_without_answer() {
        let json =
            r#"{"promotion_id":"p1","requested_by":"ops@b","requested_at":"2026-11-25T03:00:00Z"}"#;
        let request: SwitchoverRequest = serde_json::from_str(json).unwrap();
        assert_eq!(request.final_snapshot, None);
        assert_eq!(request.error, None);
    }

    #[test]
    fn requests_default_to_a_failover_of_the_latest() {
        let request: PromotionRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(request, PromotionRequest::default());
        let request: PromotionRequest =
            serde_json::from_str(r#"{"snapshot":"latest","mode":"switchover","dry_run":true}"#)
                .unwrap();
        assert_eq!(request.mode, PromotionMode::Switchover);
        assert!(serde_json::from_str::<PromotionRequest>(r#"{"mode":"panic"}"#).is_err());
        let request: PromotionRequest = serde_json::from_str(r#"{"at":4821}"#).unwrap();
        assert_eq!(request.at, Some(RestorePoint::Revision(4821)));
        assert!(!serde_json::to_string(&PromotionRequest::default())
            .unwrap()
            .contains("\"at\""));
    }
}
