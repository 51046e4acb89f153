//! The snapshot list `GET /v1/snapshots` serves, and the generation check behind
//! `GET /v1/snapshots/{id}`: the daemon's own last listing of the store (each poll, each
//! snapshot and retention run refreshes it), listed anew at most once every
//! [`CATALOG_MAX_AGE`] however many requests arrive, so that an open API is no amplifier of
//! store listings and manifest reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_dr_control::ActionError;
use etcd_dr_core::{SnapshotId, SnapshotManifest};
use etcd_dr_transport::{list_snapshots, Catalog, TransportError};

use super::DaemonState;

/// How old a cached listing may be before a request lists the store again.
pub const CATALOG_MAX_AGE: Duration = Duration::from_secs(5);

/// A listing younger than this is not listed again for a snapshot it does not hold: a manifest
/// committed after it is at most this new.
const RELIST_FOR_UNKNOWN_ID: Duration = Duration::from_secs(1);

/// What one listing found: the trusted snapshots and the refused ones with why.
struct Listing {
    at: Instant,
    snapshots: Vec<SnapshotManifest>,
    refused: Vec<(SnapshotId, String)>,
}

impl Listing {
    fn of(catalog: &Catalog) -> Arc<Self> {
        Arc::new(Self {
            at: Instant::now(),
            snapshots: catalog.snapshots.clone(),
            refused: catalog
                .refused
                .iter()
                .map(|r| (r.id.clone(), r.reason.clone()))
                .collect(),
        })
    }
}

/// The last listing.
#[derive(Default)]
pub struct CatalogCache(tokio::sync::Mutex<Option<Arc<Listing>>>);

impl DaemonState {
    /// Remembers what a listing found (the loops call this whenever they list).
    pub async fn cache_catalog(&self, catalog: &Catalog) {
        self.note_refused(catalog);
        *self.catalog_cache.0.lock().await = Some(Listing::of(catalog));
    }

    /// Drops the cached listing (the store changed): the next request lists anew.
    pub async fn forget_catalog(&self) {
        *self.catalog_cache.0.lock().await = None;
    }

    /// The complete, trusted snapshots: cached when fresh, else listed once for every request
    /// waiting meanwhile.
    pub async fn cached_snapshots(&self) -> Result<Vec<SnapshotManifest>, TransportError> {
        Ok(self.listing(CATALOG_MAX_AGE).await?.snapshots.clone())
    }

    /// Snapshot `id`, whose manifest was just read and trusted, as the catalog judges it among
    /// the others (its etcd generation): the manifest, or why not.
    pub async fn judged_snapshot(&self, id: &SnapshotId) -> Result<SnapshotManifest, ActionError> {
        let mut listing = self.listing(CATALOG_MAX_AGE).await.map_err(action_error)?;
        let known = |listing: &Listing| {
            listing.snapshots.iter().any(|m| &m.id == id)
                || listing.refused.iter().any(|(r, _)| r == id)
        };
        if !known(&listing) {
            // Committed after the listing (or not there at all): list again, at most once a
            // second, so that unknown ids cannot make the API list the store on every request.
            listing = self
                .listing(RELIST_FOR_UNKNOWN_ID)
                .await
                .map_err(action_error)?;
        }
        if let Some(manifest) = listing.snapshots.iter().find(|m| &m.id == id) {
            return Ok(manifest.clone());
        }
        if let Some((_, reason)) = listing.refused.iter().find(|(r, _)| r == id) {
            return Err(ActionError::Refused(format!(
                "snapshot {id} is refused: {reason}"
            )));
        }
        // Its manifest was read, so it was committed after the listing of a moment ago.
        Err(ActionError::Unavailable(format!(
            "snapshot {id} was committed after the store's listing of a moment ago; try again in a second"
        )))
    }

    /// A listing at most `max_age` old; one listing serves every request waiting meanwhile.
    async fn listing(&self, max_age: Duration) -> Result<Arc<Listing>, TransportError> {
        let mut cached = self.catalog_cache.0.lock().await;
        if let Some(listing) = cached.as_ref() {
            if listing.at.elapsed() < max_age {
                return Ok(listing.clone());
            }
        }
        let catalog = list_snapshots(&self.store, &self.layout, &self.trust, &self.cancel).await?;
        self.note_refused(&catalog);
        let listing = Listing::of(&catalog);
        *cached = Some(listing.clone());
        Ok(listing)
    }
}

fn action_error(error: TransportError) -> ActionError {
    super::action_error(error)
}
