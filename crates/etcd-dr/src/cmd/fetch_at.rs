//! `etcd-dr fetch --at REV|TIME|newest`: the keyspace at one point in history, from a full
//! snapshot and the replication segments after it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use etcd_dr_core::RestorePoint;
use etcd_dr_replication::{
    fetch_revision, ReplayEngine, ReplayProgress, ReplayReport, ReplicationLayout, RevisionSource,
};

use super::{manifest_trust, open_store, shutdown_token};
use crate::progress::{on_terminal, ReplayBar};
use crate::settings::Settings;

pub async fn run(
    settings: &Settings,
    point: RestorePoint,
    output: &Path,
    engine: ReplayEngine,
) -> anyhow::Result<()> {
    let (store, snapshots) = open_store(settings)?;
    let segments = ReplicationLayout::new(&settings.store.prefix, &settings.cluster)?;
    let source = RevisionSource {
        store,
        snapshots,
        segments,
        identities: settings.identities()?,
        trust: manifest_trust(settings)?,
        engine,
    };
    let work_dir = output
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let cancel = shutdown_token();
    let progress = Arc::new(ReplayProgress::default());
    let bar = ReplayBar::follow(
        format!("fetch --at {point}"),
        progress.clone(),
        on_terminal(false),
    );
    let fetched = fetch_revision(
        &source,
        point,
        output.to_path_buf(),
        work_dir,
        Some(progress),
        &cancel,
    )
    .await
    .with_context(|| format!("fetching --at {point}"))?;
    drop(bar);
    let plan = &fetched.plan;
    match (&fetched.report, &plan.generation) {
        (Some(report), Some(generation)) => println!(
            "revision {} written to {} (snapshot {} at revision {}, {} revisions replayed from {} segment(s) of generation {} in {:.2} s by the {} engine{})",
            plan.target,
            output.display(),
            plan.base.id,
            report.base_revision,
            report.replayed_revisions,
            report.segments_read,
            generation,
            report.replay_time.as_secs_f64(),
            report.engine,
            replay_cpu(report)
        ),
        _ => println!(
            "revision {} written to {} (snapshot {} as it is: no segment is newer)",
            plan.target,
            output.display(),
            plan.base.id
        ),
    }
    Ok(())
}

/// The CPU spent meanwhile (when the OS tells) and, with etcd, the transactions sent twice.
fn replay_cpu(report: &ReplayReport) -> String {
    match (report.replay_cpu_own, report.replay_cpu_etcd) {
        (Some(own), None) => format!(
            "; CPU meanwhile: {:.2} s; copying the base took {:.2} s",
            own.as_secs_f64(),
            report.base_copy_time.unwrap_or_default().as_secs_f64()
        ),
        (None, None) => String::new(),
        (Some(own), Some(etcd)) => format!(
            "; CPU meanwhile: etcd-dr {:.2} s, throw-away etcd {:.2} s; {} transactions sent again after overtaking",
            own.as_secs_f64(),
            etcd.as_secs_f64(),
            report.resent_transactions
        ),
        _ => format!(
            "; {} transactions sent again after overtaking",
            report.resent_transactions
        ),
    }
}
