//! The secondary role: poll the store, verify each new snapshot as it appears (stream it back,
//! check every checksum), keep the newest verified one decompressed in `prestage_dir`, and
//! measure the lag from it.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use etcd_dr_control::{
    Activity, PrestagedSnapshot, ScheduleStatus, SecondaryStatus, SnapshotSummary, Trigger,
};
use etcd_dr_core::{SnapshotId, SnapshotManifest};
use etcd_dr_transport::{
    list_snapshots, PrestageDir, StageFailure, TransportError, Verification, VerifyFailure,
};

use super::DaemonState;
use crate::settings::SecondarySettings;

/// Creates the pre-staging directory (owner-only: the files hold every Secret of the cluster).
/// A copy an earlier run staged is reported only once the first poll has checked it.
pub fn prepare(state: &DaemonState, config: &SecondarySettings) -> anyhow::Result<()> {
    // An unreadable (or world-readable) identity file is a start-up error, not one failed
    // verification per poll.
    state
        .settings
        .identities()
        .context("encryption.identity_file")?;
    if let Some(dir) = &config.prestage_dir {
        PrestageDir::new(dir)
            .create()
            .context("secondary.prestage_dir")?;
    }
    state.update(|status| status.secondary = Some(SecondaryStatus::default()));
    Ok(())
}

/// Polls until shutdown.
pub async fn run(state: &DaemonState, config: &SecondarySettings) {
    let mut seen = BTreeSet::new();
    let description = format!(
        "poll every {}",
        humantime::format_duration(config.poll_interval)
    );
    loop {
        poll_once(state, config, &mut seen).await;
        if state.cancel.is_cancelled() {
            return;
        }
        let next =
            Utc::now() + chrono::Duration::from_std(config.poll_interval).unwrap_or_default();
        state.update(|status| {
            status.schedule = Some(ScheduleStatus {
                description: description.clone(),
                next_run: Some(next),
            })
        });
        tokio::select! {
            biased;
            _ = state.cancel.cancelled() => return,
            _ = tokio::time::sleep(config.poll_interval) => {}
        }
    }
}

/// One poll. `seen` holds the snapshots already verified or found corrupt (not retried).
async fn poll_once(
    state: &DaemonState,
    config: &SecondarySettings,
    seen: &mut BTreeSet<SnapshotId>,
) {
    let catalog =
        match list_snapshots(&state.store, &state.layout, &state.trust, &state.cancel).await {
            Ok(catalog) => catalog,
            Err(TransportError::Cancelled) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot list the store");
                state.cycle_failed(format!("listing the store failed: {error}"));
                return;
            }
        };
    state.metrics.set_snapshots_stored(catalog.snapshots.len());
    state.cache_catalog(&catalog).await;
    state.update(|status| {
        status
            .secondary
            .get_or_insert_with(SecondaryStatus::default)
            .last_poll_at = Some(Utc::now())
    });
    state.observe_catalog(&catalog);
    seen.retain(|id| catalog.snapshots.iter().any(|m| &m.id == id));

    let newest_verified =
        state.update(|status| status.newest_verified.as_ref().map(|s| s.id.clone()));
    // At start-up one verified snapshot is enough (the history was verified when it arrived):
    // walk back from the newest until one passes, so a corrupt newest does not leave the
    // secondary without any.
    let startup = newest_verified.is_none() && seen.is_empty();
    // Every snapshot not yet seen, in catalog order (by revision): one with an odd id (a
    // producer clock off by days) is verified too, not skipped behind a newer-looking id.
    let mut candidates: Vec<&SnapshotManifest> = catalog
        .snapshots
        .iter()
        .filter(|m| !seen.contains(&m.id))
        .collect();

    if !config.verify {
        if let Some(newest) = candidates.last() {
            let summary = SnapshotSummary::from(*newest);
            state.metrics.record_newest(&summary);
            state.update(|status| {
                status.last_snapshot = Some(summary.clone());
                status.newest_verified = Some(summary);
            });
        }
        state.cycle_succeeded();
        return;
    }
    if startup {
        candidates.reverse();
    }

    let prestage_dir = config.prestage_dir.as_deref().map(PrestageDir::new);
    let mut failure = None;
    let count = candidates.len();
    for (index, manifest) in candidates.iter().enumerate() {
        // Only the newest of a batch is worth writing to disk (at start-up: each one tried).
        let stage_dir = prestage_dir
            .as_ref()
            .filter(|_| startup || index + 1 == count);
        match verify(state, manifest, stage_dir).await {
            Ok(()) => {
                seen.insert(manifest.id.clone());
                if startup {
                    seen.extend(candidates[index + 1..].iter().map(|m| m.id.clone()));
                    break;
                }
            }
            Err(VerifyFailure::Corrupt(message)) => {
                tracing::error!(id = %manifest.id, %message, "stored snapshot failed verification");
                seen.insert(manifest.id.clone());
                state.metrics.verify_failed();
                state.update(|status| {
                    if let Some(secondary) = &mut status.secondary {
                        secondary.verify_failures += 1;
                    }
                });
                // Named at once: at start-up the walk goes on to an older snapshot.
                state.cycle_failed(message.clone());
                failure = Some(message);
            }
            Err(VerifyFailure::Unavailable(message) | VerifyFailure::Local(message)) => {
                tracing::warn!(id = %manifest.id, %message, "could not verify; retrying at the next poll");
                failure = Some(message);
                break;
            }
            Err(VerifyFailure::Cancelled) => return,
        }
    }
    match failure {
        Some(message) => state.cycle_failed(message),
        None => state.cycle_succeeded(),
    }
}

