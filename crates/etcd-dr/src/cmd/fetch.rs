//! `etcd-dr fetch`: a verified plain `.db` on local disk.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use etcd_dr_transport::{read_snapshot, resolve_snapshot, SnapshotSelector};

use super::{human_bytes, open_store, shutdown_token};
use crate::settings::Settings;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id, or `latest`.
    #[arg(default_value = "latest")]
    snapshot: String,
    /// Where to write the `.db` file. An existing file is never replaced.
    #[arg(long, short)]
    output: PathBuf,
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
    let manifest = resolve_snapshot(&store, &layout, &selector, &cancel).await?;

    let partial = partial_path(&args.output);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .with_context(|| format!("creating `{}`", partial.display()))?;
    let result = read_snapshot(
        &store,
        &layout,
        &manifest,
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
