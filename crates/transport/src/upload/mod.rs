//! The streaming upload: plain stream → SHA-256 → zstd → (age) → multipart upload, each stage
//! on its own thread, joined by bounded channels.

mod compress;
mod raw_stages;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use etcd_dr_core::{Compression, ObjectDigest, StoredObject};
use futures::Stream;
use object_store::path::Path;
use object_store::ObjectStore;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::multipart::{Finished, PartUploader};
use crate::{Recipients, TransportError};
use compress::compress_parts;
use raw_stages::{feed_raw_chunks, hash_raw, RAW_QUEUE_BATCHES};

/// How snapshot data is compressed and uploaded.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// zstd level (1–19; 3 is zstd's default and a good trade-off).
    pub zstd_level: i32,
    /// zstd worker threads (0 compresses on the pipeline thread itself; 1, the default, hands
    /// 4 MiB jobs to one worker, which costs less CPU and stores fewer bytes than 0).
    pub zstd_workers: u32,
    /// Multipart part size in bytes (S3 needs at least 5 MiB for all but the last part).
    pub part_size: usize,
    /// Parts uploaded at once; with `part_size` this bounds the memory in flight.
    pub max_concurrent_parts: usize,
    /// age recipients the compressed data is encrypted to; plain when `None`.
    pub encrypt_to: Option<Recipients>,
    /// On shutdown, how long an upload that is completing may go on before it is aborted.
    pub shutdown_grace: std::time::Duration,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            zstd_level: 3,
            zstd_workers: 1,
            part_size: 8 * 1024 * 1024,
            max_concurrent_parts: 2,
            encrypt_to: None,
            shutdown_grace: std::time::Duration::from_secs(20),
        }
    }
}

/// Live byte counters of an upload, for status and metrics.
#[derive(Debug, Default)]
pub struct ShipProgress {
    /// Raw snapshot bytes received from the source so far.
    pub raw_bytes: AtomicU64,
    /// Compressed bytes handed to the store so far.
    pub stored_bytes: AtomicU64,
    /// Raw bytes the whole transfer is expected to have (etcd's reported database size, a
    /// manifest's plain size); 0 while unknown. Only for showing an ETA: never checked.
    pub expected_raw_bytes: AtomicU64,
}

impl ShipProgress {
    /// Zero on every counter, for the next transfer.
    pub fn reset(&self) {
        self.raw_bytes.store(0, Ordering::Relaxed);
        self.stored_bytes.store(0, Ordering::Relaxed);
        self.expected_raw_bytes.store(0, Ordering::Relaxed);
    }
}

/// A sink that counts the plain bytes written through it into a [`ShipProgress`].
pub struct CountingWriter<W> {
    inner: W,
    progress: Arc<ShipProgress>,
}

impl<W> CountingWriter<W> {
    /// Counts into `progress`.
    pub fn new(inner: W, progress: Arc<ShipProgress>) -> Self {
        Self { inner, progress }
    }

    /// The inner sink back.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(data)?;
        self.progress
            .raw_bytes
            .fetch_add(written as u64, Ordering::Relaxed);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl UploadOptions {
    /// The stored name of an object whose plain name is `name` (e.g. `etcd.db.zst`): with
    /// `.age` appended when it is encrypted.
    pub fn stored_name(&self, name: &str) -> String {
        match self.encrypt_to {
            Some(_) => format!("{name}{}", crate::ENCRYPTED_SUFFIX),
            None => name.to_string(),
        }
    }
}

/// An object uploaded by [`upload_object`].
#[derive(Debug, Clone)]
pub struct UploadedObject {
    /// The plain byte stream as the source gave it.
    pub raw: ObjectDigest,
    /// The object as stored.
    pub stored: StoredObject,
}

/// What was uploaded: enough to write the manifest.
#[derive(Debug, Clone)]
pub struct UploadedData {
    /// The plain snapshot as the source streamed it.
    pub raw: ObjectDigest,
    /// etcd's own SHA-256 trailer, checked against the content.
    pub etcd_sha256: String,
    /// The object as stored.
    pub stored: StoredObject,
}

/// Streams `chunks` (an etcd snapshot) through SHA-256, zstd and (with
/// [`UploadOptions::encrypt_to`]) age into a multipart upload at `location`, stored as `name`
/// in the snapshot's folder. Memory stays bounded by the part size times the parts in flight,
/// whatever the snapshot size.
///
/// On any failure or cancellation the multipart upload is aborted, so nothing is left behind
/// (no object, no orphan parts). The etcd trailer is checked before the upload is completed: a
/// stream that fails its integrity check never becomes an object.
pub async fn upload_snapshot_data<S, E>(
    store: &Arc<dyn ObjectStore>,
    location: &Path,
    name: &str,
    chunks: S,
    options: &UploadOptions,
    progress: &ShipProgress,
    cancel: &CancellationToken,
) -> Result<UploadedData, TransportError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    let (sums, stored) = upload_stream(
        store, location, name, chunks, options, progress, cancel, true,
    )
    .await?;
    let etcd_sha256 = sums.etcd_sha256.ok_or_else(|| {
        TransportError::Pipeline("the etcd trailer was checked before the upload completed".into())
    })?;
    Ok(UploadedData {
        raw: ObjectDigest {
            size: sums.size,
            sha256: sums.file_sha256,
        },
        etcd_sha256,
        stored,
    })
}

