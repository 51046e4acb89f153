//! `etcd-dr fetch`: a verified plain `.db` on local disk, or a node's bundle unpacked into a new
//! directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use etcd_dr_core::{printable, NodeBundle, SnapshotManifest};
use etcd_dr_transport::{
    read_object, read_snapshot, resolve_snapshot, Identities, SnapshotLayout, SnapshotSelector,
};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use super::{human_bytes, identities, manifest_trust, open_store, shutdown_token};
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
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let selector: SnapshotSelector = args.snapshot.parse()?;
    if args.output.exists() {
        bail!(
            "`{}` already exists; choose another --output (etcd-dr never replaces a file)",
            args.output.display()
        );
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
    let identities = identities(settings)?;
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

    let partial = partial_path(&args.output);
    // The plain database holds every Secret of the cluster: owner-only whatever the umask.
    let file = etcd_dr_core::create_private_file(&partial)
        .with_context(|| format!("creating `{}`", partial.display()))?;
    let result = read_snapshot(
        &store,
        &layout,
        &manifest,
        &identities,
        std::io::BufWriter::with_capacity(1 << 20, file),
        &cancel,
    )
    .await;
    let finished = result
        .map_err(anyhow::Error::from)
        .and_then(|(verified, mut writer)| {
            writer.flush()?;
            writer.get_ref().sync_all()?;
            Ok(verified)
        });
    let verified = match finished {
        Ok(verified) => verified,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error.context(format!("fetching snapshot {}", manifest.id)));
        }
    };
    // A hard link fails if the target appeared meanwhile: nothing is ever replaced.
    std::fs::hard_link(&partial, &args.output).with_context(|| {
        format!(
            "moving the verified snapshot to `{}`",
            args.output.display()
        )
    })?;
    std::fs::remove_file(&partial).with_context(|| format!("removing `{}`", partial.display()))?;
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
    // The plain tar flows from the decompressor to the unpacker through a small bounded queue.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let unpacker = {
        let node = node.to_string();
        let partial = partial.clone();
        tokio::task::spawn_blocking(move || {
            etcd_dr_nodes::unpack_bundle(&node, ChannelReader::new(rx), &partial, unpack_options)
        })
    };
    let read = read_object(
        store,
        layout,
        &manifest.id,
        object,
        raw,
        identities,
        ChannelWriter(tx),
        cancel,
    )
    .await;
    // Closes the queue (on success, the writer comes back; on failure it is already gone).
    let read = read.map(|(verified, writer)| {
        drop(writer);
        verified
    });
    let unpacked = unpacker
        .await
        .map_err(|e| anyhow::anyhow!("unpacker thread failed: {e}"));
    let outcome = match (read, unpacked) {
        (Ok(verified), Ok(Ok(summary))) => Ok((verified, summary)),
        // The unpacker's own error says more than the broken queue it left behind.
        (_, Ok(Err(error))) => Err(anyhow::Error::from(error)),
        (Err(error), _) => Err(anyhow::Error::from(error)),
        (_, Err(error)) => Err(error),
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

/// The decompressor's side of the queue to the unpacker.
struct ChannelWriter(std::sync::mpsc::SyncSender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.send(data.to_vec()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the unpacker stopped")
        })?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The unpacker's side of the queue.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl ChannelReader {
    fn new(rx: std::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        Self {
            rx,
            current: std::io::Cursor::new(Vec::new()),
        }
    }
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let read = self.current.read(buf)?;
            if read > 0 || buf.is_empty() {
                return Ok(read);
            }
            match self.rx.recv() {
                Ok(chunk) => self.current = std::io::Cursor::new(chunk),
                Err(_) => return Ok(0),
            }
        }
    }
}
