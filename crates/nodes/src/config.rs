use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use etcd_dr_core::ConfigProblems;
use serde::Deserialize;

use crate::executor::{DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SSH_PROGRAM};
use crate::{Executor, LocalExecutor, Node, NodeRole, SshExecutor};

/// The nodes of the cluster and how to reach them (`[nodes]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodesConfig {
    /// Control-plane nodes by host name (short names, as in the etcd member list).
    #[serde(default)]
    pub control_plane: Vec<String>,
    /// Worker nodes by host name (used after a promote).
    #[serde(default)]
    pub workers: Vec<String>,
    /// Take the control-plane nodes from the etcd member names (kubeadm names members after
    /// their host) when `control_plane` is empty.
    #[serde(default)]
    pub discover_control_plane: bool,
    /// How every node is reached.
    #[serde(default)]
    pub access: AccessConfig,
    /// Paths whose free space `etcd-dr nodes check` reports.
    #[serde(default = "default_space_paths")]
    pub space_paths: Vec<String>,
}

fn default_space_paths() -> Vec<String> {
    ["/etc/kubernetes", "/var/lib/etcd", "/var/lib/kubelet"]
        .map(String::from)
        .to_vec()
}

impl Default for NodesConfig {
    fn default() -> Self {
        Self {
            control_plane: Vec::new(),
            workers: Vec::new(),
            discover_control_plane: false,
            access: AccessConfig::default(),
            space_paths: default_space_paths(),
        }
    }
}

/// How commands reach a node: `ssh` (the system client) or `local` (this host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessKind {
    /// The system `ssh` client, so ssh_config, the agent, ProxyJump and known_hosts apply.
    #[default]
    Ssh,
    /// Commands run on this host (etcd-dr runs on the only control-plane node).
    Local,
}

/// `[nodes.access]`: how commands reach the nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// `ssh` (default) or `local`.
    #[serde(rename = "type", default)]
    pub kind: AccessKind,
    /// `ssh`: the client program.
    #[serde(default = "default_ssh_program")]
    pub ssh_program: PathBuf,
    /// `ssh`: an ssh_config file (`ssh -F`); the user's `~/.ssh/config` when absent.
    #[serde(default)]
    pub ssh_config: Option<PathBuf>,
    /// `ssh`: remote user (`ssh -l`).
    #[serde(default)]
    pub user: Option<String>,
    /// `ssh`: remote port (`ssh -p`).
    #[serde(default)]
    pub port: Option<u16>,
    /// `ssh`: private key file (`ssh -i`); the agent and ssh_config otherwise.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// `ssh`: extra `-o` options, e.g. `["ProxyJump=bastion-eu"]`.
    #[serde(default)]
    pub ssh_options: Vec<String>,
    /// A prefix run before every command, e.g. `["sudo", "-n"]` (never prompts).
    #[serde(default)]
    pub sudo: Vec<String>,
    /// `ssh`: how long to wait for the connection (`ConnectTimeout`).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The longest any one command may run before it is killed.
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub command_timeout: Duration,
}

fn default_ssh_program() -> PathBuf {
    PathBuf::from(DEFAULT_SSH_PROGRAM)
}
fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}
fn default_command_timeout() -> Duration {
    DEFAULT_COMMAND_TIMEOUT
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            kind: AccessKind::default(),
            ssh_program: default_ssh_program(),
            ssh_config: None,
            user: None,
            port: None,
            identity_file: None,
            ssh_options: Vec::new(),
            sudo: Vec::new(),
            connect_timeout: default_connect_timeout(),
            command_timeout: default_command_timeout(),
        }
    }
}

/// True for a host name etcd-dr accepts as a node name: letters, digits, `-`, `_`, `.`, not
/// starting with `-` or `.` (it also names the node's object in the store).
pub fn is_valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl NodesConfig {
    /// True when nodes are configured or discovered.
    pub fn has_control_plane(&self) -> bool {
        !self.control_plane.is_empty() || self.discover_control_plane
    }

    /// Reports every bad field under `field` (e.g. `nodes`).
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        let mut seen = std::collections::HashSet::new();
        for (list, names) in [
            ("control_plane", &self.control_plane),
            ("workers", &self.workers),
        ] {
            for (i, name) in names.iter().enumerate() {
                if !is_valid_node_name(name) {
                    problems.push(
                        format!("{field}.{list}[{i}]"),
                        "must be a host name (letters, digits, `-`, `_`, `.`), e.g. \"cp1\"",
                    );
                } else if !seen.insert(name.as_str()) {
                    problems.push(
                        format!("{field}.{list}[{i}]"),
                        format!("`{name}` is listed twice"),
                    );
                }
            }
        }
        for (i, path) in self.space_paths.iter().enumerate() {
            if !path.starts_with('/') {
                problems.push(
                    format!("{field}.space_paths[{i}]"),
                    "must be an absolute path",
                );
            }
        }
        self.access.validate(&format!("{field}.access"), problems);
        if self.access.kind == AccessKind::Local
            && (self.control_plane.len() + self.workers.len() > 1 || self.discover_control_plane)
        {
            problems.push(
                format!("{field}.access.type"),
                "\"local\" runs every command on this host, so it fits a single node; use \"ssh\" for several",
            );
        }
    }

    /// The configured control-plane nodes, each with its executor.
    pub fn control_plane_nodes(&self) -> Vec<Node> {
        self.nodes_named(&self.control_plane, NodeRole::ControlPlane)
    }

    /// The configured worker nodes, each with its executor.
    pub fn worker_nodes(&self) -> Vec<Node> {
        self.nodes_named(&self.workers, NodeRole::Worker)
    }

    /// Nodes of `role` with the given names, reached as `access` says.
    pub fn nodes_named<S: AsRef<str>>(&self, names: &[S], role: NodeRole) -> Vec<Node> {
        names
            .iter()
            .map(|name| Node::new(role, self.access.executor(name.as_ref())))
            .collect()
    }
}

