//! Replay: a generation's revisions carried onto a base snapshot up to a target revision, by
//! one of two engines ([`ReplayEngine`]): the base's backend file extended directly
//! (`replay_backend.rs`, the default), or a throw-away etcd restored from the base that applies
//! each revision as one transaction which must land on the recorded revision (pipelined, in
//! order: `pipeline.rs`), then a snapshot at exactly the target revision.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, LeaseGrantOptions, LeaseKeepAliveStream, LeaseKeeper};
use futures::stream::{SelectAll, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::pipeline::{revision_txn, ApplyGuard, TxnPipeline};
use crate::replay_backend::replay_into_backend;
use crate::replay_progress::ReplayProgress;
use crate::scratch_etcd::{process_cpu_time, EtcdBinaries, ScratchEtcd};
use crate::{ChainReader, ReplicationError, RevisionEvents, Segment};

/// TTL given to a lease the capture saw only after it had expired (its keys are deleted by a
/// later recorded revision, or the restore keeps them until this TTL runs out).
const EXPIRED_LEASE_TTL_SECONDS: i64 = 60;
/// How often replay keeps the throw-away etcd's leases alive (etcd's shortest TTL is 2 s).
const LEASE_KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// The engine that replayed (`backend` or `etcd`).
    pub engine: &'static str,
    /// The real revision of the base snapshot (can be above the revision it was recorded at).
    pub base_revision: i64,
    /// The revision of the written snapshot (the target).
    pub revision: i64,
    /// Revisions applied.
    pub replayed_revisions: u64,
    /// Segments applied from (read and verified before them: the rest of the chain from the
    /// generation's start).
    pub segments_read: u64,
    /// The first segment applied from (object key).
    pub first_segment: Option<String>,
    /// The last segment applied from.
    pub last_segment: Option<String>,
    /// Leases granted with their recorded ids.
    pub leases_granted: u64,
    /// Transactions that reached etcd before their predecessor and were sent again.
    pub resent_transactions: u64,
    /// Time spent applying revisions (`backend`: copying the base's backend included).
    pub replay_time: Duration,
    /// `backend`: the part of `replay_time` spent copying the base's backend before the first
    /// revision (`None` with `etcd`, whose restore and start are not in `replay_time`).
    pub base_copy_time: Option<Duration>,
    /// CPU time this process spent meanwhile (every thread; Linux only, else `None`).
    pub replay_cpu_own: Option<Duration>,
    /// CPU time the throw-away etcd spent meanwhile (Linux only, else `None`).
    pub replay_cpu_etcd: Option<Duration>,
    /// Bytes of the written snapshot.
    pub snapshot_bytes: u64,
}

/// What to restore, and where.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// The base snapshot (`.db` from etcd's snapshot RPC), at or below the target.
    pub base_db: PathBuf,
    /// The revision to restore.
    pub target_revision: i64,
    /// Where the snapshot at the target revision is written.
    pub output_db: PathBuf,
    /// Where the throw-away etcd keeps its data (a temporary directory inside it).
    pub work_dir: PathBuf,
    /// The etcd cluster id the base snapshot records: every segment replayed must be of it.
    pub base_cluster_id: Option<u64>,
    /// Counters the replay keeps current for a progress display, if one watches.
    pub progress: Option<Arc<ReplayProgress>>,
}

impl ReplayRequest {
    /// Tells the watcher, if any, that revisions from `base` are replayed up to the target.
    pub(crate) fn show_replaying(&self, base: i64) {
        if let Some(progress) = &self.progress {
            progress.replaying(base, self.target_revision);
        }
    }

    /// Tells the watcher, if any, that revisions up to `revision` are applied.
    pub(crate) fn show_applied(&self, revision: i64) {
        if let Some(progress) = &self.progress {
            progress.applied(revision);
        }
    }
}

/// How a replay carries the base snapshot forward.
#[derive(Debug, Clone)]
pub enum ReplayEngine {
    /// The base's backend file copied and the recorded changes appended to its `key` bucket
    /// as etcd stores them (`etcd-backend`): no etcd needed, bounded by reading the segments.
    Backend,
    /// A throw-away etcd restored from the base, every revision applied as one transaction
    /// whose revision etcd must confirm, then its snapshot at the target.
    Etcd(EtcdBinaries),
}

impl ReplayEngine {
    /// Its name in configuration and reports: `backend` or `etcd`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Backend => "backend",
            Self::Etcd(_) => "etcd",
        }
    }
}

