//! The multipart upload of one object, kept in hand to the end: parts in flight on a bounded
//! set of tasks, and a finish that shutdown never drops half-way.
//!
//! object_store's `WriteMultipart` consumes itself in `finish()`: a finish raced against
//! cancellation and dropped leaves an upload nobody can abort any more (parts stranded in the
//! bucket). Here the upload stays ours until it is completed or aborted.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::TransportError;

/// One multipart upload and its parts in flight.
pub(crate) struct PartUploader {
    store: Arc<dyn ObjectStore>,
    upload: Box<dyn MultipartUpload>,
    parts: JoinSet<Result<(), object_store::Error>>,
    location: Path,
}

/// How a finish ended.
#[derive(Debug)]
pub(crate) enum Finished {
    /// The object exists.
    Completed,
    /// Shutdown came first; the upload was aborted (or completed and then deleted).
    Cancelled,
}

impl PartUploader {
    /// Starts a multipart upload to `location`.
    pub(crate) async fn start(
        store: &Arc<dyn ObjectStore>,
        location: &Path,
        cancel: &CancellationToken,
    ) -> Result<Self, TransportError> {
        let upload = crate::cancellable(cancel, store.put_multipart(location))
            .await?
            .map_err(|e| TransportError::store("multipart start", location, e))?;
        Ok(Self {
            store: store.clone(),
            upload,
            parts: JoinSet::new(),
            location: location.clone(),
        })
    }

    /// Waits until fewer than `max` parts are in flight; the first failed part fails it.
    pub(crate) async fn wait_for_capacity(&mut self, max: usize) -> Result<(), TransportError> {
        while self.parts.len() >= max.max(1) {
            self.join_one().await?;
        }
        Ok(())
    }

    /// Starts uploading the next part.
    pub(crate) fn put(&mut self, part: bytes::Bytes) {
        let upload = self.upload.put_part(PutPayload::from(part));
        self.parts.spawn(upload);
    }

    async fn join_one(&mut self) -> Result<(), TransportError> {
        match self.parts.join_next().await {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(TransportError::store("multipart part", &self.location, e)),
            Some(Err(e)) => Err(TransportError::Pipeline(format!(
                "a part upload of `{}` failed: {e}",
                self.location
            ))),
        }
    }

    /// Stops the parts in flight and aborts the upload. A failed abort leaves parts for the
    /// store's lifecycle rule (AbortIncompleteMultipartUpload) or `prune` to remove.
    pub(crate) async fn abort(mut self) {
        self.parts.shutdown().await;
        match self.upload.abort().await {
            Ok(()) => tracing::info!(key = %self.location, "multipart upload aborted"),
            Err(error) => {
                tracing::warn!(key = %self.location, %error, "could not abort multipart upload; `prune` or the store's lifecycle rule must remove its parts")
            }
        }
    }

    /// Waits for the parts in flight, then completes the upload. On failure the upload is
    /// aborted. When `cancel` fires meanwhile, the finish goes on for at most `grace`: it
    /// completes (and the object, which no manifest names, is deleted again) or is abandoned
    /// and the upload aborted. Never dropped half-way.
    pub(crate) async fn finish(
        mut self,
        cancel: &CancellationToken,
        grace: Duration,
    ) -> Result<Finished, TransportError> {
        let location = self.location.clone();
        let outcome = {
            let completing = self.complete_all();
            tokio::pin!(completing);
            let early = tokio::select! {
                biased;
                result = &mut completing => Some(result),
                _ = cancel.cancelled() => None,
            };
            match early {
                Some(result) => Some(result),
                None => {
                    tracing::info!(key = %location, grace_seconds = grace.as_secs(), "shutdown while completing the upload; giving it a grace period");
                    tokio::time::timeout(grace, &mut completing).await.ok()
                }
            }
        };
        let shutting_down = cancel.is_cancelled();
        match outcome {
            Some(Ok(())) if !shutting_down => Ok(Finished::Completed),
            Some(Ok(())) => {
                // Completed within the grace period, but no manifest will name it.
                tracing::info!(key = %self.location, "upload completed during shutdown; deleting it (no manifest names it)");
                let store_delete = delete_completed(self.store.clone(), location, grace).await;
                if let Err(error) = store_delete {
                    tracing::warn!(key = %self.location, %error, "could not delete the completed upload; no manifest names it and retention removes it");
                }
                Ok(Finished::Cancelled)
            }
            Some(Err(error)) => {
                tracing::warn!(key = %self.location, %error, "completing the upload failed; aborting it");
                self.abort().await;
                Err(error)
            }
            None => {
                tracing::warn!(key = %self.location, grace_seconds = grace.as_secs(), "the upload did not complete within the shutdown grace period; aborting it");
                self.abort().await;
                Ok(Finished::Cancelled)
            }
        }
    }

    async fn complete_all(&mut self) -> Result<(), TransportError> {
        while !self.parts.is_empty() {
            self.join_one().await?;
        }
        self.upload
            .complete()
            .await
            .map(|_| ())
            .map_err(|e| TransportError::store("multipart complete", &self.location, e))
    }
}

async fn delete_completed(
    store: Arc<dyn ObjectStore>,
    location: Path,
    grace: Duration,
) -> Result<(), TransportError> {
    match tokio::time::timeout(grace, store.delete(&location)).await {
        Ok(Ok(())) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
        Ok(Err(e)) => Err(TransportError::store("delete", &location, e)),
        Err(_) => Err(TransportError::Pipeline(format!(
            "deleting `{location}` took longer than {grace:?}"
        ))),
    }
}
