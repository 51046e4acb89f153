//! Promote benchmark (issue 7, item 5): `etcd-dr promote` of a big snapshot onto a 3-member
//! secondary control plane (three namespace nodes cp1..cp3 over ssh, each member run by the
//! kubelet stand-in), timed from the request to a healthy cluster, with the time of every step
//! and of each node's stages. Target: ≤ 60 s for 512 MiB.
//!
//! Opt-in (a few minutes, and about 15× the database size in free disk: three members of the
//! primary, the store, and on each node the copied snapshot and the restored data):
//!
//! ```text
//! cargo build --release -p etcd-dr
//! BENCH_PROMOTE_MIB=512 cargo test --release -p etcd-dr-e2e --test promote_bench -- --ignored --nocapture
//! ```
//!
//! `bench/run.sh --only promote` runs it. `BENCH_PROMOTE_MIB` is the database size (default
//! 512); the markdown report is printed and, with `BENCH_PROMOTE_OUT=FILE`, written to FILE.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use etcd_dr_e2e::kubelet::{member_names, put_keys};
use etcd_dr_e2e::secondary::SshSecondary;
use etcd_dr_e2e::{block_on, EtcdCluster, EtcdDr, EtcdOptions, StoreTarget};

/// Keys `endpoint` alone holds (a serializable count: that member's own data).
fn member_key_count(endpoint: &str) -> i64 {
    let endpoint = endpoint.to_string();
    block_on(async move {
        let mut client = Client::connect([endpoint], None).await.expect("connect");
        client
            .get(
                "",
                Some(
                    GetOptions::new()
                        .with_all_keys()
                        .with_count_only()
                        .with_serializable(),
                ),
            )
            .await
            .expect("count")
            .count()
    })
}

/// One line of `etcd-dr promote`'s progress (stderr), with when it came.
struct ProgressLine {
    at: Duration,
    text: String,
}

/// A node's restore stage from its progress detail.
fn stage_of(detail: &str) -> &'static str {
    match detail.split_whitespace().next().unwrap_or("") {
        "stopping" => "stop",
        "keeping" => "keep old data aside",
        "copying" => "copy snapshot (ssh)",
        "restoring" => "etcdutl restore + install",
        "installing" => "service-account keys",
        "starting" => "start",
        _ => "other",
    }
}

const STAGES: [&str; 6] = [
    "stop",
    "keep old data aside",
    "copy snapshot (ssh)",
    "etcdutl restore + install",
    "service-account keys",
    "start",
];

