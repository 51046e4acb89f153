//! A read-only walk over a bbolt file (the format of etcd's backend `db`), by page reads:
//! meta pages, the root bucket, one named bucket's B+tree in key order, overflow pages and
//! inline buckets. Nothing is written, nothing is mapped, no lock is taken.
//!
//! Layout (bbolt `page.go`, `bucket.go`, `db.go`): every page starts with a 16-byte header
//! (`id u64, flags u16, count u16, overflow u32`); branch elements are `pos u32, ksize u32,
//! pgid u64`, leaf elements `flags u32, pos u32, ksize u32, vsize u32`, each `pos` relative to
//! the element itself; a leaf value with the bucket flag is a bucket header (`root u64,
//! sequence u64`), followed by the bucket's page when `root` is 0 (an inline bucket).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::BackendError;

const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const BUCKET_HEADER: usize = 16;
pub(crate) const BRANCH_PAGE: u16 = 0x01;
pub(crate) const LEAF_PAGE: u16 = 0x02;
pub(crate) const META_PAGE: u16 = 0x04;
pub(crate) const BUCKET_LEAF: u32 = 0x01;
pub(crate) const MAGIC: u32 = 0xED0C_DAED;
pub(crate) const VERSION: u32 = 2;
/// Deepest B+tree accepted: a real one is a handful of levels; more means a cycle.
const MAX_DEPTH: usize = 64;

/// An open bbolt file.
pub struct BoltFile {
    file: File,
    path: PathBuf,
    page_size: u64,
    pages: u64,
    root: u64,
    root_sequence: u64,
}

/// Called with each leaf element's flags, key and value; `false` stops the walk.
type LeafVisitor<'a> = dyn FnMut(u32, &[u8], &[u8]) -> bool + 'a;

/// Where a bucket's tree lives: on its own pages, or inline in its parent's leaf.
enum BucketRoot {
    Page(u64),
    Inline(Vec<u8>),
}

