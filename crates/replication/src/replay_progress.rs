//! How far a restore to a revision has come, for a person watching: the base snapshot's
//! download, then the revisions replayed onto it. Counters only, read by whoever draws them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use etcd_dr_transport::ShipProgress;

/// Live counters of a restore to a revision ([`crate::fetch_revision`], a promote's replay).
#[derive(Debug, Default)]
pub struct ReplayProgress {
    /// The base snapshot's download: plain bytes written and the manifest's plain size.
    pub base_download: Arc<ShipProgress>,
    /// The base snapshot's real revision, once the replay has opened it (0 before).
    pub base_revision: AtomicI64,
    /// The revision to restore, once the replay has started (0 before).
    pub target_revision: AtomicI64,
    /// The newest revision applied so far (0 before the first).
    pub applied_revision: AtomicI64,
}

/// Where a restore to a revision is, as [`ReplayProgress::stage`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayStage {
    /// Downloading the base snapshot: bytes written of those expected (0 while unknown).
    Downloading { done: u64, expected: u64 },
    /// Replaying: revisions applied of those between the base and the target.
    Replaying { done: u64, total: u64 },
}

impl ReplayProgress {
    /// The replay starts: from `base` up to `target`.
    pub(crate) fn replaying(&self, base: i64, target: i64) {
        self.base_revision.store(base, Ordering::Relaxed);
        self.applied_revision.store(base, Ordering::Relaxed);
        self.target_revision.store(target, Ordering::Relaxed);
    }

    /// Revisions up to `revision` are applied.
    pub(crate) fn applied(&self, revision: i64) {
        self.applied_revision.store(revision, Ordering::Relaxed);
    }

    /// The stage now and how far into it.
    pub fn stage(&self) -> ReplayStage {
        let target = self.target_revision.load(Ordering::Relaxed);
        if target == 0 {
            return ReplayStage::Downloading {
                done: self.base_download.raw_bytes.load(Ordering::Relaxed),
                expected: self
                    .base_download
                    .expected_raw_bytes
                    .load(Ordering::Relaxed),
            };
        }
        let base = self.base_revision.load(Ordering::Relaxed);
        let applied = self.applied_revision.load(Ordering::Relaxed);
        ReplayStage::Replaying {
            done: (applied - base).max(0) as u64,
            total: (target - base).max(0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_follows_the_download_then_the_replay() {
        let progress = ReplayProgress::default();
        progress
            .base_download
            .expected_raw_bytes
            .store(100, Ordering::Relaxed);
        progress
            .base_download
            .raw_bytes
            .store(40, Ordering::Relaxed);
        assert_eq!(
            progress.stage(),
            ReplayStage::Downloading {
                done: 40,
                expected: 100
            }
        );
        progress.replaying(1_000, 1_500);
        assert_eq!(
            progress.stage(),
            ReplayStage::Replaying {
                done: 0,
                total: 500
            }
        );
        progress.applied(1_200);
        assert_eq!(
            progress.stage(),
            ReplayStage::Replaying {
                done: 200,
                total: 500
            }
        );
    }
}
