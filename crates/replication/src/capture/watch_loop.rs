//! The watch: responses joined from fragments, events grouped by revision and checked to
//! continue the chain, leases recorded, segments cut by age or size.

use std::collections::HashSet;
use std::time::SystemTime;

use etcd_client::proto::PbEvent;
use etcd_client::{Client, WatchOptions};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::builder::{sleep_until_some, PendingSegment, SegmentBuilder};
use super::progress::unix_ms;
use super::{CaptureOptions, CaptureProgress, CaptureStart};
use crate::{
    GenerationBreak, LeaseRecord, ReplicationError, RevisionEvents, SegmentSigner,
    NO_PREVIOUS_SEGMENT,
};

pub(super) async fn watch_into_segments(
    client: &Client,
    start: &CaptureStart,
    options: &CaptureOptions,
    signer: Option<SegmentSigner>,
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
    let mut builder = SegmentBuilder::new(
        generation.clone(),
        signer,
        start.resume.map(|link| link.cluster_id),
        start
            .resume
            .map(|link| link.digest)
            .unwrap_or(NO_PREVIOUS_SEGMENT),
    );
    progress.send_modify(|p| p.start_generation(generation.clone(), expected - 1, start.resume));

    // Before watching: is this still the etcd the chain came from, and not behind it? A watch
    // from a future revision is accepted and would silently join another history (an etcd
    // restored from an older snapshot under the same cluster id) to the chain.
    let (cluster_id, etcd_revision) = tokio::select! {
        now = etcd_now(client) => now?,
        () = cancel.cancelled() => return Ok(()),
    };
    if let Some(reason) =
        check_continues(builder.cluster_id, expected - 1, cluster_id, etcd_revision)
    {
        return Err(ended(reason));
    }

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
    let open = OpenWatch::opened(progress);
    let mut lease_client = client.lease_client();
    let mut known_leases: HashSet<i64> = HashSet::new();
    let mut fragments: Vec<PbEvent> = Vec::new();
    let mut progress_asked_at = Instant::now();

    let outcome: Result<(), ReplicationError> = loop {
        // A segment is cut `max_segment_age` after its first revision; an idle capture asks
        // etcd for its revision as often, so that an idle cluster shows no lag.
        let wake_at = builder.opened_at.unwrap_or(progress_asked_at) + options.max_segment_age;
        let message = tokio::select! {
            biased;
            () = cancel.cancelled() => break Ok(()),
            () = sleep_until_some(Some(wake_at)) => {
                if let Err(error) = builder.cut(segments, cancel).await {
                    break Err(error);
                }
                progress_asked_at = Instant::now();
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
        let received_unix_ms = unix_ms(SystemTime::now());
        if let Some(header) = &response.header {
            match builder.cluster_id {
                None => builder.cluster_id = Some(header.cluster_id),
                Some(ours) if ours != header.cluster_id => {
                    break Err(ended(GenerationBreak::ClusterChanged {
                        from: ours,
                        to: header.cluster_id,
                    }))
                }
                Some(_) => {}
            }
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
        let groups = match group_by_revision(events, &mut expected) {
            Ok(groups) => groups,
            Err(reason) => break Err(ended(reason)),
        };
        let mut failed = None;
        for group in groups {
            let revision = group.revision;
            if let Err(error) = record_new_leases(
                &mut lease_client,
                &mut known_leases,
                &group,
                &mut builder.leases,
            )
            .await
            {
                failed = Some(error);
                break;
            }
            builder.push(RevisionEvents {
                revision,
                observed_unix_ms: received_unix_ms,
                events: group.events,
            });
            progress.send_modify(|p| {
                p.captured_revision = revision;
                p.etcd_reported(revision, received_unix_ms);
            });
            if builder.bytes >= options.max_segment_bytes {
                if let Err(error) = builder.cut(segments, cancel).await {
                    failed = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = failed {
            break Err(error);
        }
        // After the events: a header's revision is etcd's when it sent them.
        if let Some(header) = &response.header {
            progress.send_modify(|p| p.etcd_reported(header.revision, received_unix_ms));
        }
    };
    drop(open);
    // Revisions already captured are valid whatever stopped the watch: store them.
    let flushed = builder.cut(segments, &CancellationToken::new()).await;
    outcome.and(flushed)
}

/// The open watch as progress shows it (`open_watch`), until dropped.
struct OpenWatch<'a> {
    progress: &'a watch::Sender<CaptureProgress>,
    number: u64,
}

impl<'a> OpenWatch<'a> {
    fn opened(progress: &'a watch::Sender<CaptureProgress>) -> Self {
        let mut number = 0;
        progress.send_modify(|p| number = p.watch_opened());
        Self { progress, number }
    }
}

impl Drop for OpenWatch<'_> {
    fn drop(&mut self) {
        let number = self.number;
        self.progress.send_modify(|p| p.watch_closed(number));
    }
}

/// etcd's cluster id and revision now, by a linearizable read (a lagging member answers only
/// once it caught up with the leader).
async fn etcd_now(client: &Client) -> Result<(u64, i64), ReplicationError> {
    let answer = client
        .kv_client()
        .get(
            "etcd-dr/revision-probe",
            Some(etcd_client::GetOptions::new().with_count_only()),
        )
        .await
        .map_err(|e| ReplicationError::etcd("revision read", e))?;
    let header = answer.header().ok_or_else(|| {
        ReplicationError::etcd(
            "revision read",
            etcd_client::Error::InvalidArgs("etcd answered without a header".into()),
        )
    })?;
    Ok((header.cluster_id(), header.revision()))
}

/// Whether etcd (`cluster_id` at `etcd_revision`) can continue a chain of `chain_cluster`
/// that holds revisions up to `captured`: not when it is another cluster or behind the chain.
fn check_continues(
    chain_cluster: Option<u64>,
    captured: i64,
    cluster_id: u64,
    etcd_revision: i64,
) -> Option<GenerationBreak> {
    match chain_cluster {
        Some(ours) if ours != cluster_id => Some(GenerationBreak::ClusterChanged {
            from: ours,
            to: cluster_id,
        }),
        _ if etcd_revision < captured => Some(GenerationBreak::EtcdBehindChain {
            captured,
            etcd_revision,
        }),
        _ => None,
    }
}

/// Records the granted TTL of each lease first seen on a put of `group` (asked once per lease
/// and generation).
async fn record_new_leases(
    lease_client: &mut etcd_client::LeaseClient,
    known_leases: &mut HashSet<i64>,
    group: &RevisionGroup,
    leases: &mut Vec<LeaseRecord>,
) -> Result<(), ReplicationError> {
    for event in &group.events {
        let Some(kv) = &event.kv else { continue };
        if kv.lease == 0 || !known_leases.insert(kv.lease) {
            continue;
        }
        let answer = lease_client
            .time_to_live(kv.lease, None)
            .await
            .map_err(|e| ReplicationError::etcd("lease time-to-live", e))?;
        leases.push(LeaseRecord {
            id: kv.lease,
            granted_ttl_seconds: if answer.ttl() < 0 {
                -1
            } else {
                answer.granted_ttl()
            },
            first_revision: group.revision,
        });
    }
    Ok(())
}

/// Events of one watch response, split into revisions and checked to continue `expected`.
pub(super) struct RevisionGroup {
    pub revision: i64,
    pub events: Vec<PbEvent>,
}

pub(super) fn group_by_revision(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::tests::{delete, put};

    #[test]
    fn a_chain_continues_only_on_its_own_cluster_at_or_above_its_revision() {
        assert_eq!(check_continues(Some(7), 100, 7, 100), None);
        assert_eq!(check_continues(Some(7), 100, 7, 250), None);
        assert_eq!(check_continues(None, 100, 9, 100), None);
        assert_eq!(
            check_continues(Some(7), 100, 7, 60),
            Some(GenerationBreak::EtcdBehindChain {
                captured: 100,
                etcd_revision: 60
            })
        );
        assert_eq!(
            check_continues(Some(7), 100, 9, 500),
            Some(GenerationBreak::ClusterChanged { from: 7, to: 9 })
        );
        assert_eq!(
            GenerationBreak::EtcdBehindChain {
                captured: 100,
                etcd_revision: 60
            }
            .kind(),
            "regression"
        );
    }

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
}
