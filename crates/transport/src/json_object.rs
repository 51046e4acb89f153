//! Small JSON objects beside the snapshots (manifests, the promotion fence, the restore lock,
//! the switchover request): read, and written create-only or replaced.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::TransportError;

/// Reads and parses a JSON object; `Ok(None)` when it does not exist.
pub(crate) async fn read_json<T: DeserializeOwned>(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    cancel: &CancellationToken,
) -> Result<Option<T>, TransportError> {
    let get = async { store.get(key).await?.bytes().await };
    let got = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(TransportError::Cancelled),
        got = get => got,
    };
    let bytes = match got {
        Ok(bytes) => bytes,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(TransportError::store("get", key, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| TransportError::BadManifest {
            key: key.to_string(),
            detail: e.to_string(),
        })
}

fn to_json<T: Serialize>(value: &T) -> Result<PutPayload, TransportError> {
    serde_json::to_vec_pretty(value)
        .map(PutPayload::from)
        .map_err(|e| TransportError::Pipeline(format!("serialising JSON: {e}")))
}

/// Writes `value` as JSON at `key`, create-only unless `replace`. `Ok(false)`: a create-only
/// put found the object already there (nothing was written).
pub(crate) async fn put_json<T: Serialize>(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    value: &T,
    replace: bool,
    cancel: &CancellationToken,
) -> Result<bool, TransportError> {
    let mode = if replace {
        PutMode::Overwrite
    } else {
        PutMode::Create
    };
    let options = PutOptions {
        mode,
        ..PutOptions::default()
    };
    let put = store.put_opts(key, to_json(value)?, options);
    let put = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(TransportError::Cancelled),
        put = put => put,
    };
    match put {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Ok(false),
        Err(e) => Err(TransportError::store("put", key, e)),
    }
}
