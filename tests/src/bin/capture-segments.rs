//! `capture-segments`: runs the replication capture of one generation into a local store
//! directory until killed, printing `stored <revision>` each time more is durably stored.
//! With `--resume` it continues the generation from its stored tail.
//!
//! Not a test: the process the replication fault tests kill with SIGKILL.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use etcd_client::Client;
use etcd_dr_replication::{
    capture_generation, read_chain_tail, CaptureOptions, CaptureProgress, CaptureStart,
    GenerationId, ReplicationLayout, SegmentSigner, SegmentStore,
};
use etcd_dr_transport::{Identities, ManifestSigner, ManifestTrust, SigningConfig};
use object_store::local::LocalFileSystem;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// etcd client URL.
    #[arg(long)]
    endpoint: String,
    /// The local store directory.
    #[arg(long)]
    store: PathBuf,
    /// The generation (`YYYYMMDDTHHMMSSZ-r<base>`).
    #[arg(long)]
    generation: GenerationId,
    /// Continue the generation from its stored tail.
    #[arg(long)]
    resume: bool,
    /// Cut a segment this many milliseconds after its first revision.
    #[arg(long, default_value_t = 1000)]
    segment_age_ms: u64,
    /// The signing key file: segments are signed with it, and a resumed tail must carry its
    /// signature.
    #[arg(long)]
    signing_key: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store: Arc<dyn object_store::ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(&args.store)?);
    let layout = ReplicationLayout::new("dr", "prod")?;
    let cancel = CancellationToken::new();
    let signer = Arc::new(ManifestSigner::load(&args.signing_key, Default::default())?);
    let trust = ManifestTrust::new("prod", &SigningConfig::default(), Some(&signer), false)?;
    let resume = if args.resume {
        read_chain_tail(
            &store,
            &layout,
            &args.generation,
            &Identities::none(),
            &trust,
            &cancel,
        )
        .await
        .context("reading the stored tail")?
    } else {
        None
    };
    let client = Client::connect([args.endpoint.as_str()], None).await?;
    let (progress_tx, mut progress) = watch::channel(CaptureProgress::default());
    tokio::spawn(async move {
        let mut printed = i64::MIN;
        while progress.changed().await.is_ok() {
            let stored = progress.borrow_and_update().stored_revision;
            if stored > printed && progress.borrow().stored_segments > 0 {
                printed = stored;
                println!("stored {stored}");
            }
        }
    });
    let sink = SegmentStore {
        store,
        layout,
        recipients: None,
        signer: Some(SegmentSigner::new(signer, "prod")),
    };
    let options = CaptureOptions {
        max_segment_age: Duration::from_millis(args.segment_age_ms),
        ..CaptureOptions::default()
    };
    let start = CaptureStart {
        generation: args.generation,
        resume,
    };
    capture_generation(&client, sink, start, &options, &progress_tx, &cancel).await?;
    Ok(())
}
