//! `etcd-dr keygen`: a new age identity for the secondary and the recipient for the primary, or
//! (`--signing`) a manifest signing key for the primary and the public key its readers trust.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// The key file to create (mode 0600; an existing file is never replaced).
    #[arg(long, short)]
    output: PathBuf,
    /// Make an Ed25519 manifest signing key (for the primary's signing.key_file) instead of an
    /// age identity.
    #[arg(long)]
    signing: bool,
}

/// Needs no configuration: it only writes the key file and prints its public key.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (file, public, kept_by, public_for) = if args.signing {
        let (file, public) = etcd_dr_transport::generate_signing_key();
        (
            file,
            public,
            "keep it on the primary: signing.key_file",
            "public key for signing.trusted_keys (secondary, and every other reader)",
        )
    } else {
        let (file, public) = etcd_dr_transport::generate_identity();
        (
            file,
            public,
            "keep it on the secondary: encryption.identity_file",
            "public key for the primary's encryption.recipients",
        )
    };
    let mut out = etcd_dr_core::create_private_file(&args.output).with_context(|| {
        format!(
            "creating `{}` (etcd-dr never replaces a key file)",
            args.output.display()
        )
    })?;
    out.write_all(file.as_bytes())
        .and_then(|()| out.sync_all())
        .with_context(|| format!("writing `{}`", args.output.display()))?;
    eprintln!("key written to {} ({kept_by})", args.output.display());
    eprintln!("{public_for}:");
    println!("{public}");
    Ok(())
}
