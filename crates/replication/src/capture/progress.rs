//! Where a capture stands, and the replication lag it implies.
//!
//! Lag is measured from what etcd itself reported: every watch response (events or progress
//! notification) carries etcd's revision at the time it was sent. The capture remembers, for
//! revisions etcd reported and the store does not hold yet, when it first learned of them; and
//! the newest moment at which everything etcd reported was stored ("complete as of"). The lag is
//! now minus that moment. On an idle cluster etcd is asked for its revision every cut interval,
//! so the lag stays below it; a stalled watch or a failing store makes it grow.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{ChainLink, GenerationId};

/// Reports of etcd's revision closer together than this are merged (the older time kept), so
/// that the memory of unstored reports is bounded by 10 entries per second the store is behind.
const REPORT_MERGE_MS: i64 = 100;

/// Where capture stands, for metrics and status.
#[derive(Debug, Clone, Default)]
pub struct CaptureProgress {
    /// The generation being written.
    pub generation: Option<GenerationId>,
    /// The newest revision etcd reported (events or progress notifications).
    pub etcd_revision: i64,
    /// The newest revision received from the watch.
    pub captured_revision: i64,
    /// The newest revision durably stored.
    pub stored_revision: i64,
    /// Segments stored by this capture.
    pub stored_segments: u64,
    /// Bytes stored by this capture.
    pub stored_bytes: u64,
    /// The stored end of the chain (`None` before the generation's first segment).
    pub stored_tail: Option<ChainLink>,
    /// The number of the watch that is open on the generation's history, `None` between
    /// watches. A new number each time a watch opens: a snapshot taken while the same watch
    /// stayed open (same generation, same number before and after) is of the history that
    /// watch captures, since an etcd restored under it would have broken the watch.
    pub open_watch: Option<u64>,
    /// Watches opened so far (the next one's number).
    watches_opened: u64,
    /// Unix ms of the newest moment at which every revision etcd had reported was stored; 0
    /// before the first such moment.
    complete_unix_ms: i64,
    /// Revisions etcd reported that are not stored yet: revision → when first reported (Unix ms).
    unstored_reports: BTreeMap<i64, i64>,
}

impl CaptureProgress {
    /// A capture of `generation` starts with everything up to `stored` in the store, the chain
    /// ending at `tail`.
    pub(crate) fn start_generation(
        &mut self,
        generation: GenerationId,
        stored: i64,
        tail: Option<ChainLink>,
    ) {
        self.generation = Some(generation);
        self.stored_tail = tail;
        self.captured_revision = stored;
        self.stored_revision = stored;
        self.unstored_reports.clear();
    }

    /// A watch opened on the generation's history: its number.
    pub(crate) fn watch_opened(&mut self) -> u64 {
        self.watches_opened += 1;
        self.open_watch = Some(self.watches_opened);
        self.watches_opened
    }

    /// The watch `number` closed (for whatever reason).
    pub(crate) fn watch_closed(&mut self, number: u64) {
        if self.open_watch == Some(number) {
            self.open_watch = None;
        }
    }

    /// The generation whose history a snapshot is in when this capture's progress was
    /// `before` as the snapshot started and is `self` now: the same watch stayed open on the
    /// same generation throughout.
    pub fn unbroken_since(&self, before: &CaptureProgress) -> Option<&GenerationId> {
        match (&self.generation, self.open_watch) {
            (Some(generation), Some(watch))
                if before.open_watch == Some(watch)
                    && before.generation.as_ref() == Some(generation) =>
            {
                Some(generation)
            }
            _ => None,
        }
    }

    /// etcd reported `revision` (a watch response's header, or an event) at `at_unix_ms`.
    pub(crate) fn etcd_reported(&mut self, revision: i64, at_unix_ms: i64) {
        self.etcd_revision = self.etcd_revision.max(revision);
        if revision <= self.stored_revision {
            if self.unstored_reports.is_empty() {
                self.complete_unix_ms = self.complete_unix_ms.max(at_unix_ms);
            }
            return;
        }
        match self.unstored_reports.last_key_value() {
            Some((&newest, _)) if newest >= revision => {}
            Some((&newest, &first_seen)) if at_unix_ms - first_seen < REPORT_MERGE_MS => {
                // Merged into the previous report: claims the revision was known a little
                // earlier than it was, so the lag is overstated by at most REPORT_MERGE_MS.
                self.unstored_reports.remove(&newest);
                self.unstored_reports.insert(revision, first_seen);
            }
            _ => {
                self.unstored_reports.insert(revision, at_unix_ms);
            }
        }
    }

