use etcd_dr_core::SnapshotIdError;
use etcd_dr_nodes::NodeError;
use etcd_dr_scheduler::SourceError;
use etcd_dr_transport::TransportError;

use crate::AdmissionError;

/// What went wrong during a promotion. Every variant says where (node, step, endpoint).
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// Reading the snapshot, the manifest or the fence from the store failed.
    #[error(transparent)]
    Store(#[from] TransportError),
    /// A command on a node failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The fence or the restore lock refuses this run (boxed: it carries the marker or the
    /// lock's holder, and every other result pays for the largest variant).
    #[error(transparent)]
    Admission(Box<AdmissionError>),
    /// The requested snapshot is neither `latest` nor a snapshot id.
    #[error(transparent)]
    SnapshotSelector(#[from] SnapshotIdError),
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
    /// The restore failed on these nodes (every node is then rolled back).
    #[error("{}", .failures.join("; "))]
    NodesFailed {
        /// `<node>: <error>` for each node that failed on its own (not stopped by another).
        failures: Vec<String>,
    },
    /// A node of the plan is not among the configured control-plane nodes.
    #[error("node {node} vanished")]
    UnknownNode {
        /// The node the plan names.
        node: String,
    },
    /// etcd kept running on a node after its stop commands.
    #[error("node {node}: etcd is still running {} after the stop commands ([promote] etcd_stopped_check; no force_stop_command)", humantime::format_duration(*.waited))]
    EtcdStillRunning {
        /// The node.
        node: String,
        /// How long the check was repeated (`[promote] stop_timeout`).
        waited: std::time::Duration,
    },
    /// etcd kept running on a node even after the force stop.
    #[error("node {node}: etcd is still running after the force stop ([promote] force_stop_command, etcd_stopped_check)")]
    EtcdSurvivedForceStop {
        /// The node.
        node: String,
    },
    /// The node bundle the service-account keys come from is unusable.
    #[error("snapshot {snapshot}: the bundle of node {node}: {detail}")]
    BadBundle {
        /// The snapshot.
        snapshot: String,
        /// The node whose bundle it is.
        node: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The preflight could not ask a node at all.
    #[error("{node}: {source}")]
    Facts {
        /// The node.
        node: String,
        /// Why it could not be asked.
        #[source]
        source: NodeError,
    },
    /// A node's preflight script printed no host name.
    #[error("{node}: the preflight printed no host name")]
    NoHostName {
        /// The node.
        node: String,
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
    /// A hook whose failure aborts the promotion failed.
    #[error("hook {name} ({phase}) failed: {detail}")]
    Hook {
        /// The hook's name.
        name: String,
        /// `before` or `after`.
        phase: &'static str,
        /// Where it failed and how (exit, end of its output).
        detail: String,
    },
    /// The API front-end step could not point the name on every node.
    #[error("front end: {0}")]
    FrontEnd(String),
    /// The configuration does not allow this promotion.
    #[error("{0}")]
    Config(String),
    /// Shutdown interrupted the promotion.
    #[error("cancelled")]
    Cancelled,
}

impl From<AdmissionError> for PromoteError {
    fn from(error: AdmissionError) -> Self {
        Self::Admission(Box::new(error))
    }
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
