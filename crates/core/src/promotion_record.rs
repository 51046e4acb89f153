//! A promotion (or in-place restore) as an explicit state machine: steps × nodes, each with its
//! state, timings and error. This is what `GET /v1/promote` returns and `--json` prints; the
//! restore crate keeps it live, the control crate serves it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{AfterResult, PromotionPlan, PromotionRequest, ReplaySummary, SnapshotId};

/// The steps of a promotion, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepName {
    /// Switchover only: ask the primary for a final snapshot and wait for it.
    Switchover,
    /// Resolve `latest` or the id to a committed snapshot.
    Select,
    /// Write the promotion marker (create-only): the primary stops shipping.
    Fence,
    /// Stream the snapshot back and check every checksum (or use the matching pre-staged copy).
    Verify,
    /// Check every node before anything changes.
    Preflight,
    /// The configured `before` hooks, in order (on the bastion or on every node).
    HooksBefore,
    /// Stop, keep aside, restore, install the keys, start: on all nodes in parallel.
    Restore,
    /// Point the API front-end name at the secondary on every node (`/etc/hosts` alias).
    FrontEnd,
    /// Every member healthy, one leader, the expected members; the API server ready.
    Health,
    /// Restart kubelet on the workers, rollout-restart workloads, delete stale pods.
    After,
    /// The configured `after` hooks, in order.
    HooksAfter,
    /// Put every node's old data dir and files back and restart (only after a failure).
    Rollback,
}

impl StepName {
    /// Every step in order.
    pub const ALL: [StepName; 12] = [
        Self::Switchover,
        Self::Select,
        Self::Fence,
        Self::Verify,
        Self::Preflight,
        Self::HooksBefore,
        Self::Restore,
        Self::FrontEnd,
        Self::Health,
        Self::After,
        Self::HooksAfter,
        Self::Rollback,
    ];

    /// The step's name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Switchover => "switchover",
            Self::Select => "select",
            Self::Fence => "fence",
            Self::Verify => "verify",
            Self::Preflight => "preflight",
            Self::HooksBefore => "hooks-before",
            Self::Restore => "restore",
            Self::FrontEnd => "front-end",
            Self::Health => "health",
            Self::After => "after",
            Self::HooksAfter => "hooks-after",
            Self::Rollback => "rollback",
        }
    }

    /// Where the step sits in [`Self::ALL`] (and in a record's steps).
    fn position(self) -> usize {
        match self {
            Self::Switchover => 0,
            Self::Select => 1,
            Self::Fence => 2,
            Self::Verify => 3,
            Self::Preflight => 4,
            Self::HooksBefore => 5,
            Self::Restore => 6,
            Self::FrontEnd => 7,
            Self::Health => 8,
            Self::After => 9,
            Self::HooksAfter => 10,
            Self::Rollback => 11,
        }
    }
}

/// The state of a step, or of one node within a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    /// Not started.
    Pending,
    /// Running now.
    Running,
    /// Finished well.
    Done,
    /// Failed (see its error).
    Failed,
    /// Its changes were undone.
    RolledBack,
    /// Not needed (dry run, mode, configuration).
    Skipped,
}

impl StepState {
    /// The state's name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::RolledBack => "rolled-back",
            Self::Skipped => "skipped",
        }
    }
}

/// The state of the whole promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromotionState {
    /// In progress.
    Running,
    /// A dry run finished: the plan is ready, nothing was changed.
    Planned,
    /// The secondary serves the restored snapshot.
    Succeeded,
    /// Failed before any node was changed.
    Failed,
    /// Failed, and every changed node was put back as it was.
    RolledBack,
    /// Failed, and putting a node back failed too: it needs hands (see the rollback step).
    RollbackFailed,
}

impl PromotionState {
    /// The state's name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Planned => "planned",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RolledBack => "rolled-back",
            Self::RollbackFailed => "rollback-failed",
        }
    }

    /// The value of the `etcd_dr_promotion_state` gauge: 0 none/planned, 1 running,
    /// 2 succeeded, 3 failed, 4 rolled back, 5 rollback failed.
    pub fn metric_value(self) -> i64 {
        match self {
            Self::Planned => 0,
            Self::Running => 1,
            Self::Succeeded => 2,
            Self::Failed => 3,
            Self::RolledBack => 4,
            Self::RollbackFailed => 5,
        }
    }

    /// True once the promotion ended.
    pub fn is_finished(self) -> bool {
        self != Self::Running
    }
}

