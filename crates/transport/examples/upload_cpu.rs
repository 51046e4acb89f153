//! Measures the upload pipeline alone (SHA-256, zstd, parts) on a snapshot file, without etcd
//! or a network: what the pipeline itself costs in time and CPU. Used by `bench/` to choose
//! defaults.
//!
//! ```text
//! cargo run --release -p etcd-dr-transport --example upload_cpu -- etcd.db [zstd_workers] [level]
//! ```

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use etcd_dr_transport::{upload_snapshot_data, ShipProgress, UploadOptions};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

/// etcd's snapshot message size.
const CHUNK: usize = 32 * 1024;

fn cpu_seconds() -> f64 {
    // utime and stime of this process, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let file = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: upload_cpu FILE [workers] [level]"))?;
    let mut options = UploadOptions::default();
    if let Some(workers) = args.next() {
        options.zstd_workers = workers.parse()?;
    }
    if let Some(level) = args.next() {
        options.zstd_level = level.parse()?;
    }
    let mut data = Vec::new();
    std::fs::File::open(&file)?.read_to_end(&mut data)?;
    let data = Bytes::from(data);
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..data.len())
        .step_by(CHUNK)
        .map(|at| Ok(data.slice(at..(at + CHUNK).min(data.len()))))
        .collect();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let cpu = cpu_seconds();
    let started = Instant::now();
    let uploaded = upload_snapshot_data(
        &store,
        &Path::from("bench/etcd.db.zst"),
        "etcd.db.zst",
        futures::stream::iter(chunks),
        &options,
        &ShipProgress::default(),
        &CancellationToken::new(),
    )
    .await?;
    println!(
        "workers {} level {}: {:.2}s wall, {:.2}s CPU, {} -> {} bytes",
        options.zstd_workers,
        options.zstd_level,
        started.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
        uploaded.raw.size,
        uploaded.stored.size
    );
    Ok(())
}
