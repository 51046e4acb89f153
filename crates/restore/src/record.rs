//! The promotion as an explicit state machine: steps × nodes, each with its state, timings and
//! error, serialisable for `GET /v1/promote` and printed as progress by the CLI.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use etcd_dr_core::{PromotionRequest, SnapshotId};
use serde::Serialize;
use tokio::sync::watch;

use crate::PromotionPlan;

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
    /// Stop, keep aside, restore, install the keys, start: on all nodes in parallel.
    Restore,
    /// Every member healthy, one leader, the expected members; the API server ready.
    Health,
    /// Restart kubelet on the workers, rollout-restart workloads, delete stale pods.
    After,
    /// Put every node's old data dir and files back and restart (only after a failure).
    Rollback,
}

impl StepName {
    /// Every step in order.
    pub const ALL: [StepName; 9] = [
        Self::Switchover,
        Self::Select,
        Self::Fence,
        Self::Verify,
        Self::Preflight,
        Self::Restore,
        Self::Health,
        Self::After,
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
            Self::Restore => "restore",
            Self::Health => "health",
            Self::After => "after",
            Self::Rollback => "rollback",
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
}

impl Progress {
    fn pending() -> Self {
        Self {
            state: StepState::Pending,
            started_at: None,
            finished_at: None,
            duration_seconds: None,
            detail: None,
            error: None,
        }
    }

    fn start(&mut self, detail: Option<String>) {
        self.state = StepState::Running;
        self.started_at = Some(Utc::now());
        self.finished_at = None;
        self.duration_seconds = None;
        self.error = None;
        if detail.is_some() {
            self.detail = detail;
        }
    }

    fn finish(&mut self, state: StepState, detail: Option<String>, error: Option<String>) {
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
    /// Every step.
    pub steps: Vec<StepRecord>,
    /// What failed, where (the first failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Failures that did not undo the promotion (after-steps), and the plan's warnings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A new promotion id: `p-<YYYYMMDDTHHMMSSZ>-<4 hex>`, safe in file names and etcd tokens.
pub fn new_promotion_id(now: DateTime<Utc>) -> String {
    format!(
        "p-{}-{:04x}",
        now.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    )
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
            steps: StepName::ALL
                .iter()
                .map(|&name| StepRecord {
                    name,
                    progress: Progress::pending(),
                    nodes: Vec::new(),
                })
                .collect(),
            error: None,
            warnings: Vec::new(),
        }
    }

    /// The record of `step`.
    pub fn step(&self, step: StepName) -> &StepRecord {
        let index = StepName::ALL.iter().position(|s| *s == step).unwrap_or(0);
        &self.steps[index]
    }

    fn step_mut(&mut self, step: StepName) -> &mut StepRecord {
        let index = StepName::ALL.iter().position(|s| *s == step).unwrap_or(0);
        &mut self.steps[index]
    }

