//! Faults that must never corrupt, hide, strand or delete the snapshot a restore needs: two
//! producers at once, an etcd member that accepts the snapshot call and then sends nothing,
//! producer clocks off, corrupt or unreadable newest snapshots, and the leftovers of
//! interrupted uploads (pending multipart uploads, local staging files).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use etcd_dr_e2e::{
    free_port, http_request, terminate, wait_for, EtcdCluster, EtcdDr, EtcdOptions, FillSpec,
    KillOnDrop, MotoServer, ProxyMode, StoreTarget, TcpProxy,
};

const TOKEN: &str = "reliability-test-token";

/// The `[http]` section of a daemon on `addr` whose API token is [`TOKEN`].
fn http_section(dr_dir: &std::path::Path, addr: SocketAddr, extra: &str) -> String {
    let token_file = dr_dir.join("api-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    format!(
        "[http]\nlisten = \"{addr}\"\ntoken_file = \"{}\"\n{extra}\n",
        token_file.display()
    )
}

fn get_json(addr: SocketAddr, path: &str) -> Option<serde_json::Value> {
    let response = http_request(addr, "GET", path, &[], b"").ok()?;
    (response.status == 200).then(|| response.json())
}

/// `name{labels}` → value of the daemon's `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> f64 {
    let response = http_request(addr, "GET", "/metrics", &[], b"").unwrap();
    response
        .text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (sample, value) = l.rsplit_once(' ')?;
            (sample == name).then(|| value.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{name} not exported"))
}

/// Is a CLI or API answer a clean refusal because another producer is at work?
fn is_clean_refusal(message: &str) -> bool {
    // "another snapshot of cluster prod is in progress" (the CLI, exit 75) or the API's words.
    (message.contains("another snapshot") && message.contains("in progress"))
        || (message.contains("already exists") && message.contains("nothing was replaced"))
}

/// The daemon's trigger and a CLI run, both at once, several times at the same etcd revision:
/// each either commits or refuses without writing, and every committed snapshot verifies.
fn two_producers_race(store: &StoreTarget<'_>, keys_left: impl Fn() -> Vec<String>) {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::objects(300));
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let scratch = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        store,
        &format!(
            "[schedule]\ninterval = \"24h\"\n{}",
            http_section(scratch.path(), addr, "")
        ),
    );
    let daemon = KillOnDrop::new(dr.spawn(&["run"], "daemon.log"));
    wait_for("the daemon's API", Duration::from_secs(20), || {
        get_json(addr, "/v1/status")
    });
    // The daemon's first scheduled run happens at start; let it finish.
    wait_for("the first run to end", Duration::from_secs(30), || {
        get_json(addr, "/v1/status")
            .filter(|s| s["in_flight"].is_null() && !dr.list_json().is_empty())
    });

    for round in 0..4 {
        let cli = KillOnDrop::new(dr.spawn(&["snapshot", "--json"], &format!("cli-{round}.log")));
        let authorization = format!("Bearer {TOKEN}");
        let api = http_request(
            addr,
            "POST",
            "/v1/snapshots",
            &[("Authorization", authorization.as_str())],
            b"",
        )
        .unwrap();
        let cli = cli.into_inner().wait_with_output().unwrap();
        let cli_log = dr.log(&format!("cli-{round}.log"));
        assert!(
            cli.status.success() || is_clean_refusal(&cli_log),
            "round {round}: CLI failed: {cli_log}"
        );
        // 409: the daemon's own previous run (retention after it) still held its lock.
        assert!(
            api.status == 202 || api.status == 409 || is_clean_refusal(&api.text()),
            "round {round}: API answered {}: {}",
            api.status,
            api.text()
        );
        wait_for("the daemon's run to end", Duration::from_secs(30), || {
            get_json(addr, "/v1/status").filter(|s| s["in_flight"].is_null())
        });
    }
    // The daemon's runs either committed or stood back: none failed.
    assert_eq!(
        metric(addr, "etcd_dr_snapshots_total{result=\"failure\"}"),
        0.0,
        "{}",
        dr.log("daemon.log")
    );
    assert!(get_json(addr, "/v1/status").unwrap()["failing_since"].is_null());

    let snapshots = dr.list_json();
    assert!(!snapshots.is_empty());
    for snapshot in &snapshots {
        dr.run_ok(&["verify", snapshot["id"].as_str().unwrap()]);
    }
    dr.run_ok(&["verify", "latest"]);
    // No lease left behind, and every stored object is one a manifest names.
    let keys = keys_left();
    assert!(
        !keys.iter().any(|k| k.ends_with("producer-lease.json")),
        "{keys:?}"
    );
    let named: Vec<String> = snapshots
        .iter()
        .flat_map(|m| {
            let id = m["id"].as_str().unwrap().to_string();
            [
                format!("prod/snapshots/{id}/manifest.json"),
                format!(
                    "prod/snapshots/{id}/{}",
                    m["stored"]["name"].as_str().unwrap()
                ),
            ]
        })
        .collect();
    for key in &keys {
        assert!(
            named.iter().any(|n| key.ends_with(n.as_str())),
            "{key} is named by no manifest: {keys:?}"
        );
    }
    terminate(daemon.child());
    let status = daemon.into_inner().wait_with_output().unwrap().status;
    assert!(status.success(), "{}", dr.log("daemon.log"));
}

