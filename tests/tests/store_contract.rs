//! The store contract the transport relies on, as one suite run against every store it meets:
//! a local directory (the product's own client, fsync on), S3 on moto, and the fault-injecting
//! wrapper (over a local directory) that fails calls on purpose. Each scenario is a function
//! taking the store; `on_every_store!` makes one test per scenario and store
//! (`<scenario>::local`, `::s3`, `::faulty`), as object_store's shared backend tests do.
//!
//! The contract: a manifest is committed once and never replaced (create-only), each attempt
//! writes into its own folder and removes only that, a listing orders snapshots by revision
//! (never by the producer's clock) and shows a folder without a manifest as incomplete only,
//! retention deletes manifests first and keeps the newest snapshot that reads back intact, a
//! failed abort leaves a leftover that the sweep removes, and a failed or cut get, listing or
//! delete during verification and retention reports an error and leaves every committed
//! snapshot intact.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use etcd_dr_core::{
    Compression, EtcdClusterInfo, ObjectDigest, Producer, SnapshotId, SnapshotManifest,
    StoredObject, MANIFEST_FORMAT_VERSION,
};
use etcd_dr_e2e::s3::{ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use etcd_dr_e2e::MotoServer;
use etcd_dr_transport::fault_store::{Call, Fault, FaultStore};
use etcd_dr_transport::{
    apply_retention, commit_manifest, delete_uncommitted, list_snapshots, plan_verified_retention,
    read_manifest, sweep_upload_leftovers, upload_object, AttemptToken, ManifestTrust,
    RetentionConfig, ShipProgress, SigningConfig, SnapshotLayout, StoreConfig, TransportError,
    UploadOptions, UploadedObject, DATA_OBJECT_NAME,
};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio_util::sync::CancellationToken;

macro_rules! on_every_store {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::Kind;

            #[test]
            fn local() {
                super::run(Kind::Local, super::$scenario)
            }

            #[test]
            fn s3() {
                super::run(Kind::S3, super::$scenario)
            }

            #[test]
            fn faulty() {
                super::run(Kind::Faulty, super::$scenario)
            }
        }
    )*};
}

on_every_store!(
    a_manifest_is_committed_once,
    attempts_write_and_remove_only_their_own_folder,
    a_listing_orders_by_revision_and_hides_folders_without_a_manifest,
    retention_deletes_manifests_first_and_keeps_the_newest_intact,
    a_failed_abort_leaves_a_leftover_that_the_sweep_removes,
    store_faults_during_verification_and_retention_keep_every_committed_snapshot,
);

/// Which store a scenario runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Local,
    S3,
    Faulty,
}

/// A store under test and what keeps it alive.
struct Store {
    store: Arc<dyn ObjectStore>,
    /// The wrapper, to arm faults with (the `faulty` store only).
    faults: Option<FaultStore>,
    /// The same store as configured (the upload sweep lists and aborts through its own client).
    config: StoreConfig,
    layout: SnapshotLayout,
    trust: ManifestTrust,
    dir: Option<tempfile::TempDir>,
    moto: Option<MotoServer>,
}

impl Store {
    /// Arms `fault` on the next call of `call`, on the faulty store; false elsewhere.
    fn arm_next(&self, call: Call, fault: Fault) -> bool {
        match &self.faults {
            Some(faults) => {
                faults.arm(call, faults.count(call) + 1, fault);
                true
            }
            None => false,
        }
    }
}

fn local_store(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
    StoreConfig::local(dir)
        .build()
        .expect("the local store opens")
}

