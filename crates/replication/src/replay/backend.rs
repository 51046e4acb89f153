//! The `backend` replay engine: the base snapshot's backend file carried forward without etcd
//! (`etcd-backend`'s `BackendExtension`): its buckets copied into the output, every recorded
//! change above its revision appended to the `key` bucket exactly as the source etcd stored it
//! (the watch hands out the stored `KeyValue`; a change's index in its revision is its `sub`),
//! and the leases those changes use added with their recorded TTLs. Segments are read and
//! decoded by the chain reader (one ahead) while a blocking thread writes the file.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_dr_etcd_backend::{BackendError, BackendExtension, Change, KeyValue};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::checks::{
    accept_segment, check_coverage, cpu_since, first_cause, lease_ttl, leases_needed, read_chain,
};
use super::{ReplayReport, ReplayRequest};
use crate::scratch_etcd::process_cpu_time;
use crate::{ChainReader, ReplicationError, Segment};

/// etcd's event type of a deletion (`mvccpb.Event_DELETE`); 0 is a put.
const EVENT_DELETE: i32 = 1;

pub(crate) async fn replay_into_backend(
    chain: &mut ChainReader,
    request: &ReplayRequest,
    cancel: &CancellationToken,
) -> Result<ReplayReport, ReplicationError> {
    let cpu_before = process_cpu_time("self");
    let started = Instant::now();
    let (base_db, output_db) = (request.base_db.clone(), request.output_db.clone());
    let extension = blocking(&request.output_db, move || {
        BackendExtension::start(&base_db, &output_db)
    })
    .await?
    .map_err(|e| backend_error(e, &request.base_db))?;
    let base_revision = extension.base_revision();
    check_coverage(chain, request, base_revision)?;
    request.show_replaying(base_revision);

    let report = ReplayReport {
        engine: "backend",
        base_revision,
        revision: base_revision,
        replayed_revisions: 0,
        segments_read: 0,
        first_segment: None,
        last_segment: None,
        leases_granted: 0,
        resent_transactions: 0,
        replay_time: Duration::ZERO,
        base_copy_time: Some(started.elapsed()),
        replay_cpu_own: None,
        replay_cpu_etcd: None,
        snapshot_bytes: 0,
    };
    let (segments_tx, segments_rx) = mpsc::channel(1);
    let applying = {
        let (request, cancel) = (request.clone(), cancel.clone());
        blocking(&request.output_db.clone(), move || {
            apply_segments(extension, segments_rx, report, &request, &cancel)
        })
    };
    let read = if request.target_revision > base_revision {
        read_chain(
            chain,
            base_revision,
            request.target_revision,
            segments_tx,
            cancel,
        )
        .await
    } else {
        drop(segments_tx);
        Ok(())
    };
    let mut report = first_cause(read, applying.await?, cancel)?;
    report.replay_time = started.elapsed();
    report.replay_cpu_own = cpu_since(cpu_before, process_cpu_time("self"));
    Ok(report)
}

/// Appends the segments' revisions above the base up to the target, then finishes the file
/// with the leases they use; `report` counts what was applied. Runs on a blocking thread; the
/// output is removed on any failure (the extension removes it when dropped unfinished).
fn apply_segments(
    mut extension: BackendExtension,
    mut segments: mpsc::Receiver<(Arc<str>, Segment)>,
    mut report: ReplayReport,
    request: &ReplayRequest,
    cancel: &CancellationToken,
) -> Result<ReplayReport, ReplicationError> {
    let target = request.target_revision;
    let mut recorded_ttls: HashMap<i64, i64> = HashMap::new();
    let mut leases: BTreeMap<i64, i64> = BTreeMap::new();
    while report.revision < target {
        if cancel.is_cancelled() {
            return Err(ReplicationError::Cancelled);
        }
        // The reader names why the chain ended.
        let Some((key, segment)) = segments.blocking_recv() else {
            return Err(ReplicationError::Cancelled);
        };
        accept_segment(&key, &segment, request, &mut report, &mut recorded_ttls)?;
        for revision in segment.revisions {
            if revision.revision <= report.revision {
                continue;
            }
            if revision.revision > target {
                break;
            }
            if revision.events.is_empty() {
                return Err(ReplicationError::BadEvent {
                    segment: key.to_string(),
                    revision: revision.revision,
                    detail: "a revision without changes".into(),
                });
            }
            for lease in leases_needed(&revision, |lease| {
                extension.base_has_lease(lease) || leases.contains_key(&lease)
            }) {
                let ttl = lease_ttl(&recorded_ttls, lease, &key, revision.revision)?;
                leases.insert(lease, ttl);
            }
            for (sub, event) in revision.events.into_iter().enumerate() {
                let Some(kv) = event.kv else {
                    return Err(ReplicationError::BadEvent {
                        segment: key.to_string(),
                        revision: revision.revision,
                        detail: format!("change {sub} has no key"),
                    });
                };
                let change = if event.r#type == EVENT_DELETE {
                    Change::Delete
                } else {
                    Change::Put
                };
                let kv = KeyValue {
                    key: kv.key,
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                    version: kv.version,
                    value: kv.value,
                    lease: kv.lease,
                };
                extension
                    .append(revision.revision, sub as i64, change, &kv)
                    .map_err(|e| ReplicationError::BadEvent {
                        segment: key.to_string(),
                        revision: revision.revision,
                        detail: e.to_string(),
                    })?;
            }
            report.revision = revision.revision;
            report.replayed_revisions += 1;
            request.show_applied(revision.revision);
        }
    }
    let finished = extension
        .finish(leases)
        .map_err(|e| backend_error(e, &request.output_db))?;
    report.leases_granted = finished.leases_added;
    report.snapshot_bytes = finished.bytes;
    Ok(report)
}

/// Runs file work on a blocking thread.
fn blocking<T: Send + 'static>(
    output: &std::path::Path,
    work: impl FnOnce() -> T + Send + 'static,
) -> impl std::future::Future<Output = Result<T, ReplicationError>> {
    let output = output.to_path_buf();
    let task = tokio::task::spawn_blocking(work);
    async move {
        task.await.map_err(|e| ReplicationError::Backend {
            path: output,
            detail: format!("the writer thread ended: {e}"),
        })
    }
}

fn backend_error(error: BackendError, path: &std::path::Path) -> ReplicationError {
    ReplicationError::Backend {
        path: PathBuf::from(path),
        detail: error.to_string(),
    }
}
