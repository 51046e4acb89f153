//! The secondary role: poll the store, verify each new snapshot as it appears (stream it back,
//! check every checksum), keep the newest verified one decompressed in `prestage_dir`, and
//! measure the lag from it.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use etcd_dr_control::{
    Activity, PrestagedSnapshot, ScheduleStatus, SecondaryStatus, SnapshotSummary, Trigger,
};
use etcd_dr_core::{SnapshotId, SnapshotManifest};
use etcd_dr_transport::{list_snapshots, read_snapshot, ShipProgress, TransportError};

use super::DaemonState;
use crate::settings::SecondarySettings;

/// Creates the pre-staging directory (owner-only: the files hold every Secret of the cluster).
/// A copy an earlier run staged is reported only once the first poll has checked it.
pub fn prepare(state: &DaemonState, config: &SecondarySettings) -> anyhow::Result<()> {
    // An unreadable (or world-readable) identity file is a start-up error, not one failed
    // verification per poll.
    crate::cmd::identities(&state.settings).context("encryption.identity_file")?;
    if let Some(dir) = &config.prestage_dir {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| {
                format!("secondary.prestage_dir: cannot create `{}`", dir.display())
            })?;
        staged_files(dir)
            .with_context(|| format!("secondary.prestage_dir: cannot read `{}`", dir.display()))?;
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
    seen.retain(|id| catalog.snapshots.iter().any(|m| &m.id == id));

    let newest_verified =
        state.update(|status| status.newest_verified.as_ref().map(|s| s.id.clone()));
    let mut candidates: Vec<&SnapshotManifest> = catalog
        .snapshots
        .iter()
        .filter(|m| newest_verified.as_ref().is_none_or(|n| &m.id > n) && !seen.contains(&m.id))
        .collect();
    if newest_verified.is_none() {
        // At start-up, the newest only: the history was verified when it arrived.
        candidates = candidates.split_off(candidates.len().saturating_sub(1));
    }

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

    let mut failure = None;
    let count = candidates.len();
    for (index, manifest) in candidates.into_iter().enumerate() {
        // Only the newest of a batch is worth writing to disk.
        let stage_dir = config
            .prestage_dir
            .as_deref()
            .filter(|_| index + 1 == count);
        match verify(state, manifest, stage_dir).await {
            Ok(()) => {
                seen.insert(manifest.id.clone());
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

enum VerifyFailure {
    /// The stored snapshot does not match its manifest.
    Corrupt(String),
    /// The store did not answer; try again later.
    Unavailable(String),
    /// Writing the local copy failed (disk full, permissions).
    Local(String),
    /// Shutdown.
    Cancelled,
}

/// Streams one snapshot back and checks it; stages it when `stage_dir` is set.
async fn verify(
    state: &DaemonState,
    manifest: &SnapshotManifest,
    stage_dir: Option<&Path>,
) -> Result<(), VerifyFailure> {
    state.begin(
        Activity::Verify,
        Trigger::Schedule,
        Some(manifest.id.clone()),
    );
    let started = Instant::now();
    let result = match stage_dir {
        Some(dir) => match stage(state, manifest, dir).await {
            Ok(staged) => {
                state.update(|status| {
                    if let Some(secondary) = &mut status.secondary {
                        secondary.prestaged = Some(staged);
                    }
                });
                Ok(())
            }
            Err(StageError::Verify(error)) => Err(error),
            Err(StageError::Local(message)) => {
                // A full disk is no reason to stop verifying: check the snapshot without it.
                tracing::error!(id = %manifest.id, %message, "pre-staging failed; verifying without it");
                state.note_error(format!("pre-staging {} failed: {message}", manifest.id));
                state.begin(
                    Activity::Verify,
                    Trigger::Schedule,
                    Some(manifest.id.clone()),
                );
                stream_back(state, manifest, std::io::sink())
                    .await
                    .map(|_| ())
            }
        },
        None => stream_back(state, manifest, std::io::sink())
            .await
            .map(|_| ()),
    };
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
                .is_none_or(|n| n.id < summary.id)
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

/// Streams the snapshot into `sink` through every check, counting plain bytes as progress. A
/// failing sink is a local problem, not a corrupt snapshot.
async fn stream_back<W: Write + Send + 'static>(
    state: &DaemonState,
    manifest: &SnapshotManifest,
    sink: W,
) -> Result<W, VerifyFailure> {
    // Read each time: a rotated identity file is picked up without a restart.
    let identities = state
        .settings
        .encryption
        .identities()
        .map_err(|e| VerifyFailure::Unavailable(e.to_string()))?;
    let sink_failed = Arc::new(AtomicBool::new(false));
    let counting = CountingWriter {
        inner: sink,
        progress: state.progress.clone(),
        failed: sink_failed.clone(),
    };
    let read = read_snapshot(
        &state.store,
        &state.layout,
        manifest,
        &identities,
        counting,
        &state.cancel,
    )
    .await;
    // The node bundles (the service-account keys above all) are part of a usable snapshot.
    let read = match read {
        Ok((_, writer)) => verify_bundles(state, manifest, &identities)
            .await
            .map(|()| writer),
        Err(error) => Err(error),
    };
    match read {
        Ok(writer) => Ok(writer.inner),
        Err(TransportError::Cancelled) => Err(VerifyFailure::Cancelled),
        Err(error) if sink_failed.load(Ordering::Relaxed) => {
            Err(VerifyFailure::Local(format!("writing locally: {error}")))
        }
        Err(error @ TransportError::Corrupt { .. }) => {
            Err(VerifyFailure::Corrupt(error.to_string()))
        }
        Err(error) => Err(VerifyFailure::Unavailable(error.to_string())),
    }
}

/// Streams every stored node bundle of the snapshot back through every check.
async fn verify_bundles(
    state: &DaemonState,
    manifest: &SnapshotManifest,
    identities: &etcd_dr_transport::Identities,
) -> Result<(), TransportError> {
    for bundle in &manifest.nodes {
        if let etcd_dr_core::NodeBundle::Stored { object, raw, .. } = bundle {
            etcd_dr_transport::read_object(
                &state.store,
                &state.layout,
                &manifest.id,
                object,
                raw,
                identities,
                std::io::sink(),
                &state.cancel,
            )
            .await?;
        }
    }
    Ok(())
}

enum StageError {
    Verify(VerifyFailure),
    Local(String),
}

/// Verifies into `<dir>/.<id>.db.partial`, then links it to `<dir>/<id>.db` (never replacing a
/// file), then removes older staged snapshots: the newest verified copy is always on disk.
async fn stage(
    state: &DaemonState,
    manifest: &SnapshotManifest,
    dir: &Path,
) -> Result<PrestagedSnapshot, StageError> {
    let id = &manifest.id;
    let target = dir.join(format!("{id}.db"));
    let staged = PrestagedSnapshot {
        id: id.clone(),
        path: target.display().to_string(),
        bytes: manifest.raw.size,
    };
    if target.exists() {
        // Staged by an earlier run: check the store's copy, then the local one against it.
        stream_back(state, manifest, std::io::sink())
            .await
            .map_err(StageError::Verify)?;
        let (path, expected) = (target.clone(), manifest.raw.sha256.clone());
        let actual = tokio::task::spawn_blocking(move || file_sha256(&path))
            .await
            .map_err(|e| StageError::Local(e.to_string()))?
            .map_err(|e| StageError::Local(format!("reading `{}`: {e}", target.display())))?;
        if actual != expected {
            return Err(StageError::Local(format!(
                "`{}` exists but differs from snapshot {id} (SHA-256 {actual}); it was left in place, move it away",
                target.display()
            )));
        }
        remove_older(dir, id);
        return Ok(staged);
    }

    let partial = dir.join(format!(".{id}.db.partial"));
    // A partial file is ours, left by a crash: it never held a verified snapshot.
    let _ = std::fs::remove_file(&partial);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| StageError::Local(format!("creating `{}`: {e}", partial.display())))?;
    let writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let written = match stream_back(state, manifest, writer).await {
        Ok(writer) => writer,
        Err(failure) => {
            let _ = std::fs::remove_file(&partial);
            return Err(match failure {
                VerifyFailure::Local(message) => StageError::Local(message),
                other => StageError::Verify(other),
            });
        }
    };
    let (from, to) = (partial.clone(), target.clone());
    let finished = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let file = written.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        // A hard link fails if the target appeared meanwhile: nothing is ever replaced.
        std::fs::hard_link(&from, &to)?;
        std::fs::remove_file(&from)?;
        if let Some(parent) = to.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(|e| StageError::Local(e.to_string()))
    .and_then(|r| {
        r.map_err(|e| StageError::Local(format!("finishing `{}`: {e}", target.display())))
    });
    if let Err(error) = finished {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    tracing::info!(id = %id, path = %target.display(), "snapshot pre-staged");
    remove_older(dir, id);
    Ok(staged)
}

/// Removes staged snapshots other than `keep` (only files named `<snapshot id>.db`).
fn remove_older(dir: &Path, keep: &SnapshotId) {
    let Ok(files) = staged_files(dir) else {
        return;
    };
    for (id, path) in files {
        if &id != keep {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(id = %id, "older pre-staged snapshot removed"),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove an older pre-staged snapshot")
                }
            }
        }
    }
}

/// Files named `<snapshot id>.db` in `dir`, oldest first.
fn staged_files(dir: &Path) -> std::io::Result<Vec<(SnapshotId, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".db")) else {
            continue;
        };
        if let Ok(id) = stem.parse::<SnapshotId>() {
            files.push((id, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Counts plain bytes into the progress counters, and remembers whether the sink failed.
struct CountingWriter<W> {
    inner: W,
    progress: Arc<ShipProgress>,
    failed: Arc<AtomicBool>,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self.inner.write(data) {
            Ok(written) => {
                self.progress
                    .raw_bytes
                    .fetch_add(written as u64, Ordering::Relaxed);
                Ok(written)
            }
            Err(error) => {
                self.failed.store(true, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner
            .flush()
            .inspect_err(|_| self.failed.store(true, Ordering::Relaxed))
    }
}
