//! The daemon's log of long runs: a snapshot, verification or promotion step still running after
//! [`PROGRESS_LOG_INTERVAL`] is logged with what it does (bytes, rate and ETA of a copy), then
//! again every interval, so that a journal shows a multi-GB transfer moving (short runs log only
//! their result).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use etcd_dr_control::{Activity, InFlight};
use etcd_dr_core::{PromotionMode, PromotionRecord, StepState};
use etcd_dr_restore::{running_activity, running_transfer};

use super::DaemonState;
use etcd_dr_core::human_bytes;

/// How often a long run is logged.
pub const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// How often the loop looks (a run is logged at most one look late).
const LOOK_INTERVAL: Duration = Duration::from_secs(5);

/// Decides when a run is logged: once it is `interval` old, then every `interval` of its
/// running time; a new run starts over.
#[derive(Debug)]
pub struct ProgressLogCadence {
    interval: Duration,
    /// The run last logged (its start) and its age then.
    last: Option<(DateTime<Utc>, Duration)>,
}

impl ProgressLogCadence {
    /// A cadence of one line per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
        }
    }

    /// True when the run that started at `started_at` should be logged `now`.
    pub fn due(&mut self, started_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let age = (now - started_at).to_std().unwrap_or_default();
        if age < self.interval {
            return false;
        }
        let due = match self.last {
            Some((run, logged_at)) if run == started_at => {
                age.saturating_sub(logged_at) >= self.interval
            }
            _ => true,
        };
        if due {
            self.last = Some((started_at, age));
        }
        due
    }
}

/// What a progress line says about a run: `snapshot 2026…-r42 running 1m 30s: 1.2 GiB of
/// 4.0 GiB plain (30 %), 380.0 MiB stored, 13.6 MiB/s, about 3m 40s left`.
pub fn progress_line(in_flight: &InFlight, expected_raw: u64, now: DateTime<Utc>) -> String {
    let age = (now - in_flight.started_at).to_std().unwrap_or_default();
    let seconds = age.as_secs_f64().max(f64::EPSILON);
    let rate = in_flight.raw_bytes as f64 / seconds;
    let what = match in_flight.activity {
        Activity::Snapshot => "snapshot",
        Activity::Verify => "verification of",
        Activity::Retention => "retention after",
    };
    let id = in_flight
        .id
        .as_ref()
        .map_or_else(|| "(id not known yet)".to_string(), ToString::to_string);
    let whole_seconds = Duration::from_secs(age.as_secs());
    if in_flight.activity == Activity::Retention {
        return format!(
            "{what} {id} running {}",
            humantime::format_duration(whole_seconds)
        );
    }
    let mut line = format!(
        "{what} {id} running {}: {}",
        humantime::format_duration(whole_seconds),
        human_bytes(in_flight.raw_bytes)
    );
    if expected_raw > 0 {
        let percent = (in_flight.raw_bytes as f64 / expected_raw as f64 * 100.0).min(100.0);
        line.push_str(&format!(
            " of {} plain ({percent:.0} %)",
            human_bytes(expected_raw)
        ));
    } else {
        line.push_str(" plain");
    }
    if in_flight.activity == Activity::Snapshot {
        line.push_str(&format!(", {} stored", human_bytes(in_flight.stored_bytes)));
    }
    line.push_str(&format!(", {}/s", human_bytes(rate as u64)));
    if expected_raw > in_flight.raw_bytes && rate >= 1.0 {
        let left = Duration::from_secs(((expected_raw - in_flight.raw_bytes) as f64 / rate) as u64);
        line.push_str(&format!(
            ", about {} left",
            humantime::format_duration(left)
        ));
    }
    line
}

/// What a progress line says about a promotion's running step, and when that step started:
/// `promotion p-… running 2m: restore — cp1: copying the snapshot (…); restore copy: 1.2 GiB
/// of 4.0 GiB (30 %), 13.6 MiB/s, about 3m 40s left`. `None` unless a step runs.
pub fn promotion_line(
    record: &PromotionRecord,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, String)> {
    let step_started = record
        .steps
        .iter()
        .filter(|step| step.progress.state == StepState::Running)
        .find_map(|step| step.progress.started_at)?;
    let activity = running_activity(record)?;
    let age = (now - record.started_at).to_std().unwrap_or_default();
    let what = if record.request.mode == PromotionMode::InPlace {
        "restore"
    } else {
        "promotion"
    };
    let mut line = format!(
        "{what} {} running {}: {activity}",
        record.id,
        humantime::format_duration(Duration::from_secs(age.as_secs()))
    );
    if let Some(copy) = running_transfer(record, now) {
        line.push_str(&format!("; {copy}"));
    }
    Some((step_started, line))
}