/// Timings, state, detail and error, shared by steps and nodes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// State.
    pub state: StepState,
    /// When it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Seconds from start to end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// What it is doing or did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The bytes of its copy so far (the snapshot streamed back, or copied onto a node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferProgress>,
}

/// How far a copy of the snapshot got: bytes done of the total, and since when it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TransferProgress {
    /// Bytes copied so far.
    pub done_bytes: u64,
    /// Bytes to copy in all.
    pub total_bytes: u64,
    /// When the copy started.
    pub started_at: DateTime<Utc>,
}

impl TransferProgress {
    /// Bytes per second since the start, at `now`.
    pub fn rate(&self, now: DateTime<Utc>) -> f64 {
        let seconds = (now - self.started_at).num_milliseconds() as f64 / 1000.0;
        if seconds <= 0.0 {
            return 0.0;
        }
        self.done_bytes as f64 / seconds
    }

    /// Time left at the rate so far; `None` before any byte moved or once done.
    pub fn time_left(&self, now: DateTime<Utc>) -> Option<std::time::Duration> {
        let rate = self.rate(now);
        let left = self.total_bytes.checked_sub(self.done_bytes)?;
        (left > 0 && rate >= 1.0)
            .then(|| std::time::Duration::from_secs((left as f64 / rate) as u64))
    }

    /// `120.0 MiB of 1.0 GiB (12 %), 40.0 MiB/s, about 22s left` at `now`.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        let mut text = format!(
            "{} of {}",
            crate::human_bytes(self.done_bytes),
            crate::human_bytes(self.total_bytes)
        );
        if self.total_bytes > 0 {
            let percent = (self.done_bytes as f64 / self.total_bytes as f64 * 100.0).min(100.0);
            text.push_str(&format!(" ({percent:.0} %)"));
        }
        text.push_str(&format!(
            ", {}/s",
            crate::human_bytes(self.rate(now) as u64)
        ));
        if let Some(left) = self.time_left(now) {
            text.push_str(&format!(", about {} left", format_seconds(left.as_secs())));
        }
        text
    }
}

/// `1h 2m 3s`, `4m 5s`, `6s`.
fn format_seconds(total: u64) -> String {
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m {seconds}s"),
        _ => format!("{hours}h {minutes}m {seconds}s"),
    }
}

impl Progress {
    /// Not started, nothing known.
    pub fn pending() -> Self {
        Self {
            state: StepState::Pending,
            started_at: None,
            finished_at: None,
            duration_seconds: None,
            detail: None,
            error: None,
            transfer: None,
        }
    }

    /// Running from now; `detail` replaces the old one when given.
    pub fn start(&mut self, detail: Option<String>) {
        self.state = StepState::Running;
        self.started_at = Some(Utc::now());
        self.finished_at = None;
        self.duration_seconds = None;
        self.error = None;
        if detail.is_some() {
            self.detail = detail;
        }
    }

    /// Ended now in `state`; `detail` and `error` replace the old ones when given.
    pub fn finish(&mut self, state: StepState, detail: Option<String>, error: Option<String>) {
        let now = Utc::now();
        self.state = state;
        self.finished_at = Some(now);
        if let Some(started) = self.started_at {
            self.duration_seconds = Some((now - started).num_milliseconds() as f64 / 1000.0);
        }
        if detail.is_some() {
            self.detail = detail;
        }
        if error.is_some() {
            self.error = error;
        }
    }
}

/// One node within a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeRecord {
    /// The node.
    pub node: String,
    /// Its progress in the step.
    #[serde(flatten)]
    pub progress: Progress,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// Which step.
    pub name: StepName,
    /// Its progress.
    #[serde(flatten)]
    pub progress: Progress,
    /// Per-node progress, for the steps that run on nodes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeRecord>,
}

