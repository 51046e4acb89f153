//! Replication benchmark (ignored by default: `cargo test -p etcd-dr-e2e --test replication_bench
//! -- --ignored --nocapture`): RPO while writing 1 KiB Kubernetes-shaped objects at a fixed rate,
//! stored bytes per event against gardener's JSON+gzip on the same events, replay revisions/s.
//! In the test (debug) profile and in one process; `bench/run.sh --only replication` measures
//! the daemon and `fetch --at` of the release build (RPO, capture RSS, replay, etcd alone).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use etcd_client::Client;
use etcd_dr_e2e::{
    block_on, kubernetes_object, segment_signer, test_signing_key, test_trust, EtcdCluster,
    EtcdOptions, EtcdVersion, FillSpec,
};
use etcd_dr_replication::{
    capture_generation, list_segments, read_segment, replay_to_revision, CaptureOptions,
    CaptureProgress, CaptureStart, ChainReader, EtcdBinaries, GenerationId, ReplayEngine,
    ReplayRequest, ReplicationLayout, SegmentStore,
};
use etcd_dr_transport::Identities;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const RATE_PER_SECOND: u64 = 500;
const SECONDS: u64 = 10;
const BURST_REVISIONS: usize = 20_000;
const BURST_WRITERS: usize = 8;
const PACED_WRITERS: u64 = 4;

/// Writes at `rate` puts/s for `seconds` (4 writers, each paced) while sampling the lag every
/// 100 ms; returns the sorted lags and the rate reached.
async fn paced_phase(
    writer: &Client,
    progress: &watch::Receiver<CaptureProgress>,
    rate: u64,
    seconds: u64,
    phase: u64,
) -> (Vec<Duration>, f64) {
    let sampler = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            for _ in 0..(seconds * 10) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Before etcd's first answer there is nothing to be behind on.
                samples.push(progress.borrow().lag(SystemTime::now()).unwrap_or_default());
            }
            samples
        })
    };
    let total = (rate * seconds) as usize;
    let started = Instant::now();
    let writers: Vec<_> = (0..PACED_WRITERS)
        .map(|w| {
            let mut writer = writer.clone();
            tokio::spawn(async move {
                let spec = FillSpec::objects(total);
                let mut tick =
                    tokio::time::interval(Duration::from_micros(1_000_000 * PACED_WRITERS / rate));
                for index in (w as usize..total).step_by(PACED_WRITERS as usize) {
                    tick.tick().await;
                    let (key, value) =
                        kubernetes_object((index + phase as usize * 7) % 2000, &spec);
                    writer.put(key, value, None).await.unwrap();
                }
            })
        })
        .collect();
    for task in writers {
        task.await.unwrap();
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    let mut lags = sampler.await.unwrap();
    lags.sort();
    (lags, achieved)
}

/// CPU seconds (user + system) of this process, and of its children that have been waited for
/// (the throw-away etcd and etcdutl once stopped), from /proc/self/stat.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let ticks = String::from_utf8(
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse::<f64>()
    .unwrap();
    // After the `)`: field 3 (state) is index 0, so utime (14) is 11, stime 12, cutime 13, cstime 14.
    (
        (fields[11] + fields[12]) / ticks,
        (fields[13] + fields[14]) / ticks,
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// gardener's delta-snapshot shape: a JSON array of events with base64 keys and values and the
/// time, gzip (default level).
fn gardener_json_gzip_bytes(events: &[(etcd_client::proto::PbEvent, i64)]) -> usize {
    let b64 = base64::engine::general_purpose::STANDARD;
    let json: Vec<serde_json::Value> = events
        .iter()
        .map(|(event, observed_ms)| {
            let kv = event.kv.clone().unwrap_or_default();
            serde_json::json!({
                "etcdEvent": {
                    "type": event.r#type,
                    "kv": {
                        "key": b64.encode(&kv.key),
                        "create_revision": kv.create_revision,
                        "mod_revision": kv.mod_revision,
                        "version": kv.version,
                        "value": b64.encode(&kv.value),
                        "lease": kv.lease,
                    }
                },
                "time": chrono::DateTime::from_timestamp_millis(*observed_ms).unwrap().to_rfc3339(),
            })
        })
        .collect();
    let text = serde_json::to_vec(&json).unwrap();
    let mut gzip = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = gzip.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&text).unwrap());
    let output = gzip.wait_with_output().unwrap();
    writer.join().unwrap();
    output.stdout.len()
}

