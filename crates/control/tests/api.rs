//! The router against a stand-in daemon, request by request (no socket).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::{TimeZone, Utc};
use etcd_dr_control::{
    router, ActionError, ApiCaller, ApiToken, AppState, Daemon, DaemonStatus, LastError, Metrics,
    PromotionAccepted, Role, RunningKind, RunningWork, SnapshotAccepted, SnapshotRequest,
    SnapshotSummary,
};
use etcd_dr_core::{
    Compression, EtcdClusterInfo, ObjectDigest, Producer, PromotionRecord, PromotionRequest,
    PromotionState, SnapshotId, SnapshotManifest, StepName, StepState, StoredObject,
    MANIFEST_FORMAT_VERSION,
};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const TOKEN: &str = "test-token-0123456789abcdef";

fn manifest(minute: u32, revision: i64) -> SnapshotManifest {
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

struct FakeDaemon {
    status: Mutex<DaemonStatus>,
    snapshots: Vec<SnapshotManifest>,
    busy: Mutex<bool>,
    triggered: Mutex<Vec<SnapshotRequest>>,
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

struct Api {
    daemon: Arc<FakeDaemon>,
    metrics: Metrics,
    router: axum::Router,
}

fn api(token: bool) -> Api {
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

async fn call(api: &Api, request: Request<Body>) -> (StatusCode, String, axum::http::HeaderMap) {
    let response = api.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap(), headers)
}

async fn get(api: &Api, path: &str) -> (StatusCode, Value) {
    let (status, body, _) = call(api, Request::get(path).body(Body::empty()).unwrap()).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn post(path: &str, token: Option<&str>, body: &str) -> Request<Body> {
    let mut request = Request::post(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::from(body.to_string())).unwrap()
}

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn healthz_answers_alive() {
    let api = api(true);
    let (status, body) = get(&api, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["alive"], true);
}

#[tokio::test]
async fn readyz_follows_store_and_failing_cycles() {
    let api = api(true);
    let (status, body) = get(&api, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ready"], true);

    api.daemon.status.lock().unwrap().store.reachable = Some(false);
    let (status, body) = get(&api, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&body, "not_ready");
    assert!(
        body["detail"].as_str().unwrap().starts_with("store:"),
        "{body}"
    );

    // Failing, but within the grace: still ready.
    {
        let mut status = api.daemon.status.lock().unwrap();
        status.store.reachable = Some(true);
        status.failing_since = Some(Utc::now() - chrono::Duration::seconds(30));
        status.last_error = Some(LastError {
            at: Utc::now(),
            message: "etcd unreachable".into(),
        });
    }
    assert_eq!(get(&api, "/readyz").await.0, StatusCode::OK);
    // Failing for longer than the grace (60 s): unready, and it says why.
    api.daemon.status.lock().unwrap().failing_since =
        Some(Utc::now() - chrono::Duration::seconds(120));
    let (status, body) = get(&api, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("etcd unreachable"),
        "{body}"
    );
}

#[tokio::test]
async fn status_reports_the_daemon_and_its_lag() {
    let api = api(true);
    let created = Utc::now() - chrono::Duration::seconds(300);
    let mut summary = SnapshotSummary::from(&manifest(1, 7));
    summary.created_at = created;
    api.daemon.status.lock().unwrap().newest_verified = Some(summary);
    let (status, body) = get(&api, "/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["role"], "primary");
    assert_eq!(body["cluster"], "prod");
    assert_eq!(body["store"]["reachable"], true);
    assert_eq!(body["newest_verified"]["revision"], 7);
    let lag = body["replication_lag_seconds"].as_f64().unwrap();
    assert!((299.0..310.0).contains(&lag), "{lag}");
    assert!(body.get("fenced").is_none());
}

#[tokio::test]
async fn snapshots_are_listed_newest_first_in_the_catalogs_order_and_fetched_by_id() {
    let api = api(true);
    let (status, body) = get(&api, "/v1/snapshots").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 3);
    let revisions: Vec<i64> = body["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["etcd"]["revision"].as_i64().unwrap())
        .collect();
    assert_eq!(revisions, [30, 20, 10]);

    let id = manifest(5, 20).id.to_string();
    let (status, body) = get(&api, &format!("/v1/snapshots/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], id);

    let (status, body) = get(&api, "/v1/snapshots/20261125T120100Z-r1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    for bad in ["/v1/snapshots/..%2Fetc", "/v1/snapshots/%FF"] {
        let (status, body) = get(&api, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_error(&body, "bad_snapshot_id");
    }
}

#[tokio::test]
async fn trigger_needs_the_token_and_refuses_a_second_run() {
    let api = api(true);
    for token in [None, Some("wrong-token-0123456789")] {
        let (status, body, headers) = call(&api, post("/v1/snapshots", token, "")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_error(&serde_json::from_str(&body).unwrap(), "unauthorized");
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
    }
    assert!(api.daemon.triggered.lock().unwrap().is_empty());

    let (status, body, headers) = call(
        &api,
        post(
            "/v1/snapshots",
            Some(TOKEN),
            r#"{"label": "before upgrade"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["id"], manifest(30, 99).id.to_string());
    assert_eq!(
        headers[header::LOCATION],
        format!("/v1/snapshots/{}", body["id"].as_str().unwrap())
    );
    assert_eq!(
        api.daemon.triggered.lock().unwrap()[0].label.as_deref(),
        Some("before upgrade")
    );

    // The second is no queued success: 409 naming the run, and nothing more was triggered.
    let (status, body, _) = call(&api, post("/v1/snapshots", Some(TOKEN), "")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_error(&body, "snapshot_in_progress");
    assert_eq!(body["running"]["kind"], "snapshot", "{body}");
    assert_eq!(body["running"]["id"], manifest(30, 99).id.to_string());
    assert_eq!(body["running"]["since"], "2026-11-25T12:30:00Z");
    assert!(body["running"].get("holder").is_none(), "{body}");
    assert_eq!(api.daemon.triggered.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn trigger_refuses_bad_bodies_and_works_only_with_a_configured_token() {
    let api_with = api(true);
    for body in ["{not json", r#"{"lable": "x"}"#, r#"{"label": "a\u0007b"}"#] {
        let (status, text, _) = call(&api_with, post("/v1/snapshots", Some(TOKEN), body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
    }
    let api_without = api(false);
    let (status, body, _) = call(&api_without, post("/v1/snapshots", Some(TOKEN), "")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(
        &serde_json::from_str(&body).unwrap(),
        "api_token_not_configured",
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let api = api(true);
    let (status, body) = get(&api, "/v2/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    let (status, body, _) = call(&api, post("/v1/status", Some(TOKEN), "")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&serde_json::from_str(&body).unwrap(), "method_not_allowed");
}

#[tokio::test]
async fn metrics_expose_every_family_with_fresh_gauges() {
    let api = api(true);
    api.metrics
        .snapshot_taken(&SnapshotSummary::from(&manifest(10, 30)));
    let (status, text, headers) =
        call(&api, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for family in api.metrics.family_names() {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.parse::<f64>().unwrap())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(line("etcd_dr_etcd_revision"), 30.0);
    assert_eq!(line("etcd_dr_store_reachable"), 1.0);
    assert_eq!(line("etcd_dr_snapshots_total{result=\"success\"}"), 1.0);
    // No verified snapshot in the status: the lag counts from start-up (600 s ago).
    let lag = line("etcd_dr_replication_lag_seconds");
    assert!((599.0..620.0).contains(&lag), "{lag}");
}

#[tokio::test]
async fn promote_needs_the_token_and_a_daemon_that_promotes() {
    // The fake daemon has no promote support: the trait's default answers.
    let api = api(true);
    let (status, body) = get(&api, "/v1/promote").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "no_promotion");
    let (status, _, _) = call(&api, post("/v1/promote", None, "{}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body, _) = call(
        &api,
        post("/v1/promote", Some(TOKEN), r#"{"mode":"sideways"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("bad_request_body"), "{body}");
    let (status, body, _) = call(
        &api,
        post(
            "/v1/promote",
            Some(TOKEN),
            r#"{"snapshot":"latest","dry_run":true}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("[promote]"), "{body}");
}

#[tokio::test]
async fn a_promote_token_alone_promotes_and_the_api_token_no_longer_does() {
    const PROMOTE_TOKEN: &str = "promote-token-0123456789abcdef";
    let mut api = api(true);
    // Rebuild the router with both tokens.
    api.router = router(AppState {
        daemon: api.daemon.clone(),
        metrics: api.metrics.clone(),
        token: Some(ApiToken::new(TOKEN, "test").unwrap()),
        promote_token: Some(ApiToken::new(PROMOTE_TOKEN, "test").unwrap()),
        readiness_grace: Duration::from_secs(60),
    });
    let body = r#"{"snapshot":"latest","dry_run":true}"#;
    let (status, _, _) = call(&api, post("/v1/promote", Some(TOKEN), body)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the API token cannot promote"
    );
    let (status, body_text, _) = call(&api, post("/v1/promote", Some(PROMOTE_TOKEN), body)).await;
    // Past authentication: the fake daemon has no [promote].
    assert_eq!(status, StatusCode::CONFLICT, "{body_text}");
    let (status, _, _) = call(&api, post("/v1/snapshots", Some(PROMOTE_TOKEN), "")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the promote token cannot trigger"
    );
}

/// A daemon that ran one promotion; everything else as [`FakeDaemon`].
struct PromotedDaemon {
    inner: Arc<FakeDaemon>,
    record: PromotionRecord,
}

#[async_trait]
impl Daemon for PromotedDaemon {
    fn status(&self) -> DaemonStatus {
        self.inner.status()
    }

    async fn list_snapshots(&self) -> Result<Vec<SnapshotManifest>, ActionError> {
        self.inner.list_snapshots().await
    }

    async fn get_snapshot(&self, id: &SnapshotId) -> Result<SnapshotManifest, ActionError> {
        self.inner.get_snapshot(id).await
    }

    async fn start_promotion(
        &self,
        _request: PromotionRequest,
        _caller: ApiCaller,
    ) -> Result<PromotionAccepted, ActionError> {
        match self.record.state {
            PromotionState::Running => Err(ActionError::AlreadyRunning {
                detail: format!("promotion {} is running", self.record.id),
                running: Box::new(RunningWork {
                    kind: RunningKind::Promotion,
                    id: Some(self.record.id.clone()),
                    since: self.record.started_at,
                    holder: Some(self.record.requested_by.clone()),
                }),
            }),
            _ => Err(ActionError::Busy(format!(
                "promotion {} ended; this cluster is promoted",
                self.record.id
            ))),
        }
    }

    fn promotion(&self) -> Option<PromotionRecord> {
        Some(self.record.clone())
    }
}

#[tokio::test]
async fn promote_while_one_runs_answers_409_naming_it() {
    let record = PromotionRecord::new(
        "p-20261125T120000Z-1a2b".into(),
        PromotionRequest::default(),
        "ops@bastion-eu".into(),
    );
    let since = record.started_at;
    let daemon = Arc::new(PromotedDaemon {
        inner: api(true).daemon,
        record,
    });
    let router = router(AppState {
        daemon,
        metrics: Metrics::new(Role::Secondary).unwrap(),
        token: Some(ApiToken::new(TOKEN, "test").unwrap()),
        promote_token: None,
        readiness_grace: Duration::from_secs(60),
    });
    let response = router
        .oneshot(post("/v1/promote", Some(TOKEN), "{}"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_error(&body, "promotion_conflict");
    assert_eq!(body["running"]["kind"], "promotion", "{body}");
    assert_eq!(body["running"]["id"], "p-20261125T120000Z-1a2b");
    assert_eq!(body["running"]["holder"], "ops@bastion-eu");
    let parsed: chrono::DateTime<Utc> = body["running"]["since"].as_str().unwrap().parse().unwrap();
    assert_eq!(parsed, since);
}

#[tokio::test]
async fn other_conflicts_answer_409_without_a_running_work() {
    let mut record = PromotionRecord::new(
        "p-20261125T120000Z-1a2b".into(),
        PromotionRequest::default(),
        "ops@bastion-eu".into(),
    );
    record.state = PromotionState::Succeeded;
    let router = router(AppState {
        daemon: Arc::new(PromotedDaemon {
            inner: api(true).daemon,
            record,
        }),
        metrics: Metrics::new(Role::Secondary).unwrap(),
        token: Some(ApiToken::new(TOKEN, "test").unwrap()),
        promote_token: None,
        readiness_grace: Duration::from_secs(60),
    });
    let response = router
        .oneshot(post("/v1/promote", Some(TOKEN), "{}"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_error(&body, "promotion_conflict");
    assert!(body.get("running").is_none(), "{body}");
}

#[tokio::test]
async fn the_promotion_record_is_served_as_it_serialises() {
    let mut record = PromotionRecord::new(
        "p-20261125T120000Z-1a2b".into(),
        PromotionRequest::default(),
        "ops@bastion-eu".into(),
    );
    record.snapshot = Some(manifest(5, 20).id);
    record.step_mut(StepName::Select).progress.state = StepState::Done;
    let node = record.node_mut(StepName::Restore, "cp1");
    node.progress.state = StepState::Failed;
    node.progress.error = Some("etcdutl failed".into());
    record.state = PromotionState::RolledBack;
    record.warnings.push("after the rollback: no leader".into());
    let daemon = PromotedDaemon {
        inner: api(true).daemon,
        record: record.clone(),
    };
    let router = router(AppState {
        daemon: Arc::new(daemon),
        metrics: Metrics::new(Role::Secondary).unwrap(),
        token: None,
        promote_token: None,
        readiness_grace: Duration::from_secs(60),
    });
    let response = router
        .oneshot(Request::get("/v1/promote").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body, serde_json::to_value(&record).unwrap());
    assert_eq!(body["id"], "p-20261125T120000Z-1a2b");
    assert_eq!(body["state"], "rolled-back");
    assert_eq!(body["request"]["mode"], "failover");
    assert_eq!(body["steps"][1]["name"], "select");
    assert_eq!(body["steps"][1]["state"], "done");
    assert_eq!(body["steps"][6]["nodes"][0]["node"], "cp1");
    assert_eq!(body["steps"][6]["nodes"][0]["error"], "etcdutl failed");
    assert!(body.get("plan").is_none(), "{body}");
}
