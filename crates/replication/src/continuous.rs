//! The daemon's capture: runs generation after generation until shutdown. At start it resumes
//! the newest generation from its stored tail; when that cannot continue (etcd compacted past
//! it, another cluster) or a generation breaks, a fresh full snapshot starts a new one. An
//! error that does not break the chain (etcd or store away) is retried from the stored tail.

use std::future::Future;
use std::time::Duration;

use etcd_client::Client;
use etcd_dr_transport::{Identities, ManifestTrust};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::store::{list_generations, list_segments, SegmentStore};
use crate::{
    read_chain_tail, read_heartbeat, CaptureOptions, CaptureProgress, CaptureStart, ChainLink,
    GenerationBreak, GenerationId, HeartbeatTail, ReplicationError,
};

/// What the capture needs from the daemon around it.
pub trait CaptureHost: Sync {
    /// Takes a full snapshot now (never two at once with the schedule) to start a new
    /// generation, and returns that generation: the one its manifest names
    /// (`etcd.replication_generation`), based at the revision it was recorded at; `Err` says
    /// why none was taken.
    fn full_snapshot(
        &self,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<GenerationId, String>> + Send;

    /// A generation ended (already logged): count it, alert on it.
    fn generation_ended(&self, generation: &GenerationId, reason: &GenerationBreak);

    /// The capture failed without breaking the chain; it retries after `retry_interval`.
    fn capture_failed(&self, error: &ReplicationError);
}

/// Everything the continuous capture works with.
pub struct ContinuousCapture {
    /// A client of the etcd cluster (no request timeout: the watch is long-lived).
    pub client: Client,
    /// Where segments go.
    pub sink: SegmentStore,
    /// To read the stored tail of an encrypted chain.
    pub identities: Identities,
    /// What the stored tail must satisfy to be continued (signer, cluster).
    pub trust: ManifestTrust,
    /// Cuts and bounds.
    pub options: CaptureOptions,
    /// Pause after an error before trying again.
    pub retry_interval: Duration,
    /// End a generation this old, and start the next from a fresh full snapshot (`rotation.rs`);
    /// `None`: a generation lasts until it breaks.
    pub max_generation_age: Option<Duration>,
}

/// How the next capture starts.
enum Next {
    /// Continue the newest stored generation, or start one when there is none.
    ResumeNewest,
    /// Start a new generation from a fresh full snapshot.
    NewGeneration,
    /// Start this new generation (its full snapshot already taken, and reached by the
    /// generation before).
    NewGenerationFrom(GenerationId),
}

impl ContinuousCapture {
    /// Captures until `cancel`; what was captured is stored before it returns (within the
    /// capture's shutdown grace).
    pub async fn run<H: CaptureHost>(
        &self,
        host: &H,
        progress: &watch::Sender<CaptureProgress>,
        cancel: &CancellationToken,
    ) {
        let mut next = Next::ResumeNewest;
        while !cancel.is_cancelled() {
            let start = match next {
                Next::ResumeNewest => match self.resume_point(cancel).await {
                    Ok(Some(start)) => start,
                    Ok(None) => {
                        next = Next::NewGeneration;
                        continue;
                    }
                    Err(error) => {
                        self.pause_after(host, &error, cancel).await;
                        continue;
                    }
                },
                Next::NewGeneration => match host.full_snapshot(cancel).await {
                    Ok(generation) => {
                        info!(%generation, "new replication generation from the full snapshot at revision {}", generation.base_revision());
                        CaptureStart {
                            generation,
                            resume: None,
                        }
                    }
                    Err(reason) => {
                        if !cancel.is_cancelled() {
                            let error = ReplicationError::NoFullSnapshot { reason };
                            self.pause_after(host, &error, cancel).await;
                        }
                        continue;
                    }
                },
                Next::NewGenerationFrom(generation) => CaptureStart {
                    generation,
                    resume: None,
                },
            };
            let generation = start.generation.clone();
            let end = self.capture_bounded(host, start, progress, cancel).await;
            match end.outcome {
                Ok(tail) => {
                    let stored_up_to = tail.map(|t| t.last_revision);
                    match end.next_base {
                        Some(base) if !cancel.is_cancelled() => {
                            info!(%generation, ?stored_up_to, next = %base, "replication generation ended at its maximum age; the next starts above the full snapshot at revision {}", base.base_revision());
                            next = Next::NewGenerationFrom(base);
                            continue;
                        }
                        _ => {
                            info!(%generation, ?stored_up_to, "replication capture stopped");
                            return;
                        }
                    }
                }
                Err(ReplicationError::GenerationEnded { reason, .. }) => {
                    host.generation_ended(&generation, &reason);
                    next = Next::NewGeneration;
                }
                Err(ReplicationError::Cancelled) if cancel.is_cancelled() => return,
                Err(error) => {
                    self.pause_after(host, &error, cancel).await;
                    next = Next::ResumeNewest;
                }
            }
        }
    }

