//! A node of the cluster: its role and the executor that reaches it.

use std::sync::Arc;

use tokio::io::AsyncRead;
use tokio_util::sync::CancellationToken;

use crate::{CommandOutput, Executor, NodeCommand, NodeError};

/// Whether a node is part of the control plane or a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// Runs etcd and the Kubernetes control plane (static pods).
    ControlPlane,
    /// Runs workloads.
    Worker,
}

impl NodeRole {
    /// `control-plane` or `worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ControlPlane => "control-plane",
            Self::Worker => "worker",
        }
    }
}

/// One node of the cluster and the executor that reaches it.
#[derive(Debug, Clone)]
pub struct Node {
    role: NodeRole,
    executor: Arc<dyn Executor>,
}

impl Node {
    /// A node reached through `executor` (whose name is the node's name).
    pub fn new(role: NodeRole, executor: Arc<dyn Executor>) -> Self {
        Self { role, executor }
    }

    /// The node's host name.
    pub fn name(&self) -> &str {
        self.executor.node()
    }

    /// Control plane or worker.
    pub fn role(&self) -> NodeRole {
        self.role
    }

    /// The executor that reaches it.
    pub fn executor(&self) -> &Arc<dyn Executor> {
        &self.executor
    }

    /// A command to run on the node: an argv vector, never parsed by a shell on this side and
    /// quoted word by word where one is involved (ssh).
    pub fn command<I, S>(&self, argv: I) -> NodeCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        NodeCommand::new(
            self.executor.clone(),
            argv.into_iter().map(Into::into).collect(),
        )
    }

    /// Writes `input` (exactly `size` bytes) to the file `path` on the node with `mode` (e.g.
    /// `0o600`): into `<path>.etcd-dr-partial` first, renamed over `path` only once all `size`
    /// bytes arrived. An interrupted transfer never leaves a truncated file at `path`.
    pub async fn write_file<R>(
        &self,
        path: &str,
        mode: u32,
        size: u64,
        input: R,
        cancel: &CancellationToken,
    ) -> Result<CommandOutput, NodeError>
    where
        R: AsyncRead + Unpin + Send,
    {
        const SCRIPT: &str = r#"set -e
umask 077
partial="$1.etcd-dr-partial"
cat > "$partial"
received=$(wc -c < "$partial" | tr -d ' ')
if [ "$received" != "$2" ]; then
    rm -f "$partial"
    echo "received $received of $2 bytes for $1" >&2
    exit 1
fi
chmod "$3" "$partial"
mv -f "$partial" "$1""#;
        self.command([
            "sh".to_string(),
            "-c".into(),
            SCRIPT.into(),
            "sh".into(),
            path.into(),
            size.to_string(),
            format!("{mode:o}"),
        ])
        .label(format!("write {path}"))
        .run_with_stdin(input, cancel)
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;

    use super::*;
    use crate::LocalExecutor;

    fn local() -> Node {
        Node::new(NodeRole::ControlPlane, Arc::new(LocalExecutor::new("cp1")))
    }

    #[tokio::test]
    async fn feeds_stdin_and_writes_files_atomically() {
        let cancel = CancellationToken::new();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let out = local()
            .command(["sha256sum"])
            .run_with_stdin(&data[..], &cancel)
            .await
            .unwrap();
        let expected = {
            use std::io::Write;
            let mut child = std::process::Command::new("sha256sum")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&data).unwrap();
            child.wait_with_output().unwrap().stdout
        };
        assert_eq!(out.stdout, expected);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("it's a file");
        let path_text = path.to_str().unwrap();
        local()
            .write_file(path_text, 0o640, data.len() as u64, &data[..], &cancel)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);

        // Fewer bytes than announced: the target keeps its old content.
        let error = local()
            .write_file(path_text, 0o600, 10, &b"short"[..], &cancel)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("received 5 of 10 bytes"),
            "{error}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }
}
