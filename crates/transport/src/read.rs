use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use etcd_dr_core::{
    Compression, Encryption, ObjectDigest, SnapshotId, SnapshotManifest, StoredObject,
};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::digest::EtcdStreamDigest;
use crate::{Identities, SnapshotLayout, TransportError};

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

/// Bytes of an encrypted object read up front to check the identity (the age header).
const AGE_HEADER_PROBE: u64 = 16 * 1024;

/// Streams a stored snapshot back, decrypts it (when the manifest says it is encrypted) with
/// `identities`, decompresses it into `sink` and checks it against its manifest: stored size
/// and SHA-256, plain size and SHA-256, and etcd's own trailer. Any mismatch is
/// [`TransportError::Corrupt`]; the sink may then hold partial data, so callers write to a
/// temporary file and rename it only on success. A missing or wrong identity fails before any
/// plain byte reaches the sink.
pub async fn read_snapshot<W>(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    manifest: &SnapshotManifest,
    identities: &Identities,
    sink: W,
    cancel: &CancellationToken,
) -> Result<(VerifiedSnapshot, W), TransportError>
where
    W: Write + Send + 'static,
{
    let (sums, stored_size, sink) = read_stored(
        store,
        layout,
        &manifest.id,
        &manifest.stored,
        &manifest.raw,
        identities,
        sink,
        cancel,
    )
    .await?;
    if sums.etcd_sha256.as_deref() != Some(manifest.etcd_sha256.as_str()) {
        return Err(TransportError::Corrupt {
            id: manifest.id.clone(),
            detail: format!(
                "etcd's SHA-256 trailer {} does not match the content or the manifest ({})",
                sums.trailer, manifest.etcd_sha256
            ),
        });
    }
    Ok((
        VerifiedSnapshot {
            stored_size,
            raw_size: sums.size,
        },
        sink,
    ))
}

/// An object other than the etcd data (a node bundle) that was streamed back and matched its
/// manifest entry.
#[derive(Debug, Clone)]
pub struct VerifiedObject {
    /// Bytes read from the store.
    pub stored_size: u64,
    /// Plain bytes written to the sink.
    pub raw_size: u64,
}

