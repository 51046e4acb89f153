//! Continuous replication against real etcd 3.5 and 3.6: a random workload captured into
//! segments, then restored at random revisions and compared with the source's own read at that
//! revision.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, DeleteOptions, PutOptions, Txn, TxnOp};
use etcd_dr_e2e::replication_ground::{
    assert_restored, both_engines, generation_around, keyspace, revision_of, snapshot_to,
};
use etcd_dr_e2e::{
    block_on, segment_signer, test_signing_key, test_trust, EtcdCluster, EtcdDr, EtcdOptions,
    EtcdVersion, StoreTarget,
};
use etcd_dr_replication::{
    capture_generation, list_generations, list_segments, read_segment, CaptureOptions,
    CaptureProgress, CaptureStart, ChainReader, GenerationBreak, GenerationId, ReplayEngine,
    ReplayRequest, ReplicationError, ReplicationLayout, SegmentStore,
};
use etcd_dr_transport::Identities;
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Puts, deletes, multi-key txns, a range delete, a long lease and a short lease that expires
/// while the capture runs. Returns every revision written.
async fn random_workload(client: &mut Client, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let long_lease = client.lease_grant(600, None).await.expect("grant").id();
    let short_lease = client.lease_grant(2, None).await.expect("grant").id();
    client
        .put(
            "short/a",
            "expires",
            Some(PutOptions::new().with_lease(short_lease)),
        )
        .await
        .expect("put");
    client
        .put(
            "short/b",
            "expires",
            Some(PutOptions::new().with_lease(short_lease)),
        )
        .await
        .expect("put");
    for step in 0..400 {
        let key = format!("k/{:02}", rng.random_range(0..40));
        match rng.random_range(0..10) {
            0..=4 => {
                let value: Vec<u8> = (0..rng.random_range(0..300))
                    .map(|_| rng.random())
                    .collect();
                client.put(key, value, None).await.expect("put");
            }
            5 => {
                client.delete(key, None).await.expect("delete");
            }
            6 => {
                client
                    .put(
                        key,
                        format!("leased {step}"),
                        Some(PutOptions::new().with_lease(long_lease)),
                    )
                    .await
                    .expect("put");
            }
            7 | 8 => {
                let ops = (0..rng.random_range(2..20))
                    .map(|i| TxnOp::put(format!("t/{step}/{i}"), vec![b'x'; 50], None))
                    .collect::<Vec<_>>();
                client.txn(Txn::new().and_then(ops)).await.expect("txn");
            }
            _ => {
                client
                    .delete("t/", Some(DeleteOptions::new().with_prefix()))
                    .await
                    .expect("delete range");
            }
        }
        if step == 200 {
            // The short lease expires mid-workload: etcd deletes its keys in a revision of its own.
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
    }
    // One revision over 4 MiB, far larger than a segment's cut size: a range delete of 1,000
    // keys with 4 KiB names. etcd sends it in fragments (it is above its 1.5 MiB request limit)
    // that the capture joins.
    let long_name = "n".repeat(4096);
    for batch in 0..8 {
        let ops = (0..125)
            .map(|i| {
                TxnOp::put(
                    format!("big/{batch}/{i:03}/{long_name}"),
                    vec![b'y'; 20],
                    None,
                )
            })
            .collect::<Vec<_>>();
        client.txn(Txn::new().and_then(ops)).await.expect("txn");
    }
    client
        .delete("big/", Some(DeleteOptions::new().with_prefix()))
        .await
        .expect("delete 1,000 keys");
    client.put("k/last", "done", None).await.expect("put");
}

struct Captured {
    store: Arc<dyn ObjectStore>,
    layout: ReplicationLayout,
    generation: GenerationId,
    base_db: PathBuf,
    base_revision: i64,
    last_revision: i64,
}

/// Takes a base snapshot, captures while the workload runs, and waits until every revision is
/// stored.
async fn capture_workload(client: Client, dir: PathBuf, seed: u64) -> Captured {
    let mut writer = client.clone();
    writer.put("k/before", "base", None).await.expect("put");
    let base_db = dir.join("base.db");
    snapshot_to(&mut writer, &base_db).await;
    let base_revision = revision_of(&mut writer).await;
    let store_dir = dir.join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(&store_dir).unwrap());
    let layout = ReplicationLayout::new("dr", "prod").unwrap();
    let generation = GenerationId::new(chrono::Utc::now(), base_revision);
    let sink = SegmentStore {
        store: store.clone(),
        layout: layout.clone(),
        recipients: None,
        signer: Some(segment_signer(&test_signing_key().0, "prod")),
    };
    let options = CaptureOptions {
        max_segment_age: Duration::from_millis(300),
        max_segment_bytes: 8 << 10,
        ..CaptureOptions::default()
    };
    let (progress_tx, mut progress_rx) = watch::channel(CaptureProgress::default());
    let cancel = CancellationToken::new();
    let start = CaptureStart {
        generation: generation.clone(),
        resume: None,
    };
    let capture = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            capture_generation(&client, sink, start, &options, &progress_tx, &cancel).await
        })
    };
    random_workload(&mut writer, seed).await;
    let last_revision = revision_of(&mut writer).await;
    tokio::time::timeout(
        Duration::from_secs(30),
        progress_rx.wait_for(|p| p.stored_revision >= last_revision),
    )
    .await
    .expect("every revision stored within 30 s")
    .expect("capture running");
    let lag = progress_rx
        .borrow()
        .lag(std::time::SystemTime::now())
        .expect("etcd answered");
    assert!(
        lag < Duration::from_secs(2),
        "lag {lag:?} with everything stored"
    );
    cancel.cancel();
    let tail = capture.await.unwrap().expect("capture stops cleanly");
    assert_eq!(tail.map(|t| t.last_revision), Some(last_revision));
    Captured {
        store,
        layout,
        generation,
        base_db,
        base_revision,
        last_revision,
    }
}

