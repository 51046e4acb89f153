//! The promotion's progress as text: lines for the command line, what runs now for its
//! spinner and the daemon's log.

use chrono::{DateTime, Utc};
use etcd_dr_core::{
    Progress, PromotionMode, PromotionRecord, StepName, StepState, TransferProgress,
};

/// Progress lines for what changed from `before` to `after` (the CLI prints them). Details
/// carry what nodes and hooks printed: control characters come out escaped, so a hook's output
/// cannot rewrite the operator's terminal or forge a line.
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
            if after.request.mode == PromotionMode::InPlace {
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
        .into_iter()
        .map(|line| etcd_dr_core::printable(&line).into_owned())
        .collect()
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

/// What runs now: each running step with its detail, or with each of its running nodes and
/// theirs (`restore — cp-1: copying the snapshot (…); cp-2: restoring …`).
pub fn running_activity(record: &PromotionRecord) -> Option<String> {
    let running: Vec<String> = record
        .steps
        .iter()
        .filter(|step| step.progress.state == StepState::Running)
        .map(|step| {
            let nodes: Vec<String> = step
                .nodes
                .iter()
                .filter(|node| node.progress.state == StepState::Running)
                .map(|node| match &node.progress.detail {
                    Some(detail) => format!("{}: {detail}", node.node),
                    None => node.node.clone(),
                })
                .collect();
            match (&step.progress.detail, nodes.is_empty()) {
                (_, false) => format!("{} — {}", step.name.as_str(), nodes.join("; ")),
                (Some(detail), true) => format!("{} — {detail}", step.name.as_str()),
                (None, true) => step.name.as_str().to_string(),
            }
        })
        .collect();
    (!running.is_empty()).then(|| running.join(" | "))
}

/// The copy of a running step that is not done yet, at `now`: bytes of the total, rate and
/// time left (`restore copy: 120.0 MiB of 1.0 GiB (12 %), 40.0 MiB/s, about 22s left`; summed
/// over the step's nodes).
pub fn running_transfer(record: &PromotionRecord, now: DateTime<Utc>) -> Option<String> {
    running_copy(record)
        .map(|(step, transfer)| format!("{} copy: {}", step.as_str(), transfer.describe(now)))
}

/// The copy of a running step that is not done yet (summed over the step's nodes).
pub fn running_copy(record: &PromotionRecord) -> Option<(StepName, TransferProgress)> {
    record
        .steps
        .iter()
        .filter(|step| step.progress.state == StepState::Running)
        .find_map(|step| {
            let transfer = step.progress.transfer?;
            (transfer.done_bytes < transfer.total_bytes).then_some((step.name, transfer))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{record_transfer, PromotionTracker};
    use etcd_dr_core::{PromotionRequest, PromotionState};

    #[test]
    fn what_a_hook_printed_cannot_rewrite_the_terminal() {
        let tracker = PromotionTracker::new(PromotionRecord::new(
            "r-1".into(),
            PromotionRequest::default(),
            "ops@bastion".into(),
        ));
        tracker.start(StepName::HooksAfter, None);
        tracker.add_nodes(StepName::HooksAfter, &["notify@bastion"]);
        tracker.node_failed(
            StepName::HooksAfter,
            "notify@bastion",
            "exit 1: \u{1b}[2J\u{1b}[Hpromotion succeeded\nfake line",
        );
        let lines = progress_lines(None, &tracker.snapshot());
        assert!(
            lines.iter().all(|l| !l.chars().any(char::is_control)),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.contains(
                "notify@bastion: failed — error: exit 1: \\u{1b}[2J\\u{1b}[Hpromotion succeeded\\u{a}fake line"
            )),
            "{lines:?}"
        );
    }

    #[test]
    fn the_activity_names_the_running_step_and_each_running_node() {
        let tracker = PromotionTracker::new(PromotionRecord::new(
            "r-1".into(),
            PromotionRequest::default(),
            "ops@bastion".into(),
        ));
        assert_eq!(running_activity(&tracker.snapshot()), None);
        tracker.start(StepName::Verify, Some("streaming the snapshot back".into()));
        assert_eq!(
            running_activity(&tracker.snapshot()).as_deref(),
            Some("verify — streaming the snapshot back")
        );
        tracker.done(StepName::Verify, "checked".to_string());
        tracker.start(StepName::Restore, None);
        tracker.add_nodes(StepName::Restore, &["cp-1", "cp-2"]);
        tracker.node_start(
            StepName::Restore,
            "cp-1",
            "copying the snapshot (512 bytes)",
        );
        tracker.node_start(StepName::Restore, "cp-2", "stopping the control plane");
        tracker.node_done(StepName::Restore, "cp-2", None);
        assert_eq!(
            running_activity(&tracker.snapshot()).as_deref(),
            Some("restore — cp-1: copying the snapshot (512 bytes)")
        );
    }

    #[test]
    fn the_running_copy_is_told_with_bytes_rate_and_time_left_until_done() {
        const MIB: u64 = 1024 * 1024;
        let tracker = PromotionTracker::new(PromotionRecord::new(
            "p-1".into(),
            PromotionRequest::default(),
            "ops@bastion".into(),
        ));
        let started_at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let now = started_at + chrono::Duration::seconds(10);
        tracker.start(StepName::Restore, None);
        assert_eq!(running_transfer(&tracker.snapshot(), now), None);
        for (node, done) in [("cp1", 100 * MIB), ("cp2", 60 * MIB)] {
            let transfer = TransferProgress {
                done_bytes: done,
                total_bytes: 200 * MIB,
                started_at,
            };
            tracker.update(|r| record_transfer(r, StepName::Restore, Some(node), transfer));
        }
        assert_eq!(
            running_transfer(&tracker.snapshot(), now).as_deref(),
            Some("restore copy: 160.0 MiB of 400.0 MiB (40 %), 16.0 MiB/s, about 15s left")
        );
        let done = TransferProgress {
            done_bytes: 200 * MIB,
            total_bytes: 200 * MIB,
            started_at,
        };
        tracker.update(|r| record_transfer(r, StepName::Restore, Some("cp2"), done));
        tracker.update(|r| record_transfer(r, StepName::Restore, Some("cp1"), done));
        assert_eq!(running_transfer(&tracker.snapshot(), now), None, "copied");
    }

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
        let restore = &json["steps"][6];
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
}
