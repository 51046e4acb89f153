//! `etcd-fill`: fills an etcd cluster with Kubernetes-shaped data (the harness's generator,
//! `etcd_dr_e2e::fill`) until its database reaches a target size, fast (concurrent
//! transactions of many puts).
//!
//! ```text
//! etcd-fill --endpoint http://127.0.0.1:2379 --target-mib 512
//! ```
//!
//! Not a test: a tool for `bench/run.sh` and for trying things on a big database.

use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use etcd_client::{Client, ConnectOptions};
use etcd_dr_e2e::fill::{fill_to_db_size, FillSpec, WriteOptions};

#[derive(Parser)]
#[command(about = "Fill etcd with Kubernetes-shaped keys until its database reaches a size.")]
struct Args {
    /// etcd client URL.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    endpoint: String,
    /// Stop once etcd reports a database of at least this many MiB.
    #[arg(long, default_value_t = 512)]
    target_mib: u64,
    /// Transactions in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Upper bound of one transaction's key and value bytes (etcd refuses requests over
    /// 1.5 MiB).
    #[arg(long, default_value_t = 768 * 1024)]
    batch_bytes: usize,
    /// Mean value size in bytes (default: a real cluster's mix of kinds).
    #[arg(long, default_value_t = FillSpec::TYPICAL_VALUE_BYTES)]
    value_bytes: usize,
    /// Seed of the generator: the same seed gives the same objects.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = ConnectOptions::new().with_connect_timeout(std::time::Duration::from_secs(5));
    let client = Client::connect([args.endpoint.as_str()], Some(options))
        .await
        .with_context(|| format!("connecting to {}", args.endpoint))?;
    let started = Instant::now();
    let written = fill_to_db_size(
        &client,
        args.target_mib * 1024 * 1024,
        args.value_bytes,
        args.seed,
        WriteOptions {
            concurrency: args.concurrency,
            batch_bytes: args.batch_bytes,
        },
        |so_far| {
            eprintln!(
                "etcd-fill: {} keys, {} MiB of keys and values written, database {} MiB ({:.1}s)",
                so_far.keys,
                so_far.bytes / (1024 * 1024),
                so_far.db_size / (1024 * 1024),
                started.elapsed().as_secs_f64()
            );
        },
    )
    .await
    .with_context(|| format!("filling {}", args.endpoint))?;
    println!(
        "{} keys, {} bytes of keys and values, database {} bytes, {:.1}s",
        written.keys,
        written.bytes,
        written.db_size,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
