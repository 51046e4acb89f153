//! The secondary's continuous replication: every `replication.poll_interval`, the newest
//! generation's new segments are listed and chain-verified (`ChainFollower`: only what is new),
//! and the primary's heartbeat is read. The lag is measured from the newest moment at which
//! everything etcd had is stored *and verified here*: the heartbeat's `complete_as_of` once
//! the verified chain reaches the heartbeat's revision, and only from a heartbeat whose
//! signature the trust accepts (else the newest verified revision's observed time; a refused
//! heartbeat is counted and shown). An idle cluster keeps that moment
//! fresh (the primary's heartbeat moves on); a dead primary, or a chain that does not verify,
//! lets the lag grow.

use chrono::{DateTime, Utc};
use etcd_dr_control::LastError;
use etcd_dr_replication::{read_heartbeat, ChainFollower, ReplicationError};

use super::{generations, DaemonState};

/// Segments read per poll at most: a long chain verified for the first time shows progress.
const MAX_SEGMENTS_PER_POLL: usize = 1000;

/// Follows the chain until shutdown.
pub async fn run(state: &DaemonState) -> anyhow::Result<()> {
    let config = &state.settings.replication;
    let layout = generations::layout(state)?;
    let mut follower = ChainFollower::new(
        state.store.clone(),
        layout.clone(),
        state.settings.identities()?,
        state.trust.clone(),
        MAX_SEGMENTS_PER_POLL,
    );
    let mut complete_as_of: Option<DateTime<Utc>> = None;
    loop {
        // Read each time: a rotated identity file is picked up without a restart.
        if let Ok(identities) = state.settings.encryption.identities() {
            follower.set_identities(identities);
        }
        let polled = follower.poll(&state.cancel).await.cloned();
        if matches!(polled, Err(ReplicationError::Cancelled)) {
            return Ok(());
        }
        let chain = follower.chain().clone();
        let newest_verified_revision =
            state.update(|status| status.newest_verified.as_ref().map(|s| s.revision));
        let heartbeat = read_heartbeat(&state.store, &layout, &state.trust, &state.cancel).await;
        let verified_end = chain.verified.map(|link| link.last_revision);
        let mut problem = polled.err().map(|e| format!("replication chain: {e}"));
        let mut etcd_revision = None;
        let mut heartbeat_used = false;
        let mut heartbeat_refused = false;
        match heartbeat {
            Ok(Some(heartbeat)) => {
                etcd_revision = Some(heartbeat.etcd_revision);
                let same_generation = heartbeat.generation_id() == chain.generation;
                // A generation with nothing stored yet is not listed (no segment): everything
                // up to its base is in its base snapshot, which this secondary verified.
                let new_and_empty = heartbeat.generation_id().is_some_and(|generation| {
                    heartbeat.stored_revision == generation.base_revision()
                        && newest_verified_revision == Some(generation.base_revision())
                });
                if (same_generation
                    && verified_end.is_some_and(|end| end >= heartbeat.stored_revision))
                    || new_and_empty
                {
                    complete_as_of = complete_as_of.max(Some(heartbeat.complete_as_of));
                    heartbeat_used = true;
                }
            }
            Ok(None) => {}
            Err(ReplicationError::Cancelled) => return Ok(()),
            Err(error) => {
                // Refused (unsigned, unknown signer, another cluster, changed): a store writer
                // could have written it; it moves nothing.
                heartbeat_refused = matches!(error, ReplicationError::UntrustedHeartbeat { .. });
                problem = Some(format!("replication heartbeat: {error}"));
            }
        }
        // Without a heartbeat to trust: the newest verified revision's observation time (etcd
        // had at least that much then).
        if !heartbeat_used {
            complete_as_of = complete_as_of.max(chain.last_observed);
        }
        let newest_snapshot = state.update(|status| status.newest_verified.clone());
        let restorable = state.replication.restorable_revision(
            chain.generation.as_ref(),
            verified_end.unwrap_or(0),
            newest_snapshot.as_ref(),
        );
        if let Some(message) = &problem {
            tracing::warn!(%message, "replication follow");
        }
        state.replication.update(|status| {
            status.generation = chain.generation.as_ref().map(ToString::to_string);
            status.stored_revision = verified_end.unwrap_or(0);
            status.etcd_revision = etcd_revision.unwrap_or(status.etcd_revision);
            status.segments = chain.verified_segments;
            status.complete_as_of = complete_as_of;
            status.restorable_revision = restorable;
            status.heartbeats_refused += u64::from(heartbeat_refused);
            if let Some(message) = problem {
                status.last_problem = Some(LastError {
                    at: Utc::now(),
                    message,
                });
            }
        });
        tokio::select! {
            () = tokio::time::sleep(config.poll_interval) => {}
            () = state.cancel.cancelled() => return Ok(()),
        }
    }
}
