//! The primary daemon (`etcd-dr run`) and its control plane: every HTTP endpoint, the token,
//! a triggered snapshot and the 409 naming the run while one runs (the daemon's or a CLI's),
//! the CLI refused by the producer lease, metrics that agree with the manifests,
//! systemd notifications, and start-up problems named by field.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etcd_dr_e2e::daemon::{assert_error, primary_on_s3, stop, write_token, Api, API_TOKEN};
use etcd_dr_e2e::{
    terminate, wait_for, EtcdCluster, EtcdDr, EtcdOptions, FillSpec, KillOnDrop, MotoServer,
    TcpProxy,
};

const BUCKET: &str = "dr-backups";

#[test]
fn the_primary_api_reports_triggers_and_counts_snapshots() {
    let s3 = MotoServer::with_bucket(BUCKET);
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::total_bytes(3 << 20, 4096));
    // Through a proxy, so that a snapshot can be slowed down enough to be seen running.
    let proxy = TcpProxy::start(etcd.client_addr(0));
    let api = Api::on_free_port();
    let dr = primary_on_s3(
        &etcd,
        &[format!("http://{}", proxy.addr())],
        &s3,
        BUCKET,
        &api,
    );
    let child = KillOnDrop::new(dr.spawn(&["run"], "primary.log"));
    api.wait_ready();

    // The schedule's first run starts at once; its retention is part of the run.
    let first = wait_for(
        "the first scheduled snapshot and its retention",
        Duration::from_secs(30),
        || {
            let status = api.status();
            let id = status["last_snapshot"]["id"].as_str().map(String::from);
            id.filter(|_| status["in_flight"].is_null())
        },
    );
    assert_eq!(api.get("/healthz").json()["alive"], true);
    let ready = api.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["ready"], true);

    let status = api.status();
    assert_eq!(status["role"], "primary");
    assert_eq!(status["cluster"], "prod");
    assert_eq!(status["schedule"]["description"], "every 1h");
    assert!(status["schedule"]["next_run"].is_string(), "{status}");
    assert_eq!(status["last_snapshot"]["revision"], etcd.revision());
    assert_eq!(status["store"]["reachable"], true);
    assert!(status["in_flight"].is_null() && status["last_error"].is_null());
    let lag = status["replication_lag_seconds"].as_f64().unwrap();
    assert!((0.0..30.0).contains(&lag), "{lag}");

    let list = api.json("/v1/snapshots");
    assert_eq!(list["count"], 1);
    let manifest = api.json(&format!("/v1/snapshots/{first}"));
    assert_eq!(manifest, list["snapshots"][0]);
    assert_eq!(manifest["id"], first);
    assert_error(
        &api.get("/v1/snapshots/20200101T000000Z-r1"),
        404,
        "not_found",
    );
    assert_error(
        &api.get("/v1/snapshots/latest-please"),
        400,
        "bad_snapshot_id",
    );
    assert_error(&api.get("/v2/anything"), 404, "not_found");
    assert_error(
        &api.request("DELETE", "/v1/snapshots", Some(API_TOKEN)),
        405,
        "method_not_allowed",
    );

    let metrics = api.metrics();
    assert_eq!(metrics["etcd_dr_snapshots_total{result=\"success\"}"], 1.0);
    assert_eq!(metrics["etcd_dr_snapshots_total{result=\"failure\"}"], 0.0);
    assert_eq!(metrics["etcd_dr_snapshots_stored"], 1.0);
    assert_eq!(metrics["etcd_dr_snapshot_interval_seconds"], 3600.0);
    assert_eq!(metrics["etcd_dr_snapshot_in_progress"], 0.0);

    // Without the token, or with a wrong one: 401, and nothing starts.
    assert_error(
        &api.request("POST", "/v1/snapshots", None),
        401,
        "unauthorized",
    );
    assert_error(
        &api.request("POST", "/v1/snapshots", Some("not-the-token-0123456789")),
        401,
        "unauthorized",
    );
    assert!(api.status()["in_flight"].is_null());

    // A slow snapshot (about 3 MiB at 512 KiB/s): triggered, seen running, a second refused.
    etcd.put("/registry/namespaces/team-a", b"k8s\0ns");
    proxy.throttle(512 * 1024);
    let accepted = api.request("POST", "/v1/snapshots", Some(API_TOKEN));
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let id = accepted.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        accepted.header("location"),
        Some(format!("/v1/snapshots/{id}").as_str())
    );
    assert!(id.ends_with(&format!("-r{}", etcd.revision())), "{id}");
    let running = wait_for("progress bytes", Duration::from_secs(10), || {
        let status = api.status();
        (status["in_flight"]["raw_bytes"].as_u64() > Some(0)).then_some(status)
    });
    assert_eq!(running["in_flight"]["activity"], "snapshot");
    assert_eq!(running["in_flight"]["trigger"], "api");
    assert_eq!(running["in_flight"]["id"], id);
    assert_eq!(api.metric("etcd_dr_snapshot_in_progress"), 1.0);
    assert_error(
        &api.request("POST", "/v1/snapshots", Some(API_TOKEN)),
        409,
        "snapshot_in_progress",
    );
    // Not yet committed: it does not exist for readers.
    assert_eq!(api.get(&format!("/v1/snapshots/{id}")).status, 404);
    proxy.throttle(0);

    wait_for("the triggered snapshot", Duration::from_secs(30), || {
        (api.get(&format!("/v1/snapshots/{id}")).status == 200).then_some(())
    });
    wait_for("the run to finish", Duration::from_secs(10), || {
        api.status()["in_flight"].is_null().then_some(())
    });
    let status = api.status();
    assert_eq!(status["last_snapshot"]["id"], id);
    let list = api.json("/v1/snapshots");
    assert_eq!(list["count"], 2);
    assert_eq!(list["snapshots"][0]["id"], id, "newest first");
    assert_eq!(list["snapshots"][1]["id"], first);

    // The metrics agree with the manifests, exactly.
    let newest = &list["snapshots"][0];
    let stored_total: u64 = list["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["stored"]["size"].as_u64().unwrap())
        .sum();
    // The stored count comes after retention, which runs once the snapshot shows as done.
    wait_for("retention after the run", Duration::from_secs(10), || {
        (api.metric("etcd_dr_snapshots_stored") == 2.0).then_some(())
    });
    let metrics = api.metrics();
    assert_eq!(metrics["etcd_dr_snapshots_total{result=\"success\"}"], 2.0);
    assert_eq!(metrics["etcd_dr_snapshots_stored"], 2.0);
    assert_eq!(metrics["etcd_dr_snapshot_duration_seconds_count"], 2.0);
    assert_eq!(metrics["etcd_dr_snapshot_in_progress"], 0.0);
    assert_eq!(metrics["etcd_dr_uploaded_bytes_total"], stored_total as f64);
    assert_eq!(
        metrics["etcd_dr_etcd_revision"],
        newest["etcd"]["revision"].as_f64().unwrap()
    );
    assert_eq!(
        metrics["etcd_dr_snapshot_size_bytes{kind=\"raw\"}"],
        newest["raw"]["size"].as_f64().unwrap()
    );
    assert_eq!(
        metrics["etcd_dr_snapshot_size_bytes{kind=\"stored\"}"],
        newest["stored"]["size"].as_f64().unwrap()
    );
    let completed =
        chrono::DateTime::parse_from_rfc3339(newest["completed_at"].as_str().unwrap()).unwrap();
    let completed = completed.timestamp_micros() as f64 / 1e6;
    assert!(
        (metrics["etcd_dr_last_success_timestamp_seconds"] - completed).abs() < 0.01,
        "{} vs {}",
        metrics["etcd_dr_last_success_timestamp_seconds"],
        completed
    );
    assert!(metrics["etcd_dr_replication_lag_seconds"] < 30.0);

    stop(child, &dr, "primary.log");
    assert!(dr.log("primary.log").contains("stopped"));
}

