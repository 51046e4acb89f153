//! The control-plane bundle: a tar of each control-plane node's Kubernetes files, streamed from
//! the node through its executor.

use etcd_dr_core::ConfigProblems;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::{Node, OutputStream};

/// `[bundle]`: which files of each control-plane node travel with every snapshot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleConfig {
    /// Take bundles (default: whenever control-plane nodes are configured).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Absolute paths, files or directories; `*`, `?` and `[...]` are expanded on the node.
    /// Paths that do not exist on a node are left out; a node with none of them fails.
    #[serde(default = "default_bundle_paths")]
    pub paths: Vec<String>,
    /// What an unreachable node does to the snapshot: `fail` (default) or `warn` (the manifest
    /// marks the node missing).
    #[serde(default)]
    pub on_unreachable: UnreachablePolicy,
    /// The GNU tar program on the nodes.
    #[serde(default = "default_tar_program")]
    pub tar_program: String,
}

/// What an unreachable node does to a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnreachablePolicy {
    /// The whole snapshot fails; nothing is committed.
    #[default]
    Fail,
    /// The snapshot is committed; the manifest marks the node missing.
    Warn,
}

/// kubeadm's control-plane files.
pub fn default_bundle_paths() -> Vec<String> {
    [
        "/etc/kubernetes/pki",
        "/etc/kubernetes/manifests",
        "/etc/kubernetes/*.conf",
        "/var/lib/kubelet/kubeadm-flags.env",
        "/var/lib/kubelet/config.yaml",
    ]
    .map(String::from)
    .to_vec()
}

fn default_tar_program() -> String {
    "tar".into()
}

impl Default for BundleConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            paths: default_bundle_paths(),
            on_unreachable: UnreachablePolicy::default(),
            tar_program: default_tar_program(),
        }
    }
}

impl BundleConfig {
    /// Whether bundles are taken, given whether control-plane nodes are configured.
    pub fn is_enabled(&self, nodes_configured: bool) -> bool {
        self.enabled.unwrap_or(nodes_configured)
    }

    /// Reports every bad field under `field` (e.g. `bundle`).
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        if self.paths.is_empty() {
            problems.push(
                format!("{field}.paths"),
                "must list at least one path (remove it for kubeadm's defaults)",
            );
        }
        for (i, path) in self.paths.iter().enumerate() {
            if !path.starts_with('/') || path.contains('\0') || path == "/" {
                problems.push(
                    format!("{field}.paths[{i}]"),
                    "must be an absolute path below /, e.g. \"/etc/kubernetes/pki\"",
                );
                continue;
            }
            if path.split('/').any(|part| part == "..") {
                problems.push(format!("{field}.paths[{i}]"), "must not contain `..`");
                continue;
            }
            // A path inside another would be packed twice and clash when unpacked.
            let trimmed = path.trim_end_matches('/');
            if let Some(outer) = self.paths.iter().find(|other| {
                let other = other.trim_end_matches('/');
                other != trimmed && trimmed.starts_with(&format!("{other}/"))
            }) {
                problems.push(
                    format!("{field}.paths[{i}]"),
                    format!("is inside `{outer}`, which is already bundled; remove one"),
                );
            } else if self.paths[..i]
                .iter()
                .any(|other| other.trim_end_matches('/') == trimmed)
            {
                problems.push(format!("{field}.paths[{i}]"), "is listed twice");
            }
        }
        if self.tar_program.is_empty() {
            problems.push(format!("{field}.tar_program"), "must name a program");
        }
    }

    /// The argv that writes the bundle as a tar to stdout on a node: `sh -c` expands the
    /// patterns there (they are passed as arguments, never pasted into the script), leaves out
    /// what does not exist, and runs `tar -C / -cf - --numeric-owner` so that modes and numeric
    /// owners are kept and member names are relative to `/`.
    pub fn tar_argv(&self) -> Vec<String> {
        const SCRIPT: &str = r#"tar_program=$1
shift
# No field splitting: patterns are only expanded as paths.
IFS=''
count=$#
for pattern do
    for path in $pattern; do
        if [ -e "$path" ] || [ -h "$path" ]; then
            set -- "$@" "${path#/}"
        fi
    done
done
shift "$count"
if [ "$#" -eq 0 ]; then
    echo "none of the bundle paths exist on this node" >&2
    exit 3
fi
exec "$tar_program" -C / -cf - --numeric-owner -- "$@""#;
        let mut argv = vec![
            "sh".to_string(),
            "-c".into(),
            SCRIPT.into(),
            "sh".into(),
            self.tar_program.clone(),
        ];
        argv.extend(self.paths.iter().cloned());
        argv
    }

    /// Starts streaming `node`'s bundle (a plain tar).
    pub fn stream_bundle(&self, node: &Node, cancel: &CancellationToken) -> OutputStream {
        node.command(self.tar_argv()).label("tar").stream(cancel)
    }
}

