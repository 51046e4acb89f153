//! The stdout of a streamed command.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::sync::mpsc;

use crate::NodeError;

/// The stdout of a streamed command ([`NodeCommand::stream`]): chunks, then the command's
/// error as the last item if it failed. Dropping it kills the command.
#[derive(Debug)]
pub struct OutputStream {
    rx: mpsc::Receiver<Result<Bytes, NodeError>>,
    task: tokio::task::JoinHandle<()>,
}

impl OutputStream {
    /// The stream of `rx`, fed by `task` (aborted when the stream is dropped).
    pub(crate) fn new(
        rx: mpsc::Receiver<Result<Bytes, NodeError>>,
        task: tokio::task::JoinHandle<()>,
    ) -> Self {
        Self { rx, task }
    }
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
