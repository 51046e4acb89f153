//! A fault-injecting `ObjectStore` wrapper for tests: fail, delay or cut the Nth call of a kind,
//! and record what was called, so that every retry and abort path can be driven on purpose.
//! Built for this crate's tests, and for suites elsewhere with the `fault-injection` feature.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
    UploadPart,
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
    /// A head (a get of the metadata only).
    Head,
    /// A listing (each `list`, `list_with_offset` or `list_with_delimiter`).
    List,
    /// The deletion of one object (each location of a `delete_stream`).
    Delete,
    /// A copy (or the copy half of a rename).
    Copy,
}

/// What happens to the Nth call of a kind (counted from 1).
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// It fails with a store error (a 503 after retries).
    Fail,
    /// It takes this long first.
    Delay(Duration),
    /// The connection drops mid-call. A get's or a listing's body stops half-way with an
    /// error; any other call reaches the store (and takes effect: the object is written,
    /// deleted, the upload completed or aborted) but its answer is lost, so the caller sees an
    /// error after the fact. A part is sent, then its answer lost.
    Cut,
}

/// What a call does once counted.
enum Entry {
    /// Goes through.
    Proceed,
    /// Goes through, but its answer (or the second half of its body) is lost.
    Cut,
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
    async fn enter(ledger: &Mutex<Ledger>, call: Call) -> Result<Entry> {
        let fault = {
            let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
            let count = ledger.counts.entry(call).or_default();
            *count += 1;
            let nth = *count;
            ledger.faults.get(&(call, nth)).copied()
        };
        match fault {
            None => Ok(Entry::Proceed),
            Some(Fault::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                Ok(Entry::Proceed)
            }
            Some(Fault::Fail) => Err(object_store::Error::Generic {
                store: "FaultStore",
                source: format!("injected failure of {call:?}").into(),
            }),
            Some(Fault::Cut) => Ok(Entry::Cut),
        }
    }

    /// Runs `operation` as `call`: a failure armed instead, a cut after it.
    async fn around<T>(
        ledger: &Mutex<Ledger>,
        call: Call,
        operation: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let entry = Self::enter(ledger, call).await?;
        let output = operation.await?;
        match entry {
            Entry::Proceed => Ok(output),
            Entry::Cut => Err(cut_error(call)),
        }
    }
}

fn cut_error(call: Call) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultStore",
        source: format!("injected cut of {call:?}: connection dropped").into(),
    }
}

/// `stream` up to `keep` items, then a cut.
fn cut_stream<T: Send + 'static>(
    stream: BoxStream<'static, Result<T>>,
    keep: usize,
    call: Call,
) -> BoxStream<'static, Result<T>> {
    stream
        .take(keep)
        .chain(futures::stream::once(async move { Err(cut_error(call)) }))
        .boxed()
}

