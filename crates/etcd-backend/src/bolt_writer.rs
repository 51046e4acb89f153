//! A bbolt file written from scratch in one pass: each bucket's keys arrive in order and are
//! bulk-loaded into full leaf pages, branch pages are built bottom-up as leaves fill, and the
//! root bucket, an empty freelist and the two meta pages come last. Memory is one page per
//! tree level, whatever the file's size.
//!
//! The layout is the one `bolt.rs` reads (bbolt `page.go`, `bucket.go`, `db.go`): pages are
//! numbered from 0, 0 and 1 are meta pages, a page bigger than the page size takes the
//! following ids as overflow. bbolt accepts any fill up to a page (it splits or merges pages
//! on its next write), a bucket rooted on its own page whatever its size, and an empty leaf as
//! the root of an empty bucket.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::bolt::{fnv1a64, BRANCH_PAGE, BUCKET_LEAF, LEAF_PAGE, MAGIC, META_PAGE, VERSION};
use crate::BackendError;

const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const FREELIST_PAGE: u16 = 0x10;
/// A page's element count is a `u16`.
const MAX_ELEMENTS: usize = u16::MAX as usize;

/// A bbolt file being written.
pub struct BoltWriter {
    file: BufWriter<File>,
    path: PathBuf,
    page_size: usize,
    next_page: u64,
    /// Reused for each page written.
    page: Vec<u8>,
}

/// Where a finished bucket's tree is: its root page and its sequence counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketHeader {
    /// The root page.
    pub root: u64,
    /// bbolt's `NextSequence` counter.
    pub sequence: u64,
}

impl BucketHeader {
    fn bytes(self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.root.to_le_bytes());
        bytes[8..].copy_from_slice(&self.sequence.to_le_bytes());
        bytes
    }
}

impl BoltWriter {
    /// Creates `path` (which must not exist; owner-only: an etcd backend holds every Secret)
    /// with room for the two meta pages, written by [`BoltWriter::finish`].
    pub fn create(path: &Path, page_size: usize) -> Result<Self, BackendError> {
        if !(1024..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(BackendError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("page size {page_size} is not a power of two in 1 KiB..64 KiB"),
            });
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| io(path, source))?;
        let mut writer = Self {
            file: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            page_size,
            next_page: 2,
            page: Vec::with_capacity(page_size),
        };
        let placeholder = vec![0u8; 2 * page_size];
        writer
            .file
            .write_all(&placeholder)
            .map_err(|source| io(path, source))?;
        Ok(writer)
    }

    /// The page size of the file.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Writes one bucket from `entries` (keys strictly increasing) and returns its header.
    pub fn write_bucket<'a>(
        &mut self,
        sequence: u64,
        entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<BucketHeader, BackendError> {
        let mut tree = BucketWriter::new(self);
        for (key, value) in entries {
            tree.push(self, key, value)?;
        }
        tree.finish(self, sequence)
    }

    /// Writes the root bucket (bucket names strictly increasing), an empty freelist and the
    /// two meta pages, flushes and syncs the file. Returns its length in bytes.
    pub fn finish(
        mut self,
        buckets: &[(Vec<u8>, BucketHeader)],
        root_sequence: u64,
    ) -> Result<u64, BackendError> {
        let mut root = BucketWriter::new(&self).with_flags(BUCKET_LEAF);
        for (name, header) in buckets {
            root.push(&mut self, name, &header.bytes())?;
        }
        let root = root.finish(&mut self, root_sequence)?;
        let freelist = self.write_page(FREELIST_PAGE, 0, &[])?;
        let pages = self.next_page;
        let path = self.path.clone();
        let file = self
            .file
            .into_inner()
            .map_err(|e| io(&path, e.into_error()))?;
        for (id, txid) in [(0u64, 0u64), (1, 1)] {
            let page = meta_page(id, self.page_size, root, freelist, pages, txid);
            file.write_all_at(&page, id * self.page_size as u64)
                .map_err(|source| io(&path, source))?;
        }
        file.sync_all().map_err(|source| io(&path, source))?;
        Ok(pages * self.page_size as u64)
    }

    /// Writes a page (header, then `body`), padded to whole pages; returns its id.
    fn write_page(&mut self, flags: u16, count: usize, body: &[u8]) -> Result<u64, BackendError> {
        let id = self.next_page;
        let length = PAGE_HEADER + body.len();
        let pages = length.div_ceil(self.page_size).max(1);
        self.page.clear();
        self.page.extend_from_slice(&id.to_le_bytes());
        self.page.extend_from_slice(&flags.to_le_bytes());
        self.page.extend_from_slice(&(count as u16).to_le_bytes());
        self.page
            .extend_from_slice(&((pages - 1) as u32).to_le_bytes());
        self.page.extend_from_slice(body);
        self.page.resize(pages * self.page_size, 0);
        self.file
            .write_all(&self.page)
            .map_err(|source| io(&self.path, source))?;
        self.next_page += pages as u64;
        Ok(id)
    }

    /// Where the writer is: the next page's offset must be its id times the page size.
    #[cfg(test)]
    fn position(&mut self) -> u64 {
        use std::io::Seek;
        self.file.stream_position().unwrap_or(0)
    }
}

