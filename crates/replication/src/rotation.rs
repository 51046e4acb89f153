//! Generations bounded in age: a restore to a revision reads (and verifies) its generation's
//! chain from the first segment, so a generation older than `max_generation_age` is ended and
//! a new one starts from a fresh full snapshot. Without a gap: the snapshot is taken while the
//! old generation is still captured, and the old one ends only once it has stored the
//! snapshot's revision; the new one starts above it. A revision between the two is in both.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    capture_generation, CaptureHost, CaptureProgress, CaptureStart, ChainLink, ContinuousCapture,
    GenerationId, ReplicationError,
};

/// How a capture of one generation ended.
pub(crate) struct CaptureEnd {
    /// What the capture returned.
    pub outcome: Result<Option<ChainLink>, ReplicationError>,
    /// The revision of the full snapshot taken to end the generation (its chain reaches it when
    /// the outcome is `Ok`).
    pub next_base: Option<GenerationId>,
}

/// How long until `generation`, started at its id's time, is `max_age` old (zero when it is).
pub(crate) fn time_until_due(generation: &GenerationId, max_age: Duration) -> Duration {
    let age = (Utc::now() - generation.started())
        .to_std()
        .unwrap_or_default();
    max_age.saturating_sub(age)
}

impl ContinuousCapture {
    /// Captures `start` until `cancel`, a break or an error, or — with `max_generation_age` —
    /// until the generation is that old and a full snapshot for the next one is stored and
    /// reached by the chain.
    pub(crate) async fn capture_bounded<H: CaptureHost>(
        &self,
        host: &H,
        start: CaptureStart,
        progress: &watch::Sender<CaptureProgress>,
        cancel: &CancellationToken,
    ) -> CaptureEnd {
        let generation = start.generation.clone();
        let stop = cancel.child_token();
        let capture = capture_generation(
            &self.client,
            self.sink.clone(),
            start,
            &self.options,
            progress,
            &stop,
        );
        tokio::pin!(capture);
        let ended = |outcome, next_base| CaptureEnd { outcome, next_base };
        let Some(max_age) = self.max_generation_age else {
            return ended(capture.await, None);
        };
        let mut wait = time_until_due(&generation, max_age);
        let base = loop {
            tokio::select! {
                outcome = &mut capture => return ended(outcome, None),
                () = tokio::time::sleep(wait) => {}
            }
            info!(%generation, max_age = ?max_age, "the replication generation reached its maximum age; a full snapshot starts the next one");
            // The snapshot is taken while the capture goes on; once started it is not dropped
            // half way (the daemon's snapshot run ends cleanly), even if the capture ends.
            let snapshot = host.full_snapshot(cancel);
            tokio::pin!(snapshot);
            let taken = tokio::select! {
                outcome = &mut capture => {
                    let taken = snapshot.await.ok();
                    return ended(outcome, taken);
                }
                taken = &mut snapshot => taken,
            };
            match taken {
                Ok(next) => break next,
                Err(reason) => {
                    warn!(%generation, %reason, retry_in = ?self.retry_interval, "no full snapshot for the next replication generation; the current one goes on");
                    wait = self.retry_interval;
                }
            }
        };
        // The old chain must reach the new base before it ends: no revision between them is
        // left to the snapshot alone.
        let mut stored = progress.subscribe();
        tokio::select! {
            outcome = &mut capture => return ended(outcome, Some(base.clone())),
            _ = stored.wait_for(|p| p.stored_revision >= base.base_revision()) => {}
        }
        stop.cancel();
        ended(capture.await, Some(base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_is_due_at_its_maximum_age() {
        let hour = Duration::from_secs(3600);
        let young = GenerationId::new(Utc::now() - chrono::Duration::minutes(15), 7);
        let due_in = time_until_due(&young, hour);
        assert!(
            due_in <= Duration::from_secs(45 * 60) && due_in > Duration::from_secs(44 * 60),
            "{due_in:?}"
        );
        let old = GenerationId::new(Utc::now() - chrono::Duration::hours(2), 7);
        assert_eq!(time_until_due(&old, hour), Duration::ZERO);
    }
}
