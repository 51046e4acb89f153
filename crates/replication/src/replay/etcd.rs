//! The `etcd` replay engine: a throw-away etcd restored from the base applies each revision as
//! one transaction that must land on the recorded revision (pipelined, in order: `pipeline.rs`),
//! then its snapshot at exactly the target revision.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, LeaseGrantOptions, LeaseKeepAliveStream, LeaseKeeper};
use futures::stream::{SelectAll, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::checks::{
    accept_segment, check_coverage, cpu_since, first_cause, lease_ttl, leases_needed, read_chain,
};
use super::{ReplayReport, ReplayRequest};
use crate::pipeline::{revision_txn, ApplyGuard, TxnPipeline};
use crate::scratch_etcd::{process_cpu_time, ScratchEtcd};
use crate::{ChainReader, ReplicationError, Segment};

/// How often replay keeps the throw-away etcd's leases alive (etcd's shortest TTL is 2 s).
const LEASE_KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);

pub(super) async fn replay_into(
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
        accept_segment(&key, &segment, request, report, &mut recorded_ttls)?;
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
            request.show_applied(pipeline.applied);
        }
    }
    pipeline.finish(cancel).await?;
    report.replayed_revisions = (pipeline.applied - report.revision).max(0) as u64;
    report.revision = pipeline.applied;
    report.resent_transactions = pipeline.resent;
    Ok(())
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
