//! Unpacking a node bundle into a local directory as if the tar were hostile: it comes from the
//! store, and root may be the one unpacking it.
//!
//! Refused, loudly: entries with `..` or an absolute path, symbolic links that point outside
//! the directory (absolute, or climbing out with `..`), hard links to anything but an earlier
//! entry, and special files (devices, FIFOs, sparse files). Modes lose setuid, setgid, sticky
//! and world-write; private keys (`*.key`, `sa.key` above all) are at most 0600. Owners are
//! restored only when asked.
//!
//! The tar comes from a reader, or from bytes written into a [`BundleSink`] (the sink a
//! verified download streams into).

use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use tar::EntryType;

use crate::bundle::TarScanner;
use crate::{NodeError, TarSummary};

/// How a bundle is unpacked.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnpackOptions {
    /// Give files the owner and group recorded in the tar (root only; otherwise the files
    /// belong to whoever unpacks).
    pub keep_owners: bool,
}

/// Writes queued between a [`BundleSink`] and the unpacking thread.
const SINK_QUEUE_WRITES: usize = 8;

/// Mode bits never unpacked: setuid, setgid, sticky (dropped with everything above 0o777) and
/// world-write.
const MASKED_MODE_BITS: u32 = 0o002;
/// Private keys are at most owner read-write.
const PRIVATE_KEY_MASK: u32 = 0o177;

/// Unpacks a bundle's tar from `reader` into `dir`, which must not exist yet (it is created
/// 0700). Existing files are never overwritten. Every entry is checked before it is written;
/// the first bad one fails the whole unpack, naming the entry.
pub fn unpack_bundle<R: Read>(
    node: &str,
    reader: R,
    dir: &Path,
    options: UnpackOptions,
) -> Result<TarSummary, NodeError> {
    let fail = |path: &Path, detail: String| NodeError::Unpack {
        node: node.to_string(),
        path: path.display().to_string(),
        detail,
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail(dir, e.to_string()))?;
    let mut scanning = ScanningReader {
        inner: reader,
        scanner: TarScanner::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut scanning);
        archive.set_preserve_ownerships(options.keep_owners && nix::unistd::geteuid().is_root());
        archive.set_overwrite(false);
        archive.set_unpack_xattrs(false);
        archive.set_preserve_permissions(false);
        archive.set_preserve_mtime(true);
        let entries = archive.entries().map_err(|e| fail(dir, e.to_string()))?;
        // Symbolic links unpacked so far: nothing is written through one, so that a link's
        // place in the tree is its real place and the check of its target holds.
        let mut symlinks: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let mut entry = entry.map_err(|e| fail(dir, e.to_string()))?;
            let path = entry
                .path()
                .map_err(|e| fail(dir, format!("an entry's name is unreadable: {e}")))?
                .into_owned();
            let shown = dir.join(escape_path(&path));
            check_entry(&entry, &path).map_err(|detail| fail(&shown, detail))?;
            let normal = normalise(&path);
            if let Some(link) = symlinks.iter().find(|link| normal.starts_with(link)) {
                return Err(fail(
                    &shown,
                    format!(
                        "refused: it lies under the symbolic link `{}`",
                        escape_path(link).display()
                    ),
                ));
            }
            if entry.header().entry_type() == EntryType::Symlink {
                symlinks.push(normal);
            }
            if matches!(
                entry.header().entry_type(),
                EntryType::XHeader | EntryType::XGlobalHeader
            ) {
                continue;
            }
            let is_key = path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with(".key"));
            entry.set_mask(if is_key {
                PRIVATE_KEY_MASK
            } else {
                MASKED_MODE_BITS
            });
            let unpacked = entry
                .unpack_in(dir)
                .map_err(|e| fail(&shown, e.to_string()))?;
            if !unpacked {
                return Err(fail(
                    &shown,
                    "refused: it would land outside the directory".into(),
                ));
            }
        }
    }
    // Read to the end, so that the caller's checksums cover every byte.
    std::io::copy(&mut scanning, &mut std::io::sink()).map_err(|e| fail(dir, e.to_string()))?;
    Ok(scanning.scanner.finish())
}

/// Why an entry may not be unpacked, if it may not.
fn check_entry<R: Read>(entry: &tar::Entry<'_, R>, path: &Path) -> Result<(), String> {
    stays_inside(path, Path::new("")).map_err(|why| format!("refused: its name {why}"))?;
    let kind = entry.header().entry_type();
    match kind {
        EntryType::Regular
        | EntryType::Continuous
        | EntryType::Directory
        | EntryType::XHeader
        | EntryType::XGlobalHeader => Ok(()),
        EntryType::Symlink | EntryType::Link => {
            let target = entry
                .link_name()
                .map_err(|e| format!("refused: its link target is unreadable: {e}"))?
                .ok_or_else(|| "refused: a link without a target".to_string())?;
            let base = if kind == EntryType::Symlink {
                // A symbolic link resolves from its own directory.
                path.parent().unwrap_or(Path::new(""))
            } else {
                // A hard link names another entry of the archive.
                Path::new("")
            };
            stays_inside(&target, base).map_err(|why| {
                format!(
                    "refused: a {} to `{}`, which {why}",
                    if kind == EntryType::Symlink {
                        "symbolic link"
                    } else {
                        "hard link"
                    },
                    escape_path(&target).display()
                )
            })
        }
        other => Err(format!(
            "refused: it is a {} (only files, directories and links inside the bundle are unpacked)",
            describe(other)
        )),
    }
}

/// `path` without `.` components.
fn normalise(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Checks that `path`, taken relative to `base` (both inside the directory), stays inside.
fn stays_inside(path: &Path, base: &Path) -> Result<(), &'static str> {
    let mut depth = base.components().count();
    for component in path.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth
                    .checked_sub(1)
                    .ok_or("climbs out of the directory with `..`")?;
            }
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    if path.components().any(|c| c == Component::ParentDir) && base.as_os_str().is_empty() {
        // Names of entries and hard-link targets never need `..`.
        return Err("holds `..`");
    }
    Ok(())
}

fn describe(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "FIFO",
        EntryType::GNUSparse => "sparse file",
        _ => "special entry",
    }
}

/// A path from the tar, safe to print: control characters escaped.
fn escape_path(path: &Path) -> PathBuf {
    PathBuf::from(
        path.to_string_lossy()
            .chars()
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect::<String>(),
    )
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
pub fn unpack_bundle_from_sink(
    node: &str,
    dir: &Path,
    options: UnpackOptions,
) -> (BundleSink, BundleUnpack) {
    let (tx, rx) = sync_channel::<Vec<u8>>(SINK_QUEUE_WRITES);
    let thread = {
        let (node, dir) = (node.to_string(), dir.to_path_buf());
        tokio::task::spawn_blocking(move || {
            unpack_bundle(&node, QueueReader::new(rx), &dir, options)
        })
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
mod tests;
