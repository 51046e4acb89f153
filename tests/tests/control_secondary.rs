//! The secondary daemon (`etcd-dr run` with `role = "secondary"`): it verifies and pre-stages
//! every new snapshot, its lag follows the primary, a corrupt snapshot is counted once, readiness
//! follows the store, and a staged copy is reused only while it matches.

use std::time::Duration;

use etcd_dr_e2e::daemon::{assert_error, primary_on_s3, stop, write_token, Api, API_TOKEN};
use etcd_dr_e2e::{
    http_request, wait_for, EtcdCluster, EtcdDr, EtcdOptions, FillSpec, KillOnDrop, MotoServer,
    StoreTarget,
};
use serde_json::Value;

const BUCKET: &str = "dr-backups";

/// A secondary's config (no `[etcd]`): quick polls, pre-staging in its scratch directory.
fn secondary(s3: &MotoServer, api: &Api, extra_http: &str) -> EtcdDr {
    let dr = EtcdDr::new("");
    let token = write_token(dr.dir());
    let config = format!(
        "role = \"secondary\"\ncluster = \"prod\"\n{}\n{}\n[secondary]\npoll_interval = \"300ms\"\nexpected_interval = \"10s\"\nprestage_dir = \"{}\"\n",
        s3.config_section(BUCKET, "dr"),
        api.section(&token, extra_http),
        dr.dir().join("prestage").display()
    );
    std::fs::write(dr.config_path(), config).unwrap();
    dr
}

