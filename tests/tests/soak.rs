//! A bounded soak (ignored by default, not in CI; `scripts/soak.sh [DURATION]` runs it): a
//! primary daemon ships a three-member etcd that is written to all along into S3 (moto behind a
//! fault proxy) on a 10 s schedule and on API triggers, while random faults hit it — leader
//! kills, a member that accepts calls and answers nothing, the store answering 503 to
//! everything, the store's connections cut mid-transfer, SIGTERM and SIGKILL of the daemon, a
//! CLI snapshot racing the daemon's trigger. At the end
//! an audit: every committed snapshot verifies, `verify latest` passes, every snapshot the
//! daemon acknowledged is still there, no producer lease is left, and after a final `prune`
//! no pending multipart upload older than the grace is left (moto dates every upload 2010: none
//! at all), none into a committed object. It prints the counts.
//!
//! `SOAK_DURATION` (humantime, default `10m`) bounds the fault phase; the audit follows it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use etcd_dr_e2e::daemon::{write_token, Api, API_TOKEN};
use etcd_dr_e2e::s3::xml_values;
use etcd_dr_e2e::{
    http_request, terminate, wait_for, EtcdCluster, EtcdDr, EtcdOptions, FillSpec, MotoServer,
    ProxyMode, TcpProxy,
};
use rand::Rng;

const BUCKET: &str = "soak";
/// The shortest `retention.incomplete_grace` the configuration allows.
const INCOMPLETE_GRACE: Duration = Duration::from_secs(600);

/// The faults the soak injects, one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// SIGKILL etcd's leader, restart it a few seconds later.
    LeaderKill,
    /// Every store request answered `503` for a few seconds.
    Store503,
    /// SIGTERM the daemon (it must exit cleanly), start it again.
    DaemonSigterm,
    /// SIGKILL the daemon, start it again (its lease expires; its upload may be left pending).
    DaemonSigkill,
    /// `POST /v1/snapshots` (202 or 409; 500/503 while the store or etcd is away).
    ApiTrigger,
    /// Member 0 (behind a proxy) accepts calls and answers none for a few seconds; its live
    /// connections are cut so that the daemon's next call meets the silence.
    SilentMember,
    /// Every live connection to the store cut (mid-part, mid-manifest, mid-list).
    StoreCut,
    /// `etcd-dr snapshot` from the command line while the daemon's trigger runs: one of them
    /// holds the producer lease, the other is refused (exit 75 / 409) or runs after it.
    RacingCliSnapshot,
}

const FAULTS: [Fault; 8] = [
    Fault::LeaderKill,
    Fault::Store503,
    Fault::DaemonSigterm,
    Fault::DaemonSigkill,
    Fault::ApiTrigger,
    Fault::SilentMember,
    Fault::StoreCut,
    Fault::RacingCliSnapshot,
];

fn soak_duration() -> Duration {
    std::env::var("SOAK_DURATION")
        .ok()
        .map(|text| {
            humantime::parse_duration(&text)
                .unwrap_or_else(|e| panic!("SOAK_DURATION={text}: {e} (e.g. 10m, 2h)"))
        })
        .unwrap_or(Duration::from_secs(600))
}

fn status(addr: SocketAddr) -> Option<serde_json::Value> {
    let response = http_request(addr, "GET", "/v1/status", &[], b"").ok()?;
    (response.status == 200).then(|| response.json())
}

/// The daemon under test: restarted after each kill, its logs numbered.
struct Daemon<'a> {
    dr: &'a EtcdDr,
    child: Option<Child>,
    starts: usize,
}

impl<'a> Daemon<'a> {
    fn start(dr: &'a EtcdDr) -> Self {
        let mut daemon = Self {
            dr,
            child: None,
            starts: 0,
        };
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        self.starts += 1;
        self.child = Some(
            self.dr
                .spawn(&["run"], &format!("daemon-{}.log", self.starts)),
        );
    }

