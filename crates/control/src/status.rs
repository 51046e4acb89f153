use chrono::{DateTime, Utc};
use etcd_dr_core::{Role, SnapshotId, SnapshotManifest};
use serde::{Deserialize, Serialize};

/// The daemon's state as the binary reports it; the HTTP API adds what it computes (lag).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// `primary` or `secondary`.
    pub role: Role,
    /// The configured cluster name (the folder in the store).
    pub cluster: String,
    /// etcd-dr version.
    pub version: String,
    /// When this process started.
    pub started_at: DateTime<Utc>,
    /// The store and whether the last check reached it.
    pub store: StoreHealth,
    /// When the next snapshot (primary) or poll (secondary) is due.
    pub schedule: Option<ScheduleStatus>,
    /// The newest snapshot this instance took (primary) or verified (secondary).
    pub last_snapshot: Option<SnapshotSummary>,
    /// The newest snapshot known complete and verified: replication lag is measured from it.
    pub newest_verified: Option<SnapshotSummary>,
    /// What runs right now, if anything.
    pub in_flight: Option<InFlight>,
    /// The most recent failure, kept after later successes so operators can see it.
    pub last_error: Option<LastError>,
    /// Since when every cycle has failed; `None` while the last cycle succeeded.
    pub failing_since: Option<DateTime<Utc>>,
    /// Secondary only: polling, verification and the pre-staged copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<SecondaryStatus>,
    /// Whether this instance was fenced by a promote; `None` until promote support reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced: Option<bool>,
    /// Why it is fenced (the promotion marker or the answered switchover request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced_reason: Option<String>,
    /// The current or last promotion run by this instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionSummary>,
    /// Continuous replication (`[replication] enabled = true`): the lag is measured from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationStatus>,
}

/// Where continuous replication stands: captured and stored (primary) or verified (secondary).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// The generation being written (primary) or followed (secondary).
    pub generation: Option<String>,
    /// The newest revision etcd reported (primary) or the primary's heartbeat says it stored
    /// (secondary).
    pub etcd_revision: i64,
    /// The newest revision received from the watch (primary only).
    pub captured_revision: i64,
    /// The newest revision durably stored (primary) or stored and chain-verified (secondary).
    pub stored_revision: i64,
    /// The newest revision a restore can reach now: the stored (verified) chain's end when a
    /// trusted full snapshot lies within its generation, else the newest snapshot's revision.
    pub restorable_revision: Option<i64>,
    /// Every revision etcd had at this moment is stored (and, on the secondary, verified):
    /// the replication lag is measured from it.
    pub complete_as_of: Option<DateTime<Utc>>,
    /// Segments stored (primary) or verified (secondary) since start-up.
    pub segments: u64,
    /// Bytes of segments stored since start-up (primary).
    pub segment_bytes: u64,
    /// Generations ended since start-up (each needed a full snapshot).
    pub generation_breaks: u64,
    /// Heartbeats refused since start-up (secondary): unsigned, an unknown signer, another
    /// cluster or changed after signing; the lag is not measured from them.
    #[serde(default)]
    pub heartbeats_refused: u64,
    /// The last generation break or replication error, if any.
    pub last_problem: Option<LastError>,
}

/// The current or last promotion, in short (`GET /v1/promote` has every step and node).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromotionSummary {
    /// The promotion's id.
    pub id: String,
    /// `running`, `planned`, `succeeded`, `failed`, `rolled-back`, `rollback-failed`.
    pub state: String,
    /// The `etcd_dr_promotion_state` value of that state.
    pub state_code: i64,
    /// Seconds from its start to its end (or to now while running).
    pub duration_seconds: f64,
}

impl DaemonStatus {
    /// A fresh status at start-up: nothing known yet.
    pub fn starting(role: Role, cluster: &str, store: &str, started_at: DateTime<Utc>) -> Self {
        Self {
            role,
            cluster: cluster.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at,
            store: StoreHealth {
                description: store.to_string(),
                reachable: None,
                checked_at: None,
                error: None,
            },
            schedule: None,
            last_snapshot: None,
            newest_verified: None,
            in_flight: None,
            last_error: None,
            failing_since: None,
            secondary: None,
            fenced: None,
            fenced_reason: None,
            promotion: None,
            replication: None,
        }
    }

    /// With continuous replication: seconds between `now` and the newest moment at which
    /// everything etcd had was stored (verified, on the secondary). Without it: seconds between
    /// `now` and the creation of the newest verified snapshot. With neither known, the time
    /// since start-up: a lower bound that keeps growing, so lag alerts still fire. Negative when
    /// the primary's clock runs ahead: shown as it is, for an alert, never clamped to 0.
    pub fn replication_lag_seconds(&self, now: DateTime<Utc>) -> f64 {
        let since = match &self.replication {
            Some(replication) => replication.complete_as_of.unwrap_or(self.started_at),
            None => self
                .newest_verified
                .as_ref()
                .map_or(self.started_at, |s| s.created_at),
        };
        (now - since).num_milliseconds() as f64 / 1000.0
    }
}

