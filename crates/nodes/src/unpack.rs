//! Unpacking a bundle's tar into a new local directory, from a reader or from bytes written
//! into a [`BundleSink`] (the sink a verified download streams into).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use crate::{NodeError, TarScanner, TarSummary};

/// Writes queued between a [`BundleSink`] and the unpacking thread.
const SINK_QUEUE_WRITES: usize = 8;

/// Unpacks a bundle's tar from `reader` into `dir`, which must not exist yet: modes and times
/// are kept, owners too when running as root, existing files are never overwritten and entries
/// that would land outside `dir` are refused.
pub fn unpack_bundle<R: Read>(node: &str, reader: R, dir: &Path) -> Result<TarSummary, NodeError> {
    let fail = |path: &Path, detail: String| NodeError::Unpack {
        node: node.to_string(),
        path: path.display().to_string(),
        detail,
    };
    std::fs::create_dir(dir).map_err(|e| fail(dir, e.to_string()))?;
    let mut scanning = ScanningReader {
        inner: reader,
        scanner: TarScanner::new(),
    };
    let mut archive = tar::Archive::new(&mut scanning);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(nix::unistd::geteuid().is_root());
    archive.set_overwrite(false);
    archive.set_unpack_xattrs(false);
    archive.unpack(dir).map_err(|e| fail(dir, e.to_string()))?;
    // Read to the end, so that the caller's checksums cover every byte.
    std::io::copy(&mut scanning, &mut std::io::sink()).map_err(|e| fail(dir, e.to_string()))?;
    Ok(scanning.scanner.finish())
}

struct ScanningReader<R> {
    inner: R,
    scanner: TarScanner,
}

impl<R: Read> Read for ScanningReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.scanner.update(&buf[..read]);
        Ok(read)
    }
}

/// Starts unpacking `node`'s bundle into `dir` (see [`unpack_bundle`]) on a blocking thread,
/// fed by what is written into the returned sink through a small bounded queue. Drop the sink
/// once everything is written, then [`finish`](BundleUnpack::finish).
pub fn unpack_bundle_from_sink(node: &str, dir: &Path) -> (BundleSink, BundleUnpack) {
    let (tx, rx) = sync_channel::<Vec<u8>>(SINK_QUEUE_WRITES);
    let thread = {
        let (node, dir) = (node.to_string(), dir.to_path_buf());
        tokio::task::spawn_blocking(move || unpack_bundle(&node, QueueReader::new(rx), &dir))
    };
    let unpack = BundleUnpack {
        node: node.to_string(),
        dir: dir.to_path_buf(),
        thread,
    };
    (BundleSink(tx), unpack)
}

/// The writing side of [`unpack_bundle_from_sink`]; writes fail once the unpacker stopped.
pub struct BundleSink(SyncSender<Vec<u8>>);

impl Write for BundleSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.send(data.to_vec()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the unpacker stopped")
        })?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A bundle being unpacked by [`unpack_bundle_from_sink`].
pub struct BundleUnpack {
    node: String,
    dir: PathBuf,
    thread: tokio::task::JoinHandle<Result<TarSummary, NodeError>>,
}

impl BundleUnpack {
    /// Waits for the unpacker: what the tar held, or why unpacking failed.
    pub async fn finish(self) -> Result<TarSummary, NodeError> {
        self.thread.await.map_err(|e| NodeError::Unpack {
            node: self.node,
            path: self.dir.display().to_string(),
            detail: format!("unpacker thread failed: {e}"),
        })?
    }
}

/// The unpacker's side of the queue.
struct QueueReader {
    rx: Receiver<Vec<u8>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl QueueReader {
    fn new(rx: Receiver<Vec<u8>>) -> Self {
        Self {
            rx,
            current: std::io::Cursor::new(Vec::new()),
        }
    }
}

impl Read for QueueReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let read = self.current.read(buf)?;
            if read > 0 || buf.is_empty() {
                return Ok(read);
            }
            match self.rx.recv() {
                Ok(chunk) => self.current = std::io::Cursor::new(chunk),
                Err(_) => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of `files` (path, content), as a node's `tar` would stream it.
    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o600);
            header.set_uid(u64::from(nix::unistd::geteuid().as_raw()));
            header.set_gid(u64::from(nix::unistd::getegid().as_raw()));
            header.set_mtime(1_790_000_000);
            header.set_cksum();
            builder
                .append_data(&mut header, path, content.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[tokio::test]
    async fn bytes_written_into_the_sink_are_unpacked() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        let tar = tar_of(&[
            ("etc/kubernetes/pki/sa.key", "PRIVATE"),
            ("etc/kubernetes/admin.conf", "admin"),
        ]);
        let (mut sink, unpack) = unpack_bundle_from_sink("cp1", &out);
        for piece in tar.chunks(700) {
            sink.write_all(piece).unwrap();
        }
        drop(sink);
        let summary = unpack.finish().await.unwrap();
        assert!(summary.complete);
        assert_eq!(summary.entries, 2);
        assert_eq!(summary.service_account_keys, ["etc/kubernetes/pki/sa.key"]);
        assert_eq!(
            std::fs::read_to_string(out.join("etc/kubernetes/admin.conf")).unwrap(),
            "admin"
        );
    }

    #[tokio::test]
    async fn an_unpacker_that_fails_stops_the_writer() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("exists");
        std::fs::create_dir(&out).unwrap();
        let tar = tar_of(&[("a", "x")]);
        let (mut sink, unpack) = unpack_bundle_from_sink("cp1", &out);
        let error = unpack.finish().await.unwrap_err();
        assert!(matches!(error, NodeError::Unpack { .. }), "{error}");
        assert!(sink.write_all(&tar).is_err());
    }
}
