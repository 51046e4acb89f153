use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::Command;

use crate::shell_join;

/// The ssh client run unless `[nodes.access] ssh_program` says otherwise.
pub(crate) const DEFAULT_SSH_PROGRAM: &str = "ssh";
/// ssh's `ConnectTimeout` unless `[nodes.access] connect_timeout` says otherwise.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A command's time limit unless `[nodes.access] command_timeout` says otherwise.
pub(crate) const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// How a command reaches one node: it builds the local process that runs an argv vector there.
///
/// Everything else (timeouts, cancellation, streaming, stderr capture, killing) is shared and
/// lives in `NodeCommand`; implementations only say which process to start.
pub trait Executor: Send + Sync + fmt::Debug {
    /// The node's name, for messages.
    fn node(&self) -> &str;

    /// `local` or `ssh`, for messages.
    fn kind(&self) -> &'static str;

    /// The process on this machine that runs `argv` on the node. Its standard streams are set
    /// by the caller.
    fn command(&self, argv: &[String]) -> Command;

    /// The default time limit of one command.
    fn command_timeout(&self) -> Duration;

    /// True when `status` means the node was not reached at all (ssh exits 255), rather than
    /// that the command failed there.
    fn is_unreachable(&self, status: ExitStatus) -> bool {
        let _ = status;
        false
    }
}

/// Runs commands on this host (etcd-dr itself runs on the node).
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    /// The node's name.
    pub node: String,
    /// Prefix before every command, e.g. `["sudo", "-n"]`.
    pub sudo: Vec<String>,
    /// Default time limit of one command.
    pub command_timeout: Duration,
}

impl LocalExecutor {
    /// A local executor named `node` without prefix, with a 10 minute command limit.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            sudo: Vec::new(),
            command_timeout: Duration::from_secs(600),
        }
    }
}

impl Executor for LocalExecutor {
    fn node(&self) -> &str {
        &self.node
    }

    fn kind(&self) -> &'static str {
        "local"
    }

    fn command(&self, argv: &[String]) -> Command {
        let mut words = self.sudo.iter().chain(argv);
        // An empty argv is refused by NodeCommand before it gets here.
        let program = words.next().map(String::as_str).unwrap_or("true");
        let mut command = Command::new(program);
        command.args(words);
        crate::child_env::restrict_environment(&mut command);
        command
    }

    fn command_timeout(&self) -> Duration {
        self.command_timeout
    }
}

/// Runs commands through the system `ssh` client, so the operator's ssh_config, agent,
/// ProxyJump and known_hosts apply. Never prompts (`BatchMode=yes`).
///
/// ssh hands the remote login shell one command line, so the argv (after the `sudo` prefix) is
/// joined with [`shell_join`]: every word arrives unchanged. The remote login shell must be a
/// POSIX shell (sh, bash, dash, ksh, zsh).
#[derive(Debug, Clone)]
pub struct SshExecutor {
    /// Destination host (or ssh_config `Host` alias); also the node's name.
    pub host: String,
    /// The ssh client program.
    pub program: PathBuf,
    /// `ssh -F`.
    pub ssh_config: Option<PathBuf>,
    /// `ssh -l`.
    pub user: Option<String>,
    /// `ssh -p`.
    pub port: Option<u16>,
    /// `ssh -i`.
    pub identity_file: Option<PathBuf>,
    /// Extra `-o Name=value` options.
    pub options: Vec<String>,
    /// Prefix before every command, e.g. `["sudo", "-n"]`.
    pub sudo: Vec<String>,
    /// `ConnectTimeout`.
    pub connect_timeout: Duration,
    /// Default time limit of one command.
    pub command_timeout: Duration,
}

impl SshExecutor {
    /// An ssh executor for `host` with the defaults of `[nodes.access]`.
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            program: PathBuf::from(DEFAULT_SSH_PROGRAM),
            ssh_config: None,
            user: None,
            port: None,
            identity_file: None,
            options: Vec::new(),
            sudo: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }

    /// The arguments given to the ssh client for `argv` (without the program itself).
    pub fn ssh_args(&self, argv: &[String]) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        if let Some(file) = &self.ssh_config {
            args.push("-F".into());
            args.push(file.display().to_string());
        }
        let mut option = |value: String| {
            args.push("-o".into());
            args.push(value);
        };
        option("BatchMode=yes".into());
        option(format!(
            "ConnectTimeout={}",
            self.connect_timeout.as_secs().max(1)
        ));
        // Host-key notices would otherwise end up in every error's stderr tail.
        option("LogLevel=ERROR".into());
        for extra in &self.options {
            option(extra.clone());
        }
        if let Some(user) = &self.user {
            args.push("-l".into());
            args.push(user.clone());
        }
        if let Some(port) = self.port {
            args.push("-p".into());
            args.push(port.to_string());
        }
        if let Some(identity) = &self.identity_file {
            args.push("-i".into());
            args.push(identity.display().to_string());
        }
        // No pseudo-terminal: output is a clean byte stream.
        args.push("-T".into());
        // `--` ends ssh's options: the host can never be read as one.
        args.push("--".into());
        args.push(self.host.clone());
        let words: Vec<&String> = self.sudo.iter().chain(argv).collect();
        args.push(shell_join(&words));
        args
    }
}

impl Executor for SshExecutor {
    fn node(&self) -> &str {
        &self.host
    }

    fn kind(&self) -> &'static str {
        "ssh"
    }

    fn command(&self, argv: &[String]) -> Command {
        let mut command = Command::new(&self.program);
        command.args(self.ssh_args(argv));
        crate::child_env::restrict_environment(&mut command);
        command
    }

    fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    fn is_unreachable(&self, status: ExitStatus) -> bool {
        status.code() == Some(255)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_arguments_quote_the_remote_command() {
        let ssh = SshExecutor {
            ssh_config: Some("/etc/etcd-dr/ssh config".into()),
            user: Some("ops".into()),
            port: Some(2222),
            options: vec!["ProxyJump=bastion".into()],
            sudo: vec!["sudo".into(), "-n".into()],
            ..SshExecutor::new("cp1")
        };
        let args = ssh.ssh_args(&["cat".into(), "/etc/kubernetes/it's here".into()]);
        assert_eq!(
            args,
            [
                "-F",
                "/etc/etcd-dr/ssh config",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ProxyJump=bastion",
                "-l",
                "ops",
                "-p",
                "2222",
                "-T",
                "--",
                "cp1",
                "sudo -n cat '/etc/kubernetes/it'\\''s here'",
            ]
        );
    }

    #[test]
    fn local_commands_get_the_prefix() {
        let local = LocalExecutor {
            sudo: vec!["env".into(), "LC_ALL=C".into()],
            ..LocalExecutor::new("cp1")
        };
        let command = local.command(&["true".into()]);
        let std = command.as_std();
        assert_eq!(std.get_program(), "env");
        let args: Vec<_> = std.get_args().collect();
        assert_eq!(args, ["LC_ALL=C", "true"]);
    }
}
