//! `etcd-dr promote`: restore a snapshot onto every control-plane node of this (secondary)
//! cluster, printing each step and node as it goes. The same promotion `POST /v1/promote` runs
//! in the daemon; the promotion marker in the store keeps two of them from racing.

use std::process::ExitCode;

use anyhow::Context;
use etcd_dr_core::{PromotionMode, PromotionRequest, RestorePoint};
use etcd_dr_restore::{
    progress_lines, running_activity, running_copy, Promoter, PromotionRecord, PromotionState,
    PromotionTracker,
};

use super::{manifest_trust, open_store, shutdown_token};
use crate::progress::{on_terminal, ActivitySpinner};
use crate::requester::requested_by;
use crate::settings::Settings;

#[derive(clap::Args)]
pub struct Args {
    /// The snapshot to restore: `latest` or an id (failover).
    #[arg(long, default_value = "latest")]
    snapshot: String,
    /// Planned switchover: ask the primary for a final snapshot, wait for it, restore exactly it.
    #[arg(long)]
    switchover: bool,
    /// Stop after the preflight and print the plan; nothing is changed anywhere.
    #[arg(long)]
    dry_run: bool,
    /// Promote although a promotion marker fences the cluster (it is replaced), or take the
    /// restore lock over from a restore or promotion that crashed holding it.
    #[arg(long)]
    force: bool,
    /// Print the final record (every step and node) as JSON on stdout; progress goes to stderr.
    #[arg(long)]
    json: bool,
    /// Restore a point in history instead of a snapshot as it is: an etcd revision, a time
    /// (RFC 3339: the newest revision observed at or before it) or `newest` (the newest
    /// revision stored). The newest snapshot at or below it is replayed with the replication
    /// segments to exactly that revision, locally, with `[promote.replay]`'s etcd.
    #[arg(long, value_name = "REV|TIME|newest", conflicts_with_all = ["snapshot", "switchover"])]
    at: Option<RestorePoint>,
}

/// The promoter `[promote]`, `[nodes]`, `[store]`, `[encryption]` and `[secondary]` describe.
pub fn promoter(settings: &Settings) -> anyhow::Result<Promoter> {
    let config = settings
        .promote
        .clone()
        .context("this needs a [promote] section: the control-plane nodes' etcd, manifests and commands (docs/configuration.md: [promote])")?;
    let (store, layout) = open_store(settings)?;
    let mut promoter = Promoter::new(
        config,
        store,
        layout,
        settings.nodes.control_plane_nodes(),
        settings.nodes.worker_nodes(),
    )
    .context("promote")?;
    promoter.identities = settings.identities()?;
    promoter.trust = manifest_trust(settings)?;
    promoter.prestage_dir = settings
        .secondary
        .as_ref()
        .and_then(|s| s.prestage_dir.clone());
    Ok(promoter)
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<ExitCode> {
    let promoter = promoter(settings)?;
    let request = PromotionRequest {
        snapshot: args.snapshot,
        mode: if args.switchover {
            PromotionMode::Switchover
        } else {
            PromotionMode::Failover
        },
        dry_run: args.dry_run,
        force: args.force,
        at: args.at,
    };
    run_printed(&promoter, request, args.json, "promotion").await
}

/// Runs `request` to its end, printing each step and node as it changes, then the plan (dry
/// run) or the record (`json`). Exit 0 for `succeeded`/`planned`, 1 otherwise. Shared with
/// `etcd-dr restore`.
pub async fn run_printed(
    promoter: &Promoter,
    request: PromotionRequest,
    json: bool,
    what: &'static str,
) -> anyhow::Result<ExitCode> {
    let cancel = shutdown_token();
    let tracker = PromotionTracker::begin(request, requested_by());
    let say = move |line: &str| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(&format!("{what} {}", tracker.id()));
    let mut updates = tracker.subscribe();
    let spinner = ActivitySpinner::new(on_terminal(json));
    let printer = tokio::spawn(async move {
        let mut last: Option<PromotionRecord> = None;
        loop {
            let record = updates.borrow_and_update().clone();
            spinner.println(|| {
                for line in progress_lines(last.as_ref(), &record) {
                    say(&line);
                }
            });
            spinner.set_activity(running_activity(&record));
            // A copy of the snapshot (download, or onto the nodes): bytes, rate and ETA.
            spinner.set_copy(running_copy(&record).map(|(_, copy)| copy));
            let finished = record.state.is_finished();
            last = Some(record);
            if finished || updates.changed().await.is_err() {
                break;
            }
        }
    });
    let state = promoter.run(&tracker, &cancel).await;
    let _ = printer.await;
    let record = tracker.snapshot();
    for warning in &record.warnings {
        say(&format!("warning: {}", etcd_dr_core::printable(warning)));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else if let (PromotionState::Planned, Some(plan)) = (state, &record.plan) {
        println!("plan (nothing was changed):");
        if let Some(snapshot) = &record.snapshot {
            println!("  snapshot       {snapshot}");
        }
        if let Some(replay) = &record.replay {
            println!("  at revision    {}", replay.target_revision);
            if replay.generation.is_empty() {
                println!("  replay         none: the snapshot is that revision");
            } else {
                println!(
                    "  replay         {} revision(s) onto revision {}, generation {}, in {:.2} s by the {} engine",
                    replay.replayed_revisions,
                    replay.base_revision,
                    replay.generation,
                    replay.replay_seconds,
                    replay.engine
                );
                println!(
                    "  segments       {} ({} … {})",
                    replay.segments_used,
                    replay.first_segment.as_deref().unwrap_or("-"),
                    replay.last_segment.as_deref().unwrap_or("-")
                );
            }
        }
        println!("  restore with   {}", plan.tool.program());
        println!("  cluster        {}", plan.initial_cluster);
        println!("  token          {}", plan.initial_cluster_token);
        match plan.bump_revision {
            Some(bump) => println!(
                "  revision bump  +{bump} (restored revision ≥ {}; now {})",
                plan.expected_min_revision,
                plan.secondary_revision
                    .map_or_else(|| "unknown".to_string(), |r| r.to_string())
            ),
            None => println!("  revision bump  none (the restore tool has no --bump-revision)"),
        }
        for node in &plan.nodes {
            println!(
                "  {}: data dir {}, old data kept in {}",
                node.node, node.data_dir, node.work_dir
            );
        }
    }
    Ok(match state {
        PromotionState::Succeeded | PromotionState::Planned => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}
