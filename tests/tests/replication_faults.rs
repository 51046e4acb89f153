//! Replication under faults, against real etcd 3.5: revisions far over gRPC's 4 MiB, a
//! transaction of 1,000 ops, a delete of 10,000 keys, a lease that expires during the capture,
//! a lost put answer, a capture killed with SIGKILL mid-segment, and a corrupt segment. Each
//! restore is compared with the source's own read at that revision.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, DeleteOptions, PutOptions, Txn, TxnOp};
use etcd_dr_e2e::replication_ground::{
    assert_restored, both_engines, keyspace, revision_of, CaptureRun, CaptureTarget,
    LostAnswerStore,
};
use etcd_dr_e2e::{
    block_on, EtcdCluster, EtcdDr, EtcdOptions, EtcdVersion, KillOnDrop, MotoServer, ProxyMode,
    TcpProxy,
};
use etcd_dr_replication::{
    list_segments, CaptureOptions, ChainReader, ReplayEngine, ReplicationError, SegmentName,
};
use etcd_dr_transport::Identities;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_util::sync::CancellationToken;

fn local_store(dir: &Path) -> Arc<dyn ObjectStore> {
    std::fs::create_dir_all(dir).unwrap();
    Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap())
}

fn quick_cuts() -> CaptureOptions {
    CaptureOptions {
        max_segment_age: Duration::from_millis(300),
        ..CaptureOptions::default()
    }
}

/// Restores `target` with each replay engine and checks each against the source's read at
/// that revision.
async fn assert_restores(captured: &CaptureTarget, dir: &Path, source: &mut Client, target: i64) {
    let expected = keyspace(source, target).await;
    for engine in both_engines(EtcdVersion::V3_5) {
        let (db, report) = captured
            .restore_at(dir, target, &engine)
            .await
            .unwrap_or_else(|e| panic!("restore at {target} ({}): {e}", engine.name()));
        assert_eq!(report.revision, target);
        let engine = engine.name();
        let (_restored, mut copy) =
            assert_restored(&db, EtcdVersion::V3_5, target, &expected, engine).await;
        // The restored backend takes writes, a compaction and a defragmentation (which walks
        // and rewrites every bucket through bbolt) and still reads right.
        for index in 0..50 {
            copy.put(format!("after/{index}"), vec![7u8; 300], None)
                .await
                .unwrap();
        }
        copy.compact(target, None).await.unwrap();
        copy.defragment().await.unwrap();
        let after = keyspace(&mut copy, 0).await;
        assert_eq!(
            after.len(),
            expected.len() + 50,
            "key count after writes ({engine})"
        );
        let kept: Vec<_> = after
            .into_iter()
            .filter(|key| !key.0.starts_with(b"after/"))
            .collect();
        assert!(
            kept == expected,
            "the restored keys after writes ({engine})"
        );
        assert_eq!(revision_of(&mut copy).await, target + 50);
        std::fs::remove_file(db).unwrap();
    }
}

