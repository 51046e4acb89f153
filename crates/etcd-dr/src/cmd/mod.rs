//! One file per subcommand.

pub mod fetch;
pub mod list;
pub mod prune;
pub mod run;
pub mod snapshot;
pub mod verify;

use std::sync::Arc;

use anyhow::Context;
use etcd_dr_scheduler::EtcdSource;
use etcd_dr_transport::SnapshotLayout;
use object_store::ObjectStore;

use crate::settings::Settings;
use crate::snapshot_job::SnapshotContext;

/// The store client and the cluster's layout in it.
pub fn open_store(settings: &Settings) -> anyhow::Result<(Arc<dyn ObjectStore>, SnapshotLayout)> {
    let store = settings
        .store
        .build()
        .with_context(|| format!("opening {}", settings.store.describe()))?;
    let layout = SnapshotLayout::new(&settings.store.prefix, &settings.cluster)?;
    Ok((store, layout))
}

/// Everything needed to take snapshots.
pub fn snapshot_context(settings: &Settings) -> anyhow::Result<SnapshotContext> {
    let (store, layout) = open_store(settings)?;
    Ok(SnapshotContext {
        cluster: settings.cluster.clone(),
        source: EtcdSource::new(settings.etcd()?.clone())?,
        store,
        layout,
        upload: settings.upload.options(),
    })
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

/// `1.5 GiB`-style sizes for people.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
