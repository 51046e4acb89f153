//! What both replay engines share: the coverage and cluster checks, the chain reader task,
//! lease lookups, and which failure a replay reports.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ReplayReport, ReplayRequest};
use crate::{ChainReader, ReplicationError, RevisionEvents, Segment};

/// TTL given to a lease the capture saw only after it had expired (its keys are deleted by a
/// later recorded revision, or the restore keeps them until this TTL runs out).
const EXPIRED_LEASE_TTL_SECONDS: i64 = 60;

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

/// A segment the replay is about to apply: refused when of another etcd cluster than the base;
/// else counted in `report` and its leases' recorded TTLs noted in `ttls`.
pub(crate) fn accept_segment(
    key: &str,
    segment: &Segment,
    request: &ReplayRequest,
    report: &mut ReplayReport,
    ttls: &mut HashMap<i64, i64>,
) -> Result<(), ReplicationError> {
    check_cluster(key, segment, request)?;
    report.segments_read += 1;
    report.first_segment.get_or_insert_with(|| key.to_string());
    report.last_segment = Some(key.to_string());
    for lease in &segment.leases {
        ttls.insert(lease.id, lease.granted_ttl_seconds);
    }
    Ok(())
}

/// Refuses a segment of another etcd cluster than the base's.
fn check_cluster(
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
