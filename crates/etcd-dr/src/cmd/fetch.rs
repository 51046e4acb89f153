//! `etcd-dr fetch`: a verified plain `.db` on local disk, or a node's bundle unpacked into a new
//! directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use etcd_dr_core::{printable, NodeBundle, RestorePoint, SnapshotManifest};
use etcd_dr_replication::{EtcdBinaries, ReplayEngine};
use etcd_dr_transport::{
    read_object, read_snapshot, resolve_snapshot, Identities, PartialFile, SnapshotLayout,
    SnapshotSelector,
};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use super::{human_bytes, manifest_trust, open_store, shutdown_token};
use crate::progress::{on_terminal, TransferBar};
use crate::settings::Settings;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id, or `latest`.
    #[arg(default_value = "latest")]
    snapshot: String,
    /// Where to write the `.db` file (with --node: the directory to create and unpack into).
    /// Nothing existing is ever replaced.
    #[arg(long, short)]
    output: PathBuf,
    /// Fetch this control-plane node's bundle instead of the etcd data.
    #[arg(long)]
    node: Option<String>,
    /// With --node, run as root: give the files the owners recorded in the bundle (by default
    /// they belong to whoever fetches).
    #[arg(long, requires = "node")]
    keep_owners: bool,
    /// The keyspace at a point in history: an etcd revision, a time (RFC 3339: the newest
    /// revision observed at or before it) or `newest` (the newest revision stored). The newest
    /// snapshot at or below it, carried forward with the stored replication segments
    /// (docs/segments.md).
    #[arg(long, value_name = "REV|TIME|newest", conflicts_with_all = ["node", "snapshot"])]
    at: Option<RestorePoint>,
    /// With --at: how the segments are replayed. `backend` appends the recorded changes to
    /// the snapshot's backend file directly (no etcd needed); `etcd` applies every revision
    /// as a transaction in a throw-away etcd (--etcd-bin, --etcdutl-bin).
    #[arg(long, value_enum, default_value_t = ReplayWith::Backend, requires = "at")]
    replay_with: ReplayWith,
    /// With --replay-with etcd: the `etcd` binary (3.5+) for the throw-away etcd.
    #[arg(long, default_value = "etcd", requires = "at")]
    etcd_bin: PathBuf,
    /// With --replay-with etcd: the `etcdutl` binary (3.5+).
    #[arg(long, default_value = "etcdutl", requires = "at")]
    etcdutl_bin: PathBuf,
}

/// `--replay-with`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReplayWith {
    /// The snapshot's backend file extended directly.
    Backend,
    /// A throw-away etcd.
    Etcd,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let selector: SnapshotSelector = args.snapshot.parse()?;
    if args.output.exists() {
        bail!(
            "`{}` already exists; choose another --output (etcd-dr never replaces a file)",
            args.output.display()
        );
    }
    if let Some(point) = args.at {
        let engine = match args.replay_with {
            ReplayWith::Backend => ReplayEngine::Backend,
            ReplayWith::Etcd => ReplayEngine::Etcd(EtcdBinaries {
                etcd: args.etcd_bin,
                etcdutl: args.etcdutl_bin,
            }),
        };
        return super::fetch_at::run(settings, point, &args.output, engine).await;
    }
    let (store, layout) = open_store(settings)?;
    let cancel = shutdown_token();
    let manifest = resolve_snapshot(
        &store,
        &layout,
        &manifest_trust(settings)?,
        &selector,
        &cancel,
    )
    .await?;
    let identities = settings.identities()?;
    if let Some(node) = &args.node {
        return fetch_bundle(
            &store,
            &layout,
            &manifest,
            node,
            &identities,
            &args.output,
            etcd_dr_nodes::UnpackOptions {
                keep_owners: args.keep_owners,
            },
            &cancel,
        )
        .await;
    }

    // The plain database holds every Secret of the cluster: owner-only (0600 less the umask).
    let (partial, writer) =
        PartialFile::create(partial_path(&args.output), args.output.clone(), 0o600)?;
    let (bar, sink) = TransferBar::for_sink(
        format!("fetch {}", manifest.id),
        manifest.raw.size,
        writer,
        on_terminal(false),
    );
    let read = read_snapshot(&store, &layout, &manifest, &identities, sink, &cancel).await;
    drop(bar);
    let (verified, written) = read.with_context(|| format!("fetching snapshot {}", manifest.id))?;
    partial
        .commit(written.into_inner())
        .await
        .with_context(|| {
            format!(
                "moving the verified snapshot to `{}`",
                args.output.display()
            )
        })?;
    println!(
        "snapshot {} written to {} ({}, revision {}, SHA-256 {})",
        manifest.id,
        args.output.display(),
        human_bytes(verified.raw_size),
        manifest.etcd.revision,
        manifest.raw.sha256
    );
    Ok(())
}

fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    output.with_file_name(name)
}

/// Unpacks `node`'s bundle into the new directory `output` (through `<output>.partial`, renamed
/// only once every checksum matched): modes kept less setuid, setgid and world-write, private
/// keys 0600, owners only when asked; hostile entries fail the fetch.
#[allow(clippy::too_many_arguments)]
async fn fetch_bundle(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    manifest: &SnapshotManifest,
    node: &str,
    identities: &Identities,
    output: &Path,
    unpack_options: etcd_dr_nodes::UnpackOptions,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let (object, raw, keys) = match manifest.node_bundle(node) {
        Some(NodeBundle::Stored {
            object,
            raw,
            service_account_keys,
            ..
        }) => (object, raw, service_account_keys),
        Some(NodeBundle::Missing { reason, .. }) => bail!(
            "snapshot {} has no bundle of node {node}: it was not reachable when the snapshot was taken ({})",
            manifest.id,
            printable(reason)
        ),
        None => {
            let known: Vec<_> = manifest
                .nodes
                .iter()
                .map(|b| printable(b.node()))
                .collect();
            bail!(
                "snapshot {} has no bundle of node {node} (bundles: {})",
                manifest.id,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        }
    };
    let partial = partial_path(output);
    if partial.exists() {
        bail!(
            "`{}` exists (left by an interrupted fetch?); remove it first",
            partial.display()
        );
    }
    let (sink, unpacking) = etcd_dr_nodes::unpack_bundle_from_sink(node, &partial, unpack_options);
    let (bar, sink) = TransferBar::for_sink(
        format!("fetch bundle of {node}"),
        raw.size,
        sink,
        on_terminal(false),
    );
    let read = read_object(
        store,
        layout,
        &manifest.id,
        object,
        raw,
        identities,
        sink,
        cancel,
    )
    .await;
    drop(bar);
    // Closes the queue (on success, the sink comes back; on failure it is already gone).
    let read = read.map(|(verified, sink)| {
        drop(sink);
        verified
    });
    let outcome = match (read, unpacking.finish().await) {
        (Ok(verified), Ok(summary)) => Ok((verified, summary)),
        // The unpacker's own error says more than the broken queue it left behind.
        (_, Err(error)) => Err(anyhow::Error::from(error)),
        (Err(error), _) => Err(anyhow::Error::from(error)),
    };
    let (verified, summary) = match outcome {
        Ok(done) => done,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(error.context(format!(
                "fetching the bundle of node {node} from snapshot {}",
                manifest.id
            )));
        }
    };
    if output.exists() {
        let _ = std::fs::remove_dir_all(&partial);
        bail!(
            "`{}` appeared meanwhile; nothing was replaced",
            output.display()
        );
    }
    std::fs::rename(&partial, output)
        .with_context(|| format!("moving the unpacked bundle to `{}`", output.display()))?;
    println!(
        "bundle of node {node} from snapshot {} unpacked into {} ({} entries, {} plain, SHA-256 {})",
        manifest.id,
        output.display(),
        summary.entries,
        human_bytes(verified.raw_size),
        raw.sha256
    );
    for key in keys {
        println!(
            "  service-account key: {}",
            printable(&output.join(key).display().to_string())
        );
    }
    Ok(())
}
