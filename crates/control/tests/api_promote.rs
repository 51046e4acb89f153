//! The router's promotion endpoints against a stand-in daemon, request by request (no socket).

mod api_support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use etcd_dr_control::{
    router, ActionError, ApiCaller, ApiToken, AppState, Daemon, DaemonStatus, Metrics,
    PromotionAccepted, Role, RunningKind, RunningWork,
};
use etcd_dr_core::{
    PromotionRecord, PromotionRequest, PromotionState, SnapshotId, SnapshotManifest, StepName,
    StepState,
};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use api_support::*;

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