/// Seconds between an RFC 3339 time in a body and now.
fn age_seconds(rfc3339: &serde_json::Value) -> i64 {
    let at = chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().expect("an RFC 3339 time"))
        .expect("an RFC 3339 time");
    (chrono::Utc::now() - at.with_timezone(&chrono::Utc)).num_seconds()
}

/// While a snapshot runs, a second one is no queued or silent success: `POST /v1/snapshots`
/// answers 409 naming the run (id, since), the CLI against the held producer lease exits 75
/// saying who holds it, and the API against a CLI run names that producer.
#[test]
fn a_second_snapshot_while_one_runs_is_refused_naming_it() {
    let s3 = MotoServer::with_bucket(BUCKET);
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::total_bytes(3 << 20, 4096));
    let proxy = TcpProxy::start(etcd.client_addr(0));
    let api = Api::on_free_port();
    let dr = primary_on_s3(
        &etcd,
        &[format!("http://{}", proxy.addr())],
        &s3,
        BUCKET,
        &api,
    );
    let child = KillOnDrop::new(dr.spawn(&["run"], "primary.log"));
    api.wait_ready();
    wait_for("the first scheduled run", Duration::from_secs(30), || {
        let status = api.status();
        (status["last_snapshot"]["id"].is_string() && status["in_flight"].is_null()).then_some(())
    });
    let committed = || {
        s3.keys(BUCKET, "dr/prod/snapshots/")
            .iter()
            .filter(|k| k.ends_with("manifest.json"))
            .count()
    };
    assert_eq!(committed(), 1);

    // The daemon's own run (slowed down): the second trigger names it.
    etcd.put("/registry/namespaces/team-b", b"k8s\0ns");
    proxy.throttle(512 * 1024);
    let accepted = api.request("POST", "/v1/snapshots", Some(API_TOKEN));
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let id = accepted.json()["id"].as_str().unwrap().to_string();
    let refused = api.request("POST", "/v1/snapshots", Some(API_TOKEN));
    assert_error(&refused, 409, "snapshot_in_progress");
    let running = &refused.json()["running"];
    assert_eq!(running["kind"], "snapshot", "{running}");
    assert_eq!(running["id"], id);
    assert!(
        (0..30).contains(&age_seconds(&running["since"])),
        "{running}"
    );
    assert!(refused.json()["detail"].as_str().unwrap().contains(&id));

    // The CLI meets the daemon's producer lease: exit 75, nothing written, who holds it.
    let cli = dr.run(&["snapshot"]);
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(cli.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("no snapshot taken: another snapshot of cluster prod is in progress")
            && stderr.contains("holds the producer lease")
            && stderr.contains("Nothing was written"),
        "{stderr}"
    );
    proxy.throttle(0);
    wait_for("the triggered run to end", Duration::from_secs(30), || {
        api.status()["in_flight"].is_null().then_some(())
    });
    assert_eq!(api.status()["last_snapshot"]["id"], id);
    assert_eq!(committed(), 2);

    // A CLI run holds the lease (slowed down): the API names that producer.
    etcd.put("/registry/namespaces/team-c", b"k8s\0ns");
    proxy.throttle(512 * 1024);
    let cli = KillOnDrop::new(dr.spawn(&["snapshot", "--json"], "cli.log"));
    wait_for("the CLI's producer lease", Duration::from_secs(20), || {
        s3.keys(BUCKET, "dr/prod/")
            .iter()
            .any(|k| k.ends_with("producer-lease.json"))
            .then_some(())
    });
    let refused = api.request("POST", "/v1/snapshots", Some(API_TOKEN));
    assert_error(&refused, 409, "snapshot_in_progress");
    let running = &refused.json()["running"];
    assert_eq!(running["kind"], "other-producer", "{running}");
    let pid = cli.child().id();
    assert!(
        running["holder"]
            .as_str()
            .is_some_and(|h| h.ends_with(&format!("(pid {pid})"))),
        "{running}"
    );
    assert!(
        (0..30).contains(&age_seconds(&running["since"])),
        "{running}"
    );
    proxy.throttle(0);
    let cli = cli.into_inner().wait_with_output().unwrap();
    assert!(cli.status.success(), "{}", dr.log("cli.log"));
    assert_eq!(committed(), 3, "the refused trigger wrote nothing");
    // Standing back is no failure of the daemon.
    assert_eq!(
        api.metric("etcd_dr_snapshots_total{result=\"failure\"}"),
        0.0
    );
    assert!(api.status()["failing_since"].is_null());
    stop(child, &dr, "primary.log");
}

