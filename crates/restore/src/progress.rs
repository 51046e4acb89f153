//! The promotion's progress as lines of text, for the command line.

use etcd_dr_core::{Progress, PromotionMode, PromotionRecord, StepState};

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
    use crate::PromotionTracker;
    use etcd_dr_core::{PromotionRequest, PromotionState, StepName};

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
