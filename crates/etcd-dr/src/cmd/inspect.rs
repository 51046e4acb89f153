//! `etcd-dr inspect`: what a stored snapshot holds — the Kubernetes cluster it records and its
//! objects per resource and namespace — read from the snapshot itself, without etcd.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context;
use etcd_dr_cluster_shape::{read_snapshot_contents, SnapshotContents, DEFAULT_KUBERNETES_PREFIX};
use etcd_dr_core::{ClusterShape, SnapshotManifest};
use etcd_dr_transport::{read_snapshot, resolve_snapshot, SnapshotSelector};
use serde::Serialize;

use super::{human_bytes, manifest_trust, open_store, shutdown_token};
use crate::settings::Settings;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id, or `latest`.
    #[arg(default_value = "latest")]
    snapshot: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The key prefix kube-apiserver stores objects under (its `--etcd-prefix`).
    #[arg(long, default_value = DEFAULT_KUBERNETES_PREFIX)]
    prefix: String,
}

/// The JSON `inspect --json` prints.
#[derive(Serialize)]
struct Inspection<'a> {
    id: String,
    cluster: &'a str,
    /// The shape recorded in the manifest when the snapshot was taken (read from the live etcd).
    recorded: Option<&'a ClusterShape>,
    /// What the snapshot file itself holds.
    contents: &'a SnapshotContents,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let selector: SnapshotSelector = args.snapshot.parse()?;
    let (store, layout) = open_store(settings)?;
    let cancel = shutdown_token();
    let manifest = resolve_snapshot(
        &store,
        &layout,
        &manifest_trust(settings)?,
        &selector,
        &cancel,
    )
    .await?;
    let identities = settings.identities()?;

    // The plain database only lives in a private temporary directory (0700, file 0600), gone
    // when this returns: it holds every Secret of the cluster.
    let dir = tempfile::Builder::new()
        .prefix("etcd-dr-inspect-")
        .tempdir()
        .context("creating a private temporary directory")?;
    let path = dir.path().join(format!("{}.db", manifest.id));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating `{}`", path.display()))?;
    let (_, mut writer) = read_snapshot(
        &store,
        &layout,
        &manifest,
        &identities,
        std::io::BufWriter::with_capacity(1 << 20, file),
        &cancel,
    )
    .await
    .with_context(|| format!("reading snapshot {}", manifest.id))?;
    writer.flush()?;
    drop(writer);

    let prefix = args.prefix.clone();
    let db = path.clone();
    let contents = tokio::task::spawn_blocking(move || read_snapshot_contents(&db, &prefix))
        .await
        .context("the snapshot reader panicked")?
        .with_context(|| format!("reading the etcd database of snapshot {}", manifest.id))?;

    if args.json {
        let inspection = Inspection {
            id: manifest.id.to_string(),
            cluster: &manifest.cluster,
            recorded: manifest.kubernetes.as_ref(),
            contents: &contents,
        };
        println!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        print!("{}", render(&manifest, &contents));
    }
    Ok(())
}

/// The text report. Every string from the store or the snapshot is escaped first: a name with
/// control characters must not rewrite the operator's terminal.
fn render(manifest: &SnapshotManifest, contents: &SnapshotContents) -> String {
    let mut out = String::new();
    let line = |out: &mut String, text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(
        &mut out,
        format!(
            "snapshot {} of cluster {}: revision {}, {} keys, {} revisions stored, {} plain",
            manifest.id,
            printable(&manifest.cluster),
            contents.revision,
            contents.keys,
            contents.revisions_stored,
            human_bytes(manifest.raw.size)
        ),
    );
    match &contents.kubernetes {
        None => line(
            &mut out,
            "no Kubernetes objects under the prefix (not a Kubernetes etcd, or another --prefix)"
                .into(),
        ),
        Some(shape) => render_shape(&mut out, shape),
    }
    if manifest.kubernetes.is_some() && manifest.kubernetes != contents.kubernetes {
        line(
            &mut out,
            "note: the manifest's recorded shape differs from the file's (the cluster changed between the snapshot and the reading; the file is what a restore brings back)".into(),
        );
    }
    let resources = &contents.objects.resources;
    line(
        &mut out,
        format!(
            "objects: {} in {} resources{}",
            contents.objects.total,
            resources.len(),
            if contents.objects.other_keys > 0 {
                format!(", {} keys outside the prefix", contents.objects.other_keys)
            } else {
                String::new()
            }
        ),
    );
    let width = resources
        .keys()
        .map(|name| printable(name).len())
        .max()
        .unwrap_or(8)
        .max(8);
    line(
        &mut out,
        format!("  {:<width$}  {:>7}  namespaces", "resource", "objects"),
    );
    for (name, count) in resources {
        let namespaces: Vec<String> = count
            .namespaces
            .iter()
            .map(|(namespace, n)| format!("{}={n}", printable(namespace)))
            .collect();
        line(
            &mut out,
            format!(
                "  {:<width$}  {:>7}  {}",
                printable(name),
                count.total,
                if namespaces.is_empty() {
                    "-".to_string()
                } else {
                    namespaces.join(" ")
                }
            ),
        );
    }
    out
}

fn render_shape(out: &mut String, shape: &ClusterShape) {
    let opt = |value: &Option<String>| value.as_deref().map(printable).unwrap_or("-".into());
    out.push_str(&format!("Kubernetes {}", opt(&shape.kubernetes_version)));
    if let Some(kubeadm) = &shape.kubeadm {
        out.push_str(&format!(
            ", endpoint {}, pods {}, services {}, DNS domain {}\netcd image {}, data dir {}",
            opt(&kubeadm.control_plane_endpoint),
            opt(&kubeadm.pod_subnet),
            opt(&kubeadm.service_subnet),
            opt(&kubeadm.dns_domain),
            opt(&kubeadm.etcd_image),
            opt(&kubeadm.etcd_data_dir),
        ));
        if !kubeadm.api_server_cert_sans.is_empty() {
            let sans: Vec<String> = kubeadm
                .api_server_cert_sans
                .iter()
                .map(|s| printable(s))
                .collect();
            out.push_str(&format!(", API certificate SANs {}", sans.join(" ")));
        }
    }
    out.push('\n');
    out.push_str(&format!("nodes: {}\n", shape.nodes.len()));
    for node in &shape.nodes {
        let roles: Vec<String> = node.roles.iter().map(|r| printable(r)).collect();
        out.push_str(&format!(
            "  {}  {}  kubelet {}  runtime {}  ready {}\n",
            printable(&node.name),
            if roles.is_empty() {
                "worker".to_string()
            } else {
                roles.join(",")
            },
            opt(&node.kubelet_version),
            opt(&node.container_runtime_version),
            opt(&node.ready),
        ));
    }
    for cni in &shape.cni {
        let images: Vec<String> = cni.images.iter().map(|i| printable(i)).collect();
        out.push_str(&format!(
            "network plugin: {} ({})\n",
            printable(&cni.name),
            images.join(", ")
        ));
    }
    for problem in &shape.unreadable {
        out.push_str(&format!("unreadable: {}\n", printable(problem)));
    }
}

/// `text` with every control character escaped (`\u{1b}` for ESC), so it prints as one inert
/// line whatever the snapshot holds.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("cp1"), "cp1");
        assert_eq!(printable("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
    }
}
