//! `GET /v1/status`.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{AppState, DaemonStatus};

/// The answer of `/v1/status`: the daemon's state plus what the API computes from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResponse {
    /// The daemon's own state.
    #[serde(flatten)]
    pub status: DaemonStatus,
    /// Seconds since the newest complete and verified snapshot was created.
    pub replication_lag_seconds: f64,
    /// When this answer was made.
    pub now: DateTime<Utc>,
}

/// `GET /v1/status`.
pub async fn status(State(state): State<AppState>) -> Json<StatusResponse> {
    let now = Utc::now();
    let status = state.daemon.status();
    Json(StatusResponse {
        replication_lag_seconds: status.replication_lag_seconds(now),
        status,
        now,
    })
}
