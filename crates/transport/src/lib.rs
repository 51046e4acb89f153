//! Moving snapshots in and out of object storage.
//!
//! Everything here takes an `Arc<dyn ObjectStore>` and a [`SnapshotLayout`] (the prefix); there is
//! no storage trait of our own. Data flows as streams through bounded channels:
//! raw etcd chunks → SHA-256 → zstd → (age) → multipart upload on the way in, and the reverse on the way
//! out. The manifest is written last with a create-only put: it is the commit point.
//!
//! Verified plain copies on local disk follow one contract, [`PrestageDir`]: written beside
//! their name, fsynced, linked into place, owner-only.

#![forbid(unsafe_code)]

mod catalog;
mod digest;
mod encryption;
mod error;
#[cfg(any(test, feature = "fault-injection"))]
pub mod fault_store;
mod generations;
mod intact;
mod json_object;
mod layout;
mod multipart;
mod pending_uploads;
mod prestage;
mod probe;
mod producer_lease;
mod promotion;
mod read;
mod retention;
mod signing;
mod staging;
mod store_config;
mod uncommitted;
mod upload;
mod verify;

pub use catalog::{
    commit_manifest, list_snapshots, read_manifest, resolve_snapshot, Catalog, IncompleteSnapshot,
    RefusedSnapshot, SnapshotSelector, UnreadableManifest,
};
pub use digest::EtcdStreamDigest;
pub use encryption::{
    decrypt_in_memory, encrypt_in_memory, generate_identity, EncryptionConfig, Identities,
    Recipients, ENCRYPTED_SUFFIX,
};
pub use error::TransportError;
pub use intact::{check_stored_objects, newest_intact, IntactCheck};
pub use layout::{
    AttemptToken, SnapshotLayout, DATA_OBJECT_NAME, MANIFEST_OBJECT_NAME, NODES_FOLDER,
};
pub use pending_uploads::{sweep_upload_leftovers, LeftoverSweep, PendingUpload, UploadListError};
pub use prestage::{file_digest, file_matches, PartialFile, PrestageDir};
pub use probe::probe_create_only;
pub use producer_lease::{
    producer_lease_path, LeaseKeeper, ProducerLease, ProducerLeaseRecord, PRODUCER_LEASE_NAME,
};
pub use promotion::{
    acquire_restore_lock, promotion_marker_path, read_promotion_marker, read_restore_lock,
    read_switchover_request, release_restore_lock, restore_lock_path, switchover_request_path,
    write_promotion_marker, write_switchover_request, PROMOTION_MARKER_NAME, RESTORE_LOCK_NAME,
    SWITCHOVER_REQUEST_NAME,
};
pub use read::{read_object, read_snapshot, VerifiedObject, VerifiedSnapshot};
pub use retention::{
    apply_retention, plan_retention, plan_verified_retention, RetentionConfig, RetentionPlan,
};
pub use signing::{
    generate_signing_key, parse_public_key, DetachedSignature, ManifestSigner, ManifestTrust,
    SigningConfig, PUBLIC_KEY_PREFIX,
};
pub use staging::sweep_local_staging;
pub use store_config::{oci_s3_endpoint, without_userinfo, StoreConfig, StoreKind};
pub use uncommitted::{delete_uncommitted, is_committed};
pub use upload::{
    upload_object, upload_snapshot_data, CountingWriter, ShipProgress, UploadOptions, UploadedData,
    UploadedObject,
};
pub use verify::{StageFailure, Verification, VerifyFailure};

/// Runs `operation` unless `cancel` fires first (then [`TransportError::Cancelled`]; the
/// operation is dropped, which object_store's requests allow at any point).
pub(crate) async fn cancellable<F: std::future::Future>(
    cancel: &tokio_util::sync::CancellationToken,
    operation: F,
) -> Result<F::Output, TransportError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(TransportError::Cancelled),
        output = operation => Ok(output),
    }
}