/// One bucket's B+tree being bulk-loaded into a [`BoltWriter`]: a partly filled page per
/// level, leaves at level 0. Keys must arrive strictly increasing.
pub struct BucketWriter {
    page_size: usize,
    leaf_flags: u32,
    levels: Vec<PendingPage>,
}

/// The elements of a page not yet written: their headers' fields and their bytes.
#[derive(Default)]
struct PendingPage {
    /// Per element: flags (leaf) or child page (branch), offset in `data`, key and value sizes.
    elements: Vec<(u64, u32, u32, u32)>,
    data: Vec<u8>,
    first_key: Vec<u8>,
    written: u64,
}

impl PendingPage {
    fn size(&self) -> usize {
        PAGE_HEADER + self.elements.len() * ELEMENT + self.data.len()
    }
}

impl BucketWriter {
    /// A new, empty bucket of `out`.
    pub fn new(out: &BoltWriter) -> Self {
        Self {
            page_size: out.page_size,
            leaf_flags: 0,
            levels: vec![PendingPage::default()],
        }
    }

    fn with_flags(mut self, flags: u32) -> Self {
        self.leaf_flags = flags;
        self
    }

    /// Adds the next key (greater than every key before it) and its value.
    pub fn push(
        &mut self,
        out: &mut BoltWriter,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), BackendError> {
        let flags = u64::from(self.leaf_flags);
        self.add(out, 0, flags, key, value)
    }

    /// Adds an element at `level` (a leaf's `flags`, or a branch's child page in `word`),
    /// writing the level's page first when the element does not fit.
    fn add(
        &mut self,
        out: &mut BoltWriter,
        level: usize,
        word: u64,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), BackendError> {
        if level == self.levels.len() {
            self.levels.push(PendingPage::default());
        }
        let pending = &self.levels[level];
        let needed = ELEMENT + key.len() + value.len();
        if !pending.elements.is_empty()
            && (pending.size() + needed > self.page_size || pending.elements.len() == MAX_ELEMENTS)
        {
            self.flush(out, level)?;
        }
        let pending = &mut self.levels[level];
        if pending.elements.is_empty() {
            pending.first_key.clear();
            pending.first_key.extend_from_slice(key);
        }
        let offset = u32::try_from(pending.data.len()).map_err(|_| too_big(out))?;
        let ksize = u32::try_from(key.len()).map_err(|_| too_big(out))?;
        let vsize = u32::try_from(value.len()).map_err(|_| too_big(out))?;
        pending.elements.push((word, offset, ksize, vsize));
        pending.data.extend_from_slice(key);
        pending.data.extend_from_slice(value);
        Ok(())
    }

    /// Writes `level`'s pending page and adds it to the level above.
    fn flush(&mut self, out: &mut BoltWriter, level: usize) -> Result<(), BackendError> {
        let id = self.write_level(out, level)?;
        let first_key = std::mem::take(&mut self.levels[level].first_key);
        self.add(out, level + 1, id, &first_key, &[])?;
        self.levels[level].first_key = first_key;
        Ok(())
    }

    /// Writes `level`'s pending page (leaf at 0, branch above) and empties it.
    fn write_level(&mut self, out: &mut BoltWriter, level: usize) -> Result<u64, BackendError> {
        let pending = &mut self.levels[level];
        let count = pending.elements.len();
        let headers = count * ELEMENT;
        let mut body = Vec::with_capacity(headers + pending.data.len());
        for (index, &(word, offset, ksize, vsize)) in pending.elements.iter().enumerate() {
            // `pos` is counted from the element's own header.
            let pos = (headers - index * ELEMENT) as u32 + offset;
            if level == 0 {
                body.extend_from_slice(&(word as u32).to_le_bytes());
                body.extend_from_slice(&pos.to_le_bytes());
                body.extend_from_slice(&ksize.to_le_bytes());
                body.extend_from_slice(&vsize.to_le_bytes());
            } else {
                body.extend_from_slice(&pos.to_le_bytes());
                body.extend_from_slice(&ksize.to_le_bytes());
                body.extend_from_slice(&word.to_le_bytes());
            }
        }
        body.extend_from_slice(&pending.data);
        pending.elements.clear();
        pending.data.clear();
        pending.written += 1;
        let flags = if level == 0 { LEAF_PAGE } else { BRANCH_PAGE };
        out.write_page(flags, count, &body)
    }

