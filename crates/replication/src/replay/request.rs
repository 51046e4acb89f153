//! What a replay is asked ([`ReplayRequest`], [`ReplayEngine`]) and what it reports ([`ReplayReport`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::replay_progress::ReplayProgress;
use crate::scratch_etcd::EtcdBinaries;

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// The engine that replayed (`backend` or `etcd`).
    pub engine: &'static str,
    /// The real revision of the base snapshot (can be above the revision it was recorded at).
    pub base_revision: i64,
    /// The revision of the written snapshot (the target).
    pub revision: i64,
    /// Revisions applied.
    pub replayed_revisions: u64,
    /// Segments applied from (read and verified before them: the rest of the chain from the
    /// generation's start).
    pub segments_read: u64,
    /// The first segment applied from (object key).
    pub first_segment: Option<String>,
    /// The last segment applied from.
    pub last_segment: Option<String>,
    /// Leases granted with their recorded ids.
    pub leases_granted: u64,
    /// Transactions that reached etcd before their predecessor and were sent again.
    pub resent_transactions: u64,
    /// Time spent applying revisions (`backend`: copying the base's backend included).
    pub replay_time: Duration,
    /// `backend`: the part of `replay_time` spent copying the base's backend before the first
    /// revision (`None` with `etcd`, whose restore and start are not in `replay_time`).
    pub base_copy_time: Option<Duration>,
    /// CPU time this process spent meanwhile (every thread; Linux only, else `None`).
    pub replay_cpu_own: Option<Duration>,
    /// CPU time the throw-away etcd spent meanwhile (Linux only, else `None`).
    pub replay_cpu_etcd: Option<Duration>,
    /// Bytes of the written snapshot.
    pub snapshot_bytes: u64,
}

/// What to restore, and where.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// The base snapshot (`.db` from etcd's snapshot RPC), at or below the target.
    pub base_db: PathBuf,
    /// The revision to restore.
    pub target_revision: i64,
    /// Where the snapshot at the target revision is written.
    pub output_db: PathBuf,
    /// Where the throw-away etcd keeps its data (a temporary directory inside it).
    pub work_dir: PathBuf,
    /// The etcd cluster id the base snapshot records: every segment replayed must be of it.
    pub base_cluster_id: Option<u64>,
    /// Counters the replay keeps current for a progress display, if one watches.
    pub progress: Option<Arc<ReplayProgress>>,
}

impl ReplayRequest {
    /// Tells the watcher, if any, that revisions from `base` are replayed up to the target.
    pub(crate) fn show_replaying(&self, base: i64) {
        if let Some(progress) = &self.progress {
            progress.replaying(base, self.target_revision);
        }
    }

    /// Tells the watcher, if any, that revisions up to `revision` are applied.
    pub(crate) fn show_applied(&self, revision: i64) {
        if let Some(progress) = &self.progress {
            progress.applied(revision);
        }
    }
}

/// How a replay carries the base snapshot forward.
#[derive(Debug, Clone)]
pub enum ReplayEngine {
    /// The base's backend file copied and the recorded changes appended to its `key` bucket
    /// as etcd stores them (`etcd-backend`): no etcd needed, bounded by reading the segments.
    Backend,
    /// A throw-away etcd restored from the base, every revision applied as one transaction
    /// whose revision etcd must confirm, then its snapshot at the target.
    Etcd(EtcdBinaries),
}

impl ReplayEngine {
    /// Its name in configuration and reports: `backend` or `etcd`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Backend => "backend",
            Self::Etcd(_) => "etcd",
        }
    }
}
