//! The verify step: a local copy of the plain snapshot whose size and SHA-256 match the
//! manifest — the pre-staged one when it matches, else streamed back from the store with every
//! checksum checked.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use etcd_dr_core::{create_private_dir, create_private_file, SnapshotManifest};
use etcd_dr_transport::{read_snapshot, Identities, SnapshotLayout};
use object_store::ObjectStore;
use sha2::{Digest, Sha256};
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

/// Size and SHA-256 of a local file, hashed on a blocking thread.
async fn file_digest(path: &Path) -> Result<(u64, String), PromoteError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&owned)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            size += read as u64;
            hasher.update(&buffer[..read]);
        }
        Ok::<_, std::io::Error>((size, hex::encode(hasher.finalize())))
    })
    .await
    .map_err(|e| PromoteError::local_io("hashing", path.display(), std::io::Error::other(e)))?
    .map_err(|e| PromoteError::local_io("hashing", path.display(), e))
}

/// True when `path` exists and holds exactly the manifest's plain snapshot.
async fn matches(path: &Path, manifest: &SnapshotManifest) -> Result<bool, PromoteError> {
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.len() == manifest.raw.size => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(PromoteError::local_io("reading", path.display(), e)),
    }
    let (size, sha256) = file_digest(path).await?;
    Ok(size == manifest.raw.size && sha256 == manifest.raw.sha256)
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
    let name = format!("{}.db", manifest.id);
    if let Some(dir) = prestage_dir {
        let path = dir.join(&name);
        if matches(&path, manifest).await? {
            return Ok(LocalSnapshot {
                path,
                size: manifest.raw.size,
                prestaged: true,
                created_work_dir: false,
            });
        }
    }
    let path = work_dir.join(&name);
    if matches(&path, manifest).await? {
        return Ok(LocalSnapshot {
            path,
            size: manifest.raw.size,
            prestaged: false,
            created_work_dir: false,
        });
    }
    // The plain copy holds every Secret of the cluster: owner-only, whatever the umask.
    let created_work_dir = !work_dir.exists();
    create_private_dir(work_dir)
        .map_err(|e| PromoteError::local_io("creating", work_dir.display(), e))?;
    let partial = work_dir.join(format!("{name}.partial"));
    // Left by an interrupted attempt: never written into, replaced.
    match std::fs::remove_file(&partial) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PromoteError::local_io("removing", partial.display(), e)),
    }
    let file = create_private_file(&partial)
        .map_err(|e| PromoteError::local_io("creating", partial.display(), e))?;
    let result = read_snapshot(
        store,
        layout,
        manifest,
        identities,
        std::io::BufWriter::new(file),
        cancel,
    )
    .await;
    match result {
        Ok((_, writer)) => {
            let file = writer.into_inner().map_err(|e| {
                PromoteError::local_io("writing", partial.display(), e.into_error())
            })?;
            file.sync_all()
                .map_err(|e| PromoteError::local_io("syncing", partial.display(), e))?;
            tokio::fs::rename(&partial, &path)
                .await
                .map_err(|e| PromoteError::local_io("renaming", partial.display(), e))?;
            Ok(LocalSnapshot {
                path,
                size: manifest.raw.size,
                prestaged: false,
                created_work_dir,
            })
        }
        Err(error) => {
            let _ = tokio::fs::remove_file(&partial).await;
            if created_work_dir {
                let _ = tokio::fs::remove_dir(work_dir).await;
            }
            Err(error.into())
        }
    }
}