#[test]
fn systemd_hears_ready_watchdog_pings_and_stopping() {
    let store = tempfile::tempdir().unwrap();
    let api = Api::on_free_port();
    let dr = EtcdDr::new("");
    let token = write_token(dr.dir());
    std::fs::write(
        dr.config_path(),
        format!(
            "role = \"secondary\"\ncluster = \"prod\"\n[store]\ntype = \"local\"\npath = \"{}\"\n{}",
            store.path().display(),
            api.section(&token, "")
        ),
    )
    .unwrap();
    let socket_path = dr.dir().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // systemd sets WATCHDOG_PID to the service's pid; `exec` keeps the shell's.
    let mut command = Command::new("sh");
    let inner = dr.command(&["run"]);
    command
        .arg("-c")
        .arg("WATCHDOG_PID=$$; export WATCHDOG_PID; exec \"$@\"")
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dr.dir().join("daemon.log")).unwrap());
    let child = KillOnDrop::new(command.spawn().unwrap());

    let mut buffer = [0u8; 4096];
    let mut receive = || {
        let n = socket
            .recv(&mut buffer)
            .expect("a notification within 10 s");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    let first = receive();
    // READY is the first thing systemd hears: the watchdog starts after it.
    assert!(first.lines().any(|l| l == "READY=1"), "{first}");
    assert!(
        first.contains("STATUS=secondary of cluster prod"),
        "{first}"
    );
    // Only after READY does the API answer for sure.
    assert_eq!(api.get("/healthz").status, 200);
    let started = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        if receive().lines().any(|l| l == "WATCHDOG=1") {
            pings += 1;
        }
    }
    // Half the 400 ms period: three pings well within two seconds.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    terminate(child.child());
    let stopping = loop {
        let message = receive();
        if !message.lines().any(|l| l == "WATCHDOG=1") {
            break message;
        }
    };
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    let output = child.into_inner().wait_with_output().unwrap();
    assert!(output.status.success(), "{}", dr.log("daemon.log"));
}