    /// The newest generation's stored tail; `None` when there is no generation, or when its
    /// newest segment cannot be read back (a corrupt tail is never continued).
    async fn resume_point(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<CaptureStart>, ReplicationError> {
        let generations = list_generations(&self.sink.store, &self.sink.layout, cancel).await?;
        let Some(newest) = generations.last() else {
            info!("no replication generation stored yet");
            return Ok(None);
        };
        match read_chain_tail(
            &self.sink.store,
            &self.sink.layout,
            newest,
            &self.identities,
            &self.trust,
            cancel,
        )
        .await
        {
            Ok(Some(tail)) => {
                info!(generation = %newest, revision = tail.last_revision, "continuing the stored replication generation");
                Ok(Some(CaptureStart {
                    generation: newest.clone(),
                    resume: Some(tail),
                }))
            }
            Ok(None) => Ok(None),
            Err(error @ ReplicationError::Transport(_)) => {
                // Typically encrypted segments and no identity here (the chain's digests are
                // over the plain bytes): the heartbeat's record of the tail, if it names the
                // newest stored segment.
                let tail = self.heartbeat_tail(newest, cancel).await?;
                if tail.is_none() {
                    warn!(generation = %newest, %error, "the stored generation's tail cannot be read back here and the heartbeat does not record it; starting a new generation from a full snapshot");
                }
                Ok(tail.map(|link| CaptureStart {
                    generation: newest.clone(),
                    resume: Some(link),
                }))
            }
            Err(
                error @ (ReplicationError::CorruptSegment { .. }
                | ReplicationError::ChainBroken { .. }
                | ReplicationError::UntrustedSegment { .. }),
            ) => {
                error!(generation = %newest, %error, "the stored generation's tail cannot be continued; starting a new generation");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// The heartbeat's record of `generation`'s tail, when it names the newest stored segment.
    async fn heartbeat_tail(
        &self,
        generation: &GenerationId,
        cancel: &CancellationToken,
    ) -> Result<Option<ChainLink>, ReplicationError> {
        let heartbeat =
            match read_heartbeat(&self.sink.store, &self.sink.layout, &self.trust, cancel).await {
                Ok(heartbeat) => heartbeat,
                Err(ReplicationError::Cancelled) => return Err(ReplicationError::Cancelled),
                Err(error) => {
                    warn!(%error, "the replication heartbeat cannot be read");
                    None
                }
            };
        let Some(heartbeat) = heartbeat.filter(|h| h.generation_id().as_ref() == Some(generation))
        else {
            return Ok(None);
        };
        let names = list_segments(&self.sink.store, &self.sink.layout, generation, cancel).await?;
        let newest_stored = names.last().map(|name| name.last_revision);
        let link = heartbeat.tail.as_ref().and_then(HeartbeatTail::link);
        Ok(link.filter(|link| Some(link.last_revision) == newest_stored).inspect(|link| {
            info!(%generation, revision = link.last_revision, "continuing the stored replication generation from the heartbeat's record of its tail");
        }))
    }

    async fn pause_after<H: CaptureHost>(
        &self,
        host: &H,
        error: &ReplicationError,
        cancel: &CancellationToken,
    ) {
        if cancel.is_cancelled() {
            return;
        }
        warn!(%error, retry_in = ?self.retry_interval, "replication capture failed; retrying");
        host.capture_failed(error);
        tokio::select! {
            () = tokio::time::sleep(self.retry_interval) => {}
            () = cancel.cancelled() => {}
        }
    }
}