#[test]
fn huge_revisions_wide_transactions_and_an_expiring_lease_restore_exactly() {
    let etcd = EtcdCluster::start(EtcdOptions {
        // A 30 MB revision is one request; a transaction of 1,000 ops.
        extra_args: vec![
            "--max-request-bytes=41943040".into(),
            "--max-txn-ops=1000".into(),
        ],
        ..EtcdOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_path_buf();
    let (endpoints, options) = etcd.connect_parts();
    block_on(async move {
        let client = Client::connect(endpoints, Some(options)).await.unwrap();
        let mut writer = client.clone();
        writer.put("k/before", "base", None).await.unwrap();
        let captured =
            CaptureTarget::start_above_snapshot(&mut writer, &dir, local_store(&dir.join("store")))
                .await;
        let capture = CaptureRun::start(client.clone(), &captured, None, quick_cuts());
        let mut checkpoints = Vec::new();

        // One revision over 4 MiB: a single 5 MiB value.
        let put = writer
            .put("big/one", vec![7u8; 5 << 20], None)
            .await
            .unwrap();
        checkpoints.push(put.header().unwrap().revision());
        // One revision of 30 MB: 30 values of 1 MB in one transaction.
        let ops: Vec<TxnOp> = (0..30)
            .map(|i| TxnOp::put(format!("big/many/{i:02}"), vec![i as u8; 1_000_000], None))
            .collect();
        let txn = writer.txn(Txn::new().and_then(ops)).await.unwrap();
        checkpoints.push(txn.header().unwrap().revision());
        // A transaction of 1,000 ops.
        let ops: Vec<TxnOp> = (0..1000)
            .map(|i| TxnOp::put(format!("wide/{i:04}"), format!("v{i}"), None))
            .collect();
        let txn = writer.txn(Txn::new().and_then(ops)).await.unwrap();
        checkpoints.push(txn.header().unwrap().revision());
        // 10,000 keys, then one delete of all of them.
        for batch in 0..10 {
            let ops: Vec<TxnOp> = (0..1000)
                .map(|i| TxnOp::put(format!("many/{batch}/{i:04}"), vec![b'm'; 16], None))
                .collect();
            writer.txn(Txn::new().and_then(ops)).await.unwrap();
        }
        let deleted = writer
            .delete("many/", Some(DeleteOptions::new().with_prefix()))
            .await
            .unwrap();
        assert_eq!(deleted.deleted(), 10_000);
        checkpoints.push(deleted.header().unwrap().revision());
        writer
            .delete("big/", Some(DeleteOptions::new().with_prefix()))
            .await
            .unwrap();

        // A key whose 2 s lease expires while the capture runs: etcd deletes it in a revision
        // of its own, which the capture records like any other.
        let lease = writer.lease_grant(2, None).await.unwrap().id();
        writer
            .put(
                "short/key",
                "expires",
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .unwrap();
        let expired = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if writer
                    .get("short/key", None)
                    .await
                    .unwrap()
                    .kvs()
                    .is_empty()
                {
                    break;
                }
            }
        })
        .await;
        assert!(expired.is_ok(), "the 2 s lease expired within 15 s");
        checkpoints.push(revision_of(&mut writer).await);
        let last = writer.put("k/last", "done", None).await.unwrap();
        let last = last.header().unwrap().revision();

        capture
            .stop_when_stored(last, Duration::from_secs(60))
            .await
            .expect("capture stops cleanly");
        checkpoints.push(last);
        let mut source = client.clone();
        for target in checkpoints {
            assert_restores(&captured, &dir, &mut source, target).await;
        }
    });
}

#[test]
fn a_lost_put_answer_is_retried_and_meets_its_own_segment() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_path_buf();
    let (endpoints, options) = etcd.connect_parts();
    block_on(async move {
        let client = Client::connect(endpoints, Some(options)).await.unwrap();
        let mut writer = client.clone();
        let lossy = Arc::new(LostAnswerStore::new(
            local_store(&dir.join("store")),
            vec![2, 4],
        ));
        let captured = CaptureTarget::start_above_snapshot(&mut writer, &dir, lossy.clone()).await;
        let capture = CaptureRun::start(client.clone(), &captured, None, quick_cuts());
        let mut last = 0;
        for i in 0..40 {
            let put = writer
                .put(format!("k/{}", i % 9), format!("v{i}"), None)
                .await
                .unwrap();
            last = put.header().unwrap().revision();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let tail = capture
            .stop_when_stored(last, Duration::from_secs(30))
            .await
            .expect("the capture rides over two lost answers");
        assert_eq!(tail.map(|t| t.last_revision), Some(last));
        let names = list_segments(
            &captured.store,
            &captured.layout,
            &captured.generation,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        // Each lost answer cost one more put, which met the object the first one stored.
        assert_eq!(lossy.puts(), names.len() + 2, "{} segments", names.len());
        let mut source = client.clone();
        assert_restores(&captured, &dir, &mut source, last).await;
    });
}

/// Starts `capture-segments` on `captured`'s generation; its `stored <revision>` lines arrive
/// on the receiver.
fn spawn_capture_process(
    endpoint: &str,
    captured: &CaptureTarget,
    store_dir: &Path,
    resume: bool,
) -> (KillOnDrop, UnboundedReceiver<i64>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_capture-segments"));
    command
        .args(["--endpoint", endpoint])
        .arg("--store")
        .arg(store_dir)
        .args(["--generation", &captured.generation.to_string()])
        .args(["--segment-age-ms", "1000"])
        .arg("--signing-key")
        .arg(etcd_dr_e2e::test_signing_key_file(
            store_dir.parent().expect("a parent"),
        ))
        .stdout(Stdio::piped());
    if resume {
        command.arg("--resume");
    }
    let mut child: Child = command.spawn().expect("spawn capture-segments");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(revision) = line.strip_prefix("stored ") {
                let _ = tx.send(revision.parse().unwrap());
            }
        }
    });
    (KillOnDrop::new(child), rx)
}