    /// Writes what is pending, level by level, up to a single root page; returns the bucket's
    /// header for the root bucket.
    pub fn finish(
        mut self,
        out: &mut BoltWriter,
        sequence: u64,
    ) -> Result<BucketHeader, BackendError> {
        let mut level = 0;
        loop {
            let top = level + 1 == self.levels.len();
            if top && self.levels[level].written == 0 {
                // Everything of the tree is in this page (an empty leaf for an empty bucket).
                let root = self.write_level(out, level)?;
                return Ok(BucketHeader { root, sequence });
            }
            if !self.levels[level].elements.is_empty() {
                self.flush(out, level)?;
            }
            level += 1;
        }
    }
}

fn meta_page(
    id: u64,
    page_size: usize,
    root: BucketHeader,
    freelist: u64,
    pages: u64,
    txid: u64,
) -> Vec<u8> {
    let mut page = Vec::with_capacity(page_size);
    page.extend_from_slice(&id.to_le_bytes());
    page.extend_from_slice(&META_PAGE.to_le_bytes());
    page.extend_from_slice(&0u16.to_le_bytes());
    page.extend_from_slice(&0u32.to_le_bytes());
    page.extend_from_slice(&MAGIC.to_le_bytes());
    page.extend_from_slice(&VERSION.to_le_bytes());
    page.extend_from_slice(&(page_size as u32).to_le_bytes());
    page.extend_from_slice(&0u32.to_le_bytes());
    page.extend_from_slice(&root.bytes());
    page.extend_from_slice(&freelist.to_le_bytes());
    page.extend_from_slice(&pages.to_le_bytes());
    page.extend_from_slice(&txid.to_le_bytes());
    let checksum = fnv1a64(&page[PAGE_HEADER..]);
    page.extend_from_slice(&checksum.to_le_bytes());
    page.resize(page_size, 0);
    page
}

fn io(path: &Path, source: std::io::Error) -> BackendError {
    BackendError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn too_big(out: &BoltWriter) -> BackendError {
    BackendError::Corrupt {
        path: out.path.clone(),
        detail: "a key or value of 4 GiB or more".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BoltFile;

    fn key(i: u32) -> Vec<u8> {
        format!("key-{i:08}").into_bytes()
    }

    /// Writes buckets of `sizes` entries (values of `value_len` bytes) and reads them back.
    fn round_trip(sizes: &[(&str, u32)], value_len: usize, page_size: usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut writer = BoltWriter::create(&path, page_size).unwrap();
        let mut buckets = Vec::new();
        for (name, count) in sizes {
            let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..*count)
                .map(|i| (key(i), vec![(i % 251) as u8; value_len]))
                .collect();
            let header = writer
                .write_bucket(7, entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
                .unwrap();
            buckets.push((name.as_bytes().to_vec(), header));
        }
        let position = writer.position();
        assert_eq!(position % page_size as u64, 0);
        let length = writer.finish(&buckets, 3).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), length);

        let file = BoltFile::open(&path).unwrap();
        assert_eq!(file.page_size(), page_size as u64);
        assert_eq!(file.root_sequence(), 3);
        let names: Vec<(Vec<u8>, u64)> = file.buckets().unwrap();
        assert_eq!(
            names,
            sizes
                .iter()
                .map(|(n, _)| (n.as_bytes().to_vec(), 7))
                .collect::<Vec<_>>()
        );
        for (name, count) in sizes {
            let mut seen = 0u32;
            file.for_each_flat(name.as_bytes(), |k, v| {
                assert_eq!(k, key(seen).as_slice());
                assert_eq!(v, vec![(seen % 251) as u8; value_len].as_slice());
                seen += 1;
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, *count, "bucket {name}");
        }
    }

    #[test]
    fn empty_and_single_page_buckets_read_back() {
        round_trip(&[("a", 0), ("b", 1), ("c", 20)], 10, 4096);
    }

    #[test]
    fn a_three_level_tree_reads_back_in_order() {
        // 1 KiB pages hold about 20 of these: 60,000 entries need leaves, branches and a root.
        round_trip(&[("key", 60_000), ("meta", 3)], 16, 1024);
    }

    #[test]
    fn values_larger_than_a_page_take_overflow_pages() {
        round_trip(&[("big", 40)], 10_000, 4096);
    }

    #[test]
    fn an_existing_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::fs::write(&path, b"keep me").unwrap();
        assert!(BoltWriter::create(&path, 4096).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    }
}