async fn restore_at(
    captured: &Captured,
    dir: &Path,
    target: i64,
    engine: &ReplayEngine,
) -> Result<PathBuf, ReplicationError> {
    let cancel = CancellationToken::new();
    let mut chain = ChainReader::open(
        captured.store.clone(),
        captured.layout.clone(),
        captured.generation.clone(),
        Identities::none(),
        test_trust("prod", false),
        &cancel,
    )
    .await?;
    let output_db = dir.join(format!(
        "restored-{target}-{}-{}.db",
        engine.name(),
        rand::random::<u32>()
    ));
    let request = ReplayRequest {
        base_db: captured.base_db.clone(),
        target_revision: target,
        output_db: output_db.clone(),
        work_dir: dir.to_path_buf(),
        base_cluster_id: None,
        progress: None,
    };
    let report =
        etcd_dr_replication::replay_to_revision(engine, &mut chain, &request, &cancel).await?;
    assert_eq!(report.engine, engine.name());
    assert_eq!(report.revision, target);
    assert_eq!(report.base_revision, captured.base_revision);
    Ok(output_db)
}

#[test]
fn the_restored_keyspace_at_any_captured_revision_equals_the_source_on_etcd_3_5() {
    restored_keyspaces_equal_the_source(EtcdVersion::V3_5);
}

#[test]
fn the_restored_keyspace_at_any_captured_revision_equals_the_source_on_etcd_3_6() {
    restored_keyspaces_equal_the_source(EtcdVersion::V3_6);
}

