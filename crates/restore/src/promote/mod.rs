//! The promotion itself, one file per part:
//!
//! - `promoter`: what a promotion needs (store, nodes, etcd, Kubernetes API), built once;
//! - `driver`: the state machine — admission, the steps in order, the restore lock given back;
//! - `source`: switchover, select, fence, verify (the snapshot, before any node changes);
//! - `preflight`: every node checked, the plan judged; `node_checks`: the nodes' own shape
//!   (runtime, kubelet, etcd pod, front-end resolution) against the snapshot's;
//! - `hooks`: the operator's `before` and `after` hooks;
//! - `fan_out`: the restore on every node at once, and the rollback of every node;
//! - `front_end`: the API front-end alias on every node, and putting it back;
//! - `health`: the restored etcd and API server;
//! - `after`: kubelet restarts, rollout restarts, pod deletions (failures do not undo).

mod after;
mod driver;
mod fan_out;
mod front_end;
mod health;
mod hooks;
mod node_checks;
mod preflight;
mod promoter;
mod source;

pub use promoter::Promoter;
