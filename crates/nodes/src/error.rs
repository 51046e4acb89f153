use std::time::Duration;

/// What went wrong reaching a node or running a command there. Every variant names the node and
/// the command (its first word, or the label the caller gave it).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The local process (`ssh`, or the command itself for `local`) could not be started.
    #[error("node {node}: cannot start `{program}`: {source}")]
    Spawn {
        /// The node.
        node: String,
        /// The program that failed to start.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// ssh could not reach the node (connection, authentication, host key).
    #[error("node {node} is unreachable over {executor} (running `{command}`): {stderr}")]
    Unreachable {
        /// The node.
        node: String,
        /// `ssh`.
        executor: &'static str,
        /// The command that was attempted.
        command: String,
        /// The end of ssh's stderr.
        stderr: String,
    },
    /// The command ran and failed.
    #[error("node {node}: `{command}` failed ({status}): {stderr}")]
    Failed {
        /// The node.
        node: String,
        /// The command.
        command: String,
        /// Exit status as text (`exit status: 2`, `signal: 9`).
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// The command ran longer than its time limit and was killed.
    #[error("node {node}: `{command}` did not finish within {}; it was killed", humantime::format_duration(*.timeout))]
    TimedOut {
        /// The node.
        node: String,
        /// The command.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// The command printed more than a captured run keeps.
    #[error("node {node}: `{command}` printed more than {limit} bytes; it was killed")]
    OutputTooLarge {
        /// The node.
        node: String,
        /// The command.
        command: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// Reading the input fed to the command failed; the command was killed before its input
    /// was closed, so it never saw a clean end of a partial input.
    #[error("node {node}: the input of `{command}` failed: {source}")]
    Input {
        /// The node.
        node: String,
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Talking to the local process failed.
    #[error("node {node}: `{command}`: {action}: {source}")]
    Io {
        /// The node.
        node: String,
        /// The command.
        command: String,
        /// What was attempted.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The command said something this program does not understand.
    #[error("node {node}: unexpected output of `{command}`: {detail}")]
    UnexpectedOutput {
        /// The node.
        node: String,
        /// The command.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// The command was asked for with no words at all.
    #[error("node {node}: empty command")]
    EmptyCommand {
        /// The node.
        node: String,
    },
    /// Cancelled (shutdown, or the reader of its output went away); the command was killed.
    #[error("node {node}: `{command}` cancelled; it was killed")]
    Cancelled {
        /// The node.
        node: String,
        /// The command.
        command: String,
    },
    /// Unpacking a bundle into a local directory failed.
    #[error("unpacking the bundle of node {node} into `{path}`: {detail}")]
    Unpack {
        /// The node.
        node: String,
        /// The target directory or entry.
        path: String,
        /// Why.
        detail: String,
    },
}

impl NodeError {
    /// True when the node was not reached at all (as opposed to a command failing there).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}