/// Carries `request.base_db` forward with `chain`'s revisions up to the target revision and
/// writes the snapshot at exactly that revision to `request.output_db`, with `engine`.
pub async fn replay_to_revision(
    engine: &ReplayEngine,
    chain: &mut ChainReader,
    request: &ReplayRequest,
    cancel: &CancellationToken,
) -> Result<ReplayReport, ReplicationError> {
    let report = match engine {
        ReplayEngine::Backend => replay_into_backend(chain, request, cancel).await?,
        ReplayEngine::Etcd(binaries) => {
            let scratch =
                ScratchEtcd::restore(binaries, &request.base_db, &request.work_dir, cancel).await?;
            let result = replay_into(&scratch, chain, request, cancel).await;
            scratch.stop().await;
            result?
        }
    };
    info!(
        engine = engine.name(),
        base = report.base_revision,
        revision = report.revision,
        revisions = report.replayed_revisions,
        resent = report.resent_transactions,
        seconds = report.replay_time.as_secs_f64(),
        "replayed to revision"
    );
    Ok(report)
}

/// What a replay whose chain reader and applier ran side by side failed of, if anything: a
/// failure to apply says more than the reader it stopped; an unreadable chain says more than
/// the applier that ran out of segments (which reports `Cancelled`).
pub(crate) fn first_cause<T>(
    read: Result<(), ReplicationError>,
    applied: Result<T, ReplicationError>,
    cancel: &CancellationToken,
) -> Result<T, ReplicationError> {
    match (read, applied) {
        (_, Err(error))
            if !matches!(error, ReplicationError::Cancelled) || cancel.is_cancelled() =>
        {
            Err(error)
        }
        (Err(error), _) => Err(error),
        (Ok(()), result) => result,
    }
}

/// CPU time spent between two readings, when both were taken.
pub(crate) fn cpu_since(before: Option<Duration>, now: Option<Duration>) -> Option<Duration> {
    Some(now?.saturating_sub(before?))
}

/// Refuses a target below the base, and a generation that starts above the base's next
/// revision.
pub(crate) fn check_coverage(
    chain: &ChainReader,
    request: &ReplayRequest,
    base_revision: i64,
) -> Result<(), ReplicationError> {
    let target = request.target_revision;
    if target < base_revision {
        return Err(ReplicationError::NoCoverage {
            requested: target,
            detail: format!(
                "the base snapshot `{}` is at revision {base_revision}, above it: restore from an older snapshot",
                request.base_db.display()
            ),
        });
    }
    let chain_start = chain.generation().base_revision() + 1;
    if target > base_revision && chain_start > base_revision + 1 {
        return Err(ReplicationError::NoCoverage {
            requested: target,
            detail: format!(
                "generation {} starts at revision {chain_start}, the base snapshot ends at {base_revision}",
                chain.generation()
            ),
        });
    }
    Ok(())
}

/// Refuses a segment of another etcd cluster than the base's.
pub(crate) fn check_cluster(
    key: &str,
    segment: &Segment,
    request: &ReplayRequest,
) -> Result<(), ReplicationError> {
    match request.base_cluster_id {
        Some(expected) if segment.header.cluster_id != expected => {
            Err(ReplicationError::NoCoverage {
                requested: request.target_revision,
                detail: format!(
                    "segment `{key}` records etcd cluster {:x}, the base snapshot is of cluster {expected:x}",
                    segment.header.cluster_id
                ),
            })
        }
        _ => Ok(()),
    }
}

/// The TTL to grant `lease`, first used at `revision` in segment `key`, from the TTLs recorded
/// so far.
pub(crate) fn lease_ttl(
    recorded: &HashMap<i64, i64>,
    lease: i64,
    key: &str,
    revision: i64,
) -> Result<i64, ReplicationError> {
    match recorded.get(&lease) {
        Some(&ttl) if ttl > 0 => Ok(ttl),
        Some(_) => Ok(EXPIRED_LEASE_TTL_SECONDS),
        None => Err(ReplicationError::BadEvent {
            segment: key.to_string(),
            revision,
            detail: format!("lease {lease:x} is used but was never recorded"),
        }),
    }
}