/// Puts `count` keys, 20 ms apart; returns the last revision.
async fn write_paced(client: &mut Client, from: usize, count: usize) -> i64 {
    let mut last = 0;
    for i in from..from + count {
        let put = client
            .put(format!("k/{}", i % 13), format!("v{i}"), None)
            .await;
        last = put.unwrap().header().unwrap().revision();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    last
}

/// Waits for a `stored` line at or above `revision`.
async fn wait_stored(stored: &mut UnboundedReceiver<i64>, revision: i64) -> i64 {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let got = stored.recv().await.expect("capture-segments running");
            if got >= revision {
                return got;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("revision {revision} stored within 30 s"))
}

#[test]
fn a_capture_killed_mid_segment_leaves_a_valid_chain_and_resumes_from_it() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_path_buf();
    let endpoint = etcd.endpoint(0);
    let (endpoints, options) = etcd.connect_parts();
    block_on(async move {
        let store_dir = dir.join("store");
        let mut client = Client::connect(endpoints, Some(options)).await.unwrap();
        let captured =
            CaptureTarget::start_above_snapshot(&mut client, &dir, local_store(&store_dir)).await;
        let (first, mut stored) = spawn_capture_process(&endpoint, &captured, &store_dir, false);
        let written = write_paced(&mut client, 0, 40).await;
        wait_stored(&mut stored, captured.base_revision + 1).await;
        // Less than the 1 s cut after the next revisions: they sit in the segment being built.
        let written_before_kill = write_paced(&mut client, 40, 10).await;
        // SIGKILL: no flush, no grace period.
        let mut first = first.into_inner();
        first.kill().unwrap();
        first.wait().unwrap();
        assert!(written < written_before_kill);

        // What the killed capture stored reads back as an unbroken chain and restores.
        let cancel = CancellationToken::new();
        let mut chain = ChainReader::open(
            captured.store.clone(),
            captured.layout.clone(),
            captured.generation.clone(),
            Identities::none(),
            etcd_dr_e2e::test_trust("prod", false),
            &cancel,
        )
        .await
        .unwrap();
        let mut chain_end = captured.base_revision;
        while let Some((_, segment)) = chain.next_segment(&cancel).await.unwrap() {
            chain_end = segment.header.last_revision;
        }
        assert!(
            chain_end > captured.base_revision && chain_end < written_before_kill,
            "the kill came after every revision was stored ({chain_end})"
        );
        assert_restores(&captured, &dir, &mut client, chain_end).await;
        let error = captured
            .restore_at(&dir, written_before_kill, &ReplayEngine::Backend)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ReplicationError::NotRestorable { restorable, .. } if restorable == chain_end),
            "{error}"
        );

        // A new capture continues the chain from its stored tail; etcd still has the revisions
        // the killed one held in memory.
        let (_second, mut stored) = spawn_capture_process(&endpoint, &captured, &store_dir, true);
        let last = write_paced(&mut client, 50, 20).await;
        wait_stored(&mut stored, last).await;
        assert_restores(&captured, &dir, &mut client, written_before_kill).await;
        assert_restores(&captured, &dir, &mut client, last).await;
    });
}

