//! The control plane against the running daemon (`etcd-dr run`): every HTTP endpoint, the
//! token, trigger and 409, metrics that move as snapshots land, the secondary's verification,
//! pre-staging and lag, readiness following the store, and systemd notifications.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_dr_e2e::{
    free_port, http_request, terminate, wait_for, EtcdCluster, EtcdDr, EtcdOptions, FillSpec,
    HttpResponse, MotoServer, StoreTarget, TcpProxy,
};
use serde_json::Value;

const TOKEN: &str = "e2e-token-5f0c3b9a7d2e4f61";
const BUCKET: &str = "dr-backups";

/// The daemon's HTTP API.
struct Api {
    addr: SocketAddr,
}

impl Api {
    fn on_free_port() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
        }
    }

    /// The `[http]` section: this address, the token file, quick store checks.
    fn section(&self, token_file: &std::path::Path, extra: &str) -> String {
        format!(
            "[http]\nlisten = \"{}\"\ntoken_file = \"{}\"\nstore_check_interval = \"300ms\"\nstore_check_timeout = \"2s\"\n{extra}\n",
            self.addr,
            token_file.display()
        )
    }

    fn request(&self, method: &str, path: &str, token: Option<&str>) -> HttpResponse {
        let authorization = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        http_request(self.addr, method, path, &headers, b"")
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, None)
    }

    fn json(&self, path: &str) -> Value {
        let response = self.get(path);
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        response.json()
    }

    fn status(&self) -> Value {
        self.json("/v1/status")
    }

    /// The samples of `/metrics`: `name{labels}` → value.
    fn metrics(&self) -> BTreeMap<String, f64> {
        let response = self.get("/metrics");
        assert_eq!(response.status, 200);
        assert!(response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
        response
            .text()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').expect("sample line");
                (name.to_string(), value.parse().expect("sample value"))
            })
            .collect()
    }

    fn metric(&self, name: &str) -> f64 {
        let metrics = self.metrics();
        *metrics
            .get(name)
            .unwrap_or_else(|| panic!("{name} not exported: {metrics:?}"))
    }

    fn wait_ready(&self) {
        wait_for("the API to answer", Duration::from_secs(20), || {
            http_request(self.addr, "GET", "/healthz", &[], b"").ok()
        });
    }
}

fn assert_error(response: &HttpResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json();
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

fn write_token(dr: &EtcdDr) -> std::path::PathBuf {
    let path = dr.dir().join("api-token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path
}

fn stop(child: Child, dr: &EtcdDr, log: &str) {
    terminate(&child);
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", dr.log(log));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "slow shutdown: {:?}",
        started.elapsed()
    );
}

/// A secondary's config (no `[etcd]`): quick polls, pre-staging in its scratch directory.
fn secondary(s3: &MotoServer, api: &Api, extra_http: &str) -> EtcdDr {
    let dr = EtcdDr::new("");
    let token = write_token(&dr);
    let config = format!(
        "role = \"secondary\"\ncluster = \"prod\"\n{}\n{}\n[secondary]\npoll_interval = \"300ms\"\nexpected_interval = \"10s\"\nprestage_dir = \"{}\"\n",
        s3.config_section(BUCKET, "dr"),
        api.section(&token, extra_http),
        dr.dir().join("prestage").display()
    );
    std::fs::write(dr.config_path(), config).unwrap();
    dr
}

fn primary(etcd: &EtcdCluster, endpoints: &[String], s3: &MotoServer, api: &Api) -> EtcdDr {
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(endpoints),
        &StoreTarget::S3 {
            server: s3,
            bucket: BUCKET,
            prefix: "dr",
        },
        "",
    );
    let token = write_token(&dr);
    let mut config = std::fs::read_to_string(dr.config_path()).unwrap();
    config.push_str(&api.section(&token, ""));
    config.push_str("[schedule]\ninterval = \"1h\"\n");
    std::fs::write(dr.config_path(), config).unwrap();
    dr
}

