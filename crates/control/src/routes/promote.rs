//! `POST /v1/promote`, `GET /v1/promote`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use etcd_dr_core::{PromotionRecord, PromotionRequest};

use super::body::optional_json_body;
use crate::{ActionError, ApiCaller, ApiError, ApiToken, AppState};

/// `POST /v1/promote` (token required): promote this secondary. Body (every field optional):
/// `{"snapshot": "latest" | "<id>", "mode": "failover" | "switchover", "dry_run": false,
/// "force": false}`. 202 with the promotion id; 409 while one (or an in-place restore) runs,
/// the body's `running` naming it, after one succeeded or while a promotion marker fences the
/// cluster (unless `force`). The caller (address and token name) is recorded as the
/// promotion's `requested_by` and logged.
pub async fn start(
    State(state): State<AppState>,
    caller: Option<axum::Extension<crate::CallerAddress>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Promotion has its own token when one is configured: the one that triggers snapshots
    // (held by automation) then cannot promote.
    let token = match &state.promote_token {
        Some(promote_token) => {
            ApiToken::check(Some(promote_token), &headers)?;
            ApiCaller::PROMOTE_TOKEN
        }
        None => {
            ApiToken::check(state.token.as_ref(), &headers)?;
            ApiCaller::API_TOKEN
        }
    };
    let caller = ApiCaller {
        address: caller.map(|c| c.0 .0),
        token,
    };
    let request: PromotionRequest = optional_json_body(
        body,
        "{\"snapshot\": \"latest\", \"mode\": \"failover\"|\"switchover\", \"dry_run\": false, \"force\": false}",
    )?;
    let accepted = state
        .daemon
        .start_promotion(request.clone(), caller)
        .await
        .map_err(|e| match e {
            ActionError::AlreadyRunning { detail, running } => {
                ApiError::already_running("promotion_conflict", detail, running)
            }
            ActionError::Busy(detail) => {
                ApiError::new(StatusCode::CONFLICT, "promotion_conflict", detail)
            }
            e => ApiError::from(e),
        })?;
    tracing::warn!(
        id = %accepted.id,
        caller = %caller.address.map_or_else(|| "unknown".to_string(), |a| a.to_string()),
        token = caller.token,
        mode = request.mode.as_str(),
        dry_run = request.dry_run,
        force = request.force,
        "promotion started through the API"
    );
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, "/v1/promote".to_string())],
        Json(accepted),
    )
        .into_response())
}

/// `GET /v1/promote`: the current or last promotion with every step and node; 404 before the
/// first.
pub async fn current(State(state): State<AppState>) -> Result<Json<PromotionRecord>, ApiError> {
    state.daemon.promotion().map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_promotion",
            "no promotion has run in this process; start one with POST /v1/promote",
        )
    })
}