    fn log(&self) -> String {
        self.dr.log(&format!("daemon-{}.log", self.starts))
    }

    /// SIGTERM; it must exit successfully within `upload.shutdown_grace` + 30 s.
    fn terminate(&mut self) -> Duration {
        let mut child = self.child.take().expect("the daemon runs");
        let started = Instant::now();
        terminate(&child);
        loop {
            if let Some(exit) = child.try_wait().unwrap() {
                assert!(exit.success(), "SIGTERM: {exit}\n{}", self.log());
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the daemon did not stop within 60 s of SIGTERM\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        let mut child = self.child.take().expect("the daemon runs");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `POST /v1/snapshots` (202 or 409; 500/503 while the store or etcd is away), counted.
fn trigger(api: SocketAddr, answers: &mut BTreeMap<u16, usize>) {
    let authorization = format!("Bearer {API_TOKEN}");
    if let Ok(response) = http_request(
        api,
        "POST",
        "/v1/snapshots",
        &[("Authorization", authorization.as_str())],
        b"",
    ) {
        *answers.entry(response.status).or_default() += 1;
        assert!(
            [202, 409, 500, 503].contains(&response.status),
            "POST /v1/snapshots: {} {}",
            response.status,
            response.text()
        );
    }
}

/// The store's live connections cut, once or a few times within a few seconds (a transfer
/// running then fails mid-request and is retried or aborted).
fn cut_store_connections(proxy: &TcpProxy, rng: &mut impl Rng) {
    for _ in 0..rng.random_range(1..4) {
        proxy.cut();
        std::thread::sleep(Duration::from_millis(rng.random_range(200..2000)));
    }
}

/// Pending multipart uploads: (key, age).
fn pending_uploads(s3: &MotoServer) -> Vec<(String, Duration)> {
    let response = s3.request("GET", &format!("/{BUCKET}?uploads"));
    assert_eq!(response.status, 200, "list uploads: {}", response.text());
    let now = chrono::Utc::now();
    response
        .text()
        .split("<Upload>")
        .skip(1)
        .filter_map(|upload| {
            let key = xml_values(upload, "Key").into_iter().next()?;
            let initiated = xml_values(upload, "Initiated").into_iter().next()?;
            let initiated = chrono::DateTime::parse_from_rfc3339(&initiated).ok()?;
            let age = (now - initiated.with_timezone(&chrono::Utc))
                .to_std()
                .unwrap_or_default();
            Some((key, age))
        })
        .collect()
}

#[test]
#[ignore = "a soak of minutes to hours: scripts/soak.sh"]
fn mixed_faults_never_lose_corrupt_or_strand_a_snapshot() {
    let duration = soak_duration();
    let mut etcd = EtcdCluster::start(EtcdOptions {
        members: 3,
        ..EtcdOptions::default()
    });
    etcd.fill(FillSpec::total_bytes(8 << 20, 4096));
    let s3 = MotoServer::with_bucket(BUCKET);
    let store_proxy = TcpProxy::start(s3.addr());
    let member_proxy = TcpProxy::start(etcd.client_addr(0));
    let mut endpoints = etcd.endpoints();
    endpoints[0] = format!("http://{}", member_proxy.addr());
    let api = Api::on_free_port();
    let dr = EtcdDr::new("");
    let token = write_token(dr.dir());
    std::fs::write(
        dr.config_path(),
        format!(
            "cluster = \"prod\"\n{etcd_section}\n[store]\ntype = \"s3\"\nbucket = \"{BUCKET}\"\nprefix = \"soak\"\n\
             endpoint = \"http://{store}\"\nregion = \"us-east-1\"\npath_style = true\nrequest_timeout = \"10s\"\nmax_retries = 2\n\
             [schedule]\ninterval = \"10s\"\n[retention]\nincomplete_grace = \"10m\"\n\
             [upload]\npart_size_mib = 5\nproducer_lease_ttl = \"15s\"\n{http}",
            etcd_section = etcd.config_section(&endpoints),
            store = store_proxy.addr(),
            http = api.section(&token, ""),
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&dr);
    wait_for("the daemon's API", Duration::from_secs(30), || {
        status(api.addr)
    });

    let mut rng = rand::rng();
    let mut faults: BTreeMap<Fault, usize> = BTreeMap::new();
    let mut acknowledged: BTreeSet<String> = BTreeSet::new();
    let mut api_answers: BTreeMap<u16, usize> = BTreeMap::new();
    let mut cli_exits: BTreeMap<i32, usize> = BTreeMap::new();
    let mut writes = 0u64;
    let mut slowest_sigterm = Duration::ZERO;
    let deadline = Instant::now() + duration;
    let note_acknowledged = |acknowledged: &mut BTreeSet<String>| {
        if let Some(id) =
            status(api.addr).and_then(|s| s["last_snapshot"]["id"].as_str().map(String::from))
        {
            acknowledged.insert(id);
        }
    };
    while Instant::now() < deadline {
        etcd.put(&format!("/registry/configmaps/soak/c{writes}"), b"k8s\0v");
        writes += 1;
        note_acknowledged(&mut acknowledged);
        let fault = FAULTS[rng.random_range(0..FAULTS.len())];
        *faults.entry(fault).or_default() += 1;
        match fault {
            Fault::LeaderKill => {
                let leader = etcd.leader_index();
                etcd.kill(leader);
                std::thread::sleep(Duration::from_secs(rng.random_range(2..6)));
                etcd.restart(leader);
            }
            Fault::Store503 => {
                store_proxy.set_mode(ProxyMode::ServiceUnavailable);
                std::thread::sleep(Duration::from_secs(rng.random_range(2..8)));
                store_proxy.set_mode(ProxyMode::Forward);
            }
            Fault::DaemonSigterm => {
                slowest_sigterm = slowest_sigterm.max(daemon.terminate());
                daemon.spawn();
            }
            Fault::DaemonSigkill => {
                daemon.kill();
                daemon.spawn();
            }
            Fault::ApiTrigger => trigger(api.addr, &mut api_answers),
            Fault::SilentMember => {
                member_proxy.set_mode(ProxyMode::SilentAnswersAfter(0));
                member_proxy.cut();
                std::thread::sleep(Duration::from_secs(rng.random_range(3..12)));
                member_proxy.set_mode(ProxyMode::Forward);
            }
            Fault::StoreCut => cut_store_connections(&store_proxy, &mut rng),
            Fault::RacingCliSnapshot => {
                let cli = std::thread::scope(|scope| {
                    let cli = scope.spawn(|| dr.run(&["snapshot", "--json"]));
                    std::thread::sleep(Duration::from_millis(rng.random_range(0..500)));
                    trigger(api.addr, &mut api_answers);
                    cli.join().unwrap()
                });
                let code = cli.status.code().unwrap_or(-1);
                *cli_exits.entry(code).or_default() += 1;
                if cli.status.success() {
                    let manifest: serde_json::Value = serde_json::from_slice(&cli.stdout)
                        .expect("snapshot --json prints the manifest");
                    acknowledged.insert(manifest["id"].as_str().unwrap().to_string());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(1000..6000)));
    }

    // Calm: a write (an unchanged revision is skipped), then one more snapshot must commit, and
    // a clean stop.
    let before = status(api.addr).and_then(|s| s["last_snapshot"]["id"].as_str().map(String::from));
    etcd.put("/registry/configmaps/soak/after-the-faults", b"k8s\0v");
    let calm = Instant::now();
    let last = loop {
        let newest = status(api.addr)
            .and_then(|s| s["last_snapshot"]["id"].as_str().map(String::from))
            .filter(|id| Some(id) != before.as_ref());
        if let Some(id) = newest {
            break id;
        }
        assert!(
            calm.elapsed() < Duration::from_secs(120),
            "no snapshot within 120 s after the faults; status {:?}\n{}",
            status(api.addr),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    acknowledged.insert(last);
    note_acknowledged(&mut acknowledged);
    slowest_sigterm = slowest_sigterm.max(daemon.terminate());

    // The audit.
    let listed: Vec<String> = dr
        .list_json()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !listed.contains(id))
        .collect();
    let mut corrupt = Vec::new();
    for id in &listed {
        let output = dr.run(&["verify", id]);
        if !output.status.success() {
            corrupt.push(format!("{id}: {}", String::from_utf8_lossy(&output.stderr)));
        }
    }
    let latest = dr.run(&["verify", "latest"]);
    let keys = s3.keys(BUCKET, "soak/prod/");
    let folders: BTreeSet<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("soak/prod/snapshots/"))
        .filter_map(|k| k.split('/').next())
        .collect();
    let half_visible = folders
        .iter()
        .filter(|folder| !listed.iter().any(|id| id == *folder))
        .count();
    let lease_left = keys.iter().any(|k| k.ends_with("producer-lease.json"));
    dr.run_ok(&["prune"]);
    // What a SIGKILL or a failed abort (503) leaves, prune aborts once older than the grace
    // (docs/reliability.md). Each such fault leaks one at most, and none may be an upload into
    // an object a manifest names.
    let pending = pending_uploads(&s3);
    let leak_bound = faults.get(&Fault::DaemonSigkill).copied().unwrap_or(0)
        + faults.get(&Fault::Store503).copied().unwrap_or(0)
        + faults.get(&Fault::StoreCut).copied().unwrap_or(0);
    let committed_objects: BTreeSet<String> = dr
        .list_json()
        .iter()
        .map(|m| m["stored"]["name"].as_str().unwrap().to_string())
        .collect();
    let into_committed: Vec<&(String, Duration)> = pending
        .iter()
        .filter(|(key, _)| {
            committed_objects
                .iter()
                .any(|name| key.ends_with(name.as_str()))
        })
        .collect();
    let older_than_grace = pending
        .iter()
        .filter(|(_, age)| *age > INCOMPLETE_GRACE)
        .count();

    println!(
        "soak of {} with faults:",
        humantime::format_duration(duration)
    );
    for (fault, count) in &faults {
        println!("  {fault:?}: {count}");
    }
    println!("  API answers: {api_answers:?}");
    println!("  racing CLI snapshots by exit status (0 committed, 75 lease held): {cli_exits:?}");
    println!("  etcd writes: {writes}; daemon starts: {}", daemon.starts);
    println!("  slowest SIGTERM: {slowest_sigterm:?}");
    println!(
        "  snapshots committed: {}, acknowledged: {}, lost: {}, corrupt: {}",
        listed.len(),
        acknowledged.len(),
        lost.len(),
        corrupt.len()
    );
    println!(
        "  folders without a manifest (never visible to readers; retention removes them after \
         the grace): {half_visible}; pending multipart uploads after prune: {} of at most \
         {leak_bound}, {older_than_grace} older than {}s",
        pending.len(),
        INCOMPLETE_GRACE.as_secs()
    );

    assert!(lost.is_empty(), "acknowledged snapshots missing: {lost:?}");
    assert!(
        corrupt.is_empty(),
        "snapshots that do not verify: {corrupt:#?}"
    );
    assert!(
        latest.status.success(),
        "verify latest: {}",
        String::from_utf8_lossy(&latest.stderr)
    );
    assert!(!lease_left, "a producer lease was left after a clean stop");
    assert!(
        pending.len() <= leak_bound,
        "{} pending multipart uploads, more than the {leak_bound} SIGKILLs, 503 spells and cuts: {pending:?}",
        pending.len()
    );
    assert_eq!(
        older_than_grace, 0,
        "pending multipart uploads older than the grace after prune: {pending:?}"
    );
    assert!(
        into_committed.is_empty(),
        "uploads pending into objects a manifest names: {into_committed:?}"
    );
}