impl BoltFile {
    /// Opens `path` and picks the newer valid meta page.
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        let file = File::open(path).map_err(|source| BackendError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let length = file
            .metadata()
            .map_err(|source| BackendError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let mut first = vec![0u8; 4096.min(length as usize)];
        read_exact_at(&file, path, &mut first, 0)?;
        let page_size = meta(&first)
            .map(|m| m.page_size)
            .ok_or_else(|| corrupt(path, "page 0 is not a bbolt meta page"))?;
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(corrupt(path, &format!("page size {page_size}")));
        }
        let page_size = u64::from(page_size);
        let mut metas = vec![0u8; (2 * page_size).min(length) as usize];
        read_exact_at(&file, path, &mut metas, 0)?;
        let newest = [0, page_size as usize]
            .into_iter()
            .filter_map(|offset| metas.get(offset..).and_then(meta))
            .max_by_key(|m| m.txid)
            .ok_or_else(|| corrupt(path, "no valid meta page"))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            page_size,
            pages: length / page_size,
            root: newest.root,
            root_sequence: newest.root_sequence,
        })
    }

    /// The page size the file was written with.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The root bucket's sequence (bbolt's `NextSequence` counter of the top level).
    pub fn root_sequence(&self) -> u64 {
        self.root_sequence
    }

    /// The top-level buckets in key order, each with its sequence counter.
    pub fn buckets(&self) -> Result<Vec<(Vec<u8>, u64)>, BackendError> {
        let root = self.read_page(self.root)?;
        let mut buckets = Vec::new();
        let mut error = None;
        self.walk_raw(&root, 0, &mut |flags, key, value| {
            if flags & BUCKET_LEAF == 0 {
                error = Some(corrupt(&self.path, "a plain key in the root bucket"));
                return false;
            }
            match u64_at(value, 8) {
                Some(sequence) => buckets.push((key.to_vec(), sequence)),
                None => {
                    error = Some(corrupt(&self.path, "bucket header too short"));
                    return false;
                }
            }
            true
        })?;
        match error {
            Some(error) => Err(error),
            None => Ok(buckets),
        }
    }

    /// Calls `visit(key, value)` for every key of the top-level bucket `name`, in key order,
    /// and refuses a bucket that holds nested buckets (etcd's never do): for a copy that must
    /// not leave anything out.
    pub fn for_each_flat(
        &self,
        name: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let mut error = None;
        self.walk_bucket(name, &mut |flags, key, value| {
            let visited = if flags & BUCKET_LEAF != 0 {
                Err(corrupt(
                    &self.path,
                    &format!(
                        "bucket `{}` holds a nested bucket, which etcd never writes",
                        String::from_utf8_lossy(name)
                    ),
                ))
            } else {
                visit(key, value)
            };
            match visited {
                Ok(()) => true,
                Err(e) => {
                    error = Some(e);
                    false
                }
            }
        })?;
        error.map_or(Ok(()), Err)
    }

    /// Calls `visit(key, value)` for every key of the top-level bucket `name`, in key order.
    /// Nested buckets inside it are skipped. `visit` may stop the walk by returning `false`.
    pub fn for_each(
        &self,
        name: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        self.walk_bucket(name, &mut |flags, key, value| {
            flags & BUCKET_LEAF != 0 || visit(key, value)
        })
    }

    /// Walks every leaf element of the top-level bucket `name`, nested bucket entries included.
    fn walk_bucket(&self, name: &[u8], visit: &mut LeafVisitor<'_>) -> Result<(), BackendError> {
        let root = self.read_page(self.root)?;
        let bucket = self
            .find_bucket(&root, name, 0)?
            .ok_or_else(|| BackendError::NoBucket {
                path: self.path.clone(),
                bucket: String::from_utf8_lossy(name).into_owned(),
            })?;
        match bucket {
            BucketRoot::Page(id) => {
                let page = self.read_page(id)?;
                self.walk_raw(&page, 0, visit).map(|_| ())
            }
            BucketRoot::Inline(page) => self.walk_raw(&page, 0, visit).map(|_| ()),
        }
    }

    /// Finds the bucket `name` in the tree rooted at `page` (a bucket's own tree).
    fn find_bucket(
        &self,
        page: &[u8],
        name: &[u8],
        depth: usize,
    ) -> Result<Option<BucketRoot>, BackendError> {
        let mut found = None;
        let mut error = None;
        self.walk_raw(page, depth, &mut |flags, key, value| {
            if key == name && flags & BUCKET_LEAF != 0 {
                match bucket_root(value) {
                    Some(root) => found = Some(root),
                    None => error = Some(corrupt(&self.path, "bucket header too short")),
                }
                return false;
            }
            true
        })?;
        match error {
            Some(error) => Err(error),
            None => Ok(found),
        }
    }

    fn walk_raw(
        &self,
        page: &[u8],
        depth: usize,
        visit: &mut LeafVisitor<'_>,
    ) -> Result<bool, BackendError> {
        if depth > MAX_DEPTH {
            return Err(corrupt(&self.path, "B+tree deeper than 64 levels"));
        }
        let flags = u16_at(page, 8).ok_or_else(|| corrupt(&self.path, "short page"))?;
        let count = usize::from(u16_at(page, 10).unwrap_or(0));
        if flags & BRANCH_PAGE != 0 {
            for index in 0..count {
                let at = PAGE_HEADER + index * ELEMENT;
                let child = u64_at(page, at + 8)
                    .ok_or_else(|| corrupt(&self.path, "branch element past its page"))?;
                let child = self.read_page(child)?;
                if !self.walk_raw(&child, depth + 1, visit)? {
                    return Ok(false);
                }
            }
            Ok(true)
        } else if flags & LEAF_PAGE != 0 {
            for index in 0..count {
                let at = PAGE_HEADER + index * ELEMENT;
                let (Some(element_flags), Some(pos), Some(ksize), Some(vsize)) = (
                    u32_at(page, at),
                    u32_at(page, at + 4),
                    u32_at(page, at + 8),
                    u32_at(page, at + 12),
                ) else {
                    return Err(corrupt(&self.path, "leaf element past its page"));
                };
                let start = at + pos as usize;
                let key = page.get(start..start + ksize as usize);
                let value =
                    page.get(start + ksize as usize..start + ksize as usize + vsize as usize);
                let (Some(key), Some(value)) = (key, value) else {
                    return Err(corrupt(&self.path, "leaf key or value past its page"));
                };
                if !visit(element_flags, key, value) {
                    return Ok(false);
                }
            }
            Ok(true)
        } else {
            Err(corrupt(
                &self.path,
                &format!("page with flags {flags:#x} inside a bucket tree"),
            ))
        }
    }

    /// Reads page `id` with its overflow pages.
    fn read_page(&self, id: u64) -> Result<Vec<u8>, BackendError> {
        if id < 2 || id >= self.pages {
            return Err(corrupt(
                &self.path,
                &format!("page {id} outside the file ({} pages)", self.pages),
            ));
        }
        let mut header = [0u8; PAGE_HEADER];
        read_exact_at(&self.file, &self.path, &mut header, id * self.page_size)?;
        let overflow = u64::from(u32_at(&header, 12).unwrap_or(0));
        if id + overflow >= self.pages {
            return Err(corrupt(
                &self.path,
                &format!("page {id} overflows the file"),
            ));
        }
        let mut page = vec![0u8; ((1 + overflow) * self.page_size) as usize];
        read_exact_at(&self.file, &self.path, &mut page, id * self.page_size)?;
        Ok(page)
    }
}

struct Meta {
    page_size: u32,
    root: u64,
    root_sequence: u64,
    txid: u64,
}

/// The meta in a page buffer starting at its header, if it is a valid one.
fn meta(page: &[u8]) -> Option<Meta> {
    let flags = u16_at(page, 8)?;
    let m = PAGE_HEADER;
    if flags & META_PAGE == 0 || u32_at(page, m)? != MAGIC || u32_at(page, m + 4)? != VERSION {
        return None;
    }
    // magic, version, pageSize, flags, root{root, sequence}, freelist, pgid, txid, checksum
    let checksum_at = m + 4 + 4 + 4 + 4 + 16 + 8 + 8 + 8;
    let checksum = u64_at(page, checksum_at)?;
    if fnv1a64(page.get(m..checksum_at)?) != checksum {
        return None;
    }
    Some(Meta {
        page_size: u32_at(page, m + 8)?,
        root: u64_at(page, m + 16)?,
        root_sequence: u64_at(page, m + 24)?,
        txid: u64_at(page, m + 48)?,
    })
}

fn bucket_root(value: &[u8]) -> Option<BucketRoot> {
    let root = u64_at(value, 0)?;
    if value.len() < BUCKET_HEADER {
        return None;
    }
    Some(if root == 0 {
        BucketRoot::Inline(value[BUCKET_HEADER..].to_vec())
    } else {
        BucketRoot::Page(root)
    })
}

pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn read_exact_at(file: &File, path: &Path, buf: &mut [u8], at: u64) -> Result<(), BackendError> {
    file.read_exact_at(buf, at)
        .map_err(|source| BackendError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn corrupt(path: &Path, detail: &str) -> BackendError {
    BackendError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn a_file_that_is_not_bbolt_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        let error = BoltFile::open(&path).err().expect("refused");
        assert!(
            error.to_string().contains("not a bbolt meta page"),
            "{error}"
        );
    }
}
