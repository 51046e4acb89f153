//! `etcd-load`: writes 1 KiB Kubernetes-shaped objects to etcd at a fixed rate (or as fast as
//! it can) from several concurrent writers, while sampling etcd-dr's replication lag from its
//! `/metrics` every 100 ms and the CPU time and peak resident memory of other processes.
//!
//! ```text
//! etcd-load --endpoint http://127.0.0.1:2379 --rate 500 --seconds 20 \
//!     --metrics http://127.0.0.1:8080/metrics --process daemon=1234 --process etcd=1200
//! etcd-load --endpoint http://127.0.0.1:2379 --rate 0 --count 20000 --writers 1 --txn
//! ```
//!
//! Prints one JSON object (what was written, the rate reached, lag percentiles, per process CPU
//! seconds over the run and peak RSS). Not a test: a tool for `bench/run.sh`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use etcd_client::{Client, ConnectOptions, Txn, TxnOp};
use etcd_dr_e2e::{kubernetes_object, FillSpec};

#[derive(Parser)]
#[command(about = "Write to etcd at a fixed rate and sample etcd-dr's replication lag.")]
struct Args {
    /// etcd client URL.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    endpoint: String,
    /// Writes per second (each one revision); 0: as fast as the writers go.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// How long to write (with a rate).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// How many writes (without a rate, or to override rate × seconds).
    #[arg(long)]
    count: Option<u64>,
    /// Concurrent writers (each one request in flight; they share one connection).
    #[arg(long, default_value_t = 16)]
    writers: u64,
    /// Distinct keys written over and over.
    #[arg(long, default_value_t = 2000)]
    keys: usize,
    /// Mean value size in bytes.
    #[arg(long, default_value_t = 1024)]
    value_bytes: usize,
    /// Seed of the generator (a different one per phase changes the values).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write each object as a transaction of one put (what replay sends) instead of a put.
    #[arg(long)]
    txn: bool,
    /// etcd-dr's metrics URL: `etcd_dr_replication_lag_seconds` is sampled every 100 ms.
    #[arg(long)]
    metrics: Option<String>,
    /// A label copied into the report.
    #[arg(long, default_value = "")]
    label: String,
    /// NAME=PID of a process whose CPU time over the run and peak RSS are reported (its peak is
    /// reset at the start when /proc/PID/clear_refs is writable).
    #[arg(long = "process")]
    processes: Vec<String>,
}

/// utime + stime of a process in seconds (USER_HZ is 100 on Linux).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("a /proc stat line without `)`")?
        .1
        .split_whitespace()
        .collect();
    // After the `)`: state is index 0, so utime (field 14) is 11 and stime 12.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// VmHWM (peak resident set) of a process in KiB.
fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmHWM without a value")?
        .parse()?)
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

async fn sample_lag(url: String, stop: tokio_util::sync::CancellationToken) -> Vec<f64> {
    let http = reqwest::Client::new();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return samples,
            _ = tick.tick() => {}
        }
        let Ok(response) = http.get(&url).send().await else {
            continue;
        };
        let Ok(text) = response.text().await else {
            continue;
        };
        if let Some(lag) = text
            .lines()
            .find_map(|line| line.strip_prefix("etcd_dr_replication_lag_seconds "))
            .and_then(|value| value.trim().parse::<f64>().ok())
        {
            samples.push(lag);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let total = args.count.unwrap_or(args.rate * args.seconds);
    anyhow::ensure!(
        total > 0,
        "nothing to write: give --rate and --seconds, or --count"
    );
    let processes: Vec<(String, u32)> = args
        .processes
        .iter()
        .map(|spec| -> anyhow::Result<(String, u32)> {
            let (name, pid) = spec
                .split_once('=')
                .with_context(|| format!("--process `{spec}`: expected NAME=PID"))?;
            Ok((name.to_string(), pid.parse().context("--process: PID")?))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut peak_reset = Vec::new();
    let mut cpu_before = Vec::new();
    for (_, pid) in &processes {
        // "5" resets the peak resident set (Linux 4.0+), so each run reports its own peak.
        peak_reset.push(std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok());
        cpu_before.push(cpu_seconds(*pid)?);
    }
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    let client = Client::connect([args.endpoint.as_str()], Some(options))
        .await
        .with_context(|| format!("connecting to {}", args.endpoint))?;
    let stop_sampling = tokio_util::sync::CancellationToken::new();
    let sampler = args
        .metrics
        .clone()
        .map(|url| tokio::spawn(sample_lag(url, stop_sampling.clone())));

    let spec = FillSpec {
        objects: args.keys,
        value_bytes: args.value_bytes,
        seed: args.seed,
    };
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let interval = (args.rate > 0).then(|| Duration::from_secs(1).as_secs_f64() / args.rate as f64);
    let writers: Vec<_> = (0..args.writers.max(1))
        .map(|_| {
            let (next, mut kv, as_txn) = (next.clone(), client.kv_client(), args.txn);
            let start = tokio::time::Instant::now();
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= total {
                        return anyhow::Ok(());
                    }
                    if let Some(interval) = interval {
                        // Write `index` when it is due: a writer that fell behind catches up.
                        tokio::time::sleep_until(
                            start + Duration::from_secs_f64(interval * index as f64),
                        )
                        .await;
                    }
                    let (key, value) = kubernetes_object(index as usize % spec.objects, &spec);
                    if as_txn {
                        kv.txn(Txn::new().and_then([TxnOp::put(key, value, None)]))
                            .await?;
                    } else {
                        kv.put(key, value, None).await?;
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.context("a writer panicked")??;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop_sampling.cancel();
    let mut lags = match sampler {
        Some(sampler) => sampler.await.context("the lag sampler panicked")?,
        None => Vec::new(),
    };
    lags.sort_by(f64::total_cmp);
    let mut measured = serde_json::Map::new();
    for (((name, pid), before), reset) in processes.iter().zip(&cpu_before).zip(&peak_reset) {
        measured.insert(
            name.clone(),
            serde_json::json!({
                "cpu_seconds": cpu_seconds(*pid)? - before,
                "peak_rss_kib": peak_rss_kib(*pid)?,
                "peak_reset_at_start": reset,
            }),
        );
    }
    let report = serde_json::json!({
        "label": args.label,
        "rate_asked": args.rate,
        "writes": total,
        "writers": args.writers,
        "as_txn": args.txn,
        "seconds": seconds,
        "rate_reached": total as f64 / seconds,
        "lag_samples": lags.len(),
        "lag_p50_seconds": percentile(&lags, 0.5),
        "lag_p99_seconds": percentile(&lags, 0.99),
        "lag_max_seconds": lags.last(),
        "processes": measured,
    });
    println!("{report}");
    Ok(())
}
