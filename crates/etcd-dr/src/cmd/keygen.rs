//! `etcd-dr keygen`: a new age identity for the secondary, and the recipient for the primary.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// The identity file to create (mode 0600; an existing file is never replaced).
    #[arg(long, short)]
    output: PathBuf,
}

/// Needs no configuration: it only writes the identity file and prints its public key.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (file, recipient) = etcd_dr_transport::generate_identity();
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.output)
        .with_context(|| {
            format!(
                "creating `{}` (etcd-dr never replaces an identity file)",
                args.output.display()
            )
        })?;
    out.write_all(file.as_bytes())
        .and_then(|()| out.sync_all())
        .with_context(|| format!("writing `{}`", args.output.display()))?;
    eprintln!(
        "identity written to {} (keep it on the secondary: encryption.identity_file)",
        args.output.display()
    );
    eprintln!("public key for the primary's encryption.recipients:");
    println!("{recipient}");
    Ok(())
}
