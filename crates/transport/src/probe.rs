//! The start-up probe of the store's create-only put, on which the commit point (manifest), the
//! promotion fence, the restore lock and the producer lease all rest.

use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use tokio_util::sync::CancellationToken;

use crate::{cancellable, AttemptToken, SnapshotLayout, TransportError};

/// Writes a probe object twice with a create-only put: the second must be refused. A store
/// that accepts both (some S3 clones ignore `If-None-Match`) is refused with
/// [`TransportError::CreateOnlyIgnored`]. The probe is deleted afterwards.
pub async fn probe_create_only(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    cancel: &CancellationToken,
) -> Result<(), TransportError> {
    let key = layout
        .cluster_dir()
        .join(format!(".create-only-probe-{}", AttemptToken::random()));
    let put = || {
        store.put_opts(
            &key,
            PutPayload::from_static(b"etcd-dr create-only probe"),
            PutMode::Create.into(),
        )
    };
    cancellable(cancel, put())
        .await?
        .map_err(|e| TransportError::store("put", &key, e))?;
    let second = cancellable(cancel, put()).await?;
    let outcome = match second {
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Ok(()),
        Ok(_) => Err(TransportError::CreateOnlyIgnored {
            key: key.to_string(),
        }),
        Err(e) => Err(TransportError::store("put", &key, e)),
    };
    match cancellable(cancel, store.delete(&key)).await? {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(error) => {
            tracing::warn!(key = %key, %error, "could not delete the store probe object")
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use overwriting::OverwritingStore;

    /// A store that turns every create-only put into an overwrite, as some S3 clones do.
    mod overwriting {
        use std::sync::Arc;

        use futures::stream::BoxStream;
        use object_store::path::Path;
        use object_store::{
            CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
            ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
        };

        #[derive(Debug)]
        pub struct OverwritingStore(pub Arc<dyn ObjectStore>);

        impl std::fmt::Display for OverwritingStore {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "OverwritingStore({})", self.0)
            }
        }

        #[async_trait::async_trait]
        impl ObjectStore for OverwritingStore {
            async fn put_opts(
                &self,
                location: &Path,
                payload: PutPayload,
                mut opts: PutOptions,
            ) -> Result<PutResult> {
                opts.mode = PutMode::Overwrite;
                self.0.put_opts(location, payload, opts).await
            }
            async fn put_multipart_opts(
                &self,
                location: &Path,
                opts: PutMultipartOptions,
            ) -> Result<Box<dyn MultipartUpload>> {
                self.0.put_multipart_opts(location, opts).await
            }
            async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
                self.0.get_opts(location, options).await
            }
            fn delete_stream(
                &self,
                locations: BoxStream<'static, Result<Path>>,
            ) -> BoxStream<'static, Result<Path>> {
                self.0.delete_stream(locations)
            }
            fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
                self.0.list(prefix)
            }
            async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
                self.0.list_with_delimiter(prefix).await
            }
            async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
                self.0.copy_opts(from, to, options).await
            }
        }
    }

    #[tokio::test]
    async fn a_store_honouring_create_only_passes_and_one_ignoring_it_is_refused() {
        let layout = SnapshotLayout::new("dr", "prod").unwrap();
        let cancel = CancellationToken::new();
        let honest: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        probe_create_only(&honest, &layout, &cancel).await.unwrap();
        assert_eq!(futures::StreamExt::count(honest.list(None)).await, 0);

        let lying: Arc<dyn ObjectStore> = Arc::new(OverwritingStore(honest.clone()));
        let error = probe_create_only(&lying, &layout, &cancel)
            .await
            .unwrap_err();
        assert!(
            matches!(error, TransportError::CreateOnlyIgnored { .. }),
            "{error}"
        );
        assert_eq!(futures::StreamExt::count(honest.list(None)).await, 0);
    }
}
