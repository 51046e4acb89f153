//! Plain snapshots on local disk. A pre-stage directory holds verified copies as
//! `<dir>/<id>.db`: the secondary writes the newest one there, promote takes it from there (or
//! downloads into its own work directory, under the same contract).
//!
//! The contract: a copy is written to a hidden partial file beside its name (owner-only, it
//! holds every Secret of the cluster), fsynced, linked into place (never replacing a file) and
//! the directory fsynced, so a crash leaves the whole file or none. Readers trust only a copy
//! whose size and SHA-256 match the manifest.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use etcd_dr_core::{SnapshotId, SnapshotManifest};
use sha2::{Digest, Sha256};

use crate::TransportError;

/// Write buffer of a local copy.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Read buffer when hashing a local copy.
const HASH_BUFFER_BYTES: usize = 256 * 1024;

/// A directory of plain snapshots named `<snapshot id>.db`.
#[derive(Debug, Clone)]
pub struct PrestageDir {
    dir: PathBuf,
}

impl PrestageDir {
    /// The directory at `dir` (nothing is touched until asked).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Where the directory is.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (owner-only) unless it exists, and checks that it can be listed.
    pub fn create(&self) -> Result<(), TransportError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| local_io("creating", &self.dir, source))?;
        self.staged().map(|_| ())
    }

    /// Where snapshot `id` is (or would be) staged.
    pub fn staged_path(&self, id: &SnapshotId) -> PathBuf {
        self.dir.join(format!("{id}.db"))
    }

    /// The staged files (named `<snapshot id>.db`), oldest first.
    pub fn staged(&self) -> Result<Vec<(SnapshotId, PathBuf)>, TransportError> {
        let listing_error = |source| local_io("listing", &self.dir, source);
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(listing_error)? {
            let entry = entry.map_err(listing_error)?;
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

    /// Removes every staged snapshot but `keep`. Best effort: what cannot be removed is logged
    /// and left.
    pub fn remove_all_but(&self, keep: &SnapshotId) {
        let files = match self.staged() {
            Ok(files) => files,
            Err(error) => {
                tracing::warn!(%error, "cannot list the pre-staged snapshots");
                return;
            }
        };
        for (id, path) in files {
            if &id == keep {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(id = %id, "older pre-staged snapshot removed"),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove an older pre-staged snapshot")
                }
            }
        }
    }

    /// True when the staged copy of `manifest` exists and matches it.
    pub async fn holds(&self, manifest: &SnapshotManifest) -> Result<bool, TransportError> {
        file_matches(&self.staged_path(&manifest.id), manifest).await
    }

    /// Starts staging snapshot `id`: a fresh hidden partial file (one a crash left behind is
    /// ours and never held a verified copy, so it is removed first). Write the plain snapshot
    /// into the returned writer, then [`PartialFile::commit`] it.
    pub fn begin(&self, id: &SnapshotId) -> Result<(PartialFile, BufWriter<File>), TransportError> {
        let partial = self.dir.join(format!(".{id}.db.partial"));
        let _ = std::fs::remove_file(&partial);
        PartialFile::create(partial, self.staged_path(id), 0o600)
    }
}

/// A new file being written beside its final name; removed when dropped uncommitted.
#[derive(Debug)]
pub struct PartialFile {
    partial: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl PartialFile {
    /// Creates `partial` (which must not exist) with permission bits `mode` (less the umask),
    /// to become `target` on [`commit`](Self::commit).
    pub fn create(
        partial: PathBuf,
        target: PathBuf,
        mode: u32,
    ) -> Result<(Self, BufWriter<File>), TransportError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&partial)
            .map_err(|source| local_io("creating", &partial, source))?;
        let partial = Self {
            partial,
            target,
            committed: false,
        };
        Ok((partial, BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)))
    }

    /// The name the file gets once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes and fsyncs `written` (the writer [`create`](Self::create) returned), links it to
    /// its final name (failing, and replacing nothing, if that name exists), removes the
    /// partial name and fsyncs the directory. Returns the final path.
    pub async fn commit(mut self, written: BufWriter<File>) -> Result<PathBuf, TransportError> {
        let (partial, target) = (self.partial.clone(), self.target.clone());
        tokio::task::spawn_blocking(move || {
            let file = written
                .into_inner()
                .map_err(|e| local_io("writing", &partial, e.into_error()))?;
            file.sync_all()
                .map_err(|source| local_io("syncing", &partial, source))?;
            // A hard link fails if the target appeared meanwhile: nothing is ever replaced.
            std::fs::hard_link(&partial, &target)
                .map_err(|source| local_io("linking the finished copy to", &target, source))?;
            std::fs::remove_file(&partial)
                .map_err(|source| local_io("removing", &partial, source))?;
            // The link itself is durable once its directory is (`out.db` is in `.`).
            let parent = match target.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            File::open(parent)
                .and_then(|dir| dir.sync_all())
                .map_err(|source| local_io("syncing", parent, source))?;
            Ok::<_, TransportError>(())
        })
        .await
        .map_err(|e| local_io("finishing", &self.target, std::io::Error::other(e)))??;
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Size and SHA-256 (hex) of a local file, read on a blocking thread.
pub async fn file_digest(path: &Path) -> Result<(u64, String), TransportError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = File::open(&owned)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; HASH_BUFFER_BYTES];
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
    .map_err(|e| local_io("hashing", path, std::io::Error::other(e)))?
    .map_err(|source| local_io("hashing", path, source))
}