/// Streams any byte stream (a node's tar, say) through SHA-256, zstd and (with
/// [`UploadOptions::encrypt_to`]) age into a multipart upload at `location`, stored as `name`
/// in the snapshot's folder; the same pipeline and guarantees as [`upload_snapshot_data`],
/// without the etcd trailer check.
pub async fn upload_object<S, E>(
    store: &Arc<dyn ObjectStore>,
    location: &Path,
    name: &str,
    chunks: S,
    options: &UploadOptions,
    progress: &ShipProgress,
    cancel: &CancellationToken,
) -> Result<UploadedObject, TransportError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    let (sums, stored) = upload_stream(
        store, location, name, chunks, options, progress, cancel, false,
    )
    .await?;
    Ok(UploadedObject {
        raw: ObjectDigest {
            size: sums.size,
            sha256: sums.file_sha256,
        },
        stored,
    })
}

#[allow(clippy::too_many_arguments)]
async fn upload_stream<S, E>(
    store: &Arc<dyn ObjectStore>,
    location: &Path,
    name: &str,
    chunks: S,
    options: &UploadOptions,
    progress: &ShipProgress,
    cancel: &CancellationToken,
    check_etcd_trailer: bool,
) -> Result<(crate::digest::EtcdStreamSums, StoredObject), TransportError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    // Built before the upload starts: bad recipients never leave an upload to abort.
    let encryptor = options
        .encrypt_to
        .as_ref()
        .map(Recipients::encryptor)
        .transpose()?;
    let mut upload = PartUploader::start(store, location, cancel).await?;

    // Three stages, each on its own thread so they overlap: the async side receives, one
    // blocking thread hashes the plain stream, another compresses (and encrypts) and cuts parts.
    let (raw_tx, raw_rx) = mpsc::channel::<Vec<Bytes>>(RAW_QUEUE_BATCHES);
    let (hashed_tx, hashed_rx) = mpsc::channel::<Vec<Bytes>>(RAW_QUEUE_BATCHES);
    let (part_tx, mut part_rx) = mpsc::channel::<Bytes>(1);
    let hasher = tokio::task::spawn_blocking(move || hash_raw(raw_rx, hashed_tx));
    let compressor = {
        let options = options.clone();
        tokio::task::spawn_blocking(move || compress_parts(hashed_rx, part_tx, &options, encryptor))
    };

    let feed = feed_raw_chunks(chunks, raw_tx, progress);
    let send_parts = async {
        // Room first, then the next part: a part taken while every slot is busy would be one
        // more part-sized buffer alive (the one queued and the one being filled are the others).
        loop {
            upload
                .wait_for_capacity(options.max_concurrent_parts)
                .await?;
            let Some(part) = part_rx.recv().await else {
                break;
            };
            progress
                .stored_bytes
                .fetch_add(part.len() as u64, Ordering::Relaxed);
            upload.put(part);
        }
        Ok::<(), TransportError>(())
    };

    let outcome = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(TransportError::Cancelled),
        result = async { tokio::try_join!(feed, send_parts) } => result.map(|_| ()),
    };
    // The threads end on their own once their input closes or their output is gone.
    drop(part_rx);
    let hashed = hasher
        .await
        .map_err(|e| TransportError::Pipeline(format!("hasher thread failed: {e}")));
    let compressed = compressor
        .await
        .map_err(|e| TransportError::Pipeline(format!("compressor thread failed: {e}")));

    let (raw, sums) = match (outcome, hashed, compressed) {
        (Ok(()), Ok(raw), Ok(Ok(sums))) => (raw, sums),
        (Err(e), _, _) | (Ok(()), Err(e), _) | (Ok(()), _, Err(e)) | (Ok(()), _, Ok(Err(e))) => {
            upload.abort().await;
            return Err(e);
        }
    };
    if check_etcd_trailer && raw.etcd_sha256.is_none() {
        upload.abort().await;
        return Err(TransportError::EtcdHashMismatch {
            detail: format!(
                "the last 32 bytes of the {}-byte stream ({}) are not the SHA-256 of the rest",
                raw.size, raw.trailer
            ),
        });
    };

    // With a small database the whole upload happens here: shutdown gets a bounded grace,
    // then an abort, never a dropped upload.
    match upload.finish(cancel, options.shutdown_grace).await? {
        Finished::Completed => {}
        Finished::Cancelled => return Err(TransportError::Cancelled),
    }

    let stored = StoredObject {
        name: name.to_string(),
        size: sums.stored_size,
        sha256: sums.stored_sha256,
        compression: Compression::Zstd {
            level: options.zstd_level,
        },
        encryption: options.encrypt_to.as_ref().map(Recipients::manifest_entry),
    };
    Ok((raw, stored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;
    use sha2::{Digest, Sha256};

    /// A plain stream shaped like etcd's: content, then the SHA-256 of the content.
    fn etcd_like(len: usize) -> Vec<u8> {
        let mut content: Vec<u8> = (0..len as u32)
            .map(|i| {
                (i.wrapping_mul(2_654_435_761) >> 13) as u8 & if i % 3 == 0 { 0xff } else { 0x0f }
            })
            .collect();
        let trailer = Sha256::digest(&content);
        content.extend_from_slice(&trailer);
        content
    }

    fn chunked(stream: &[u8], size: usize) -> Vec<Result<Bytes, std::io::Error>> {
        stream
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect()
    }

    fn small_parts(zstd_workers: u32) -> UploadOptions {
        UploadOptions {
            zstd_workers,
            part_size: 64 * 1024,
            ..UploadOptions::default()
        }
    }

    async fn objects(store: &Arc<dyn ObjectStore>) -> usize {
        store.list(None).count().await
    }

    #[tokio::test]
    async fn the_stored_object_decompresses_to_the_stream_and_matches_its_sums() {
        let stream = etcd_like(1_500_000);
        for workers in [0, 1] {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let location = Path::from("s/etcd.db.zst");
            let progress = ShipProgress::default();
            let uploaded = upload_snapshot_data(
                &store,
                &location,
                "etcd.db.zst",
                futures::stream::iter(chunked(&stream, 32 * 1024)),
                &small_parts(workers),
                &progress,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
            let stored = store.get(&location).await.unwrap().bytes().await.unwrap();
            assert_eq!(
                zstd::decode_all(&stored[..]).unwrap(),
                stream,
                "workers {workers}"
            );
            assert_eq!(uploaded.raw.size, stream.len() as u64);
            assert_eq!(uploaded.raw.sha256, hex::encode(Sha256::digest(&stream)));
            assert_eq!(
                uploaded.etcd_sha256,
                hex::encode(&stream[stream.len() - 32..])
            );
            assert_eq!(uploaded.stored.size, stored.len() as u64);
            assert_eq!(uploaded.stored.sha256, hex::encode(Sha256::digest(&stored)));
            assert_eq!(
                progress.raw_bytes.load(Ordering::Relaxed),
                stream.len() as u64
            );
            assert_eq!(
                progress.stored_bytes.load(Ordering::Relaxed),
                stored.len() as u64
            );
        }
    }

    #[tokio::test]
    async fn a_stream_whose_trailer_does_not_match_leaves_no_object() {
        let mut stream = etcd_like(300_000);
        stream[1000] ^= 0x40;
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let error = upload_snapshot_data(
            &store,
            &Path::from("s/etcd.db.zst"),
            "etcd.db.zst",
            futures::stream::iter(chunked(&stream, 32 * 1024)),
            &small_parts(0),
            &ShipProgress::default(),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, TransportError::EtcdHashMismatch { .. }),
            "{error}"
        );
        assert_eq!(objects(&store).await, 0);
    }

    #[tokio::test]
    async fn a_source_that_fails_midway_leaves_no_object() {
        let stream = etcd_like(600_000);
        let mut chunks = chunked(&stream, 32 * 1024);
        chunks.truncate(10);
        chunks.push(Err(std::io::Error::other("connection reset")));
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let error = upload_snapshot_data(
            &store,
            &Path::from("s/etcd.db.zst"),
            "etcd.db.zst",
            futures::stream::iter(chunks),
            &small_parts(0),
            &ShipProgress::default(),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        match error {
            TransportError::Source { bytes_read, .. } => assert_eq!(bytes_read, 10 * 32 * 1024),
            other => panic!("expected a source error, got {other}"),
        }
        assert_eq!(objects(&store).await, 0);
    }
}
