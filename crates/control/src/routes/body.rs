//! Request bodies.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// The JSON body of a POST whose every field is optional: nothing (or only whitespace) is the
/// default request; anything else must parse, else `400 bad_request_body` saying `expected`.
pub(crate) fn optional_json_body<T: DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
    expected: &str,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), "bad_request_body", e.body_text()))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request_body",
            format!("expected {expected}: {e}"),
        )
    })
}
