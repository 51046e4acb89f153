//! Promote: restore a snapshot onto every control-plane node of the secondary region.
//!
//! An explicit state machine of steps × nodes ([`PromotionRecord`], live in a
//! [`PromotionTracker`]): switchover handshake, select, fence, verify, preflight, restore,
//! health, after-steps, and rollback on failure. The pure parts — reading the etcd static pod
//! manifest ([`parse_etcd_pod`]), judging the preflight ([`evaluate_preflight`]), the revision
//! bump ([`bump_revision`]) and the restore command ([`PromotionPlan::restore_argv`]) — are
//! separate from the parts that run commands on nodes.

#![forbid(unsafe_code)]

mod bundle_keys;
mod config;
mod error;
mod etcd_pod;
mod health;
mod kube;
mod node_ops;
mod plan;
mod promote;
mod record;
mod switchover;
mod verify;

pub use bundle_keys::service_account_keys_from_bundles;
pub use config::{AfterConfig, KubernetesConfig, PodSelector, PromoteConfig};
pub use error::PromoteError;
pub use etcd_dr_core::{PromotionMode, PromotionRequest};
pub use etcd_pod::{parse_etcd_pod, EtcdPod};
pub use health::{judge_health, wait_healthy, HealthyCluster};
pub use kube::KubeClient;
pub use node_ops::{gather_facts, ServiceAccountKeys};
pub use plan::{
    bump_revision, evaluate_preflight, EtcdVersion, NodeFacts, NodePlan, PreflightInputs,
    PromotionPlan, RestoreTool,
};
pub use promote::Promoter;
pub use record::{
    new_promotion_id, progress_lines, NodeRecord, Progress, PromotionRecord, PromotionState,
    PromotionTracker, StepName, StepRecord, StepState,
};
pub use switchover::request_final_snapshot;
pub use verify::{local_snapshot, LocalSnapshot};