/// Streams any object of snapshot `id` back (described by `object` and its plain digest
/// `raw`), decrypting and decompressing it into `sink`, and checks stored and plain size and
/// SHA-256. Errors name the snapshot; see [`read_snapshot`] for the sink's state on failure.
#[allow(clippy::too_many_arguments)]
pub async fn read_object<W>(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    id: &SnapshotId,
    object: &StoredObject,
    raw: &ObjectDigest,
    identities: &Identities,
    sink: W,
    cancel: &CancellationToken,
) -> Result<(VerifiedObject, W), TransportError>
where
    W: Write + Send + 'static,
{
    let (sums, stored_size, sink) =
        read_stored(store, layout, id, object, raw, identities, sink, cancel).await?;
    Ok((
        VerifiedObject {
            stored_size,
            raw_size: sums.size,
        },
        sink,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn read_stored<W>(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    id: &SnapshotId,
    object: &StoredObject,
    raw: &ObjectDigest,
    identities: &Identities,
    sink: W,
    cancel: &CancellationToken,
) -> Result<(crate::digest::EtcdStreamSums, u64, W), TransportError>
where
    W: Write + Send + 'static,
{
    let Compression::Zstd { .. } = object.compression;
    let location = layout.object_path(id, &object.name);
    let missing = |e: object_store::Error| match e {
        object_store::Error::NotFound { .. } => TransportError::Corrupt {
            id: id.clone(),
            detail: format!("its object `{location}` is missing"),
        },
        e => TransportError::store("get", &location, e),
    };
    if let Some(encryption) = &object.encryption {
        check_identity(store, &location, id, object, encryption, identities)
            .await
            .map_err(|e| match e {
                TransportError::Store { source, .. } => missing(source),
                e => e,
            })?;
    }
    let object_body = store.get(&location).await.map_err(missing)?;
    let mut body = object_body.into_stream();

    let (tx, rx) = mpsc::channel::<Bytes>(STORED_QUEUE_CHUNKS);
    let decrypt = object.encryption.as_ref().map(|_| identities.clone());
    let decompressor = tokio::task::spawn_blocking(move || match decrypt {
        Some(identities) => decrypt_and_decompress(rx, &identities, sink),
        None => decompress(rx, sink).map_err(DecodeError::Io),
    });

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
        id: id.clone(),
        detail,
    };
    if stored_size != object.size || stored_sha256 != object.sha256 {
        return Err(corrupt(format!(
            "stored object `{location}` has {stored_size} bytes with SHA-256 {stored_sha256}, the manifest says {} bytes with SHA-256 {}",
            object.size, object.sha256
        )));
    }
    let (sums, sink) = decompressed.map_err(|e| match e {
        DecodeError::Io(e) => corrupt(format!("`{}` does not decompress: {e}", object.name)),
        DecodeError::Decrypt(e) => corrupt(format!("`{}` does not decrypt: {e}", object.name)),
    })?;
    if sums.size != raw.size || sums.file_sha256 != raw.sha256 {
        return Err(corrupt(format!(
            "the plain `{}` has {} bytes with SHA-256 {}, the manifest says {} bytes with SHA-256 {}",
            object.name, sums.size, sums.file_sha256, raw.size, raw.sha256
        )));
    }
    Ok((sums, stored_size, sink))
}

/// Reads the age header of an encrypted object and checks that one of `identities` opens it,
/// so that a missing or wrong identity fails at once, before a byte is downloaded in bulk.
async fn check_identity(
    store: &Arc<dyn ObjectStore>,
    location: &object_store::path::Path,
    id: &SnapshotId,
    object: &StoredObject,
    encryption: &Encryption,
    identities: &Identities,
) -> Result<(), TransportError> {
    let recipients = encryption.recipients().join(", ");
    if identities.is_empty() {
        return Err(TransportError::IdentityRequired {
            id: id.clone(),
            object: object.name.clone(),
            recipients,
        });
    }
    let head = store
        .get_range(location, 0..object.size.min(AGE_HEADER_PROBE))
        .await
        .map_err(|e| TransportError::store("get", location, e))?;
    let opened = age::Decryptor::new_buffered(&head[..])
        .and_then(|decryptor| decryptor.decrypt(identities.iter()).map(|_| ()));
    match opened {
        Ok(()) => Ok(()),
        Err(age::DecryptError::NoMatchingKeys) => Err(TransportError::WrongIdentity {
            id: id.clone(),
            object: object.name.clone(),
            identities: identities.describe(),
            recipients,
        }),
        Err(e) => Err(TransportError::Corrupt {
            id: id.clone(),
            detail: format!("the age header of `{}` is unreadable: {e}", object.name),
        }),
    }
}

enum DecodeError {
    Io(std::io::Error),
    Decrypt(age::DecryptError),
}

/// Runs on a blocking thread: decrypts stored chunks with age, then decompresses them into the
/// sink. age authenticates every 64 KiB chunk and the end of the stream, so no unauthenticated
/// byte reaches the sink.
fn decrypt_and_decompress<W: Write>(
    rx: mpsc::Receiver<Bytes>,
    identities: &Identities,
    sink: W,
) -> Result<(crate::digest::EtcdStreamSums, W), DecodeError> {
    let input = std::io::BufReader::with_capacity(
        64 * 1024,
        ChannelReader {
            rx,
            current: Bytes::new(),
        },
    );
    let mut plain = age::Decryptor::new_buffered(input)
        .and_then(|decryptor| decryptor.decrypt(identities.iter()))
        .map_err(DecodeError::Decrypt)?;
    let mut decoder = zstd::stream::write::Decoder::new(HashingWriter {
        inner: sink,
        digest: EtcdStreamDigest::new(),
    })
    .map_err(DecodeError::Io)?;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match plain.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DecodeError::Decrypt(age::DecryptError::Io(e))),
        };
        decoder
            .write_all(&buffer[..read])
            .map_err(DecodeError::Io)?;
    }
    decoder.flush().map_err(DecodeError::Io)?;
    let writer = decoder.into_inner();
    Ok((writer.digest.finish(), writer.inner))
}

/// A blocking reader over the chunks the download sends.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let take = self.current.len().min(buf.len());
        buf[..take].copy_from_slice(&self.current.split_to(take));
        Ok(take)
    }
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
