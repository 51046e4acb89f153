use async_trait::async_trait;
use chrono::{DateTime, Utc};
use etcd_dr_core::{PromotionRecord, PromotionRequest, SnapshotId, SnapshotManifest};
use serde::{Deserialize, Serialize};

use crate::DaemonStatus;

/// What the HTTP API needs from the daemon. The binary implements it; this crate knows nothing
/// of etcd or the store.
///
/// New actions (promote) are added as methods with a default body that answers
/// [`ActionError::Unsupported`], so existing implementations keep compiling.
#[async_trait]
pub trait Daemon: Send + Sync + 'static {
    /// The current state; cheap, called on every status, readiness and metrics request.
    fn status(&self) -> DaemonStatus;

    /// Every complete snapshot in the store, in the catalog's order: oldest first, by revision
    /// within an etcd cluster id (the API serves them newest first).
    async fn list_snapshots(&self) -> Result<Vec<SnapshotManifest>, ActionError>;

    /// One snapshot's manifest.
    async fn get_snapshot(&self, id: &SnapshotId) -> Result<SnapshotManifest, ActionError>;

    /// Starts a snapshot now and returns once it is under way (its id known).
    /// [`ActionError::AlreadyRunning`] when one is already running (here or, holding the
    /// producer lease, in another process).
    async fn trigger_snapshot(
        &self,
        request: SnapshotRequest,
    ) -> Result<SnapshotAccepted, ActionError> {
        let _ = request;
        Err(ActionError::Unsupported(
            "this instance does not take snapshots".into(),
        ))
    }

    /// Starts a promotion and returns once it is under way. [`ActionError::AlreadyRunning`] when
    /// one (or an in-place restore) is running; [`ActionError::Busy`] when one succeeded or a
    /// promotion marker fences the cluster (unless `force`).
    async fn start_promotion(
        &self,
        request: PromotionRequest,
        caller: ApiCaller,
    ) -> Result<PromotionAccepted, ActionError> {
        let _ = (request, caller);
        Err(ActionError::Unsupported(
            "this instance does not promote: run the secondary with a [promote] section".into(),
        ))
    }

    /// The current or last promotion with every step and node, if any.
    fn promotion(&self) -> Option<PromotionRecord> {
        None
    }
}

/// Who asked for an action through the API: the client's address and the token it presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiCaller {
    /// The client's address; `None` when the server did not record it.
    pub address: Option<std::net::SocketAddr>,
    /// The name of the token presented: [`ApiCaller::PROMOTE_TOKEN`] or [`ApiCaller::API_TOKEN`].
    pub token: &'static str,
}

impl ApiCaller {
    /// The name of `http.promote_token_file`'s token.
    pub const PROMOTE_TOKEN: &'static str = "promote";
    /// The name of the API token (`http.token_file` or `ETCD_DR_API_TOKEN`).
    pub const API_TOKEN: &'static str = "api";
}

impl std::fmt::Display for ApiCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.address {
            Some(address) => write!(f, "{} token from {address}", self.token),
            None => write!(f, "{} token from an unknown address", self.token),
        }
    }
}

/// Answer to `POST /v1/promote`: the promotion that is now running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionAccepted {
    /// Its id; `GET /v1/promote` follows it.
    pub id: String,
}

/// Body of `POST /v1/snapshots` (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// Free text stored in the manifest, e.g. `"before upgrade to 1.31"`.
    #[serde(default)]
    pub label: Option<String>,
}

/// Answer to `POST /v1/snapshots`: the snapshot that is now being taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotAccepted {
    /// Its id; if the stream fails over to another member, `/v1/status` shows the new id.
    pub id: SnapshotId,
}

/// What kind of work keeps a request from starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunningKind {
    /// A snapshot of this daemon (scheduled or triggered), retention after it included.
    Snapshot,
    /// Another process (a CLI run, a second daemon) holds the prefix's producer lease.
    OtherProducer,
    /// A promotion (failover or switchover), here or holding the restore lock elsewhere.
    Promotion,
    /// An in-place restore holding the restore lock.
    Restore,
}

/// The work that already runs, as the body of a 409 names it (`"running": {…}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningWork {
    /// What runs.
    pub kind: RunningKind,
    /// Its id (snapshot or promotion id), once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Since when it runs (for another producer: when it took the lease).
    pub since: DateTime<Utc>,
    /// Who runs it when that is not this daemon's own schedule: the lease holder
    /// (`host (pid N)`) or whoever asked for the promotion (`user@host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

/// Why the daemon could not do what was asked. Each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The same kind of work already runs: 409, and the body names it (`running`).
    #[error("busy: {detail}")]
    AlreadyRunning {
        /// What happened and what to do, for people.
        detail: String,
        /// What runs.
        running: Box<RunningWork>,
    },
    /// Something else conflicts (a promotion succeeded, a fence): 409.
    #[error("busy: {0}")]
    Busy(String),
    /// This instance does not do that (role, configuration): 409.
    #[error("not supported here: {0}")]
    Unsupported(String),
    /// No such snapshot: 404.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request itself is wrong: 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A dependency (store, etcd) did not answer: 503.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The action was attempted and failed: 500.
    #[error("failed: {0}")]
    Failed(String),
    /// The snapshot exists but this instance refuses it (unsigned, unknown signer, another
    /// cluster, plain where encryption is required): 422.
    #[error("refused: {0}")]
    Refused(String),
}
