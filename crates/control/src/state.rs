//! What every handler gets.

use std::sync::Arc;
use std::time::Duration;

use crate::{ApiToken, Daemon, Metrics};

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// The daemon behind the API.
    pub daemon: Arc<dyn Daemon>,
    /// The one registry.
    pub metrics: Metrics,
    /// Bearer token of mutating endpoints; `None` disables them (403).
    pub token: Option<ApiToken>,
    /// Bearer token of `POST /v1/promote` alone (`http.promote_token_file`); when set, `token`
    /// no longer promotes.
    pub promote_token: Option<ApiToken>,
    /// How long failing cycles keep `/readyz` green.
    pub readiness_grace: Duration,
}
