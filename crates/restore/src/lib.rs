//! Promote: restore a snapshot onto every control-plane node of the secondary region.
//!
//! An explicit state machine of steps × nodes ([`PromotionRecord`], live in a
//! [`PromotionTracker`]): admission ([`admit`]: the fence and the restore lock), switchover
//! handshake, select, fence, verify, preflight, the `before` hooks, restore, the API front end,
//! health, after-steps, the `after` hooks, and rollback on failure. The pure parts — reading the etcd static pod manifest ([`parse_etcd_pod`]), judging
//! the preflight ([`evaluate_preflight`]), the revision bump ([`bump_revision`]) and the restore
//! command ([`PromotionPlan::restore_argv`]) — are separate from the parts that run commands on
//! nodes. The record's types live in `etcd-dr-core`, so the HTTP API serves them typed.

#![forbid(unsafe_code)]

mod admission;
mod after_kube;
mod bundle_keys;
mod config;
mod error;
mod etcd_pod;
mod fence_watch;
mod front_end;
mod health;
mod hooks;
mod kube;
mod node_ops;
mod node_shape;
mod plan;
mod progress;
mod promote;
mod switchover;
mod tracker;
mod transfer;
mod verify;

pub use admission::{admit, take_restore_lock, Admission, AdmissionError, LockHolder};
pub use after_kube::{restart_workloads, wait_nodes_ready, NodesReady, WorkloadResults};
pub use bundle_keys::service_account_keys_from_bundles;
pub use config::{
    AfterConfig, KubernetesConfig, PodSelector, PromoteConfig, ReplayConfig, ReplayEngineName,
};
pub use error::PromoteError;
pub use etcd_dr_core::{
    AfterAction, AfterOutcome, AfterResult, EtcdVersion, NodePlan, NodeRecord, Progress,
    PromotionMode, PromotionPlan, PromotionRecord, PromotionRequest, PromotionState, RestoreTool,
    StepName, StepRecord, StepState,
};
pub use etcd_pod::{parse_etcd_pod, EtcdPod};
pub use fence_watch::{check_fence_once, FenceCheckError};
pub use front_end::{
    alias_line, is_host_name, replace_marked_lines, restore_marked_lines, FrontEndConfig,
    HostsReplaced, MarkedLine, HOSTS_MARK,
};
pub use health::{judge_health, wait_api_ready, wait_healthy, HealthyCluster};
pub use hooks::{
    run_hook, HookConfig, HookFailure, HookPhase, HookRun, HookTarget, HOOK_OUTPUT_KEPT,
};
pub use kube::{KubeClient, RolloutReport};
pub use node_ops::{gather_facts, ServiceAccountKeys};
pub use node_shape::{describe_node_shape, read_node_shape};
pub use plan::{bump_revision, evaluate_preflight, NodeFacts, PreflightInputs};
pub use progress::{progress_lines, running_activity, running_copy, running_transfer};
pub use promote::Promoter;
pub use switchover::request_final_snapshot;
pub use tracker::{new_promotion_id, PromotionTracker};
pub use transfer::{
    record_transfer, CountingReader, CountingWriter, TransferWatch, RECORD_INTERVAL,
};
pub use verify::{local_snapshot, LocalSnapshot};
