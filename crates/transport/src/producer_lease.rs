//! One producer of snapshots per prefix at a time: the lease object
//! `<prefix>/<cluster>/producer-lease.json`.
//!
//! A producer takes the lease with a create-only put before it streams anything, renews it
//! while it works and deletes it at the end. A lease whose object the store has not seen
//! rewritten for its `ttl` is expired (the holder crashed) and may be taken over: with a
//! conditional put (`If-Match` on the version read) where the store offers one, so that of two
//! producers taking over at once only one wins; on stores without it (the local store) with a
//! delete and a create-only put. The lease keeps two producers from working at once; it is not
//! what keeps a committed snapshot safe (attempt folders are: [`crate::AttemptToken`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{
    GetResult, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{cancellable, SnapshotLayout, TransportError};

/// File name of the producer lease in the cluster's folder.
pub const PRODUCER_LEASE_NAME: &str = "producer-lease.json";

/// What the lease object says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerLeaseRecord {
    /// The holder's attempt (random, unique per lease taken).
    pub token: String,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// When the holder took the lease (its own clock).
    pub acquired_at: DateTime<Utc>,
    /// How long the lease lives without a renewal, in seconds.
    pub ttl_seconds: u64,
}

/// A lease this process holds. Renew it well within its ttl; release it at the end.
#[derive(Debug)]
pub struct ProducerLease {
    store: Arc<dyn ObjectStore>,
    key: Path,
    record: ProducerLeaseRecord,
    version: UpdateVersion,
}

/// Where the producer lease of the cluster lives.
pub fn producer_lease_path(layout: &SnapshotLayout) -> Path {
    layout.cluster_dir().join(PRODUCER_LEASE_NAME)
}

impl ProducerLease {
    /// Takes the lease for `host`, or fails with [`TransportError::ProducerBusy`] naming the
    /// holder when another producer holds an unexpired one.
    pub async fn acquire(
        store: &Arc<dyn ObjectStore>,
        layout: &SnapshotLayout,
        host: &str,
        ttl: Duration,
        cancel: &CancellationToken,
    ) -> Result<Self, TransportError> {
        let key = producer_lease_path(layout);
        let record = ProducerLeaseRecord {
            token: crate::AttemptToken::random().to_string(),
            host: host.to_string(),
            pid: std::process::id(),
            acquired_at: Utc::now(),
            ttl_seconds: ttl.as_secs().max(1),
        };
        let payload = to_payload(&record)?;
        let created = cancellable(
            cancel,
            store.put_opts(&key, payload.clone(), PutMode::Create.into()),
        )
        .await?;
        match created {
            Ok(result) => {
                return Ok(Self {
                    store: store.clone(),
                    key,
                    record,
                    version: result.into(),
                })
            }
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {}
            Err(e) => return Err(TransportError::store("put", &key, e)),
        }

        // Held, or left behind by a crash: read it and judge by the store's own clock.
        let current = cancellable(cancel, store.get(&key)).await?;
        let (holder, last_written) = match current {
            Ok(object) => read_record(&key, object).await?,
            // Released meanwhile: try once more from the start.
            Err(object_store::Error::NotFound { .. }) => {
                return Box::pin(Self::acquire(store, layout, host, ttl, cancel)).await;
            }
            Err(e) => return Err(TransportError::store("get", &key, e)),
        };
        let (existing, meta_version) = holder;
        let age = Utc::now().signed_duration_since(last_written);
        let holder_ttl = chrono::Duration::seconds(existing.ttl_seconds as i64);
        if age <= holder_ttl {
            return Err(busy(&key, &existing, last_written));
        }
        tracing::warn!(key = %key, holder = %existing.host, pid = existing.pid, last_written = %last_written,
            "taking over an expired producer lease (its holder stopped renewing it)");
        let taken = cancellable(
            cancel,
            store.put_opts(
                &key,
                payload.clone(),
                PutMode::Update(meta_version.clone()).into(),
            ),
        )
        .await?;
        let version = match taken {
            Ok(result) => result.into(),
            Err(object_store::Error::Precondition { .. }) => {
                return Err(busy(&key, &existing, last_written))
            }
            Err(object_store::Error::NotImplemented { .. }) => {
                // No conditional put (local store): delete, then create-only; of two producers
                // doing this at once the second create fails.
                match cancellable(cancel, store.delete(&key)).await? {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(TransportError::store("delete", &key, e)),
                }
                match cancellable(
                    cancel,
                    store.put_opts(&key, payload, PutMode::Create.into()),
                )
                .await?
                {
                    Ok(result) => result.into(),
                    Err(object_store::Error::AlreadyExists { .. }) => {
                        return Err(busy(&key, &existing, last_written))
                    }
                    Err(e) => return Err(TransportError::store("put", &key, e)),
                }
            }
            Err(e) => return Err(TransportError::store("put", &key, e)),
        };
        Ok(Self {
            store: store.clone(),
            key,
            record,
            version,
        })
    }

