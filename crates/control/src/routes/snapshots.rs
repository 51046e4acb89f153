//! `GET /v1/snapshots`, `GET /v1/snapshots/{id}`, `POST /v1/snapshots`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use etcd_dr_core::{SnapshotId, SnapshotManifest};
use serde::{Deserialize, Serialize};

use super::body::optional_json_body;
use crate::{ActionError, ApiError, ApiToken, AppState, SnapshotRequest};

/// The answer of `GET /v1/snapshots`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotList {
    /// How many complete snapshots the store holds.
    pub count: usize,
    /// Their manifests, newest first (the catalog's order: by revision within an etcd
    /// cluster id, never by the producer's clock in the id).
    pub snapshots: Vec<SnapshotManifest>,
}

/// `GET /v1/snapshots`: every complete snapshot, newest first in the catalog's order.
pub async fn list(State(state): State<AppState>) -> Result<Json<SnapshotList>, ApiError> {
    let mut snapshots = state.daemon.list_snapshots().await?;
    snapshots.reverse();
    Ok(Json(SnapshotList {
        count: snapshots.len(),
        snapshots,
    }))
}

/// `GET /v1/snapshots/{id}`: one manifest.
pub async fn get(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<SnapshotManifest>, ApiError> {
    let Path(id) =
        id.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_snapshot_id", e.body_text()))?;
    let id: SnapshotId = id.parse().map_err(|e: etcd_dr_core::SnapshotIdError| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_snapshot_id", e.to_string())
    })?;
    Ok(Json(state.daemon.get_snapshot(&id).await?))
}

/// `POST /v1/snapshots` (token required): take a snapshot now. Body optional:
/// `{"label": "before upgrade"}`. 202 with the id; 409 when one is already running (here, or
/// in another process holding the producer lease), the body's `running` naming it.
pub async fn trigger(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    ApiToken::check(state.token.as_ref(), &headers)?;
    let request: SnapshotRequest = optional_json_body(body, "nothing or {\"label\": \"...\"}")?;
    if let Some(label) = &request.label {
        etcd_dr_core::validate_label(label)
            .map_err(|detail| ApiError::new(StatusCode::BAD_REQUEST, "bad_label", detail))?;
    }
    let accepted = state
        .daemon
        .trigger_snapshot(request)
        .await
        .map_err(|e| match e {
            ActionError::AlreadyRunning { detail, running } => {
                ApiError::already_running("snapshot_in_progress", detail, running)
            }
            ActionError::Busy(detail) => {
                ApiError::new(StatusCode::CONFLICT, "snapshot_in_progress", detail)
            }
            e => ApiError::from(e),
        })?;
    tracing::info!(id = %accepted.id, "snapshot triggered through the API");
    let location = format!("/v1/snapshots/{}", accepted.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(accepted),
    )
        .into_response())
}