async fn replay_into(
    scratch: &ScratchEtcd,
    chain: &mut ChainReader,
    request: &ReplayRequest,
    cancel: &CancellationToken,
) -> Result<ReplayReport, ReplicationError> {
    let target = request.target_revision;
    let base_revision = scratch.revision().await?;
    check_coverage(chain, request, base_revision)?;
    request.show_replaying(base_revision);
    let client = scratch.client().clone();
    let existing_leases: HashSet<i64> = client
        .lease_client()
        .leases()
        .await
        .map_err(|e| ReplicationError::etcd("lease list", e))?
        .leases()
        .iter()
        .map(|lease| lease.id())
        .collect();
    let keepalive_cancel = cancel.child_token();
    let (keep_tx, keep_rx) = mpsc::channel(1024);
    let keepalive = tokio::spawn(keep_leases_alive(
        client.clone(),
        keep_rx,
        keepalive_cancel.clone(),
    ));
    for id in &existing_leases {
        let _ = keep_tx.send(*id).await;
    }

    let mut report = ReplayReport {
        engine: "etcd",
        base_revision,
        revision: base_revision,
        replayed_revisions: 0,
        segments_read: 0,
        first_segment: None,
        last_segment: None,
        leases_granted: 0,
        resent_transactions: 0,
        replay_time: Duration::ZERO,
        base_copy_time: None,
        replay_cpu_own: None,
        replay_cpu_etcd: None,
        snapshot_bytes: 0,
    };
    let cpu_before = (process_cpu_time("self"), scratch.cpu_time());
    let started = Instant::now();
    let outcome = if target > base_revision {
        // Segments are read and decoded (one ahead) while the previous one is applied.
        let (segments_tx, segments_rx) = mpsc::channel(1);
        let reading = read_chain(chain, base_revision, target, segments_tx, cancel);
        let applying = apply_segments(
            &client,
            segments_rx,
            request,
            existing_leases,
            &keep_tx,
            &mut report,
            cancel,
        );
        let (read, applied) = tokio::join!(reading, applying);
        first_cause(read, applied, cancel)
    } else {
        Ok(())
    };
    report.replay_time = started.elapsed();
    report.replay_cpu_own = cpu_since(cpu_before.0, process_cpu_time("self"));
    report.replay_cpu_etcd = cpu_since(cpu_before.1, scratch.cpu_time());
    if outcome.is_ok() {
        // Nothing else writes to this etcd: its snapshot is at exactly the target revision.
        let now = scratch.revision().await?;
        if now != target {
            keepalive_cancel.cancel();
            return Err(ReplicationError::ReplayDiverged {
                segment: report
                    .last_segment
                    .clone()
                    .unwrap_or_else(|| "(no segment read)".into()),
                recorded: target,
                got: now,
            });
        }
        report.snapshot_bytes = scratch.snapshot_to(&request.output_db, cancel).await?;
    }
    keepalive_cancel.cancel();
    let _ = keepalive.await;
    outcome?;
    Ok(report)
}

/// Reads the chain's segments in order until one reaches `target`, handing each on. A chain
/// that breaks or ends first is `NotRestorable`, naming how far it reaches.
pub(crate) async fn read_chain(
    chain: &mut ChainReader,
    base_revision: i64,
    target: i64,
    segments: mpsc::Sender<(Arc<str>, Segment)>,
    cancel: &CancellationToken,
) -> Result<(), ReplicationError> {
    loop {
        let reached = chain
            .verified()
            .map(|link| link.last_revision)
            .unwrap_or(base_revision)
            .max(base_revision);
        let restorable = |detail: String| ReplicationError::NotRestorable {
            requested: target,
            restorable: reached,
            detail,
        };
        let (key, segment) = match chain.next_segment(cancel).await {
            Ok(Some(next)) => next,
            Ok(None) => {
                return Err(restorable(format!(
                    "generation {} ends at revision {}",
                    chain.generation(),
                    chain
                        .listed_last_revision()
                        .unwrap_or(chain.generation().base_revision())
                )))
            }
            Err(ReplicationError::Cancelled) => return Err(ReplicationError::Cancelled),
            Err(error) => return Err(restorable(error.to_string())),
        };
        let last = segment.header.last_revision;
        if last <= base_revision {
            // Read to verify the chain; nothing in it to apply.
            continue;
        }
        if segments.send((Arc::from(key), segment)).await.is_err() {
            // The applier stopped (it failed, or has what it needs).
            return Ok(());
        }
        if last >= target {
            return Ok(());
        }
    }
}

