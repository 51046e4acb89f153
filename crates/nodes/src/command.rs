use std::borrow::Cow;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Executor, NodeError};

/// Bytes of stdout a captured run ([`NodeCommand::run`], [`NodeCommand::output`]) keeps; more
/// is an error. Large outputs are streamed with [`NodeCommand::stream`].
pub const MAX_CAPTURED_STDOUT: usize = 16 * 1024 * 1024;
/// Bytes of stderr kept for error messages (the end of it).
pub const STDERR_TAIL: usize = 4096;
/// Size of the chunks a streamed stdout is read in.
const STREAM_CHUNK: usize = 64 * 1024;
/// Chunks queued between a streamed command and its reader.
const STREAM_QUEUE: usize = 8;

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
        let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
        NodeCommand {
            label: argv.first().cloned().unwrap_or_default(),
            timeout: self.executor.command_timeout(),
            executor: self.executor.clone(),
            argv,
        }
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

/// What a finished command left.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// Its stdout (empty for streamed runs).
    pub stdout: Vec<u8>,
    /// The end of its stderr (at most [`STDERR_TAIL`] bytes), lossily decoded and trimmed.
    pub stderr: String,
}

impl CommandOutput {
    /// Stdout as text (lossily decoded).
    pub fn stdout_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }
}

/// A command about to run on a node. Build it with [`Node::command`], then run it one of three
/// ways: captured ([`Self::run`], [`Self::output`]), with stdout streamed ([`Self::stream`]), or
/// with stdin fed from a reader ([`Self::run_with_stdin`]).
///
/// Every way kills the command (its whole process group) on timeout, on cancellation and when
/// the future or stream is dropped early.
#[derive(Debug, Clone)]
pub struct NodeCommand {
    executor: Arc<dyn Executor>,
    argv: Vec<String>,
    label: String,
    timeout: Duration,
}

enum StdoutMode {
    Capture,
    Forward(mpsc::Sender<Result<Bytes, NodeError>>),
}

impl NodeCommand {
    /// Overrides the executor's default time limit for this command.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How the command is named in errors (default: its first word).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// The argv vector.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// Runs to completion, stdout captured (at most [`MAX_CAPTURED_STDOUT`] bytes). A non-zero
    /// exit is [`NodeError::Failed`].
    pub async fn run(self, cancel: &CancellationToken) -> Result<CommandOutput, NodeError> {
        let output = self.execute(None, StdoutMode::Capture, cancel).await?;
        self.check(output)
    }

    /// Runs to completion, stdout captured, whatever the exit status (only an unreachable node,
    /// a timeout or a cancellation is an error).
    pub async fn output(self, cancel: &CancellationToken) -> Result<CommandOutput, NodeError> {
        self.execute(None, StdoutMode::Capture, cancel).await
    }

