//! The environment of every process etcd-dr starts (tar, ssh, etcdutl, the promote hooks, the
//! replay's throw-away etcd): an allow-list, so that the daemon's secrets (`ETCD_DR_API_TOKEN`,
//! `AWS_SECRET_ACCESS_KEY`, …) never reach a child, nor a child's log (etcd logs every unknown
//! `ETCD_*` variable with its value).

use std::ffi::OsString;

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

/// The variables of this process a child keeps (for `Command::env_clear().envs(…)`).
pub fn allowed_child_environment() -> impl Iterator<Item = (OsString, OsString)> {
    std::env::vars_os().filter(|(name, _)| name.to_str().is_some_and(is_allowed_in_child))
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