#[test]
fn a_daemon_trigger_and_a_cli_run_at_once_never_corrupt_a_snapshot_on_s3() {
    let s3 = MotoServer::with_bucket("race");
    let store = StoreTarget::S3 {
        server: &s3,
        bucket: "race",
        prefix: "dr",
    };
    two_producers_race(&store, || s3.keys("race", "dr/"));
    assert!(s3.pending_multipart_uploads("race").is_empty());
}

#[test]
fn a_daemon_trigger_and_a_cli_run_at_once_never_corrupt_a_snapshot_on_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreTarget::Local(dir.path());
    two_producers_race(&store, || etcd_dr_e2e::files::files_under(dir.path()));
}

#[test]
fn a_member_that_accepts_the_snapshot_call_and_sends_nothing_is_failed_over() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::objects(200));
    let proxy = TcpProxy::start(etcd.client_addr(0));
    // The survey's connection works; the snapshot's gets no answer.
    proxy.set_mode(ProxyMode::SilentAnswersAfter(1));
    let store = tempfile::tempdir().unwrap();
    let endpoints = vec![format!("http://{}", proxy.addr()), etcd.endpoint(0)];
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&endpoints),
        &StoreTarget::Local(store.path()),
        "",
    );
    let started = Instant::now();
    let child = KillOnDrop::new(dr.spawn(&["snapshot", "--json"], "snapshot.log"));
    let output = child.into_inner().wait_with_output().unwrap();
    let log = dr.log("snapshot.log");
    assert!(output.status.success(), "{log}");
    // stall_timeout is 5s in the test config.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(log.contains("stalled"), "{log}");
    let manifest: serde_json::Value = serde_json::from_str(&dr.stdout("snapshot.log")).unwrap();
    assert_eq!(manifest["etcd"]["source_endpoint"], etcd.endpoint(0));
    dr.run_ok(&["verify", "latest"]);
}

#[test]
fn a_daemon_whose_only_member_never_answers_counts_failures_and_turns_unready() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::objects(50));
    let proxy = TcpProxy::start(etcd.client_addr(0));
    proxy.set_mode(ProxyMode::SilentAnswersAfter(1));
    let store = tempfile::tempdir().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let scratch = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&[format!("http://{}", proxy.addr())]),
        &StoreTarget::Local(store.path()),
        &format!(
            "[schedule]\ninterval = \"10s\"\n{}",
            http_section(scratch.path(), addr, "readiness_grace = \"1s\"")
        ),
    );
    let daemon = KillOnDrop::new(dr.spawn(&["run"], "daemon.log"));
    let started = Instant::now();
    let status = wait_for("a failed snapshot", Duration::from_secs(30), || {
        get_json(addr, "/v1/status").filter(|s| !s["failing_since"].is_null())
    });
    // Failed within the stall timeout (5s) plus set-up, not hanging.
    assert!(started.elapsed() < Duration::from_secs(20));
    let message = status["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("stalled"), "{message}");
    assert_eq!(
        metric(addr, "etcd_dr_snapshots_total{result=\"failure\"}"),
        1.0
    );
    assert_eq!(metric(addr, "etcd_dr_failing"), 1.0);
    // The failed run let go (the next scheduled run may already be under way on a slow
    // machine, so the gauge is waited for, not read once).
    wait_for("the failed run to let go", Duration::from_secs(10), || {
        (metric(addr, "etcd_dr_snapshot_in_progress") == 0.0).then_some(())
    });
    wait_for("/readyz to turn unready", Duration::from_secs(10), || {
        let response = http_request(addr, "GET", "/readyz", &[], b"").ok()?;
        (response.status == 503).then_some(())
    });
    assert!(dr.list_json().is_empty());
    terminate(daemon.child());
    let _ = daemon.into_inner().wait_with_output();
}

