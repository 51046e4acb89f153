//! The registry's families, their presence from start-up and how they move.

use super::*;
use chrono::TimeZone;
use etcd_dr_core::SnapshotId;

/// `name{labels} value` lines of the exposition, comments dropped.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn value(text: &str, name: &str) -> f64 {
    samples(text)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
        .1
}

#[test]
fn every_metric_is_present_at_zero_from_the_start() {
    let metrics = Metrics::new(Role::Primary).unwrap();
    let text = metrics.encode().unwrap();
    for name in [
        "etcd_dr_replication_lag_seconds",
        "etcd_dr_last_success_timestamp_seconds",
        "etcd_dr_snapshot_duration_seconds_count",
        "etcd_dr_snapshot_size_bytes{kind=\"raw\"}",
        "etcd_dr_snapshot_size_bytes{kind=\"stored\"}",
        "etcd_dr_snapshots_total{result=\"success\"}",
        "etcd_dr_snapshots_total{result=\"failure\"}",
        "etcd_dr_snapshots_total{result=\"unchanged\"}",
        "etcd_dr_snapshots_total{result=\"busy\"}",
        "etcd_dr_uploaded_bytes_total",
        "etcd_dr_etcd_revision",
        "etcd_dr_snapshots_stored",
        "etcd_dr_verify_failures_total",
        "etcd_dr_verified_snapshots_total",
        "etcd_dr_snapshot_in_progress",
        "etcd_dr_store_reachable",
        "etcd_dr_snapshot_interval_seconds",
        "etcd_dr_failing",
        "etcd_dr_fenced",
        "etcd_dr_promotion_state",
        "etcd_dr_promotion_duration_seconds",
        "etcd_dr_snapshots_refused",
        "etcd_dr_unsigned_snapshots_allowed",
        "etcd_dr_unreadable_manifests",
        "etcd_dr_snapshot_clock_skew_seconds",
        "etcd_dr_upload_leftovers_total{result=\"removed\"}",
        "etcd_dr_upload_leftovers_total{result=\"failed\"}",
        "etcd_dr_replication_enabled",
        "etcd_dr_replication_captured_revision",
        "etcd_dr_replication_stored_revision",
        "etcd_dr_replication_restorable_revision",
        "etcd_dr_replication_segments_total",
        "etcd_dr_replication_segment_bytes_total",
        "etcd_dr_replication_heartbeats_refused_total",
        "etcd_dr_replication_generation_breaks_total{reason=\"compacted\"}",
        "etcd_dr_replication_generation_breaks_total{reason=\"gap\"}",
        "etcd_dr_replication_generation_breaks_total{reason=\"regression\"}",
        "etcd_dr_replication_generation_breaks_total{reason=\"cluster_changed\"}",
        "etcd_dr_replication_generation_breaks_total{reason=\"watch_cancelled\"}",
    ] {
        assert_eq!(value(&text, name), 0.0, "{name}");
    }
    let build = format!(
        "etcd_dr_build_info{{role=\"primary\",version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&text, &build), 1.0);
    assert_eq!(metrics.family_names().len(), 31);
}

#[test]
fn values_move_with_events_and_status() {
    let metrics = Metrics::new(Role::Secondary).unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    let snapshot = SnapshotSummary {
        id: SnapshotId::new(start, 77),
        revision: 77,
        raw_bytes: 4096,
        stored_bytes: 1024,
        duration_seconds: 3.0,
        created_at: start,
        completed_at: start + chrono::Duration::seconds(3),
        replication_generation: None,
    };
    metrics.snapshot_taken(&snapshot);
    metrics.snapshot_failed();
    metrics.add_uploaded_bytes(1024);
    metrics.add_uploaded_bytes(10);
    metrics.verify_failed();
    metrics.set_snapshots_stored(4);
    metrics.upload_leftovers_swept(2, 1);
    metrics.upload_leftovers_swept(1, 0);
    metrics.set_expected_interval(Duration::from_secs(900));
    let mut status = DaemonStatus::starting(Role::Secondary, "prod", "local", start);
    status.newest_verified = Some(snapshot.clone());
    status.store.reachable = Some(true);
    metrics.observe_status(&status, start + chrono::Duration::seconds(42));

    let text = metrics.encode().unwrap();
    assert_eq!(value(&text, "etcd_dr_replication_lag_seconds"), 42.0);
    assert_eq!(
        value(&text, "etcd_dr_last_success_timestamp_seconds"),
        (start.timestamp() + 3) as f64
    );
    assert_eq!(value(&text, "etcd_dr_snapshot_duration_seconds_count"), 1.0);
    assert_eq!(value(&text, "etcd_dr_snapshot_duration_seconds_sum"), 3.0);
    assert_eq!(
        value(&text, "etcd_dr_snapshot_duration_seconds_bucket{le=\"5\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "etcd_dr_snapshot_size_bytes{kind=\"raw\"}"),
        4096.0
    );
    assert_eq!(
        value(&text, "etcd_dr_snapshot_size_bytes{kind=\"stored\"}"),
        1024.0
    );
    assert_eq!(
        value(&text, "etcd_dr_snapshots_total{result=\"success\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "etcd_dr_snapshots_total{result=\"failure\"}"),
        1.0
    );
    assert_eq!(value(&text, "etcd_dr_uploaded_bytes_total"), 1034.0);
    assert_eq!(value(&text, "etcd_dr_etcd_revision"), 77.0);
    assert_eq!(value(&text, "etcd_dr_snapshots_stored"), 4.0);
    assert_eq!(value(&text, "etcd_dr_verify_failures_total"), 1.0);
    assert_eq!(
        value(&text, "etcd_dr_upload_leftovers_total{result=\"removed\"}"),
        3.0
    );
    assert_eq!(
        value(&text, "etcd_dr_upload_leftovers_total{result=\"failed\"}"),
        1.0
    );
    assert_eq!(value(&text, "etcd_dr_store_reachable"), 1.0);
    assert_eq!(value(&text, "etcd_dr_snapshot_interval_seconds"), 900.0);
}

#[test]
fn replication_values_follow_the_status() {
    let metrics = Metrics::new(Role::Primary).unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    let mut status = DaemonStatus::starting(Role::Primary, "prod", "local", start);
    status.replication = Some(crate::ReplicationStatus {
        captured_revision: 120,
        stored_revision: 110,
        restorable_revision: Some(110),
        complete_as_of: Some(start - chrono::Duration::milliseconds(2500)),
        segments: 7,
        segment_bytes: 4096,
        heartbeats_refused: 2,
        ..crate::ReplicationStatus::default()
    });
    metrics.set_replication_enabled(true);
    metrics.replication_generation_break("compacted");
    metrics.observe_status(&status, start);
    metrics.observe_status(&status, start);
    let text = metrics.encode().unwrap();
    assert_eq!(value(&text, "etcd_dr_replication_lag_seconds"), 2.5);
    assert_eq!(value(&text, "etcd_dr_replication_enabled"), 1.0);
    assert_eq!(value(&text, "etcd_dr_replication_captured_revision"), 120.0);
    assert_eq!(value(&text, "etcd_dr_replication_stored_revision"), 110.0);
    assert_eq!(
        value(&text, "etcd_dr_replication_restorable_revision"),
        110.0
    );
    assert_eq!(value(&text, "etcd_dr_replication_segments_total"), 7.0);
    assert_eq!(
        value(&text, "etcd_dr_replication_segment_bytes_total"),
        4096.0
    );
    assert_eq!(
        value(&text, "etcd_dr_replication_heartbeats_refused_total"),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "etcd_dr_replication_generation_breaks_total{reason=\"compacted\"}"
        ),
        1.0
    );
}
