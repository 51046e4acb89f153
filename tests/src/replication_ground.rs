//! Shared parts of the replication tests: reading a keyspace as etcd reports it, a base
//! snapshot, a capture running into a store, a restore at a revision, and a store that loses
//! the answer of a put.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use etcd_dr_replication::{
    capture_generation, replay_to_revision, CaptureOptions, CaptureProgress, CaptureStart,
    ChainLink, ChainReader, EtcdBinaries, GenerationId, ReplayEngine, ReplayReport, ReplayRequest,
    ReplicationError, ReplicationLayout, SegmentStore,
};
use etcd_dr_transport::Identities;
use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions as StoreGetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{EtcdCluster, EtcdVersion};

/// One key as etcd reports it: key, value, create and mod revision, version, lease.
pub type KeyState = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);

/// Every key at `revision` (0: the newest), as etcd reports it (answers of any size).
pub async fn keyspace(client: &mut Client, revision: i64) -> Vec<KeyState> {
    let mut options = GetOptions::new().with_all_keys();
    if revision > 0 {
        options = options.with_revision(revision);
    }
    let response = client
        .kv_client()
        .max_decoding_message_size(1 << 30)
        .get("", Some(options))
        .await
        .expect("range");
    response
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key().to_vec(),
                kv.value().to_vec(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease(),
            )
        })
        .collect()
}

/// The member's current revision.
pub async fn revision_of(client: &mut Client) -> i64 {
    let status = client.status().await.expect("status");
    status.header().expect("header").revision()
}

/// Starts `db` as a restored etcd of `version` and checks that it is at `target` and holds
/// exactly `expected` (the source's keyspace at `target`); `engine` names the replay in the
/// failures. Returns the running etcd and a client of it.
pub async fn assert_restored(
    db: &Path,
    version: EtcdVersion,
    target: i64,
    expected: &[KeyState],
    engine: &str,
) -> (EtcdCluster, Client) {
    let restored = EtcdCluster::start_restored(db, version);
    let mut client = restored.client().await;
    assert_eq!(
        revision_of(&mut client).await,
        target,
        "revision ({engine})"
    );
    let got = keyspace(&mut client, 0).await;
    assert_eq!(
        got.len(),
        expected.len(),
        "key count at revision {target} ({engine})"
    );
    assert!(
        got == expected,
        "keyspace differs at revision {target} ({engine})"
    );
    (restored, client)
}

/// Writes etcd's snapshot of `client`'s member to `path`.
pub async fn snapshot_to(client: &mut Client, path: &Path) {
    let mut stream = client.snapshot().await.expect("snapshot");
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await.expect("snapshot message") {
        bytes.extend_from_slice(message.blob());
    }
    std::fs::write(path, bytes).expect("write base snapshot");
}