fn staged_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn the_secondary_verifies_prestages_and_its_lag_follows_the_primary() {
    let s3 = MotoServer::with_bucket(BUCKET);
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::objects(300));
    let primary_api = Api::on_free_port();
    let primary_dr = primary_on_s3(&etcd, &etcd.endpoints(), &s3, BUCKET, &primary_api);
    let primary_child = KillOnDrop::new(primary_dr.spawn(&["run"], "primary.log"));
    primary_api.wait_ready();
    let first = wait_for(
        "the primary's first snapshot",
        Duration::from_secs(30),
        || {
            primary_api.status()["last_snapshot"]["id"]
                .as_str()
                .map(String::from)
        },
    );

    let api = Api::on_free_port();
    let dr = secondary(&s3, &api, "");
    let child = KillOnDrop::new(dr.spawn(&["run"], "secondary.log"));
    api.wait_ready();
    let status = wait_for(
        "the secondary to verify it",
        Duration::from_secs(20),
        || {
            let status = api.status();
            (status["newest_verified"]["id"] == first.as_str()).then_some(status)
        },
    );
    assert_eq!(status["role"], "secondary");
    assert_eq!(status["schedule"]["description"], "poll every 300ms");
    assert!(status["replication_lag_seconds"].as_f64().unwrap() < 30.0);
    let prestage = dr.dir().join("prestage");
    let manifest = api.json(&format!("/v1/snapshots/{first}"));
    assert_eq!(staged_files(&prestage), [format!("{first}.db")]);
    let staged = std::fs::read(prestage.join(format!("{first}.db"))).unwrap();
    assert_eq!(
        staged.len() as u64,
        manifest["raw"]["size"].as_u64().unwrap()
    );
    assert_eq!(status["secondary"]["prestaged"]["id"], first);
    let metrics = api.metrics();
    assert_eq!(metrics["etcd_dr_verified_snapshots_total"], 1.0);
    assert_eq!(metrics["etcd_dr_verify_failures_total"], 0.0);
    assert_eq!(metrics["etcd_dr_snapshots_total{result=\"success\"}"], 0.0);
    assert_eq!(metrics["etcd_dr_snapshot_interval_seconds"], 10.0);
    assert_eq!(
        metrics[&format!(
            "etcd_dr_build_info{{role=\"secondary\",version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )],
        1.0
    );
    // A secondary takes no snapshots, even with the token.
    assert_error(
        &api.request("POST", "/v1/snapshots", Some(API_TOKEN)),
        409,
        "unsupported",
    );

    // A new snapshot on the primary: verified and staged, the older staged copy removed.
    etcd.put("/registry/namespaces/team-b", b"k8s\0ns");
    let second = primary_api.request("POST", "/v1/snapshots", Some(API_TOKEN));
    assert_eq!(second.status, 202, "{}", second.text());
    let second = second.json()["id"].as_str().unwrap().to_string();
    wait_for(
        "the secondary to verify the second",
        Duration::from_secs(20),
        || (api.status()["secondary"]["prestaged"]["id"] == second.as_str()).then_some(()),
    );
    assert_eq!(staged_files(&prestage), [format!("{second}.db")]);
    assert_eq!(api.metric("etcd_dr_verified_snapshots_total"), 2.0);

    // The primary stops: the secondary's lag keeps growing.
    stop(primary_child, &primary_dr, "primary.log");
    let before = api.metric("etcd_dr_replication_lag_seconds");
    std::thread::sleep(Duration::from_millis(2500));
    let after = api.metric("etcd_dr_replication_lag_seconds");
    assert!(after >= before + 2.0, "lag {before} then {after}");
    assert_eq!(api.status()["newest_verified"]["id"], second);

    // It resumes (something changed meanwhile): its first run lands and the lag falls.
    etcd.put("/registry/namespaces/team-c", b"k8s\0ns");
    let primary_child = KillOnDrop::new(primary_dr.spawn(&["run"], "primary-again.log"));
    let third = wait_for(
        "the resumed primary's snapshot",
        Duration::from_secs(30),
        || {
            let status = api.status();
            let id = status["newest_verified"]["id"].as_str()?.to_string();
            (id != second).then_some(id)
        },
    );
    let lag = api.metric("etcd_dr_replication_lag_seconds");
    assert!(lag < after, "lag {lag} did not fall below {after}");
    assert!(
        third.ends_with(&format!("-r{}", etcd.revision())),
        "{third}"
    );
    assert_eq!(api.json("/v1/snapshots")["count"], 3);

    stop(primary_child, &primary_dr, "primary-again.log");
    stop(child, &dr, "secondary.log");
}

#[test]
fn a_corrupt_snapshot_is_counted_and_the_lag_stays_on_the_good_one() {
    let s3 = MotoServer::with_bucket(BUCKET);
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::objects(100));
    let cli = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::S3 {
            server: &s3,
            bucket: BUCKET,
            prefix: "dr",
        },
        "",
    );
    let good = cli.snapshot_json(&[])["id"].as_str().unwrap().to_string();
    etcd.put("/registry/namespaces/team-a", b"k8s\0ns");
    let bad_manifest = cli.snapshot_json(&[]);
    let bad = bad_manifest["id"].as_str().unwrap().to_string();
    // Replace the newest one's data with other bytes; its manifest stays.
    let data = bad_manifest["stored"]["name"].as_str().unwrap();
    let key = format!("/{BUCKET}/dr/prod/snapshots/{bad}/{data}");
    let put = http_request(s3.addr(), "PUT", &key, &[], b"not the snapshot").unwrap();
    assert_eq!(put.status, 200, "{}", put.text());

    let api = Api::on_free_port();
    let dr = secondary(&s3, &api, "");
    let child = KillOnDrop::new(dr.spawn(&["run"], "secondary.log"));
    api.wait_ready();
    let status = wait_for("the good one verified", Duration::from_secs(20), || {
        let status = api.status();
        (status["newest_verified"]["id"] == good.as_str()).then_some(status)
    });
    assert_eq!(status["secondary"]["verify_failures"], 1);
    assert!(
        status["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&bad)),
        "{status}"
    );
    let metrics = api.metrics();
    assert_eq!(metrics["etcd_dr_verify_failures_total"], 1.0);
    assert_eq!(metrics["etcd_dr_verified_snapshots_total"], 1.0);
    // Only the good one is staged.
    assert_eq!(
        staged_files(&dr.dir().join("prestage")),
        [format!("{good}.db")]
    );
    // The bad one is not retried at every poll.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(api.metric("etcd_dr_verify_failures_total"), 1.0);
    stop(child, &dr, "secondary.log");
}

