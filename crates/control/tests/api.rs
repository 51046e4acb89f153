//! The router against a stand-in daemon, request by request (no socket): health, status,
//! snapshots, triggers, metrics. Promotion: `api_promote.rs`.

mod api_support;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::Utc;
use etcd_dr_control::{LastError, SnapshotSummary};
use serde_json::Value;

use api_support::*;

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
