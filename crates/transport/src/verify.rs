//! Verifying a stored snapshot as the secondary does: the data and every stored node bundle
//! streamed back through every check, into nothing or into a pre-staged copy.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use etcd_dr_core::{NodeBundle, SnapshotManifest};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::{
    file_digest, read_object, read_snapshot, Identities, PrestageDir, ShipProgress, SnapshotLayout,
    TransportError,
};

/// Why a stored snapshot was not verified, as a poller must tell it apart.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFailure {
    /// The stored snapshot does not match its manifest; reading it again will not help.
    #[error("{0}")]
    Corrupt(String),
    /// The store did not answer; try again later.
    #[error("{0}")]
    Unavailable(String),
    /// Writing the local copy failed (disk full, permissions).
    #[error("{0}")]
    Local(String),
    /// Shutdown.
    #[error("cancelled")]
    Cancelled,
}

/// Why pre-staging failed.
#[derive(Debug, thiserror::Error)]
pub enum StageFailure {
    /// The stored snapshot could not be verified.
    #[error(transparent)]
    Verify(VerifyFailure),
    /// The local copy could not be written or does not match (the snapshot itself may be
    /// fine: verify it without staging).
    #[error("{0}")]
    Local(String),
}

/// What a verification reads with and reports to.
pub struct Verification<'a> {
    /// The store.
    pub store: &'a Arc<dyn ObjectStore>,
    /// The cluster's folder in it.
    pub layout: &'a SnapshotLayout,
    /// The identities encrypted snapshots open with.
    pub identities: &'a Identities,
    /// Plain bytes read so far go into `raw_bytes`.
    pub progress: &'a Arc<ShipProgress>,
    /// Shutdown.
    pub cancel: &'a CancellationToken,
}

