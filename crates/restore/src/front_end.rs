//! The API front end: kubeadm's `controlPlaneEndpoint` names the address every kubelet and
//! control-plane component reaches the API through. After a restore in the secondary region
//! that name must lead to the secondary's control plane; the built-in step writes one marked
//! `/etc/hosts` line on every node (the seed's `maak8s-kube-api-alias.sh`), replacing an
//! earlier marked line rather than adding a second, and a rollback puts the marked lines back
//! as they were. Lines without the mark are never touched.

use std::net::IpAddr;

use etcd_dr_core::ConfigProblems;
use etcd_dr_nodes::{Node, NodeError};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// The comment that marks the lines etcd-dr owns in the hosts file.
pub const HOSTS_MARK: &str = "# etcd-dr api-front-end";

/// `[promote.front_end]`: point the API front-end name at the secondary on every node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontEndConfig {
    /// Run the step (off unless set).
    #[serde(default)]
    pub enabled: bool,
    /// The name to point; the host of the snapshot's recorded `controlPlaneEndpoint` when
    /// unset.
    #[serde(default)]
    pub name: Option<String>,
    /// The secondary's API address (its load balancer or a control-plane node): an IP address.
    #[serde(default)]
    pub address: Option<String>,
    /// The hosts file on every node.
    #[serde(default = "default_hosts_file")]
    pub hosts_file: String,
}

fn default_hosts_file() -> String {
    "/etc/hosts".into()
}

impl Default for FrontEndConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            name: None,
            address: None,
            hosts_file: default_hosts_file(),
        }
    }
}

impl FrontEndConfig {
    /// Reports every bad field under `field` (e.g. `promote.front_end`).
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        if !self.hosts_file.starts_with('/') || self.hosts_file.len() < 2 {
            problems.push(
                format!("{field}.hosts_file"),
                "must be an absolute path other than /",
            );
        }
        if let Some(name) = &self.name {
            if !is_host_name(name) {
                problems.push(
                    format!("{field}.name"),
                    "must be a host name (letters, digits, `-` and `.`), without a port",
                );
            }
        }
        match &self.address {
            Some(address) if address.parse::<IpAddr>().is_err() => problems.push(
                format!("{field}.address"),
                "must be an IP address (the secondary's API load balancer or control-plane node)",
            ),
            None if self.enabled => problems.push(
                format!("{field}.address"),
                "required with enabled = true: the IP address the front-end name must lead to in this region",
            ),
            _ => {}
        }
    }
}

/// A DNS-style host name: what may stand in a hosts file line.
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// The line the step writes.
pub fn alias_line(address: &str, name: &str) -> String {
    format!("{address} {name} {HOSTS_MARK}")
}

/// Writes the marked lines (`lines`, first in the file, so that they win over any later line
/// for the same name) into `file` in place of every marked line there, and prints the marked
/// lines it replaced with their line numbers (`was\t<n>:…`) and what `name` resolves to
/// afterwards (`resolves\t…`). The file is rewritten in place, not renamed: `/etc/hosts` is
/// often a bind mount (containers), which a rename cannot replace. Every other line stays as it
/// was.
const REPLACE_SCRIPT: &str = r#"file=$1
mark=$2
name=$3
shift 3
if [ ! -r "$file" ] || [ ! -w "$file" ]; then echo "cannot read and write $file" >&2; exit 1; fi
grep -n -F -e "$mark" -- "$file" | while IFS= read -r line; do printf 'was\t%s\n' "$line"; done
tmp=$(mktemp) || exit 1
status=0
{ for line do printf '%s\n' "$line"; done; grep -v -F -e "$mark" -- "$file"; } > "$tmp" || status=$?
if [ "$status" -gt 1 ]; then rm -f "$tmp"; echo "cannot read $file" >&2; exit 1; fi
if ! cat "$tmp" > "$file"; then rm -f "$tmp"; echo "cannot write $file" >&2; exit 1; fi
rm -f "$tmp"
if [ -n "$name" ]; then
    printf 'resolves\t%s\n' "$(getent hosts "$name" 2>/dev/null | awk '{print $1}' | tr '\n' ' ')"
