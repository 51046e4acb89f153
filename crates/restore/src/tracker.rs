//! The live record of one promotion: the promotion updates it, the API and the CLI read it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use etcd_dr_core::{
    PromotionMode, PromotionRecord, PromotionRequest, PromotionState, StepName, StepState,
};
use tokio::sync::watch;

/// A new promotion id: `p-<YYYYMMDDTHHMMSSZ>-<4 hex>`, safe in file names and etcd tokens.
pub fn new_promotion_id(now: DateTime<Utc>) -> String {
    format!(
        "p-{}-{:04x}",
        now.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    )
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

    /// A new running promotion of `request`, asked by `requested_by` (`user@host`). Its id is
    /// `r-…` for an in-place restore and `p-…` for a promotion: the kept files are named after it.
    pub fn begin(request: PromotionRequest, requested_by: String) -> Self {
        let mut id = new_promotion_id(Utc::now());
        if request.mode == PromotionMode::InPlace {
            id.replace_range(..1, "r");
        }
        Self::new(PromotionRecord::new(id, request, requested_by))
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

    /// Says what `step` is doing now.
    pub fn detail(&self, step: StepName, detail: impl Into<String>) {
        let detail = Some(detail.into());
        self.update(|r| r.step_mut(step).progress.detail = detail);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_file_name_safe() {
        let id = new_promotion_id(Utc::now());
        assert!(id.starts_with("p-"));
        assert!(
            id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{id}"
        );
    }

    #[test]
    fn restores_in_place_are_named_r() {
        let restore = PromotionTracker::begin(
            PromotionRequest {
                mode: PromotionMode::InPlace,
                ..PromotionRequest::default()
            },
            "ops@b".into(),
        );
        assert!(restore.id().starts_with("r-"), "{}", restore.id());
        let promotion = PromotionTracker::begin(PromotionRequest::default(), "ops@b".into());
        assert!(promotion.id().starts_with("p-"), "{}", promotion.id());
        assert_eq!(promotion.snapshot().requested_by, "ops@b");
        assert_eq!(promotion.snapshot().state, PromotionState::Running);
    }

    #[test]
    fn step_details_change_only_that_step() {
        let tracker = PromotionTracker::begin(PromotionRequest::default(), "ops@b".into());
        tracker.start(StepName::Health, None);
        tracker.detail(StepName::Health, "waiting: no leader yet");
        let record = tracker.snapshot();
        assert_eq!(
            record.step(StepName::Health).progress.detail.as_deref(),
            Some("waiting: no leader yet")
        );
        assert_eq!(
            record.step(StepName::Health).progress.state,
            StepState::Running
        );
        assert!(record.step(StepName::After).progress.detail.is_none());
    }
}