    /// Runs to completion with `input` streamed to its stdin (through a small buffer), stdout
    /// captured. If reading `input` fails, the command is killed before its stdin is closed, so
    /// it never mistakes a partial input for a complete one. A non-zero exit is
    /// [`NodeError::Failed`].
    pub async fn run_with_stdin<R>(
        self,
        mut input: R,
        cancel: &CancellationToken,
    ) -> Result<CommandOutput, NodeError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let output = self
            .execute(Some(&mut input), StdoutMode::Capture, cancel)
            .await?;
        self.check(output)
    }

    /// Starts the command and streams its stdout as chunks of bytes (bounded queue: a slow
    /// reader slows the command down). The stream ends with `Ok` chunks only if the command
    /// exited 0; otherwise its last item is the error. Dropping the stream kills the command.
    pub fn stream(self, cancel: &CancellationToken) -> OutputStream {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let cancel = cancel.clone();
        let task = tokio::spawn(async move {
            let result = self
                .execute(None, StdoutMode::Forward(tx.clone()), &cancel)
                .await
                .and_then(|output| self.check(output));
            if let Err(error) = result {
                let _ = tx.send(Err(error)).await;
            }
        });
        OutputStream { rx, task }
    }

    fn check(&self, output: CommandOutput) -> Result<CommandOutput, NodeError> {
        if output.status.success() {
            Ok(output)
        } else {
            Err(NodeError::Failed {
                node: self.executor.node().to_string(),
                command: self.label.clone(),
                status: output.status.to_string(),
                stderr: output.stderr,
            })
        }
    }

    async fn execute(
        &self,
        input: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        stdout_mode: StdoutMode,
        cancel: &CancellationToken,
    ) -> Result<CommandOutput, NodeError> {
        let node = self.executor.node();
        if self.argv.is_empty() {
            return Err(NodeError::EmptyCommand {
                node: node.to_string(),
            });
        }
        let mut command = self.executor.command(&self.argv);
        command
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so that a kill reaches whatever it started too, and an
            // operator's Ctrl-C reaches etcd-dr (which cancels) rather than the command.
            .process_group(0);
        let program = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        let mut child = command.spawn().map_err(|source| NodeError::Spawn {
            node: node.to_string(),
            program,
            source,
        })?;
        let mut killer = GroupKiller::new(child.id());
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(self.io_error("opening its output", std::io::Error::other("no pipe")));
        };
        let stdin = child.stdin.take();

        let work = async {
            let feed = async {
                match (input, stdin) {
                    (Some(input), Some(stdin)) => self.feed_stdin(input, stdin, &killer).await,
                    _ => Ok(None),
                }
            };
            let read = self.read_stdout(stdout, stdout_mode, &killer);
            let (io, stderr) =
                tokio::join!(async { tokio::try_join!(read, feed) }, read_tail(stderr));
            let (stdout, stdin_error) = io?;
            let status = child
                .wait()
                .await
                .map_err(|e| self.io_error("waiting for it", e))?;
            Ok::<_, NodeError>((status, stdout, stdin_error, stderr))
        };
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(NodeError::Cancelled {
                node: node.to_string(),
                command: self.label.clone(),
            }),
            _ = tokio::time::sleep(self.timeout) => Err(NodeError::TimedOut {
                node: node.to_string(),
                command: self.label.clone(),
                timeout: self.timeout,
            }),
            outcome = work => outcome,
        };
        let (status, stdout, stdin_error, stderr) = match outcome {
            Ok(done) => done,
            Err(error) => {
                killer.kill();
                return Err(error);
            }
        };
        // Reaped: its pid may be reused, and whatever it left running in the background is
        // meant to keep running.
        killer.disarm();
        if self.executor.is_unreachable(status) {
            return Err(NodeError::Unreachable {
                node: node.to_string(),
                executor: self.executor.kind(),
                command: self.label.clone(),
                stderr,
            });
        }
        if let (Some(error), true) = (stdin_error, status.success()) {
            return Err(self.io_error("it stopped reading its input early", error));
        }
        Ok(CommandOutput {
            status,
            stdout,
            stderr,
        })
    }

    fn io_error(&self, action: &'static str, source: std::io::Error) -> NodeError {
        NodeError::Io {
            node: self.executor.node().to_string(),
            command: self.label.clone(),
            action,
            source,
        }
    }

    async fn read_stdout(
        &self,
        mut stdout: ChildStdout,
        mode: StdoutMode,
        killer: &GroupKiller,
    ) -> Result<Vec<u8>, NodeError> {
        match mode {
            StdoutMode::Capture => {
                let mut captured = Vec::new();
                let mut limited = (&mut stdout).take(MAX_CAPTURED_STDOUT as u64 + 1);
                limited
                    .read_to_end(&mut captured)
                    .await
                    .map_err(|e| self.io_error("reading its output", e))?;
                if captured.len() > MAX_CAPTURED_STDOUT {
                    killer.kill();
                    return Err(NodeError::OutputTooLarge {
                        node: self.executor.node().to_string(),
                        command: self.label.clone(),
                        limit: MAX_CAPTURED_STDOUT,
                    });
                }
                Ok(captured)
            }
            StdoutMode::Forward(tx) => loop {
                let mut chunk = BytesMut::with_capacity(STREAM_CHUNK);
                let read = tokio::select! {
                    read = stdout.read_buf(&mut chunk) => read,
                    _ = tx.closed() => Ok(usize::MAX),
                };
                let read = read.map_err(|e| self.io_error("reading its output", e))?;
                if read == 0 {
                    return Ok(Vec::new());
                }
                if read == usize::MAX || tx.send(Ok(chunk.freeze())).await.is_err() {
                    killer.kill();
                    return Err(NodeError::Cancelled {
                        node: self.executor.node().to_string(),
                        command: self.label.clone(),
                    });
                }
            },
        }
    }

    /// Copies `input` to the command's stdin. A failing input kills the command before stdin is
    /// closed; a command that stops reading is reported after its exit status.
    async fn feed_stdin(
        &self,
        input: &mut (dyn AsyncRead + Unpin + Send),
        mut stdin: ChildStdin,
        killer: &GroupKiller,
    ) -> Result<Option<std::io::Error>, NodeError> {
        let mut buffer = vec![0u8; STREAM_CHUNK];
        loop {
            let read = match input.read(&mut buffer).await {
                Ok(0) => break,
                Ok(read) => read,
                Err(source) => {
                    killer.kill();
                    return Err(NodeError::Input {
                        node: self.executor.node().to_string(),
                        command: self.label.clone(),
                        source,
                    });
                }
            };
            if let Err(error) = stdin.write_all(&buffer[..read]).await {
                return Ok(Some(error));
            }
        }
        if let Err(error) = stdin.shutdown().await {
            return Ok(Some(error));
        }
        Ok(None)
    }
}

/// Reads stderr to its end, keeping only the last [`STDERR_TAIL`] bytes.
async fn read_tail(mut stderr: ChildStderr) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stderr.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                tail.extend_from_slice(&buffer[..read]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
    }
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
    String::from_utf8_lossy(&tail).trim().to_string()
}

/// Kills a command's process group when asked, or when dropped while still armed (a future
/// dropped mid-way).
struct GroupKiller {
    pgid: Option<i32>,
}

