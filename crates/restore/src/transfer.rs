//! Byte counts of a promotion's copies (the snapshot streamed back from the store; the snapshot
//! copied onto each node) in its record. The reader or writer on the copy's path counts; a
//! watcher writes the count into the record every [`RECORD_INTERVAL`] and once at the end, so
//! that `GET /v1/promote`, the CLI and the daemon's log see bytes done of the total without a
//! record update per chunk.

use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::Utc;
use etcd_dr_core::{PromotionRecord, StepName, TransferProgress};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::task::JoinHandle;

use crate::PromotionTracker;

/// How often a running copy's count is written into the record.
pub const RECORD_INTERVAL: Duration = Duration::from_millis(500);

/// Follows one copy into the record: of `step`, or of one node in it (the step then shows the
/// sum over its nodes). Nothing is recorded until the first byte moved (a pre-staged copy that
/// needs no download shows no transfer); the final count is recorded when dropped.
pub struct TransferWatch {
    copy: FollowedCopy,
    watcher: Option<JoinHandle<()>>,
}

/// What a watcher needs to record a copy.
#[derive(Clone)]
struct FollowedCopy {
    tracker: PromotionTracker,
    step: StepName,
    node: Option<String>,
    done: Arc<AtomicU64>,
    transfer: TransferProgress,
}

impl FollowedCopy {
    /// Writes the count into the record, once bytes moved.
    fn record(&self) {
        let done = self.done.load(Ordering::Relaxed);
        if done == 0 {
            return;
        }
        let transfer = TransferProgress {
            done_bytes: done,
            ..self.transfer
        };
        let (step, node) = (self.step, self.node.as_deref());
        self.tracker
            .update(|record| record_transfer(record, step, node, transfer));
    }
}

/// Sets the transfer of `step` (or of `node` in it, and the step's sum over its nodes).
pub fn record_transfer(
    record: &mut PromotionRecord,
    step: StepName,
    node: Option<&str>,
    transfer: TransferProgress,
) {
    let Some(node) = node else {
        record.step_mut(step).progress.transfer = Some(transfer);
        return;
    };
    record.node_mut(step, node).progress.transfer = Some(transfer);
    let step_record = record.step_mut(step);
    let copies: Vec<TransferProgress> = step_record
        .nodes
        .iter()
        .filter_map(|n| n.progress.transfer)
        .collect();
    step_record.progress.transfer =
        copies
            .iter()
            .map(|t| t.started_at)
            .min()
            .map(|started_at| TransferProgress {
                done_bytes: copies.iter().map(|t| t.done_bytes).sum(),
                total_bytes: copies.iter().map(|t| t.total_bytes).sum(),
                started_at,
            });
}

impl PromotionTracker {
    /// Starts following a copy of `total_bytes` in `step` (on `node`, if it runs on one); count
    /// its bytes through [`TransferWatch::reader`] or [`TransferWatch::writer`]. Needs a Tokio
    /// runtime.
    pub fn watch_transfer(
        &self,
        step: StepName,
        node: Option<&str>,
        total_bytes: u64,
    ) -> TransferWatch {
        let copy = FollowedCopy {
            tracker: self.clone(),
            step,
            node: node.map(str::to_string),
            done: Arc::new(AtomicU64::new(0)),
            transfer: TransferProgress {
                done_bytes: 0,
                total_bytes,
                started_at: Utc::now(),
            },
        };
        let watcher = {
            let copy = copy.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(RECORD_INTERVAL);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    copy.record();
                }
            })
        };
        TransferWatch {
            copy,
            watcher: Some(watcher),
        }
    }
}

impl TransferWatch {
    /// The counter the copy adds its bytes to.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.copy.done.clone()
    }

    /// `inner`, counting the bytes read through it.
    pub fn reader<R>(&self, inner: R) -> CountingReader<R> {
        CountingReader {
            inner,
            done: self.counter(),
        }
    }
}

impl Drop for TransferWatch {
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.take() {
            watcher.abort();
        }
        self.copy.record();
    }
}

/// A reader that counts the bytes read through it.
pub struct CountingReader<R> {
    inner: R,
    done: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for CountingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        self.done.fetch_add(read as u64, Ordering::Relaxed);
        result
    }
}

/// A writer that counts the bytes its sink took.
pub struct CountingWriter<W> {
    inner: W,
    done: Arc<AtomicU64>,
}

impl<W> CountingWriter<W> {
    /// Counts into `done`.
    pub fn new(inner: W, done: Arc<AtomicU64>) -> Self {
        Self { inner, done }
    }

    /// The sink back.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(data)?;
        self.done.fetch_add(written as u64, Ordering::Relaxed);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_dr_core::PromotionRequest;
    use tokio::io::AsyncReadExt;

    fn tracker() -> PromotionTracker {
        PromotionTracker::begin(PromotionRequest::default(), "ops@b".into())
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_copy_is_recorded_while_it_runs_and_summed_on_the_step() {
        let tracker = tracker();
        let one = tracker.watch_transfer(StepName::Restore, Some("cp1"), 1000);
        let two = tracker.watch_transfer(StepName::Restore, Some("cp2"), 1000);
        let mut reader = one.reader(&[7u8; 600][..]);
        let mut buffer = vec![0u8; 600];
        reader.read_exact(&mut buffer).await.unwrap();
        two.counter().fetch_add(100, Ordering::Relaxed);
        // Not yet recorded: the watcher writes at its interval.
        let record = tracker.snapshot();
        assert!(record.step(StepName::Restore).progress.transfer.is_none());
        tokio::time::sleep(RECORD_INTERVAL * 2).await;
        let record = tracker.snapshot();
        let restore = record.step(StepName::Restore);
        let cp1 = restore.nodes.iter().find(|n| n.node == "cp1").unwrap();
        assert_eq!(cp1.progress.transfer.unwrap().done_bytes, 600);
        assert_eq!(cp1.progress.transfer.unwrap().total_bytes, 1000);
        let sum = restore.progress.transfer.unwrap();
        assert_eq!((sum.done_bytes, sum.total_bytes), (700, 2000));
        // The last count is recorded at the end, whenever the watcher last looked.
        two.counter().fetch_add(900, Ordering::Relaxed);
        drop(two);
        drop(one);
        let sum = tracker
            .snapshot()
            .step(StepName::Restore)
            .progress
            .transfer
            .unwrap();
        assert_eq!((sum.done_bytes, sum.total_bytes), (1600, 2000));
    }

    #[tokio::test]
    async fn a_copy_that_moved_nothing_records_nothing() {
        let tracker = tracker();
        drop(tracker.watch_transfer(StepName::Verify, None, 4096));
        assert!(tracker
            .snapshot()
            .step(StepName::Verify)
            .progress
            .transfer
            .is_none());
        let watch = tracker.watch_transfer(StepName::Verify, None, 4096);
        let mut writer = CountingWriter::new(Vec::new(), watch.counter());
        writer.write_all(&[1u8; 4096]).unwrap();
        assert_eq!(writer.into_inner().len(), 4096);
        drop(watch);
        let transfer = tracker
            .snapshot()
            .step(StepName::Verify)
            .progress
            .transfer
            .unwrap();
        assert_eq!((transfer.done_bytes, transfer.total_bytes), (4096, 4096));
        let json = serde_json::to_value(tracker.snapshot()).unwrap();
        assert_eq!(json["steps"][3]["transfer"]["done_bytes"], 4096);
    }
}