fn open(kind: Kind) -> Store {
    let dir = tempfile::tempdir().unwrap();
    let (store, faults, config, moto) = match kind {
        Kind::Local => (
            local_store(dir.path()),
            None,
            StoreConfig::local(dir.path()),
            None,
        ),
        Kind::Faulty => {
            let faults = FaultStore::new(local_store(dir.path()));
            let store: Arc<dyn ObjectStore> = Arc::new(faults.clone());
            (store, Some(faults), StoreConfig::local(dir.path()), None)
        }
        Kind::S3 => {
            let moto = MotoServer::with_bucket("contract");
            let store: Arc<dyn ObjectStore> = Arc::new(
                AmazonS3Builder::new()
                    .with_bucket_name("contract")
                    .with_endpoint(moto.endpoint())
                    .with_allow_http(true)
                    .with_region("us-east-1")
                    .with_access_key_id(ACCESS_KEY_ID)
                    .with_secret_access_key(SECRET_ACCESS_KEY)
                    .build()
                    .unwrap(),
            );
            let credentials = dir.path().join("credentials");
            std::fs::write(
                &credentials,
                format!("[default]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n"),
            )
            .unwrap();
            let config = serde_json::from_value(serde_json::json!({
                "type": "s3", "bucket": "contract", "endpoint": moto.endpoint(),
                "region": "us-east-1", "path_style": true, "credentials_file": credentials,
            }))
            .unwrap();
            (store, None, config, Some(moto))
        }
    };
    let unsigned = SigningConfig {
        allow_unsigned: true,
        ..SigningConfig::default()
    };
    Store {
        store,
        faults,
        config,
        layout: SnapshotLayout::new("dr", "prod").unwrap(),
        trust: ManifestTrust::new("prod", &unsigned, None, false).unwrap(),
        dir: Some(dir),
        moto,
    }
}

fn run(kind: Kind, scenario: fn(Store)) {
    scenario(open(kind));
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, minute, 0).unwrap()
}

/// A manifest of snapshot (`created_at`, `revision`) naming `stored`.
fn manifest(created_at: DateTime<Utc>, revision: i64, stored: StoredObject) -> SnapshotManifest {
    SnapshotManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: SnapshotId::new(created_at, revision),
        cluster: "prod".into(),
        label: None,
        etcd: EtcdClusterInfo {
            cluster_id: "cdf818194e3a8c32".into(),
            version: "3.5.16".into(),
            revision,
            raft_index: 10,
            raft_term: 2,
            source_endpoint: "http://127.0.0.1:2379".into(),
            source_member_id: "8e9e05c52164694d".into(),
            members: vec![],
            previous_cluster_id: None,
            replication_generation: None,
            rewound_from_revision: None,
        },
        raw: ObjectDigest {
            size: stored.size,
            sha256: "ab".repeat(32),
        },
        etcd_sha256: "cd".repeat(32),
        stored,
        created_at,
        completed_at: created_at + chrono::Duration::seconds(2),
        duration_seconds: 2.0,
        producer: Producer {
            tool: "etcd-dr contract".into(),
            host: "bastion".into(),
        },
        nodes: vec![],
        signature: None,
        kubernetes: None,
    }
}

/// Uploads `content` as the data object of `attempt` at `id` (zstd, multipart), as a snapshot
/// run does, and returns the object as a manifest names it.
async fn upload(
    store: &Store,
    id: &SnapshotId,
    attempt: &AttemptToken,
    content: &[u8],
) -> StoredObject {
    let name = attempt.object_name(&format!("{DATA_OBJECT_NAME}.zst"));
    upload_to(
        &store.store,
        store,
        id,
        &name,
        content,
        &CancellationToken::new(),
    )
    .await
    .expect("upload")
    .stored
}

/// Uploads `content` as the object `name` of `id` through `target` (the store itself, or a
/// wrapper around it that injects faults).
async fn upload_to(
    target: &Arc<dyn ObjectStore>,
    store: &Store,
    id: &SnapshotId,
    name: &str,
    content: &[u8],
    cancel: &CancellationToken,
) -> Result<UploadedObject, TransportError> {
    let chunks = futures::stream::iter(
        content
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    upload_object(
        target,
        &store.layout.object_path(id, name),
        name,
        chunks,
        &UploadOptions::default(),
        &ShipProgress::default(),
        cancel,
    )
    .await
}

fn placeholder_object() -> StoredObject {
    StoredObject {
        name: format!("0123456789abcdef/{DATA_OBJECT_NAME}.zst"),
        size: 900,
        sha256: "ef".repeat(32),
        compression: Compression::Zstd { level: 3 },
        encryption: None,
    }
}

/// Every key under the cluster's snapshots, sorted.
async fn keys(store: &Store) -> Vec<String> {
    let mut keys: Vec<String> = store
        .store
        .list(Some(store.layout.snapshots_prefix()))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

fn a_manifest_is_committed_once(store: Store) {
    block_on(async {
        let cancel = CancellationToken::new();
        let mut first = manifest(at(0), 10, placeholder_object());
        // A commit whose put fails leaves nothing a reader sees; committing again works.
        if store.arm_next(Call::Put, Fault::Fail) {
            let error = commit_manifest(
                &store.store,
                &store.layout,
                None,
                &mut first.clone(),
                &cancel,
            )
            .await
            .unwrap_err();
            assert!(matches!(error, TransportError::Store { .. }), "{error}");
            let catalog = list_snapshots(&store.store, &store.layout, &store.trust, &cancel)
                .await
                .unwrap();
            assert!(catalog.snapshots.is_empty() && catalog.incomplete.is_empty());
        }
        commit_manifest(&store.store, &store.layout, None, &mut first, &cancel)
            .await
            .unwrap();
        // A second producer's manifest of the same id is refused, and the first stays.
        let mut second = first.clone();
        second.producer.host = "other-bastion".into();
        second.raw.sha256 = "00".repeat(32);
        let error = commit_manifest(&store.store, &store.layout, None, &mut second, &cancel)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, TransportError::AlreadyExists { id, .. } if *id == first.id),
            "{error}"
        );
        let read = read_manifest(
            &store.store,
            &store.layout,
            &store.trust,
            &first.id,
            &cancel,
        )
        .await
        .unwrap();
        assert_eq!(read, first);
    });
}

