//! `[replication]`: continuous capture on the primary, chain following on the secondary.

use std::time::Duration;

use etcd_dr_core::ConfigProblems;
use serde::Deserialize;

use crate::CaptureOptions;

/// `[replication]`: whether every revision is captured into segments, and how.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// Capture every revision into segments (primary) and follow them (secondary).
    #[serde(default)]
    pub enabled: bool,
    /// Cut a segment this long after its first revision arrived; an idle capture asks etcd
    /// for its revision as often.
    #[serde(default = "default_cut_interval", with = "humantime_serde")]
    pub cut_interval: Duration,
    /// Cut a segment once its events reach this many MiB (a revision is never split).
    #[serde(default = "default_cut_size_mib")]
    pub cut_size_mib: usize,
    /// Encoded segments waiting for the store before the watch is paused (backpressure).
    #[serde(default = "default_upload_queue_segments")]
    pub upload_queue_segments: usize,
    /// Largest watch response accepted, in MiB (gRPC's default of 4 MiB is too small for a
    /// catching-up watch or one large revision).
    #[serde(default = "default_max_watch_message_mib")]
    pub max_watch_message_mib: usize,
    /// How often the primary writes `replication-progress.json` (what the secondary measures
    /// its lag from).
    #[serde(default = "default_heartbeat_interval", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How often the secondary lists and verifies new segments.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// After an error (etcd or store away), how long before the capture tries again.
    #[serde(default = "default_retry_interval", with = "humantime_serde")]
    pub retry_interval: Duration,
    /// On shutdown, how long captured revisions may still take to reach the store.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// A generation this old ends and a new one starts from a fresh full snapshot, so a
    /// restore never reads a chain longer than this.
    #[serde(default = "default_max_generation_age", with = "humantime_serde")]
    pub max_generation_age: Duration,
}

fn default_cut_interval() -> Duration {
    CaptureOptions::default().max_segment_age
}
fn default_cut_size_mib() -> usize {
    CaptureOptions::default().max_segment_bytes >> 20
}
fn default_upload_queue_segments() -> usize {
    CaptureOptions::default().upload_queue_segments
}
fn default_max_watch_message_mib() -> usize {
    CaptureOptions::default().max_watch_message_bytes >> 20
}
fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_retry_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_max_generation_age() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_shutdown_grace() -> Duration {
    CaptureOptions::default().shutdown_grace
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cut_interval: default_cut_interval(),
            cut_size_mib: default_cut_size_mib(),
            upload_queue_segments: default_upload_queue_segments(),
            max_watch_message_mib: default_max_watch_message_mib(),
            heartbeat_interval: default_heartbeat_interval(),
            poll_interval: default_poll_interval(),
            retry_interval: default_retry_interval(),
            shutdown_grace: default_shutdown_grace(),
            max_generation_age: default_max_generation_age(),
        }
    }
}

impl ReplicationConfig {
    /// The capture's options.
    pub fn capture_options(&self) -> CaptureOptions {
        CaptureOptions {
            max_segment_age: self.cut_interval,
            max_segment_bytes: self.cut_size_mib << 20,
            max_watch_message_bytes: self.max_watch_message_mib << 20,
            upload_queue_segments: self.upload_queue_segments,
            shutdown_grace: self.shutdown_grace,
        }
    }

    /// Every bad value, by field path under `field`.
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        let mut within =
            |name: &str, value: Duration, low: Duration, high: Duration, hint: &str| {
                if value < low || value > high {
                    problems.push(
                        format!("{field}.{name}"),
                        format!(
                            "must be between {} and {}, e.g. \"{hint}\"",
                            humantime::format_duration(low),
                            humantime::format_duration(high)
                        ),
                    );
                }
            };
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        within("cut_interval", self.cut_interval, ms(100), s(60), "1s");
        within(
            "heartbeat_interval",
            self.heartbeat_interval,
            ms(100),
            s(300),
            "5s",
        );
        within("poll_interval", self.poll_interval, ms(100), s(600), "5s");
        within("retry_interval", self.retry_interval, ms(100), s(600), "5s");
        within("shutdown_grace", self.shutdown_grace, ms(0), s(300), "10s");
        within(
            "max_generation_age",
            self.max_generation_age,
            s(1),
            s(31 * 24 * 3600),
            "6h",
        );
        if self.max_generation_age <= self.cut_interval {
            problems.push(
                format!("{field}.max_generation_age"),
                "must be longer than replication.cut_interval (a generation holds many segments), e.g. \"6h\"",
            );
        }
        if !(1..=256).contains(&self.cut_size_mib) {
            problems.push(
                format!("{field}.cut_size_mib"),
                "must be between 1 and 256 (MiB of events per segment), e.g. 8",
            );
        }
        if !(1..=64).contains(&self.upload_queue_segments) {
            problems.push(
                format!("{field}.upload_queue_segments"),
                "must be between 1 and 64, e.g. 2",
            );
        }
        if !(4..=2048).contains(&self.max_watch_message_mib) {
            problems.push(
                format!("{field}.max_watch_message_mib"),
                "must be between 4 and 2048 (MiB; one etcd revision can be tens of MiB), e.g. 256",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_capture_defaults() {
        let config = ReplicationConfig::default();
        let mut problems = ConfigProblems::default();
        config.validate("replication", &mut problems);
        assert!(problems.is_empty(), "{problems}");
        let options = config.capture_options();
        let defaults = CaptureOptions::default();
        assert_eq!(options.max_segment_bytes, defaults.max_segment_bytes);
        assert_eq!(options.max_segment_age, defaults.max_segment_age);
        assert_eq!(
            options.max_watch_message_bytes,
            defaults.max_watch_message_bytes
        );
    }

    #[test]
    fn every_bad_value_is_named() {
        let config = ReplicationConfig {
            cut_interval: Duration::from_millis(10),
            cut_size_mib: 0,
            upload_queue_segments: 0,
            max_watch_message_mib: 1,
            heartbeat_interval: Duration::from_secs(3600),
            max_generation_age: Duration::from_millis(500),
            ..ReplicationConfig::default()
        };
        let mut problems = ConfigProblems::default();
        config.validate("replication", &mut problems);
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "replication.cut_interval",
                "replication.heartbeat_interval",
                "replication.max_generation_age",
                "replication.cut_size_mib",
                "replication.upload_queue_segments",
                "replication.max_watch_message_mib"
            ]
        );
    }
}
