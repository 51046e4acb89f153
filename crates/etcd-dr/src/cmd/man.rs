//! `etcd-dr man`: the manual pages (roff), generated from the CLI definition itself.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Write `etcd-dr.1` and one `etcd-dr-<command>.1` per subcommand into this existing
    /// directory instead of printing `etcd-dr.1` to stdout.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Needs no configuration.
pub fn run(args: Args, cli: clap::Command) -> anyhow::Result<()> {
    match args.dir {
        None => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&page(cli)?)?;
            stdout.flush()?;
        }
        // Each subcommand's page is named after it (`etcd-dr-promote.1`) and lists the
        // global options it inherits.
        Some(dir) => clap_mangen::generate_to(cli, &dir)
            .with_context(|| format!("writing the manual pages into `{}`", dir.display()))?,
    }
    Ok(())
}

/// The page of `command` alone (its subcommands listed, not described).
pub fn page(command: clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut out)
        .context("rendering the manual page")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// A page rendered by groff as man renders it, every warning on (`-ww`): (text, warnings).
    fn groff(page: &[u8]) -> (String, String) {
        use std::io::Write;
        let mut child = std::process::Command::new("groff")
            // -k: through preconv, as man does, for the non-ASCII characters.
            .args(["-k", "-man", "-Tutf8", "-ww"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("groff (Debian: groff-base, installed by scripts/install-test-deps.sh)");
        child.stdin.take().unwrap().write_all(page).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// groff's text, without its bold/underline overstrikes.
    fn plain(text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            if c == '\u{8}' {
                out.pop();
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn the_main_page_renders_without_warnings_and_names_every_subcommand() {
        let cli = crate::Cli::command();
        let (text, warnings) = groff(&page(cli.clone()).unwrap());
        let text = plain(&text);
        assert_eq!(warnings, "", "groff warned");
        for sub in cli.get_subcommands() {
            assert!(
                text.contains(sub.get_name()),
                "the page lacks `{}`:\n{text}",
                sub.get_name()
            );
        }
        assert!(text.contains("--config"), "{text}");
    }

    #[test]
    fn every_subcommand_gets_its_own_page_with_its_options() {
        let dir = tempfile::tempdir().unwrap();
        run(
            Args {
                dir: Some(dir.path().to_path_buf()),
            },
            crate::Cli::command(),
        )
        .unwrap();
        let cli = crate::Cli::command();
        assert!(dir.path().join("etcd-dr.1").is_file());
        for sub in cli.get_subcommands() {
            let page = dir.path().join(format!("etcd-dr-{}.1", sub.get_name()));
            assert!(page.is_file(), "{} missing", page.display());
        }
        let (text, warnings) =
            groff(&std::fs::read(dir.path().join("etcd-dr-snapshot.1")).unwrap());
        let text = plain(&text);
        assert_eq!(warnings, "", "groff warned");
        assert!(text.contains("etcd-dr-snapshot"), "{text}");
        assert!(
            text.contains("--label") && text.contains("--json"),
            "{text}"
        );
        // The global option is inherited.
        assert!(text.contains("--config"), "{text}");
    }
}