fn attempts_write_and_remove_only_their_own_folder(store: Store) {
    block_on(async {
        let cancel = CancellationToken::new();
        let id = SnapshotId::new(at(0), 42);
        let (winner, loser) = (AttemptToken::random(), AttemptToken::random());
        let winner_object = upload(&store, &id, &winner, &[1u8; 300_000]).await;
        let loser_object = upload(&store, &id, &loser, &[2u8; 200_000]).await;
        assert_ne!(winner_object.name, loser_object.name);
        assert_eq!(keys(&store).await.len(), 2, "{:?}", keys(&store).await);

        // An upload whose part fails is aborted: it leaves no object.
        let failed = AttemptToken::random();
        if store.arm_next(Call::Part, Fault::Fail) {
            let name = failed.object_name(DATA_OBJECT_NAME);
            let error = upload_to(&store.store, &store, &id, &name, &[3u8; 100_000], &cancel)
                .await
                .unwrap_err();
            assert!(!error.to_string().is_empty());
            assert_eq!(keys(&store).await.len(), 2, "{:?}", keys(&store).await);
        }

        // Before any commit, an attempt removes its own folder and nothing else.
        assert_eq!(
            delete_uncommitted(&store.store, &store.layout, &id, &loser, &cancel)
                .await
                .unwrap(),
            1
        );
        let left = keys(&store).await;
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].contains(winner.as_str()), "{left:?}");

        // Committed: no attempt removes anything any more.
        let mut committed = manifest(at(0), 42, winner_object);
        commit_manifest(&store.store, &store.layout, None, &mut committed, &cancel)
            .await
            .unwrap();
        assert_eq!(
            delete_uncommitted(&store.store, &store.layout, &id, &winner, &cancel)
                .await
                .unwrap(),
            0
        );
        etcd_dr_transport::check_stored_objects(&store.store, &store.layout, &committed, &cancel)
            .await
            .expect("the committed object reads back as its manifest says");
    });
}

fn a_listing_orders_by_revision_and_hides_folders_without_a_manifest(store: Store) {
    block_on(async {
        let cancel = CancellationToken::new();
        // Producer clocks disagree: the later revision has the earlier time.
        for (minute, revision) in [(30, 100), (10, 300), (20, 200)] {
            let mut m = manifest(at(minute), revision, placeholder_object());
            commit_manifest(&store.store, &store.layout, None, &mut m, &cancel)
                .await
                .unwrap();
        }
        // An upload that never committed.
        let orphan = SnapshotId::new(at(40), 400);
        upload(&store, &orphan, &AttemptToken::random(), b"never committed").await;

        let catalog = list_snapshots(&store.store, &store.layout, &store.trust, &cancel)
            .await
            .unwrap();
        let revisions: Vec<i64> = catalog.snapshots.iter().map(|m| m.etcd.revision).collect();
        assert_eq!(revisions, [100, 200, 300], "oldest first, by revision");
        assert_eq!(catalog.newest().unwrap().etcd.revision, 300);
        assert_eq!(catalog.incomplete.len(), 1);
        assert_eq!(catalog.incomplete[0].id, orphan);
    });
}

