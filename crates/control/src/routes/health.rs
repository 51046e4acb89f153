//! `GET /healthz` and `GET /readyz`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{AppState, DaemonStatus};

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "alive": true }))
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// True when every check passed.
    pub ready: bool,
    /// `not_ready` when a check failed (the body then reads like any error answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failed checks' details, joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Each check and its result.
    pub checks: Vec<ReadinessCheck>,
}

/// One readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessCheck {
    /// `config`, `store` or `cycle`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// Why, for people.
    pub detail: String,
}

/// Readiness from the daemon's state: configuration loaded (it is, or the daemon would not run),
/// store reachable at the last check, and the last cycle not failing for longer than `grace`.
pub fn readiness(
    status: &DaemonStatus,
    now: DateTime<Utc>,
    grace: std::time::Duration,
) -> Readiness {
    let mut checks = vec![ReadinessCheck {
        name: "config".into(),
        ok: true,
        detail: "loaded and valid".into(),
    }];
    let store = &status.store;
    checks.push(match store.reachable {
        Some(true) => ReadinessCheck {
            name: "store".into(),
            ok: true,
            detail: format!("{} reachable", store.description),
        },
        Some(false) => ReadinessCheck {
            name: "store".into(),
            ok: false,
            detail: format!(
                "{} unreachable: {}",
                store.description,
                store.error.as_deref().unwrap_or("no answer")
            ),
        },
        None => ReadinessCheck {
            name: "store".into(),
            ok: false,
            detail: format!("{} not checked yet", store.description),
        },
    });
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    checks.push(match status.failing_since {
        Some(since) if now - since > grace => ReadinessCheck {
            name: "cycle".into(),
            ok: false,
            detail: format!(
                "failing since {since} (longer than the readiness grace): {}",
                status
                    .last_error
                    .as_ref()
                    .map_or("unknown error", |e| e.message.as_str())
            ),
        },
        Some(since) => ReadinessCheck {
            name: "cycle".into(),
            ok: true,
            detail: format!("failing since {since}, within the readiness grace"),
        },
        None => ReadinessCheck {
            name: "cycle".into(),
            ok: true,
            detail: "last cycle succeeded (or none ran yet)".into(),
        },
    });
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    Readiness {
        ready: failed.is_empty(),
        error: (!failed.is_empty()).then(|| "not_ready".to_string()),
        detail: (!failed.is_empty()).then(|| failed.join("; ")),
        checks,
    }
}

/// `GET /readyz`: 200 when ready, 503 with the failed checks otherwise.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = readiness(&state.daemon.status(), Utc::now(), state.readiness_grace);
    let code = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(readiness)).into_response()
}
