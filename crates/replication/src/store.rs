//! Segments in the object store: put create-only, read back verified, list a generation's chain.

use std::io::Read;
use std::sync::Arc;

use etcd_dr_transport::{
    decrypt_in_memory, encrypt_in_memory, Identities, ManifestTrust, Recipients,
};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{
    GenerationId, ReplicationError, ReplicationLayout, Segment, SegmentDigest, SegmentName,
    SegmentSigner,
};

/// Attempts of one segment put when the store fails transiently (`Generic`: network, 5xx).
const PUT_ATTEMPTS: u32 = 5;
/// Wait before the second attempt; doubled before each further one.
const PUT_RETRY_FIRST_DELAY: std::time::Duration = std::time::Duration::from_millis(200);
/// zstd level of segments: etcd events are small and repetitive; 3 is fast and close to 9.
const SEGMENT_ZSTD_LEVEL: i32 = 3;
/// Largest plain segment a reader accepts (a cut is 8 MiB plus one revision by default).
pub const MAX_PLAIN_SEGMENT_BYTES: u64 = 1 << 30;

/// Where segments are written, and how.
#[derive(Clone)]
pub struct SegmentStore {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The prefix and cluster.
    pub layout: ReplicationLayout,
    /// age recipients; `None` stores plain (zstd only) segments.
    pub recipients: Option<Recipients>,
    /// The producer's signing key (`signing.key_file`); `None` writes unsigned segments, which
    /// readers refuse unless `signing.allow_unsigned`.
    pub signer: Option<SegmentSigner>,
}

/// A segment as stored: where, how big, its digest.
#[derive(Debug, Clone)]
pub struct StoredSegment {
    /// The object key.
    pub key: String,
    /// Its name (revision range).
    pub name: SegmentName,
    /// Bytes in the store.
    pub stored_bytes: u64,
    /// Its digest (trailer).
    pub digest: SegmentDigest,
}

impl SegmentStore {
    /// Encodes, compresses, encrypts (with recipients) and puts `segment` create-only. A retry
    /// that meets its own earlier put (same digest) succeeds; a different object is a conflict.
    pub async fn put(
        &self,
        segment: &Segment,
        cancel: &CancellationToken,
    ) -> Result<StoredSegment, ReplicationError> {
        let (plain, digest) = match &self.signer {
            Some(signer) => segment.encode_signed(signer),
            None => segment.encode(),
        };
        let header = &segment.header;
        self.put_encoded(
            &header.generation,
            header.first_revision..=header.last_revision,
            plain,
            digest,
            cancel,
        )
        .await
    }

