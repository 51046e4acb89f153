//! Where segments live: `<prefix>/<cluster>/segments/<generation>/<first>-<last>.seg.zst[.age]`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use etcd_dr_transport::{SnapshotLayout, ENCRYPTED_SUFFIX};
use object_store::path::Path;

use crate::ReplicationError;

/// Suffix of a plain segment object.
pub const SEGMENT_SUFFIX: &str = ".seg.zst";
/// Width of the zero-padded revisions in segment names (any non-negative `i64` fits).
const REVISION_DIGITS: usize = 19;

/// One unbroken chain of segments: when its capture started and the revision it starts above
/// (`20261201T213000Z-r0000000000000004821`). Sorts by start time, then revision.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GenerationId {
    started: DateTime<Utc>,
    base_revision: i64,
}

impl GenerationId {
    /// A generation whose first revision is `base_revision + 1`; `started` is cut to seconds.
    pub fn new(started: DateTime<Utc>, base_revision: i64) -> Self {
        let started = DateTime::from_timestamp(started.timestamp(), 0).unwrap_or(started);
        Self {
            started,
            base_revision,
        }
    }

    /// The revision the generation starts above.
    pub fn base_revision(&self) -> i64 {
        self.base_revision
    }

    /// When its capture started.
    pub fn started(&self) -> DateTime<Utc> {
        self.started
    }
}

impl fmt::Display for GenerationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-r{:0width$}",
            self.started.format("%Y%m%dT%H%M%SZ"),
            self.base_revision,
            width = REVISION_DIGITS
        )
    }
}

