//! `etcd-dr prune`: apply the retention policy now.

use std::sync::Arc;

use chrono::Utc;
use etcd_dr_transport::{
    apply_retention, list_snapshots, plan_verified_retention, sweep_upload_leftovers, Catalog,
    RetentionPlan, SnapshotLayout, TransportError,
};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use super::{manifest_trust, open_store, shutdown_token};
use crate::settings::Settings;

#[derive(clap::Args)]
pub struct Args {
    /// Only print what would be deleted.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let (store, layout) = open_store(settings)?;
    let cancel = shutdown_token();
    let catalog = list_snapshots(&store, &layout, &manifest_trust(settings)?, &cancel).await?;
    for bad in &catalog.unreadable {
        eprintln!(
            "unreadable manifest (kept, not counted): {}: {}",
            bad.id, bad.error
        );
    }
    let (plan, check) = plan_verified_retention(
        &store,
        &layout,
        &catalog,
        &settings.retention,
        Utc::now(),
        &cancel,
    )
    .await?;
    for (id, detail) in &check.corrupt {
        eprintln!("snapshot {id} does not match its manifest ({detail}); older snapshots are kept until one matches");
    }
    if let (Some(intact), false) = (&check.newest_intact, check.corrupt.is_empty()) {
        eprintln!("newest intact snapshot: {intact}");
    }
    let grace = settings.retention.incomplete_grace;
    let mut leftovers_failed = 0;
    if args.dry_run {
        println!(
            "(upload leftovers older than {} are removed by a real run: pending multipart uploads, local staging files)",
            humantime::format_duration(grace)
        );
    } else {
        match sweep_upload_leftovers(
            &store,
            &settings.store,
            &layout,
            grace,
            &etcd_dr_scheduler::host_name(),
            &cancel,
        )
        .await
        {
            Ok(sweep) => {
                for name in &sweep.removed {
                    println!("removed upload leftover {name}");
                }
                for (name, error) in &sweep.failed {
                    eprintln!("could not remove upload leftover {name}: {error}");
                }
                if sweep.kept > 0 {
                    println!(
                        "kept {} pending upload(s) younger than {}",
                        sweep.kept,
                        humantime::format_duration(grace)
                    );
                }
                leftovers_failed = sweep.failed.len();
            }
            // An upload in progress is not a leftover: the next run sweeps.
            Err(error @ TransportError::ProducerBusy { .. }) => {
                eprintln!("pending uploads not swept: {error}");
            }
            Err(error) => {
                eprintln!("upload leftovers not swept: {error}");
                leftovers_failed += 1;
            }
        }
    }
    let pruned = prune_snapshots(&store, &layout, &catalog, plan, args.dry_run, &cancel).await;
    if leftovers_failed > 0 {
        anyhow::bail!("{leftovers_failed} upload leftover(s) could not be removed (see above)");
    }
    pruned
}

/// Applies (or with `dry_run` prints) the retention plan.
async fn prune_snapshots(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    catalog: &Catalog,
    plan: RetentionPlan,
    dry_run: bool,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    if plan.is_empty() {
        println!(
            "nothing to prune ({} snapshots kept)",
            catalog.snapshots.len()
        );
        return Ok(());
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    let done = if dry_run {
        plan
    } else {
        apply_retention(store, layout, &plan, cancel).await?
    };
    for id in &done.expired {
        println!("{verb} snapshot {id}");
    }
    for id in &done.leftovers {
        println!("{verb} incomplete upload {id}");
    }
    Ok(())
}