impl Verification<'_> {
    /// Streams the snapshot and its stored node bundles back through every check, keeping
    /// nothing.
    pub async fn check(&self, manifest: &SnapshotManifest) -> Result<(), VerifyFailure> {
        self.stream_back(manifest, std::io::sink())
            .await
            .map(|_| ())
    }

    /// Checks the snapshot and leaves its verified plain copy in `dir` as `<id>.db`, then
    /// removes the older copies there: the newest verified copy is always on disk. A copy an
    /// earlier run staged is kept once it matches (the store's copy is checked all the same);
    /// one that differs is left in place and reported. Returns the copy's path.
    pub async fn stage(
        &self,
        manifest: &SnapshotManifest,
        dir: &PrestageDir,
    ) -> Result<PathBuf, StageFailure> {
        let id = &manifest.id;
        let target = dir.staged_path(id);
        if target.exists() {
            self.check(manifest).await.map_err(StageFailure::Verify)?;
            let (_, actual) = file_digest(&target)
                .await
                .map_err(|e| StageFailure::Local(e.to_string()))?;
            if actual != manifest.raw.sha256 {
                return Err(StageFailure::Local(format!(
                    "`{}` exists but differs from snapshot {id} (SHA-256 {actual}); it was left in place, move it away",
                    target.display()
                )));
            }
            dir.remove_all_but(id);
            return Ok(target);
        }

        let (partial, writer) = dir
            .begin(id)
            .map_err(|e| StageFailure::Local(e.to_string()))?;
        // On failure the partial file goes with `partial`.
        let written =
            self.stream_back(manifest, writer)
                .await
                .map_err(|failure| match failure {
                    VerifyFailure::Local(message) => StageFailure::Local(message),
                    other => StageFailure::Verify(other),
                })?;
        let path = partial
            .commit(written)
            .await
            .map_err(|e| StageFailure::Local(e.to_string()))?;
        tracing::info!(id = %id, path = %path.display(), "snapshot pre-staged");
        dir.remove_all_but(id);
        Ok(path)
    }

    /// Streams the snapshot into `sink` through every check, counting plain bytes as progress,
    /// then its node bundles (the service-account keys above all are part of a usable
    /// snapshot). A failing sink is a local problem, not a corrupt snapshot.
    async fn stream_back<W: Write + Send + 'static>(
        &self,
        manifest: &SnapshotManifest,
        sink: W,
    ) -> Result<W, VerifyFailure> {
        let sink_failed = Arc::new(AtomicBool::new(false));
        let counting = CountingWriter {
            inner: sink,
            progress: self.progress.clone(),
            failed: sink_failed.clone(),
        };
        let read = read_snapshot(
            self.store,
            self.layout,
            manifest,
            self.identities,
            counting,
            self.cancel,
        )
        .await;
        let read = match read {
            Ok((_, writer)) => self.check_bundles(manifest).await.map(|()| writer),
            Err(error) => Err(error),
        };
        match read {
            Ok(writer) => Ok(writer.inner),
            Err(TransportError::Cancelled) => Err(VerifyFailure::Cancelled),
            Err(error) if sink_failed.load(Ordering::Relaxed) => {
                Err(VerifyFailure::Local(format!("writing locally: {error}")))
            }
            Err(error @ TransportError::Corrupt { .. }) => {
                Err(VerifyFailure::Corrupt(error.to_string()))
            }
            Err(error) => Err(VerifyFailure::Unavailable(error.to_string())),
        }
    }

    /// Streams every stored node bundle of the snapshot back through every check.
    async fn check_bundles(&self, manifest: &SnapshotManifest) -> Result<(), TransportError> {
        for bundle in &manifest.nodes {
            if let NodeBundle::Stored { object, raw, .. } = bundle {
                read_object(
                    self.store,
                    self.layout,
                    &manifest.id,
                    object,
                    raw,
                    self.identities,
                    std::io::sink(),
                    self.cancel,
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// Counts plain bytes into the progress counters, and remembers whether the sink failed.
struct CountingWriter<W> {
    inner: W,
    progress: Arc<ShipProgress>,
    failed: Arc<AtomicBool>,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self.inner.write(data) {
            Ok(written) => {
                self.progress
                    .raw_bytes
                    .fetch_add(written as u64, Ordering::Relaxed);
                Ok(written)
            }
            Err(error) => {
                self.failed.store(true, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner
            .flush()
            .inspect_err(|_| self.failed.store(true, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{commit_manifest, upload_snapshot_data, UploadOptions, DATA_OBJECT_NAME};
    use bytes::Bytes;
    use etcd_dr_core::SnapshotId;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;

    /// A plain stream shaped like etcd's: content, then the SHA-256 of the content.
    fn etcd_like(len: usize, seed: u8) -> Vec<u8> {
        let mut content: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let trailer = Sha256::digest(&content);
        content.extend_from_slice(&trailer);
        content
    }

    struct Stored {
        store: Arc<dyn ObjectStore>,
        layout: SnapshotLayout,
        progress: Arc<ShipProgress>,
        cancel: CancellationToken,
        identities: Identities,
    }

    impl Stored {
        fn new() -> Self {
            Self {
                store: Arc::new(InMemory::new()),
                layout: SnapshotLayout::new("dr", "prod").unwrap(),
                progress: Arc::new(ShipProgress::default()),
                cancel: CancellationToken::new(),
                identities: Identities::none(),
            }
        }

        fn verification(&self) -> Verification<'_> {
            Verification {
                store: &self.store,
                layout: &self.layout,
                identities: &self.identities,
                progress: &self.progress,
                cancel: &self.cancel,
            }
        }

        /// Uploads `plain` as snapshot `revision` and commits its manifest.
        async fn snapshot(&self, revision: i64, plain: &[u8]) -> SnapshotManifest {
            let id = SnapshotId::new(chrono::Utc::now(), revision);
            let chunks: Vec<Result<Bytes, std::io::Error>> = plain
                .chunks(32 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let data = upload_snapshot_data(
                &self.store,
                &self.layout.data_path(&id),
                DATA_OBJECT_NAME,
                futures::stream::iter(chunks),
                &UploadOptions::default(),
                &ShipProgress::default(),
                &self.cancel,
            )
            .await
            .unwrap();
            let mut manifest: SnapshotManifest = serde_json::from_value(serde_json::json!({
                "format_version": 1,
                "id": id.to_string(),
                "cluster": "prod",
                "etcd": {"cluster_id": "1", "version": "3.5.16", "revision": revision, "raft_index": 1,
                         "raft_term": 1, "source_endpoint": "x", "source_member_id": "1", "members": []},
                "raw": data.raw,
                "etcd_sha256": data.etcd_sha256,
                "stored": data.stored,
                "created_at": "2026-11-25T12:00:00Z",
                "completed_at": "2026-11-25T12:00:01Z",
                "duration_seconds": 1.0,
                "producer": {"tool": "t", "host": "h"},
            }))
            .unwrap();
            commit_manifest(
                &self.store,
                &self.layout,
                None,
                &mut manifest,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
            manifest
        }
    }

    #[tokio::test]
    async fn a_staged_copy_is_the_plain_snapshot_and_replaces_older_ones() {
        let stored = Stored::new();
        let scratch = tempfile::tempdir().unwrap();
        let dir = PrestageDir::new(scratch.path());
        let (old_plain, new_plain) = (etcd_like(200_000, 7), etcd_like(300_000, 13));
        let old = stored.snapshot(5, &old_plain).await;
        let new = stored.snapshot(9, &new_plain).await;
        stored.verification().stage(&old, &dir).await.unwrap();
        let path = stored.verification().stage(&new, &dir).await.unwrap();
        assert_eq!(path, dir.staged_path(&new.id));
        assert_eq!(std::fs::read(&path).unwrap(), new_plain);
        let staged: Vec<SnapshotId> = dir.staged().unwrap().into_iter().map(|(i, _)| i).collect();
        assert_eq!(staged, std::slice::from_ref(&new.id));
        assert_eq!(
            stored.progress.raw_bytes.load(Ordering::Relaxed),
            (old_plain.len() + new_plain.len()) as u64
        );
    }

    #[tokio::test]
    async fn a_matching_copy_is_kept_and_a_differing_one_is_left_and_reported() {
        let stored = Stored::new();
        let scratch = tempfile::tempdir().unwrap();
        let dir = PrestageDir::new(scratch.path());
        let manifest = stored.snapshot(5, &etcd_like(100_000, 3)).await;
        let path = stored.verification().stage(&manifest, &dir).await.unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        stored.verification().stage(&manifest, &dir).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);

        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        match stored.verification().stage(&manifest, &dir).await {
            Err(StageFailure::Local(message)) => assert!(message.contains("differs"), "{message}"),
            other => panic!("expected a local failure, got {other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[tokio::test]
    async fn a_corrupt_stored_snapshot_is_reported_and_nothing_is_staged() {
        let stored = Stored::new();
        let scratch = tempfile::tempdir().unwrap();
        let dir = PrestageDir::new(scratch.path());
        let manifest = stored.snapshot(5, &etcd_like(100_000, 3)).await;
        let key = stored.layout.data_path(&manifest.id);
        let mut object = stored
            .store
            .get(&key)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let middle = object.len() / 2;
        object[middle] ^= 0x01;
        stored
            .store
            .put(&key, PutPayload::from(Bytes::from(object)))
            .await
            .unwrap();
        match stored.verification().stage(&manifest, &dir).await {
            Err(StageFailure::Verify(VerifyFailure::Corrupt(message))) => {
                assert!(message.contains(&manifest.id.to_string()), "{message}")
            }
            other => panic!("expected a corrupt snapshot, got {other:?}"),
        }
        assert!(std::fs::read_dir(scratch.path()).unwrap().next().is_none());
        assert!(matches!(
            stored.verification().check(&manifest).await,
            Err(VerifyFailure::Corrupt(_))
        ));
    }
}