fn restored_keyspaces_equal_the_source(version: EtcdVersion) {
    let etcd = EtcdCluster::start(EtcdOptions {
        version,
        ..EtcdOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_path_buf();
    let (endpoints, options) = etcd.connect_parts();
    let seed: u64 = rand::random();
    eprintln!("workload seed {seed}");
    block_on(async move {
        let client = Client::connect(endpoints, Some(options)).await.unwrap();
        let mut reader = client.clone();
        let captured = capture_workload(client, dir_path.clone(), seed).await;
        assert!(captured.last_revision > captured.base_revision + 300);

        // Every revision is in exactly one segment, and the 1,000-op revision was not split.
        let names = list_segments(
            &captured.store,
            &captured.layout,
            &captured.generation,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(names.len() > 3, "{} segments", names.len());
        assert_eq!(names[0].first_revision, captured.base_revision + 1);
        assert_eq!(names.last().unwrap().last_revision, captured.last_revision);
        for pair in names.windows(2) {
            assert_eq!(pair[1].first_revision, pair[0].last_revision + 1);
        }

        let mut rng = StdRng::seed_from_u64(seed);
        let mut targets = vec![
            captured.base_revision,
            captured.last_revision - 1,
            captured.last_revision,
        ];
        while targets.len() < 6 {
            let target = rng.random_range(captured.base_revision + 1..captured.last_revision);
            if targets.contains(&target) {
                continue;
            }
            // Not while the 2 s lease's keys exist: the restored etcd would expire them while
            // the test reads it.
            if !keyspace(&mut reader, target)
                .await
                .iter()
                .any(|kv| kv.0.starts_with(b"short/"))
            {
                targets.push(target);
            }
        }
        // Each target with each engine: the backend written directly and the one a
        // throw-away etcd replayed into both equal the source.
        for target in targets {
            let expected = keyspace(&mut reader, target).await;
            for engine in both_engines(version) {
                let restored_db = restore_at(&captured, &dir_path, target, &engine)
                    .await
                    .expect("restore");
                assert_restored(&restored_db, version, target, &expected, engine.name()).await;
            }
        }

        // A missing segment: the restore refuses and says how far it can go.
        let missing = names.len() / 2;
        let path = captured
            .layout
            .segment_path(&captured.generation, &names[missing]);
        captured.store.delete(&path).await.unwrap();
        let error = restore_at(
            &captured,
            &dir_path,
            captured.last_revision,
            &ReplayEngine::Backend,
        )
        .await
        .unwrap_err();
        let reachable = names[missing - 1].last_revision;
        assert!(
            matches!(error, ReplicationError::NotRestorable { restorable, .. } if restorable == reachable),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains(&format!("can restore up to {reachable}")),
            "{error}"
        );
        // Below the hole, the chain still restores.
        for engine in both_engines(version) {
            restore_at(&captured, &dir_path, reachable, &engine)
                .await
                .expect("restore below the hole");
        }
    });
}

#[test]
fn a_capture_that_starts_below_the_compaction_ends_its_generation() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().to_path_buf();
    let (endpoints, options) = etcd.connect_parts();
    block_on(async move {
        let mut client = Client::connect(endpoints, Some(options)).await.unwrap();
        for i in 0..20 {
            client.put(format!("k/{i}"), "v", None).await.unwrap();
        }
        let compacted = revision_of(&mut client).await - 5;
        client.compact(compacted, None).await.unwrap();
        let sink = SegmentStore {
            store: Arc::new(LocalFileSystem::new_with_prefix(&store_dir).unwrap()),
            layout: ReplicationLayout::new("", "prod").unwrap(),
            recipients: None,
            signer: Some(segment_signer(&test_signing_key().0, "prod")),
        };
        let start = CaptureStart {
            generation: GenerationId::new(chrono::Utc::now(), 3),
            resume: None,
        };
        let (progress, _) = watch::channel(CaptureProgress::default());
        let outcome = tokio::time::timeout(
            Duration::from_secs(20),
            capture_generation(
                &client,
                sink,
                start,
                &CaptureOptions::default(),
                &progress,
                &CancellationToken::new(),
            ),
        )
        .await
        .expect("the capture ends by itself");
        match outcome {
            Err(ReplicationError::GenerationEnded {
                reason:
                    GenerationBreak::Compacted {
                        wanted,
                        compact_revision,
                    },
                ..
            }) => assert_eq!((wanted, compact_revision), (4, compacted)),
            other => panic!("expected a compaction break, got {other:?}"),
        }
        assert!(
            std::fs::read_dir(&store_dir).unwrap().next().is_none(),
            "nothing stored"
        );
    });
}

#[test]
fn fetch_at_a_revision_writes_the_keyspace_of_that_revision() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let store_dir = tempfile::tempdir().unwrap();
    // The throw-away etcd must not see the daemon's secrets (etcd logs unknown `ETCD_*`).
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store_dir.path()),
        "",
    )
    .env("ETCD_DR_API_TOKEN", "api-token-value-must-not-leak");
    etcd.put("k/base", b"in the snapshot");
    let manifest = dr.snapshot_json(&[]);
    let generation = generation_around(&manifest);
    let (endpoints, options) = etcd.connect_parts();
    let store_path = store_dir.path().to_path_buf();
    let (middle, last, after_middle) = block_on(async move {
        let client = Client::connect(endpoints, Some(options)).await.unwrap();
        let mut writer = client.clone();
        let sink = SegmentStore {
            store: Arc::new(LocalFileSystem::new_with_prefix(&store_path).unwrap()),
            layout: ReplicationLayout::new("", "prod").unwrap(),
            recipients: None,
            signer: Some(segment_signer(&test_signing_key().0, "prod")),
        };
        let start = CaptureStart {
            generation,
            resume: None,
        };
        let (progress_tx, mut progress_rx) = watch::channel(CaptureProgress::default());
        let cancel = CancellationToken::new();
        let capture = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let options = CaptureOptions::default();
                capture_generation(&client, sink, start, &options, &progress_tx, &cancel).await
            })
        };
        let mut middle = 0;
        let mut after_middle = chrono::Utc::now();
        for i in 0..50 {
            let put = writer
                .put(format!("k/{}", i % 7), format!("v{i}"), None)
                .await
                .unwrap();
            if i == 25 {
                middle = put.header().unwrap().revision();
                // A moment after the capture saw `middle` and before the next revision.
                tokio::time::sleep(Duration::from_millis(400)).await;
                after_middle = chrono::Utc::now();
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        }
        let last = revision_of(&mut writer).await;
        tokio::time::timeout(
            Duration::from_secs(30),
            progress_rx.wait_for(|p| p.stored_revision >= last),
        )
        .await
        .expect("stored within 30 s")
        .unwrap();
        cancel.cancel();
        capture.await.unwrap().unwrap();
        (middle, last, after_middle)
    });

    let output = dr.dir().join("at-middle.db");
    let at = middle.to_string();
    // etcd behind a wrapper that records the environment it was given.
    let child_env = dr.dir().join("etcd-env");
    let etcd_bin = dr.dir().join("etcd-recording-env");
    std::fs::write(
        &etcd_bin,
        format!(
            "#!/bin/sh\nenv >> '{}'\nexec '{}' \"$@\"\n",
            child_env.display(),
            EtcdVersion::V3_5.bin("etcd").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&etcd_bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let etcdutl_bin = EtcdVersion::V3_5.bin("etcdutl");
    // `fetch --at <at> --output <output>` with the default engine: what it printed.
    let fetch_at = |at: &str, output: &std::path::Path| {
        dr.run_ok(&["fetch", "--at", at, "--output", output.to_str().unwrap()])
    };
    // The same with a throw-away etcd 3.5 replaying.
    let printed = dr.run_ok(&[
        "fetch",
        "--at",
        &at,
        "--output",
        output.to_str().unwrap(),
        "--replay-with",
        "etcd",
        "--etcd-bin",
        etcd_bin.to_str().unwrap(),
        "--etcdutl-bin",
        etcdutl_bin.to_str().unwrap(),
    ]);
    assert!(
        printed.contains(&format!("revision {middle} written to"))
            && printed.contains("by the etcd engine"),
        "{printed}"
    );
    let by_backend = dr.dir().join("at-middle-backend.db");
    let printed = fetch_at(&at, &by_backend);
    assert!(
        printed.contains(&format!("revision {middle} written to"))
            && printed.contains("by the backend engine"),
        "{printed}"
    );
    // Both restored copies hold every Secret of the cluster: owner-only whatever the umask.
    for copy in [&output, &by_backend] {
        let mode = std::fs::metadata(copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", copy.display());
    }
    let seen =
        std::fs::read_to_string(&child_env).expect("the wrapper recorded etcd's environment");
    assert!(seen.contains("PATH="), "{seen}");
    assert!(!seen.contains("must-not-leak"), "{seen}");
    let restored_backend = EtcdCluster::start_restored(&by_backend, EtcdVersion::V3_5);
    let restored = EtcdCluster::start_restored(&output, EtcdVersion::V3_5);
    let (source_endpoints, source_options) = etcd.connect_parts();
    let (restored_endpoints, restored_options) = restored.connect_parts();
    block_on(async move {
        let mut source = Client::connect(source_endpoints, Some(source_options))
            .await
            .unwrap();
        let mut copy = Client::connect(restored_endpoints, Some(restored_options))
            .await
            .unwrap();
        assert_eq!(revision_of(&mut copy).await, middle);
        let expected = keyspace(&mut source, middle).await;
        assert!(keyspace(&mut copy, 0).await == expected);
        let mut copy = restored_backend.client().await;
        assert_eq!(revision_of(&mut copy).await, middle);
        assert!(keyspace(&mut copy, 0).await == expected);
    });

    // A time: the newest revision observed at or before it. `newest`: the newest stored.
    let at_time = dr.dir().join("at-time.db");
    let time = after_middle.to_rfc3339();
    let printed = fetch_at(&time, &at_time);
    assert!(
        printed.contains(&format!("revision {middle} written to")),
        "{printed}"
    );
    let at_newest = dr.dir().join("at-newest.db");
    let printed = fetch_at("newest", &at_newest);
    assert!(
        printed.contains(&format!("revision {last} written to")),
        "{printed}"
    );
    // On a terminal a bar follows the download and then the replay; piped, the summary alone.
    assert!(
        !printed.contains("fetch --at") && !printed.contains('\r'),
        "{printed:?}"
    );
    let on_terminal = dr.dir().join("at-newest-terminal.db");
    let shown = dr.run_on_terminal(&[
        "fetch",
        "--at",
        "newest",
        "--output",
        on_terminal.to_str().unwrap(),
    ]);
    assert!(shown.contains("fetch --at newest: "), "{shown:?}");
    assert!(
        shown.contains(&format!("revision {last} written to")),
        "{shown:?}"
    );

    // Beyond what is stored: refused, saying how far it can go; nothing written.
    let beyond = (last + 10).to_string();
    let refused = dr.dir().join("beyond.db");
    let error = dr.run_err(&[
        "fetch",
        "--at",
        &beyond,
        "--output",
        refused.to_str().unwrap(),
    ]);
    assert!(
        error.contains(&format!("can restore up to {last}")),
        "{error}"
    );
    assert!(!refused.exists());

    // A store writer replaces the newest segment with its own: the chain kept (same previous
    // digest, same revisions), a value changed, unsigned and then signed by another key. Both
    // are refused, naming the segment and why; nothing is written.
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(store_dir.path()).unwrap());
    let (attackers_key, _) = etcd_dr_transport::generate_signing_key();
    for (planter, reason) in [
        (None, "it is not signed (signing.allow_unsigned is off)"),
        (
            Some(segment_signer(&attackers_key, "prod")),
            "which is not among signing.trusted_keys",
        ),
    ] {
        let store = store.clone();
        let planted = block_on(async move {
            let cancel = CancellationToken::new();
            let layout = ReplicationLayout::new("", "prod").unwrap();
            let generation = list_generations(&store, &layout, &cancel)
                .await
                .unwrap()
                .pop()
                .unwrap();
            let names = list_segments(&store, &layout, &generation, &cancel)
                .await
                .unwrap();
            let path = layout.segment_path(&generation, names.last().unwrap());
            let trust = test_trust("prod", false);
            let (mut segment, _) =
                match read_segment(&store, &path, &Identities::none(), &trust, &cancel).await {
                    Ok(genuine) => genuine,
                    // The first round planted it already; read past the signature check.
                    Err(_) => {
                        let stored = store.get(&path).await.unwrap().bytes().await.unwrap();
                        let plain = zstd::decode_all(&stored[..]).unwrap();
                        etcd_dr_replication::Segment::decode("planted", &plain).unwrap()
                    }
                };
            let event = &mut segment.revisions.last_mut().unwrap().events[0];
            event.kv.as_mut().unwrap().value = b"planted".to_vec();
            segment.header.extension.clear();
            store.delete(&path).await.unwrap();
            let forger = SegmentStore {
                store,
                layout,
                recipients: None,
                signer: planter,
            };
            forger.put(&segment, &cancel).await.unwrap().key
        });
        let forged_output = dr.dir().join("forged.db");
        let error = dr.run_err(&[
            "fetch",
            "--at",
            &last.to_string(),
            "--output",
            forged_output.to_str().unwrap(),
        ]);
        assert!(
            error.contains(&format!("segment `{planted}` is refused: ")) && error.contains(reason),
            "{error}"
        );
        assert!(!forged_output.exists());
    }
}
