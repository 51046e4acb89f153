//! Why a generation ends: each reason needs a full snapshot to start a new generation.

/// Why a generation ended. Each one needs a full snapshot to start a new generation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerationBreak {
    /// etcd no longer holds the revisions the watch needs.
    #[error("etcd compacted its history to revision {compact_revision} before the watch read revision {wanted} (capture was away longer than etcd's history)")]
    Compacted {
        /// The revision the capture needed next.
        wanted: i64,
        /// etcd's compaction revision.
        compact_revision: i64,
    },
    /// A revision is missing from the stream.
    #[error("revision {got} arrived where revision {expected} was expected (a gap)")]
    Gap {
        /// The revision expected.
        expected: i64,
        /// The revision that came.
        got: i64,
    },
    /// A revision came again or went backwards.
    #[error("revision {got} arrived where revision {expected} was expected (a regression: was etcd restored?)")]
    Regression {
        /// The revision expected.
        expected: i64,
        /// The revision that came.
        got: i64,
    },
    /// etcd is at a revision below what the chain already holds: it was restored from an
    /// older snapshot (under the same cluster id), and its next revisions are not the chain's.
    #[error("etcd reports revision {etcd_revision}, below revision {captured} the chain already holds (a regression: was etcd restored from an older snapshot?)")]
    EtcdBehindChain {
        /// The newest revision the chain holds.
        captured: i64,
        /// etcd's revision now (a linearizable read).
        etcd_revision: i64,
    },
    /// The watch now talks to another cluster.
    #[error("the cluster id changed from {from:x} to {to:x}")]
    ClusterChanged {
        /// The chain's cluster id.
        from: u64,
        /// The id etcd now reports.
        to: u64,
    },
    /// etcd cancelled the watch for another reason.
    #[error("etcd cancelled the watch: {reason}")]
    WatchCancelled {
        /// etcd's reason.
        reason: String,
    },
}

impl GenerationBreak {
    /// Every label [`kind`](Self::kind) returns, for metrics present from the start.
    pub const KINDS: [&'static str; 5] = [
        "compacted",
        "gap",
        "regression",
        "cluster_changed",
        "watch_cancelled",
    ];

    /// A short label for metrics (`compacted`, `gap`, `regression`, `cluster_changed`,
    /// `watch_cancelled`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Compacted { .. } => "compacted",
            Self::Gap { .. } => "gap",
            Self::Regression { .. } | Self::EtcdBehindChain { .. } => "regression",
            Self::ClusterChanged { .. } => "cluster_changed",
            Self::WatchCancelled { .. } => "watch_cancelled",
        }
    }
}
