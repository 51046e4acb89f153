//! `etcd-dr nodes check`: what a node looks like from here.

use tokio_util::sync::CancellationToken;

use crate::{Node, NodeError};

/// What one node reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// The host name the node itself reports (`hostname`).
    pub host_name: String,
    /// Each tool asked for, with its path on the node when present.
    pub tools: Vec<(String, Option<String>)>,
    /// Each path asked for, with its free space when it exists.
    pub space: Vec<(String, Option<FreeSpace>)>,
}

/// Free space of the file system holding a path (`df -P -k`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeSpace {
    /// Bytes available to the user running the commands.
    pub available: u64,
    /// Mount point of that file system.
    pub mount: String,
}

impl NodeReport {
    /// Tools that are not on the node's PATH.
    pub fn missing_tools(&self) -> Vec<&str> {
        self.tools
            .iter()
            .filter(|(_, path)| path.is_none())
            .map(|(tool, _)| tool.as_str())
            .collect()
    }
}

const SCRIPT: &str = r#"count=$1
shift
printf 'host\t%s\n' "$(hostname)"
i=0
while [ "$i" -lt "$count" ]; do
    tool=$1
    shift
    i=$((i + 1))
    found=$(command -v "$tool" 2>/dev/null) || found=
    printf 'tool\t%s\t%s\n' "$tool" "$found"
done
for path do
    line=$(df -P -k "$path" 2>/dev/null | tail -n 1)
    printf 'space\t%s\t%s\n' "$path" "$line"
done"#;

/// Asks `node` for its host name, which of `tools` it has and the free space at `paths`, in one
/// command (with the configured prefix, so `sudo` is checked too).
pub async fn check_node(
    node: &Node,
    tools: &[&str],
    paths: &[String],
    cancel: &CancellationToken,
) -> Result<NodeReport, NodeError> {
    let mut argv = vec![
        "sh".to_string(),
        "-c".into(),
        SCRIPT.into(),
        "sh".into(),
        tools.len().to_string(),
    ];
    argv.extend(tools.iter().map(|t| t.to_string()));
    argv.extend(paths.iter().cloned());
    let output = node.command(argv).label("check").run(cancel).await?;
    parse_report(&output.stdout_text()).map_err(|detail| NodeError::UnexpectedOutput {
        node: node.name().to_string(),
        command: "check".into(),
        detail,
    })
}

fn parse_report(text: &str) -> Result<NodeReport, String> {
    let mut report = NodeReport {
        host_name: String::new(),
        tools: Vec::new(),
        space: Vec::new(),
    };
    for line in text.lines() {
        let mut fields = line.splitn(3, '\t');
        match (fields.next(), fields.next(), fields.next()) {
            (Some("host"), Some(host), None) => report.host_name = host.to_string(),
            (Some("tool"), Some(tool), Some(path)) => report.tools.push((
                tool.to_string(),
                (!path.is_empty()).then(|| path.to_string()),
            )),
            (Some("space"), Some(path), Some(df)) => {
                let words: Vec<&str> = df.split_whitespace().collect();
                let free = match words.as_slice() {
                    [] => None,
                    [_, _, _, available, _, mount @ ..] if !mount.is_empty() => {
                        let available: u64 = available
                            .parse()
                            .map_err(|_| format!("df printed `{df}`"))?;
                        Some(FreeSpace {
                            available: available * 1024,
                            mount: mount.join(" "),
                        })
                    }
                    _ => return Err(format!("df printed `{df}`")),
                };
                report.space.push((path.to_string(), free));
            }
            _ => return Err(format!("unexpected line `{line}`")),
        }
    }
    if report.host_name.is_empty() {
        return Err("no host name".into());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LocalExecutor, NodeRole};
    use std::sync::Arc;

    #[tokio::test]
    async fn reports_this_host() {
        let node = Node::new(NodeRole::ControlPlane, Arc::new(LocalExecutor::new("here")));
        let report = check_node(
            &node,
            &["sh", "no-such-tool-etcd-dr"],
            &["/".to_string(), "/nonexistent/etcd-dr".to_string()],
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(report.host_name, host.trim());
        assert_eq!(report.missing_tools(), ["no-such-tool-etcd-dr"]);
        assert!(report.tools[0].1.as_deref().unwrap().ends_with("/sh"));
        let root = report.space[0].1.as_ref().unwrap();
        assert_eq!(root.mount, "/");
        assert!(root.available > 0);
        assert_eq!(report.space[1].1, None);
    }
}
