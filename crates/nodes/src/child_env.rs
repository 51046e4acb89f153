//! The environment of every command etcd-dr starts on a node (tar, ssh, etcdutl, the promote
//! hooks): an allow-list, so that the daemon's secrets (`ETCD_DR_API_TOKEN`,
//! `AWS_SECRET_ACCESS_KEY`, …) never reach a child.

use tokio::process::Command;

/// Variables a child keeps: where programs are, who and where it runs, the locale, and the ssh
/// agent (so that `ssh` can use its keys).
pub const CHILD_ENV_ALLOWED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TERM",
    "SSH_AUTH_SOCK",
];

/// Whether `name` is passed to children: the allow-list and every `LC_*` locale variable.
pub fn is_allowed_in_child(name: &str) -> bool {
    CHILD_ENV_ALLOWED.contains(&name) || name.starts_with("LC_")
}

/// Clears `command`'s environment down to the allowed variables of this process.
pub fn restrict_environment(command: &mut Command) {
    command.env_clear();
    for (name, value) in std::env::vars_os() {
        if name.to_str().is_some_and(is_allowed_in_child) {
            command.env(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_allowed_and_the_basics_are() {
        for secret in [
            "ETCD_DR_API_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "AWS_SESSION_TOKEN",
            "ETCD_DR_STORE__SECRET_ACCESS_KEY",
        ] {
            assert!(!is_allowed_in_child(secret), "{secret}");
        }
        for kept in ["PATH", "HOME", "LC_ALL", "SSH_AUTH_SOCK"] {
            assert!(is_allowed_in_child(kept), "{kept}");
        }
    }
}