    /// Every revision up to `revision` is durably stored.
    pub(crate) fn stored_up_to(&mut self, revision: i64) {
        self.stored_revision = self.stored_revision.max(revision);
        while let Some(entry) = self.unstored_reports.first_entry() {
            if *entry.key() > self.stored_revision {
                break;
            }
            let first_seen = entry.remove();
            // When etcd reported this revision, everything it had was at most this revision:
            // now stored.
            self.complete_unix_ms = self.complete_unix_ms.max(first_seen);
        }
    }

    /// The newest moment at which every revision etcd had reported was durably stored; `None`
    /// before etcd answered at all.
    pub fn complete_as_of(&self) -> Option<SystemTime> {
        let complete = self.complete_unix_ms;
        (complete > 0).then(|| UNIX_EPOCH + Duration::from_millis(complete as u64))
    }

    /// Replication lag: `now` minus [`complete_as_of`](Self::complete_as_of) (zero when that is
    /// in the future); `None` before etcd answered.
    pub fn lag(&self, now: SystemTime) -> Option<Duration> {
        self.complete_as_of()
            .map(|complete| now.duration_since(complete).unwrap_or(Duration::ZERO))
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_in_a_generation_only_while_one_watch_stays_open_on_it() {
        let generation = GenerationId::new(chrono::Utc::now(), 40);
        let mut progress = CaptureProgress::default();
        progress.start_generation(generation.clone(), 40, None);
        // No watch open as the snapshot starts: no generation, whatever follows.
        let before = progress.clone();
        let first = progress.watch_opened();
        assert_eq!(progress.unbroken_since(&before), None);
        // Open before and after, the same watch: its generation.
        let before = progress.clone();
        assert_eq!(progress.unbroken_since(&before), Some(&generation));
        // The watch broke (etcd restarted under it) and another opened: not provably the
        // same history.
        progress.watch_closed(first);
        assert_eq!(progress.unbroken_since(&before), None);
        progress.watch_opened();
        assert_eq!(progress.unbroken_since(&before), None);
        // Another generation with the same watch number is not the same either.
        let before = progress.clone();
        progress.start_generation(GenerationId::new(chrono::Utc::now(), 90), 90, None);
        assert_eq!(progress.unbroken_since(&before), None);
    }

    fn at(ms: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    }

    #[test]
    fn lag_counts_from_the_first_report_of_a_revision_not_stored() {
        let mut progress = CaptureProgress::default();
        assert_eq!(progress.lag(at(5_000)), None);
        progress.stored_up_to(10);
        // An idle cluster: etcd confirms revision 10, already stored.
        progress.etcd_reported(10, 1_000);
        assert_eq!(progress.lag(at(1_200)), Some(Duration::from_millis(200)));
        progress.etcd_reported(10, 2_000);
        assert_eq!(progress.lag(at(2_000)), Some(Duration::ZERO));
        // Writes: 11 at 3 s, 12 at 3.05 s (merged), 13 at 3.5 s.
        progress.etcd_reported(11, 3_000);
        progress.etcd_reported(12, 3_050);
        progress.etcd_reported(13, 3_500);
        assert_eq!(progress.lag(at(4_000)), Some(Duration::from_millis(2_000)));
        // A late confirmation of an old revision does not hide the missing ones.
        progress.etcd_reported(10, 3_900);
        assert_eq!(progress.lag(at(4_000)), Some(Duration::from_millis(2_000)));
        progress.stored_up_to(12);
        assert_eq!(progress.lag(at(4_000)), Some(Duration::from_millis(1_000)));
        progress.stored_up_to(13);
        assert_eq!(progress.lag(at(4_000)), Some(Duration::from_millis(500)));
        assert_eq!(progress.unstored_reports.len(), 0);
    }

    #[test]
    fn reports_close_together_are_merged() {
        let mut progress = CaptureProgress::default();
        for revision in 1..=1_000 {
            progress.etcd_reported(revision, 10_000 + revision);
        }
        assert!(progress.unstored_reports.len() <= 11, "{:?}", progress);
        progress.stored_up_to(1_000);
        // The newest report was merged into one first seen at 10.901 s.
        assert_eq!(progress.lag(at(12_000)), Some(Duration::from_millis(1_099)));
    }
}