#[test]
fn start_up_problems_stop_the_daemon_naming_the_field() {
    let store = tempfile::tempdir().unwrap();
    let config = |listen: &str, token_file: &str| {
        format!(
            "role = \"secondary\"\ncluster = \"prod\"\n[store]\ntype = \"local\"\npath = \"{}\"\n[http]\nlisten = \"{listen}\"\ntoken_file = \"{token_file}\"\n",
            store.path().display()
        )
    };
    // The token file is read at start-up, not by check-config (the examples name files of a
    // real bastion).
    let missing = EtcdDr::new(&config("127.0.0.1:0", "/nonexistent/api-token"));
    missing.run_ok(&["check-config"]);
    let error = missing.run_err(&["run"]);
    assert!(error.contains("http.token_file"), "{error}");
    assert!(error.contains("/nonexistent/api-token"), "{error}");

    let short = EtcdDr::new("");
    let token = short.dir().join("api-token");
    std::fs::write(&token, "short\n").unwrap();
    std::fs::write(
        short.config_path(),
        config("127.0.0.1:0", &token.display().to_string()),
    )
    .unwrap();
    let error = short.run_err(&["run"]);
    assert!(error.contains("shorter than 16"), "{error}");

    // The address is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = EtcdDr::new("");
    let token = write_token(busy.dir());
    std::fs::write(
        busy.config_path(),
        config(
            &taken.local_addr().unwrap().to_string(),
            &token.display().to_string(),
        ),
    )
    .unwrap();
    let error = busy.run_err(&["run"]);
    assert!(error.contains("http.listen"), "{error}");
}
