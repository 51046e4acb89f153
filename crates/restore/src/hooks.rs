//! Hooks: the operator's own commands before and after the restore (a DNS update with the
//! cloud's CLI, an application's restore step), run on the bastion or on every node, each with
//! a time limit and what its failure does. They get the promotion's facts in `DR_…` variables
//! on top of the allow-listed environment every child gets (`DR_`, not `ETCD_DR_`: those would
//! be read as configuration by an `etcd-dr` the hook runs).

use std::sync::Arc;
use std::time::Duration;

use etcd_dr_core::ConfigProblems;
use etcd_dr_nodes::{CommandOutput, LocalExecutor, Node, NodeError, NodeRole};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Bytes of a hook's stdout and of its stderr kept in the promotion record (the end of each).
pub const HOOK_OUTPUT_KEPT: usize = 2048;

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookPhase {
    /// After preflight approved the plan, before any node changes.
    Before,
    /// After the after-steps, once the restored control plane is healthy.
    After,
}

impl HookPhase {
    /// `before` or `after`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Before => "before",
            Self::After => "after",
        }
    }
}

/// Where a hook runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookTarget {
    /// On the machine etcd-dr runs on.
    #[default]
    Bastion,
    /// On every node (control plane and workers) at once, through its executor.
    Nodes,
}

/// What a failing hook (non-zero exit, timeout) does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookFailure {
    /// Stop the promotion: before the restore it fails with nothing changed on the nodes,
    /// after it every node is rolled back.
    #[default]
    Abort,
    /// Record a warning and go on.
    Warn,
}

/// One `[[promote.hooks]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Names the hook in the record and the logs.
    pub name: String,
    /// `before` or `after` the restore.
    pub phase: HookPhase,
    /// The argv to run (never through a shell unless it is one: `["sh", "-c", "…"]`).
    pub command: Vec<String>,
    /// `bastion` (default) or `nodes`.
    #[serde(default)]
    pub run_on: HookTarget,
    /// How long it may run before it is killed (and counts as failed).
    #[serde(default = "default_hook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// `abort` (default) or `warn`.
    #[serde(default)]
    pub on_failure: HookFailure,
}

fn default_hook_timeout() -> Duration {
    Duration::from_secs(300)
}

/// Reports every bad hook under `field` (e.g. `promote.hooks`).
pub fn validate_hooks(hooks: &[HookConfig], field: &str, problems: &mut ConfigProblems) {
    let mut names = std::collections::BTreeSet::new();
    for (i, hook) in hooks.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if hook.name.is_empty()
            || !hook
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            problems.push(
                format!("{at}.name"),
                "must be a non-empty name of letters, digits, `-`, `_` and `.`",
            );
        } else if !names.insert(hook.name.as_str()) {
            problems.push(format!("{at}.name"), "another hook has this name");
        }
        if hook.command.is_empty() || hook.command.iter().any(String::is_empty) {
            problems.push(
                format!("{at}.command"),
                "must be a non-empty list of words, e.g. [\"/usr/local/bin/dns-switch\", \"eu\"]",
            );
        }
        if hook.timeout < Duration::from_secs(1) {
            problems.push(format!("{at}.timeout"), "must be at least 1s");
        }
    }
}

/// The machine etcd-dr runs on, as a node a hook's command can run on.
pub fn bastion() -> Node {
    Node::new(
        NodeRole::ControlPlane,
        Arc::new(LocalExecutor::new("bastion")),
    )
}

/// How one run of a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    /// True when it exited 0 in time.
    pub succeeded: bool,
    /// Its exit (or why it has none) and the end of its output, for the record.
    pub report: String,
}

/// Runs `hook` on `node` with `env` (`NAME`, value) added to the allow-listed environment
/// (through `env`, so the same argv works over ssh). Never fails: how it went is the run.
pub async fn run_hook(
    hook: &HookConfig,
    node: &Node,
    env: &[(String, String)],
    cancel: &CancellationToken,
) -> HookRun {
    let mut argv = vec!["env".to_string()];
    argv.extend(env.iter().map(|(name, value)| format!("{name}={value}")));
    argv.extend(hook.command.iter().cloned());
    let result = node
        .command(argv)
        .label(format!("hook {}", hook.name))
        .timeout(hook.timeout)
        .output(cancel)
        .await;
    match result {
        Ok(output) => HookRun {
            succeeded: output.status.success(),
            report: describe(&output),
        },
        Err(error) => HookRun {
            succeeded: false,
            report: match error {
                NodeError::TimedOut { timeout, .. } => format!(
                    "killed after its timeout of {}",
                    humantime::format_duration(timeout)
                ),
                other => other.to_string(),
            },
        },
    }
}

fn describe(output: &CommandOutput) -> String {
    let mut text = match output.status.code() {
        Some(code) => format!("exit {code}"),
        None => output.status.to_string(),
    };
    let stdout = tail(&output.stdout_text(), HOOK_OUTPUT_KEPT);
    if !stdout.trim().is_empty() {
        text.push_str(&format!("; stdout: {}", stdout.trim()));
    }
    let stderr = tail(&output.stderr, HOOK_OUTPUT_KEPT);
    if !stderr.trim().is_empty() {
        text.push_str(&format!("; stderr: {}", stderr.trim()));
    }
    text
}

/// The last `limit` bytes of `text` (at a character boundary), marked when cut.
fn tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(command: &[&str]) -> HookConfig {
        HookConfig {
            name: "dns".into(),
            phase: HookPhase::Before,
            command: command.iter().map(|w| w.to_string()).collect(),
            run_on: HookTarget::Bastion,
            timeout: Duration::from_secs(5),
            on_failure: HookFailure::Abort,
        }
    }

    #[tokio::test]
    async fn runs_with_its_environment_and_keeps_the_end_of_its_output() {
        let cancel = CancellationToken::new();
        let env = vec![("DR_PROMOTION_ID".to_string(), "p-1".to_string())];
        let run = run_hook(
            &hook(&[
                "sh",
                "-c",
                "echo \"id=$DR_PROMOTION_ID cargo=${CARGO_MANIFEST_DIR:-none}\"",
            ]),
            &bastion(),
            &env,
            &cancel,
        )
        .await;
        assert!(run.succeeded);
        assert_eq!(run.report, "exit 0; stdout: id=p-1 cargo=none");

        let run = run_hook(
            &hook(&["sh", "-c", "seq 1 5000; echo broken >&2; exit 7"]),
            &bastion(),
            &env,
            &cancel,
        )
        .await;
        assert!(!run.succeeded);
        assert!(
            run.report.starts_with("exit 7; stdout: …"),
            "{}",
            run.report
        );
        assert!(
            run.report.ends_with("5000; stderr: broken"),
            "{}",
            run.report
        );
        assert!(run.report.len() < 2 * HOOK_OUTPUT_KEPT + 100);

        let mut slow = hook(&["sleep", "30"]);
        slow.timeout = Duration::from_secs(1);
        let run = run_hook(&slow, &bastion(), &env, &cancel).await;
        assert!(!run.succeeded);
        assert_eq!(run.report, "killed after its timeout of 1s");
    }

    #[test]
    fn validates_every_hook() {
        let mut twice = hook(&["true"]);
        twice.timeout = Duration::ZERO;
        let hooks = vec![hook(&["true"]), twice, hook(&[])];
        let mut problems = ConfigProblems::default();
        validate_hooks(&hooks, "promote.hooks", &mut problems);
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "promote.hooks[1].name",
                "promote.hooks[1].timeout",
                "promote.hooks[2].name",
                "promote.hooks[2].command",
            ]
        );
    }
}
