//! The secondary's nodes as they are, for preflight's shape checks: kubeadm's
//! `kubeadm-flags.env` (the container runtime endpoint), kubelet's and the runtime's versions
//! where the tools are on the PATH, and what the API front-end name resolves to. One command per
//! node; it changes nothing.

use etcd_dr_cluster_shape::{parse_kubeadm_flags, NodeShape};
use etcd_dr_nodes::{Node, NodeError, NodeRole};
use tokio_util::sync::CancellationToken;

use crate::EtcdPod;

const SCRIPT: &str = r#"flags=$1
name=$2
if [ -r "$flags" ]; then
    printf 'flags\t%s\n' "$(tr '\n' ' ' < "$flags")"
fi
if command -v kubelet >/dev/null 2>&1; then
    printf 'kubelet\t%s\n' "$(kubelet --version 2>/dev/null | head -n 1)"
fi
for runtime in containerd crio; do
    if command -v "$runtime" >/dev/null 2>&1; then
        printf 'runtime\t%s\n' "$("$runtime" --version 2>/dev/null | head -n 1)"
    fi
done
if [ -n "$name" ]; then
    printf 'resolves\t%s\n' "$(getent hosts "$name" 2>/dev/null | awk '{print $1}' | tr '\n' ' ')"
fi"#;

/// Reads `node`'s shape: `kubeadm_flags_file`, `kubelet --version`, the runtime's version,
/// what `front_end_name` resolves to (when given); the etcd image and data dir come from its
/// static pod (`pod`, read by the preflight already).
pub async fn read_node_shape(
    node: &Node,
    kubeadm_flags_file: &str,
    front_end_name: Option<&str>,
    pod: Option<&EtcdPod>,
    cancel: &CancellationToken,
) -> Result<NodeShape, NodeError> {
    let output = node
        .command([
            "sh".to_string(),
            "-c".into(),
            SCRIPT.into(),
            "sh".into(),
            kubeadm_flags_file.into(),
            front_end_name.unwrap_or_default().into(),
        ])
        .label("preflight shape")
        .run(cancel)
        .await?;
    let mut shape = NodeShape {
        node: node.name().to_string(),
        control_plane: node.role() == NodeRole::ControlPlane,
        etcd_image: pod.and_then(|p| p.image.clone()),
        etcd_data_dir: pod.and_then(|p| p.data_dir.clone()),
        ..NodeShape::default()
    };
    for line in output.stdout_text().lines() {
        let (key, value) = line.split_once('\t').unwrap_or((line, ""));
        match key {
            "flags" => shape.runtime_endpoint = parse_kubeadm_flags(value),
            // `Kubernetes v1.34.4`
            "kubelet" => {
                shape.kubelet_version = value
                    .split_whitespace()
                    .find(|w| w.starts_with('v'))
                    .map(str::to_string)
            }
            "runtime" if !value.trim().is_empty() => {
                shape.runtime_version = Some(value.trim().to_string())
            }
            "resolves" => {
                shape.front_end_addresses =
                    Some(value.split_whitespace().map(str::to_string).collect())
            }
            _ => {}
        }
    }
    Ok(shape)
}

/// One line for the preflight's node detail: what was read.
pub fn describe_node_shape(shape: &NodeShape) -> String {
    let mut parts = Vec::new();
    if let Some(endpoint) = &shape.runtime_endpoint {
        parts.push(format!("runtime endpoint {endpoint}"));
    }
    if let Some(version) = &shape.runtime_version {
        parts.push(version.clone());
    }
    if let Some(version) = &shape.kubelet_version {
        parts.push(format!("kubelet {version}"));
    }
    if let Some(image) = &shape.etcd_image {
        parts.push(format!("etcd image {image}"));
    }
    match &shape.front_end_addresses {
        Some(addresses) if addresses.is_empty() => parts.push("front end unresolved".into()),
        Some(addresses) => parts.push(format!("front end → {}", addresses.join(" "))),
        None => {}
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use etcd_dr_nodes::LocalExecutor;

    use super::*;

    #[tokio::test]
    async fn reads_the_flags_and_resolves_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let flags = dir.path().join("kubeadm-flags.env");
        std::fs::write(
            &flags,
            "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/crio/crio.sock --node-ip=10.0.0.1\"\n",
        )
        .unwrap();
        let node = Node::new(NodeRole::Worker, Arc::new(LocalExecutor::new("w1")));
        let shape = read_node_shape(
            &node,
            flags.to_str().unwrap(),
            Some("localhost"),
            None,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(
            shape.runtime_endpoint.as_deref(),
            Some("unix:///var/run/crio/crio.sock")
        );
        assert!(!shape.control_plane);
        let addresses = shape.front_end_addresses.clone().unwrap();
        assert!(
            addresses.iter().any(|a| a == "127.0.0.1" || a == "::1"),
            "{addresses:?}"
        );
        assert!(describe_node_shape(&shape).contains("crio.sock"));
    }
}
