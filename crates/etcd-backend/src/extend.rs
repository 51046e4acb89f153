//! An etcd backend carried forward without etcd: a base snapshot's `.db` copied bucket by
//! bucket into a new file, with later revisions appended to its `key` bucket exactly as etcd
//! stores them, and the leases they use added to its `lease` bucket. The result is what etcd's
//! snapshot RPC would give at the last appended revision: the file followed by its SHA-256.
//!
//! etcd's `key` bucket is keyed by revision: `main` (8 bytes, big-endian), `_`, `sub` (the
//! change's index in its transaction, 8 bytes), and `t` after a deletion; the value is the
//! `mvccpb.KeyValue` (a deletion's holds only the key). Revisions above every one in the base
//! sort after its keys, so they are appended to the bucket's last page. etcd rebuilds its
//! in-memory index from this bucket when it starts, and `etcdutl snapshot restore` rewrites the
//! membership and the consistent index in `meta`, so nothing else needs to change.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use sha2::{Digest, Sha256};

use crate::{BackendError, BoltFile, BoltWriter, BucketHeader, BucketWriter, KeyValue};

const KEY_BUCKET: &[u8] = b"key";
const LEASE_BUCKET: &[u8] = b"lease";
const META_BUCKET: &[u8] = b"meta";
const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";

/// `leasepb.Lease`, the value of every lease in the `lease` bucket.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Lease {
    /// The lease id.
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// Its granted TTL in seconds.
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    /// The remaining TTL a checkpoint recorded (0: none).
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// A change of one revision: a put of `kv` or the deletion of `kv.key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The key was put; the value stored is the whole `KeyValue`.
    Put,
    /// The key was deleted; only its key is stored.
    Delete,
}

/// A base backend being carried forward into a new file (see the module documentation).
pub struct BackendExtension {
    base: BoltFile,
    base_path: PathBuf,
    output: PathBuf,
    out: Option<BoltWriter>,
    written: Vec<(Vec<u8>, BucketHeader)>,
    /// Buckets of the base after `key`, copied by [`BackendExtension::finish`].
    later: Vec<(Vec<u8>, u64)>,
    key_bucket: Option<(BucketWriter, u64)>,
    base_revision: i64,
    base_leases: HashSet<i64>,
    last: (i64, i64),
    appended_revisions: u64,
    key_buffer: Vec<u8>,
    value_buffer: Vec<u8>,
}

/// What [`BackendExtension::finish`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedBackend {
    /// The newest revision in the new file.
    pub revision: i64,
    /// Revisions appended to the base.
    pub appended_revisions: u64,
    /// Leases added to the `lease` bucket.
    pub leases_added: u64,
    /// Bytes of the file, its SHA-256 trailer included.
    pub bytes: u64,
}

impl BackendExtension {
    /// Opens the base backend and starts `output` (which must not exist): the buckets before
    /// `key` and every revision of the base are copied. A failure removes `output`.
    pub fn start(base: &Path, output: &Path) -> Result<Self, BackendError> {
        let file = BoltFile::open(base)?;
        let out = BoltWriter::create(output, file.page_size() as usize)?;
        let mut extension = Self {
            base: file,
            base_path: base.to_path_buf(),
            output: output.to_path_buf(),
            out: Some(out),
            written: Vec::new(),
            later: Vec::new(),
            key_bucket: None,
            base_revision: 0,
            base_leases: HashSet::new(),
            last: (0, 0),
            appended_revisions: 0,
            key_buffer: Vec::with_capacity(18),
            value_buffer: Vec::new(),
        };
        match extension.copy_base() {
            Ok(()) => Ok(extension),
            Err(error) => {
                extension.discard();
                Err(error)
            }
        }
    }

    /// The base's real revision, as etcd computes it when it starts: its newest revision in
    /// the `key` bucket (1 when it is empty), or the revision it was compacted at when that is
    /// higher (a compaction removes a trailing deletion). Every appended revision must be
    /// above it.
    pub fn base_revision(&self) -> i64 {
        self.base_revision
    }

    /// Whether the base backend holds lease `id`.
    pub fn base_has_lease(&self, id: i64) -> bool {
        self.base_leases.contains(&id)
    }