/// What a bundle's tar holds, seen as it streams by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarSummary {
    /// Entries (files, directories, links).
    pub entries: u64,
    /// Paths (inside the tar) of the service-account signing keys `sa.key` and `sa.pub`,
    /// sorted.
    pub service_account_keys: Vec<String>,
    /// True when the end-of-archive marker was seen.
    pub complete: bool,
}

/// Reads tar headers as the bytes go by, without buffering the archive: counts entries and
/// notes where the service-account keys are.
#[derive(Debug, Default)]
pub struct TarScanner {
    header: Vec<u8>,
    /// Data (and padding) bytes of the current entry still to pass.
    skip: u64,
    /// Data of a GNU long-name or pax entry being collected (bounded), and its padding.
    collect: Option<(u8, Vec<u8>, u64)>,
    long_name: Option<String>,
    summary: TarSummary,
    ended: bool,
}

const BLOCK: usize = 512;
const MAX_META: u64 = 64 * 1024;

impl TarScanner {
    /// A fresh scanner.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the archive.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.ended {
            if let Some((kind, buffer, remaining)) = &mut self.collect {
                let take = (*remaining).min(data.len() as u64) as usize;
                if (buffer.len() as u64) < MAX_META {
                    buffer.extend_from_slice(&data[..take]);
                }
                *remaining -= take as u64;
                data = &data[take..];
                if *remaining == 0 {
                    let (kind, buffer) = (*kind, std::mem::take(buffer));
                    self.collect = None;
                    self.long_name = long_name_from(kind, &buffer);
                }
                continue;
            }
            if self.skip > 0 {
                let take = self.skip.min(data.len() as u64) as usize;
                self.skip -= take as u64;
                data = &data[take..];
                continue;
            }
            let take = (BLOCK - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.header.len() == BLOCK {
                let header = std::mem::take(&mut self.header);
                self.on_header(&header);
            }
        }
    }

    fn on_header(&mut self, header: &[u8]) {
        if header.iter().all(|b| *b == 0) {
            self.ended = true;
            self.summary.complete = true;
            return;
        }
        let size = parse_size(&header[124..136]);
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        let kind = header[156];
        match kind {
            b'L' | b'x' => {
                let data_len = size.min(padded);
                self.collect = Some((kind, Vec::new(), data_len));
                self.skip = padded - data_len;
                return;
            }
            b'g' | b'K' => {
                self.skip = padded;
                return;
            }
            _ => {}
        }
        let path = self.long_name.take().unwrap_or_else(|| {
            let name = field_text(&header[0..100]);
            let prefix = if &header[257..262] == b"ustar" {
                field_text(&header[345..500])
            } else {
                String::new()
            };
            if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            }
        });
        self.summary.entries += 1;
        let file_name = path.rsplit('/').next().unwrap_or("");
        if matches!(kind, b'0' | 0) && matches!(file_name, "sa.key" | "sa.pub") {
            self.summary.service_account_keys.push(path);
        }
        // Links and directories carry no data, whatever their size field says.
        self.skip = if matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6') {
            0
        } else {
            padded
        };
    }

    /// What was seen (key paths sorted).
    pub fn finish(mut self) -> TarSummary {
        self.summary.service_account_keys.sort();
        self.summary
    }
}

