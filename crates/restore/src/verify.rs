//! The verify step: a local copy of the plain snapshot whose size and SHA-256 match the
//! manifest — the pre-staged one when it matches, else streamed back from the store with every
//! checksum checked, written under the pre-stage contract ([`PrestageDir`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use etcd_dr_core::SnapshotManifest;
use etcd_dr_transport::{read_snapshot, Identities, PrestageDir, SnapshotLayout, TransportError};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::{CountingWriter, PromoteError};

/// A plain snapshot on this machine, checked against its manifest.
#[derive(Debug, Clone)]
pub struct LocalSnapshot {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// True when it is the secondary's pre-staged copy.
    pub prestaged: bool,
    /// True when the download created the work directory.
    pub created_work_dir: bool,
}

impl LocalSnapshot {
    /// For a dry run: a guard that removes a downloaded copy (and the work directory the
    /// download created, once empty) when dropped, whichever way the run ends. A pre-staged copy
    /// is the secondary's and stays.
    pub fn discard_on_drop(&self) -> Option<DiscardOnDrop> {
        (!self.prestaged).then(|| DiscardOnDrop {
            file: self.path.clone(),
            dir: self
                .created_work_dir
                .then(|| self.path.parent().map(Path::to_path_buf))
                .flatten(),
        })
    }
}

/// Removes a plain copy when dropped (see [`LocalSnapshot::discard_on_drop`]).
#[derive(Debug)]
pub struct DiscardOnDrop {
    file: PathBuf,
    dir: Option<PathBuf>,
}

impl Drop for DiscardOnDrop {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.file) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.file.display(), %error, "cannot remove the dry run's copy of the snapshot");
            }
        }
        if let Some(dir) = &self.dir {
            // Only when empty: anything else in it is not ours.
            let _ = std::fs::remove_dir(dir);
        }
    }
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
/// download into `<work_dir>/<id>.db` (reused when a previous attempt left a matching one); the
/// download's plain bytes are added to `downloaded` as they are written.
#[allow(clippy::too_many_arguments)]
pub async fn local_snapshot(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    manifest: &SnapshotManifest,
    identities: &Identities,
    prestage_dir: Option<&Path>,
    work_dir: &Path,
    downloaded: Arc<AtomicU64>,
    cancel: &CancellationToken,
) -> Result<LocalSnapshot, PromoteError> {
    let found = |path, prestaged| LocalSnapshot {
        path,
        size: manifest.raw.size,
        prestaged,
        created_work_dir: false,
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
    // The plain copy holds every Secret of the cluster: owner-only (0700 directory, 0600 file).
    let created_work_dir = !work_dir.exists();
    work.create().map_err(local_error)?;
    // A copy that does not match is of no use; the new one never replaces a file.
    match tokio::fs::remove_file(&path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PromoteError::local_io("removing", path.display(), e)),
    }
    let (partial, writer) = work.begin(&manifest.id).map_err(local_error)?;
    // On failure the partial file goes with `partial`.
    let writer = CountingWriter::new(writer, downloaded);
    let written = match read_snapshot(store, layout, manifest, identities, writer, cancel).await {
        Ok((_, written)) => written.into_inner(),
        Err(error) => {
            drop(partial);
            if created_work_dir {
                let _ = tokio::fs::remove_dir(work_dir).await;
            }
            return Err(error.into());
        }
    };
    let path = partial.commit(written).await.map_err(local_error)?;
    Ok(LocalSnapshot {
        created_work_dir,
        ..found(path, false)
    })
}