    /// [`put`](Self::put) for a segment already encoded by [`Segment::encode_signed`] (with
    /// [`signer`](Self::signer)) or [`Segment::encode`].
    pub async fn put_encoded(
        &self,
        generation: &GenerationId,
        revisions: std::ops::RangeInclusive<i64>,
        plain: Vec<u8>,
        digest: SegmentDigest,
        cancel: &CancellationToken,
    ) -> Result<StoredSegment, ReplicationError> {
        let name = SegmentName {
            first_revision: *revisions.start(),
            last_revision: *revisions.end(),
            encrypted: self.recipients.is_some(),
        };
        let path = self.layout.segment_path(generation, &name);
        let key = path.to_string();
        let recipients = self.recipients.clone();
        let stored = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ReplicationError> {
            let compressed = zstd::bulk::compress(&plain, SEGMENT_ZSTD_LEVEL).map_err(|e| {
                ReplicationError::corrupt("new segment", format!("zstd compression: {e}"))
            })?;
            Ok(match recipients {
                Some(recipients) => encrypt_in_memory(&recipients, &compressed)?,
                None => compressed,
            })
        })
        .await
        .map_err(|e| ReplicationError::corrupt(&key, format!("compression thread: {e}")))??;
        let stored = bytes::Bytes::from(stored);
        let stored_bytes = stored.len() as u64;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        // A transient failure (timeout, reset, 5xx after the client's own retries) may have
        // stored the object anyway; the next create-only attempt then meets it.
        let mut attempt = 1;
        let result = loop {
            let put = self
                .store
                .put_opts(&path, PutPayload::from(stored.clone()), options.clone());
            let result = tokio::select! {
                result = put => result,
                () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
            };
            match result {
                Err(error @ object_store::Error::Generic { .. }) if attempt < PUT_ATTEMPTS => {
                    let delay = PUT_RETRY_FIRST_DELAY * 2u32.pow(attempt - 1);
                    warn!(segment = %key, attempt, %error, "segment put failed; trying again in {delay:?}");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
                    }
                    attempt += 1;
                }
                other => break other,
            }
        };
        match result {
            Ok(_) => {}
            // A retried put whose first answer was lost meets its own object: same bytes.
            Err(object_store::Error::AlreadyExists { .. }) => {
                let get = async { self.store.get(&path).await?.bytes().await };
                let existing = tokio::select! {
                    result = get => result.map_err(|source| ReplicationError::store("get", &key, source))?,
                    () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
                };
                if existing != stored {
                    return Err(ReplicationError::SegmentConflict {
                        segment: key,
                        existing_bytes: existing.len() as u64,
                        ours_bytes: stored_bytes,
                    });
                }
            }
            Err(source) => return Err(ReplicationError::store("put", &key, source)),
        }
        Ok(StoredSegment {
            key,
            name,
            stored_bytes,
            digest,
        })
    }
}

/// Reads one segment object: get, decrypt (`.age`), decompress, decode, check its signature
/// against `trust` and that its header agrees with its name.
pub async fn read_segment(
    store: &Arc<dyn ObjectStore>,
    path: &object_store::path::Path,
    identities: &Identities,
    trust: &ManifestTrust,
    cancel: &CancellationToken,
) -> Result<(Segment, SegmentDigest), ReplicationError> {
    let key = path.to_string();
    let file_name = path.filename().unwrap_or_default().to_string();
    let name = SegmentName::parse(&file_name)
        .ok_or_else(|| ReplicationError::corrupt(&key, "not a segment name"))?;
    let get = async {
        let result = store.get(path).await?;
        result.bytes().await
    };
    let stored = tokio::select! {
        result = get => result.map_err(|source| ReplicationError::store("get", &key, source))?,
        () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
    };
    let identities = identities.clone();
    let trust = trust.clone();
    let key_for_thread = key.clone();
    let (segment, digest) = tokio::task::spawn_blocking(move || {
        let compressed = if name.encrypted {
            decrypt_in_memory(&identities, &key_for_thread, &stored)?
        } else {
            stored.to_vec()
        };
        let mut plain = Vec::new();
        zstd::stream::read::Decoder::new(&compressed[..])
            .and_then(|decoder| {
                decoder
                    .take(MAX_PLAIN_SEGMENT_BYTES + 1)
                    .read_to_end(&mut plain)
            })
            .map_err(|e| ReplicationError::corrupt(&key_for_thread, format!("zstd: {e}")))?;
        if plain.len() as u64 > MAX_PLAIN_SEGMENT_BYTES {
            return Err(ReplicationError::corrupt(
                &key_for_thread,
                format!("larger than {MAX_PLAIN_SEGMENT_BYTES} bytes when decompressed"),
            ));
        }
        let (segment, digest) = Segment::decode_trusted(&key_for_thread, &plain, &trust)?;
        if segment.header.first_revision != name.first_revision
            || segment.header.last_revision != name.last_revision
        {
            return Err(ReplicationError::corrupt(
                &key_for_thread,
                format!(
                    "its name says revisions {}..={} but it holds {}..={}",
                    name.first_revision,
                    name.last_revision,
                    segment.header.first_revision,
                    segment.header.last_revision
                ),
            ));
        }
        Ok((segment, digest))
    })
    .await
    .map_err(|e| ReplicationError::corrupt(&key, format!("decoding thread: {e}")))??;
    Ok((segment, digest))
}