fi"#;

/// Removes every marked line of `file` and puts the given ones (`<n>` `<line>` pairs) back at
/// their line numbers, in place like [`REPLACE_SCRIPT`]: after a replacement, the file as it
/// was. awk takes the pairs from its arguments (no escape processing there).
const RESTORE_SCRIPT: &str = r#"file=$1
if [ ! -r "$file" ] || [ ! -w "$file" ]; then echo "cannot read and write $file" >&2; exit 1; fi
tmp=$(mktemp) || exit 1
if ! awk 'BEGIN {
    mark = ARGV[2]
    last = 0
    for (i = 3; i + 1 < ARGC; i += 2) {
        at[ARGV[i] + 0] = ARGV[i + 1]
        if (ARGV[i] + 0 > last) last = ARGV[i] + 0
    }
    ARGC = 2
    out = 0
}
index($0, mark) { next }
{
    while ((out + 1) in at) { out++; print at[out] }
    out++
    print
}
END {
    for (n = out + 1; n <= last; n++) if (n in at) print at[n]
}' "$@" > "$tmp"; then rm -f "$tmp"; echo "cannot read $file" >&2; exit 1; fi
if ! cat "$tmp" > "$file"; then rm -f "$tmp"; echo "cannot write $file" >&2; exit 1; fi
rm -f "$tmp""#;

/// A marked line as it stood in a hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedLine {
    /// Its line number (1 for the first line).
    pub number: usize,
    /// The line.
    pub text: String,
}

/// What a replacement found and left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostsReplaced {
    /// The marked lines the file held before, where they were.
    pub previous: Vec<MarkedLine>,
    /// What the name resolves to on the node afterwards (`getent hosts`), in order.
    pub resolves_to: Vec<String>,
}

/// Puts `lines` (each carrying [`HOSTS_MARK`]) in place of the marked lines of `hosts_file`
/// on `node`; `name` (when given) is resolved afterwards.
pub async fn replace_marked_lines(
    node: &Node,
    hosts_file: &str,
    name: Option<&str>,
    lines: &[String],
    cancel: &CancellationToken,
) -> Result<HostsReplaced, NodeError> {
    let mut argv = vec![
        "sh".to_string(),
        "-c".into(),
        REPLACE_SCRIPT.into(),
        "sh".into(),
        hosts_file.into(),
        HOSTS_MARK.into(),
        name.unwrap_or_default().into(),
    ];
    argv.extend(lines.iter().cloned());
    let output = node
        .command(argv)
        .label(format!("alias in {hosts_file}"))
        .run(cancel)
        .await?;
    let mut replaced = HostsReplaced::default();
    for line in output.stdout_text().lines() {
        match line.split_once('\t') {
            Some(("was", old)) => {
                if let Some((number, text)) = old.split_once(':') {
                    if let Ok(number) = number.parse() {
                        replaced.previous.push(MarkedLine {
                            number,
                            text: text.to_string(),
                        });
                    }
                }
            }
            Some(("resolves", addresses)) => {
                replaced.resolves_to = addresses.split_whitespace().map(str::to_string).collect()
            }
            _ => {}
        }
    }
    Ok(replaced)
}