#[test]
fn the_primary_api_reports_triggers_and_counts_snapshots() {
    let s3 = MotoServer::with_bucket(BUCKET);
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::total_bytes(3 << 20, 4096));
    // Through a proxy, so that a snapshot can be slowed down enough to be seen running.
    let proxy = TcpProxy::start(etcd.client_addr(0));
    let api = Api::on_free_port();
    let dr = primary(&etcd, &[format!("http://{}", proxy.addr())], &s3, &api);
    let child = dr.spawn(&["run"], "primary.log");
    api.wait_ready();

    // The schedule's first run starts at once.
    let first = wait_for(
        "the first scheduled snapshot",
        Duration::from_secs(30),
        || {
            let status = api.status();
            status["last_snapshot"]["id"].as_str().map(String::from)
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
        &api.request("DELETE", "/v1/snapshots", Some(TOKEN)),
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
    let accepted = api.request("POST", "/v1/snapshots", Some(TOKEN));
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
        &api.request("POST", "/v1/snapshots", Some(TOKEN)),
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
    let completed: unix_time::Seconds = newest["completed_at"].as_str().unwrap().into();
    assert!(
        (metrics["etcd_dr_last_success_timestamp_seconds"] - completed.0).abs() < 0.01,
        "{} vs {}",
        metrics["etcd_dr_last_success_timestamp_seconds"],
        completed.0
    );
    assert!(metrics["etcd_dr_replication_lag_seconds"] < 30.0);

    stop(child, &dr, "primary.log");
    assert!(dr.log("primary.log").contains("stopped"));
}

/// RFC 3339 timestamps to Unix seconds without a date crate in the test ground.
mod unix_time {
    pub struct Seconds(pub f64);

    impl From<&str> for Seconds {
        fn from(text: &str) -> Self {
            // 2026-11-25T14:15:10.344377636Z
            let (date, time) = text.trim_end_matches('Z').split_once('T').unwrap();
            let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
            let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
            let t: Vec<i64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
            let fraction: f64 = format!("0.{fraction}").parse().unwrap();
            Seconds(
                (days_from_civil(d[0], d[1], d[2]) * 86400 + t[0] * 3600 + t[1] * 60 + t[2]) as f64
                    + fraction,
            )
        }
    }

    /// Days since 1970-01-01 (Howard Hinnant's algorithm).
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146097 + doe - 719468
    }

    #[test]
    fn converts_rfc3339() {
        assert_eq!(Seconds::from("1970-01-02T00:00:01Z").0, 86401.0);
        assert_eq!(Seconds::from("2026-11-25T12:00:00.5Z").0, 1_795_608_000.5);
    }
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
    let primary_dr = primary(&etcd, &etcd.endpoints(), &s3, &primary_api);
    let primary_child = primary_dr.spawn(&["run"], "primary.log");
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
    let child = dr.spawn(&["run"], "secondary.log");
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
        &api.request("POST", "/v1/snapshots", Some(TOKEN)),
        409,
        "unsupported",
    );

    // A new snapshot on the primary: verified and staged, the older staged copy removed.
    etcd.put("/registry/namespaces/team-b", b"k8s\0ns");
    let second = primary_api.request("POST", "/v1/snapshots", Some(TOKEN));
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
    let primary_child = primary_dr.spawn(&["run"], "primary-again.log");
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
    let child = dr.spawn(&["run"], "secondary.log");
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
    let child = dr.spawn(&["run"], "secondary.log");
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
fn systemd_hears_ready_watchdog_pings_and_stopping() {
    let store = tempfile::tempdir().unwrap();
    let api = Api::on_free_port();
    let dr = EtcdDr::new("");
    let token = write_token(&dr);
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
    let child = command.spawn().unwrap();

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

    terminate(&child);
    let stopping = loop {
        let message = receive();
        if !message.lines().any(|l| l == "WATCHDOG=1") {
            break message;
        }
    };
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    let output = child.wait_with_output().unwrap();
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
    let token = write_token(&busy);
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
    let token = write_token(&dr);
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
        let child = dr.spawn(&["run"], log);
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
