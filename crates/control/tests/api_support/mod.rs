//! The stand-in daemon, the router around it and the request helpers of `api.rs` and
//! `api_promote.rs`.
#![allow(dead_code)] // each test file uses its own part

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::{TimeZone, Utc};
use etcd_dr_control::{
    router, ActionError, ApiToken, AppState, Daemon, DaemonStatus, Metrics, Role, RunningKind,
    RunningWork, SnapshotAccepted, SnapshotRequest,
};
use etcd_dr_core::{
    Compression, EtcdClusterInfo, ObjectDigest, Producer, SnapshotId, SnapshotManifest,
    StoredObject, MANIFEST_FORMAT_VERSION,
};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub fn manifest(minute: u32, revision: i64) -> SnapshotManifest {
    let at = Utc.with_ymd_and_hms(2026, 11, 25, 12, minute, 0).unwrap();
    SnapshotManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: SnapshotId::new(at, revision),
        cluster: "prod".into(),
        label: None,
        etcd: EtcdClusterInfo {
            cluster_id: "cdf818194e3a8c32".into(),
            version: "3.5.16".into(),
            revision,
            raft_index: 10,
            raft_term: 2,
            source_endpoint: "http://127.0.0.1:2379".into(),
            source_member_id: "8e9e05c52164694d".into(),
            members: vec![],
            previous_cluster_id: None,
            replication_generation: None,
            rewound_from_revision: None,
        },
        raw: ObjectDigest {
            size: 20480,
            sha256: "ab".repeat(32),
        },
        etcd_sha256: "cd".repeat(32),
        stored: StoredObject {
            name: "etcd.db.zst".into(),
            size: 900,
            sha256: "ef".repeat(32),
            compression: Compression::Zstd { level: 3 },
            encryption: None,
        },
        created_at: at,
        completed_at: at + chrono::Duration::seconds(2),
        duration_seconds: 2.0,
        producer: Producer {
            tool: "etcd-dr test".into(),
            host: "bastion".into(),
        },
        nodes: vec![],
        signature: None,
        kubernetes: None,
    }
}

pub struct FakeDaemon {
    pub status: Mutex<DaemonStatus>,
    pub snapshots: Vec<SnapshotManifest>,
    pub busy: Mutex<bool>,
    pub triggered: Mutex<Vec<SnapshotRequest>>,
}

#[async_trait]
impl Daemon for FakeDaemon {
    fn status(&self) -> DaemonStatus {
        self.status.lock().unwrap().clone()
    }

    async fn list_snapshots(&self) -> Result<Vec<SnapshotManifest>, ActionError> {
        Ok(self.snapshots.clone())
    }

    async fn get_snapshot(&self, id: &SnapshotId) -> Result<SnapshotManifest, ActionError> {
        self.snapshots
            .iter()
            .find(|m| &m.id == id)
            .cloned()
            .ok_or_else(|| ActionError::NotFound(format!("snapshot {id}")))
    }

    async fn trigger_snapshot(
        &self,
        request: SnapshotRequest,
    ) -> Result<SnapshotAccepted, ActionError> {
        let mut busy = self.busy.lock().unwrap();
        if *busy {
            return Err(ActionError::AlreadyRunning {
                detail: "snapshot 20261125T123000Z-r99 is running".into(),
                running: Box::new(RunningWork {
                    kind: RunningKind::Snapshot,
                    id: Some(manifest(30, 99).id.to_string()),
                    since: Utc.with_ymd_and_hms(2026, 11, 25, 12, 30, 0).unwrap(),
                    holder: None,
                }),
            });
        }
        *busy = true;
        self.triggered.lock().unwrap().push(request);
        Ok(SnapshotAccepted {
            id: manifest(30, 99).id,
        })
    }
}

pub struct Api {
    pub daemon: Arc<FakeDaemon>,
    pub metrics: Metrics,
    pub router: axum::Router,
}

pub fn api(token: bool) -> Api {
    let start = Utc::now() - chrono::Duration::seconds(600);
    let mut status = DaemonStatus::starting(Role::Primary, "prod", "local /srv/etcd-dr", start);
    status.store.reachable = Some(true);
    let daemon = Arc::new(FakeDaemon {
        status: Mutex::new(status),
        // In the catalog's order (oldest first, by revision), which the ids disagree with:
        // revision 10's producer clock ran ahead. The API keeps the catalog's order.
        snapshots: vec![manifest(20, 10), manifest(5, 20), manifest(10, 30)],
        busy: Mutex::new(false),
        triggered: Mutex::new(vec![]),
    });
    let metrics = Metrics::new(Role::Primary).unwrap();
    let router = router(AppState {
        daemon: daemon.clone(),
        metrics: metrics.clone(),
        token: token.then(|| ApiToken::new(TOKEN, "test").unwrap()),
        promote_token: None,
        readiness_grace: Duration::from_secs(60),
    });
    Api {
        daemon,
        metrics,
        router,
    }
}

pub async fn call(
    api: &Api,
    request: Request<Body>,
) -> (StatusCode, String, axum::http::HeaderMap) {
    let response = api.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap(), headers)
}

pub async fn get(api: &Api, path: &str) -> (StatusCode, Value) {
    let (status, body, _) = call(api, Request::get(path).body(Body::empty()).unwrap()).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

pub fn post(path: &str, token: Option<&str>, body: &str) -> Request<Body> {
    let mut request = Request::post(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::from(body.to_string())).unwrap()
}

pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}