/// Puts `hosts_file` on `node` back as a replacement found it: every marked line removed, the
/// `previous` ones back at their own line numbers.
pub async fn restore_marked_lines(
    node: &Node,
    hosts_file: &str,
    previous: &[MarkedLine],
    cancel: &CancellationToken,
) -> Result<(), NodeError> {
    let mut argv = vec![
        "sh".to_string(),
        "-c".into(),
        RESTORE_SCRIPT.into(),
        "sh".into(),
        hosts_file.into(),
        HOSTS_MARK.into(),
    ];
    for line in previous {
        argv.push(line.number.to_string());
        argv.push(line.text.clone());
    }
    node.command(argv)
        .label(format!("alias in {hosts_file} put back"))
        .run(cancel)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use etcd_dr_nodes::{LocalExecutor, NodeRole};

    use super::*;

    #[test]
    fn validates_the_section() {
        let mut problems = ConfigProblems::default();
        FrontEndConfig {
            enabled: true,
            name: Some("k8s-api:6443".into()),
            hosts_file: "etc/hosts".into(),
            ..FrontEndConfig::default()
        }
        .validate("promote.front_end", &mut problems);
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "promote.front_end.hosts_file",
                "promote.front_end.name",
                "promote.front_end.address"
            ]
        );
        let mut problems = ConfigProblems::default();
        FrontEndConfig {
            enabled: true,
            address: Some("fd00::10".into()),
            ..FrontEndConfig::default()
        }
        .validate("promote.front_end", &mut problems);
        assert!(problems.is_empty(), "{problems}");
    }

    #[tokio::test]
    async fn replaces_its_own_line_and_puts_the_old_one_back() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        let original = format!(
            "127.0.0.1 localhost\n10.0.0.1 k8s-api {HOSTS_MARK}\n# a comment\n10.9.9.9 other\n"
        );
        std::fs::write(&hosts, &original).unwrap();
        let file = hosts.to_str().unwrap();
        let node = Node::new(NodeRole::Worker, Arc::new(LocalExecutor::new("w1")));
        let cancel = CancellationToken::new();
        let line = alias_line("10.1.0.10", "k8s-api");
        let first = replace_marked_lines(&node, file, None, std::slice::from_ref(&line), &cancel)
            .await
            .unwrap();
        assert_eq!(
            first.previous,
            [MarkedLine {
                number: 2,
                text: format!("10.0.0.1 k8s-api {HOSTS_MARK}")
            }]
        );
        let expected = format!("{line}\n127.0.0.1 localhost\n# a comment\n10.9.9.9 other\n");
        assert_eq!(std::fs::read_to_string(&hosts).unwrap(), expected);
        // Again: replaced, not duplicated.
        let second = replace_marked_lines(&node, file, None, std::slice::from_ref(&line), &cancel)
            .await
            .unwrap();
        assert_eq!(
            second.previous,
            [MarkedLine {
                number: 1,
                text: line
            }]
        );
        assert_eq!(std::fs::read_to_string(&hosts).unwrap(), expected);
        // Put back: the old marked line where it was, the file byte for byte.
        restore_marked_lines(&node, file, &first.previous, &cancel)
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&hosts).unwrap(), original);
        let error = restore_marked_lines(&node, "/nonexistent/hosts", &[], &cancel)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("cannot read and write"),
            "{error}"
        );
        let error = replace_marked_lines(&node, "/nonexistent/hosts", None, &[], &cancel)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("cannot read and write"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn puts_several_marked_lines_back_where_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        let node = Node::new(NodeRole::Worker, Arc::new(LocalExecutor::new("w1")));
        let cancel = CancellationToken::new();
        let file = hosts.to_str().unwrap();
        let line = alias_line("10.1.0.10", "k8s-api");
        for original in [
            // In the middle and last.
            format!("127.0.0.1 localhost\n10.0.0.1 k8s-api {HOSTS_MARK}\n10.9.9.9 other\n10.0.0.2 k8s-api2 {HOSTS_MARK}\n"),
            // Two in a row, with `\t` and `$HOME` that neither awk nor sh may expand.
            format!("# c\n10.0.0.1 a\\tb $HOME {HOSTS_MARK}\n10.0.0.3 c {HOSTS_MARK}\n# d\n"),
            // None at all: the step's line goes, nothing comes back.
            "127.0.0.1 localhost\n".to_string(),
        ] {
            std::fs::write(&hosts, &original).unwrap();
            let replaced =
                replace_marked_lines(&node, file, None, std::slice::from_ref(&line), &cancel)
                    .await
                    .unwrap();
            assert!(std::fs::read_to_string(&hosts).unwrap().starts_with(&line));
            restore_marked_lines(&node, file, &replaced.previous, &cancel)
                .await
                .unwrap();
            assert_eq!(std::fs::read_to_string(&hosts).unwrap(), original);
        }
    }
}
