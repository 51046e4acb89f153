//! A time resolved to a revision: the newest revision observed at or before it, by the capture
//! (each revision's observed time in its segment) or by a full snapshot (its creation time).

use chrono::{DateTime, Utc};
use etcd_dr_core::SnapshotManifest;
use tokio_util::sync::CancellationToken;

use crate::store::{list_segments, read_segment};
use crate::{GenerationId, ReplicationError, RevisionSource, Segment};

/// The revision the store shows as current at `time`, and the generation it was captured in
/// (`None` when a snapshot is the newest observation). `reaches`: generations newest first.
pub(crate) async fn revision_at_time(
    source: &RevisionSource,
    snapshots: &[SnapshotManifest],
    reaches: &[(GenerationId, i64)],
    time: DateTime<Utc>,
    cancel: &CancellationToken,
) -> Result<(i64, Option<GenerationId>), ReplicationError> {
    let at_ms = time.timestamp_millis();
    let from_snapshot = snapshots
        .iter()
        .filter(|m| m.created_at <= time)
        .max_by_key(|m| (m.created_at, m.etcd.revision))
        .map(|m| (m.created_at.timestamp_millis(), m.etcd.revision));
    let mut from_segments = None;
    for (generation, _) in reaches {
        if generation.started() > time {
            continue;
        }
        if let Some(found) = newest_observed(source, generation, at_ms, cancel).await? {
            from_segments = Some((found.0, found.1, generation.clone()));
            break;
        }
    }
    match (from_snapshot, from_segments) {
        (Some((snapshot_ms, revision)), Some((observed_ms, _, _))) if snapshot_ms > observed_ms => {
            Ok((revision, None))
        }
        (_, Some((_, revision, generation))) => Ok((revision, Some(generation))),
        (Some((_, revision)), None) => Ok((revision, None)),
        (None, None) => Err(ReplicationError::NothingAtTime {
            time: time.to_rfc3339(),
        }),
    }
}

/// The newest revision of `generation` observed at or before `at_ms`, with its observed time:
/// a binary search over the segments' first observed times (names carry only revisions), then
/// a look inside the one found.
async fn newest_observed(
    source: &RevisionSource,
    generation: &GenerationId,
    at_ms: i64,
    cancel: &CancellationToken,
) -> Result<Option<(i64, i64)>, ReplicationError> {
    let names = list_segments(&source.store, &source.segments, generation, cancel).await?;
    let read = |index: usize| {
        let path = source.segments.segment_path(generation, &names[index]);
        async move {
            read_segment(
                &source.store,
                &path,
                &source.identities,
                &source.trust,
                cancel,
            )
            .await
            .map(|(segment, _)| segment)
        }
    };
    // Invariant: segments before `low` start at or before `at_ms`, from `high` on after it.
    let (mut low, mut high) = (0, names.len());
    let mut found: Option<Segment> = None;
    while low < high {
        let middle = (low + high) / 2;
        let segment = read(middle).await?;
        if segment.header.first_observed_unix_ms <= at_ms {
            low = middle + 1;
            found = Some(segment);
        } else {
            high = middle;
        }
    }
    if low == 0 {
        return Ok(None);
    }
    let segment = match found {
        Some(segment) if segment.header.first_revision == names[low - 1].first_revision => segment,
        _ => read(low - 1).await?,
    };
    Ok(segment
        .revisions
        .iter()
        .rev()
        .find(|revision| revision.observed_unix_ms <= at_ms)
        .map(|revision| (revision.observed_unix_ms, revision.revision)))
}