/// Applies the segments' revisions above the base up to the target, through the pipeline,
/// granting each lease before the first revision that uses it.
async fn apply_segments(
    client: &Client,
    mut segments: mpsc::Receiver<(Arc<str>, Segment)>,
    request: &ReplayRequest,
    mut existing_leases: HashSet<i64>,
    keep_alive: &mpsc::Sender<i64>,
    report: &mut ReplayReport,
    cancel: &CancellationToken,
) -> Result<(), ReplicationError> {
    let target = request.target_revision;
    let mut pipeline = TxnPipeline::new(client.kv_client(), report.revision);
    let mut lease_client = client.lease_client();
    let mut recorded_ttls: HashMap<i64, i64> = HashMap::new();
    let mut guard: Option<ApplyGuard> = None;
    let mut next_revision = report.revision + 1;
    let mut sent_up_to = report.revision;
    while sent_up_to < target {
        let received = tokio::select! {
            received = segments.recv() => received,
            () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
        };
        // The reader names why the chain ended.
        let Some((key, segment)) = received else {
            return Err(ReplicationError::Cancelled);
        };
        check_cluster(&key, &segment, request)?;
        report.segments_read += 1;
        report.first_segment.get_or_insert_with(|| key.to_string());
        report.last_segment = Some(key.to_string());
        for lease in &segment.leases {
            recorded_ttls.insert(lease.id, lease.granted_ttl_seconds);
        }
        for revision in segment.revisions {
            if revision.revision < next_revision {
                continue;
            }
            if revision.revision > target {
                break;
            }
            for lease in leases_needed(&revision, |lease| existing_leases.contains(&lease)) {
                let ttl = lease_ttl(&recorded_ttls, lease, &key, revision.revision)?;
                lease_client
                    .grant(ttl, Some(LeaseGrantOptions::new().with_id(lease)))
                    .await
                    .map_err(|e| ReplicationError::etcd("lease grant", e))?;
                existing_leases.insert(lease);
                report.leases_granted += 1;
                let _ = keep_alive.send(lease).await;
            }
            next_revision = revision.revision + 1;
            let (txn, next_guard) = revision_txn(&key, revision, guard.take())?;
            guard = next_guard;
            sent_up_to = txn.revision;
            pipeline.push(txn, cancel).await?;
            request.show_applied(sent_up_to);
        }
    }
    pipeline.finish(cancel).await?;
    report.replayed_revisions = (pipeline.applied - report.revision).max(0) as u64;
    report.revision = pipeline.applied;
    report.resent_transactions = pipeline.resent;
    Ok(())
}
/// Leases the revision's puts carry that are not `known` yet (to the throw-away etcd, or to
/// the backend being written), each once, in id order.
pub(crate) fn leases_needed(revision: &RevisionEvents, known: impl Fn(i64) -> bool) -> Vec<i64> {
    let mut needed: Vec<i64> = revision
        .events
        .iter()
        .filter(|event| event.r#type == 0)
        .filter_map(|event| event.kv.as_ref().map(|kv| kv.lease))
        .filter(|lease| *lease != 0 && !known(*lease))
        .collect();
    needed.sort_unstable();
    needed.dedup();
    needed
}

/// Keeps every lease it is told about alive until cancelled, so that no lease expires (and
/// deletes keys, adding revisions the source never had) during a long replay.
async fn keep_leases_alive(
    client: Client,
    mut new_leases: mpsc::Receiver<i64>,
    cancel: CancellationToken,
) {
    let mut lease_client = client.lease_client();
    let mut keepers: Vec<LeaseKeeper> = Vec::new();
    let mut answers: SelectAll<LeaseKeepAliveStream> = SelectAll::new();
    let mut tick = tokio::time::interval(LEASE_KEEPALIVE_INTERVAL);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            Some(id) = new_leases.recv() => match lease_client.keep_alive(id).await {
                Ok((keeper, stream)) => {
                    keepers.push(keeper);
                    answers.push(stream);
                }
                Err(e) => warn!(lease = id, error = %e, "replay cannot keep a lease alive"),
            },
            _ = tick.tick() => {
                for keeper in &mut keepers {
                    if let Err(e) = keeper.keep_alive().await {
                        warn!(lease = keeper.id(), error = %e, "replay lease keep-alive failed");
                    }
                }
            }
            Some(_) = answers.next(), if !answers.is_empty() => {}
        }
    }
}
