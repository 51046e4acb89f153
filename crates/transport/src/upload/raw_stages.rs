//! The first two stages: the plain stream fed in batches, then hashed (and etcd's trailer
//! checked) on a blocking thread.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::ShipProgress;
use crate::digest::{EtcdStreamDigest, EtcdStreamSums};
use crate::TransportError;

/// Raw chunks travel in batches of up to this many: etcd sends 32 KiB messages, and handing each
/// one to another thread on its own costs a wake-up per message (17,000 per GiB).
const RAW_BATCH_CHUNKS: usize = 8;

/// Batches queued between two stages (source → hasher → compressor): with 32 KiB messages each
/// queue holds at most 1 MiB.
pub(super) const RAW_QUEUE_BATCHES: usize = 4;

pub(super) async fn feed_raw_chunks<S, E>(
    chunks: S,
    raw_tx: mpsc::Sender<Vec<Bytes>>,
    progress: &ShipProgress,
) -> Result<(), TransportError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut bytes_read = 0u64;
    // Batches take what has already arrived, never waiting to fill up.
    let mut batches = chunks.ready_chunks(RAW_BATCH_CHUNKS);
    while let Some(batch) = batches.next().await {
        let mut chunks = Vec::with_capacity(batch.len());
        for chunk in batch {
            let chunk = chunk.map_err(|e| TransportError::Source {
                bytes_read,
                source: Box::new(e),
            })?;
            bytes_read += chunk.len() as u64;
            progress
                .raw_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            chunks.push(chunk);
        }
        if raw_tx.send(chunks).await.is_err() {
            // A later stage stopped; its own error says why.
            break;
        }
    }
    Ok(())
}

/// Runs on a blocking thread: hashes the plain stream (and checks etcd's trailer) and passes it
/// on to the compressor.
pub(super) fn hash_raw(
    mut raw_rx: mpsc::Receiver<Vec<Bytes>>,
    hashed_tx: mpsc::Sender<Vec<Bytes>>,
) -> EtcdStreamSums {
    let mut raw = EtcdStreamDigest::new();
    while let Some(batch) = raw_rx.blocking_recv() {
        for chunk in &batch {
            raw.update(chunk);
        }
        if hashed_tx.blocking_send(batch).is_err() {
            // The compressor stopped; its own error says why.
            break;
        }
    }
    raw.finish()
}