/// Every generation with at least one segment, oldest first.
pub async fn list_generations(
    store: &Arc<dyn ObjectStore>,
    layout: &ReplicationLayout,
    cancel: &CancellationToken,
) -> Result<Vec<GenerationId>, ReplicationError> {
    let prefix = layout.segments_prefix();
    let listing = store.list_with_delimiter(Some(prefix));
    let listing = tokio::select! {
        result = listing => result.map_err(|source| ReplicationError::store("list", prefix, source))?,
        () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
    };
    let mut generations = Vec::new();
    for dir in &listing.common_prefixes {
        let Some(generation) = dir.filename().and_then(|name| name.parse().ok()) else {
            continue;
        };
        // A local directory outlives its last object (retention removed it): not a generation.
        // The first segment found is enough (one listing page, however long the chain).
        let mut inside = store.list(Some(dir));
        let first_segment = async {
            while let Some(meta) = inside.try_next().await? {
                if layout.parse_key(&meta.location).is_some() {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        let holds_segments = tokio::select! {
            result = first_segment => result.map_err(|source| ReplicationError::store("list", dir, source))?,
            () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
        };
        if holds_segments {
            generations.push(generation);
        }
    }
    generations.sort();
    Ok(generations)
}

/// The segment objects of one generation named after `after` (all of them without it), ordered
/// by first revision: a listing that starts after the last segment already read, so following
/// a chain costs a listing of what is new, not of the whole generation.
pub async fn list_segments_after(
    store: &Arc<dyn ObjectStore>,
    layout: &ReplicationLayout,
    generation: &GenerationId,
    after: Option<&SegmentName>,
    cancel: &CancellationToken,
) -> Result<Vec<SegmentName>, ReplicationError> {
    let Some(after) = after else {
        return list_segments(store, layout, generation, cancel).await;
    };
    let dir = layout.generation_dir(generation);
    let offset = layout.segment_path(generation, after);
    let list = store
        .list_with_offset(Some(&dir), &offset)
        .map_err(|source| ReplicationError::store("list", &dir, source))
        .try_filter_map(|meta| {
            let parsed = layout.parse_key(&meta.location);
            async move { Ok(parsed.map(|(_, name)| name)) }
        })
        .try_collect::<Vec<_>>();
    let mut names = tokio::select! {
        result = list => result?,
        () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
    };
    names.retain(|name| name.first_revision > after.last_revision);
    names.sort();
    Ok(names)
}

/// The segment objects of one generation, ordered by first revision. Overlapping names (two
/// writers, or a leftover) are reported, not silently chosen between.
pub async fn list_segments(
    store: &Arc<dyn ObjectStore>,
    layout: &ReplicationLayout,
    generation: &GenerationId,
    cancel: &CancellationToken,
) -> Result<Vec<SegmentName>, ReplicationError> {
    let dir = layout.generation_dir(generation);
    let list = store
        .list(Some(&dir))
        .map_err(|source| ReplicationError::store("list", &dir, source))
        .try_filter_map(|meta| {
            let parsed = layout.parse_key(&meta.location);
            async move { Ok(parsed.map(|(_, name)| name)) }
        })
        .try_collect::<Vec<_>>();
    let mut names = tokio::select! {
        result = list => result?,
        () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
    };
    names.sort();
    for pair in names.windows(2) {
        if pair[1].first_revision <= pair[0].last_revision {
            return Err(ReplicationError::ChainBroken {
                generation: generation.to_string(),
                segment: layout.segment_path(generation, &pair[1]).to_string(),
                detail: format!(
                    "it overlaps `{}`",
                    layout.segment_path(generation, &pair[0])
                ),
            });
        }
    }
    Ok(names)
}
