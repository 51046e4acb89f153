use etcd_dr_core::SnapshotId;

/// What went wrong moving a snapshot in or out of the store.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A store operation failed (network, permissions, 5xx after retries…).
    #[error("store operation `{operation}` on `{key}` failed: {source}")]
    Store {
        /// What was attempted (`put`, `get`, `list`, `delete`, `multipart`).
        operation: &'static str,
        /// The object key or prefix.
        key: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// The snapshot source (etcd stream) failed while its bytes were being uploaded.
    #[error("snapshot source failed after {bytes_read} bytes: {source}")]
    Source {
        /// Raw bytes received before the failure.
        bytes_read: u64,
        /// The source's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The stream etcd sent does not end with a SHA-256 of its content.
    #[error("etcd snapshot stream failed its integrity check: {detail}")]
    EtcdHashMismatch {
        /// What did not match.
        detail: String,
    },
    /// A stored snapshot does not match its manifest.
    #[error("snapshot {id} is corrupt: {detail}")]
    Corrupt {
        /// The snapshot.
        id: SnapshotId,
        /// What did not match.
        detail: String,
    },
    /// The snapshot is encrypted and no identity is configured.
    #[error("snapshot {id} is encrypted (`{object}`, age, to {recipients}) and no identity is configured: set encryption.identity_file to the age identity file of one of those recipients")]
    IdentityRequired {
        /// The snapshot.
        id: SnapshotId,
        /// The encrypted object.
        object: String,
        /// Its recipients (public keys).
        recipients: String,
    },
    /// No configured identity opens the snapshot.
    #[error("snapshot {id} cannot be decrypted: `{object}` was encrypted to {recipients}, and {identities} holds none of their secret keys")]
    WrongIdentity {
        /// The snapshot.
        id: SnapshotId,
        /// The encrypted object.
        object: String,
        /// Where the identities came from.
        identities: String,
        /// The object's recipients (public keys).
        recipients: String,
    },
    /// No snapshot with that id has a manifest.
    #[error("snapshot {id} not found (no manifest at `{key}`); run `etcd-dr list` to see what is stored")]
    SnapshotNotFound {
        /// The snapshot asked for.
        id: SnapshotId,
        /// Where its manifest would be.
        key: String,
    },
    /// The store holds no complete snapshot at all.
    #[error("no complete snapshot is stored under `{prefix}`")]
    NoSnapshots {
        /// The prefix that was listed.
        prefix: String,
    },
    /// A manifest this reader does not trust: unsigned, signed by an unknown key, altered, of
    /// another cluster, or with a plain object where encryption is required.
    #[error("snapshot {id} is refused: {reason}")]
    Untrusted {
        /// The snapshot.
        id: SnapshotId,
        /// Every reason, joined.
        reason: String,
    },
    /// A manifest could not be parsed or is of a newer format.
    #[error("manifest `{key}` is unreadable: {detail}")]
    BadManifest {
        /// The manifest key.
        key: String,
        /// Why.
        detail: String,
    },
    /// A snapshot with this id already has a manifest; nothing was replaced.
    #[error("snapshot {id} already exists at `{key}`; nothing was replaced")]
    AlreadyExists {
        /// The snapshot.
        id: SnapshotId,
        /// The existing manifest key.
        key: String,
    },
    /// A promotion marker already fences this cluster's prefix; nothing was replaced.
    #[error("promotion {promotion_id} already fenced this cluster (marker `{key}`)")]
    Fenced {
        /// The marker key.
        key: String,
        /// The promotion that wrote it.
        promotion_id: String,
    },
    /// Another restore or promotion holds the restore lock; nothing was replaced.
    #[error(
        "{mode} {promotion_id} by {requested_by} since {locked_at} holds the restore lock `{key}`"
    )]
    Locked {
        /// The lock key.
        key: String,
        /// The restore or promotion holding it.
        promotion_id: String,
        /// Its mode (`failover`, `switchover`, `in-place`).
        mode: String,
        /// Who took it.
        requested_by: String,
        /// When.
        locked_at: String,
    },
    /// Another producer holds the producer lease of this prefix; nothing was written.
    #[error("another snapshot is in progress: {host} (pid {pid}) holds the producer lease `{key}` since {}, until {} unless renewed; nothing was written", .since.to_rfc3339(), .expires_at.to_rfc3339())]
    ProducerBusy {
        /// The lease key.
        key: String,
        /// The holder's host.
        host: String,
        /// The holder's process id.
        pid: u32,
        /// When it took the lease (its own clock).
        since: chrono::DateTime<chrono::Utc>,
        /// When the lease expires without a renewal (the store's clock).
        expires_at: chrono::DateTime<chrono::Utc>,
    },
    /// Another producer took over this producer's lease (it had expired); the snapshot stopped.
    #[error("the producer lease `{key}` was taken over by another producer (it was not renewed in time); this snapshot stopped and nothing was committed")]
    ProducerLeaseLost {
        /// The lease key.
        key: String,
    },
    /// The store accepted a second create-only put of the same object: it ignores
    /// `If-None-Match`, and every commit point would be unsafe on it.
    #[error("the store ignores create-only puts: a second create-only put of the probe `{key}` was accepted. etcd-dr refuses to run on it, because manifests, the promotion fence, the restore lock and the producer lease depend on create-only puts; use a store (or S3 gateway) that honours If-None-Match: *")]
    CreateOnlyIgnored {
        /// The probe object.
        key: String,
    },
    /// Listing the pending multipart uploads under a prefix failed.
    #[error("listing the pending multipart uploads under `{prefix}` failed: {source}")]
    ListUploads {
        /// The prefix listed.
        prefix: String,
        /// What failed.
        #[source]
        source: crate::pending_uploads::UploadListError,
    },
    /// The store configuration cannot be turned into a client.
    #[error("store configuration: {0}")]
    Config(String),
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
    /// Compression, decompression or the pipeline's worker thread failed.
    #[error("{0}")]
    Pipeline(String),
    /// The operation was cancelled (shutdown); any partial upload was aborted.
    #[error("cancelled")]
    Cancelled,
}

impl TransportError {
    /// True when trying again later may succeed: the store was unreachable, timed out or
    /// answered 5xx after object_store's own retries. Missing objects, refused preconditions,
    /// denied permissions, corrupt data and bad configuration are permanent; so is
    /// cancellation (nothing to retry).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store { source, .. } => matches!(
                source,
                object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
            ),
            Self::Source { .. } => true,
            _ => false,
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_outages_are_transient_and_refusals_permanent() {
        let store = |source| TransportError::store("get", "k", source);
        let outage = object_store::Error::Generic {
            store: "S3",
            source: "HTTP error: 503 Service Unavailable after 5 retries".into(),
        };
        assert!(store(outage).is_transient());
        for permanent in [
            object_store::Error::NotFound {
                path: "k".into(),
                source: "gone".into(),
            },
            object_store::Error::Precondition {
                path: "k".into(),
                source: "etag".into(),
            },
            object_store::Error::PermissionDenied {
                path: "k".into(),
                source: "403".into(),
            },
        ] {
            assert!(!store(permanent).is_transient());
        }
        assert!(!TransportError::Cancelled.is_transient());
        assert!(!TransportError::Config("x".into()).is_transient());
    }
}
