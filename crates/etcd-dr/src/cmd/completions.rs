//! `etcd-dr completions <shell>`: the shell's completion script, generated from the CLI
//! definition itself so that it never falls behind a new subcommand or option.

use clap_complete::Shell;

#[derive(clap::Args)]
pub struct Args {
    /// The shell to complete in (bash, zsh, fish, elvish, powershell).
    shell: Shell,
}

/// Needs no configuration: writes the script to stdout (e.g. into
/// `/usr/share/bash-completion/completions/etcd-dr`).
pub fn run(args: Args, cli: clap::Command) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&script(args.shell, cli))?;
    stdout.flush()?;
    Ok(())
}

/// The completion script for `shell`, as bytes.
pub fn script(shell: Shell, mut cli: clap::Command) -> Vec<u8> {
    let name = cli.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cli, name, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn subcommands() -> Vec<String> {
        crate::Cli::command()
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect()
    }

    #[test]
    fn bash_parses_the_script_and_it_completes_every_subcommand() {
        let script = script(Shell::Bash, crate::Cli::command());
        let text = String::from_utf8(script.clone()).unwrap();
        assert!(subcommands().len() >= 12, "{:?}", subcommands());
        for name in subcommands() {
            assert!(text.contains(&name), "bash completion lacks `{name}`");
        }
        assert!(text.contains("--config") && text.contains("--dry-run"));
        // `bash -n` parses without running; then sourcing it must register the function.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd-dr.bash");
        std::fs::write(&path, &script).unwrap();
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "bash -n {0} && source {0} && complete -p etcd-dr",
                path.display()
            ))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("etcd-dr"));
    }

    #[test]
    fn bash_completes_the_subcommands_of_the_first_word() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd-dr.bash");
        std::fs::write(&path, script(Shell::Bash, crate::Cli::command())).unwrap();
        // What bash would offer after `etcd-dr pr<TAB>`.
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {} && function=$(complete -p etcd-dr | sed 's/.*-F \\([^ ]*\\).*/\\1/') \
                 && COMP_WORDS=(etcd-dr pr) COMP_CWORD=1 COMP_LINE='etcd-dr pr' COMP_POINT=10 \
                 && \"$function\" etcd-dr pr etcd-dr && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                path.display()
            ))
            .output()
            .unwrap();
        let offered = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut offered: Vec<&str> = offered.lines().collect();
        offered.sort();
        assert_eq!(offered, ["promote", "prune"]);
    }

    #[test]
    fn zsh_and_fish_scripts_name_every_subcommand() {
        for shell in [Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(script(shell, crate::Cli::command())).unwrap();
            for name in subcommands() {
                assert!(text.contains(&name), "{shell} completion lacks `{name}`");
            }
        }
    }
}
