//! Restore to a revision from the store: the generation whose chain covers it, the newest full
//! snapshot at or below it inside that generation, fetched and verified by transport, then replay.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use etcd_dr_core::SnapshotId;
use etcd_dr_transport::{list_snapshots, read_snapshot, Identities, ManifestTrust, SnapshotLayout};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::scratch_etcd::EtcdBinaries;
use crate::store::{list_generations, list_segments};
use crate::{
    replay_to_revision, ChainReader, GenerationId, ReplayReport, ReplayRequest, ReplicationError,
    ReplicationLayout,
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
    /// etcd and etcdutl for the throw-away etcd.
    pub binaries: EtcdBinaries,
}

/// What [`fetch_revision`] restored, from what.
#[derive(Debug, Clone)]
pub struct FetchedRevision {
    /// The base snapshot.
    pub snapshot: SnapshotId,
    /// The generation replayed.
    pub generation: GenerationId,
    /// The replay.
    pub report: ReplayReport,
}

/// Writes a plain `.db` of the keyspace at `target` to `output` (which must not exist), using
/// `work_dir` for the base snapshot and the throw-away etcd.
pub async fn fetch_revision(
    source: &RevisionSource,
    target: i64,
    output: PathBuf,
    work_dir: PathBuf,
    cancel: &CancellationToken,
) -> Result<FetchedRevision, ReplicationError> {
    let generation = covering_generation(source, target, cancel).await?;
    let catalog = list_snapshots(&source.store, &source.snapshots, &source.trust, cancel).await?;
    let manifest = catalog
        .snapshots
        .iter()
        .filter(|m| m.etcd.revision >= generation.base_revision() && m.etcd.revision <= target)
        .max_by_key(|m| (m.etcd.revision, m.id.clone()))
        .ok_or_else(|| ReplicationError::NoCoverage {
            requested: target,
            detail: format!(
                "no complete snapshot between revision {} (where generation {generation} starts) and {target}",
                generation.base_revision()
            ),
        })?;
    let base_db = work_dir.join(format!("base-{}.db", manifest.id));
    // The plain base snapshot holds every Secret of the cluster: owner-only.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&base_db)
        .map_err(|source| ReplicationError::LocalIo {
            action: "creating",
            path: base_db.display().to_string(),
            source,
        })?;
    let fetched = read_snapshot(
        &source.store,
        &source.snapshots,
        manifest,
        &source.identities,
        std::io::BufWriter::with_capacity(1 << 20, file),
        cancel,
    )
    .await
    .map_err(ReplicationError::from)
    .and_then(|(_, mut writer)| {
        use std::io::Write;
        writer.flush().map_err(|source| ReplicationError::LocalIo {
            action: "writing",
            path: base_db.display().to_string(),
            source,
        })
    });
    let result = match fetched {
        Ok(()) => {
            let mut chain = ChainReader::open(
                source.store.clone(),
                source.segments.clone(),
                generation.clone(),
                source.identities.clone(),
                source.trust.clone(),
                cancel,
            )
            .await?;
            let request = ReplayRequest {
                base_db: base_db.clone(),
                target_revision: target,
                output_db: output,
                work_dir,
            };
            replay_to_revision(&source.binaries, &mut chain, &request, cancel).await
        }
        Err(error) => Err(error),
    };
    let _ = std::fs::remove_file(&base_db);
    Ok(FetchedRevision {
        snapshot: manifest.id.clone(),
        generation,
        report: result?,
    })
}

/// The newest generation whose listed segments reach `target` from at or below it.
async fn covering_generation(
    source: &RevisionSource,
    target: i64,
    cancel: &CancellationToken,
) -> Result<GenerationId, ReplicationError> {
    let generations = list_generations(&source.store, &source.segments, cancel).await?;
    let mut newest_reach = None;
    for generation in generations.iter().rev() {
        let names = list_segments(&source.store, &source.segments, generation, cancel).await?;
        let last = names
            .last()
            .map(|name| name.last_revision)
            .unwrap_or(generation.base_revision());
        newest_reach.get_or_insert(last);
        if generation.base_revision() <= target && target <= last {
            return Ok(generation.clone());
        }
    }
    Err(match newest_reach {
        Some(reach) if target > reach => ReplicationError::NotRestorable {
            requested: target,
            restorable: reach,
            detail: "no segment holds it yet".into(),
        },
        _ => ReplicationError::NoCoverage {
            requested: target,
            detail: format!(
                "no generation of segments under `{}` covers it",
                source.segments.segments_prefix()
            ),
        },
    })
}
