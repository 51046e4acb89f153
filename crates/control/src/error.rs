use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::{ActionError, RunningWork};

/// What can go wrong setting up or running the HTTP side.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A metric could not be created or registered (a programming error, caught by tests).
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {address} (http.listen): {source}")]
    Bind {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server stopped with an error.
    #[error("HTTP server: {0}")]
    Serve(#[source] std::io::Error),
    /// The API token file could not be read.
    #[error("cannot read the API token file `{path}` (http.token_file): {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The API token is empty or too short.
    #[error("the API token from {origin} is unusable: {reason}")]
    BadToken {
        /// Where it came from (file path or variable name).
        origin: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The JSON body of every error answer: `{"error": "snapshot_in_progress", "detail": "…"}`,
/// with `"running": {"kind", "id", "since", "holder"}` when a 409 is about work that runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable machine-readable code.
    pub error: String,
    /// What happened and what to do, for people.
    pub detail: String,
    /// The work that already runs (409 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<RunningWork>,
}

/// An error answer: status code plus [`ErrorBody`].
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub error: &'static str,
    /// Human detail.
    pub detail: String,
    /// The work that already runs (409 only).
    pub running: Option<Box<RunningWork>>,
}

impl ApiError {
    /// An error answer.
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            error,
            detail: detail.into(),
            running: None,
        }
    }

    /// A 409 about work that runs, under the stable code `error`.
    pub fn already_running(
        error: &'static str,
        detail: impl Into<String>,
        running: Box<RunningWork>,
    ) -> Self {
        Self {
            running: Some(running),
            ..Self::new(StatusCode::CONFLICT, error, detail)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.error.to_string(),
                detail: self.detail,
                running: self.running.map(|running| *running),
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"etcd-dr\""),
            );
        }
        response
    }
}

impl From<ActionError> for ApiError {
    fn from(error: ActionError) -> Self {
        match error {
            ActionError::AlreadyRunning { detail, running } => {
                ApiError::already_running("busy", detail, running)
            }
            ActionError::Busy(detail) => ApiError::new(StatusCode::CONFLICT, "busy", detail),
            ActionError::Unsupported(detail) => {
                ApiError::new(StatusCode::CONFLICT, "unsupported", detail)
            }
            ActionError::NotFound(detail) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
            }
            ActionError::BadRequest(detail) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", detail)
            }
            ActionError::Unavailable(detail) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
            }
            ActionError::Failed(detail) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "failed", detail)
            }
            ActionError::Refused(detail) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", detail)
            }
        }
    }
}