#[test]
fn retention_keeps_a_good_snapshot_when_the_newest_is_corrupt() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let store = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        "[retention]\nkeep_last = 1\n",
    );
    let mut manifests = Vec::new();
    for i in 0..3 {
        etcd.put(&format!("/registry/configmaps/default/c{i}"), b"x");
        manifests.push(dr.snapshot_json(&[]));
    }
    let id = |m: &serde_json::Value| m["id"].as_str().unwrap().to_string();
    let newest = &manifests[2];
    let data = store
        .path()
        .join("prod/snapshots")
        .join(id(newest))
        .join(newest["stored"]["name"].as_str().unwrap());
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap();

    let output = dr.run(&["prune"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("does not match its manifest"), "{stderr}");
    let left: Vec<String> = dr.list_json().iter().map(id).collect();
    assert_eq!(left, vec![id(&manifests[1]), id(&manifests[2])]);
    dr.run_ok(&["verify", &id(&manifests[1])]);
}

/// Moves a committed snapshot (local store) to where a producer whose clock is `offset` off
/// would have put it, rewriting its manifest as that producer would have written it now.
fn as_if_taken_with_a_clock_off_by(
    store: &std::path::Path,
    manifest: &serde_json::Value,
    offset: chrono::Duration,
) -> String {
    let old_id = manifest["id"].as_str().unwrap();
    let shift = |field: &str| {
        let at: chrono::DateTime<chrono::Utc> = manifest[field].as_str().unwrap().parse().unwrap();
        (at + offset).to_rfc3339()
    };
    let revision = manifest["etcd"]["revision"].as_i64().unwrap();
    let created: chrono::DateTime<chrono::Utc> = shift("created_at").parse().unwrap();
    let new_id = format!("{}-r{revision}", created.format("%Y%m%dT%H%M%SZ"));
    let snapshots = store.join("prod/snapshots");
    std::fs::rename(snapshots.join(old_id), snapshots.join(&new_id)).unwrap();
    let mut moved = manifest.clone();
    moved["id"] = new_id.clone().into();
    moved["created_at"] = shift("created_at").into();
    moved["completed_at"] = shift("completed_at").into();
    // That producer signs what it wrote.
    let mut moved: etcd_dr_core::SnapshotManifest = serde_json::from_value(moved).unwrap();
    etcd_dr_e2e::sign_with_test_key(&mut moved);
    std::fs::write(
        snapshots.join(&new_id).join("manifest.json"),
        serde_json::to_vec_pretty(&moved).unwrap(),
    )
    .unwrap();
    new_id
}

#[test]
fn a_producer_clock_days_off_breaks_neither_latest_nor_retention() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let store = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        "[retention]\nmax_age = \"1d\"\n",
    );
    etcd.put("/registry/configmaps/default/a", b"1");
    let ahead = as_if_taken_with_a_clock_off_by(
        store.path(),
        &dr.snapshot_json(&[]),
        chrono::Duration::days(30),
    );
    etcd.put("/registry/configmaps/default/b", b"2");
    let behind = as_if_taken_with_a_clock_off_by(
        store.path(),
        &dr.snapshot_json(&[]),
        chrono::Duration::days(-2),
    );
    etcd.put("/registry/configmaps/default/c", b"3");
    let honest = dr.snapshot_json(&[])["id"].as_str().unwrap().to_string();

    // Latest is the highest revision, not the id 30 days in the future.
    let verified = dr.run_ok(&["verify", "latest"]);
    assert!(verified.contains(&honest), "{verified}");
    // Nothing is older than a day by the store's clock: retention deletes nothing, though
    // one snapshot says it was created two days ago.
    dr.run_ok(&["prune"]);
    let mut left: Vec<String> = dr
        .list_json()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    left.sort();
    let mut expected = vec![ahead, behind, honest];
    expected.sort();
    assert_eq!(left, expected);
}

