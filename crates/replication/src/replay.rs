//! Replay: a generation's revisions applied to a throw-away etcd restored from a base snapshot,
//! each revision as one transaction that must land on the recorded revision, then a snapshot at
//! exactly the target revision.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, LeaseGrantOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp,
};
use futures::stream::{SelectAll, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::scratch_etcd::{EtcdBinaries, ScratchEtcd};
use crate::{ChainReader, ReplicationError, RevisionEvents};

/// TTL given to a lease the capture saw only after it had expired (its keys are deleted by a
/// later recorded revision, or the restore keeps them until this TTL runs out).
const EXPIRED_LEASE_TTL_SECONDS: i64 = 60;
/// How often replay keeps the throw-away etcd's leases alive (etcd's shortest TTL is 2 s).
const LEASE_KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// The real revision of the base snapshot (can be above the revision it was recorded at).
    pub base_revision: i64,
    /// The revision of the written snapshot (the target).
    pub revision: i64,
    /// Revisions applied.
    pub replayed_revisions: u64,
    /// Segments read.
    pub segments_read: u64,
    /// Leases granted with their recorded ids.
    pub leases_granted: u64,
    /// Time spent applying revisions.
    pub replay_time: Duration,
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
}

/// Restores `request.base_db` into a throw-away etcd, replays `chain` up to the target revision
/// and writes a snapshot taken at exactly that revision.
pub async fn replay_to_revision(
    binaries: &EtcdBinaries,
    chain: &mut ChainReader,
    request: &ReplayRequest,
    cancel: &CancellationToken,
) -> Result<ReplayReport, ReplicationError> {
    let scratch =
        ScratchEtcd::restore(binaries, &request.base_db, &request.work_dir, cancel).await?;
    let result = replay_into(&scratch, chain, request, cancel).await;
    scratch.stop().await;
    result
}

async fn replay_into(
    scratch: &ScratchEtcd,
    chain: &mut ChainReader,
    request: &ReplayRequest,
    cancel: &CancellationToken,
) -> Result<ReplayReport, ReplicationError> {
    let target = request.target_revision;
    let base_revision = scratch.revision().await?;
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
    let mut client = scratch.client().clone();
    let mut existing_leases: HashSet<i64> = client
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
        base_revision,
        revision: base_revision,
        replayed_revisions: 0,
        segments_read: 0,
        leases_granted: 0,
        replay_time: Duration::ZERO,
        snapshot_bytes: 0,
    };
    let mut recorded_ttls: HashMap<i64, i64> = HashMap::new();
    let started = Instant::now();
    let outcome = async {
        while report.revision < target {
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
                        chain.listed_last_revision().unwrap_or(chain_start - 1)
                    )))
                }
                Err(ReplicationError::Cancelled) => return Err(ReplicationError::Cancelled),
                Err(error) => return Err(restorable(error.to_string())),
            };
            report.segments_read += 1;
            for lease in &segment.leases {
                recorded_ttls.insert(lease.id, lease.granted_ttl_seconds);
            }
            for revision in &segment.revisions {
                if revision.revision <= report.revision {
                    continue;
                }
                if revision.revision > target {
                    break;
                }
                for lease in leases_needed(revision, &existing_leases) {
                    let ttl = match recorded_ttls.get(&lease) {
                        Some(&ttl) if ttl > 0 => ttl,
                        Some(_) => EXPIRED_LEASE_TTL_SECONDS,
                        None => {
                            return Err(ReplicationError::BadEvent {
                                segment: key.clone(),
                                revision: revision.revision,
                                detail: format!("lease {lease:x} is used but was never recorded"),
                            })
                        }
                    };
                    client
                        .lease_grant(ttl, Some(LeaseGrantOptions::new().with_id(lease)))
                        .await
                        .map_err(|e| ReplicationError::etcd("lease grant", e))?;
                    existing_leases.insert(lease);
                    report.leases_granted += 1;
                    let _ = keep_tx.send(lease).await;
                }
                let got = apply_revision(&mut client, &key, revision, cancel).await?;
                if got != revision.revision {
                    return Err(ReplicationError::ReplayDiverged {
                        segment: key.clone(),
                        recorded: revision.revision,
                        got,
                    });
                }
                report.revision = got;
                report.replayed_revisions += 1;
            }
        }
        Ok(())
    }
    .await;
    report.replay_time = started.elapsed();
    if outcome.is_ok() {
        // Nothing else writes to this etcd: its snapshot is at exactly the target revision.
        let now = scratch.revision().await?;
        if now != target {
            keepalive_cancel.cancel();
            return Err(ReplicationError::ReplayDiverged {
                segment: "(after the last segment)".into(),
                recorded: target,
                got: now,
            });
        }
        report.snapshot_bytes = scratch.snapshot_to(&request.output_db, cancel).await?;
    }
    keepalive_cancel.cancel();
    let _ = keepalive.await;
    outcome?;
    info!(
        base = report.base_revision,
        revision = report.revision,
        revisions = report.replayed_revisions,
        seconds = report.replay_time.as_secs_f64(),
        "replayed to revision"
    );
    Ok(report)
}

/// Leases the revision's puts carry that the throw-away etcd does not have yet.
fn leases_needed(revision: &RevisionEvents, existing: &HashSet<i64>) -> Vec<i64> {
    let mut needed: Vec<i64> = revision
        .events
        .iter()
        .filter(|event| event.r#type == 0)
        .filter_map(|event| event.kv.as_ref().map(|kv| kv.lease))
        .filter(|lease| *lease != 0 && !existing.contains(lease))
        .collect();
    needed.sort_unstable();
    needed.dedup();
    needed
}

/// Applies one revision as one transaction; returns the revision etcd answered with.
async fn apply_revision(
    client: &mut Client,
    segment: &str,
    revision: &RevisionEvents,
    cancel: &CancellationToken,
) -> Result<i64, ReplicationError> {
    let mut ops = Vec::with_capacity(revision.events.len());
    for event in &revision.events {
        let Some(kv) = &event.kv else {
            return Err(ReplicationError::BadEvent {
                segment: segment.to_string(),
                revision: revision.revision,
                detail: "an event without a key".into(),
            });
        };
        ops.push(match event.r#type {
            0 => TxnOp::put(
                kv.key.clone(),
                kv.value.clone(),
                (kv.lease != 0).then(|| PutOptions::new().with_lease(kv.lease)),
            ),
            1 => TxnOp::delete(kv.key.clone(), None),
            other => {
                return Err(ReplicationError::BadEvent {
                    segment: segment.to_string(),
                    revision: revision.revision,
                    detail: format!("unknown event type {other}"),
                })
            }
        });
    }
    let txn = client.txn(Txn::new().and_then(ops));
    let response = tokio::select! {
        response = txn => response.map_err(|e| ReplicationError::etcd("txn", e))?,
        () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
    };
    Ok(response.header().map(|h| h.revision()).unwrap_or(0))
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