fn field_text(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn parse_size(field: &[u8]) -> u64 {
    if field[0] & 0x80 != 0 {
        // GNU base-256 for sizes of 8 GiB and more.
        return field[1..]
            .iter()
            .fold(0u64, |n, b| n.wrapping_shl(8) | u64::from(*b));
    }
    let text = field_text(field);
    u64::from_str_radix(text.trim(), 8).unwrap_or(0)
}

fn long_name_from(kind: u8, data: &[u8]) -> Option<String> {
    match kind {
        b'L' => Some(field_text(data)),
        b'x' => {
            // pax records: "<len> key=value\n"
            let text = String::from_utf8_lossy(data);
            text.lines().find_map(|record| {
                let (_, pair) = record.split_once(' ')?;
                pair.strip_prefix("path=").map(str::to_string)
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{unpack_bundle, LocalExecutor, NodeRole, UnpackOptions};
    use futures::StreamExt;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::sync::Arc;

    #[test]
    fn default_paths_validate() {
        let mut problems = ConfigProblems::default();
        BundleConfig::default().validate("bundle", &mut problems);
        assert!(problems.is_empty(), "{problems}");
    }

    #[test]
    fn bad_paths_are_named() {
        let config = BundleConfig {
            paths: vec![
                "etc/kubernetes".into(),
                "/etc/kubernetes".into(),
                "/etc/kubernetes/pki".into(),
                "/a/../b".into(),
                "/etc/kubernetes/".into(),
            ],
            ..BundleConfig::default()
        };
        let mut problems = ConfigProblems::default();
        config.validate("bundle", &mut problems);
        let fields: Vec<_> = problems.iter().map(|p| p.field.clone()).collect();
        assert_eq!(
            fields,
            [
                "bundle.paths[0]",
                "bundle.paths[2]",
                "bundle.paths[3]",
                "bundle.paths[4]"
            ]
        );
    }

    fn write(path: &Path, content: &str, mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[tokio::test]
    async fn a_local_bundle_round_trips_with_globs_spaces_and_quotes() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("it's \"odd\" $HOME");
        write(&base.join("pki/sa.key"), "PRIVATE", 0o600);
        write(&base.join("pki/sa.pub"), "PUBLIC", 0o644);
        write(&base.join("pki/etcd/ca.crt"), "CA", 0o644);
        write(&base.join("admin.conf"), "admin", 0o600);
        write(&base.join("super admin.conf"), "super", 0o640);
        write(&base.join("other.txt"), "not matched", 0o644);
        let long_dir = base.join("d".repeat(120));
        write(&long_dir.join("sa.pub"), "LONG", 0o644);
        let b = base.display().to_string();
        let config = BundleConfig {
            paths: vec![
                format!("{b}/pki"),
                format!("{b}/*.conf"),
                format!("{b}/missing.env"),
                format!("{b}/nothing-*.yaml"),
                long_dir.display().to_string(),
            ],
            ..BundleConfig::default()
        };
        let node = Node::new(NodeRole::ControlPlane, Arc::new(LocalExecutor::new("cp1")));
        let cancel = CancellationToken::new();
        let mut stream = config.stream_bundle(&node, &cancel);
        let mut tar = Vec::new();
        let mut scanner = TarScanner::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            // Odd chunk sizes exercise the scanner's state machine.
            for piece in chunk.chunks(333) {
                scanner.update(piece);
            }
            tar.extend_from_slice(&chunk);
        }
        let seen = scanner.finish();
        assert!(seen.complete);

        let out = root.path().join("out");
        let unpacked = unpack_bundle("cp1", &tar[..], &out, UnpackOptions::default()).unwrap();
        assert_eq!(unpacked, seen);
        let inside = out.join(base.strip_prefix("/").unwrap());
        let relative = |p: &Path| p.strip_prefix("/").unwrap().display().to_string();
        let mut keys = seen.service_account_keys.clone();
        keys.sort();
        let mut want = vec![
            relative(&base.join("pki/sa.key")),
            relative(&base.join("pki/sa.pub")),
            relative(&long_dir.join("sa.pub")),
        ];
        want.sort();
        assert_eq!(keys, want);
        for (file, content, file_mode) in [
            ("pki/sa.key", "PRIVATE", 0o600),
            ("pki/sa.pub", "PUBLIC", 0o644),
            ("pki/etcd/ca.crt", "CA", 0o644),
            ("admin.conf", "admin", 0o600),
            ("super admin.conf", "super", 0o640),
        ] {
            let path = inside.join(file);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), content, "{file}");
            assert_eq!(mode(&path), file_mode, "{file}");
        }
        assert!(!inside.join("other.txt").exists());
        assert!(inside.join("d".repeat(120)).join("sa.pub").exists());

        // Never into an existing directory.
        let error = unpack_bundle("cp1", &tar[..], &out, UnpackOptions::default()).unwrap_err();
        assert!(error.to_string().contains("cp1"), "{error}");
    }

    #[tokio::test]
    async fn a_node_without_any_path_fails() {
        let config = BundleConfig {
            paths: vec!["/nonexistent/etcd-dr/*.conf".into()],
            ..BundleConfig::default()
        };
        let node = Node::new(NodeRole::ControlPlane, Arc::new(LocalExecutor::new("cp1")));
        let items: Vec<_> = config
            .stream_bundle(&node, &CancellationToken::new())
            .collect()
            .await;
        let error = items.last().unwrap().as_ref().unwrap_err();
        assert!(error.to_string().contains("none of the bundle paths exist"));
    }
}