    /// What the lease object says.
    pub fn record(&self) -> &ProducerLeaseRecord {
        &self.record
    }

    /// Rewrites the lease so that it does not expire. Fails with
    /// [`TransportError::ProducerLeaseLost`] when another producer took it over meanwhile.
    pub async fn renew(&mut self, cancel: &CancellationToken) -> Result<(), TransportError> {
        let payload = to_payload(&self.record)?;
        let renewed = cancellable(
            cancel,
            self.store.put_opts(
                &self.key,
                payload.clone(),
                PutMode::Update(self.version.clone()).into(),
            ),
        )
        .await?;
        match renewed {
            Ok(result) => {
                self.version = result.into();
                Ok(())
            }
            Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::NotFound { .. }) => Err(self.lost()),
            Err(object_store::Error::NotImplemented { .. }) => {
                // No conditional put: check that it is still ours, then rewrite it.
                if !self.still_ours(cancel).await? {
                    return Err(self.lost());
                }
                let options = PutOptions {
                    mode: PutMode::Overwrite,
                    ..PutOptions::default()
                };
                let result = cancellable(cancel, self.store.put_opts(&self.key, payload, options))
                    .await?
                    .map_err(|e| TransportError::store("put", &self.key, e))?;
                self.version = result.into();
                Ok(())
            }
            Err(e) => Err(TransportError::store("put", &self.key, e)),
        }
    }

    /// Deletes the lease if it is still ours. Best effort: a lease left behind expires.
    pub async fn release(self, cancel: &CancellationToken) {
        match self.still_ours(cancel).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(key = %self.key, "the producer lease was taken over before it was released");
                return;
            }
            Err(error) => {
                tracing::warn!(key = %self.key, %error, "could not read the producer lease to release it; it expires on its own");
                return;
            }
        }
        let error = match cancellable(cancel, self.store.delete(&self.key)).await {
            Ok(Ok(())) | Ok(Err(object_store::Error::NotFound { .. })) => return,
            Ok(Err(e)) => TransportError::store("delete", &self.key, e),
            Err(e) => e,
        };
        tracing::warn!(key = %self.key, %error, "could not delete the producer lease; it expires on its own");
    }

    async fn still_ours(&self, cancel: &CancellationToken) -> Result<bool, TransportError> {
        match cancellable(cancel, self.store.get(&self.key)).await? {
            Ok(object) => {
                let ((record, _), _) = read_record(&self.key, object).await?;
                Ok(record.token == self.record.token)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(TransportError::store("get", &self.key, e)),
        }
    }

    fn lost(&self) -> TransportError {
        TransportError::ProducerLeaseLost {
            key: self.key.to_string(),
        }
    }
}

/// The record, its version and when the store last wrote it.
async fn read_record(
    key: &Path,
    object: GetResult,
) -> Result<((ProducerLeaseRecord, UpdateVersion), DateTime<Utc>), TransportError> {
    let version = UpdateVersion {
        e_tag: object.meta.e_tag.clone(),
        version: object.meta.version.clone(),
    };
    let last_modified = object.meta.last_modified;
    let bytes = object
        .bytes()
        .await
        .map_err(|e| TransportError::store("get", key, e))?;
    let record = serde_json::from_slice(&bytes).map_err(|e| TransportError::BadManifest {
        key: key.to_string(),
        detail: format!("not a producer lease: {e}; delete it if no producer is running"),
    })?;
    Ok(((record, version), last_modified))
}

fn to_payload(record: &ProducerLeaseRecord) -> Result<PutPayload, TransportError> {
    serde_json::to_vec_pretty(record)
        .map(PutPayload::from)
        .map_err(|e| TransportError::Pipeline(format!("serialising the producer lease: {e}")))
}

