//! `etcd-dr list`: what is stored.

use super::{human_bytes, manifest_trust, open_store};
use crate::settings::Settings;
use etcd_dr_transport::list_snapshots;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct Args {
    /// Print the manifests as a JSON array.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let (store, layout) = open_store(settings)?;
    let catalog = list_snapshots(
        &store,
        &layout,
        &manifest_trust(settings)?,
        &CancellationToken::new(),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&catalog.snapshots)?);
        return Ok(());
    }
    if catalog.snapshots.is_empty() {
        println!(
            "no snapshots under {} in {}",
            layout.snapshots_prefix(),
            settings.store.describe()
        );
    } else {
        println!(
            "{:<26} {:<21} {:>10} {:>11} {:>11}  LABEL",
            "ID", "CREATED (UTC)", "REVISION", "RAW", "STORED"
        );
        for m in &catalog.snapshots {
            println!(
                "{:<26} {:<21} {:>10} {:>11} {:>11}  {}",
                m.id.to_string(),
                m.created_at.format("%Y-%m-%d %H:%M:%S"),
                m.etcd.revision,
                human_bytes(m.raw.size),
                human_bytes(m.stored.size),
                etcd_dr_core::printable(m.label.as_deref().unwrap_or(""))
            );
        }
    }
    for leftover in &catalog.incomplete {
        eprintln!(
            "incomplete (no manifest, ignored): {} ({} objects)",
            leftover.id,
            leftover.objects.len()
        );
    }
    for bad in &catalog.unreadable {
        eprintln!("unreadable manifest: {}: {}", bad.id, bad.error);
    }
    for refused in &catalog.refused {
        eprintln!("REFUSED (not used): {}: {}", refused.id, refused.reason);
    }
    Ok(())
}
