//! `etcd-dr verify`: stream a snapshot back and check it.

use std::time::Instant;

use anyhow::Context;
use etcd_dr_core::{printable, NodeBundle};
use etcd_dr_transport::{read_object, read_snapshot, resolve_snapshot, SnapshotSelector};

use super::{human_bytes, manifest_trust, open_store, shutdown_token};
use crate::progress::{on_terminal, TransferBar};
use crate::settings::Settings;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id, or `latest`.
    #[arg(default_value = "latest")]
    snapshot: String,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let selector: SnapshotSelector = args.snapshot.parse()?;
    let (store, layout) = open_store(settings)?;
    let cancel = shutdown_token();
    let manifest = resolve_snapshot(
        &store,
        &layout,
        &manifest_trust(settings)?,
        &selector,
        &cancel,
    )
    .await?;
    let identities = settings.identities()?;
    let visible = on_terminal(false);
    let started = Instant::now();
    let (bar, sink) = TransferBar::for_sink(
        format!("verify {}", manifest.id),
        manifest.raw.size,
        std::io::sink(),
        visible,
    );
    let verified = read_snapshot(&store, &layout, &manifest, &identities, sink, &cancel).await;
    drop(bar);
    let (verified, _) = verified.with_context(|| format!("verifying snapshot {}", manifest.id))?;
    println!(
        "snapshot {} OK: {} stored, {} plain, SHA-256 {} (etcd trailer matches), {:.2}s",
        manifest.id,
        human_bytes(verified.stored_size),
        human_bytes(verified.raw_size),
        manifest.raw.sha256,
        started.elapsed().as_secs_f64()
    );
    for bundle in &manifest.nodes {
        match bundle {
            NodeBundle::Stored {
                node,
                object,
                raw,
                entries,
                ..
            } => {
                let node = printable(node);
                let (bar, sink) = TransferBar::for_sink(
                    format!("verify bundle of {node}"),
                    raw.size,
                    std::io::sink(),
                    visible,
                );
                let checked = read_object(
                    &store,
                    &layout,
                    &manifest.id,
                    object,
                    raw,
                    &identities,
                    sink,
                    &cancel,
                )
                .await;
                drop(bar);
                let (checked, _) = checked.with_context(|| {
                    format!(
                        "verifying the bundle of node {node} in snapshot {}",
                        manifest.id
                    )
                })?;
                println!(
                    "  node {node} OK: {} stored, {} plain tar, {entries} entries",
                    human_bytes(checked.stored_size),
                    human_bytes(checked.raw_size)
                );
            }
            NodeBundle::Missing { node, reason } => {
                let (node, reason) = (printable(node), printable(reason));
                println!(
                    "  node {node} MISSING (not reachable when the snapshot was taken): {reason}"
                );
            }
        }
    }
    Ok(())
}