fn busy(key: &Path, holder: &ProducerLeaseRecord, last_written: DateTime<Utc>) -> TransportError {
    TransportError::ProducerBusy {
        key: key.to_string(),
        host: holder.host.clone(),
        pid: holder.pid,
        since: holder.acquired_at,
        expires_at: last_written + chrono::Duration::seconds(holder.ttl_seconds as i64),
    }
}

/// Renews a lease in the background every third of its ttl while a snapshot runs. When a
/// renewal fails for good (taken over, or the store refusing it until the lease would expire)
/// it cancels `lost`, so that the snapshot stops before another producer could start.
pub struct LeaseKeeper {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<ProducerLease>,
    lost: CancellationToken,
}

impl LeaseKeeper {
    /// Starts renewing `lease`; `lost` is cancelled when the lease can no longer be held.
    pub fn start(mut lease: ProducerLease, lost: CancellationToken) -> Self {
        let stop = CancellationToken::new();
        let ttl = Duration::from_secs(lease.record.ttl_seconds);
        let every = ttl / 3;
        let task = {
            let stop = stop.clone();
            let lost = lost.clone();
            tokio::spawn(async move {
                let mut last_renewed = tokio::time::Instant::now();
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return lease,
                        _ = tokio::time::sleep(every) => {}
                    }
                    match lease.renew(&stop).await {
                        Ok(()) => last_renewed = tokio::time::Instant::now(),
                        Err(TransportError::Cancelled) => return lease,
                        Err(error @ TransportError::ProducerLeaseLost { .. }) => {
                            tracing::error!(%error, "stopping the snapshot");
                            lost.cancel();
                            return lease;
                        }
                        Err(error)
                            if !error.is_transient() || last_renewed.elapsed() + every >= ttl =>
                        {
                            tracing::error!(%error, "the producer lease could not be renewed before it expires; stopping the snapshot");
                            lost.cancel();
                            return lease;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "renewing the producer lease failed; retrying");
                        }
                    }
                }
            })
        };
        Self { stop, task, lost }
    }

    /// True when the lease was lost (and `lost` cancelled).
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Stops renewing and releases the lease.
    pub async fn release(self, cancel: &CancellationToken) {
        self.stop.cancel();
        match self.task.await {
            Ok(lease) => lease.release(cancel).await,
            Err(error) => {
                tracing::warn!(%error, "the producer lease keeper failed; the lease expires on its own")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::local::LocalFileSystem;
    use object_store::memory::InMemory;

    fn layout() -> SnapshotLayout {
        SnapshotLayout::new("dr", "prod").unwrap()
    }

    async fn stores() -> Vec<(Arc<dyn ObjectStore>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let local: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        vec![
            (Arc::new(InMemory::new()), tempfile::tempdir().unwrap()),
            (local, dir),
        ]
    }

    #[tokio::test]
    async fn a_second_producer_is_refused_while_the_lease_is_held() {
        let cancel = CancellationToken::new();
        for (store, _dir) in stores().await {
            let ttl = Duration::from_secs(60);
            let mut first = ProducerLease::acquire(&store, &layout(), "a", ttl, &cancel)
                .await
                .unwrap();
            let error = ProducerLease::acquire(&store, &layout(), "b", ttl, &cancel)
                .await
                .unwrap_err();
            match &error {
                TransportError::ProducerBusy { host, .. } => assert_eq!(host, "a"),
                other => panic!("expected busy, got {other}"),
            }
            first.renew(&cancel).await.unwrap();
            first.release(&cancel).await;
            let second = ProducerLease::acquire(&store, &layout(), "b", ttl, &cancel)
                .await
                .unwrap();
            assert_eq!(second.record().host, "b");
        }
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_its_holder_learns_it_lost() {
        let cancel = CancellationToken::new();
        for (store, _dir) in stores().await {
            let mut stale = ProducerLease::acquire(
                &store,
                &layout(),
                "crashed",
                Duration::from_secs(1),
                &cancel,
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(2100)).await;
            let taker = ProducerLease::acquire(
                &store,
                &layout(),
                "taker",
                Duration::from_secs(60),
                &cancel,
            )
            .await
            .unwrap();
            assert!(matches!(
                stale.renew(&cancel).await,
                Err(TransportError::ProducerLeaseLost { .. })
            ));
            // The stale holder's release leaves the taker's lease alone.
            stale.release(&cancel).await;
            assert!(taker.still_ours(&cancel).await.unwrap());
        }
    }
}
