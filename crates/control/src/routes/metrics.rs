//! `GET /metrics`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use crate::{ApiError, AppState};

/// `GET /metrics`: the Prometheus text exposition, gauges refreshed from the daemon's state.
pub async fn metrics(State(state): State<AppState>) -> Response {
    state
        .metrics
        .observe_status(&state.daemon.status(), Utc::now());
    match state.metrics.encode() {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics_encoding_failed",
            error.to_string(),
        )
        .into_response(),
    }
}
