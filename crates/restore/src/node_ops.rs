//! What a promotion does on one node, through its executor: gather the preflight facts, restore,
//! put back. Every command is an argv vector; scripts get their values as positional arguments,
//! never spliced into the script text.

use std::path::Path;
use std::time::Duration;

use etcd_dr_nodes::{Node, NodeError};
use tokio_util::sync::CancellationToken;

use etcd_dr_core::{EtcdVersion, NodePlan, PromotionPlan, StepName};

use crate::{parse_etcd_pod, NodeFacts, PromoteConfig, PromoteError, PromotionTracker};

/// The primary's service-account signing keys, from the snapshot's node bundle.
#[derive(Clone)]
pub struct ServiceAccountKeys {
    /// `sa.key` (PEM private key).
    pub key: Vec<u8>,
    /// `sa.pub` (PEM public key).
    pub public: Vec<u8>,
}

impl std::fmt::Debug for ServiceAccountKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("ServiceAccountKeys")
            .field("key", &format_args!("<{} bytes>", self.key.len()))
            .field("public", &format_args!("<{} bytes>", self.public.len()))
            .finish()
    }
}

const FACTS_SCRIPT: &str = r#"data=$1
tool=$2
printf 'host\t%s\n' "$(hostname)"
if [ -n "$data" ]; then
    if [ -d "$data" ]; then printf 'data\tyes\n'; else printf 'data\tno\n'; fi
    probe=$data
    while [ ! -e "$probe" ] && [ "$probe" != / ]; do probe=$(dirname "$probe"); done
    printf 'free\t%s\n' "$(df -P -k "$probe" 2>/dev/null | tail -n 1 | awk '{print $4}')"
fi
path=$(command -v "$tool" 2>/dev/null) || path=
printf 'tool\t%s\n' "$path"
if [ -n "$path" ]; then
    printf 'version\t%s\n' "$(ETCDCTL_API=3 "$path" version 2>/dev/null | head -n 1)"
    if ETCDCTL_API=3 "$path" snapshot restore --help 2>&1 | grep -q -- '--bump-revision'; then
        printf 'bump\tyes\n'
    else
        printf 'bump\tno\n'
    fi
fi"#;

/// Gathers what the preflight judges on `node`: host name, etcd manifest, data dir, free
/// space, restore tool and its version. Changes nothing. `Err` only when the node cannot be
/// asked at all ([`PromoteError::Facts`], [`PromoteError::NoHostName`], naming the node).
pub async fn gather_facts(
    node: &Node,
    config: &PromoteConfig,
    tool_program: &str,
    cancel: &CancellationToken,
) -> Result<NodeFacts, PromoteError> {
    let name = node.name().to_string();
    let fail = |source: NodeError| PromoteError::Facts {
        node: name.clone(),
        source,
    };
    let manifest = node
        .command(["cat", config.etcd_manifest.as_str()])
        .label(format!("cat {}", config.etcd_manifest))
        .output(cancel)
        .await
        .map_err(fail)?;
    let pod = if manifest.status.success() {
        parse_etcd_pod(&manifest.stdout_text())
            .map_err(|e| format!("etcd manifest `{}`: {e}", config.etcd_manifest))
    } else {
        Err(format!(
            "cannot read the etcd manifest `{}`: {}",
            config.etcd_manifest, manifest.stderr
        ))
    };
    let data_dir = config
        .data_dir
        .clone()
        .or_else(|| pod.as_ref().ok().and_then(|p| p.data_dir.clone()));
    let output = node
        .command([
            "sh".to_string(),
            "-c".into(),
            FACTS_SCRIPT.into(),
            "sh".into(),
            data_dir.clone().unwrap_or_default(),
            tool_program.to_string(),
        ])
        .label("preflight")
        .run(cancel)
        .await
        .map_err(fail)?;
    let mut facts = NodeFacts {
        node: name.clone(),
        host_name: String::new(),
        pod,
        data_dir,
        data_dir_exists: false,
        tool_path: None,
        tool_version: None,
        tool_bumps: false,
        free_bytes: None,
    };
    for line in output.stdout_text().lines() {
        let (key, value) = line.split_once('\t').unwrap_or((line, ""));
        match key {
            "host" => facts.host_name = value.trim().to_string(),
            "data" => facts.data_dir_exists = value == "yes",
            "free" => facts.free_bytes = value.trim().parse::<u64>().ok().map(|k| k * 1024),
            "tool" if !value.is_empty() => facts.tool_path = Some(value.to_string()),
            "version" => facts.tool_version = EtcdVersion::from_tool_output(value),
            "bump" => facts.tool_bumps = value == "yes",
            _ => {}
        }
    }
    if facts.host_name.is_empty() {
        return Err(PromoteError::NoHostName { node: name });
    }
    Ok(facts)
}

