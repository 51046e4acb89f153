//! `etcd-dr nodes check`: reach every configured node and show what it has.

use anyhow::bail;
use etcd_dr_nodes::{check_node, Node, NodeReport, NodeRole};
use etcd_dr_scheduler::EtcdSource;
use tokio_util::sync::CancellationToken;

use super::{human_bytes, shutdown_token};
use crate::settings::Settings;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: NodesCommand,
}

#[derive(clap::Subcommand)]
enum NodesCommand {
    /// Reach every node: host name, tools, free space; fails if any node is unreachable.
    Check,
}

/// Tools a control-plane node needs for a restore and for bundles.
const CONTROL_PLANE_TOOLS: &[&str] = &["etcdutl", "etcdctl", "tar", "sha256sum", "systemctl"];
/// Tools a worker needs after a promote.
const WORKER_TOOLS: &[&str] = &["systemctl"];

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let NodesCommand::Check = args.command;
    let cancel = shutdown_token();
    let nodes = configured_nodes(settings, &cancel).await?;
    if nodes.is_empty() {
        bail!("no nodes configured: set nodes.control_plane (and nodes.workers), or nodes.discover_control_plane = true");
    }
    let reports = futures::future::join_all(nodes.iter().map(|node| {
        let tools = match node.role() {
            NodeRole::ControlPlane => CONTROL_PLANE_TOOLS,
            NodeRole::Worker => WORKER_TOOLS,
        };
        check_node(node, tools, &settings.nodes.space_paths, &cancel)
    }))
    .await;

    println!(
        "{:<20} {:<14} {:<12} {:<20} {:<24} FREE SPACE",
        "NODE", "ROLE", "STATUS", "HOST NAME", "MISSING TOOLS"
    );
    let mut unreachable = Vec::new();
    for (node, report) in nodes.iter().zip(&reports) {
        match report {
            Ok(report) => print_report(node, report),
            Err(error) => {
                let status = if error.is_unreachable() {
                    "UNREACHABLE"
                } else {
                    "FAILED"
                };
                println!(
                    "{:<20} {:<14} {:<12} {:<20} {:<24} -",
                    node.name(),
                    node.role().as_str(),
                    status,
                    "-",
                    "-"
                );
                unreachable.push(format!("{error}"));
            }
        }
    }
    if !unreachable.is_empty() {
        for error in &unreachable {
            eprintln!("{error}");
        }
        bail!(
            "{} of {} nodes failed the check",
            unreachable.len(),
            nodes.len()
        );
    }
    Ok(())
}

fn print_report(node: &Node, report: &NodeReport) {
    // kubeadm's names live inside etcd: the node must answer to the same short name.
    let short = report.host_name.split('.').next().unwrap_or_default();
    let status = if short == node.name() || report.host_name == node.name() {
        "ok"
    } else {
        "NAME-DIFFERS"
    };
    let missing = report.missing_tools();
    let space: Vec<String> = report
        .space
        .iter()
        .map(|(path, free)| match free {
            Some(free) => format!("{path}={}", human_bytes(free.available)),
            None => format!("{path}=missing"),
        })
        .collect();
    println!(
        "{:<20} {:<14} {:<12} {:<20} {:<24} {}",
        node.name(),
        node.role().as_str(),
        status,
        report.host_name,
        if missing.is_empty() {
            "-".to_string()
        } else {
            missing.join(",")
        },
        space.join(" ")
    );
}

/// The configured control-plane and worker nodes; control-plane nodes come from the etcd member
/// names when `nodes.discover_control_plane` is set and none are listed.
pub async fn configured_nodes(
    settings: &Settings,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<Node>> {
    let config = &settings.nodes;
    let mut nodes = if config.control_plane.is_empty() && config.discover_control_plane {
        let survey = EtcdSource::new(settings.etcd()?.clone())?
            .survey(cancel)
            .await?;
        let mut names: Vec<String> = survey
            .members
            .iter()
            .map(|m| m.name.clone())
            .filter(|name| etcd_dr_nodes::is_valid_node_name(name))
            .collect();
        names.sort();
        names.dedup();
        config.nodes_named(&names, NodeRole::ControlPlane)
    } else {
        config.control_plane_nodes()
    };
    nodes.extend(config.worker_nodes());
    Ok(nodes)
}
