//! Replay: a generation's revisions carried onto a base snapshot up to a target revision, by
//! one of two engines ([`ReplayEngine`]): the base's backend file extended directly
//! (`backend.rs`, the default), or a throw-away etcd restored from the base that applies
//! each revision as one transaction which must land on the recorded revision (`etcd.rs`; pipelined, in
//! order: `pipeline.rs`), then a snapshot at exactly the target revision.
//!
//! `request.rs` holds what a replay is asked and reports; `checks.rs` what both engines share
//! (coverage and cluster checks, the chain reader task, lease lookups, which failure to report).

mod backend;
mod checks;
mod etcd;
mod request;

use tokio_util::sync::CancellationToken;
use tracing::info;

use self::backend::replay_into_backend;
use self::etcd::replay_into;
use crate::scratch_etcd::ScratchEtcd;
use crate::{ChainReader, ReplicationError};

pub use request::{ReplayEngine, ReplayReport, ReplayRequest};

/// Carries `request.base_db` forward with `chain`'s revisions up to the target revision and
/// writes the snapshot at exactly that revision to `request.output_db`, with `engine`.
pub async fn replay_to_revision(
    engine: &ReplayEngine,
    chain: &mut ChainReader,
    request: &ReplayRequest,
    cancel: &CancellationToken,
) -> Result<ReplayReport, ReplicationError> {
    let report = match engine {
        ReplayEngine::Backend => replay_into_backend(chain, request, cancel).await?,
        ReplayEngine::Etcd(binaries) => {
            let scratch =
                ScratchEtcd::restore(binaries, &request.base_db, &request.work_dir, cancel).await?;
            let result = replay_into(&scratch, chain, request, cancel).await;
            scratch.stop().await;
            result?
        }
    };
    info!(
        engine = engine.name(),
        base = report.base_revision,
        revision = report.revision,
        revisions = report.replayed_revisions,
        resent = report.resent_transactions,
        seconds = report.replay_time.as_secs_f64(),
        "replayed to revision"
    );
    Ok(report)
}