/// The store and the last check of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreHealth {
    /// Human-readable store (`s3 bucket dr-backups at https://…`), no credentials.
    pub description: String,
    /// Whether the last check reached it; `None` before the first check.
    pub reachable: Option<bool>,
    /// When it was last checked.
    pub checked_at: Option<DateTime<Utc>>,
    /// Why the last check failed.
    pub error: Option<String>,
}

/// The schedule and its next run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleStatus {
    /// `every 15m`, `cron */15 * * * *`, `poll every 30s`.
    pub description: String,
    /// When the next run is planned (including jitter).
    pub next_run: Option<DateTime<Utc>>,
}

/// The facts of one snapshot that status and metrics need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// Snapshot id.
    pub id: SnapshotId,
    /// etcd revision it was taken at.
    pub revision: i64,
    /// Plain snapshot size in bytes.
    pub raw_bytes: u64,
    /// Stored (compressed) size in bytes.
    pub stored_bytes: u64,
    /// Seconds the primary took to take and upload it.
    pub duration_seconds: f64,
    /// When it was started on the primary.
    pub created_at: DateTime<Utc>,
    /// When its upload completed.
    pub completed_at: DateTime<Utc>,
    /// The continuous-replication generation whose segments replay onto it, if its manifest
    /// names one (`etcd.replication_generation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_generation: Option<String>,
}

impl From<&SnapshotManifest> for SnapshotSummary {
    fn from(manifest: &SnapshotManifest) -> Self {
        Self {
            id: manifest.id.clone(),
            revision: manifest.etcd.revision,
            raw_bytes: manifest.raw.size,
            stored_bytes: manifest.stored.size,
            duration_seconds: manifest.duration_seconds,
            created_at: manifest.created_at,
            completed_at: manifest.completed_at,
            replication_generation: manifest.etcd.replication_generation.clone(),
        }
    }
}

/// What is running right now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InFlight {
    /// Taking a snapshot or verifying one.
    pub activity: Activity,
    /// Who asked for it.
    pub trigger: Trigger,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// The snapshot, once known (a snapshot's id needs etcd's revision).
    pub id: Option<SnapshotId>,
    /// Plain bytes so far.
    pub raw_bytes: u64,
    /// Stored (compressed) bytes so far.
    pub stored_bytes: u64,
}

/// Kinds of long-running work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activity {
    /// Taking and uploading a snapshot.
    Snapshot,
    /// Streaming a stored snapshot back and checking it.
    Verify,
    /// Retention after a snapshot: reading the newest back, deleting what no longer is kept.
    Retention,
}

/// Who started a piece of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The schedule or the poll loop.
    Schedule,
    /// `POST /v1/snapshots`.
    Api,
    /// Continuous replication: a new generation needs a full snapshot to start from.
    Replication,
}

/// A failure and when it happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastError {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What failed (never credentials or etcd values).
    pub message: String,
}

/// The secondary's own state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SecondaryStatus {
    /// When the store was last listed.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// Snapshots verified since start-up.
    pub verified_count: u64,
    /// Snapshots that failed verification since start-up.
    pub verify_failures: u64,
    /// The newest verified snapshot kept decompressed on local disk for a fast promote.
    pub prestaged: Option<PrestagedSnapshot>,
}

/// A verified, decompressed snapshot waiting on local disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrestagedSnapshot {
    /// Which snapshot.
    pub id: SnapshotId,
    /// The `.db` file, ready for `etcdutl snapshot restore`.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn lag_counts_from_the_newest_verified_snapshot_or_start_up() {
        let start = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let mut status = DaemonStatus::starting(Role::Secondary, "prod", "local /x", start);
        let now = start + chrono::Duration::seconds(90);
        assert_eq!(status.replication_lag_seconds(now), 90.0);
        status.newest_verified = Some(SnapshotSummary {
            id: SnapshotId::new(start + chrono::Duration::seconds(60), 5),
            revision: 5,
            raw_bytes: 10,
            stored_bytes: 5,
            duration_seconds: 1.0,
            created_at: start + chrono::Duration::seconds(60),
            completed_at: start + chrono::Duration::seconds(61),
            replication_generation: None,
        });
        assert_eq!(status.replication_lag_seconds(now), 30.0);
        // A snapshot from the future (its producer's clock ahead) shows as negative lag, for
        // the alert, rather than as no lag at all.
        assert_eq!(status.replication_lag_seconds(start), -60.0);
    }

    #[test]
    fn with_replication_lag_counts_from_the_last_complete_moment() {
        let start = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let mut status = DaemonStatus::starting(Role::Primary, "prod", "local /x", start);
        let now = start + chrono::Duration::seconds(90);
        status.replication = Some(ReplicationStatus::default());
        assert_eq!(status.replication_lag_seconds(now), 90.0);
        status.replication = Some(ReplicationStatus {
            complete_as_of: Some(now - chrono::Duration::milliseconds(1500)),
            ..ReplicationStatus::default()
        });
        assert_eq!(status.replication_lag_seconds(now), 1.5);
    }
}