#[test]
fn a_corrupt_segment_stops_the_restore_where_the_chain_is_intact() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_path_buf();
    let store_dir = dir.join("store");
    let (endpoints, options) = etcd.connect_parts();
    block_on(async move {
        let client = Client::connect(endpoints, Some(options)).await.unwrap();
        let mut writer = client.clone();
        let captured =
            CaptureTarget::start_above_snapshot(&mut writer, &dir, local_store(&store_dir)).await;
        let capture = CaptureRun::start(client.clone(), &captured, None, quick_cuts());
        let mut last = 0;
        for i in 0..30 {
            let put = writer
                .put(format!("k/{}", i % 5), format!("v{i}"), None)
                .await
                .unwrap();
            last = put.header().unwrap().revision();
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        capture
            .stop_when_stored(last, Duration::from_secs(30))
            .await
            .unwrap();
        let names = list_segments(
            &captured.store,
            &captured.layout,
            &captured.generation,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(names.len() >= 3, "{} segments", names.len());
        let middle: &SegmentName = &names[names.len() / 2];
        let file = store_dir.join(
            captured
                .layout
                .segment_path(&captured.generation, middle)
                .as_ref(),
        );
        let mut bytes = std::fs::read(&file).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        std::fs::write(&file, bytes).unwrap();

        let error = captured
            .restore_at(&dir, last, &ReplayEngine::Backend)
            .await
            .unwrap_err();
        let reachable = names[names.len() / 2 - 1].last_revision;
        assert!(
            matches!(error, ReplicationError::NotRestorable { restorable, .. } if restorable == reachable),
            "{error}"
        );
        let text = error.to_string();
        assert!(
            text.contains(&format!("cannot restore revision {last}")),
            "{text}"
        );
        assert!(
            text.contains(&middle.file_name()),
            "names the segment: {text}"
        );
        assert!(
            text.contains(&format!("can restore up to {reachable}")),
            "{text}"
        );
        let mut source = client.clone();
        assert_restores(&captured, &dir, &mut source, reachable).await;
    });
}

#[test]
fn a_store_that_ignores_create_only_puts_is_refused_before_anything_runs() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let s3 = MotoServer::with_bucket("clone");
    // moto honours If-None-Match; the proxy in front drops the header, as some S3 clones do.
    let proxy = TcpProxy::start(s3.addr());
    proxy.set_mode(ProxyMode::StripIfNoneMatch);
    let store = format!(
        "[store]\ntype = \"s3\"\nbucket = \"clone\"\nprefix = \"dr\"\nendpoint = \"http://{}\"\nregion = \"us-east-1\"\npath_style = true\nrequest_timeout = \"10s\"\nmax_retries = 1\n",
        proxy.addr()
    );
    let dr = EtcdDr::new(&format!(
        "cluster = \"prod\"\n[schedule]\ninterval = \"1h\"\n[http]\nlisten = \"127.0.0.1:0\"\n{}\n{store}",
        etcd.config_section(&etcd.endpoints())
    ));
    // The daemon (which runs the capture) and a one-off snapshot both refuse to start.
    for command in [&["run"][..], &["snapshot"][..]] {
        let error = dr.run_err(command);
        assert!(
            error.contains("ignores create-only puts"),
            "{command:?}: {error}"
        );
    }
    assert!(
        s3.keys("clone", "dr/").is_empty(),
        "nothing stays behind: {:?}",
        s3.keys("clone", "dr/")
    );
}
