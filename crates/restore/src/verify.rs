//! The verify step: a local copy of the plain snapshot whose size and SHA-256 match the
//! manifest — the pre-staged one when it matches, else streamed back from the store with every
//! checksum checked, written under the pre-stage contract ([`PrestageDir`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use etcd_dr_core::SnapshotManifest;
use etcd_dr_transport::{read_snapshot, Identities, PrestageDir, SnapshotLayout, TransportError};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::PromoteError;

/// A plain snapshot on this machine, checked against its manifest.
#[derive(Debug, Clone)]
pub struct LocalSnapshot {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// True when it is the secondary's pre-staged copy.
    pub prestaged: bool,
}

/// Local file failures keep their own variant; the rest are the store's.
fn local_error(error: TransportError) -> PromoteError {
    match error {
        TransportError::LocalIo {
            action,
            path,
            source,
        } => PromoteError::LocalIo {
            action,
            path,
            source,
        },
        other => PromoteError::Store(other),
    }
}

/// The pre-staged `<prestage_dir>/<id>.db` if it matches the manifest, else a fresh verified
/// download into `<work_dir>/<id>.db` (reused when a previous attempt left a matching one).
pub async fn local_snapshot(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    manifest: &SnapshotManifest,
    identities: &Identities,
    prestage_dir: Option<&Path>,
    work_dir: &Path,
    cancel: &CancellationToken,
) -> Result<LocalSnapshot, PromoteError> {
    let found = |path, prestaged| LocalSnapshot {
        path,
        size: manifest.raw.size,
        prestaged,
    };
    if let Some(dir) = prestage_dir.map(PrestageDir::new) {
        if dir.holds(manifest).await.map_err(local_error)? {
            return Ok(found(dir.staged_path(&manifest.id), true));
        }
    }
    let work = PrestageDir::new(work_dir);
    let path = work.staged_path(&manifest.id);
    if work.holds(manifest).await.map_err(local_error)? {
        return Ok(found(path, false));
    }
    work.create().map_err(local_error)?;
    // A copy that does not match is of no use; the new one never replaces a file.
    match tokio::fs::remove_file(&path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PromoteError::local_io("removing", path.display(), e)),
    }
    let (partial, writer) = work.begin(&manifest.id).map_err(local_error)?;
    // On failure the partial file goes with `partial`.
    let (_, written) = read_snapshot(store, layout, manifest, identities, writer, cancel).await?;
    let path = partial.commit(written).await.map_err(local_error)?;
    Ok(found(path, false))
}