/// One promotion, as `GET /v1/promote` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromotionRecord {
    /// Its id (`p-<UTC time>-<random>`): names the marker, the token, the kept files.
    pub id: String,
    /// What was asked for.
    pub request: PromotionRequest,
    /// Overall state.
    pub state: PromotionState,
    /// Who asked.
    pub requested_by: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Seconds from start to end (or to now while running).
    pub duration_seconds: f64,
    /// The snapshot being restored, once chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotId>,
    /// The plan the preflight approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PromotionPlan>,
    /// With `at`: the base snapshot, segments and target revision of the replay (the target
    /// and base once selected, the rest once replayed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplaySummary>,
    /// Every step, in the order of [`StepName::ALL`].
    pub steps: Vec<StepRecord>,
    /// What each after-step action did, per target, in the order they ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after_results: Vec<AfterResult>,
    /// What failed, where (the first failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Failures that did not undo the promotion (after-steps), the plan's warnings, and each
    /// node where the force stop ended etcd.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl PromotionRecord {
    /// A new running promotion with every step pending.
    pub fn new(id: String, request: PromotionRequest, requested_by: String) -> Self {
        Self {
            id,
            request,
            state: PromotionState::Running,
            requested_by,
            started_at: Utc::now(),
            finished_at: None,
            duration_seconds: 0.0,
            snapshot: None,
            plan: None,
            replay: None,
            steps: StepName::ALL
                .iter()
                .map(|&name| StepRecord {
                    name,
                    progress: Progress::pending(),
                    nodes: Vec::new(),
                })
                .collect(),
            after_results: Vec::new(),
            error: None,
            warnings: Vec::new(),
        }
    }

    /// The record of `step`.
    pub fn step(&self, step: StepName) -> &StepRecord {
        &self.steps[step.position()]
    }

    /// The record of `step`, to change.
    pub fn step_mut(&mut self, step: StepName) -> &mut StepRecord {
        &mut self.steps[step.position()]
    }

    /// The record of `node` in `step`, listed (pending) if it was not yet.
    pub fn node_mut(&mut self, step: StepName, node: &str) -> &mut NodeRecord {
        let record = self.step_mut(step);
        let index = match record.nodes.iter().position(|n| n.node == node) {
            Some(index) => index,
            None => {
                record.nodes.push(NodeRecord {
                    node: node.to_string(),
                    progress: Progress::pending(),
                });
                record.nodes.len() - 1
            }
        };
        &mut record.nodes[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_found_by_name() {
        let mut record =
            PromotionRecord::new("p-1".into(), PromotionRequest::default(), "ops@b".into());
        for (position, step) in StepName::ALL.iter().enumerate() {
            assert_eq!(step.position(), position);
            assert_eq!(record.step(*step).name, *step);
        }
        record.node_mut(StepName::Restore, "cp1").progress.detail = Some("x".into());
        record.node_mut(StepName::Restore, "cp1").progress.state = StepState::Done;
        let restore = record.step(StepName::Restore);
        assert_eq!(restore.nodes.len(), 1);
        assert_eq!(restore.nodes[0].progress.detail.as_deref(), Some("x"));
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["steps"][6]["name"], "restore");
        assert_eq!(json["steps"][6]["nodes"][0]["state"], "done");
        assert_eq!(json["steps"][0]["state"], "pending");
        assert!(json.get("plan").is_none());
        assert!(json.get("after_results").is_none());
        assert!(json["steps"][6]["nodes"][0].get("transfer").is_none());
    }

    #[test]
    fn a_transfer_says_bytes_share_rate_and_time_left() {
        const MIB: u64 = 1024 * 1024;
        let started_at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let at = |seconds| started_at + chrono::Duration::seconds(seconds);
        let transfer = TransferProgress {
            done_bytes: 600 * MIB,
            total_bytes: 2400 * MIB,
            started_at,
        };
        assert_eq!(transfer.rate(at(60)), (10 * MIB) as f64);
        assert_eq!(
            transfer.time_left(at(60)),
            Some(std::time::Duration::from_secs(180))
        );
        assert_eq!(
            transfer.describe(at(60)),
            "600.0 MiB of 2.3 GiB (25 %), 10.0 MiB/s, about 3m 0s left"
        );
        // Nothing moved yet: no rate to guess from.
        let fresh = TransferProgress {
            done_bytes: 0,
            ..transfer
        };
        assert_eq!(fresh.time_left(at(0)), None);
        assert_eq!(fresh.describe(at(0)), "0 B of 2.3 GiB (0 %), 0 B/s");
        // Done: no time left, 100 %.
        let done = TransferProgress {
            done_bytes: 2400 * MIB,
            ..transfer
        };
        assert_eq!(done.time_left(at(120)), None);
        assert_eq!(
            done.describe(at(7320)),
            "2.3 GiB of 2.3 GiB (100 %), 335.7 KiB/s"
        );
        assert_eq!(format_seconds(3723), "1h 2m 3s");
        let json = serde_json::to_value(transfer).unwrap();
        assert_eq!(json["done_bytes"], 600 * MIB);
        assert_eq!(json["total_bytes"], 2400 * MIB);
    }
}
