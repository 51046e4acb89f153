//! `etcd-dr run`: the daemon.

use std::time::Duration;

use chrono::Utc;
use etcd_dr_transport::{apply_retention, list_snapshots, plan_retention, ShipProgress};
use tokio_util::sync::CancellationToken;

use super::{shutdown_token, snapshot_context};
use crate::settings::Settings;
use crate::snapshot_job::{SnapshotContext, SnapshotOutcome};

/// How long an in-flight snapshot gets to abort its upload after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(settings: &Settings, _args: Args) -> anyhow::Result<()> {
    let context = snapshot_context(settings)?;
    let schedule = settings
        .schedule
        .schedule()
        .ok_or_else(|| anyhow::anyhow!("schedule: set schedule.interval or schedule.cron"))?;
    let cancel = shutdown_token();
    tracing::info!(
        cluster = %settings.cluster,
        store = %settings.store.describe(),
        schedule = %schedule.describe(),
        "etcd-dr daemon started"
    );
    let progress = ShipProgress::default();
    let cycle = || run_cycle(&context, settings, &progress, &cancel);
    let scheduled = etcd_dr_scheduler::run_schedule(
        &schedule,
        &cancel,
        |at| tracing::debug!(next_run = %at, "next snapshot planned"),
        cycle,
    );
    tokio::select! {
        _ = scheduled => {}
        _ = async { cancel.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("the running snapshot did not stop within {SHUTDOWN_GRACE:?}; exiting anyway");
        }
    }
    tracing::info!("etcd-dr daemon stopped");
    Ok(())
}

/// One scheduled run: a snapshot (unless nothing changed), then retention.
async fn run_cycle(
    context: &SnapshotContext,
    settings: &Settings,
    progress: &ShipProgress,
    cancel: &CancellationToken,
) {
    progress
        .raw_bytes
        .store(0, std::sync::atomic::Ordering::Relaxed);
    progress
        .stored_bytes
        .store(0, std::sync::atomic::Ordering::Relaxed);
    match context
        .take_snapshot(None, settings.schedule.skip_unchanged, progress, cancel)
        .await
    {
        Ok(SnapshotOutcome::Taken(manifest)) => {
            tracing::info!(id = %manifest.id, revision = manifest.etcd.revision, "scheduled snapshot stored");
        }
        Ok(SnapshotOutcome::Unchanged { revision, newest }) => {
            tracing::info!(revision, newest = %newest, "revision unchanged since the newest snapshot; skipped");
            return;
        }
        Err(error) if cancel.is_cancelled() => {
            tracing::info!(%error, "snapshot interrupted by shutdown; its upload was aborted");
            return;
        }
        Err(error) => {
            tracing::error!(%error, "scheduled snapshot failed");
            return;
        }
    }
    if let Err(error) = prune(context, settings, cancel).await {
        tracing::error!(%error, "retention failed");
    }
}

async fn prune(
    context: &SnapshotContext,
    settings: &Settings,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let catalog = list_snapshots(&context.store, &context.layout, cancel).await?;
    let plan = plan_retention(&catalog, &settings.retention, Utc::now());
    if !plan.is_empty() {
        apply_retention(&context.store, &context.layout, &plan, cancel).await?;
    }
    Ok(())
}
