//! Unit tests of [`NodeCommand`] on this host.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::StreamExt;

use super::*;
use crate::LocalExecutor;

/// Runs commands on this host as on a node called `cp1`.
struct Local(Arc<dyn Executor>);

impl Local {
    fn command<I, S>(&self, argv: I) -> NodeCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        NodeCommand::new(self.0.clone(), argv.into_iter().map(Into::into).collect())
    }
}

fn local() -> Local {
    Local(Arc::new(LocalExecutor::new("cp1")))
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
