//! How a snapshot run fails, and which failures another etcd endpoint may get past.

use etcd_dr_nodes::NodeError;
use etcd_dr_transport::TransportError;

use crate::SourceError;

/// Why a snapshot run failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Surveying etcd or opening its snapshot stream failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Storing the snapshot failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Every candidate member's stream failed; each failure is listed.
    #[error("every etcd endpoint failed while streaming: {0}")]
    AllEndpointsFailed(String),
    /// A node's bundle failed on the node's side (unreachable, tar or sudo failing).
    #[error(transparent)]
    Node(NodeError),
    /// A node's bundle failed on the store's side. (The source is in the message, not the
    /// chain, so that logs show it and `{:#}` does not repeat it.)
    #[error("bundle of node {node}: {source}")]
    Bundle {
        /// The node.
        node: String,
        /// What failed.
        source: TransportError,
    },
    /// Bundles are on but there is no node to take them from.
    #[error("no control-plane node to take bundles from: nodes.control_plane is empty and the etcd member list has no names")]
    NoNodes,
    /// Shutdown.
    #[error("cancelled")]
    Cancelled,
}

impl SnapshotError {
    /// A bundle stopped because another node's failed (or shutdown), not failing on its own.
    pub(super) fn is_cancellation(&self) -> bool {
        match self {
            Self::Cancelled => true,
            Self::Node(error) => matches!(error, NodeError::Cancelled { .. }),
            Self::Bundle { source, .. } => matches!(source, TransportError::Cancelled),
            _ => false,
        }
    }

    /// Failures of the etcd side, where another endpoint may do better.
    pub(super) fn is_source_failure(&self) -> bool {
        matches!(
            self,
            Self::Source(_)
                | Self::Transport(TransportError::Source { .. })
                | Self::Transport(TransportError::EtcdHashMismatch { .. })
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(source: TransportError) -> SnapshotError {
        SnapshotError::Bundle {
            node: "cp1".into(),
            source,
        }
    }

    #[test]
    fn etcd_side_failures_move_on_to_the_next_endpoint() {
        let stream_broke = TransportError::Source {
            bytes_read: 10,
            source: Box::new(std::io::Error::other("reset")),
        };
        let trailer = TransportError::EtcdHashMismatch { detail: "x".into() };
        assert!(SnapshotError::from(stream_broke).is_source_failure());
        assert!(SnapshotError::from(trailer).is_source_failure());
        assert!(SnapshotError::from(SourceError::Cancelled).is_source_failure());
    }

    #[test]
    fn store_and_node_failures_stop_the_run() {
        for error in [
            SnapshotError::from(TransportError::Pipeline("zstd".into())),
            SnapshotError::from(TransportError::Cancelled),
            bundle(TransportError::Pipeline("x".into())),
            SnapshotError::NoNodes,
            SnapshotError::Cancelled,
        ] {
            assert!(!error.is_source_failure(), "{error}");
        }
    }

    #[test]
    fn a_stopped_bundle_is_told_apart_from_a_failed_one() {
        assert!(SnapshotError::Cancelled.is_cancellation());
        assert!(bundle(TransportError::Cancelled).is_cancellation());
        assert!(!bundle(TransportError::Pipeline("x".into())).is_cancellation());
        assert!(!SnapshotError::NoNodes.is_cancellation());
    }
}