/// Per node: seconds spent in each restore stage, from the timestamps of the progress lines
/// `restore cpN: running — <detail>` and `restore cpN: done …`.
fn node_stages(lines: &[ProgressLine]) -> BTreeMap<String, BTreeMap<&'static str, f64>> {
    let mut current: BTreeMap<String, (&'static str, Duration)> = BTreeMap::new();
    let mut stages: BTreeMap<String, BTreeMap<&'static str, f64>> = BTreeMap::new();
    for line in lines {
        let Some(rest) = line.text.strip_prefix("restore ") else {
            continue;
        };
        let Some((node, status)) = rest.split_once(": ") else {
            continue;
        };
        if node.contains(' ') {
            continue;
        }
        let detail = status.split_once(" — ").map(|(_, d)| d);
        if let Some((stage, since)) = current.remove(node) {
            *stages
                .entry(node.to_string())
                .or_default()
                .entry(stage)
                .or_default() += (line.at - since).as_secs_f64();
        }
        if status.starts_with("running") {
            if let Some(detail) = detail {
                current.insert(node.to_string(), (stage_of(detail), line.at));
            }
        }
    }
    stages
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = mem
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    format!(
        "{cpus} CPUs, {model}, {:.1} GiB RAM",
        mem_kib / 1024.0 / 1024.0
    )
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
#[ignore = "benchmark: minutes and several GiB of disk (bench/run.sh --only promote)"]
fn promote_of_a_big_snapshot_onto_three_nodes_over_ssh() {
    let mib: u64 = std::env::var("BENCH_PROMOTE_MIB")
        .ok()
        .map(|v| v.parse().expect("BENCH_PROMOTE_MIB is a number of MiB"))
        .unwrap_or(512);
    let load_before = load();
    let mut secondary = SshSecondary::start();

    // The primary: three members named like the secondary's hosts (kubeadm's member names),
    // filled with the generator `bench/run.sh` uses, snapshotted by `etcd-dr snapshot`.
    let etcd = EtcdCluster::start(EtcdOptions {
        members: 3,
        member_names: vec!["cp1".into(), "cp2".into(), "cp3".into()],
        quota_bytes: Some(((mib * 2 + 1024) << 20).max(2 << 30)),
        ..EtcdOptions::default()
    });
    let started = Instant::now();
    let written = etcd.fill_to_db_size(mib << 20, 1);
    let fill_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "bench: filled {} keys, database {} MiB in {fill_seconds:.1}s",
        written.keys,
        written.db_size >> 20
    );
    let store = tempfile::Builder::new()
        .prefix("etcd-dr-promote-bench-")
        .tempdir()
        .unwrap();
    let bucket = store.path().join("bucket");
    let primary_dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(&bucket),
        "",
    );
    let started = Instant::now();
    let manifest = primary_dr.snapshot_json(&[]);
    let snapshot_seconds = started.elapsed().as_secs_f64();
    let raw_bytes = manifest["raw"]["size"].as_u64().unwrap();
    let stored_bytes = manifest["stored"]["size"].as_u64().unwrap();
    // The primary region is gone.
    drop(etcd);

    // The secondary serves its own data until the promotion.
    secondary.become_secondary();
    put_keys(&secondary.client_urls, "/secondary-only", 50);
    let work = store.path().join("bastion");
    let secondary_dr = EtcdDr::with_sections(
        "prod",
        "",
        &StoreTarget::Local(&bucket),
        &format!(
            "role = \"secondary\"\n{}",
            secondary.config_sections(&work, "10m")
        ),
    );

    let requested = Instant::now();
    let mut child = secondary_dr
        .command(&["promote", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etcd-dr promote");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .map(|text| {
                let line = ProgressLine {
                    at: requested.elapsed(),
                    text,
                };
                eprintln!("[{:6.2}s] {}", line.at.as_secs_f64(), line.text);
                line
            })
            .collect::<Vec<_>>()
    });
    let output = child.wait_with_output().expect("etcd-dr promote");
    let exited = requested.elapsed();
    let lines = reader.join().unwrap();
    assert!(output.status.success(), "etcd-dr promote failed");
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["state"], "succeeded", "{record:#}");
    let healthy = lines
        .iter()
        .find(|l| l.text.starts_with("health: done"))
        .map(|l| l.at)
        .expect("a `health: done` line");

    // It is the primary's data on three members.
    assert_eq!(member_names(&secondary.client_urls), ["cp1", "cp2", "cp3"]);
    for url in &secondary.client_urls {
        assert_eq!(member_key_count(url), written.keys as i64, "{url}");
    }

    // ------------------------------------------------------------------ report
    let mut report = String::new();
    let mut say = |line: String| {
        report.push_str(&line);
        report.push('\n');
    };
    say(format!(
        "## Promote: {} MiB database onto 3 members over ssh ({})",
        raw_bytes >> 20,
        chrono::Utc::now().format("%Y-%m-%dT%H:%MZ")
    ));
    say(String::new());
    say(format!(
        "- machine: {}; load before start: {load_before}, at the request: {}",
        machine(),
        load()
    ));
    say(format!(
        "- database: {raw_bytes} bytes, {} keys (filled in {fill_seconds:.1} s); stored {stored_bytes} bytes (zstd, {:.2}×), `etcd-dr snapshot` to a local store in {snapshot_seconds:.1} s",
        written.keys,
        raw_bytes as f64 / stored_bytes as f64
    ));
    say(format!(
        "- **request → healthy cluster: {:.1} s** (`health: done` on the progress); `etcd-dr promote` exited after {:.1} s; the record says {:.1} s",
        healthy.as_secs_f64(),
        exited.as_secs_f64(),
        record["duration_seconds"].as_f64().unwrap_or(0.0)
    ));
    say(String::new());
    say("| step | state | seconds | per node (s) | detail |".into());
    say("|---|---|---:|---|---|".into());
    for step in record["steps"].as_array().unwrap() {
        let nodes: Vec<String> = step["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|n| {
                        format!(
                            "{} {:.1}",
                            n["node"].as_str().unwrap_or("?"),
                            n["duration_seconds"].as_f64().unwrap_or(0.0)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        say(format!(
            "| {} | {} | {} | {} | {} |",
            step["name"].as_str().unwrap_or("?"),
            step["state"].as_str().unwrap_or("?"),
            step["duration_seconds"]
                .as_f64()
                .map_or("–".into(), |s| format!("{s:.2}")),
            nodes.join(", "),
            step["detail"]
                .as_str()
                .unwrap_or("")
                .replace('|', "/")
                .chars()
                .take(120)
                .collect::<String>()
        ));
    }
    say(String::new());
    say("Restore stages on each node (seconds, from the progress lines' arrival):".into());
    say(String::new());
    say(format!("| node | {} |", STAGES.join(" | ")));
    say(format!("|---|{}", "---:|".repeat(STAGES.len())));
    for (node, stages) in node_stages(&lines) {
        let cells: Vec<String> = STAGES
            .iter()
            .map(|s| stages.get(s).map_or("–".into(), |v| format!("{v:.2}")))
            .collect();
        say(format!("| {node} | {} |", cells.join(" | ")));
    }
    println!("\n{report}");
    if let Some(path) = std::env::var_os("BENCH_PROMOTE_OUT") {
        std::fs::write(path, &report).expect("write BENCH_PROMOTE_OUT");
    }
}
