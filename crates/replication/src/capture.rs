//! Capture: one watch over the whole keyspace, events grouped by revision, cut into segments at
//! the first of an age or a size, stored through a bounded queue (backpressure on the watch).
//!
//! Memory bound: one watch message (`max_watch_message_bytes`) plus the segment being built
//! (`max_segment_bytes` plus one revision) plus `upload_queue_segments` encoded segments, plus
//! 8 bytes per lease id seen in the generation.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::proto::PbEvent;
use etcd_client::{Client, WatchOptions};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::{SegmentStore, StoredSegment};
use crate::{
    ChainLink, GenerationId, LeaseRecord, ReplicationError, RevisionEvents, Segment, SegmentDigest,
    SegmentSigner, NO_PREVIOUS_SEGMENT,
};

/// How capture cuts segments and bounds its memory.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Cut a segment this long after its first revision arrived.
    pub max_segment_age: Duration,
    /// Cut a segment once its events reach this many bytes (a revision is never split).
    pub max_segment_bytes: usize,
    /// Largest watch response accepted (etcd-client's decode limit; tonic's default is 4 MiB).
    pub max_watch_message_bytes: usize,
    /// Encoded segments waiting for the store before the watch is paused.
    pub upload_queue_segments: usize,
    /// How long, after cancellation, captured revisions may still take to reach the store.
    pub shutdown_grace: Duration,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        Self {
            max_segment_age: Duration::from_secs(1),
            max_segment_bytes: 8 << 20,
            max_watch_message_bytes: 256 << 20,
            upload_queue_segments: 2,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Why a generation ended. Each one needs a full snapshot to start a new generation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerationBreak {
    /// etcd no longer holds the revisions the watch needs.
    #[error("etcd compacted its history to revision {compact_revision} before the watch read revision {wanted} (capture was away longer than etcd's history)")]
    Compacted {
        /// The revision the capture needed next.
        wanted: i64,
        /// etcd's compaction revision.
        compact_revision: i64,
    },
    /// A revision is missing from the stream.
    #[error("revision {got} arrived where revision {expected} was expected (a gap)")]
    Gap {
        /// The revision expected.
        expected: i64,
        /// The revision that came.
        got: i64,
    },
    /// A revision came again or went backwards.
    #[error("revision {got} arrived where revision {expected} was expected (a regression: was etcd restored?)")]
    Regression {
        /// The revision expected.
        expected: i64,
        /// The revision that came.
        got: i64,
    },
    /// The watch now talks to another cluster.
    #[error("the cluster id changed from {from:x} to {to:x}")]
    ClusterChanged {
        /// The chain's cluster id.
        from: u64,
        /// The id etcd now reports.
        to: u64,
    },
    /// etcd cancelled the watch for another reason.
    #[error("etcd cancelled the watch: {reason}")]
    WatchCancelled {
        /// etcd's reason.
        reason: String,
    },
}

impl GenerationBreak {
    /// A short label for metrics (`compacted`, `gap`, `regression`, `cluster_changed`,
    /// `watch_cancelled`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Compacted { .. } => "compacted",
            Self::Gap { .. } => "gap",
            Self::Regression { .. } => "regression",
            Self::ClusterChanged { .. } => "cluster_changed",
            Self::WatchCancelled { .. } => "watch_cancelled",
        }
    }
}

/// Where a capture starts: a new generation, or the stored end of one.
#[derive(Debug, Clone)]
pub struct CaptureStart {
    /// The generation to write.
    pub generation: GenerationId,
    /// The stored end of the generation when continuing it; `None` for a new generation.
    pub resume: Option<ChainLink>,
}

/// Where capture stands, for metrics and status.
#[derive(Debug, Clone, Default)]
pub struct CaptureProgress {
    /// The generation being written.
    pub generation: Option<GenerationId>,
    /// The newest revision etcd reported (events or progress notifications).
    pub etcd_revision: i64,
    /// The newest revision received from the watch.
    pub captured_revision: i64,
    /// The newest revision durably stored.
    pub stored_revision: i64,
    /// Segments stored by this capture.
    pub stored_segments: u64,
    /// Bytes stored by this capture.
    pub stored_bytes: u64,
    /// Captured, not yet stored runs: first revision → when it was observed (Unix ms).
    unstored: BTreeMap<i64, i64>,
}

