//! `etcd-dr prune`: apply the retention policy now.

use chrono::Utc;
use etcd_dr_transport::{apply_retention, list_snapshots, plan_retention};

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
    let plan = plan_retention(&catalog, &settings.retention, Utc::now());
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
