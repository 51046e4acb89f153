//! `etcd-dr prune`: apply the retention policy now.

use chrono::Utc;
use etcd_dr_transport::{apply_retention, list_snapshots, plan_verified_retention};

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
    if let Some(dir) = settings.store.local_snapshots_dir(&layout) {
        let grace = settings.retention.incomplete_grace;
        if args.dry_run {
            println!(
                "(staging leftovers older than {} are deleted by a real run)",
                humantime::format_duration(grace)
            );
        } else {
            for path in etcd_dr_transport::sweep_local_staging(&dir, grace)? {
                println!("deleted staging leftover {}", path.display());
            }
        }
    }
    if plan.is_empty() {
        println!(
            "nothing to prune ({} snapshots kept)",
            catalog.snapshots.len()
        );
        return Ok(());
    }
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let done = if args.dry_run {
        plan
    } else {
        apply_retention(&store, &layout, &plan, &cancel).await?
    };
    for id in &done.expired {
        println!("{verb} snapshot {id}");
    }
    for id in &done.leftovers {
        println!("{verb} incomplete upload {id}");
    }
    Ok(())
}