/// Logs long runs until shutdown.
pub async fn run(state: Arc<DaemonState>) {
    let mut cadence = ProgressLogCadence::new(PROGRESS_LOG_INTERVAL);
    let mut promotion_cadence = ProgressLogCadence::new(PROGRESS_LOG_INTERVAL);
    let mut looks = tokio::time::interval(LOOK_INTERVAL);
    looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = state.cancel.cancelled() => return,
            _ = looks.tick() => {}
        }
        if let Some(record) = state.promotions.record() {
            let now = Utc::now();
            if let Some((step_started, line)) = promotion_line(&record, now) {
                // Each long step is logged once it is an interval old, then every interval.
                if promotion_cadence.due(step_started, now) {
                    tracing::info!(promotion = %record.id, "{line}");
                }
            }
        }
        let Some(mut in_flight) = state.update(|status| status.in_flight.clone()) else {
            continue;
        };
        let now = Utc::now();
        if !cadence.due(in_flight.started_at, now) {
            continue;
        }
        in_flight.raw_bytes = state.progress.raw_bytes.load(Ordering::Relaxed);
        in_flight.stored_bytes = state.progress.stored_bytes.load(Ordering::Relaxed);
        let expected = state.progress.expected_raw_bytes.load(Ordering::Relaxed);
        tracing::info!(
            activity = ?in_flight.activity,
            id = ?in_flight.id.as_ref().map(ToString::to_string),
            raw_bytes = in_flight.raw_bytes,
            stored_bytes = in_flight.stored_bytes,
            expected_raw_bytes = expected,
            "{}",
            progress_line(&in_flight, expected, now)
        );
    }
}

#[cfg(test)]
mod tests {
    use etcd_dr_control::Trigger;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_run_is_logged_once_it_is_an_interval_old_then_every_interval() {
        let mut cadence = ProgressLogCadence::new(Duration::from_secs(30));
        let run = at(0);
        let logged: Vec<i64> = (0..=125)
            .step_by(5)
            .filter(|&s| cadence.due(run, at(s)))
            .collect();
        assert_eq!(logged, [30, 60, 90, 120]);
    }

    #[test]
    fn a_short_run_is_never_logged_and_a_new_run_starts_over() {
        let mut cadence = ProgressLogCadence::new(Duration::from_secs(30));
        assert!(!cadence.due(at(0), at(25)), "a 25 s run");
        assert!(cadence.due(at(0), at(40)));
        // The next run started at 45 s: not logged before it is 30 s old itself.
        assert!(!cadence.due(at(45), at(50)));
        assert!(!cadence.due(at(45), at(70)));
        assert!(cadence.due(at(45), at(75)));
        assert!(!cadence.due(at(45), at(80)));
        assert!(cadence.due(at(45), at(105)));
    }

    #[test]
    fn looks_that_come_late_do_not_log_twice_in_a_row() {
        let mut cadence = ProgressLogCadence::new(Duration::from_secs(30));
        assert!(cadence.due(at(0), at(34)));
        assert!(!cadence.due(at(0), at(60)), "26 s after the last line");
        assert!(cadence.due(at(0), at(64)));
    }

    fn in_flight(activity: Activity, raw: u64, stored: u64) -> InFlight {
        InFlight {
            activity,
            trigger: Trigger::Schedule,
            started_at: at(0),
            id: Some("20261201T120000Z-r42".parse().unwrap()),
            raw_bytes: raw,
            stored_bytes: stored,
        }
    }

    #[test]
    fn a_promotion_line_says_the_step_and_its_copy() {
        use etcd_dr_core::{PromotionRequest, StepName, TransferProgress};
        use etcd_dr_restore::{record_transfer, PromotionTracker};
        const MIB: u64 = 1024 * 1024;
        let tracker = PromotionTracker::new(PromotionRecord::new(
            "p-20261201T120000Z-1a2b".into(),
            PromotionRequest::default(),
            "ops@b".into(),
        ));
        assert!(promotion_line(&tracker.snapshot(), Utc::now()).is_none());
        tracker.start(StepName::Restore, None);
        tracker.node_start(
            StepName::Restore,
            "cp1",
            "copying the snapshot (2400 bytes)",
        );
        let record = tracker.snapshot();
        let step_started = record.step(StepName::Restore).progress.started_at.unwrap();
        let copy = TransferProgress {
            done_bytes: 600 * MIB,
            total_bytes: 2400 * MIB,
            started_at: record.started_at,
        };
        tracker.update(|r| record_transfer(r, StepName::Restore, Some("cp1"), copy));
        let now = record.started_at + chrono::Duration::seconds(60);
        let (started, line) = promotion_line(&tracker.snapshot(), now).unwrap();
        assert_eq!(started, step_started);
        assert_eq!(
            line,
            "promotion p-20261201T120000Z-1a2b running 1m: restore — cp1: copying the snapshot \
             (2400 bytes); restore copy: 600.0 MiB of 2.3 GiB (25 %), 10.0 MiB/s, about 3m 0s left"
        );
    }

    #[test]
    fn the_line_says_bytes_share_rate_and_time_left() {
        const MIB: u64 = 1024 * 1024;
        let line = progress_line(
            &in_flight(Activity::Snapshot, 600 * MIB, 200 * MIB),
            2400 * MIB,
            at(60),
        );
        assert_eq!(
            line,
            "snapshot 20261201T120000Z-r42 running 1m: 600.0 MiB of 2.3 GiB plain (25 %), \
             200.0 MiB stored, 10.0 MiB/s, about 3m left"
        );
        let line = progress_line(&in_flight(Activity::Verify, 300 * MIB, 0), 0, at(30));
        assert_eq!(
            line,
            "verification of 20261201T120000Z-r42 running 30s: 300.0 MiB plain, 10.0 MiB/s"
        );
    }
}
