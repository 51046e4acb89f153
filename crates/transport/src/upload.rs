use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use etcd_dr_core::{Compression, ObjectDigest, StoredObject};
use futures::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::digest::EtcdStreamDigest;
use crate::{Recipients, TransportError};

/// How snapshot data is compressed and uploaded.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// zstd level (1–19; 3 is zstd's default and a good trade-off).
    pub zstd_level: i32,
    /// zstd worker threads (0 compresses on the pipeline thread itself).
    pub zstd_workers: u32,
    /// Multipart part size in bytes (S3 needs at least 5 MiB for all but the last part).
    pub part_size: usize,
    /// Parts uploaded at once; with `part_size` this bounds the memory in flight.
    pub max_concurrent_parts: usize,
    /// age recipients the compressed data is encrypted to; plain when `None`.
    pub encrypt_to: Option<Recipients>,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            zstd_level: 3,
            zstd_workers: 0,
            part_size: 8 * 1024 * 1024,
            max_concurrent_parts: 2,
            encrypt_to: None,
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

/// Raw chunks queued between the source and the compressor: etcd sends 32 KiB messages, so this
/// holds about 512 KiB.
const RAW_QUEUE_CHUNKS: usize = 16;

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
    let upload = store
        .put_multipart(location)
        .await
        .map_err(|e| TransportError::store("multipart start", location, e))?;
    let mut upload = WriteMultipart::new_with_chunk_size(upload, options.part_size);

    let (raw_tx, raw_rx) = mpsc::channel::<Bytes>(RAW_QUEUE_CHUNKS);
    let (part_tx, mut part_rx) = mpsc::channel::<Bytes>(1);
    let compressor = {
        let options = options.clone();
        tokio::task::spawn_blocking(move || compress_parts(raw_rx, part_tx, &options, encryptor))
    };

    let feed = feed_raw_chunks(chunks, raw_tx, progress);
    let send_parts = async {
        while let Some(part) = part_rx.recv().await {
            upload
                .wait_for_capacity(options.max_concurrent_parts)
                .await
                .map_err(|e| TransportError::store("multipart part", location, e))?;
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
    // The compressor ends on its own once its input closes or its output is gone.
    drop(part_rx);
    let compressed = compressor
        .await
        .map_err(|e| TransportError::Pipeline(format!("compressor thread failed: {e}")));

    let sums = match (outcome, compressed) {
        (Ok(()), Ok(Ok(sums))) => sums,
        (Err(e), _) | (Ok(()), Err(e)) | (Ok(()), Ok(Err(e))) => {
            abort(upload, location).await;
            return Err(e);
        }
    };
    if check_etcd_trailer && sums.raw.etcd_sha256.is_none() {
        abort(upload, location).await;
        return Err(TransportError::EtcdHashMismatch {
            detail: format!(
                "the last 32 bytes of the {}-byte stream ({}) are not the SHA-256 of the rest",
                sums.raw.size, sums.raw.trailer
            ),
        });
    };

    let finished = tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        result = upload.finish() => Some(result),
    };
    match finished {
        Some(Ok(_)) => {}
        Some(Err(e)) => return Err(TransportError::store("multipart complete", location, e)),
        None => {
            // `finish` was dropped mid-way: the upload cannot be reached any more to abort it.
            // Completing is atomic in every store we support, so either the object exists
            // without a manifest (invisible, pruned later) or nothing does.
            return Err(TransportError::Cancelled);
        }
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
    Ok((sums.raw, stored))
}

async fn abort(upload: WriteMultipart, location: &Path) {
    if let Err(error) = upload.abort().await {
        tracing::warn!(key = %location, %error, "could not abort multipart upload; the store's lifecycle rules must remove its parts");
    }
}

async fn feed_raw_chunks<S, E>(
    mut chunks: S,
    raw_tx: mpsc::Sender<Bytes>,
    progress: &ShipProgress,
) -> Result<(), TransportError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut bytes_read = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| TransportError::Source {
            bytes_read,
            source: Box::new(e),
        })?;
        bytes_read += chunk.len() as u64;
        progress
            .raw_bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if raw_tx.send(chunk).await.is_err() {
            // The compressor stopped; its own error says why.
            break;
        }
    }
    Ok(())
}

struct CompressedSums {
    raw: crate::digest::EtcdStreamSums,
    stored_size: u64,
    stored_sha256: String,
}

/// Runs on a blocking thread: hashes raw chunks, compresses (and encrypts) them and cuts the
/// output into parts.
fn compress_parts(
    mut raw_rx: mpsc::Receiver<Bytes>,
    part_tx: mpsc::Sender<Bytes>,
    options: &UploadOptions,
    encryptor: Option<age::Encryptor>,
) -> Result<CompressedSums, TransportError> {
    let pipeline_error =
        |e: std::io::Error| TransportError::Pipeline(format!("zstd compression: {e}"));
    let parts = PartWriter::new(part_tx, options.part_size);
    let stored = match encryptor {
        Some(encryptor) => StoredWriter::Age(
            encryptor
                .wrap_output(parts)
                .map_err(|e| TransportError::Pipeline(format!("age encryption: {e}")))?,
        ),
        None => StoredWriter::Plain(parts),
    };
    let mut encoder =
        zstd::stream::write::Encoder::new(stored, options.zstd_level).map_err(pipeline_error)?;
    if options.zstd_workers > 0 {
        encoder
            .multithread(options.zstd_workers)
            .map_err(pipeline_error)?;
    }
    let mut raw = EtcdStreamDigest::new();
    while let Some(chunk) = raw_rx.blocking_recv() {
        raw.update(&chunk);
        encoder.write_all(&chunk).map_err(pipeline_error)?;
    }
    let mut parts = encoder
        .finish()
        .and_then(StoredWriter::finish)
        .map_err(pipeline_error)?;
    parts.flush_part().map_err(pipeline_error)?;
    Ok(CompressedSums {
        raw: raw.finish(),
        stored_size: parts.size,
        stored_sha256: hex::encode(parts.sha256.finalize()),
    })
}

/// Where zstd's output goes: straight into parts, or through age first.
enum StoredWriter {
    Plain(PartWriter),
    Age(age::stream::StreamWriter<PartWriter>),
}

impl StoredWriter {
    /// Ends the age stream (its last chunk is marked final, so truncation is detected).
    fn finish(self) -> std::io::Result<PartWriter> {
        match self {
            Self::Plain(parts) => Ok(parts),
            Self::Age(writer) => writer.finish(),
        }
    }
}

impl Write for StoredWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(parts) => parts.write(data),
            Self::Age(writer) => writer.write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(parts) => parts.flush(),
            Self::Age(writer) => writer.flush(),
        }
    }
}

/// Collects compressed output into parts of `part_size` bytes and hands them to the uploader.
struct PartWriter {
    tx: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
    part_size: usize,
    sha256: Sha256,
    size: u64,
}

impl PartWriter {
    fn new(tx: mpsc::Sender<Bytes>, part_size: usize) -> Self {
        Self {
            tx,
            buffer: Vec::with_capacity(part_size),
            part_size,
            sha256: Sha256::new(),
            size: 0,
        }
    }

    fn flush_part(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.part_size));
        self.tx.blocking_send(Bytes::from(part)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the uploader stopped")
        })
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.part_size - self.buffer.len();
        let taken = data.len().min(room);
        self.buffer.extend_from_slice(&data[..taken]);
        self.sha256.update(&data[..taken]);
        self.size += taken as u64;
        if self.buffer.len() >= self.part_size {
            self.flush_part()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