/// True when `path` exists and holds exactly the manifest's plain snapshot.
pub async fn file_matches(
    path: &Path,
    manifest: &SnapshotManifest,
) -> Result<bool, TransportError> {
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.len() == manifest.raw.size => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(local_io("reading", path, source)),
    }
    let (size, sha256) = file_digest(path).await?;
    Ok(size == manifest.raw.size && sha256 == manifest.raw.sha256)
}

fn local_io(action: &'static str, path: &Path, source: std::io::Error) -> TransportError {
    TransportError::LocalIo {
        action,
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn id(minutes: i64, revision: i64) -> SnapshotId {
        let at = chrono::DateTime::from_timestamp(1_790_000_000 + minutes * 60, 0).unwrap();
        SnapshotId::new(at, revision)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_committed_copy_is_owner_only_and_the_partial_is_gone() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = PrestageDir::new(scratch.path().join("prestage"));
        dir.create().unwrap();
        assert_eq!(mode(dir.path()), 0o700);
        let snapshot = id(0, 5);
        let (file, mut writer) = dir.begin(&snapshot).unwrap();
        writer.write_all(b"plain snapshot").unwrap();
        let path = file.commit(writer).await.unwrap();
        assert_eq!(path, dir.staged_path(&snapshot));
        assert_eq!(std::fs::read(&path).unwrap(), b"plain snapshot");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(names(dir.path()), [format!("{snapshot}.db")]);
        assert_eq!(file_digest(&path).await.unwrap().0, 14);
    }

    #[tokio::test]
    async fn a_copy_dropped_before_its_commit_leaves_nothing() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = PrestageDir::new(scratch.path());
        let (file, mut writer) = dir.begin(&id(0, 5)).unwrap();
        writer.write_all(b"half").unwrap();
        drop((file, writer));
        assert!(names(scratch.path()).is_empty());
    }

    #[tokio::test]
    async fn a_commit_never_replaces_an_existing_file() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = PrestageDir::new(scratch.path());
        let snapshot = id(0, 5);
        std::fs::write(dir.staged_path(&snapshot), b"precious").unwrap();
        let (file, mut writer) = dir.begin(&snapshot).unwrap();
        writer.write_all(b"new").unwrap();
        let error = file.commit(writer).await.unwrap_err();
        assert!(matches!(error, TransportError::LocalIo { .. }), "{error}");
        assert_eq!(
            std::fs::read(dir.staged_path(&snapshot)).unwrap(),
            b"precious"
        );
        assert_eq!(names(scratch.path()), [format!("{snapshot}.db")]);
    }

    #[test]
    fn a_partial_file_left_by_a_crash_is_replaced_on_the_next_begin() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = PrestageDir::new(scratch.path());
        let snapshot = id(0, 5);
        let (left, writer) = dir.begin(&snapshot).unwrap();
        std::mem::forget(left);
        drop(writer);
        assert!(dir.begin(&snapshot).is_ok());
    }

    #[test]
    fn only_snapshot_files_are_listed_and_removed() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = PrestageDir::new(scratch.path());
        let (old, new) = (id(0, 5), id(10, 9));
        for name in [
            format!("{new}.db"),
            format!("{old}.db"),
            "notes.db".into(),
            format!(".{new}.db.partial"),
        ] {
            std::fs::write(scratch.path().join(name), b"x").unwrap();
        }
        let listed: Vec<SnapshotId> = dir.staged().unwrap().into_iter().map(|(i, _)| i).collect();
        assert_eq!(listed, [old.clone(), new.clone()]);
        dir.remove_all_but(&new);
        assert_eq!(
            names(scratch.path()),
            [
                format!(".{new}.db.partial"),
                format!("{new}.db"),
                "notes.db".into()
            ]
        );
    }

    #[tokio::test]
    async fn a_copy_matches_only_with_the_manifests_size_and_digest() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("copy.db");
        std::fs::write(&path, b"plain snapshot").unwrap();
        let (size, sha256) = file_digest(&path).await.unwrap();
        assert_eq!(sha256, hex::encode(Sha256::digest(b"plain snapshot")));
        let mut manifest = manifest_with(size, &sha256);
        assert!(file_matches(&path, &manifest).await.unwrap());
        manifest.raw.sha256 = "00".repeat(32);
        assert!(!file_matches(&path, &manifest).await.unwrap());
        manifest.raw.size += 1;
        assert!(!file_matches(&path, &manifest).await.unwrap());
        assert!(!file_matches(&scratch.path().join("absent.db"), &manifest)
            .await
            .unwrap());
    }

    fn manifest_with(size: u64, sha256: &str) -> SnapshotManifest {
        serde_json::from_value(serde_json::json!({
            "format_version": 1,
            "id": id(0, 5).to_string(),
            "cluster": "prod",
            "etcd": {"cluster_id": "1", "version": "3.5.16", "revision": 5, "raft_index": 1, "raft_term": 1,
                     "source_endpoint": "x", "source_member_id": "1", "members": []},
            "raw": {"size": size, "sha256": sha256},
            "etcd_sha256": "00",
            "stored": {"name": "etcd.db.zst", "size": 1, "sha256": "00", "compression": {"type": "zstd", "level": 3}},
            "created_at": "2026-11-25T12:00:00Z",
            "completed_at": "2026-11-25T12:00:01Z",
            "duration_seconds": 1.0,
            "producer": {"tool": "t", "host": "h"},
        }))
        .unwrap()
    }
}
