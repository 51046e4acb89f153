use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use etcd_dr_core::{Compression, SnapshotManifest};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::digest::EtcdStreamDigest;
use crate::{SnapshotLayout, TransportError};

/// A snapshot that was streamed back and matched its manifest on every count.
#[derive(Debug, Clone)]
pub struct VerifiedSnapshot {
    /// Bytes read from the store.
    pub stored_size: u64,
    /// Plain snapshot bytes written to the sink.
    pub raw_size: u64,
}

/// Compressed chunks queued between the download and the decompressor.
const STORED_QUEUE_CHUNKS: usize = 8;

/// Streams a stored snapshot back, decompresses it into `sink` and checks it against its
/// manifest: stored size and SHA-256, plain size and SHA-256, and etcd's own trailer. Any
/// mismatch is [`TransportError::Corrupt`]; the sink may then hold partial data, so callers
/// write to a temporary file and rename it only on success.
pub async fn read_snapshot<W>(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    manifest: &SnapshotManifest,
    sink: W,
    cancel: &CancellationToken,
) -> Result<(VerifiedSnapshot, W), TransportError>
where
    W: Write + Send + 'static,
{
    let Compression::Zstd { .. } = manifest.stored.compression;
    let location = layout
        .snapshot_dir(&manifest.id)
        .join(manifest.stored.name.as_str());
    let object = store.get(&location).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => TransportError::Corrupt {
            id: manifest.id.clone(),
            detail: format!("its data object `{location}` is missing"),
        },
        e => TransportError::store("get", &location, e),
    })?;
    let mut body = object.into_stream();

    let (tx, rx) = mpsc::channel::<Bytes>(STORED_QUEUE_CHUNKS);
    let decompressor = tokio::task::spawn_blocking(move || decompress(rx, sink));

    let download = async {
        let mut stored = Sha256::new();
        let mut stored_size = 0u64;
        let mut tx = Some(tx);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| TransportError::store("get", &location, e))?;
            stored.update(&chunk);
            stored_size += chunk.len() as u64;
            // A decompressor that stopped has its own error; keep hashing what is stored so
            // the report says whether the object itself differs from the manifest.
            if let Some(sender) = &tx {
                if sender.send(chunk).await.is_err() {
                    tx = None;
                }
            }
        }
        drop(tx);
        Ok::<_, TransportError>((stored_size, hex::encode(stored.finalize())))
    };
    let downloaded = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(TransportError::Cancelled),
        result = download => result,
    };
    let decompressed = decompressor
        .await
        .map_err(|e| TransportError::Pipeline(format!("decompressor thread failed: {e}")))?;
    let (stored_size, stored_sha256) = downloaded?;

    let corrupt = |detail: String| TransportError::Corrupt {
        id: manifest.id.clone(),
        detail,
    };
    if stored_size != manifest.stored.size || stored_sha256 != manifest.stored.sha256 {
        return Err(corrupt(format!(
            "stored object `{location}` has {stored_size} bytes with SHA-256 {stored_sha256}, the manifest says {} bytes with SHA-256 {}",
            manifest.stored.size, manifest.stored.sha256
        )));
    }
    let (sums, sink) = decompressed.map_err(|e| corrupt(format!("it does not decompress: {e}")))?;
    if sums.size != manifest.raw.size || sums.file_sha256 != manifest.raw.sha256 {
        return Err(corrupt(format!(
            "the plain snapshot has {} bytes with SHA-256 {}, the manifest says {} bytes with SHA-256 {}",
            sums.size, sums.file_sha256, manifest.raw.size, manifest.raw.sha256
        )));
    }
    if sums.etcd_sha256.as_deref() != Some(manifest.etcd_sha256.as_str()) {
        return Err(corrupt(format!(
            "etcd's SHA-256 trailer {} does not match the content or the manifest ({})",
            sums.trailer, manifest.etcd_sha256
        )));
    }
    Ok((
        VerifiedSnapshot {
            stored_size,
            raw_size: sums.size,
        },
        sink,
    ))
}

/// Runs on a blocking thread: decompresses stored chunks into the sink, hashing the plain bytes.
fn decompress<W: Write>(
    mut rx: mpsc::Receiver<Bytes>,
    sink: W,
) -> std::io::Result<(crate::digest::EtcdStreamSums, W)> {
    let mut decoder = zstd::stream::write::Decoder::new(HashingWriter {
        inner: sink,
        digest: EtcdStreamDigest::new(),
    })?;
    while let Some(chunk) = rx.blocking_recv() {
        decoder.write_all(&chunk)?;
    }
    decoder.flush()?;
    let writer = decoder.into_inner();
    Ok((writer.digest.finish(), writer.inner))
}

struct HashingWriter<W> {
    inner: W,
    digest: EtcdStreamDigest,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(data)?;
        self.digest.update(&data[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