    /// Appends change number `sub` of revision `revision`. Revisions must be above the base's
    /// and increase by one; changes of a revision arrive in order from 0.
    pub fn append(
        &mut self,
        revision: i64,
        sub: i64,
        change: Change,
        kv: &KeyValue,
    ) -> Result<(), BackendError> {
        let refuse = |detail: String| BackendError::Append { revision, detail };
        if revision <= self.base_revision {
            return Err(refuse(format!(
                "at or below the base's revision {}",
                self.base_revision
            )));
        }
        let (last_main, last_sub) = self.last;
        let in_order = if revision == last_main {
            sub == last_sub + 1
        } else {
            revision == last_main + 1 && sub == 0
        };
        if !in_order {
            return Err(refuse(format!(
                "change {sub} after revision {last_main} change {last_sub}: revisions must follow each other, their changes in order"
            )));
        }
        if kv.mod_revision != revision {
            return Err(refuse(format!(
                "its change of `{}` records mod_revision {}",
                String::from_utf8_lossy(&kv.key),
                kv.mod_revision
            )));
        }
        // A put's version counts from 1 at its creation, which is at or before it.
        let created_here = kv.create_revision == revision;
        if change == Change::Put
            && (kv.version < 1
                || kv.create_revision < 1
                || kv.create_revision > revision
                || (kv.version == 1) != created_here)
        {
            return Err(refuse(format!(
                "its put of `{}` records version {} created at revision {}",
                String::from_utf8_lossy(&kv.key),
                kv.version,
                kv.create_revision
            )));
        }
        self.key_buffer.clear();
        self.key_buffer.extend_from_slice(&revision.to_be_bytes());
        self.key_buffer.push(b'_');
        self.key_buffer.extend_from_slice(&sub.to_be_bytes());
        self.value_buffer.clear();
        match change {
            Change::Put => kv.encode(&mut self.value_buffer),
            Change::Delete => {
                self.key_buffer.push(b't');
                KeyValue {
                    key: kv.key.clone(),
                    ..KeyValue::default()
                }
                .encode(&mut self.value_buffer)
            }
        }
        .map_err(|e| refuse(format!("encoding: {e}")))?;
        let (Some(out), Some((bucket, _))) = (self.out.as_mut(), self.key_bucket.as_mut()) else {
            return Err(refuse("the extension already ended".into()));
        };
        if let Err(error) = bucket.push(out, &self.key_buffer, &self.value_buffer) {
            self.discard();
            return Err(error);
        }
        if revision != last_main {
            self.appended_revisions += 1;
        }
        self.last = (revision, sub);
        Ok(())
    }

    /// Adds `leases` (id, granted TTL) the base does not hold, copies the remaining buckets,
    /// writes the file's meta pages and its SHA-256, and syncs it. A failure removes `output`.
    pub fn finish(
        mut self,
        leases: impl IntoIterator<Item = (i64, i64)>,
    ) -> Result<ExtendedBackend, BackendError> {
        let new_leases: BTreeMap<[u8; 8], Lease> = leases
            .into_iter()
            .filter(|(id, _)| !self.base_leases.contains(id))
            .map(|(id, ttl)| {
                let lease = Lease {
                    id,
                    ttl,
                    remaining_ttl: 0,
                };
                (id.to_be_bytes(), lease)
            })
            .collect();
        let leases_added = new_leases.len() as u64;
        let result = self.write_rest(new_leases);
        match result {
            Ok(bytes) => Ok(ExtendedBackend {
                revision: self.last.0,
                appended_revisions: self.appended_revisions,
                leases_added,
                bytes,
            }),
            Err(error) => {
                self.discard();
                Err(error)
            }
        }
    }

    fn copy_base(&mut self) -> Result<(), BackendError> {
        let buckets = self.base.buckets()?;
        if !buckets.iter().any(|(name, _)| name == KEY_BUCKET) {
            return Err(BackendError::NoBucket {
                path: self.base_path.clone(),
                bucket: "key".into(),
            });
        }
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        for (name, sequence) in buckets {
            if name.as_slice() < KEY_BUCKET {
                let header = copy_bucket(&self.base, out, &name, sequence)?;
                self.written.push((name, header));
            } else if name == KEY_BUCKET {
                let mut bucket = BucketWriter::new(out);
                // etcd starts at revision 1 with no key stored.
                let mut newest = (1i64, 0i64);
                let path = &self.base_path;
                self.base.for_each_flat(KEY_BUCKET, |key, value| {
                    newest = revision_of(path, key)?;
                    bucket.push(out, key, value)
                })?;
                self.last = newest;
                self.base_revision = newest.0;
                self.key_bucket = Some((bucket, sequence));
            } else {
                if name == LEASE_BUCKET {
                    let leases = &mut self.base_leases;
                    self.base.for_each_flat(LEASE_BUCKET, |key, _| {
                        if let Ok(id) = <[u8; 8]>::try_from(key) {
                            leases.insert(i64::from_be_bytes(id));
                        }
                        Ok(())
                    })?;
                }
                self.later.push((name, sequence));
            }
        }
        // A compaction removes the deletions at or below its revision: the base can be at a
        // revision above its newest stored change.
        let mut compacted = None;
        if self.later.iter().any(|(name, _)| name == META_BUCKET) {
            let path = &self.base_path;
            self.base.for_each_flat(META_BUCKET, |key, value| {
                if key == FINISHED_COMPACT {
                    compacted = Some(revision_of(path, value)?.0);
                }
                Ok(())
            })?;
        }
        if let Some(compacted) = compacted.filter(|c| *c > self.base_revision) {
            self.base_revision = compacted;
            self.last = (compacted, 0);
        }
        Ok(())
    }

