//! Restore to a point from the store: the point resolved to a revision, the generation whose
//! chain covers it, the newest full snapshot at or below it that is a base for that generation
//! (`base.rs`: of its history, not merely of its revision range), fetched and
//! verified by transport, then replay.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use etcd_dr_core::{RestorePoint, SnapshotManifest};
use etcd_dr_transport::{
    list_snapshots, read_snapshot, CountingWriter, Identities, ManifestTrust, ShipProgress,
    SnapshotLayout,
};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::point_in_time::revision_at_time;
use crate::store::{list_generations, list_segments};
use crate::{
    replay_to_revision, BaseCandidate, ChainReader, GenerationId, ReplayEngine, ReplayProgress,
    ReplayReport, ReplayRequest, ReplicationError, ReplicationLayout,
};

/// Where to look and what to use.
pub struct RevisionSource {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Where the full snapshots are.
    pub snapshots: SnapshotLayout,
    /// Where the segments are.
    pub segments: ReplicationLayout,
    /// Identities for encrypted snapshots and segments.
    pub identities: Identities,
    /// What a base snapshot and every segment must be to be used (signed by a trusted key, of
    /// this cluster; a snapshot encrypted where required).
    pub trust: ManifestTrust,
    /// How revisions are replayed onto the base snapshot.
    pub engine: ReplayEngine,
}

/// What a restore to a point uses, decided from listings (and, for a time, a few segment
/// headers) before anything is downloaded.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    /// The revision to restore.
    pub target: i64,
    /// The full snapshot to replay onto: the newest at or below the target in the generation.
    pub base: SnapshotManifest,
    /// The generation whose segments reach the target; `None` when the target is the base
    /// snapshot's own revision and no segment covers it (the snapshot is restored as it is).
    pub generation: Option<GenerationId>,
}

impl RestorePlan {
    /// The etcd cluster id the base records (hex in its manifest).
    pub fn base_cluster_id(&self) -> Option<u64> {
        u64::from_str_radix(&self.base.etcd.cluster_id, 16).ok()
    }
}

/// What [`fetch_revision`] restored, from what.
#[derive(Debug, Clone)]
pub struct FetchedRevision {
    /// What was planned.
    pub plan: RestorePlan,
    /// The replay; `None` when the base snapshot itself was the target.
    pub report: Option<ReplayReport>,
}

/// Resolves `point` to a revision and chooses the base snapshot and the generation to replay.
pub async fn plan_restore(
    source: &RevisionSource,
    point: RestorePoint,
    cancel: &CancellationToken,
) -> Result<RestorePlan, ReplicationError> {
    let catalog = list_snapshots(&source.store, &source.snapshots, &source.trust, cancel).await?;
    let generations = list_generations(&source.store, &source.segments, cancel).await?;
    let mut reaches = Vec::with_capacity(generations.len());
    for generation in generations.iter().rev() {
        let names = list_segments(&source.store, &source.segments, generation, cancel).await?;
        let last = names.last().map(|name| name.last_revision);
        reaches.push((
            generation.clone(),
            last.unwrap_or(generation.base_revision()),
        ));
    }
    // `reaches`: newest generation first, with the last revision its listing claims.
    let (target, in_generation) = match point {
        RestorePoint::Revision(revision) => (revision, None),
        RestorePoint::Newest => newest_stored(&catalog.snapshots, &reaches)?,
        RestorePoint::Time(time) => {
            revision_at_time(source, &catalog.snapshots, &reaches, time, cancel).await?
        }
    };
    let candidates: Vec<&(GenerationId, i64)> = match &in_generation {
        Some(chosen) => reaches.iter().filter(|(g, _)| g == chosen).collect(),
        None => reaches.iter().collect(),
    };
    for (generation, last) in candidates {
        if generation.base_revision() > target || target > *last {
            continue;
        }
        let next = next_generation(&reaches, generation);
        if let Some(base) = newest_base(&catalog.snapshots, generation, next, target) {
            return Ok(RestorePlan {
                target,
                base: base.clone(),
                generation: Some(generation.clone()),
            });
        }
    }
    if let Some(base) = catalog
        .snapshots
        .iter()
        .rev()
        .find(|m| m.etcd.revision == target)
    {
        return Ok(RestorePlan {
            target,
            base: base.clone(),
            generation: None,
        });
    }
    let reach = reaches.iter().map(|(_, last)| *last).max();
    Err(match reach {
        Some(reach) if target > reach => ReplicationError::NotRestorable {
            requested: target,
            restorable: reach,
            detail: "no segment holds it yet".into(),
        },
        Some(_) => ReplicationError::NoCoverage {
            requested: target,
            detail: "no generation of segments that covers it has a complete snapshot at or below it (older than the oldest kept snapshot?)".into(),
        },
        None => ReplicationError::NoCoverage {
            requested: target,
            detail: format!(
                "no replication segments under `{}`",
                source.segments.segments_prefix()
            ),
        },
    })
}

