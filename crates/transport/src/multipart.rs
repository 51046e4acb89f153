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

/// How an abort ended.
#[derive(Debug, PartialEq, Eq)]
enum Aborted {
    Yes,
    /// The store does not know the upload (completed, or already aborted).
    UnknownUpload,
    Failed,
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
    /// store's lifecycle rule (AbortIncompleteMultipartUpload) to remove.
    pub(crate) async fn abort(self) {
        self.abort_reporting().await;
    }

    /// [`PartUploader::abort`], saying whether the store no longer knew the upload (it had
    /// completed after all: a completion abandoned at its deadline may still have landed).
    async fn abort_reporting(mut self) -> Aborted {
        self.parts.shutdown().await;
        match self.upload.abort().await {
            Ok(()) => {
                tracing::info!(key = %self.location, "multipart upload aborted");
                Aborted::Yes
            }
            Err(object_store::Error::NotFound { .. }) => Aborted::UnknownUpload,
            Err(error) => {
                tracing::warn!(key = %self.location, %error, "could not abort multipart upload; the store's lifecycle rule (AbortIncompleteMultipartUpload) must remove its parts");
                Aborted::Failed
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
                let store = self.store.clone();
                let location = self.location.clone();
                if self.abort_reporting().await == Aborted::UnknownUpload {
                    tracing::info!(key = %location, "the upload had completed after all; deleting it (no manifest names it)");
                    if let Err(error) = delete_completed(store, location.clone(), grace).await {
                        tracing::warn!(key = %location, %error, "could not delete the completed upload; no manifest names it and retention removes it");
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault_store::{Call, Fault, FaultStore};
    use object_store::memory::InMemory;

    fn store() -> (FaultStore, Arc<dyn ObjectStore>) {
        let faults = FaultStore::new(Arc::new(InMemory::new()));
        let store: Arc<dyn ObjectStore> = Arc::new(faults.clone());
        (faults, store)
    }

    async fn upload_two_parts(store: &Arc<dyn ObjectStore>) -> PartUploader {
        let cancel = CancellationToken::new();
        let mut upload = PartUploader::start(store, &Path::from("s/x"), &cancel)
            .await
            .unwrap();
        upload.put(bytes::Bytes::from_static(b"part one"));
        upload.put(bytes::Bytes::from_static(b"part two"));
        upload
    }

    async fn exists(store: &Arc<dyn ObjectStore>) -> bool {
        store.head(&Path::from("s/x")).await.is_ok()
    }

    #[tokio::test]
    async fn a_completion_that_fails_is_aborted() {
        let (faults, store) = store();
        faults.arm(Call::Complete, 1, Fault::Fail);
        let upload = upload_two_parts(&store).await;
        let error = upload
            .finish(&CancellationToken::new(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert_eq!(faults.count(Call::Abort), 1);
        assert!(!exists(&store).await);
    }

    #[tokio::test]
    async fn a_failed_part_fails_the_finish_and_aborts() {
        let (faults, store) = store();
        faults.arm(Call::Part, 2, Fault::Fail);
        let upload = upload_two_parts(&store).await;
        let error = upload
            .finish(&CancellationToken::new(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("multipart part"), "{error}");
        assert_eq!(faults.count(Call::Complete), 0);
        assert_eq!(faults.count(Call::Abort), 1);
    }

    #[tokio::test]
    async fn shutdown_during_a_slow_completion_aborts_it_when_the_grace_runs_out() {
        let (faults, store) = store();
        faults.arm(Call::Complete, 1, Fault::Delay(Duration::from_secs(30)));
        let upload = upload_two_parts(&store).await;
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stop.cancel();
        });
        let started = std::time::Instant::now();
        let finished = upload
            .finish(&cancel, Duration::from_millis(300))
            .await
            .unwrap();
        assert!(matches!(finished, Finished::Cancelled));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(faults.count(Call::Abort), 1);
        assert!(!exists(&store).await);
    }

    #[tokio::test]
    async fn shutdown_during_a_completion_that_makes_the_grace_leaves_no_object() {
        let (faults, store) = store();
        faults.arm(Call::Complete, 1, Fault::Delay(Duration::from_millis(300)));
        let upload = upload_two_parts(&store).await;
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stop.cancel();
        });
        let finished = upload
            .finish(&cancel, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(matches!(finished, Finished::Cancelled));
        assert_eq!(faults.count(Call::Complete), 1);
        assert_eq!(faults.count(Call::Abort), 0);
        assert!(
            !exists(&store).await,
            "the completed object was deleted again"
        );
    }
}