impl FromStr for GenerationId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{text}` is not a generation id (YYYYMMDDTHHMMSSZ-r<revision>)");
        let (time, revision) = text.split_once("-r").ok_or_else(bad)?;
        let started = NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%SZ")
            .map_err(|_| bad())?
            .and_utc();
        if revision.len() != REVISION_DIGITS || !revision.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let base_revision = revision.parse().map_err(|_| bad())?;
        Ok(Self {
            started,
            base_revision,
        })
    }
}

/// A segment's place in its generation, as its object name says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    /// Its first revision.
    pub first_revision: i64,
    /// Its last revision.
    pub last_revision: i64,
    /// Whether the object is age-encrypted (`.age`).
    pub encrypted: bool,
}

impl SegmentName {
    /// The object's file name.
    pub fn file_name(&self) -> String {
        format!(
            "{:0width$}-{:0width$}{SEGMENT_SUFFIX}{}",
            self.first_revision,
            self.last_revision,
            if self.encrypted { ENCRYPTED_SUFFIX } else { "" },
            width = REVISION_DIGITS
        )
    }

    /// Parses a file name; `None` for anything else.
    pub fn parse(file_name: &str) -> Option<Self> {
        let (stem, encrypted) = match file_name.strip_suffix(ENCRYPTED_SUFFIX) {
            Some(stem) => (stem, true),
            None => (file_name, false),
        };
        let (first, last) = stem.strip_suffix(SEGMENT_SUFFIX)?.split_once('-')?;
        let number = |text: &str| -> Option<i64> {
            (text.len() == REVISION_DIGITS && text.bytes().all(|b| b.is_ascii_digit()))
                .then(|| text.parse().ok())
                .flatten()
        };
        let (first_revision, last_revision) = (number(first)?, number(last)?);
        (first_revision <= last_revision).then_some(Self {
            first_revision,
            last_revision,
            encrypted,
        })
    }
}

/// Where a cluster's segments live in the store.
#[derive(Debug, Clone)]
pub struct ReplicationLayout {
    segments: Path,
    progress: Path,
}

/// The file name of the primary's replication heartbeat, beside the cluster's other objects.
pub const PROGRESS_FILE: &str = "replication-progress.json";

impl ReplicationLayout {
    /// The layout for `cluster` under `prefix` (which may be empty).
    pub fn new(prefix: &str, cluster: &str) -> Result<Self, ReplicationError> {
        if cluster.is_empty() || cluster.contains('/') {
            return Err(ReplicationError::Config(format!(
                "cluster name `{cluster}` must be a non-empty single path segment"
            )));
        }
        let mut parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
        parts.push(cluster);
        let cluster_dir = Path::parse(parts.join("/")).map_err(|e| {
            ReplicationError::Config(format!(
                "store prefix `{prefix}` is not a valid object path: {e}"
            ))
        })?;
        Ok(Self {
            segments: cluster_dir.clone().join("segments"),
            progress: cluster_dir.join(PROGRESS_FILE),
        })
    }

    /// The primary's heartbeat: `<prefix>/<cluster>/replication-progress.json`.
    pub fn progress_path(&self) -> &Path {
        &self.progress
    }

    /// The segments of the cluster whose snapshots `snapshots` lays out (beside them).
    pub fn beside(snapshots: &SnapshotLayout) -> Self {
        Self {
            segments: snapshots.cluster_dir().join("segments"),
            progress: snapshots.cluster_dir().join(PROGRESS_FILE),
        }
    }

    /// The folder holding every generation.
    pub fn segments_prefix(&self) -> &Path {
        &self.segments
    }

    /// The folder of one generation.
    pub fn generation_dir(&self, generation: &GenerationId) -> Path {
        self.segments.clone().join(generation.to_string())
    }

    /// One segment's object.
    pub fn segment_path(&self, generation: &GenerationId, name: &SegmentName) -> Path {
        self.generation_dir(generation).join(name.file_name())
    }

    /// Splits a listed key into its generation and segment name; `None` for foreign keys.
    pub fn parse_key(&self, key: &Path) -> Option<(GenerationId, SegmentName)> {
        let mut rest = key.prefix_match(&self.segments)?;
        let generation = rest.next()?.as_ref().parse().ok()?;
        let name = SegmentName::parse(rest.next()?.as_ref())?;
        rest.next().is_none().then_some((generation, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_documented_keys() {
        let layout = ReplicationLayout::new("/dr/", "prod").unwrap();
        let generation = GenerationId::new("2026-12-01T21:30:00.700Z".parse().unwrap(), 4821);
        assert_eq!(
            generation.to_string(),
            "20261201T213000Z-r0000000000000004821"
        );
        let name = SegmentName {
            first_revision: 4822,
            last_revision: 4900,
            encrypted: true,
        };
        let key = layout.segment_path(&generation, &name);
        assert_eq!(
            key.as_ref(),
            "dr/prod/segments/20261201T213000Z-r0000000000000004821/0000000000000004822-0000000000000004900.seg.zst.age"
        );
        assert_eq!(layout.parse_key(&key), Some((generation, name)));
        let snapshots = SnapshotLayout::new("/dr/", "prod").unwrap();
        assert_eq!(
            ReplicationLayout::beside(&snapshots).segments_prefix(),
            layout.segments_prefix()
        );
        assert_eq!(
            layout.progress_path().as_ref(),
            "dr/prod/replication-progress.json"
        );
    }

    #[test]
    fn names_sort_by_revision() {
        let names: Vec<String> = [(9, 9), (10, 99), (100, 100)]
            .into_iter()
            .map(|(first_revision, last_revision)| {
                SegmentName {
                    first_revision,
                    last_revision,
                    encrypted: false,
                }
                .file_name()
            })
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn ignores_foreign_keys() {
        let layout = ReplicationLayout::new("dr", "prod").unwrap();
        for key in [
            "dr/prod/segments/nope/0000000000000000001-0000000000000000002.seg.zst",
            "dr/prod/segments/20261201T213000Z-r0000000000000004821/1-2.seg.zst",
            "dr/prod/segments/20261201T213000Z-r0000000000000004821/0000000000000000003-0000000000000000002.seg.zst",
            "dr/prod/segments/20261201T213000Z-r0000000000000004821/0000000000000000001-0000000000000000002.seg",
            "dr/prod/snapshots/20261201T213000Z-r0000000000000004821/0000000000000000001-0000000000000000002.seg.zst",
        ] {
            assert_eq!(layout.parse_key(&Path::from(key)), None, "{key}");
        }
        assert!("20261201T213000Z-r12".parse::<GenerationId>().is_err());
    }
}
