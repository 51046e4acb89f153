//! The control plane of the etcd-dr daemon: its HTTP API (axum) and its Prometheus metrics.
//!
//! This crate knows nothing of etcd or the store. The binary hands it a [`Daemon`] (status and
//! the actions the API may call) and the one [`Metrics`] registry, and gets a [`router`] back.
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /healthz` | alive |
//! | `GET /readyz` | config loaded, store reachable, cycles not failing beyond the grace |
//! | `GET /v1/status` | role, schedule, last snapshot, in-flight progress, last error, lag |
//! | `GET /v1/snapshots`, `GET /v1/snapshots/{id}` | manifests, newest first |
//! | `POST /v1/snapshots` | take a snapshot now (bearer token): 202, or 409 naming the one that runs |
//! | `POST /v1/promote` | promote this secondary (bearer token): 202, 409 naming the one that runs, or after one succeeded |
//! | `GET /v1/promote` | the current or last promotion: every step and node |
//! | `GET /metrics` | Prometheus text format |

#![forbid(unsafe_code)]

mod auth;
mod config;
mod daemon;
mod error;
mod metrics;
mod router;
pub mod routes;
mod server;
mod state;
mod status;

pub use auth::ApiToken;
pub use config::{HttpConfig, TOKEN_ENV};
pub use daemon::{
    ActionError, ApiCaller, Daemon, PromotionAccepted, RunningKind, RunningWork, SnapshotAccepted,
    SnapshotRequest,
};
pub use error::{ApiError, ControlError, ErrorBody};
pub use etcd_dr_core::Role;
pub use metrics::{Metrics, GENERATION_BREAK_REASONS};
pub use router::{bind, router};
pub use server::{serve, CallerAddress, ServeLimits};
pub use state::AppState;
pub use status::{
    Activity, DaemonStatus, InFlight, LastError, PrestagedSnapshot, PromotionSummary,
    ReplicationStatus, ScheduleStatus, SecondaryStatus, SnapshotSummary, StoreHealth, Trigger,
};
