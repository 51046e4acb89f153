//! The snapshot list `GET /v1/snapshots` serves: the daemon's own last listing of the store
//! (each poll, each snapshot and retention run refreshes it), listed anew at most once every
//! [`CATALOG_MAX_AGE`] however many requests arrive, so that an open API is no amplifier of
//! store listings and manifest reads.

use std::time::{Duration, Instant};

use etcd_dr_core::SnapshotManifest;
use etcd_dr_transport::{list_snapshots, Catalog, TransportError};

use super::DaemonState;

/// How old a cached listing may be before a request lists the store again.
pub const CATALOG_MAX_AGE: Duration = Duration::from_secs(5);

/// The last listing and when it was made.
#[derive(Default)]
pub struct CatalogCache(tokio::sync::Mutex<Option<(Instant, Vec<SnapshotManifest>)>>);

impl DaemonState {
    /// Remembers what a listing found (the loops call this whenever they list).
    pub async fn cache_catalog(&self, catalog: &Catalog) {
        self.note_refused(catalog);
        *self.catalog_cache.0.lock().await = Some((Instant::now(), catalog.snapshots.clone()));
    }

    /// Drops the cached listing (the store changed): the next request lists anew.
    pub async fn forget_catalog(&self) {
        *self.catalog_cache.0.lock().await = None;
    }

    /// The complete, trusted snapshots: cached when fresh, else listed once for every request
    /// waiting meanwhile.
    pub async fn cached_snapshots(&self) -> Result<Vec<SnapshotManifest>, TransportError> {
        let mut cached = self.catalog_cache.0.lock().await;
        if let Some((at, snapshots)) = cached.as_ref() {
            if at.elapsed() < CATALOG_MAX_AGE {
                return Ok(snapshots.clone());
            }
        }
        let catalog = list_snapshots(&self.store, &self.layout, &self.trust, &self.cancel).await?;
        self.note_refused(&catalog);
        *cached = Some((Instant::now(), catalog.snapshots.clone()));
        Ok(catalog.snapshots)
    }
}