/// The newest complete snapshot at or below `to` that `generation`'s segments may be replayed
/// onto (`base.rs`); `next` is the generation after it.
fn newest_base<'a>(
    snapshots: &'a [SnapshotManifest],
    generation: &GenerationId,
    next: Option<&GenerationId>,
    to: i64,
) -> Option<&'a SnapshotManifest> {
    snapshots
        .iter()
        .filter(|m| m.etcd.revision <= to && BaseCandidate::from(*m).serves(generation, next))
        .max_by_key(|m| (m.etcd.revision, m.id.clone()))
}

/// The generation that started after `generation`; `reaches` newest first.
fn next_generation<'a>(
    reaches: &'a [(GenerationId, i64)],
    generation: &GenerationId,
) -> Option<&'a GenerationId> {
    let index = reaches.iter().position(|(g, _)| g == generation)?;
    index.checked_sub(1).map(|newer| &reaches[newer].0)
}

/// `newest`: the end of the newest generation that has a base snapshot, or the newest snapshot
/// when nothing stored is newer.
fn newest_stored(
    snapshots: &[SnapshotManifest],
    reaches: &[(GenerationId, i64)],
) -> Result<(i64, Option<GenerationId>), ReplicationError> {
    let newest_snapshot = snapshots.last().map(|m| m.etcd.revision);
    for (generation, last) in reaches {
        let next = next_generation(reaches, generation);
        if newest_base(snapshots, generation, next, *last).is_some() {
            if newest_snapshot.is_some_and(|r| r > *last) {
                break;
            }
            return Ok((*last, Some(generation.clone())));
        }
    }
    newest_snapshot
        .map(|revision| (revision, None))
        .ok_or_else(|| ReplicationError::NoCoverage {
            requested: 0,
            detail: "the store holds no complete snapshot".into(),
        })
}

/// Writes a plain `.db` of the keyspace at `point` to `output` (which must not exist), using
/// `work_dir` for the base snapshot (and the `etcd` engine's throw-away etcd).
pub async fn fetch_revision(
    source: &RevisionSource,
    point: RestorePoint,
    output: PathBuf,
    work_dir: PathBuf,
    progress: Option<Arc<ReplayProgress>>,
    cancel: &CancellationToken,
) -> Result<FetchedRevision, ReplicationError> {
    let plan = plan_restore(source, point, cancel).await?;
    let manifest = &plan.base;
    let download = progress
        .as_ref()
        .map(|progress| progress.base_download.clone())
        .unwrap_or_default();
    let Some(generation) = plan.generation.clone() else {
        // The target is the snapshot itself: fetched as it is, straight to `output`.
        download_base(source, manifest, &output, download, cancel).await?;
        return Ok(FetchedRevision { plan, report: None });
    };
    let base_db = work_dir.join(format!("base-{}.db", manifest.id));
    let result = match download_base(source, manifest, &base_db, download, cancel).await {
        Ok(()) => {
            let request = ReplayRequest {
                base_db: base_db.clone(),
                target_revision: plan.target,
                output_db: output,
                work_dir,
                base_cluster_id: plan.base_cluster_id(),
                progress,
            };
            replay_generation(source, &generation, &request, cancel).await
        }
        Err(error) => Err(error),
    };
    let _ = std::fs::remove_file(&base_db);
    Ok(FetchedRevision {
        plan,
        report: Some(result?),
    })
}

/// Replays `generation` onto `request.base_db` up to the target (the chain read from its
/// first segment, every link checked).
pub async fn replay_generation(
    source: &RevisionSource,
    generation: &GenerationId,
    request: &ReplayRequest,
    cancel: &CancellationToken,
) -> Result<ReplayReport, ReplicationError> {
    let mut chain = ChainReader::open(
        source.store.clone(),
        source.segments.clone(),
        generation.clone(),
        source.identities.clone(),
        source.trust.clone(),
        cancel,
    )
    .await?;
    replay_to_revision(&source.engine, &mut chain, request, cancel).await
}

/// The base snapshot, verified, into the new owner-only file `path`; its plain bytes counted
/// into `progress`.
async fn download_base(
    source: &RevisionSource,
    manifest: &SnapshotManifest,
    path: &Path,
    progress: Arc<ShipProgress>,
    cancel: &CancellationToken,
) -> Result<(), ReplicationError> {
    let local_error = |action, source| ReplicationError::LocalIo {
        action,
        path: path.display().to_string(),
        source,
    };
    // The plain snapshot holds every Secret of the cluster: owner-only.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| local_error("creating", e))?;
    progress
        .expected_raw_bytes
        .store(manifest.raw.size, std::sync::atomic::Ordering::Relaxed);
    let fetched = read_snapshot(
        &source.store,
        &source.snapshots,
        manifest,
        &source.identities,
        CountingWriter::new(std::io::BufWriter::with_capacity(1 << 20, file), progress),
        cancel,
    )
    .await
    .map_err(ReplicationError::from)
    .and_then(|(_, mut writer)| {
        use std::io::Write;
        writer.flush().map_err(|e| local_error("writing", e))
    });
    if fetched.is_err() {
        let _ = std::fs::remove_file(path);
    }
    fetched
}
