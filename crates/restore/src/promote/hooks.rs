//! The hook steps: the configured `before` hooks after preflight (nothing changed yet), the
//! `after` hooks last; each hook on the bastion or on every node, in the configured order.

use etcd_dr_core::{PromotionRecord, SnapshotManifest, StepName};
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::promoter::Promoter;
use crate::hooks::bastion;
use crate::{run_hook, HookFailure, HookPhase, HookTarget, PromoteError, PromotionTracker};

impl Promoter {
    /// The step of `phase`'s hooks.
    pub(super) fn hook_step(phase: HookPhase) -> StepName {
        match phase {
            HookPhase::Before => StepName::HooksBefore,
            HookPhase::After => StepName::HooksAfter,
        }
    }

    /// Names the hooks of `phase` a dry run would run, or says there are none.
    pub(super) fn plan_hooks(&self, phase: HookPhase, tracker: &PromotionTracker) {
        let names: Vec<String> = self
            .config
            .hooks
            .iter()
            .filter(|h| h.phase == phase)
            .map(|h| h.name.clone())
            .collect();
        let why = if names.is_empty() {
            "no hooks".to_string()
        } else {
            format!("dry run: would run {}", names.join(", "))
        };
        tracker.skipped(Self::hook_step(phase), why);
    }

    /// Runs the hooks of `phase` in order. A failing hook set to `abort` ends the step with an
    /// error; one set to `warn` adds a warning and the next hook runs.
    pub(super) async fn hooks(
        &self,
        phase: HookPhase,
        record: &PromotionRecord,
        manifest: &SnapshotManifest,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> Result<(), PromoteError> {
        let step = Self::hook_step(phase);
        let hooks: Vec<_> = self
            .config
            .hooks
            .iter()
            .filter(|h| h.phase == phase)
            .collect();
        if hooks.is_empty() {
            tracker.skipped(step, "no hooks");
            return Ok(());
        }
        tracker.start(step, None);
        let join = |nodes: &[etcd_dr_nodes::Node]| {
            nodes.iter().map(|n| n.name()).collect::<Vec<_>>().join(" ")
        };
        let env = vec![
            ("DR_PROMOTION_ID".to_string(), record.id.clone()),
            ("DR_SNAPSHOT".into(), manifest.id.to_string()),
            ("DR_CLUSTER".into(), manifest.cluster.clone()),
            ("DR_MODE".into(), record.request.mode.as_str().into()),
            ("DR_HOOK_PHASE".into(), phase.as_str().into()),
            ("DR_CONTROL_PLANE_NODES".into(), join(&self.control_plane)),
            ("DR_WORKER_NODES".into(), join(&self.workers)),
        ];
        let mut warned = Vec::new();
        for hook in &hooks {
            let targets = match hook.run_on {
                HookTarget::Bastion => vec![bastion()],
                HookTarget::Nodes => self.every_node().cloned().collect(),
            };
            let labels: Vec<String> = targets
                .iter()
                .map(|t| format!("{}@{}", hook.name, t.name()))
                .collect();
            tracker.add_nodes(step, &labels);
            let runs = join_all(targets.iter().zip(&labels).map(|(target, label)| {
                let mut env = env.clone();
                env.push(("DR_HOOK_NAME".into(), hook.name.clone()));
                if hook.run_on == HookTarget::Nodes {
                    env.push(("DR_NODE".into(), target.name().to_string()));
                }
                async move {
                    tracker.node_start(step, label, "running");
                    let run = run_hook(hook, target, &env, cancel).await;
                    if run.succeeded {
                        tracing::info!(hook = %label, phase = phase.as_str(), report = %run.report, "hook ran");
                        tracker.node_done(step, label, run.report.clone());
                    } else {
                        tracing::warn!(hook = %label, phase = phase.as_str(), report = %run.report, "hook failed");
                        tracker.node_failed(step, label, &run.report);
                    }
                    (label, run)
                }
            }))
            .await;
            let failures: Vec<String> = runs
                .iter()
                .filter(|(_, run)| !run.succeeded)
                .map(|(label, run)| format!("{label}: {}", run.report))
                .collect();
            if failures.is_empty() {
                continue;
            }
            let detail = failures.join("; ");
            match hook.on_failure {
                HookFailure::Abort => {
                    return Err(PromoteError::Hook {
                        name: hook.name.clone(),
                        phase: phase.as_str(),
                        detail,
                    })
                }
                HookFailure::Warn => {
                    let text = format!(
                        "hook {} ({}) failed, the promotion goes on (on_failure = \"warn\"): {detail}",
                        hook.name,
                        phase.as_str()
                    );
                    tracker.update(|r| r.warnings.push(text));
                    warned.push(hook.name.as_str());
                }
            }
        }
        let mut detail = format!("{} hook(s) ran", hooks.len());
        if !warned.is_empty() {
            detail.push_str(&format!("; failed (warn): {}", warned.join(", ")));
        }
        tracker.done(step, detail);
        Ok(())
    }
}
