//! `etcd-dr snapshot`: one snapshot now.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use etcd_dr_scheduler::{SnapshotError, SnapshotHooks, SnapshotOutcome};
use etcd_dr_transport::{ShipProgress, TransportError};

use super::{human_bytes, shutdown_token, snapshot_context};
use crate::progress::{on_terminal, TransferBar};
use crate::settings::Settings;

#[derive(clap::Args)]
pub struct Args {
    /// Free text stored in the manifest (e.g. "before upgrade to 1.31"): at most 256
    /// characters, no control characters.
    #[arg(long, value_parser = parse_label)]
    label: Option<String>,
    /// Print the manifest as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

fn parse_label(text: &str) -> Result<String, String> {
    etcd_dr_core::validate_label(text).map(|()| text.to_string())
}

/// Exit status when another producer holds the producer lease: nothing was written, try again
/// later (`EX_TEMPFAIL` of sysexits.h), so that scripts can tell "busy" from "failed".
pub const EXIT_PRODUCER_BUSY: u8 = 75;

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<ExitCode> {
    let context = snapshot_context(settings)?;
    let cancel = shutdown_token();
    etcd_dr_transport::probe_create_only(&context.store, &context.layout, &cancel)
        .await
        .with_context(|| format!("store start-up probe of {}", settings.store.describe()))?;
    let progress = Arc::new(ShipProgress::default());
    let bar = TransferBar::follow(
        format!("snapshot of {}", context.cluster),
        progress.clone(),
        on_terminal(args.json),
    );
    let outcome = context
        .take_snapshot(args.label, false, &progress, SnapshotHooks::NONE, &cancel)
        .await;
    drop(bar);
    if let Err(SnapshotError::Transport(TransportError::ProducerBusy {
        key,
        host,
        pid,
        since,
        expires_at,
    })) = &outcome
    {
        eprintln!(
            "etcd-dr: no snapshot taken: another snapshot of cluster {} is in progress.\n  \
             {host} (pid {pid}) holds the producer lease `{key}` since {}.\n  \
             Nothing was written. Wait for that snapshot to end (`etcd-dr list` shows it once \
             committed), or, if that producer is gone, run again after {}, when its lease \
             expires.",
            context.cluster,
            since.to_rfc3339(),
            expires_at.to_rfc3339()
        );
        return Ok(ExitCode::from(EXIT_PRODUCER_BUSY));
    }
    let outcome = outcome?;
    let SnapshotOutcome::Taken(manifest) = outcome else {
        anyhow::bail!("no snapshot was taken");
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
        return Ok(ExitCode::SUCCESS);
    }
    let seconds = manifest.duration_seconds.max(f64::EPSILON);
    println!("snapshot {}", manifest.id);
    println!("  revision    {}", manifest.etcd.revision);
    println!(
        "  etcd        {} (cluster {}, from {})",
        manifest.etcd.version, manifest.etcd.cluster_id, manifest.etcd.source_endpoint
    );
    println!(
        "  raw         {} ({} bytes)",
        human_bytes(manifest.raw.size),
        manifest.raw.size
    );
    println!(
        "  stored      {} ({} bytes, ratio {:.2})",
        human_bytes(manifest.stored.size),
        manifest.stored.size,
        manifest.raw.size as f64 / manifest.stored.size.max(1) as f64
    );
    println!("  duration    {seconds:.2}s");
    println!(
        "  throughput  {}/s",
        human_bytes((manifest.raw.size as f64 / seconds) as u64)
    );
    Ok(ExitCode::SUCCESS)
}
