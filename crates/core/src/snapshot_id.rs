use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeZone, Timelike, Utc};

/// The name of one snapshot: when it was started (UTC, whole seconds) and the etcd revision it
/// was taken at, e.g. `20261125T121900Z-r48211`.
///
/// Ordering is by time, then revision, so a plain listing of ids sorts oldest first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId {
    started_at: DateTime<Utc>,
    revision: i64,
}

/// A string that is not a snapshot id.
#[derive(Debug, thiserror::Error)]
#[error("`{input}` is not a snapshot id (expected YYYYMMDDTHHMMSSZ-r<revision>, e.g. 20261125T121900Z-r48211)")]
pub struct SnapshotIdError {
    input: String,
}

const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

impl SnapshotId {
    /// The id of a snapshot started at `started_at` (truncated to the second) at `revision`.
    pub fn new(started_at: DateTime<Utc>, revision: i64) -> Self {
        let started_at = started_at.with_nanosecond(0).unwrap_or(started_at);
        Self {
            started_at,
            revision,
        }
    }

    /// When the snapshot was started, to the second.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    /// The etcd revision the snapshot was taken at.
    pub fn revision(&self) -> i64 {
        self.revision
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-r{}",
            self.started_at.format(TIME_FORMAT),
            self.revision
        )
    }
}

impl FromStr for SnapshotId {
    type Err = SnapshotIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = || SnapshotIdError {
            input: input.to_string(),
        };
        let (time, revision) = input.split_once("-r").ok_or_else(error)?;
        let time = NaiveDateTime::parse_from_str(time, TIME_FORMAT).map_err(|_| error())?;
        if revision.is_empty() || !revision.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error());
        }
        let revision = revision.parse::<i64>().map_err(|_| error())?;
        Ok(Self::new(Utc.from_utc_datetime(&time), revision))
    }
}

impl serde::Serialize for SnapshotId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SnapshotId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 12, 19, 0).unwrap();
        let id = SnapshotId::new(at, 48211);
        assert_eq!(id.to_string(), "20261125T121900Z-r48211");
        assert_eq!("20261125T121900Z-r48211".parse::<SnapshotId>().unwrap(), id);
    }

    #[test]
    fn drops_sub_second_precision() {
        let at = Utc.timestamp_millis_opt(1_764_073_140_789).unwrap();
        assert_eq!(
            SnapshotId::new(at, 1).started_at().timestamp_subsec_nanos(),
            0
        );
    }

    #[test]
    fn orders_by_time_then_revision() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let a = SnapshotId::new(t, 9);
        let b = SnapshotId::new(t, 10);
        let c = SnapshotId::new(t + chrono::Duration::seconds(1), 1);
        assert!(a < b && b < c);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "latest",
            "20261125T121900Z",
            "20261125T121900Z-r",
            "20261125T121900Z-r-5",
            "20261325T121900Z-r5",
            "20261125T121900Z-r5/../x",
        ] {
            assert!(bad.parse::<SnapshotId>().is_err(), "{bad} parsed");
        }
    }
}
