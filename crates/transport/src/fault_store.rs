//! A fault-injecting `ObjectStore` wrapper for tests: fail or delay the Nth call of a kind, and
//! record what was called, so that every retry and abort path can be driven on purpose. Built
//! for this crate's tests, and for suites elsewhere with the `fault-injection` feature.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

/// A kind of store call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// A single put (create-only or not).
    Put,
    /// The start of a multipart upload.
    MultipartStart,
    /// One part of a multipart upload.
    Part,
    /// Completing a multipart upload.
    Complete,
    /// Aborting a multipart upload.
    Abort,
    /// A get (whole or ranged).
    Get,
}

/// What happens to the Nth call of a kind (counted from 1).
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// It fails with a store error (a 503 after retries).
    Fail,
    /// It takes this long first.
    Delay(Duration),
}

#[derive(Debug, Default)]
struct Ledger {
    counts: HashMap<Call, usize>,
    faults: HashMap<(Call, usize), Fault>,
}

/// Wraps a store; faults are armed with [`FaultStore::arm`].
#[derive(Debug, Clone)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    ledger: Arc<Mutex<Ledger>>,
}

impl FaultStore {
    /// Wraps `inner`, with no fault armed.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            ledger: Arc::default(),
        }
    }

    /// The `nth` call of `call` (from 1) meets `fault`.
    pub fn arm(&self, call: Call, nth: usize, fault: Fault) {
        self.lock().faults.insert((call, nth), fault);
    }

    /// How many calls of `call` were made.
    pub fn count(&self, call: Call) -> usize {
        self.lock().counts.get(&call).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the call and applies its fault, if one is armed.
    async fn enter(ledger: &Mutex<Ledger>, call: Call) -> Result<()> {
        let fault = {
            let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
            let count = ledger.counts.entry(call).or_default();
            *count += 1;
            let nth = *count;
            ledger.faults.get(&(call, nth)).copied()
        };
        match fault {
            None => Ok(()),
            Some(Fault::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Some(Fault::Fail) => Err(object_store::Error::Generic {
                store: "FaultStore",
                source: format!("injected failure of {call:?}").into(),
            }),
        }
    }
}

impl std::fmt::Display for FaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        Self::enter(&self.ledger, Call::Put).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Self::enter(&self.ledger, Call::MultipartStart).await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultUpload {
            inner,
            ledger: self.ledger.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        Self::enter(&self.ledger, Call::Get).await?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct FaultUpload {
    inner: Box<dyn MultipartUpload>,
    ledger: Arc<Mutex<Ledger>>,
}

#[async_trait::async_trait]
impl MultipartUpload for FaultUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let ledger = self.ledger.clone();
        Box::pin(async move {
            FaultStore::enter(&ledger, Call::Part).await?;
            part.await
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        FaultStore::enter(&self.ledger, Call::Complete).await?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        FaultStore::enter(&self.ledger, Call::Abort).await?;
        self.inner.abort().await
    }
}
