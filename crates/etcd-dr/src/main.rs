//! `etcd-dr`: keeps a Kubernetes control plane recoverable in a second region.

#![forbid(unsafe_code)]

mod cmd;
mod config_redaction;
mod daemon;
mod progress;
mod requester;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::settings::{default_config_path, LogFormat, Settings};

#[derive(Parser)]
#[command(
    name = "etcd-dr",
    version,
    about = "Streams etcd snapshots to object storage and restores them in another region."
)]
struct Cli {
    /// Configuration file (TOML); `ETCD_DR_…` variables override it.
    #[arg(long, short, global = true, env = "ETCD_DR_CONFIG", default_value_os_t = default_config_path())]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Take one snapshot now and print what was stored.
    Snapshot(cmd::snapshot::Args),
    /// List the stored snapshots, oldest first.
    List(cmd::list::Args),
    /// Stream a snapshot back and check every checksum.
    Verify(cmd::verify::Args),
    /// Download a snapshot as a plain, verified `.db` file for `etcdutl snapshot restore`.
    Fetch(cmd::fetch::Args),
    /// What a snapshot holds: the Kubernetes cluster it records (version, nodes, kubeadm
    /// settings, network plugin) and its objects per resource and namespace, read without etcd.
    Inspect(cmd::inspect::Args),
    /// Apply the retention policy now (or show what it would delete).
    Prune(cmd::prune::Args),
    /// Run the daemon (primary: snapshots on the schedule; secondary: verify and pre-stage) with the HTTP API, until SIGTERM or SIGINT.
    Run(cmd::run::Args),
    /// The cluster's nodes: `etcd-dr nodes check` reaches every one.
    Nodes(cmd::nodes::Args),
    /// Promote this cluster: restore a snapshot onto every control-plane node (fenced,
    /// checked first, rolled back on failure).
    Promote(cmd::promote::Args),
    /// Restore one of this cluster's own snapshots in place onto its control-plane nodes (no
    /// fence: it stays the primary; checked first, rolled back on failure).
    Restore(cmd::restore::Args),
    /// Create an age identity file for the secondary and print its public key (needs no
    /// configuration).
    Keygen(cmd::keygen::Args),
    /// Check the configuration and print it resolved.
    CheckConfig,
    /// Print the completion script of a shell (needs no configuration).
    Completions(cmd::completions::Args),
    /// Print the manual page, or write every page into a directory (needs no configuration).
    Man(cmd::man::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The commands that need no configuration.
    let standalone = match cli.command {
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Completions(args) => cmd::completions::run(args, Cli::command()),
        Command::Man(args) => cmd::man::run(args, Cli::command()),
        command => return run_configured(&cli.config, command),
    };
    match standalone {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("etcd-dr: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

fn run_configured(config: &std::path::Path, command: Command) -> ExitCode {
    let settings = match Settings::load(config) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("etcd-dr: {}", error_chain(&error));
            return ExitCode::from(2);
        }
    };
    init_logging(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("etcd-dr: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Snapshot(args) => return cmd::snapshot::run(&settings, args).await,
            Command::List(args) => cmd::list::run(&settings, args).await,
            Command::Verify(args) => cmd::verify::run(&settings, args).await,
            Command::Fetch(args) => cmd::fetch::run(&settings, args).await,
            Command::Inspect(args) => cmd::inspect::run(&settings, args).await,
            Command::Prune(args) => cmd::prune::run(&settings, args).await,
            Command::Run(args) => cmd::run::run(&settings, args).await,
            Command::Nodes(args) => cmd::nodes::run(&settings, args).await,
            Command::Promote(args) => return cmd::promote::run(&settings, args).await,
            Command::Restore(args) => return cmd::restore::run(&settings, args).await,
            Command::Keygen(_) | Command::Completions(_) | Command::Man(_) => Ok(()),
            Command::CheckConfig => {
                println!(
                    "configuration OK: role {}, cluster {}, store {}, API on {}",
                    settings.role.as_str(),
                    settings.cluster,
                    settings.store.describe(),
                    settings.http.listen
                );
                let nodes = &settings.nodes;
                println!(
                    "  nodes: {} control-plane{}, {} workers; bundles {}",
                    nodes.control_plane.len(),
                    if nodes.control_plane.is_empty() && nodes.discover_control_plane {
                        " (discovered from the etcd member names)"
                    } else {
                        ""
                    },
                    nodes.workers.len(),
                    if settings.bundles_enabled() {
                        "on"
                    } else {
                        "off"
                    }
                );
                println!(
                    "  encryption: {} recipient(s), identity file {}, plain data {}",
                    settings.encryption.recipients.len(),
                    settings
                        .encryption
                        .identity_file
                        .as_ref()
                        .map_or("none".to_string(), |p| p.display().to_string()),
                    if settings
                        .encryption
                        .requires_encryption(settings.bundles_enabled())
                    {
                        "refused"
                    } else {
                        "allowed"
                    }
                );
                println!(
                    "  signing: key file {}, {} trusted key(s), unsigned snapshots {}",
                    settings
                        .signing
                        .key_file
                        .as_ref()
                        .map_or("none".to_string(), |p| p.display().to_string()),
                    settings.signing.trusted_keys.len(),
                    if settings.signing.allow_unsigned {
                        "ACCEPTED (anyone who can write to the store can plant one)"
                    } else {
                        "refused"
                    }
                );
                if let Err(problems) = settings.validate_for_shipping() {
                    println!("  this configuration cannot ship snapshots: {problems}");
                }
                if let Err(problems) = settings.validate_for_reading() {
                    println!("  this configuration cannot read snapshots: {problems}");
                }
                Ok(())
            }
        }
        .map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("etcd-dr: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match settings.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// An error and its causes on one line, each cause once: many library errors already repeat
/// their source in their own message, and the full chain would say the same thing many times.
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("store operation `list` failed: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Inner;

    #[test]
    fn each_cause_is_said_once() {
        let error = anyhow::Error::new(Outer(Inner)).context("listing snapshots");
        assert_eq!(
            error_chain(&error),
            "listing snapshots: store operation `list` failed: connection refused"
        );
    }
}
