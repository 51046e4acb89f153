//! Staging files the local store leaves when a process dies mid-upload: object_store's
//! `LocalFileSystem` writes `<name>#<n>` beside the object and renames it on completion. A
//! SIGKILL leaves the staging file behind, hidden from listings, so `list` and retention never
//! see it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::TransportError;

/// Deletes staging files (`<name>#<digits>`) under `dir` last written longer than `grace` ago;
/// returns the files deleted. A missing `dir` holds nothing.
pub fn sweep_local_staging(dir: &Path, grace: Duration) -> Result<Vec<PathBuf>, TransportError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.display().to_string();
        move |source| TransportError::LocalIo {
            action,
            path,
            source,
        }
    };
    let mut removed = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    let now = SystemTime::now();
    while let Some(next) = pending.pop() {
        let entries = match std::fs::read_dir(&next) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("list local store directory", &next)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io("list local store directory", &next))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(io("read metadata of", &path))?;
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            let staging = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.rsplit_once('#'))
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            let old = meta
                .modified()
                .ok()
                .and_then(|at| now.duration_since(at).ok())
                .is_some_and(|age| age > grace);
            if staging && old {
                std::fs::remove_file(&path).map_err(io("delete staging file", &path))?;
                tracing::info!(path = %etcd_dr_core::printable(&path.display().to_string()), "deleted a local staging leftover");
                removed.push(path);
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_staging_files_go_and_everything_else_stays() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir
            .path()
            .join("prod/snapshots/20261125T120000Z-r1/0123456789abcdef");
        std::fs::create_dir_all(&folder).unwrap();
        for name in ["etcd.db.zst#3", "etcd.db.zst", "manifest.json", "odd#name"] {
            std::fs::write(folder.join(name), b"x").unwrap();
        }
        assert!(sweep_local_staging(dir.path(), Duration::from_secs(3600))
            .unwrap()
            .is_empty());
        std::thread::sleep(Duration::from_millis(20));
        let removed = sweep_local_staging(dir.path(), Duration::from_millis(10)).unwrap();
        assert_eq!(removed, vec![folder.join("etcd.db.zst#3")]);
        for name in ["etcd.db.zst", "manifest.json", "odd#name"] {
            assert!(folder.join(name).exists(), "{name}");
        }
        assert!(
            sweep_local_staging(&dir.path().join("missing"), Duration::ZERO)
                .unwrap()
                .is_empty()
        );
    }
}