#[test]
fn readiness_follows_the_store_away_and_back() {
    let mut s3 = MotoServer::with_bucket(BUCKET);
    let api = Api::on_free_port();
    let dr = secondary(&s3, &api, "readiness_grace = \"1s\"");
    let child = KillOnDrop::new(dr.spawn(&["run"], "secondary.log"));
    api.wait_ready();

    // Every metric is there from the start, at zero (nothing is stored yet).
    let metrics = api.metrics();
    for name in [
        "etcd_dr_snapshots_stored",
        "etcd_dr_verified_snapshots_total",
        "etcd_dr_verify_failures_total",
        "etcd_dr_uploaded_bytes_total",
        "etcd_dr_etcd_revision",
        "etcd_dr_last_success_timestamp_seconds",
        "etcd_dr_snapshot_duration_seconds_count",
        "etcd_dr_snapshot_size_bytes{kind=\"raw\"}",
        "etcd_dr_snapshot_size_bytes{kind=\"stored\"}",
        "etcd_dr_snapshots_total{result=\"success\"}",
        "etcd_dr_snapshots_total{result=\"failure\"}",
        "etcd_dr_snapshot_in_progress",
    ] {
        assert_eq!(metrics.get(name), Some(&0.0), "{name}");
    }
    wait_for("ready", Duration::from_secs(10), || {
        (api.get("/readyz").status == 200).then_some(())
    });
    assert_eq!(api.metric("etcd_dr_store_reachable"), 1.0);

    s3.kill();
    let unready = wait_for("unready", Duration::from_secs(15), || {
        let response = api.get("/readyz");
        (response.status == 503).then_some(response)
    });
    assert_error(&unready, 503, "not_ready");
    assert!(
        unready.json()["detail"]
            .as_str()
            .unwrap()
            .contains("store:"),
        "{}",
        unready.text()
    );
    assert_eq!(api.metric("etcd_dr_store_reachable"), 0.0);
    // Polls fail too; beyond the 1 s grace the cycle check fails as well.
    let both = wait_for("the cycle check to fail", Duration::from_secs(15), || {
        let body = api.get("/readyz").json();
        let failed: Vec<String> = body["checks"]
            .as_array()?
            .iter()
            .filter(|c| c["ok"] == false)
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        (failed == ["store", "cycle"]).then_some(body)
    });
    assert_eq!(both["ready"], false);
    assert_eq!(api.metric("etcd_dr_failing"), 1.0);
    // Alive all along.
    assert_eq!(api.get("/healthz").status, 200);

    s3.restart();
    s3.create_bucket(BUCKET);
    wait_for("ready again", Duration::from_secs(15), || {
        (api.get("/readyz").status == 200).then_some(())
    });
    assert_eq!(api.metric("etcd_dr_store_reachable"), 1.0);
    assert_eq!(api.metric("etcd_dr_failing"), 0.0);
    stop(child, &dr, "secondary.log");
}

#[test]
fn a_restarted_secondary_reuses_its_staged_copy_only_if_it_still_matches() {
    use std::os::unix::fs::MetadataExt;

    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::objects(100));
    let store = tempfile::tempdir().unwrap();
    let cli = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        "",
    );
    let id = cli.snapshot_json(&[])["id"].as_str().unwrap().to_string();

    let api = Api::on_free_port();
    let dr = EtcdDr::new("");
    let token = write_token(dr.dir());
    let prestage = dr.dir().join("prestage");
    std::fs::write(
        dr.config_path(),
        format!(
            "role = \"secondary\"\ncluster = \"prod\"\n[store]\ntype = \"local\"\npath = \"{}\"\n{}[secondary]\npoll_interval = \"300ms\"\nprestage_dir = \"{}\"\n",
            store.path().display(),
            api.section(&token, ""),
            prestage.display()
        ),
    )
    .unwrap();
    let staged = prestage.join(format!("{id}.db"));
    let run_until_verified = |log: &str| -> Value {
        let child = KillOnDrop::new(dr.spawn(&["run"], log));
        api.wait_ready();
        let status = wait_for("the snapshot verified", Duration::from_secs(20), || {
            let status = api.status();
            (status["secondary"]["verified_count"] == 1).then_some(status)
        });
        stop(child, &dr, log);
        status
    };

    let status = run_until_verified("first.log");
    assert_eq!(status["secondary"]["prestaged"]["id"], id);
    let inode = std::fs::metadata(&staged).unwrap().ino();
    let mode = std::fs::metadata(&staged).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600, "the staged copy holds every Secret");

    // Restarted: the copy matches, so it is kept as it is (not written again).
    let status = run_until_verified("second.log");
    assert_eq!(status["secondary"]["prestaged"]["id"], id, "{status}");
    assert!(status["last_error"].is_null(), "{status}");
    assert_eq!(std::fs::metadata(&staged).unwrap().ino(), inode);

    // Changed on disk: never used, never replaced; the store's copy is still verified.
    let mut bytes = std::fs::read(&staged).unwrap();
    bytes[..16].copy_from_slice(b"tampered on disk");
    std::fs::write(&staged, &bytes).unwrap();
    let status = run_until_verified("third.log");
    assert!(status["secondary"]["prestaged"].is_null(), "{status}");
    assert!(
        status["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("differs")),
        "{status}"
    );
    assert_eq!(status["newest_verified"]["id"], id);
    assert_eq!(std::fs::read(&staged).unwrap(), bytes);
}