#[test]
fn an_unreadable_newest_manifest_is_never_skipped_by_latest() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let store = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        "",
    );
    dr.run_ok(&["snapshot"]);
    etcd.put("/registry/configmaps/default/next", b"x");
    let newest = dr.snapshot_json(&[])["id"].as_str().unwrap().to_string();
    std::fs::write(
        store
            .path()
            .join("prod/snapshots")
            .join(&newest)
            .join("manifest.json"),
        b"{ not json",
    )
    .unwrap();
    let error = dr.run_err(&["verify", "latest"]);
    assert!(error.contains(&newest), "{error}");
    assert!(error.contains("unreadable"), "{error}");
    let output = dr.dir().join("out.db");
    let error = dr.run_err(&["fetch", "latest", "--output", output.to_str().unwrap()]);
    assert!(error.contains(&newest), "{error}");
}

/// `prune` aborts the pending multipart uploads under its own cluster's folder older than
/// `retention.incomplete_grace` (moto dates every upload 2010-11-10; the grace against the
/// store's clock is proven in transport's unit tests) and leaves every other upload alone:
/// another cluster's, another prefix's.
#[test]
fn prune_aborts_the_clusters_pending_uploads_and_no_one_elses() {
    let s3 = MotoServer::with_bucket("sweep");
    let ours = [
        "dr/prod/snapshots/20261125T120000Z-r5/0123456789abcdef/etcd.db.zst",
        "dr/prod/segments/0000000000000001/0000000000000001-0000000000000009.seg.zst",
    ];
    let theirs = [
        "dr/prod2/snapshots/20261125T120000Z-r5/0123456789abcdef/etcd.db.zst",
        "other/prod/snapshots/20261125T120000Z-r5/0123456789abcdef/etcd.db.zst",
        "prod/x",
    ];
    for key in ours.iter().chain(&theirs) {
        let response = s3.request("POST", &format!("/sweep/{key}?uploads"));
        assert_eq!(response.status, 200, "start upload: {}", response.text());
    }
    let pending = || {
        let mut keys = s3.pending_multipart_uploads("sweep");
        keys.sort();
        keys
    };
    let dr = EtcdDr::with_sections(
        "prod",
        "[etcd]\nendpoints = [\"http://127.0.0.1:1\"]\n",
        &StoreTarget::S3 {
            server: &s3,
            bucket: "sweep",
            prefix: "dr",
        },
        "[retention]\nincomplete_grace = \"10m\"\n",
    );

    dr.run_ok(&["prune", "--dry-run"]);
    assert_eq!(pending().len(), 5, "a dry run aborted uploads");

    // While another producer holds the lease, its uploads may be in progress: none is aborted.
    // While another producer holds the lease, its uploads may be in progress: none is aborted.
    // (moto refuses unsigned overwrites, so the lease is planted once, expiring soon.)
    let ttl = Duration::from_secs(5);
    let lease = serde_json::json!({
        "token": "0123456789abcdef", "host": "elsewhere", "pid": 1,
        "acquired_at": chrono::Utc::now(), "ttl_seconds": ttl.as_secs(),
    });
    let planted = Instant::now();
    let put = http_request(
        s3.addr(),
        "PUT",
        "/sweep/dr/prod/producer-lease.json",
        &[],
        lease.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(put.status, 200, "{}", put.text());
    let output = dr.run(&["prune"]);
    assert!(planted.elapsed() < ttl, "too slow to test a held lease");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("pending uploads not swept"), "{stderr}");
    assert_eq!(pending().len(), 5, "uploads aborted under another's lease");
    // That producer died: its lease expires, and the sweep takes it over.
    std::thread::sleep((ttl + Duration::from_secs(2)).saturating_sub(planted.elapsed()));

    let out = dr.run_ok(&["prune"]);
    for key in ours {
        assert!(
            out.contains(&format!("removed upload leftover {key}")),
            "{out}"
        );
    }
    let mut expected: Vec<String> = theirs.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(pending(), expected);
    assert!(
        s3.keys("sweep", "dr/prod/").is_empty(),
        "the sweep left its lease"
    );
    let out = dr.run_ok(&["prune"]);
    assert!(!out.contains("removed upload leftover"), "{out}");
    assert_eq!(pending(), expected);
}

