//! What each after-step action of a promotion did, one typed entry per action and target, as
//! the record (`GET /v1/promote`, `--json`) carries it in `after_results`.

use serde::Serialize;

/// Which after-step action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfterAction {
    /// Waiting for every Node to report Ready.
    NodesReady,
    /// Restarting kubelet on a worker node.
    KubeletRestart,
    /// `kubectl rollout restart` of one workload (Deployment, DaemonSet, StatefulSet).
    RolloutRestart,
    /// Deleting a pod that caches the old cluster's state (kube-proxy, controller manager,
    /// scheduler).
    PodDelete,
}

impl AfterAction {
    /// The action's name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodesReady => "nodes-ready",
            Self::KubeletRestart => "kubelet-restart",
            Self::RolloutRestart => "rollout-restart",
            Self::PodDelete => "pod-delete",
        }
    }
}

/// How one action on one target ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfterOutcome {
    /// Done.
    Done,
    /// Failed (see the detail); the restore stands.
    Failed,
    /// Not done: not configured, or nothing to act on (see the detail).
    Skipped,
    /// Done, but what it found needs a look (a Node that did not turn Ready).
    Warning,
}

impl AfterOutcome {
    /// The outcome's name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Warning => "warning",
        }
    }
}

/// What acts on every object at once, when an action has no single target (a list that
/// failed, every Node Ready, a step that is not configured).
pub const ALL_TARGETS: &str = "*";

/// One action on one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AfterResult {
    /// Which action.
    pub action: AfterAction,
    /// The Kubernetes resource acted on, plural (`nodes`, `deployments`, `daemonsets`,
    /// `statefulsets`, `pods`); none for a kubelet restart (it acts on a machine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// What it acted on: a Node's or worker's name, `namespace/name` of a workload or pod, or
    /// [`ALL_TARGETS`].
    pub target: String,
    /// How it ended.
    pub outcome: AfterOutcome,
    /// Why it failed, was skipped or warns; what it did otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AfterResult {
    /// `action` on `target` ended with `outcome`.
    pub fn new(action: AfterAction, target: impl Into<String>, outcome: AfterOutcome) -> Self {
        Self {
            action,
            resource: None,
            target: target.into(),
            outcome,
            detail: None,
        }
    }

    /// The same, on `resource`.
    pub fn on(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// The same, saying `detail`.
    pub fn saying(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// `rollout-restart deployments default/web: done` (and `: detail` when there is one).
    pub fn describe(&self) -> String {
        let mut text = self.action.as_str().to_string();
        if let Some(resource) = &self.resource {
            text.push(' ');
            text.push_str(resource);
        }
        text.push_str(&format!(" {}: {}", self.target, self.outcome.as_str()));
        if let Some(detail) = &self.detail {
            text.push_str(&format!(" ({detail})"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_serialises_with_kebab_names_and_without_empty_fields() {
        let restarted = AfterResult::new(
            AfterAction::RolloutRestart,
            "default/web",
            AfterOutcome::Done,
        )
        .on("deployments");
        assert_eq!(
            serde_json::to_value(&restarted).unwrap(),
            serde_json::json!({
                "action": "rollout-restart", "resource": "deployments",
                "target": "default/web", "outcome": "done",
            })
        );
        assert_eq!(
            restarted.describe(),
            "rollout-restart deployments default/web: done"
        );
        let kubelet = AfterResult::new(AfterAction::KubeletRestart, "w1", AfterOutcome::Failed)
            .saying("exit status 1");
        let json = serde_json::to_value(&kubelet).unwrap();
        assert_eq!(json["action"], "kubelet-restart");
        assert_eq!(json["outcome"], "failed");
        assert_eq!(json["detail"], "exit status 1");
        assert!(json.get("resource").is_none());
        assert_eq!(
            kubelet.describe(),
            "kubelet-restart w1: failed (exit status 1)"
        );
        for (outcome, name) in [
            (AfterOutcome::Skipped, "skipped"),
            (AfterOutcome::Warning, "warning"),
        ] {
            assert_eq!(serde_json::to_value(outcome).unwrap(), name);
            assert_eq!(outcome.as_str(), name);
        }
        for action in [
            AfterAction::NodesReady,
            AfterAction::KubeletRestart,
            AfterAction::RolloutRestart,
            AfterAction::PodDelete,
        ] {
            assert_eq!(serde_json::to_value(action).unwrap(), action.as_str());
        }
    }
}