#[test]
#[ignore = "benchmark: run explicitly"]
fn replication_rpo_bytes_per_event_and_replay_speed() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_path_buf();
    let (endpoints, options) = etcd.connect_parts();
    block_on(async move {
        let client = Client::connect(endpoints, Some(options)).await.unwrap();
        let mut writer = client.clone();
        writer.put("bench/base", "x", None).await.unwrap();
        let base_db = dir_path.join("base.db");
        let mut stream = writer.snapshot().await.unwrap();
        let mut bytes = Vec::new();
        while let Some(message) = stream.message().await.unwrap() {
            bytes.extend_from_slice(message.blob());
        }
        std::fs::write(&base_db, bytes).unwrap();
        let base_revision = writer.status().await.unwrap().header().unwrap().revision();

        let store_dir = dir_path.join("store");
        std::fs::create_dir_all(&store_dir).unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(&store_dir).unwrap());
        let layout = ReplicationLayout::new("", "bench").unwrap();
        let generation = GenerationId::new(chrono::Utc::now(), base_revision);
        let sink = SegmentStore {
            store: store.clone(),
            layout: layout.clone(),
            recipients: None,
            // Signed, as a primary does: the cost of signing is part of what is measured.
            signer: Some(segment_signer(&test_signing_key().0, "bench")),
        };
        let (progress_tx, progress_rx) = watch::channel(CaptureProgress::default());
        let cancel = CancellationToken::new();
        let capture = {
            let (cancel, start) = (
                cancel.clone(),
                CaptureStart {
                    generation: generation.clone(),
                    resume: None,
                },
            );
            tokio::spawn(async move {
                capture_generation(
                    &client,
                    sink,
                    start,
                    &CaptureOptions::default(),
                    &progress_tx,
                    &cancel,
                )
                .await
            })
        };
        let mut phases = Vec::new();
        for rate in [100, RATE_PER_SECOND] {
            let (lags, achieved) =
                paced_phase(&writer, &progress_rx, rate, SECONDS, phases.len() as u64).await;
            phases.push((rate, lags, achieved));
        }
        // More revisions for the replay figure (not in the RPO): 8 writers, unpaced.
        let burst_started = Instant::now();
        let burst: Vec<_> = (0..BURST_WRITERS)
            .map(|w| {
                let mut writer = writer.clone();
                tokio::spawn(async move {
                    let spec = FillSpec::objects(BURST_REVISIONS);
                    for index in (w..BURST_REVISIONS).step_by(BURST_WRITERS) {
                        let (key, value) = kubernetes_object(index % 2000, &spec);
                        writer.put(key, value, None).await.unwrap();
                    }
                })
            })
            .collect();
        for task in burst {
            task.await.unwrap();
        }
        let burst_seconds = burst_started.elapsed().as_secs_f64();
        let last = writer.status().await.unwrap().header().unwrap().revision();
        let mut progress_wait = progress_rx.clone();
        progress_wait
            .wait_for(|p| p.stored_revision >= last)
            .await
            .unwrap();
        cancel.cancel();
        capture.await.unwrap().unwrap();

        let names = list_segments(&store, &layout, &generation, &CancellationToken::new())
            .await
            .unwrap();
        let mut stored_bytes = 0usize;
        let mut events = Vec::new();
        for name in &names {
            let path = layout.segment_path(&generation, name);
            stored_bytes += std::fs::metadata(store_dir.join(path.as_ref()))
                .unwrap()
                .len() as usize;
            let (segment, _) = read_segment(
                &store,
                &path,
                &Identities::none(),
                &test_trust("bench", false),
                &CancellationToken::new(),
            )
            .await
            .unwrap();
            for revision in segment.revisions {
                for event in revision.events {
                    events.push((event, revision.observed_unix_ms));
                }
            }
        }
        let gardener = gardener_json_gzip_bytes(&events);

        let cancel = CancellationToken::new();
        let engines = [
            ReplayEngine::Backend,
            ReplayEngine::Etcd(EtcdBinaries {
                etcd: EtcdVersion::V3_5.bin("etcd"),
                etcdutl: EtcdVersion::V3_5.bin("etcdutl"),
            }),
        ];
        let mut replays = Vec::new();
        for engine in &engines {
            let mut chain = ChainReader::open(
                store.clone(),
                layout.clone(),
                generation.clone(),
                Identities::none(),
                test_trust("bench", false),
                &cancel,
            )
            .await
            .unwrap();
            let request = ReplayRequest {
                base_db: base_db.clone(),
                target_revision: last,
                output_db: dir_path.join(format!("replayed-{}.db", engine.name())),
                work_dir: dir_path.clone(),
                base_cluster_id: None,
                progress: None,
            };
            let (own_before, children_before) = cpu_seconds();
            let replay_started = Instant::now();
            let report = replay_to_revision(engine, &mut chain, &request, &cancel)
                .await
                .unwrap();
            let replay_wall = replay_started.elapsed().as_secs_f64();
            let (own_after, children_after) = cpu_seconds();
            replays.push((
                report,
                replay_wall,
                own_after - own_before,
                children_after - children_before,
            ));
        }

        println!(
            "BENCH replication: {} events in all, 1 KiB Kubernetes-shaped values; burst of {BURST_REVISIONS} at {:.0}/s",
            events.len(),
            BURST_REVISIONS as f64 / burst_seconds
        );
        for (rate, lags, achieved) in &phases {
            println!(
                "BENCH RPO at {rate}/s asked, {achieved:.0}/s written (lag sampled every 100 ms): p50 {:?}, p99 {:?}, max {:?}",
                percentile(lags, 0.5),
                percentile(lags, 0.99),
                lags.last().unwrap()
            );
        }
        println!("BENCH stored: {} segments, {} bytes, {:.1} bytes/event; gardener JSON+gzip on the same events: {} bytes, {:.1} bytes/event",
            names.len(), stored_bytes, stored_bytes as f64 / events.len() as f64, gardener, gardener as f64 / events.len() as f64);
        for (report, replay_wall, own, children) in &replays {
            println!(
                "BENCH replay ({}): {} revisions in {:.2} s = {:.0} revisions/s ({} sent again after overtaking), {} segments",
                report.engine,
                report.replayed_revisions,
                report.replay_time.as_secs_f64(),
                report.replayed_revisions as f64 / report.replay_time.as_secs_f64(),
                report.resent_transactions,
                report.segments_read
            );
            println!(
                "BENCH replay end to end ({}; with etcd: etcdutl restore, etcd start, replay, snapshot): {replay_wall:.2} s wall; CPU: etcd-dr {own:.2} s, throw-away etcd + etcdutl {children:.2} s",
                report.engine
            );
        }
    });
}
