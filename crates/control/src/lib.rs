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
//! | `POST /v1/snapshots` | take a snapshot now (bearer token): 202, or 409 while one runs |
//! | `GET /metrics` | Prometheus text format |

mod auth;
mod config;
mod daemon;
mod error;
mod metrics;
mod router;
pub mod routes;
mod status;

pub use auth::ApiToken;
pub use config::{HttpConfig, TOKEN_ENV};
pub use daemon::{ActionError, Daemon, SnapshotAccepted, SnapshotRequest};
pub use error::{ApiError, ControlError, ErrorBody};
pub use metrics::Metrics;
pub use router::{bind, router, serve, AppState};
pub use status::{
    Activity, DaemonStatus, InFlight, LastError, PrestagedSnapshot, Role, ScheduleStatus,
    SecondaryStatus, SnapshotSummary, StoreHealth, Trigger,
};
