//! Checking that what a manifest names is in the store as it was written: every object's stored
//! size and SHA-256, read back in full. No identity is needed (the check is on the stored,
//! possibly encrypted, bytes), so the primary can run it before retention deletes anything.

use std::sync::Arc;

use etcd_dr_core::{NodeBundle, SnapshotId, SnapshotManifest, StoredObject};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::{cancellable, Catalog, SnapshotLayout, TransportError};

/// Reads back every object `manifest` names (the etcd data and each stored node bundle) and
/// checks its stored size and SHA-256. A mismatch or a missing object is
/// [`TransportError::Corrupt`]; a store failure is [`TransportError::Store`].
pub async fn check_stored_objects(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    manifest: &SnapshotManifest,
    cancel: &CancellationToken,
) -> Result<(), TransportError> {
    let bundles = manifest.nodes.iter().filter_map(|bundle| match bundle {
        NodeBundle::Stored { object, .. } => Some(object),
        NodeBundle::Missing { .. } => None,
    });
    for object in std::iter::once(&manifest.stored).chain(bundles) {
        check_object(store, layout, &manifest.id, object, cancel).await?;
    }
    Ok(())
}

async fn check_object(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    id: &SnapshotId,
    object: &StoredObject,
    cancel: &CancellationToken,
) -> Result<(), TransportError> {
    let location = layout.object_path(id, &object.name);
    let corrupt = |detail: String| TransportError::Corrupt {
        id: id.clone(),
        detail,
    };
    let body = match cancellable(cancel, store.get(&location)).await? {
        Ok(body) => body,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(corrupt(format!("its object `{location}` is missing")))
        }
        Err(e) => return Err(TransportError::store("get", &location, e)),
    };
    let mut stream = body.into_stream();
    let mut sha256 = Sha256::new();
    let mut size = 0u64;
    loop {
        let next = cancellable(cancel, stream.next()).await?;
        match next {
            Some(Ok(chunk)) => {
                sha256.update(&chunk);
                size += chunk.len() as u64;
            }
            Some(Err(e)) => return Err(TransportError::store("get", &location, e)),
            None => break,
        }
    }
    let sha256 = hex::encode(sha256.finalize());
    if size != object.size || sha256 != object.sha256 {
        return Err(corrupt(format!(
            "stored object `{location}` has {size} bytes with SHA-256 {sha256}, the manifest says {} bytes with SHA-256 {}",
            object.size, object.sha256
        )));
    }
    Ok(())
}

/// What [`newest_intact`] found.
#[derive(Debug, Default)]
pub struct IntactCheck {
    /// The newest snapshot whose stored objects match its manifest.
    pub newest_intact: Option<SnapshotId>,
    /// Newer snapshots that did not match, with why.
    pub corrupt: Vec<(SnapshotId, String)>,
}

/// Checks the catalog's snapshots newest first until one is intact. Store failures stop the
/// check with an error: nothing may be deleted on a guess.
pub async fn newest_intact(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    catalog: &Catalog,
    cancel: &CancellationToken,
) -> Result<IntactCheck, TransportError> {
    let mut check = IntactCheck::default();
    for manifest in catalog.snapshots.iter().rev() {
        match check_stored_objects(store, layout, manifest, cancel).await {
            Ok(()) => {
                check.newest_intact = Some(manifest.id.clone());
                break;
            }
            Err(TransportError::Corrupt { id, detail }) => {
                tracing::error!(snapshot = %id, %detail, "stored snapshot does not match its manifest");
                check.corrupt.push((id, detail));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(check)
}