/// Three snapshots committed at minutes 0, 10, 20 (revisions 10, 20, 30), oldest first.
async fn commit_three_snapshots(
    store: &Store,
    cancel: &CancellationToken,
) -> Vec<SnapshotManifest> {
    let mut committed = Vec::new();
    for (minute, revision) in [(0, 10), (10, 20), (20, 30)] {
        let id = SnapshotId::new(at(minute), revision);
        let object = upload(
            store,
            &id,
            &AttemptToken::random(),
            &[revision as u8; 50_000],
        )
        .await;
        let mut m = manifest(at(minute), revision, object);
        commit_manifest(&store.store, &store.layout, None, &mut m, cancel)
            .await
            .unwrap();
        committed.push(m);
    }
    committed
}

fn retention_deletes_manifests_first_and_keeps_the_newest_intact(store: Store) {
    block_on(async {
        let cancel = CancellationToken::new();
        let committed = commit_three_snapshots(&store, &cancel).await;
        // The newest one is corrupt: its data object is gone.
        let newest = &committed[2];
        store
            .store
            .delete(&store.layout.object_path(&newest.id, &newest.stored.name))
            .await
            .unwrap();

        let policy = RetentionConfig {
            keep_last: Some(1),
            ..RetentionConfig::default()
        };
        let catalog = list_snapshots(&store.store, &store.layout, &store.trust, &cancel)
            .await
            .unwrap();
        let (plan, check) = plan_verified_retention(
            &store.store,
            &store.layout,
            &catalog,
            &policy,
            Utc::now(),
            &cancel,
        )
        .await
        .unwrap();
        // The newest intact one (revision 20) stays beside the corrupt newest; the oldest goes.
        assert_eq!(check.newest_intact.as_ref(), Some(&committed[1].id));
        assert_eq!(plan.expired, [committed[0].id.clone()]);

        apply_retention(&store.store, &store.layout, &plan, &cancel)
            .await
            .unwrap();
        let after = list_snapshots(&store.store, &store.layout, &store.trust, &cancel)
            .await
            .unwrap();
        let revisions: Vec<i64> = after.snapshots.iter().map(|m| m.etcd.revision).collect();
        assert_eq!(revisions, [20, 30]);
        assert!(after.incomplete.is_empty(), "{:?}", after.incomplete);
        let gone = store.layout.snapshot_dir(&committed[0].id);
        let left: Vec<String> = keys(&store).await;
        assert!(
            !left.iter().any(|k| k.starts_with(gone.as_ref())),
            "{left:?}"
        );
    });
}

