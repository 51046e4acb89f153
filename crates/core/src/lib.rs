//! The small core of etcd-dr: types every other crate shares and nothing of ours depends on.
//!
//! - [`SnapshotId`]: the sortable name of one snapshot (UTC time + etcd revision).
//! - [`SnapshotManifest`]: the JSON commit record written beside each snapshot.
//! - [`ClusterShape`]: the Kubernetes cluster as its etcd records it (versions, nodes, kubeadm).
//! - [`PromotionMarker`]: the fence a promotion writes into the store.
//! - [`PromotionRecord`] and [`PromotionPlan`]: a promotion's steps × nodes and the plan its
//!   preflight approved, as `GET /v1/promote` shows them, with [`AfterResult`]: what each
//!   after-step action did.
//! - [`Role`]: primary or secondary.
//! - [`ConfigProblem`]: one bad configuration field, so start-up can report all of them at once.

#![forbid(unsafe_code)]

mod after_result;
mod byte_size;
mod child_env;
mod cluster_shape;
mod config_problem;
mod manifest;
mod manifest_signature;
mod private_files;
mod promotion;
mod promotion_plan;
mod promotion_record;
mod restore_point;
mod role;
mod snapshot_id;
mod terminal_text;

pub use after_result::{AfterAction, AfterOutcome, AfterResult, ALL_TARGETS};
pub use byte_size::human_bytes;
pub use child_env::{allowed_child_environment, is_allowed_in_child, CHILD_ENV_ALLOWED};
pub use cluster_shape::{
    ClusterNode, ClusterShape, CniDaemonSet, KubeadmShape, NodeAddress, ObjectCounts, ResourceCount,
};
pub use config_problem::{ConfigProblem, ConfigProblems};
pub use manifest::{
    Compression, Encryption, EtcdClusterInfo, EtcdMember, MemberStatus, NodeBundle, ObjectDigest,
    Producer, SnapshotManifest, StoredObject, MANIFEST_FORMAT_VERSION, MIN_MANIFEST_FORMAT_VERSION,
};
pub use manifest_signature::{ManifestSignature, SIGNED_PAYLOAD_DOMAIN};
pub use private_files::{
    check_secret_file, create_private_dir, create_private_file, SecretFileError, SecretFileModes,
    PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, SECRET_FILE_MODES_SETTING,
};
pub use promotion::{
    PromotionMarker, PromotionMode, PromotionRequest, RestoreLock, SwitchoverRequest,
    SWITCHOVER_LABEL,
};
pub use promotion_plan::{EtcdVersion, NodePlan, PromotionPlan, RestoreTool};
pub use promotion_record::{
    NodeRecord, Progress, PromotionRecord, PromotionState, StepName, StepRecord, StepState,
    TransferProgress,
};
pub use restore_point::{ReplaySummary, RestorePoint};
pub use role::Role;
pub use snapshot_id::{SnapshotId, SnapshotIdError};
pub use terminal_text::{printable, validate_label, MAX_LABEL_CHARS};

/// Formats an etcd 64-bit id (cluster or member) the way etcdctl prints it: lower-case hex.
pub fn etcd_id_hex(id: u64) -> String {
    format!("{id:x}")
}
