//! A command on a node, run captured, with stdout streamed, or with stdin fed from a reader.

use std::borrow::Cow;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::output_stream::OutputStream;
use crate::process_group::GroupKiller;
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

/// A command about to run on a node. Build it with `Node::command`, then run it one of three
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
    /// `argv` on the node `executor` reaches, named by its first word, with the executor's
    /// time limit.
    pub(crate) fn new(executor: Arc<dyn Executor>, argv: Vec<String>) -> Self {
        Self {
            label: argv.first().cloned().unwrap_or_default(),
            timeout: executor.command_timeout(),
            executor,
            argv,
        }
    }

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
        OutputStream::new(rx, task)
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

#[cfg(test)]
mod tests;