/// What interrupted uploads left: pending multipart uploads (S3) or staging files (a local
/// directory), by key or path.
fn upload_leftovers(store: &Store) -> Vec<String> {
    if let Some(moto) = &store.moto {
        return moto.pending_multipart_uploads("contract");
    }
    let mut found = Vec::new();
    let mut pending = vec![store.dir.as_ref().unwrap().path().to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().contains('#') {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn a_failed_abort_leaves_a_leftover_that_the_sweep_removes(store: Store) {
    block_on(async {
        let cancel = CancellationToken::new();
        // Every store gets the faults: its own wrapper, or one around it.
        let faults = store
            .faults
            .clone()
            .unwrap_or_else(|| FaultStore::new(store.store.clone()));
        let wrapped: Arc<dyn ObjectStore> = Arc::new(faults.clone());
        faults.arm(Call::Part, faults.count(Call::Part) + 1, Fault::Fail);
        faults.arm(Call::Abort, faults.count(Call::Abort) + 1, Fault::Fail);
        let id = SnapshotId::new(at(0), 5);
        let name = AttemptToken::random().object_name(DATA_OBJECT_NAME);
        upload_to(&wrapped, &store, &id, &name, &[4u8; 100_000], &cancel)
            .await
            .unwrap_err();
        assert_eq!(faults.count(Call::Abort), 1, "the upload was not aborted");
        assert!(keys(&store).await.is_empty(), "{:?}", keys(&store).await);
        if store.moto.is_some() {
            assert_eq!(
                upload_leftovers(&store).len(),
                1,
                "the failed abort left nothing"
            );
        } else {
            // object_store's local store removes its staging file when the upload is dropped
            // (in the background); a SIGKILL leaves one, as planted here.
            let dir = store.config.local_cluster_dir(&store.layout).unwrap();
            std::fs::write(dir.join("snapshots").join("etcd.db#7"), b"partial").unwrap();
        }

        tokio::time::sleep(Duration::from_millis(20)).await;
        let sweep = sweep_upload_leftovers(
            &store.store,
            &store.config,
            &store.layout,
            Duration::ZERO,
            "contract",
            &cancel,
        )
        .await
        .unwrap();
        if store.moto.is_some() {
            assert_eq!(sweep.removed.len(), 1, "{sweep:?}");
        } else {
            assert!(!sweep.removed.is_empty(), "{sweep:?}");
        }
        assert!(sweep.failed.is_empty(), "{sweep:?}");
        assert_eq!(upload_leftovers(&store), Vec::<String>::new());
        // The sweep gave its lease back.
        let lease = store.layout.cluster_dir().join("producer-lease.json");
        assert!(store.store.head(&lease).await.is_err());
    });
}

fn store_faults_during_verification_and_retention_keep_every_committed_snapshot(store: Store) {
    block_on(async {
        let cancel = CancellationToken::new();
        let committed = commit_three_snapshots(&store, &cancel).await;
        let policy = RetentionConfig {
            keep_last: Some(1),
            ..RetentionConfig::default()
        };
        let revisions = || async {
            list_snapshots(&store.store, &store.layout, &store.trust, &cancel)
                .await
                .unwrap()
                .snapshots
                .iter()
                .map(|m| m.etcd.revision)
                .collect::<Vec<i64>>()
        };
        let catalog = list_snapshots(&store.store, &store.layout, &store.trust, &cancel)
            .await
            .unwrap();

        // A get that fails, or whose body stops half-way, is an error, never "corrupt": nothing
        // is planned for deletion on its account.
        for fault in [Fault::Fail, Fault::Cut] {
            if !store.arm_next(Call::Get, fault) {
                return;
            }
            let error = plan_verified_retention(
                &store.store,
                &store.layout,
                &catalog,
                &policy,
                Utc::now(),
                &cancel,
            )
            .await
            .unwrap_err();
            assert!(
                matches!(error, TransportError::Store { .. }),
                "{fault:?}: {error}"
            );
        }
        // A listing that fails or is cut is an error, not an empty or partial catalog.
        for fault in [Fault::Fail, Fault::Cut] {
            store.arm_next(Call::List, fault);
            let error = list_snapshots(&store.store, &store.layout, &store.trust, &cancel)
                .await
                .unwrap_err();
            assert!(
                matches!(error, TransportError::Store { .. }),
                "{fault:?}: {error}"
            );
        }
        assert_eq!(revisions().await, [10, 20, 30]);

        // Deletes that fail, or take effect with their answer lost, stop retention with an
        // error; the snapshots it keeps stay whole.
        let (plan, _) = plan_verified_retention(
            &store.store,
            &store.layout,
            &catalog,
            &policy,
            Utc::now(),
            &cancel,
        )
        .await
        .unwrap();
        assert_eq!(
            plan.expired,
            [committed[0].id.clone(), committed[1].id.clone()]
        );
        store.arm_next(Call::Delete, Fault::Fail);
        apply_retention(&store.store, &store.layout, &plan, &cancel)
            .await
            .unwrap_err();
        assert_eq!(revisions().await, [10, 20, 30], "a failed manifest delete");
        store.arm_next(Call::Delete, Fault::Cut);
        apply_retention(&store.store, &store.layout, &plan, &cancel)
            .await
            .unwrap_err();
        assert_eq!(revisions().await, [20, 30], "the cut delete took effect");
        etcd_dr_transport::check_stored_objects(
            &store.store,
            &store.layout,
            &committed[2],
            &cancel,
        )
        .await
        .expect("the newest snapshot reads back intact");

        // Without faults the same plan finishes; the newest stays whole.
        apply_retention(&store.store, &store.layout, &plan, &cancel)
            .await
            .unwrap();
        assert_eq!(revisions().await, [30]);
        etcd_dr_transport::check_stored_objects(
            &store.store,
            &store.layout,
            &committed[2],
            &cancel,
        )
        .await
        .expect("the newest snapshot reads back intact");
    });
}
