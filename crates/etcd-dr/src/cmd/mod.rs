//! One file per subcommand.

pub mod completions;
pub mod fetch;
mod fetch_at;
pub mod inspect;
pub mod keygen;
pub mod list;
pub mod man;
pub mod nodes;
pub mod promote;
pub mod prune;
pub mod restore;
pub mod run;
pub mod snapshot;
pub mod verify;

use std::sync::Arc;

use anyhow::Context;
use etcd_dr_scheduler::{BundlePlan, EtcdSource, SnapshotContext};
use etcd_dr_transport::{ManifestTrust, SnapshotLayout};
use object_store::ObjectStore;

use crate::settings::Settings;

/// The store client and the cluster's layout in it.
pub fn open_store(settings: &Settings) -> anyhow::Result<(Arc<dyn ObjectStore>, SnapshotLayout)> {
    let store = settings
        .store
        .build()
        .with_context(|| format!("opening {}", settings.store.describe()))?;
    let layout = SnapshotLayout::new(&settings.store.prefix, &settings.cluster)?;
    Ok((store, layout))
}

/// Everything needed to take snapshots. Refuses, naming the setting, a configuration that
/// would ship plain data where encryption is required.
pub fn snapshot_context(settings: &Settings) -> anyhow::Result<SnapshotContext> {
    settings.validate_for_shipping().context("configuration")?;
    let (store, layout) = open_store(settings)?;
    let mut upload = settings.upload.options();
    upload.encrypt_to = settings.encryption.recipients()?;
    let bundles = settings.bundles_enabled().then(|| BundlePlan {
        bundle: settings.bundle.clone(),
        nodes: settings.nodes.clone(),
    });
    let signer = settings
        .signing
        .signer(settings.secret_file_modes)
        .context("signing.key_file")?
        .map(Arc::new);
    Ok(SnapshotContext {
        trust: manifest_trust(settings)?,
        signer,
        cluster: settings.cluster.clone(),
        source: EtcdSource::new(settings.etcd()?.clone())?,
        store,
        layout,
        upload,
        bundles,
        lease_ttl: settings.upload.producer_lease_ttl,
    })
}

/// What this instance accepts from the store: manifests of its cluster signed by a key of
/// `signing.trusted_keys` (or its own `signing.key_file`), encrypted where required. Warns
/// loudly when unsigned manifests are allowed.
pub fn manifest_trust(settings: &Settings) -> anyhow::Result<ManifestTrust> {
    settings.validate_for_reading().context("configuration")?;
    let signer = settings
        .signing
        .signer(settings.secret_file_modes)
        .context("signing.key_file")?;
    let trust = ManifestTrust::new(
        &settings.cluster,
        &settings.signing,
        signer.as_ref(),
        settings.requires_encryption_to_read(),
    )?;
    if trust.allows_unsigned() {
        tracing::warn!("signing.allow_unsigned = true: unsigned snapshots are accepted, so anyone who can write to the store can plant one; sign manifests and turn it off");
    }
    Ok(trust)
}

/// Cancelled on the first SIGINT or SIGTERM.
pub fn shutdown_token() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
            _ = terminate => tracing::info!("SIGTERM received; shutting down"),
        }
        cancel.cancel();
    });
    token
}

pub use etcd_dr_core::human_bytes;