/// Moves the old data aside inside the work dir and keeps a copy of the Kubernetes dir. Refuses
/// a work dir that exists (a promotion with this id already ran here).
const PREPARE_SCRIPT: &str = r#"set -e
data=$1
work=$2
kube=$3
if [ -e "$work" ]; then
    echo "$work already exists" >&2
    exit 1
fi
mkdir -p "$data"
mkdir -m 700 "$work"
cp -a "$kube" "$work/kubernetes"
mkdir "$work/old"
for entry in "$data"/* "$data"/.[!.]* "$data"/..?*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    case "${entry##*/}" in etcd-dr-*) continue ;; esac
    mv "$entry" "$work/old/"
done"#;

/// Moves the restored member into the data dir and drops the snapshot copy.
const INSTALL_SCRIPT: &str = r#"set -e
data=$1
work=$2
for entry in "$work/restored"/*; do
    [ -e "$entry" ] || continue
    mv "$entry" "$data/"
done
rmdir "$work/restored"
rm -f "$work/snapshot.db""#;

/// Puts the old data and service-account keys back. Idempotent; a node without a work dir
/// was never changed.
const ROLLBACK_SCRIPT: &str = r#"set -e
data=$1
work=$2
kube=$3
if [ ! -d "$work" ]; then
    echo "unchanged"
    exit 0
fi
if [ -d "$work/old" ]; then
    mkdir -p "$work/discarded"
    for entry in "$data"/* "$data"/.[!.]* "$data"/..?*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        case "${entry##*/}" in etcd-dr-*) continue ;; esac
        mv "$entry" "$work/discarded/"
    done
    for entry in "$work/old"/* "$work/old"/.[!.]* "$work/old"/..?*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        mv "$entry" "$data/"
    done
    rmdir "$work/old"
fi
if [ -d "$work/kubernetes/pki" ]; then
    for f in sa.key sa.pub; do
        if [ -e "$work/kubernetes/pki/$f" ]; then
            cp -p "$work/kubernetes/pki/$f" "$kube/pki/$f"
        elif [ -e "$kube/pki/$f" ]; then
            mkdir -p "$work/discarded"
            mv "$kube/pki/$f" "$work/discarded/$f"
        fi
    done
fi
rm -f "$work/snapshot.db"
echo "restored""#;

fn script(body: &str, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["sh".to_string(), "-c".into(), body.into(), "sh".into()];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}

/// How the control plane of a node went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Through the stop commands.
    ByStopCommands,
    /// etcd outlived `stop_timeout`: the force stop ended it.
    ByForceStop,
}

impl Stopped {
    /// For the record: what the force stop did on `node`, if it ran.
    pub fn warning(self, node: &str, config: &PromoteConfig) -> Option<String> {
        (self == Self::ByForceStop).then(|| {
            format!(
                "node {node}: etcd still ran {} after the stop commands; the force stop ([promote] force_stop_command) ended it",
                humantime::format_duration(config.stop_timeout)
            )
        })
    }
}

/// Runs the configured stop commands, then waits until the etcd-stopped check succeeds; after
/// `stop_timeout`, force-stops (see [`force_stop`]).
pub async fn stop_control_plane(
    node: &Node,
    config: &PromoteConfig,
    cancel: &CancellationToken,
) -> Result<Stopped, PromoteError> {
    for command in &config.stop_control_plane {
        node.command(command.iter().cloned()).run(cancel).await?;
    }
    let deadline = tokio::time::Instant::now() + config.stop_timeout;
    loop {
        let check = node
            .command(config.etcd_stopped_check.iter().cloned())
            .label("etcd stopped check")
            .output(cancel)
            .await?;
        if check.status.success() {
            return Ok(Stopped::ByStopCommands);
        }
        if tokio::time::Instant::now() >= deadline {
            force_stop(node, config, cancel).await?;
            return Ok(Stopped::ByForceStop);
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(PromoteError::Cancelled),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// etcd outlived the grace period: runs the force stop (SIGKILL of what is left of the control
/// plane, which fails unless all of it is gone), then the etcd-stopped check once more.
async fn force_stop(
    node: &Node,
    config: &PromoteConfig,
    cancel: &CancellationToken,
) -> Result<(), PromoteError> {
    if config.force_stop_command.is_empty() {
        return Err(PromoteError::EtcdStillRunning {
            node: node.name().to_string(),
            waited: config.stop_timeout,
        });
    }
    let grace = humantime::format_duration(config.stop_timeout);
    tracing::warn!(node = node.name(), %grace, "etcd outlived the stop commands: force stop");
    node.command(config.force_stop_command.iter().cloned())
        .label("force stop")
        .run(cancel)
        .await?;
    let check = node
        .command(config.etcd_stopped_check.iter().cloned())
        .label("etcd stopped check")
        .output(cancel)
        .await?;
    if check.status.success() {
        Ok(())
    } else {
        Err(PromoteError::EtcdSurvivedForceStop {
            node: node.name().to_string(),
        })
    }
}

/// Runs the configured start commands.
pub async fn start_control_plane(
    node: &Node,
    config: &PromoteConfig,
    cancel: &CancellationToken,
) -> Result<(), PromoteError> {
    for command in &config.start_control_plane {
        node.command(command.iter().cloned()).run(cancel).await?;
    }
    Ok(())
}

/// The whole restore on one node: stop, keep aside, copy, restore, install keys, start. Each
/// stage is shown in the node's detail. On error the caller rolls every node back.
#[allow(clippy::too_many_arguments)]
pub async fn restore_node(
    node: &Node,
    node_plan: &NodePlan,
    plan: &PromotionPlan,
    config: &PromoteConfig,
    snapshot: &Path,
    snapshot_size: u64,
    keys: Option<&ServiceAccountKeys>,
    tracker: &PromotionTracker,
    cancel: &CancellationToken,
) -> Result<(), PromoteError> {
    let name = node.name();
    let step = StepName::Restore;
    let data = node_plan.data_dir.as_str();
    let work = node_plan.work_dir.as_str();
    let kube = config.kubernetes_dir.as_str();

    tracker.node_detail(step, name, "stopping the control plane");
    let stopped = stop_control_plane(node, config, cancel).await?;
    if let Some(warning) = stopped.warning(name, config) {
        tracker.update(|r| r.warnings.push(warning));
    }

    tracker.node_detail(
        step,
        name,
        format!("keeping the old data dir and {kube} aside in {work}"),
    );
    node.command(script(PREPARE_SCRIPT, &[data, work, kube]))
        .label("keep aside")
        .run(cancel)
        .await?;

    tracker.node_detail(
        step,
        name,
        format!("copying the snapshot ({snapshot_size} bytes)"),
    );
    let remote_snapshot = format!("{work}/snapshot.db");
    let file = tokio::fs::File::open(snapshot)
        .await
        .map_err(|e| PromoteError::local_io("opening", snapshot.display(), e))?;
    let copy = tracker.watch_transfer(step, Some(name), snapshot_size);
    node.write_file(
        &remote_snapshot,
        0o600,
        snapshot_size,
        copy.reader(file),
        cancel,
    )
    .await?;
    drop(copy);

    tracker.node_detail(
        step,
        name,
        format!("restoring with {}", plan.tool.program()),
    );
    let target = format!("{work}/restored");
    node.command(plan.restore_argv(node_plan, &remote_snapshot, &target))
        .label("snapshot restore")
        .run(cancel)
        .await?;
    node.command(script(INSTALL_SCRIPT, &[data, work]))
        .label("install restored data")
        .run(cancel)
        .await?;

    if let Some(keys) = keys {
        tracker.node_detail(step, name, "installing the primary's service-account keys");
        let pki = format!("{kube}/pki");
        node.command(["mkdir", "-p", pki.as_str()])
            .run(cancel)
            .await?;
        node.write_file(
            &format!("{pki}/sa.key"),
            0o600,
            keys.key.len() as u64,
            keys.key.as_slice(),
            cancel,
        )
        .await?;
        node.write_file(
            &format!("{pki}/sa.pub"),
            0o644,
            keys.public.len() as u64,
            keys.public.as_slice(),
            cancel,
        )
        .await?;
    }

    tracker.node_detail(step, name, "starting the control plane");
    start_control_plane(node, config, cancel).await?;
    Ok(())
}

/// Puts one node back as it was before the promotion and restarts its control plane. Returns
/// what was done (`unchanged` for a node the restore never touched, which is left running).
pub async fn rollback_node(
    node: &Node,
    node_plan: &NodePlan,
    config: &PromoteConfig,
    cancel: &CancellationToken,
) -> Result<String, PromoteError> {
    // Stopping twice is harmless; a node that failed half-way may be in any state.
    let probe = node
        .command(["test", "-d", node_plan.work_dir.as_str()])
        .output(cancel)
        .await?;
    if !probe.status.success() {
        // Never touched: if the restore stopped it before failing, start it again.
        start_control_plane(node, config, cancel).await?;
        return Ok("unchanged; control plane started".into());
    }
    let stopped = stop_control_plane(node, config, cancel).await?;
    let output = node
        .command(script(
            ROLLBACK_SCRIPT,
            &[
                node_plan.data_dir.as_str(),
                node_plan.work_dir.as_str(),
                config.kubernetes_dir.as_str(),
            ],
        ))
        .label("put back")
        .run(cancel)
        .await?;
    start_control_plane(node, config, cancel).await?;
    let force_stopped = match stopped {
        Stopped::ByForceStop => " (stopped by the force stop)",
        Stopped::ByStopCommands => "",
    };
    Ok(format!(
        "old data dir and service-account keys put back ({}){force_stopped}; the restore's leftovers are in {}/discarded",
        output.stdout_text().trim(),
        node_plan.work_dir
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use etcd_dr_nodes::{LocalExecutor, NodeRole};
    use etcd_dr_scheduler::EtcdConfig;

    use super::*;

    fn sh(script: String) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script]
    }

    #[tokio::test]
    async fn etcd_outliving_the_stop_commands_is_force_stopped_and_said_so() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("etcd-gone");
        let node = Node::new(NodeRole::ControlPlane, Arc::new(LocalExecutor::new("cp1")));
        let mut config = PromoteConfig::new(EtcdConfig::plain(vec![]));
        config.stop_control_plane = vec![vec!["true".into()]];
        config.etcd_stopped_check = vec!["test".into(), "-e".into(), gone.display().to_string()];
        config.force_stop_command = sh(format!("touch '{}'", gone.display()));
        config.stop_timeout = Duration::from_secs(1);
        let cancel = CancellationToken::new();

        let stopped = stop_control_plane(&node, &config, &cancel).await.unwrap();
        assert_eq!(stopped, Stopped::ByForceStop);
        assert_eq!(
            stopped.warning("cp1", &config).unwrap(),
            "node cp1: etcd still ran 1s after the stop commands; the force stop ([promote] force_stop_command) ended it"
        );

        // Down through the stop commands: no force stop, nothing to say.
        let stopped = stop_control_plane(&node, &config, &cancel).await.unwrap();
        assert_eq!(stopped, Stopped::ByStopCommands);
        assert_eq!(stopped.warning("cp1", &config), None);

        // Without a force stop, etcd still running fails the stop.
        std::fs::remove_file(&gone).unwrap();
        config.force_stop_command = Vec::new();
        let error = stop_control_plane(&node, &config, &cancel)
            .await
            .unwrap_err();
        assert!(
            matches!(error, PromoteError::EtcdStillRunning { .. }),
            "{error}"
        );
    }
}
