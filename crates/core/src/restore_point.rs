use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What `--at` (or the `at` of `POST /v1/promote`) asks for: a point in the cluster's history,
/// restored from a full snapshot and the replication segments after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePoint {
    /// Exactly this etcd revision.
    Revision(i64),
    /// The newest revision observed at or before this time.
    Time(DateTime<Utc>),
    /// The newest revision stored (`newest`).
    Newest,
}

impl fmt::Display for RestorePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Revision(revision) => write!(f, "{revision}"),
            Self::Time(time) => write!(f, "{}", time.to_rfc3339()),
            Self::Newest => f.write_str("newest"),
        }
    }
}

impl FromStr for RestorePoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "newest" {
            return Ok(Self::Newest);
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return match text.parse::<i64>() {
                Ok(revision) if revision > 0 => Ok(Self::Revision(revision)),
                _ => Err(format!("`{text}` is not a positive etcd revision")),
            };
        }
        DateTime::parse_from_rfc3339(text)
            .map(|time| Self::Time(time.with_timezone(&Utc)))
            .map_err(|_| {
                format!(
                    "`{text}` is neither a revision (a positive number), a time (RFC 3339, e.g. 2026-12-02T01:30:00Z) nor `newest`"
                )
            })
    }
}

impl Serialize for RestorePoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Revision(revision) => serializer.serialize_i64(*revision),
            other => serializer.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for RestorePoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PointVisitor;
        impl serde::de::Visitor<'_> for PointVisitor {
            type Value = RestorePoint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a revision (positive number), an RFC 3339 time or \"newest\"")
            }
            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
                if value > 0 {
                    Ok(RestorePoint::Revision(value))
                } else {
                    Err(E::custom(format!(
                        "{value} is not a positive etcd revision"
                    )))
                }
            }
            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
                i64::try_from(value)
                    .map_err(|_| E::custom(format!("{value} is not an etcd revision")))
                    .and_then(|value| self.visit_i64(value))
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
                value.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PointVisitor)
    }
}

/// What a point-in-time restore used: the base snapshot, the chain of segments replayed onto
/// it, and the revision reached. Shown in the promotion record and its dry-run plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplaySummary {
    /// The revision restored (what `at` resolved to).
    pub target_revision: i64,
    /// The full snapshot replayed onto.
    pub base_snapshot: String,
    /// The base snapshot's real revision (can be above the one its manifest records).
    pub base_revision: i64,
    /// The generation of segments replayed.
    pub generation: String,
    /// Segments read.
    pub segments_used: u64,
    /// The first and last segment read (object keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_segment: Option<String>,
    /// The last segment read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_segment: Option<String>,
    /// Revisions applied onto the base.
    pub replayed_revisions: u64,
    /// Seconds spent applying them.
    pub replay_seconds: f64,
    /// The replay engine (`backend` or `etcd`); empty until the replay ran.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub engine: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_revisions_times_and_newest() {
        assert_eq!("42".parse(), Ok(RestorePoint::Revision(42)));
        assert_eq!("newest".parse(), Ok(RestorePoint::Newest));
        let time: RestorePoint = "2026-12-02T01:30:00+01:00".parse().unwrap();
        assert_eq!(
            time,
            RestorePoint::Time("2026-12-02T00:30:00Z".parse().unwrap())
        );
        for bad in ["0", "-3", "", "yesterday", "99999999999999999999"] {
            assert!(bad.parse::<RestorePoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_numbers_and_strings_from_json() {
        let read = |json: &str| serde_json::from_str::<RestorePoint>(json);
        assert_eq!(read("1234").unwrap(), RestorePoint::Revision(1234));
        assert_eq!(read("\"1234\"").unwrap(), RestorePoint::Revision(1234));
        assert_eq!(read("\"newest\"").unwrap(), RestorePoint::Newest);
        assert!(read("0").is_err());
        assert!(read("\"soon\"").is_err());
        let time = RestorePoint::Time("2026-12-02T00:30:00Z".parse().unwrap());
        assert_eq!(read(&serde_json::to_string(&time).unwrap()).unwrap(), time);
        assert_eq!(
            serde_json::to_string(&RestorePoint::Revision(7)).unwrap(),
            "7"
        );
    }
}
