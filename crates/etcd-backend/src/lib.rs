//! An etcd snapshot's `.db` read without etcd: the live keys at its newest revision.
//!
//! etcd keeps every revision of every key in the `key` bucket of its bbolt backend, keyed by
//! revision (`main` and `sub`, big-endian, a trailing `t` for a deletion) with the
//! `mvccpb.KeyValue` as value. Replaying that bucket in order gives the keyspace at the newest
//! revision. `etcd-dr inspect` uses it on the bastion, where no etcd binary is needed.

#![forbid(unsafe_code)]

mod bolt;
mod bolt_writer;
mod extend;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;

pub use bolt::BoltFile;
pub use bolt_writer::{BoltWriter, BucketHeader, BucketWriter};
pub use extend::{BackendExtension, Change, ExtendedBackend, Lease};

/// Why a backend file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Reading the file failed.
    #[error("cannot read `{}`: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a (complete) bbolt database.
    #[error("`{}` is not a readable etcd backend: {detail}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A revision cannot be appended where it was offered.
    #[error("cannot append revision {revision}: {detail}")]
    Append {
        /// The revision.
        revision: i64,
        /// Why.
        detail: String,
    },
    /// The bucket etcd keeps its keys in is missing.
    #[error("`{}` has no `{bucket}` bucket: not an etcd backend", .path.display())]
    NoBucket {
        /// The file.
        path: PathBuf,
        /// The bucket.
        bucket: String,
    },
}

/// `mvccpb.KeyValue`, the value of every revision in the `key` bucket.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// Revision of the key's creation.
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    /// Revision of its last modification.
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    /// Number of modifications since its creation.
    #[prost(int64, tag = "4")]
    pub version: i64,
    /// The value.
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    /// The lease attached to it (0: none).
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

/// The live keys of a backend at its newest revision.
#[derive(Debug, Default)]
pub struct Keyspace {
    /// The newest revision in the file.
    pub revision: i64,
    /// Revisions stored in the file (history not yet compacted away included).
    pub revisions_stored: u64,
    /// Every live key; its value only where `keep_value` asked for it.
    pub keys: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

/// Replays the `key` bucket of the etcd backend at `path`, keeping the value of the keys for
/// which `keep_value(key)` is true (the others are counted, not held).
pub fn read_keyspace(
    path: &Path,
    keep_value: impl Fn(&[u8]) -> bool,
) -> Result<Keyspace, BackendError> {
    let file = BoltFile::open(path)?;
    let mut keyspace = Keyspace::default();
    let mut error = None;
    file.for_each(b"key", |revision, value| {
        let Some(main) = revision.get(..8).and_then(|b| b.try_into().ok()) else {
            error = Some(format!("revision key of {} bytes", revision.len()));
            return false;
        };
        keyspace.revision = keyspace.revision.max(i64::from_be_bytes(main));
        keyspace.revisions_stored += 1;
        let deleted = revision.len() == 18 && revision[17] == b't';
        let kv = match KeyValue::decode(value) {
            Ok(kv) => kv,
            Err(e) => {
                error = Some(format!(
                    "KeyValue at revision {}: {e}",
                    i64::from_be_bytes(main)
                ));
                return false;
            }
        };
        if deleted {
            keyspace.keys.remove(&kv.key);
        } else {
            let kept = keep_value(&kv.key).then_some(kv.value);
            keyspace.keys.insert(kv.key, kept);
        }
        true
    })?;
    match error {
        Some(detail) => Err(BackendError::Corrupt {
            path: path.to_path_buf(),
            detail,
        }),
        None => Ok(keyspace),
    }
}