    fn write_rest(&mut self, new_leases: BTreeMap<[u8; 8], Lease>) -> Result<u64, BackendError> {
        let (Some(mut out), Some((bucket, sequence))) = (self.out.take(), self.key_bucket.take())
        else {
            return Err(BackendError::Append {
                revision: self.last.0,
                detail: "the extension already ended".into(),
            });
        };
        let header = bucket.finish(&mut out, sequence)?;
        self.written.push((KEY_BUCKET.to_vec(), header));
        let mut later = std::mem::take(&mut self.later);
        let base_has_leases = later.iter().any(|(name, _)| name == LEASE_BUCKET);
        if !new_leases.is_empty() && !base_has_leases {
            later.push((LEASE_BUCKET.to_vec(), 0));
            later.sort();
        }
        for (name, sequence) in later {
            let header = if name == LEASE_BUCKET {
                let base = base_has_leases.then_some(&self.base);
                merge_leases(base, &mut out, sequence, &new_leases)?
            } else {
                copy_bucket(&self.base, &mut out, &name, sequence)?
            };
            self.written.push((name, header));
        }
        let length = out.finish(&self.written, self.base.root_sequence())?;
        append_sha256(&self.output, length)
    }

    /// Removes the partly written output.
    fn discard(&mut self) {
        self.out = None;
        self.key_bucket = None;
        let _ = std::fs::remove_file(&self.output);
    }
}

impl Drop for BackendExtension {
    /// An extension dropped before it finished leaves no partial file behind.
    fn drop(&mut self) {
        if self.out.is_some() {
            self.discard();
        }
    }
}

fn copy_bucket(
    base: &BoltFile,
    out: &mut BoltWriter,
    name: &[u8],
    sequence: u64,
) -> Result<BucketHeader, BackendError> {
    let mut bucket = BucketWriter::new(out);
    base.for_each_flat(name, |key, value| bucket.push(out, key, value))?;
    bucket.finish(out, sequence)
}

/// The base's leases (`None`: it has no `lease` bucket) with `new` ones between them, in key
/// order (the base's win a tie).
fn merge_leases(
    base: Option<&BoltFile>,
    out: &mut BoltWriter,
    sequence: u64,
    new: &BTreeMap<[u8; 8], Lease>,
) -> Result<BucketHeader, BackendError> {
    let mut bucket = BucketWriter::new(out);
    let mut pending = new.iter().peekable();
    let mut encoded = Vec::new();
    let mut push_new =
        |bucket: &mut BucketWriter, out: &mut BoltWriter, id: &[u8; 8], lease: &Lease| {
            encoded.clear();
            lease
                .encode(&mut encoded)
                .expect("a Vec grows to hold a message");
            bucket.push(out, id, &encoded)
        };
    if let Some(base) = base {
        base.for_each_flat(LEASE_BUCKET, |key, value| {
            while let Some((id, lease)) = pending.next_if(|(id, _)| id.as_slice() <= key) {
                if id.as_slice() != key {
                    push_new(&mut bucket, out, id, lease)?;
                }
            }
            bucket.push(out, key, value)
        })?;
    }
    for (id, lease) in pending {
        push_new(&mut bucket, out, id, lease)?;
    }
    bucket.finish(out, sequence)
}

/// The `(main, sub)` of a `key` bucket key or of a stored revision.
fn revision_of(path: &Path, bytes: &[u8]) -> Result<(i64, i64), BackendError> {
    let (Some(main), Some(sub)) = (
        bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()),
        bytes.get(9..17).and_then(|b| <[u8; 8]>::try_from(b).ok()),
    ) else {
        return Err(BackendError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("revision key of {} bytes", bytes.len()),
        });
    };
    Ok((i64::from_be_bytes(main), i64::from_be_bytes(sub)))
}

/// Appends the SHA-256 of the first `length` bytes, as etcd's snapshot RPC does (`etcdutl
/// snapshot restore` checks it); returns the new length.
fn append_sha256(path: &Path, length: u64) -> Result<u64, BackendError> {
    let io = |source| BackendError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut remaining = length;
    while remaining > 0 {
        let want = buffer.len().min(remaining as usize);
        file.read_exact(&mut buffer[..want]).map_err(io)?;
        hasher.update(&buffer[..want]);
        remaining -= want as u64;
    }
    file.write_all(&hasher.finalize()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(length + 32)
}

#[cfg(test)]
mod tests;