/// `stream` up to `keep` bytes, then a cut.
fn cut_bytes(
    stream: BoxStream<'static, Result<Bytes>>,
    keep: u64,
) -> BoxStream<'static, Result<Bytes>> {
    futures::stream::unfold(
        (stream, keep, false),
        |(mut stream, left, done)| async move {
            if done {
                return None;
            }
            if left == 0 {
                return Some((Err(cut_error(Call::Get)), (stream, 0, true)));
            }
            match stream.next().await {
                None => Some((Err(cut_error(Call::Get)), (stream, 0, true))),
                Some(Err(e)) => Some((Err(e), (stream, 0, true))),
                Some(Ok(mut chunk)) => {
                    let take = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    chunk.truncate(take);
                    Some((Ok(chunk), (stream, left - take as u64, false)))
                }
            }
        },
    )
    .boxed()
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
        Self::around(
            &self.ledger,
            Call::Put,
            self.inner.put_opts(location, payload, opts),
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let inner = Self::around(
            &self.ledger,
            Call::MultipartStart,
            self.inner.put_multipart_opts(location, opts),
        )
        .await?;
        Ok(Box::new(FaultUpload {
            inner,
            ledger: self.ledger.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let call = if options.head { Call::Head } else { Call::Get };
        let entry = Self::enter(&self.ledger, call).await?;
        let result = self.inner.get_opts(location, options).await?;
        match (entry, call) {
            (Entry::Proceed, _) => Ok(result),
            (Entry::Cut, Call::Head) => Err(cut_error(call)),
            (Entry::Cut, _) => {
                let (meta, range, attributes) = (
                    result.meta.clone(),
                    result.range.clone(),
                    result.attributes.clone(),
                );
                let keep = (range.end - range.start) / 2;
                Ok(GetResult {
                    payload: GetResultPayload::Stream(cut_bytes(result.into_stream(), keep)),
                    meta,
                    range,
                    attributes,
                    extensions: Default::default(),
                })
            }
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let (ledger, inner) = (self.ledger.clone(), self.inner.clone());
        locations
            .and_then(move |location| {
                let (ledger, inner) = (ledger.clone(), inner.clone());
                async move {
                    Self::around(&ledger, Call::Delete, inner.delete(&location)).await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let (ledger, inner) = (self.ledger.clone(), self.inner.clone());
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            let listed = inner.list(prefix.as_ref());
            Ok::<_, object_store::Error>(match Self::enter(&ledger, Call::List).await {
                Ok(Entry::Proceed) => listed,
                Ok(Entry::Cut) => cut_stream(listed, 1, Call::List),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        Self::around(
            &self.ledger,
            Call::List,
            self.inner.list_with_delimiter(prefix),
        )
        .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        Self::around(
            &self.ledger,
            Call::Copy,
            self.inner.copy_opts(from, to, options),
        )
        .await
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
        Box::pin(async move { FaultStore::around(&ledger, Call::Part, part).await })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        FaultStore::around(&self.ledger, Call::Complete, self.inner.complete()).await
    }

    async fn abort(&mut self) -> Result<()> {
        FaultStore::around(&self.ledger, Call::Abort, self.inner.abort()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn wrapped() -> (FaultStore, Arc<dyn ObjectStore>) {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        (FaultStore::new(inner.clone()), inner)
    }

    #[tokio::test]
    async fn a_cut_put_takes_effect_but_reports_an_error() {
        let (faults, inner) = wrapped();
        let key = Path::from("a/b");
        faults.arm(Call::Put, 1, Fault::Cut);
        assert!(faults.put(&key, PutPayload::from("x")).await.is_err());
        assert_eq!(inner.get(&key).await.unwrap().bytes().await.unwrap(), "x");
        faults.put(&key, PutPayload::from("y")).await.unwrap();
        assert_eq!(faults.count(Call::Put), 2);
    }

    #[tokio::test]
    async fn a_cut_get_stops_half_way_and_a_cut_head_fails() {
        let (faults, _) = wrapped();
        let key = Path::from("a/b");
        faults
            .put(&key, PutPayload::from(vec![7u8; 1000]))
            .await
            .unwrap();
        faults.arm(Call::Get, 1, Fault::Cut);
        let mut body = faults.get(&key).await.unwrap().into_stream();
        let mut read = 0;
        let error = loop {
            match body.next().await {
                Some(Ok(chunk)) => read += chunk.len(),
                Some(Err(e)) => break e,
                None => panic!("the body ended without the cut"),
            }
        };
        assert_eq!(read, 500);
        assert!(error.to_string().contains("cut"), "{error}");
        faults.arm(Call::Head, 1, Fault::Cut);
        assert!(faults.head(&key).await.is_err());
        assert_eq!(
            faults.get(&key).await.unwrap().bytes().await.unwrap().len(),
            1000
        );
    }

    #[tokio::test]
    async fn list_and_delete_faults_apply_per_call_and_per_object() {
        let (faults, inner) = wrapped();
        for name in ["p/1", "p/2", "p/3"] {
            inner
                .put(&Path::from(name), PutPayload::from("x"))
                .await
                .unwrap();
        }
        let prefix = Path::from("p");
        faults.arm(Call::List, 1, Fault::Fail);
        faults.arm(Call::List, 2, Fault::Cut);
        let listed = |n| {
            let faults = faults.clone();
            let prefix = prefix.clone();
            async move {
                let items: Vec<Result<ObjectMeta>> = faults.list(Some(&prefix)).collect().await;
                assert_eq!(faults.count(Call::List), n);
                items
            }
        };
        assert!(listed(1).await.iter().all(|i| i.is_err()));
        let cut = listed(2).await;
        assert!(cut[0].is_ok() && cut.last().unwrap().is_err(), "{cut:?}");
        assert_eq!(listed(3).await.iter().filter(|i| i.is_ok()).count(), 3);

        faults.arm(Call::Delete, 2, Fault::Fail);
        assert!(faults.delete(&Path::from("p/1")).await.is_ok());
        assert!(faults.delete(&Path::from("p/2")).await.is_err());
        assert!(
            inner.head(&Path::from("p/2")).await.is_ok(),
            "a failed delete deleted"
        );
        faults.arm(Call::Delete, 3, Fault::Cut);
        assert!(faults.delete(&Path::from("p/3")).await.is_err());
        assert!(
            inner.head(&Path::from("p/3")).await.is_err(),
            "a cut delete took effect"
        );
    }
}