/// Verifies one snapshot; stages it when `stage_dir` is set.
async fn verify(
    state: &DaemonState,
    manifest: &SnapshotManifest,
    stage_dir: Option<&PrestageDir>,
) -> Result<(), VerifyFailure> {
    state.begin(
        Activity::Verify,
        Trigger::Schedule,
        Some(manifest.id.clone()),
    );
    let started = Instant::now();
    let result = check_and_stage(state, manifest, stage_dir).await;
    state.finish();
    if result.is_ok() {
        let now = Utc::now();
        let seconds = started.elapsed().as_secs_f64();
        let summary = SnapshotSummary::from(manifest);
        tracing::info!(id = %manifest.id, revision = manifest.etcd.revision, seconds, "snapshot verified");
        state.metrics.snapshot_verified(&summary, seconds, now);
        state.update(|status| {
            status.last_snapshot = Some(summary.clone());
            if status
                .newest_verified
                .as_ref()
                .is_none_or(|n| (n.revision, &n.id) < (summary.revision, &summary.id))
            {
                status.newest_verified = Some(summary);
            }
            if let Some(secondary) = &mut status.secondary {
                secondary.verified_count += 1;
            }
        });
    }
    result
}

async fn check_and_stage(
    state: &DaemonState,
    manifest: &SnapshotManifest,
    stage_dir: Option<&PrestageDir>,
) -> Result<(), VerifyFailure> {
    // Read each time: a rotated identity file is picked up without a restart.
    let identities = state
        .settings
        .encryption
        .identities()
        .map_err(|e| VerifyFailure::Unavailable(e.to_string()))?;
    let verification = Verification {
        store: &state.store,
        layout: &state.layout,
        identities: &identities,
        progress: &state.progress,
        cancel: &state.cancel,
    };
    let Some(dir) = stage_dir else {
        return verification.check(manifest).await;
    };
    match verification.stage(manifest, dir).await {
        Ok(path) => {
            let staged = PrestagedSnapshot {
                id: manifest.id.clone(),
                path: path.display().to_string(),
                bytes: manifest.raw.size,
            };
            state.update(|status| {
                if let Some(secondary) = &mut status.secondary {
                    secondary.prestaged = Some(staged);
                }
            });
            Ok(())
        }
        Err(StageFailure::Verify(error)) => Err(error),
        Err(StageFailure::Local(message)) => {
            // A full disk is no reason to stop verifying: check the snapshot without it.
            tracing::error!(id = %manifest.id, %message, "pre-staging failed; verifying without it");
            state.note_error(format!("pre-staging {} failed: {message}", manifest.id));
            state.begin(
                Activity::Verify,
                Trigger::Schedule,
                Some(manifest.id.clone()),
            );
            verification.check(manifest).await
        }
    }
}