impl CaptureProgress {
    /// Replication lag: how long the oldest captured revision not yet durably stored has been
    /// waiting; zero when everything captured is stored.
    pub fn lag(&self, now: SystemTime) -> Duration {
        match self.unstored.values().min() {
            Some(&observed) => {
                let now_ms = unix_ms(now);
                Duration::from_millis(now_ms.saturating_sub(observed).max(0) as u64)
            }
            None => Duration::ZERO,
        }
    }
}

fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An encoded segment on its way to the store.
struct PendingSegment {
    generation: GenerationId,
    cluster_id: u64,
    first_revision: i64,
    last_revision: i64,
    plain: Vec<u8>,
    digest: SegmentDigest,
}

/// Captures revisions into `start.generation` until cancelled or the generation breaks.
///
/// Returns `Ok` with the stored end of the chain after a cancellation (what was captured is
/// stored first, within `shutdown_grace`); `GenerationEnded` when the generation cannot
/// continue; other errors (etcd unreachable, store failing) leave the chain continuable from
/// its stored tail.
pub async fn capture_generation(
    client: &Client,
    sink: SegmentStore,
    start: CaptureStart,
    options: &CaptureOptions,
    progress: &watch::Sender<CaptureProgress>,
    cancel: &CancellationToken,
) -> Result<Option<ChainLink>, ReplicationError> {
    let upload_cancel = CancellationToken::new();
    let (segments_tx, segments_rx) = mpsc::channel(options.upload_queue_segments.max(1));
    // Segments are signed where they are cut: the next one's header carries this digest.
    let signer = sink.signer.clone();
    let uploader = tokio::spawn(upload_segments(
        sink,
        segments_rx,
        progress.clone(),
        upload_cancel.clone(),
    ));
    let watched = watch_into_segments(
        client,
        &start,
        options,
        signer.as_ref(),
        progress,
        &segments_tx,
        cancel,
    )
    .await;
    drop(segments_tx);
    // Whatever was captured is stored before returning, within the grace period.
    let grace = tokio::time::sleep(options.shutdown_grace);
    let uploaded = tokio::select! {
        joined = uploader => joined.map_err(|e| ReplicationError::Config(format!("segment uploader panicked: {e}")))?,
        () = grace => {
            upload_cancel.cancel();
            Err(ReplicationError::Cancelled)
        }
    };
    // Nothing stored by this run: the chain still ends where it started.
    let tail = uploaded?.or(start.resume);
    watched.map(|()| tail)
}

async fn upload_segments(
    sink: SegmentStore,
    mut segments: mpsc::Receiver<PendingSegment>,
    progress: watch::Sender<CaptureProgress>,
    cancel: CancellationToken,
) -> Result<Option<ChainLink>, ReplicationError> {
    let mut tail = None;
    while let Some(pending) = segments.recv().await {
        let stored: StoredSegment = sink
            .put_encoded(
                &pending.generation,
                pending.first_revision..=pending.last_revision,
                pending.plain,
                pending.digest,
                &cancel,
            )
            .await?;
        info!(segment = %stored.key, bytes = stored.stored_bytes, "segment stored");
        progress.send_modify(|p| {
            p.unstored.remove(&pending.first_revision);
            p.stored_revision = pending.last_revision;
            p.stored_segments += 1;
            p.stored_bytes += stored.stored_bytes;
        });
        tail = Some(ChainLink {
            last_revision: pending.last_revision,
            digest: stored.digest,
            cluster_id: pending.cluster_id,
        });
    }
    Ok(tail)
}

/// The segment being built.
#[derive(Default)]
struct SegmentBuilder {
    revisions: Vec<RevisionEvents>,
    leases: Vec<LeaseRecord>,
    bytes: usize,
    opened_at: Option<Instant>,
}

