//! The primary's replication generations as the snapshot cycle sees them: the generation a
//! snapshot names in its manifest, where the segments are, and segment retention after
//! snapshot retention. Used by the snapshot cycle (`primary`) and the capture (`replication`).

use chrono::Utc;
use etcd_dr_control::{Role, Trigger};
use etcd_dr_core::SnapshotManifest;
use etcd_dr_replication::{prune_generations, CaptureProgress, GenerationId, ReplicationLayout};

use super::DaemonState;

/// The replication generation a snapshot of this daemon at `revision` names in its manifest
/// (`etcd.replication_generation`, decided just before the manifest commits; `before` is the
/// capture's progress as the snapshot run started):
/// - one taken while the same watch stayed open on a generation is in that generation (not
///   for the capture's own snapshots, which start the next);
/// - any other starts a new generation, based at its revision: the capture may adopt it (at
///   start-up the schedule's first snapshot serves as the first generation's base); until it
///   does, it is no base of any stored generation — the watch was not open throughout, so
///   etcd may have been restored under it.
pub fn generation_of_snapshot(
    state: &DaemonState,
    trigger: Trigger,
    before: Option<&CaptureProgress>,
    revision: i64,
) -> Option<String> {
    if !state.settings.replication.enabled || state.settings.role != Role::Primary {
        return None;
    }
    let now = state.replication.capture_progress();
    match (trigger, before, &now) {
        (Trigger::Replication, _, _) => None,
        (_, Some(before), Some(now)) => now.unbroken_since(before).map(ToString::to_string),
        _ => None,
    }
    .or_else(|| Some(GenerationId::new(Utc::now(), revision).to_string()))
}

/// The segments' place in the store.
pub fn layout(state: &DaemonState) -> anyhow::Result<ReplicationLayout> {
    Ok(ReplicationLayout::new(
        &state.settings.store.prefix,
        &state.settings.cluster,
    )?)
}

/// Removes replication generations no kept snapshot is a base for (after snapshot retention,
/// from its catalog). Only with replication on: without it, no store call.
pub async fn prune_segments(state: &DaemonState, kept: &[SnapshotManifest]) -> anyhow::Result<()> {
    if !state.settings.replication.enabled {
        return Ok(());
    }
    let removed = prune_generations(&state.store, &layout(state)?, kept, &state.cancel).await?;
    if !removed.is_empty() {
        tracing::info!(
            removed = removed.len(),
            "replication generations no kept snapshot is a base for removed"
        );
    }
    Ok(())
}
