//! The plan a promotion's preflight approves: which tool restores, the new cluster's members
//! and token, the revision bump, and what happens on each node. Part of the promotion record
//! (`dry_run` returns it); the restore crate builds it and runs it.

use serde::Serialize;

/// An etcd version `major.minor.patch` (pre-release suffixes ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct EtcdVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl EtcdVersion {
    /// Parses `3.5.16`, `v3.5.16` or `3.5.16-rc.0`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().trim_start_matches('v');
        let mut parts = text.split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some(Self {
            major,
            minor,
            patch,
        })
    }

    /// Finds the version in the output of `etcdutl version` / `etcdctl version`
    /// (`etcdutl version: 3.5.16`).
    pub fn from_tool_output(output: &str) -> Option<Self> {
        output.lines().find_map(|line| {
            let (label, value) = line.split_once("version:")?;
            if label.trim_end().ends_with("API") {
                return None;
            }
            Self::parse(value)
        })
    }

    /// True when both are the same `major.minor`.
    pub fn same_minor(&self, other: &Self) -> bool {
        self.major == other.major && self.minor == other.minor
    }

    /// True for etcd 3.5 and later, whose restore tool is `etcdutl`.
    pub fn has_etcdutl(&self) -> bool {
        (self.major, self.minor) >= (3, 5)
    }
}

impl std::fmt::Display for EtcdVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The program that restores a snapshot on the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "program", rename_all = "lowercase")]
pub enum RestoreTool {
    /// `etcdutl snapshot restore` (etcd 3.5+).
    Etcdutl(String),
    /// `ETCDCTL_API=3 etcdctl snapshot restore` (etcd 3.4).
    Etcdctl(String),
}

impl RestoreTool {
    /// The tool for a snapshot of etcd `version`, with the configured program names.
    pub fn for_version(version: &EtcdVersion, etcdutl: &str, etcdctl: &str) -> Self {
        if version.has_etcdutl() {
            Self::Etcdutl(etcdutl.to_string())
        } else {
            Self::Etcdctl(etcdctl.to_string())
        }
    }

    /// The program's name or path.
    pub fn program(&self) -> &str {
        match self {
            Self::Etcdutl(p) | Self::Etcdctl(p) => p,
        }
    }

    /// argv prefix that runs the tool (etcdctl 3.4 needs the v3 API selected).
    pub fn argv(&self) -> Vec<String> {
        match self {
            Self::Etcdutl(p) => vec![p.clone()],
            Self::Etcdctl(p) => vec!["env".into(), "ETCDCTL_API=3".into(), p.clone()],
        }
    }
}

/// What the restore does on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodePlan {
    /// The node as configured.
    pub node: String,
    /// The member name (the primary's, equal to this node's host name).
    pub member_name: String,
    /// This node's own peer URLs (the secondary's addresses).
    pub peer_urls: Vec<String>,
    /// The etcd data dir on the node.
    pub data_dir: String,
    /// Where the old data, the snapshot copy and the kept files go:
    /// `<data_dir>/etcd-dr-<promotion id>` (inside the data dir, so the moves are renames on
    /// one file system, also when the data dir is a mount point).
    pub work_dir: String,
}

/// The whole restore, as the preflight approved it; `dry_run` returns this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromotionPlan {
    /// The snapshot's etcd version.
    pub etcd_version: String,
    /// The program that restores.
    pub tool: RestoreTool,
    /// The snapshot's revision.
    pub snapshot_revision: i64,
    /// The secondary's revision before the restore, when its etcd answered.
    pub secondary_revision: Option<i64>,
    /// `--bump-revision` (with `--mark-compacted`), when every node's tool has it.
    pub bump_revision: Option<u64>,
    /// The revision the restored cluster starts above.
    pub expected_min_revision: i64,
    /// `--initial-cluster`.
    pub initial_cluster: String,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// Each node.
    pub nodes: Vec<NodePlan>,
    /// Things the operator should know that do not stop the restore.
    pub warnings: Vec<String>,
}

impl PromotionPlan {
    /// The restore command for `node`: reads `snapshot` (a path on the node) and writes a new
    /// data dir `target` (which must not exist).
    pub fn restore_argv(&self, node: &NodePlan, snapshot: &str, target: &str) -> Vec<String> {
        let mut argv = self.tool.argv();
        argv.extend(
            [
                "snapshot",
                "restore",
                snapshot,
                "--name",
                &node.member_name,
                "--initial-cluster",
                &self.initial_cluster,
                "--initial-cluster-token",
                &self.initial_cluster_token,
                "--initial-advertise-peer-urls",
                &node.peer_urls.join(","),
                "--data-dir",
                target,
            ]
            .map(String::from),
        );
        if let Some(bump) = self.bump_revision {
            argv.push("--bump-revision".into());
            argv.push(bump.to_string());
            argv.push("--mark-compacted".into());
        }
        argv
    }

    /// The member names the restored cluster must have.
    pub fn member_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.member_name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            EtcdVersion::from_tool_output("etcdutl version: 3.5.16\nAPI version: 3.5\n"),
            EtcdVersion::parse("3.5.16")
        );
        assert_eq!(
            EtcdVersion::from_tool_output("etcdctl version: 3.4.23\nAPI version: 3.4\n")
                .unwrap()
                .to_string(),
            "3.4.23"
        );
        assert_eq!(EtcdVersion::from_tool_output("API version: 3.5"), None);
        assert!(EtcdVersion::parse("v3.5.16-rc.0")
            .unwrap()
            .same_minor(&EtcdVersion::parse("3.5.1").unwrap()));
        assert!(!EtcdVersion::parse("3.4.23").unwrap().has_etcdutl());
        assert_eq!(EtcdVersion::parse("three"), None);
    }
}