    fn node_mut(&mut self, step: StepName, node: &str) -> &mut NodeRecord {
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

/// The live record of one promotion: the promotion updates it, the API and the CLI read it
/// (a `watch` channel: readers see the latest state and are woken on each change).
#[derive(Debug, Clone)]
pub struct PromotionTracker {
    sender: Arc<watch::Sender<PromotionRecord>>,
}

impl PromotionTracker {
    /// Tracks `record`.
    pub fn new(record: PromotionRecord) -> Self {
        let (sender, _) = watch::channel(record);
        Self {
            sender: Arc::new(sender),
        }
    }

    /// The record as it is now (its duration brought up to date while running).
    pub fn snapshot(&self) -> PromotionRecord {
        let mut record = self.sender.borrow().clone();
        if record.finished_at.is_none() {
            record.duration_seconds =
                (Utc::now() - record.started_at).num_milliseconds() as f64 / 1000.0;
        }
        record
    }

    /// A receiver woken on every change.
    pub fn subscribe(&self) -> watch::Receiver<PromotionRecord> {
        self.sender.subscribe()
    }

    /// The promotion's id.
    pub fn id(&self) -> String {
        self.sender.borrow().id.clone()
    }

    /// Changes the record and wakes the readers.
    pub fn update(&self, change: impl FnOnce(&mut PromotionRecord)) {
        self.sender.send_modify(change);
    }

    /// Marks `step` running.
    pub fn start(&self, step: StepName, detail: impl Into<Option<String>>) {
        let detail = detail.into();
        self.update(|r| r.step_mut(step).progress.start(detail));
    }

    /// Marks `step` done.
    pub fn done(&self, step: StepName, detail: impl Into<Option<String>>) {
        let detail = detail.into();
        self.update(|r| {
            r.step_mut(step)
                .progress
                .finish(StepState::Done, detail, None)
        });
    }

    /// Marks `step` failed with `error`.
    pub fn failed(&self, step: StepName, error: impl ToString) {
        let error = error.to_string();
        self.update(|r| {
            r.step_mut(step)
                .progress
                .finish(StepState::Failed, None, Some(error))
        });
    }

    /// Marks `step` skipped, saying why.
    pub fn skipped(&self, step: StepName, why: impl Into<String>) {
        let why = why.into();
        self.update(|r| {
            let progress = &mut r.step_mut(step).progress;
            progress.state = StepState::Skipped;
            progress.detail = Some(why);
        });
    }

    /// Sets the state of a finished step (e.g. rolled back).
    pub fn set_state(&self, step: StepName, state: StepState) {
        self.update(|r| r.step_mut(step).progress.state = state);
    }

    /// Lists `nodes` as pending in `step`.
    pub fn add_nodes<S: AsRef<str>>(&self, step: StepName, nodes: &[S]) {
        self.update(|r| {
            for node in nodes {
                r.node_mut(step, node.as_ref());
            }
        });
    }

    /// Marks `node` running in `step`.
    pub fn node_start(&self, step: StepName, node: &str, detail: impl Into<String>) {
        let detail = Some(detail.into());
        self.update(|r| r.node_mut(step, node).progress.start(detail));
    }

    /// Says what `node` is doing now in `step`.
    pub fn node_detail(&self, step: StepName, node: &str, detail: impl Into<String>) {
        let detail = Some(detail.into());
        self.update(|r| r.node_mut(step, node).progress.detail = detail);
    }

    /// Marks `node` done in `step`.
    pub fn node_done(&self, step: StepName, node: &str, detail: impl Into<Option<String>>) {
        let detail = detail.into();
        self.update(|r| {
            r.node_mut(step, node)
                .progress
                .finish(StepState::Done, detail, None)
        });
    }

    /// Marks `node` failed in `step`.
    pub fn node_failed(&self, step: StepName, node: &str, error: impl ToString) {
        let error = error.to_string();
        self.update(|r| {
            r.node_mut(step, node)
                .progress
                .finish(StepState::Failed, None, Some(error))
        });
    }

    /// Sets `node`'s state in `step` (rolled back, skipped) without touching its timings.
    pub fn node_state(&self, step: StepName, node: &str, state: StepState) {
        self.update(|r| r.node_mut(step, node).progress.state = state);
    }

    /// Ends the promotion.
    pub fn finish(&self, state: PromotionState, error: Option<String>) {
        self.update(|r| {
            let now = Utc::now();
            r.state = state;
            r.finished_at = Some(now);
            r.duration_seconds = (now - r.started_at).num_milliseconds() as f64 / 1000.0;
            if r.error.is_none() {
                r.error = error;
            }
            for step in &mut r.steps {
                if step.progress.state == StepState::Pending {
                    step.progress.state = StepState::Skipped;
                }
            }
        });
    }
}

/// Progress lines for what changed from `before` to `after` (the CLI prints them).
pub fn progress_lines(before: Option<&PromotionRecord>, after: &PromotionRecord) -> Vec<String> {
    let mut lines = Vec::new();
    for step in &after.steps {
        let old = before.map(|b| b.step(step.name));
        let changed = old.is_none_or(|o| {
            o.progress.state != step.progress.state || o.progress.detail != step.progress.detail
        });
        if changed && step.progress.state != StepState::Pending {
            lines.push(describe(step.name.as_str(), None, &step.progress));
        }
        for node in &step.nodes {
            let old = old.and_then(|o| o.nodes.iter().find(|n| n.node == node.node));
            let changed = old.is_none_or(|o| {
                o.progress.state != node.progress.state || o.progress.detail != node.progress.detail
            });
            if changed && node.progress.state != StepState::Pending {
                lines.push(describe(
                    step.name.as_str(),
                    Some(&node.node),
                    &node.progress,
                ));
            }
        }
    }
    if before.is_none_or(|b| b.state != after.state) && after.state.is_finished() {
        let mut line = format!(
            "{} {}: {} after {:.1}s",
            if after.request.mode == etcd_dr_core::PromotionMode::InPlace {
                "restore"
            } else {
                "promotion"
            },
            after.id,
            after.state.as_str(),
            after.duration_seconds
        );
        if let Some(error) = &after.error {
            line.push_str(&format!(": {error}"));
        }
        lines.push(line);
    }
    lines
}

fn describe(step: &str, node: Option<&str>, progress: &Progress) -> String {
    let mut line = match node {
        Some(node) => format!("{step} {node}: {}", progress.state.as_str()),
        None => format!("{step}: {}", progress.state.as_str()),
    };
    if let Some(seconds) = progress.duration_seconds {
        if progress.state != StepState::Running {
            line.push_str(&format!(" ({seconds:.1}s)"));
        }
    }
    if let Some(detail) = &progress.detail {
        line.push_str(&format!(" — {detail}"));
    }
    if let Some(error) = &progress.error {
        line.push_str(&format!(" — error: {error}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_steps_and_nodes() {
        let tracker = PromotionTracker::new(PromotionRecord::new(
            "p-1".into(),
            PromotionRequest::default(),
            "ops@b".into(),
        ));
        let mut seen = tracker.subscribe();
        tracker.start(StepName::Restore, None);
        tracker.add_nodes(StepName::Restore, &["cp1", "cp2"]);
        tracker.node_start(StepName::Restore, "cp1", "stopping the control plane");
        tracker.node_failed(StepName::Restore, "cp2", "etcdutl failed");
        assert!(seen.has_changed().unwrap());
        let before = seen.borrow_and_update().clone();
        tracker.node_done(StepName::Restore, "cp1", Some("restored".to_string()));
        tracker.failed(StepName::Restore, "cp2 failed");
        tracker.finish(
            PromotionState::RolledBack,
            Some("restore failed on cp2".into()),
        );
        let record = tracker.snapshot();
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["state"], "rolled-back");
        assert_eq!(json["request"]["mode"], "failover");
        let restore = &json["steps"][5];
        assert_eq!(restore["name"], "restore");
        assert_eq!(restore["state"], "failed");
        assert_eq!(restore["nodes"][0]["node"], "cp1");
        assert_eq!(restore["nodes"][0]["state"], "done");
        assert_eq!(restore["nodes"][1]["error"], "etcdutl failed");
        assert_eq!(json["steps"][0]["state"], "skipped");
        let lines = progress_lines(Some(&before), &record);
        assert_eq!(lines[0], "switchover: skipped");
        let restore = record
            .step(StepName::Restore)
            .progress
            .duration_seconds
            .unwrap();
        assert!(
            lines.contains(&format!(
                "restore: failed ({restore:.1}s) — error: cp2 failed"
            )),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("restore cp1: done (")),
            "{lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.starts_with("restore cp2")),
            "{lines:?}"
        );
        assert!(lines.last().unwrap().contains("rolled-back"), "{lines:?}");
    }

    #[test]
    fn requests_default_to_a_failover_of_the_latest() {
        use etcd_dr_core::PromotionMode;
        let request: PromotionRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(request, PromotionRequest::default());
        let request: PromotionRequest =
            serde_json::from_str(r#"{"snapshot":"latest","mode":"switchover","dry_run":true}"#)
                .unwrap();
        assert_eq!(request.mode, PromotionMode::Switchover);
        assert!(serde_json::from_str::<PromotionRequest>(r#"{"mode":"panic"}"#).is_err());
    }

    #[test]
    fn ids_are_file_name_safe() {
        let id = new_promotion_id(Utc::now());
        assert!(id.starts_with("p-"));
        assert!(
            id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{id}"
        );
    }
}
