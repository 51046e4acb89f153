use crate::GenerationBreak;

/// What went wrong capturing, storing or replaying revisions.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// A segment's bytes do not follow the segment format (truncated, bad magic, bad checksum…).
    #[error("segment `{segment}` is corrupt: {detail}")]
    CorruptSegment {
        /// The segment's object key (or a description when it has none yet).
        segment: String,
        /// What did not match.
        detail: String,
    },
    /// A segment is not signed by a trusted key (or not signed, and unsigned ones are refused).
    #[error("segment `{segment}` is refused: {reason}")]
    UntrustedSegment {
        /// The segment's object key.
        segment: String,
        /// Why (every reason).
        reason: String,
    },
    /// Two segments of a generation do not link: a hash-chain or revision break.
    #[error("the chain of generation {generation} breaks at `{segment}`: {detail}")]
    ChainBroken {
        /// The generation.
        generation: String,
        /// The segment that does not follow its predecessor.
        segment: String,
        /// What did not match.
        detail: String,
    },
    /// The generation being captured ended; a full snapshot must start a new one.
    #[error("generation {generation} ended: {reason}")]
    GenerationEnded {
        /// The generation.
        generation: String,
        /// Why.
        reason: GenerationBreak,
    },
    /// A segment object already exists with different content: another writer, or a bug.
    #[error("segment `{segment}` already exists with other content ({existing_bytes} bytes stored, {ours_bytes} bytes ours): another capture writes this generation; nothing was replaced")]
    SegmentConflict {
        /// The object key.
        segment: String,
        /// Size of the stored object.
        existing_bytes: u64,
        /// Size of the object we tried to put.
        ours_bytes: u64,
    },
    /// The requested revision cannot be restored from what is stored.
    #[error("cannot restore revision {requested}: {detail}; can restore up to {restorable}")]
    NotRestorable {
        /// The revision asked for.
        requested: i64,
        /// The newest revision the stored base and chain reach.
        restorable: i64,
        /// Why.
        detail: String,
    },
    /// The requested revision lies outside everything stored (no base or no chain covers it).
    #[error("cannot restore revision {requested}: {detail}")]
    NoCoverage {
        /// The revision asked for.
        requested: i64,
        /// What is missing.
        detail: String,
    },
    /// Nothing stored was observed at or before the time asked for.
    #[error("cannot restore {time}: no snapshot or captured revision is that old")]
    NothingAtTime {
        /// The time asked for (RFC 3339).
        time: String,
    },
    /// Replaying one revision did not produce the recorded revision.
    #[error("replaying revision {recorded} from `{segment}` gave revision {got}: the replay diverged from the source")]
    ReplayDiverged {
        /// The segment holding the revision.
        segment: String,
        /// The revision the source recorded.
        recorded: i64,
        /// The revision the throw-away etcd answered.
        got: i64,
    },
    /// A segment (or part of one) holds an event we cannot replay.
    #[error("segment `{segment}`, revision {revision}: {detail}")]
    BadEvent {
        /// The segment.
        segment: String,
        /// The revision.
        revision: i64,
        /// What is wrong.
        detail: String,
    },
    /// An etcd call failed.
    #[error("etcd {operation} failed: {source}")]
    Etcd {
        /// What was attempted (`watch`, `txn`, `lease grant`…).
        operation: &'static str,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// A store operation failed.
    #[error("store operation `{operation}` on `{key}` failed: {source}")]
    Store {
        /// What was attempted (`put`, `get`, `list`).
        operation: &'static str,
        /// The object key or prefix.
        key: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// Encryption or decryption (transport's age) failed.
    #[error(transparent)]
    Transport(#[from] etcd_dr_transport::TransportError),
    /// The throw-away etcd or one of its tools failed.
    #[error("throw-away etcd: {action}: {detail}")]
    ScratchEtcd {
        /// What was attempted.
        action: &'static str,
        /// What happened (exit status, stderr tail, I/O error).
        detail: String,
    },
    /// Reading or writing a local file failed.
    #[error("{action} `{path}`: {source}")]
    LocalIo {
        /// What was attempted.
        action: &'static str,
        /// The local path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A new generation needs a full snapshot, and none was taken.
    #[error("a new generation needs a full snapshot, and none was taken: {reason}")]
    NoFullSnapshot {
        /// Why (the snapshot run's error, fenced, busy…).
        reason: String,
    },
    /// The replication heartbeat in the store cannot be used.
    #[error("replication heartbeat `{key}`: {detail}")]
    BadHeartbeat {
        /// Its object key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// The replication heartbeat is not signed by a trusted key (or not signed, and unsigned
    /// ones are refused): it is not used.
    #[error("replication heartbeat `{key}` is refused: {reason}")]
    UntrustedHeartbeat {
        /// Its object key.
        key: String,
        /// Why.
        reason: String,
    },
    /// Bad configuration or arguments.
    #[error("{0}")]
    Config(String),
    /// The operation was cancelled (shutdown).
    #[error("cancelled")]
    Cancelled,
    /// The restored backend file could not be read or written (the `backend` replay engine).
    #[error("restored backend `{}`: {detail}", .path.display())]
    Backend {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        detail: String,
    },
}

impl ReplicationError {
    pub(crate) fn etcd(operation: &'static str, source: etcd_client::Error) -> Self {
        Self::Etcd { operation, source }
    }

    pub(crate) fn store(
        operation: &'static str,
        key: impl ToString,
        source: object_store::Error,
    ) -> Self {
        Self::Store {
            operation,
            key: key.to_string(),
            source,
        }
    }

    pub(crate) fn corrupt(segment: impl ToString, detail: impl Into<String>) -> Self {
        Self::CorruptSegment {
            segment: segment.to_string(),
            detail: detail.into(),
        }
    }
}