/// A generation that was already being captured when the one-off snapshot of `manifest` (JSON,
/// no `etcd.replication_generation`) was taken: started a second before it, based a revision
/// below it. That snapshot is then a base of the generation by its time (the daemon's own
/// snapshots name their generation instead).
pub fn generation_around(manifest: &serde_json::Value) -> GenerationId {
    let created_at: chrono::DateTime<chrono::Utc> = manifest["created_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("the manifest's created_at");
    let revision = manifest["etcd"]["revision"].as_i64().expect("its revision");
    GenerationId::new(created_at - chrono::TimeDelta::seconds(1), revision - 1)
}

/// The `etcd` replay engine with `version`'s `etcd` and `etcdutl`.
pub fn etcd_engine(version: EtcdVersion) -> ReplayEngine {
    ReplayEngine::Etcd(EtcdBinaries {
        etcd: version.bin("etcd"),
        etcdutl: version.bin("etcdutl"),
    })
}

/// Both replay engines, the default (`backend`) first, for tests that prove them alike.
pub fn both_engines(version: EtcdVersion) -> [ReplayEngine; 2] {
    [ReplayEngine::Backend, etcd_engine(version)]
}

/// Where a capture writes, and from which base.
#[derive(Clone)]
pub struct CaptureTarget {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Its layout.
    pub layout: ReplicationLayout,
    /// The generation written.
    pub generation: GenerationId,
    /// The base snapshot (`.db`).
    pub base_db: PathBuf,
    /// The base snapshot's revision.
    pub base_revision: i64,
}

impl CaptureTarget {
    /// Takes a base snapshot of `client`'s etcd into `dir` and a new generation above it,
    /// storing into `store`.
    pub async fn start_above_snapshot(
        client: &mut Client,
        dir: &Path,
        store: Arc<dyn ObjectStore>,
    ) -> Self {
        let base_db = dir.join("base.db");
        snapshot_to(client, &base_db).await;
        let base_revision = revision_of(client).await;
        Self {
            store,
            layout: ReplicationLayout::new("dr", "prod").expect("layout"),
            generation: GenerationId::new(chrono::Utc::now(), base_revision),
            base_db,
            base_revision,
        }
    }

    /// The segment sink (plain segments, signed with the test process's key for `prod`).
    pub fn sink(&self) -> SegmentStore {
        SegmentStore {
            store: self.store.clone(),
            layout: self.layout.clone(),
            recipients: None,
            signer: Some(crate::segment_signer(&crate::test_signing_key().0, "prod")),
        }
    }

    /// Replays onto the base snapshot up to `target` into `dir` with `engine`; returns the
    /// written `.db` and the report.
    pub async fn restore_at(
        &self,
        dir: &Path,
        target: i64,
        engine: &ReplayEngine,
    ) -> Result<(PathBuf, ReplayReport), ReplicationError> {
        let cancel = CancellationToken::new();
        let mut chain = ChainReader::open(
            self.store.clone(),
            self.layout.clone(),
            self.generation.clone(),
            Identities::none(),
            crate::test_trust("prod", false),
            &cancel,
        )
        .await?;
        let output_db = dir.join(format!("restored-{target}-{}.db", rand::random::<u32>()));
        let request = ReplayRequest {
            base_db: self.base_db.clone(),
            target_revision: target,
            output_db: output_db.clone(),
            work_dir: dir.to_path_buf(),
            base_cluster_id: None,
            progress: None,
        };
        let report = replay_to_revision(engine, &mut chain, &request, &cancel).await?;
        Ok((output_db, report))
    }
}

/// A capture running in a task until stopped.
pub struct CaptureRun {
    /// Its progress.
    pub progress: watch::Receiver<CaptureProgress>,
    cancel: CancellationToken,
    task: JoinHandle<Result<Option<ChainLink>, ReplicationError>>,
}

impl CaptureRun {
    /// Starts capturing `target`'s generation from `resume` (or its start).
    pub fn start(
        client: Client,
        target: &CaptureTarget,
        resume: Option<ChainLink>,
        options: CaptureOptions,
    ) -> Self {
        let (progress_tx, progress) = watch::channel(CaptureProgress::default());
        let cancel = CancellationToken::new();
        let start = CaptureStart {
            generation: target.generation.clone(),
            resume,
        };
        let sink = target.sink();
        let task = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                capture_generation(&client, sink, start, &options, &progress_tx, &cancel).await
            })
        };
        Self {
            progress,
            cancel,
            task,
        }
    }

    /// Waits (at most `timeout`) until `revision` is stored, then stops the capture cleanly.
    pub async fn stop_when_stored(
        mut self,
        revision: i64,
        timeout: Duration,
    ) -> Result<Option<ChainLink>, ReplicationError> {
        tokio::time::timeout(
            timeout,
            self.progress.wait_for(|p| p.stored_revision >= revision),
        )
        .await
        .unwrap_or_else(|_| panic!("revision {revision} stored within {timeout:?}"))
        .expect("capture running");
        self.cancel.cancel();
        self.task.await.expect("capture task")
    }
}

/// A store whose chosen puts are carried out but answered with a transient error, as when
/// the connection breaks after the server stored the object.
#[derive(Debug)]
pub struct LostAnswerStore {
    inner: Arc<dyn ObjectStore>,
    puts: AtomicUsize,
    lose: Vec<usize>,
}

impl LostAnswerStore {
    /// Loses the answers of the `lose`-th puts (counted from 1).
    pub fn new(inner: Arc<dyn ObjectStore>, lose: Vec<usize>) -> Self {
        Self {
            inner,
            puts: AtomicUsize::new(0),
            lose,
        }
    }

    /// Puts made so far (retries included).
    pub fn puts(&self) -> usize {
        self.puts.load(Ordering::SeqCst)
    }
}

impl std::fmt::Display for LostAnswerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LostAnswerStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for LostAnswerStore {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let nth = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
        let result = self.inner.put_opts(location, payload, opts).await;
        if self.lose.contains(&nth) && result.is_ok() {
            return Err(object_store::Error::Generic {
                store: "LostAnswerStore",
                source: format!("connection reset after put {nth} of `{location}` was stored")
                    .into(),
            });
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: StoreGetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