/// A local store's staging files (`<name>#<n>`, left by a SIGKILL mid-write) anywhere under
/// the cluster's folder go once older than the grace: beside segments, snapshots and the
/// cluster's own objects; young ones and other clusters' stay.
#[test]
fn prune_removes_old_staging_files_anywhere_under_the_clusters_folder() {
    let store = tempfile::tempdir().unwrap();
    let old = [
        "prod/segments/0000000000000001/0000000000000001-0000000000000009.seg.zst#3",
        "prod/snapshots/20261125T120000Z-r5/0123456789abcdef/etcd.db.zst#12",
        "prod/producer-lease.json#4",
    ];
    let kept = [
        // Young: may be an upload in progress.
        "prod/segments/0000000000000001/0000000000000010-0000000000000019.seg.zst#5",
        // Another cluster's.
        "prod2/segments/0000000000000001/0000000000000001-0000000000000009.seg.zst#3",
        // Not a staging name.
        "prod/segments/0000000000000001/notes#draft",
    ];
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for name in old.iter().chain(&kept) {
        let path = store.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"partial").unwrap();
        if !name.contains("#5") {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(an_hour_ago)
                .unwrap();
        }
    }
    let dr = EtcdDr::with_sections(
        "prod",
        "[etcd]\nendpoints = [\"http://127.0.0.1:1\"]\n",
        &StoreTarget::Local(store.path()),
        "[retention]\nincomplete_grace = \"10m\"\n",
    );
    let out = dr.run_ok(&["prune"]);
    for name in old {
        assert!(!store.path().join(name).exists(), "{name} stayed: {out}");
        assert!(out.contains(name), "{out}");
    }
    for name in kept {
        assert!(
            store.path().join(name).exists(),
            "{name} was removed: {out}"
        );
    }
}

/// The primary daemon's retention pass (after each snapshot) aborts its cluster's old pending
/// uploads too, and counts them.
#[test]
fn the_primary_daemon_aborts_its_clusters_pending_uploads_and_counts_them() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::objects(50));
    let s3 = MotoServer::with_bucket("daemon-sweep");
    let (ours, theirs) = (
        "dr/prod/snapshots/20261125T120000Z-r5/0123456789abcdef/etcd.db.zst",
        "dr/prod2/snapshots/20261125T120000Z-r5/0123456789abcdef/etcd.db.zst",
    );
    for key in [ours, theirs] {
        let response = s3.request("POST", &format!("/daemon-sweep/{key}?uploads"));
        assert_eq!(response.status, 200, "start upload: {}", response.text());
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let scratch = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::S3 {
            server: &s3,
            bucket: "daemon-sweep",
            prefix: "dr",
        },
        &format!(
            "[schedule]\ninterval = \"10s\"\n{}",
            http_section(scratch.path(), addr, "")
        ),
    );
    let daemon = KillOnDrop::new(dr.spawn(&["run"], "daemon.log"));
    wait_for(
        "the retention pass's sweep",
        Duration::from_secs(60),
        || {
            get_json(addr, "/v1/status")?;
            (metric(addr, "etcd_dr_upload_leftovers_total{result=\"removed\"}") >= 1.0)
                .then_some(())
        },
    );
    assert_eq!(
        metric(addr, "etcd_dr_upload_leftovers_total{result=\"failed\"}"),
        0.0
    );
    assert_eq!(s3.pending_multipart_uploads("daemon-sweep"), [theirs]);
    terminate(daemon.child());
    let _ = daemon.into_inner().wait_with_output();
    assert!(!dr.list_json().is_empty(), "{}", dr.log("daemon.log"));
}
