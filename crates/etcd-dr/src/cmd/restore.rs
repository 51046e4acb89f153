//! `etcd-dr restore`: restore one of this cluster's own snapshots IN PLACE onto its
//! control-plane nodes (bad upgrade, corrupted etcd, a mistake that hit many apps). The
//! promotion's state machine in mode `in-place`: no switchover, no fence (the cluster stays the
//! primary of its prefix and keeps shipping), the nodes keep their service-account keys; the
//! restore lock in the store keeps two restores or promotions from running at once.

use std::process::ExitCode;

use etcd_dr_core::{PromotionMode, PromotionRequest, RestorePoint};

use super::promote::{promoter, run_printed};
use crate::settings::Settings;

#[derive(clap::Args)]
pub struct Args {
    /// The snapshot to go back to: `latest` or an id (`etcd-dr list`).
    #[arg(long, default_value = "latest")]
    snapshot: String,
    /// Stop after the preflight and print the plan; nothing is changed anywhere.
    #[arg(long)]
    dry_run: bool,
    /// Take the restore lock over from a restore or promotion that crashed holding it. Never
    /// passes a promotion marker.
    #[arg(long)]
    force: bool,
    /// Print the final record (every step and node) as JSON on stdout; progress goes to stderr.
    #[arg(long)]
    json: bool,
    /// Restore a point in history instead of a snapshot as it is: an etcd revision, a time
    /// (RFC 3339: the newest revision observed at or before it) or `newest` (the newest
    /// revision stored). The newest snapshot at or below it is replayed with the replication
    /// segments to exactly that revision, locally, with `[promote.replay]`'s etcd.
    #[arg(long, value_name = "REV|TIME|newest", conflicts_with = "snapshot")]
    at: Option<RestorePoint>,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<ExitCode> {
    let promoter = promoter(settings)?;
    let request = PromotionRequest {
        snapshot: args.snapshot,
        mode: PromotionMode::InPlace,
        dry_run: args.dry_run,
        force: args.force,
        at: args.at,
    };
    run_printed(&promoter, request, args.json, "restore").await
}
