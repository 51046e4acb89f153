use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use etcd_dr_core::ConfigProblems;
use rand::Rng;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// When snapshots are taken (`[schedule]`): every `interval`, or on a `cron` expression.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Take a snapshot this often, e.g. `"15m"`.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Or on this cron expression (5 fields, UTC), e.g. `"*/15 * * * *"`.
    #[serde(default)]
    pub cron: Option<String>,
    /// Wait a random extra delay up to this long before each run (spreads load).
    #[serde(default, with = "humantime_serde")]
    pub jitter: Option<Duration>,
    /// Skip a run when etcd's revision has not moved since the newest stored snapshot.
    #[serde(default = "default_true")]
    pub skip_unchanged: bool,
}

fn default_true() -> bool {
    true
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(15 * 60)),
            cron: None,
            jitter: None,
            skip_unchanged: true,
        }
    }
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    timing: Timing,
    jitter: Duration,
}

#[derive(Debug, Clone)]
enum Timing {
    Every(Duration),
    Cron(Box<Cron>, String),
}

impl ScheduleConfig {
    /// Reports every bad field under `field` (e.g. `schedule`).
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        match (&self.interval, &self.cron) {
            (Some(_), Some(_)) => problems.push(
                format!("{field}.cron"),
                format!("set either {field}.interval or {field}.cron, not both"),
            ),
            (None, None) => problems.push(
                format!("{field}.interval"),
                format!(
                    "set {field}.interval (e.g. \"15m\") or {field}.cron (e.g. \"*/15 * * * *\")"
                ),
            ),
            (Some(interval), None) if *interval < Duration::from_secs(10) => {
                problems.push(format!("{field}.interval"), "must be at least 10s")
            }
            _ => {}
        }
        if let Some(expression) = &self.cron {
            if let Err(e) = Cron::from_str(expression) {
                problems.push(
                    format!("{field}.cron"),
                    format!("`{expression}` is not a cron expression ({e}); use 5 fields, e.g. \"*/15 * * * *\""),
                );
            }
        }
    }

    /// The schedule, once `validate` reported nothing.
    pub fn schedule(&self) -> Option<Schedule> {
        let timing = match (&self.interval, &self.cron) {
            (Some(interval), None) => Timing::Every(*interval),
            (None, Some(expression)) => Timing::Cron(
                Box::new(Cron::from_str(expression).ok()?),
                expression.clone(),
            ),
            _ => return None,
        };
        Some(Schedule {
            timing,
            jitter: self.jitter.unwrap_or_default(),
        })
    }
}

impl Schedule {
    /// Every `interval`, no jitter.
    pub fn every(interval: Duration) -> Self {
        Self {
            timing: Timing::Every(interval),
            jitter: Duration::ZERO,
        }
    }

    /// The next run after `last_start` (a run that started then) or, for the first run,
    /// after `now`. Jitter is not included.
    pub fn next_after(
        &self,
        last_start: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        match &self.timing {
            Timing::Every(interval) => match last_start {
                // Fixed rate from the last start; a run that overran starts the next one now.
                Some(last) => (last + *interval).max(now),
                None => now,
            },
            Timing::Cron(cron, _) => cron
                .find_next_occurrence(&now, false)
                .unwrap_or(now + chrono::Duration::days(1)),
        }
    }

    /// A human-readable description (`every 15m`, `cron */15 * * * *`).
    pub fn describe(&self) -> String {
        match &self.timing {
            Timing::Every(interval) => format!("every {}", humantime::format_duration(*interval)),
            Timing::Cron(_, expression) => format!("cron {expression}"),
        }
    }

    /// A random delay in `[0, jitter]`.
    fn jitter_delay(&self) -> Duration {
        if self.jitter.is_zero() {
            return Duration::ZERO;
        }
        let millis = rand::rng().random_range(0..=self.jitter.as_millis() as u64);
        Duration::from_millis(millis)
    }
}

/// Runs `job` on `schedule` until `cancel` fires: one run at a time, the next one planned from
/// the start of the previous. `on_planned` hears of every planned start (for status). The job
/// gets the cancellation token and must stop promptly when it fires.
pub async fn run_schedule<F, Fut>(
    schedule: &Schedule,
    cancel: &CancellationToken,
    mut on_planned: impl FnMut(DateTime<Utc>),
    mut job: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut last_start = None;
    loop {
        let now = Utc::now();
        let planned = schedule.next_after(last_start, now);
        let delay = (planned - now).to_std().unwrap_or_default() + schedule.jitter_delay();
        on_planned(now + chrono::Duration::from_std(delay).unwrap_or_default());
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        last_start = Some(Utc::now());
        job().await;
        if cancel.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, h, m, s).unwrap()
    }

    #[test]
    fn interval_runs_at_a_fixed_rate() {
        let schedule = Schedule::every(Duration::from_secs(900));
        assert_eq!(schedule.next_after(None, at(12, 0, 0)), at(12, 0, 0));
        assert_eq!(
            schedule.next_after(Some(at(12, 0, 0)), at(12, 0, 40)),
            at(12, 15, 0)
        );
        // An overrun starts the next run at once rather than piling up.
        assert_eq!(
            schedule.next_after(Some(at(12, 0, 0)), at(12, 20, 0)),
            at(12, 20, 0)
        );
    }

    #[test]
    fn cron_finds_the_next_slot() {
        let config = ScheduleConfig {
            interval: None,
            cron: Some("*/15 * * * *".into()),
            ..ScheduleConfig::default()
        };
        let schedule = config.schedule().unwrap();
        assert_eq!(schedule.next_after(None, at(12, 7, 3)), at(12, 15, 0));
        assert_eq!(schedule.describe(), "cron */15 * * * *");
    }

    #[test]
    fn validation_names_each_problem() {
        let mut problems = ConfigProblems::default();
        ScheduleConfig {
            interval: Some(Duration::from_secs(60)),
            cron: Some("not cron".into()),
            ..ScheduleConfig::default()
        }
        .validate("schedule", &mut problems);
        let fields: Vec<_> = problems.iter().map(|p| p.field.clone()).collect();
        assert_eq!(fields, ["schedule.cron", "schedule.cron"]);

        let mut problems = ConfigProblems::default();
        ScheduleConfig {
            interval: None,
            ..ScheduleConfig::default()
        }
        .validate("schedule", &mut problems);
        assert_eq!(problems.iter().next().unwrap().field, "schedule.interval");
    }

    #[tokio::test(start_paused = true)]
    async fn runs_one_job_at_a_time_until_cancelled() {
        let schedule = Schedule::every(Duration::from_secs(10));
        let cancel = CancellationToken::new();
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = runs.clone();
        let stop = cancel.clone();
        run_schedule(
            &schedule,
            &cancel,
            |_| {},
            move || {
                let counter = counter.clone();
                let stop = stop.clone();
                async move {
                    if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 2 {
                        stop.cancel();
                    }
                }
            },
        )
        .await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