impl AccessConfig {
    /// Reports every bad field under `field` (e.g. `nodes.access`).
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        if self.kind == AccessKind::Local {
            let mut forbid = |present: bool, name: &str| {
                if present {
                    problems.push(
                        format!("{field}.{name}"),
                        format!("does not apply when {field}.type = \"local\"; remove it"),
                    );
                }
            };
            forbid(self.ssh_config.is_some(), "ssh_config");
            forbid(self.user.is_some(), "user");
            forbid(self.port.is_some(), "port");
            forbid(self.identity_file.is_some(), "identity_file");
            forbid(!self.ssh_options.is_empty(), "ssh_options");
        }
        if let Some(user) = &self.user {
            if user.is_empty() || user.starts_with('-') || user.chars().any(char::is_whitespace) {
                problems.push(format!("{field}.user"), "must be a user name");
            }
        }
        for (i, option) in self.ssh_options.iter().enumerate() {
            if !option.contains('=') || option.starts_with('-') {
                problems.push(
                    format!("{field}.ssh_options[{i}]"),
                    "must be an ssh option as `Name=value`, e.g. \"ProxyJump=bastion\"",
                );
            }
        }
        if self.sudo.iter().any(String::is_empty) {
            problems.push(
                format!("{field}.sudo"),
                "must be a list of words, e.g. [\"sudo\", \"-n\"]",
            );
        }
        if self.connect_timeout.is_zero() {
            problems.push(format!("{field}.connect_timeout"), "must be longer than 0s");
        }
        if self.command_timeout < Duration::from_secs(1) {
            problems.push(
                format!("{field}.command_timeout"),
                "must be at least 1s, e.g. \"10m\"",
            );
        }
    }

    /// The executor that reaches `node` as configured.
    pub fn executor(&self, node: &str) -> Arc<dyn Executor> {
        match self.kind {
            AccessKind::Local => Arc::new(LocalExecutor {
                node: node.to_string(),
                sudo: self.sudo.clone(),
                command_timeout: self.command_timeout,
            }),
            AccessKind::Ssh => Arc::new(SshExecutor {
                host: node.to_string(),
                program: self.ssh_program.clone(),
                ssh_config: self.ssh_config.clone(),
                user: self.user.clone(),
                port: self.port,
                identity_file: self.identity_file.clone(),
                options: self.ssh_options.clone(),
                sudo: self.sudo.clone(),
                connect_timeout: self.connect_timeout,
                command_timeout: self.command_timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_host_names() {
        for good in ["cp1", "cp-1.eu", "node_7"] {
            assert!(is_valid_node_name(good), "{good}");
        }
        for bad in ["", "-oProxyCommand=x", ".hidden", "a b", "a/b", "x;y"] {
            assert!(!is_valid_node_name(bad), "{bad}");
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let config = NodesConfig {
            control_plane: vec!["cp1".into(), "-evil".into(), "cp1".into()],
            access: AccessConfig {
                ssh_options: vec!["-oProxyCommand=sh".into()],
                connect_timeout: Duration::ZERO,
                ..AccessConfig::default()
            },
            ..NodesConfig::default()
        };
        let mut problems = ConfigProblems::default();
        config.validate("nodes", &mut problems);
        let fields: Vec<_> = problems.iter().map(|p| p.field.clone()).collect();
        assert_eq!(
            fields,
            [
                "nodes.control_plane[1]",
                "nodes.control_plane[2]",
                "nodes.access.ssh_options[0]",
                "nodes.access.connect_timeout"
            ]
        );
    }

    #[test]
    fn local_access_fits_one_node() {
        let config = NodesConfig {
            control_plane: vec!["cp1".into(), "cp2".into()],
            access: AccessConfig {
                kind: AccessKind::Local,
                user: Some("root".into()),
                ..AccessConfig::default()
            },
            ..NodesConfig::default()
        };
        let mut problems = ConfigProblems::default();
        config.validate("nodes", &mut problems);
        let fields: Vec<_> = problems.iter().map(|p| p.field.clone()).collect();
        assert_eq!(fields, ["nodes.access.user", "nodes.access.type"]);
    }
}
