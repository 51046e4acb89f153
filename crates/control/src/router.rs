//! The API's routes and the server that serves them.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::routes::{health, metrics, promote, snapshots, status};
use crate::{ApiError, AppState, ControlError};

/// The API's routes. Every error answer, including unknown paths and methods, is JSON.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/status", get(status::status))
        .route(
            "/v1/snapshots",
            get(snapshots::list).post(snapshots::trigger),
        )
        .route("/v1/snapshots/{id}", get(snapshots::get))
        .route("/v1/promote", get(promote::current).post(promote::start))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no endpoint at `{}`; see /v1/status, /v1/snapshots, /v1/promote, /metrics, /healthz, /readyz",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("`{method}` is not allowed on `{}`", uri.path()),
    )
}

/// Binds the listen address (errors name `http.listen`).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, ControlError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ControlError::Bind {
            address: address.to_string(),
            source,
        })
}
