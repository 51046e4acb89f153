use etcd_dr_nodes::NodeError;
use etcd_dr_scheduler::SourceError;
use etcd_dr_transport::TransportError;

/// What went wrong during a promotion. Every variant says where (node, step, endpoint).
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// Reading the snapshot, the manifest or the fence from the store failed.
    #[error(transparent)]
    Store(#[from] TransportError),
    /// A command on a node failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Talking to the secondary's etcd failed.
    #[error("secondary etcd: {0}")]
    Etcd(#[from] SourceError),
    /// The preflight found problems; nothing was changed on any node.
    #[error("preflight found {} problem(s); nothing was changed on any node:\n  - {}", .problems.len(), .problems.join("\n  - "))]
    Preflight {
        /// Every problem, each naming its node.
        problems: Vec<String>,
    },
    /// The etcd static pod manifest of a node cannot be used.
    #[error("node {node}: etcd manifest `{path}`: {detail}")]
    PodManifest {
        /// The node.
        node: String,
        /// The manifest's path on the node.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The switchover handshake with the primary failed.
    #[error("switchover: {0}")]
    Switchover(String),
    /// The restored cluster did not become healthy in time.
    #[error("health: {0}")]
    Health(String),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {action}: {detail}")]
    Kubernetes {
        /// What was attempted (`GET /readyz`, `PATCH deployments/ns/name`…).
        action: String,
        /// Why it failed.
        detail: String,
    },
    /// A local file (downloaded snapshot, pre-staged copy, TLS material) failed.
    #[error("{action} `{path}`: {source}")]
    LocalIo {
        /// What was attempted.
        action: &'static str,
        /// The local path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration does not allow this promotion.
    #[error("{0}")]
    Config(String),
    /// Shutdown interrupted the promotion.
    #[error("cancelled")]
    Cancelled,
}

impl PromoteError {
    pub(crate) fn local_io(
        action: &'static str,
        path: impl ToString,
        source: std::io::Error,
    ) -> Self {
        Self::LocalIo {
            action,
            path: path.to_string(),
            source,
        }
    }
}