async fn watch_into_segments(
    client: &Client,
    start: &CaptureStart,
    options: &CaptureOptions,
    signer: Option<&SegmentSigner>,
    progress: &watch::Sender<CaptureProgress>,
    segments: &mpsc::Sender<PendingSegment>,
    cancel: &CancellationToken,
) -> Result<(), ReplicationError> {
    let generation = start.generation.clone();
    let ended = |reason: GenerationBreak| {
        warn!(%generation, kind = reason.kind(), %reason, "replication generation ended");
        ReplicationError::GenerationEnded {
            generation: generation.to_string(),
            reason,
        }
    };
    let mut expected = match start.resume {
        Some(link) => link.last_revision + 1,
        None => generation.base_revision() + 1,
    };
    let mut previous_digest: SegmentDigest = start
        .resume
        .map(|link| link.digest)
        .unwrap_or(NO_PREVIOUS_SEGMENT);
    let mut cluster_id = start.resume.map(|link| link.cluster_id);
    progress.send_modify(|p| {
        p.generation = Some(generation.clone());
        p.captured_revision = expected - 1;
        p.stored_revision = expected - 1;
    });

    let mut watch_client = client
        .watch_client()
        .max_decoding_message_size(options.max_watch_message_bytes);
    let watch_options = WatchOptions::new()
        .with_all_keys()
        .with_start_revision(expected)
        .with_progress_notify()
        .with_fragment();
    let (mut requests, mut responses) = tokio::select! {
        stream = watch_client.watch("", Some(watch_options)) => stream.map_err(|e| ReplicationError::etcd("watch", e))?.split(),
        () = cancel.cancelled() => return Ok(()),
    };
    let mut lease_client = client.lease_client();
    let mut known_leases: HashSet<i64> = HashSet::new();
    let mut builder = SegmentBuilder::default();
    let mut fragments: Vec<PbEvent> = Vec::new();

    let outcome: Result<(), ReplicationError> = loop {
        let cut_at = builder
            .opened_at
            .map(|opened| opened + options.max_segment_age);
        let message = tokio::select! {
            biased;
            () = cancel.cancelled() => break Ok(()),
            () = sleep_until_some(cut_at) => {
                if let Err(error) = cut(&mut builder, cluster_id, &generation, &mut previous_digest, signer, segments, cancel).await {
                    break Err(error);
                }
                // So that an idle cluster shows no lag: etcd answers with its current revision.
                if let Err(e) = requests.request_progress().await {
                    break Err(ReplicationError::etcd("watch progress request", e));
                }
                continue;
            }
            message = responses.message() => message,
        };
        let response = match message {
            Ok(Some(response)) => response.0,
            Ok(None) => {
                break Err(ReplicationError::etcd(
                    "watch",
                    etcd_client::Error::WatchError("etcd closed the watch stream".into()),
                ))
            }
            Err(e) => break Err(ReplicationError::etcd("watch", e)),
        };
        if let Some(header) = &response.header {
            match cluster_id {
                None => cluster_id = Some(header.cluster_id),
                Some(ours) if ours != header.cluster_id => {
                    break Err(ended(GenerationBreak::ClusterChanged {
                        from: ours,
                        to: header.cluster_id,
                    }))
                }
                Some(_) => {}
            }
            progress.send_modify(|p| p.etcd_revision = p.etcd_revision.max(header.revision));
        }
        if response.compact_revision != 0 {
            break Err(ended(GenerationBreak::Compacted {
                wanted: expected,
                compact_revision: response.compact_revision,
            }));
        }
        if response.canceled {
            break Err(ended(GenerationBreak::WatchCancelled {
                reason: response.cancel_reason,
            }));
        }
        fragments.extend(response.events);
        if response.fragment {
            continue;
        }
        let events = std::mem::take(&mut fragments);
        let observed_unix_ms = unix_ms(SystemTime::now());
        let groups = match group_by_revision(events, &mut expected) {
            Ok(groups) => groups,
            Err(reason) => break Err(ended(reason)),
        };
        let mut failed = None;
        for group in groups {
            let revision = group.revision;
            for event in &group.events {
                let Some(kv) = &event.kv else { continue };
                if kv.lease != 0 && known_leases.insert(kv.lease) {
                    match lease_client.time_to_live(kv.lease, None).await {
                        Ok(answer) => builder.leases.push(LeaseRecord {
                            id: kv.lease,
                            granted_ttl_seconds: if answer.ttl() < 0 {
                                -1
                            } else {
                                answer.granted_ttl()
                            },
                            first_revision: revision,
                        }),
                        Err(e) => {
                            failed = Some(ReplicationError::etcd("lease time-to-live", e));
                            break;
                        }
                    }
                }
            }
            if failed.is_some() {
                break;
            }
            let group = RevisionEvents {
                revision,
                observed_unix_ms,
                events: group.events,
            };
            if builder.revisions.is_empty() {
                builder.opened_at = Some(Instant::now());
                progress.send_modify(|p| {
                    p.unstored.insert(revision, observed_unix_ms);
                });
            }
            builder.bytes += group.encoded_len();
            builder.revisions.push(group);
            progress.send_modify(|p| p.captured_revision = revision);
            if builder.bytes >= options.max_segment_bytes {
                if let Err(error) = cut(
                    &mut builder,
                    cluster_id,
                    &generation,
                    &mut previous_digest,
                    signer,
                    segments,
                    cancel,
                )
                .await
                {
                    failed = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = failed {
            break Err(error);
        }
    };
    // Revisions already captured are valid whatever stopped the watch: store them.
    let flushed = cut(
        &mut builder,
        cluster_id,
        &generation,
        &mut previous_digest,
        signer,
        segments,
        &CancellationToken::new(),
    )
    .await;
    outcome.and(flushed)
}

/// Events of one watch response, split into revisions and checked to continue `expected`.
struct RevisionGroup {
    revision: i64,
    events: Vec<PbEvent>,
}

fn group_by_revision(
    events: Vec<PbEvent>,
    expected: &mut i64,
) -> Result<Vec<RevisionGroup>, GenerationBreak> {
    let mut groups: Vec<RevisionGroup> = Vec::new();
    for event in events {
        let revision = event.kv.as_ref().map(|kv| kv.mod_revision).unwrap_or(0);
        if let Some(last) = groups.last_mut() {
            if last.revision == revision {
                last.events.push(event);
                continue;
            }
        }
        if revision != *expected {
            return Err(if revision > *expected {
                GenerationBreak::Gap {
                    expected: *expected,
                    got: revision,
                }
            } else {
                GenerationBreak::Regression {
                    expected: *expected,
                    got: revision,
                }
            });
        }
        *expected += 1;
        groups.push(RevisionGroup {
            revision,
            events: vec![event],
        });
    }
    Ok(groups)
}

/// Sends the segment being built (if any) to the uploader; waits while the queue is full.
async fn cut(
    builder: &mut SegmentBuilder,
    cluster_id: Option<u64>,
    generation: &GenerationId,
    previous_digest: &mut SegmentDigest,
    signer: Option<&SegmentSigner>,
    segments: &mpsc::Sender<PendingSegment>,
    cancel: &CancellationToken,
) -> Result<(), ReplicationError> {
    if builder.revisions.is_empty() {
        builder.opened_at = None;
        return Ok(());
    }
    let built = std::mem::take(builder);
    let segment = Segment::new(
        cluster_id.unwrap_or(0),
        generation.clone(),
        *previous_digest,
        built.leases,
        built.revisions,
    )?;
    let (plain, digest) = match signer {
        Some(signer) => segment.encode_signed(signer),
        None => segment.encode(),
    };
    *previous_digest = digest;
    let pending = PendingSegment {
        generation: generation.clone(),
        cluster_id: segment.header.cluster_id,
        first_revision: segment.header.first_revision,
        last_revision: segment.header.last_revision,
        plain,
        digest,
    };
    tokio::select! {
        sent = segments.send(pending) => sent.map_err(|_| ReplicationError::Config("the segment uploader stopped".into())),
        () = cancel.cancelled() => Err(ReplicationError::Cancelled),
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::tests::{delete, put};

    #[test]
    fn groups_whole_revisions_and_refuses_gaps_and_regressions() {
        let mut expected = 5;
        let groups = group_by_revision(
            vec![
                put(5, "a", b"1", 0),
                delete(6, "b"),
                delete(6, "c"),
                put(7, "a", b"2", 0),
            ],
            &mut expected,
        )
        .unwrap();
        let shape: Vec<(i64, usize)> = groups
            .iter()
            .map(|g| (g.revision, g.events.len()))
            .collect();
        assert_eq!(shape, [(5, 1), (6, 2), (7, 1)]);
        assert_eq!(expected, 8);

        assert_eq!(
            group_by_revision(vec![put(9, "a", b"", 0)], &mut expected).err(),
            Some(GenerationBreak::Gap {
                expected: 8,
                got: 9
            })
        );
        assert_eq!(
            group_by_revision(vec![put(7, "a", b"", 0)], &mut expected).err(),
            Some(GenerationBreak::Regression {
                expected: 8,
                got: 7
            })
        );
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_unstored_revision() {
        let now = SystemTime::now();
        let mut progress = CaptureProgress::default();
        assert_eq!(progress.lag(now), Duration::ZERO);
        progress.unstored.insert(10, unix_ms(now) - 1500);
        progress.unstored.insert(20, unix_ms(now) - 200);
        assert_eq!(progress.lag(now), Duration::from_millis(1500));
        progress.unstored.remove(&10);
        assert_eq!(progress.lag(now), Duration::from_millis(200));
    }
}
