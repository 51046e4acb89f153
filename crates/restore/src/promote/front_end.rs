//! The API front-end step: after the restore (before health, which may reach the API by that
//! name), the front-end name points at the secondary on every node; a later failure puts every
//! node's marked lines back as they were.

use std::net::IpAddr;

use etcd_dr_core::{SnapshotManifest, StepName, StepState};
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::promoter::Promoter;
use crate::{
    alias_line, replace_marked_lines, restore_marked_lines, MarkedLine, PromoteError,
    PromotionTracker,
};

/// The hosts files the step changed: each node with the marked lines it held before, where
/// they were.
#[derive(Debug, Default)]
pub(super) struct FrontEndChanges {
    nodes: Vec<(String, Vec<MarkedLine>)>,
}

impl Promoter {
    /// What a dry run's front-end step would do.
    pub(super) fn plan_front_end(&self, manifest: &SnapshotManifest, tracker: &PromotionTracker) {
        let config = &self.config.front_end;
        let why = match (
            config.enabled,
            self.front_end_name(manifest),
            &config.address,
        ) {
            (true, Some(name), Some(address)) => format!(
                "dry run: would point {name} at {address} on {} node(s) ({})",
                self.every_node().count(),
                config.hosts_file
            ),
            _ => "[promote.front_end] is not enabled".to_string(),
        };
        tracker.skipped(StepName::FrontEnd, why);
    }

    /// Points the front-end name at `[promote.front_end] address` on every node (control
    /// plane and workers); skipped unless enabled. Every node whose file changed is in
    /// `changed`, also when the step fails.
    pub(super) async fn front_end(
        &self,
        manifest: &SnapshotManifest,
        changed: &mut FrontEndChanges,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> Result<(), PromoteError> {
        let step = StepName::FrontEnd;
        let config = &self.config.front_end;
        if !config.enabled {
            tracker.skipped(step, "[promote.front_end] is not enabled");
            return Ok(());
        }
        // Preflight refused a promotion without either; checked again rather than assumed.
        let (Some(name), Some(address)) = (self.front_end_name(manifest), config.address.clone())
        else {
            return Err(PromoteError::FrontEnd(
                "no front-end name or address ([promote.front_end] name, address)".into(),
            ));
        };
        tracker.start(
            step,
            format!(
                "pointing {name} at {address} on every node ({})",
                config.hosts_file
            ),
        );
        let names: Vec<&str> = self.every_node().map(|n| n.name()).collect();
        tracker.add_nodes(step, &names);
        let line = alias_line(&address, &name);
        let wanted: Option<IpAddr> = address.parse().ok();
        let results = join_all(self.every_node().map(|node| {
            let lines = [line.clone()];
            let name = name.as_str();
            let address = address.as_str();
            async move {
                tracker.node_start(step, node.name(), "writing the alias");
                let result =
                    replace_marked_lines(node, &config.hosts_file, Some(name), &lines, cancel)
                        .await;
                let outcome = match &result {
                    Ok(replaced) => {
                        let first = replaced.resolves_to.first();
                        if first.and_then(|a| a.parse::<IpAddr>().ok()) == wanted {
                            tracker.node_done(
                                step,
                                node.name(),
                                format!("{name} → {address} ({} replaced)", replaced.previous.len()),
                            );
                            Ok(())
                        } else {
                            let text = format!(
                                "{}: {name} resolves to {} after the alias, not {address}: another source wins (nsswitch order, DNS)",
                                node.name(),
                                first.map(String::as_str).unwrap_or("nothing")
                            );
                            tracker.node_failed(step, node.name(), &text);
                            Err(text)
                        }
                    }
                    Err(error) => {
                        tracker.node_failed(step, node.name(), error);
                        Err(format!("{}: {error}", node.name()))
                    }
                };
                (node.name().to_string(), result.ok().map(|r| r.previous), outcome)
            }
        }))
        .await;
        let mut failures = Vec::new();
        for (node, previous, outcome) in results {
            if let Some(previous) = previous {
                changed.nodes.push((node, previous));
            }
            if let Err(text) = outcome {
                failures.push(text);
            }
        }
        if !failures.is_empty() {
            return Err(PromoteError::FrontEnd(failures.join("; ")));
        }
        tracker.done(
            step,
            format!("{name} → {address} on {} node(s)", changed.nodes.len()),
        );
        Ok(())
    }

    /// Puts the marked lines of every changed hosts file back; returns the nodes where that
    /// failed. Runs to its end even during shutdown, as the rest of the rollback.
    pub(super) async fn put_front_end_back(
        &self,
        changed: &FrontEndChanges,
        tracker: &PromotionTracker,
    ) -> Vec<String> {
        let cancel = CancellationToken::new();
        let hosts_file = &self.config.front_end.hosts_file;
        let results = join_all(changed.nodes.iter().map(|(name, previous)| {
            let cancel = cancel.clone();
            async move {
                let Some(node) = self.every_node().find(|n| n.name() == name) else {
                    return Some(name.clone());
                };
                match restore_marked_lines(node, hosts_file, previous, &cancel).await {
                    Ok(_) => {
                        tracker.node_state(StepName::FrontEnd, name, StepState::RolledBack);
                        None
                    }
                    Err(error) => {
                        tracing::error!(node = %name, %error, "could not put the hosts file back");
                        tracker.node_failed(StepName::FrontEnd, name, format!("rollback: {error}"));
                        Some(name.clone())
                    }
                }
            }
        }))
        .await;
        if !changed.nodes.is_empty() {
            tracker.set_state(StepName::FrontEnd, StepState::RolledBack);
        }
        results.into_iter().flatten().collect()
    }
}