impl GroupKiller {
    fn new(pid: Option<u32>) -> Self {
        Self {
            pgid: pid.and_then(|p| i32::try_from(p).ok()),
        }
    }

    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The stdout of a streamed command ([`NodeCommand::stream`]): chunks, then the command's
/// error as the last item if it failed. Dropping it kills the command.
#[derive(Debug)]
pub struct OutputStream {
    rx: mpsc::Receiver<Result<Bytes, NodeError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Stream for OutputStream {
    type Item = Result<Bytes, NodeError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for OutputStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalExecutor;
    use futures::StreamExt;
    use std::time::Instant;

    fn local() -> Node {
        Node::new(NodeRole::ControlPlane, Arc::new(LocalExecutor::new("cp1")))
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn captures_stdout_and_fails_with_the_stderr_tail() {
        let cancel = CancellationToken::new();
        let out = local()
            .command(["echo", "hello world"])
            .run(&cancel)
            .await
            .unwrap();
        assert_eq!(out.stdout_text(), "hello world\n");

        let error = local()
            .command(sh("echo first >&2; echo 'no such thing' >&2; exit 3"))
            .run(&cancel)
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("node cp1"), "{text}");
        assert!(text.contains("`sh`"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("no such thing"), "{text}");

        let out = local().command(sh("exit 4")).output(&cancel).await.unwrap();
        assert_eq!(out.status.code(), Some(4));
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let error = local()
            .command(["/nonexistent/etcdutl", "version"])
            .run(&CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(error, NodeError::Spawn { .. }), "{error}");
        assert!(error.to_string().contains("/nonexistent/etcdutl"));
    }

    #[tokio::test]
    async fn stderr_is_bounded_to_its_tail() {
        let out = local()
            .command(sh(
                "i=0; while [ $i -lt 3000 ]; do echo line$i >&2; i=$((i+1)); done",
            ))
            .output(&CancellationToken::new())
            .await
            .unwrap();
        assert!(out.stderr.len() <= STDERR_TAIL);
        assert!(out.stderr.ends_with("line2999"), "{}", out.stderr);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // The shell starts a child of its own; the kill must reach it too.
        let script = format!("(sleep 2; touch '{}') & wait", marker.display());
        let started = Instant::now();
        let error = local()
            .command(sh(&script))
            .timeout(Duration::from_millis(300))
            .run(&CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(error, NodeError::TimedOut { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the background child survived the kill");
    }

    #[tokio::test]
    async fn cancellation_kills_the_command() {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let started = Instant::now();
        let error = local()
            .command(["sleep", "30"])
            .run(&cancel)
            .await
            .unwrap_err();
        assert!(matches!(error, NodeError::Cancelled { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn streams_large_output_and_reports_a_late_failure_last() {
        let cancel = CancellationToken::new();
        // 8 MiB of output, then a failure.
        let mut stream = local()
            .command(sh("head -c 8388608 /dev/zero; echo broken >&2; exit 2"))
            .stream(&cancel);
        let mut total = 0usize;
        let mut last_error = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => {
                    assert!(last_error.is_none(), "data after the error");
                    total += chunk.len();
                }
                Err(error) => last_error = Some(error),
            }
        }
        assert_eq!(total, 8 * 1024 * 1024);
        let error = last_error.expect("the failure is reported");
        assert!(error.to_string().contains("broken"), "{error}");

        let chunks: Vec<_> = local()
            .command(["printf", "abc"])
            .stream(&cancel)
            .collect()
            .await;
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].as_ref().unwrap().as_ref(), b"abc");
    }

    #[tokio::test]
    async fn dropping_a_stream_kills_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("echo $$ > '{}'; exec yes", pid_file.display());
        let mut stream = local()
            .command(sh(&script))
            .stream(&CancellationToken::new());
        assert!(stream.next().await.unwrap().is_ok());
        drop(stream);
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::path::Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "yes still runs");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

    /// A reader that yields some bytes, then fails.
    struct FailingReader {
        sent: bool,
    }

    impl AsyncRead for FailingReader {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.sent {
                Poll::Ready(Err(std::io::Error::other("download broke")))
            } else {
                self.sent = true;
                buf.put_slice(b"partial data");
                Poll::Ready(Ok(()))
            }
        }
    }

    #[tokio::test]
    async fn a_failing_input_kills_the_command_before_closing_its_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        // `cat > out && touch done`: were stdin merely closed, `done` would appear.
        let done = dir.path().join("done");
        let script = format!("cat > '{}' && touch '{}'", target.display(), done.display());
        let error = local()
            .command(sh(&script))
            .run_with_stdin(FailingReader { sent: false }, &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(error, NodeError::Input { .. }), "{error}");
        assert!(error.to_string().contains("download broke"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!done.exists());
    }

    #[tokio::test]
    async fn captured_output_is_bounded() {
        let error = local()
            .command(["head", "-c", "20000000", "/dev/zero"])
            .run(&CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(error, NodeError::OutputTooLarge { .. }), "{error}");
    }
}
