//! The secondary's nodes as they are, for preflight's shape checks: kubeadm's
//! `kubeadm-flags.env` (the container runtime endpoint), kubelet's and the runtime's versions
//! where the tools are on the PATH, what the API front-end name resolves to, and on control-plane
//! nodes kube-apiserver's serving certificate (its names, read here, not on the node: no tool
//! needed there). One command per node; it changes nothing.

use etcd_dr_cluster_shape::{
    certificate_sans, parse_kubeadm_flags, ApiServerCert, CertRead, NodeShape,
};
use etcd_dr_nodes::{Node, NodeError, NodeRole};
use tokio_util::sync::CancellationToken;

use crate::EtcdPod;

const SCRIPT: &str = r#"flags=$1
name=$2
cert=$3
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
fi
if [ -n "$cert" ]; then
    if [ ! -e "$cert" ]; then
        printf 'cert-missing\t\n'
    elif [ ! -r "$cert" ]; then
        printf 'cert-unreadable\tnot readable by %s\n' "$(id -un 2>/dev/null)"
    else
        while IFS= read -r line || [ -n "$line" ]; do printf 'cert\t%s\n' "$line"; done < "$cert"
    fi
fi"#;

/// Reads `node`'s shape: `kubeadm_flags_file`, `kubelet --version`, the runtime's version,
/// what `front_end_name` resolves to (when given), the SANs of the certificate at
/// `api_server_cert` (when given: a control-plane node's `pki/apiserver.crt`); the etcd image
/// and data dir come from its static pod (`pod`, read by the preflight already).
pub async fn read_node_shape(
    node: &Node,
    kubeadm_flags_file: &str,
    front_end_name: Option<&str>,
    api_server_cert: Option<&str>,
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
            api_server_cert.unwrap_or_default().into(),
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
    let mut cert_pem = String::new();
    let mut cert_read = None;
    for line in output.stdout_text().lines() {
        let (key, value) = line.split_once('\t').unwrap_or((line, ""));
        match key {
            "cert" => {
                cert_pem.push_str(value);
                cert_pem.push('\n');
            }
            "cert-missing" => cert_read = Some(CertRead::Missing),
            "cert-unreadable" => cert_read = Some(CertRead::Unreadable(value.to_string())),
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
    if let Some(path) = api_server_cert {
        let read = cert_read.unwrap_or_else(|| match certificate_sans(cert_pem.as_bytes()) {
            Ok(sans) => CertRead::Sans(sans),
            Err(error) => CertRead::Unreadable(error.to_string()),
        });
        shape.api_server_cert = Some(ApiServerCert {
            path: path.to_string(),
            read,
        });
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
    match shape.api_server_cert.as_ref().map(|c| &c.read) {
        Some(CertRead::Sans(sans)) => parts.push(format!("apiserver.crt names {}", sans.join(" "))),
        Some(CertRead::Missing) => parts.push("no apiserver.crt".into()),
        Some(CertRead::Unreadable(_)) => parts.push("apiserver.crt unreadable".into()),
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
        assert_eq!(shape.api_server_cert, None);
    }

    #[tokio::test]
    async fn reads_the_api_server_certificate_or_says_it_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("apiserver.crt");
        std::fs::write(
            &cert,
            include_str!("../../cluster-shape/tests/fixtures/apiserver.crt"),
        )
        .unwrap();
        let node = Node::new(NodeRole::ControlPlane, Arc::new(LocalExecutor::new("cp1")));
        let read = |path: std::path::PathBuf| {
            let node = node.clone();
            async move {
                let path = path.display().to_string();
                read_node_shape(
                    &node,
                    "/nonexistent/kubeadm-flags.env",
                    None,
                    Some(&path),
                    None,
                    &CancellationToken::new(),
                )
                .await
                .unwrap()
                .api_server_cert
                .unwrap()
            }
        };
        let found = read(cert.clone()).await;
        assert_eq!(found.path, cert.display().to_string());
        let CertRead::Sans(sans) = found.read else {
            panic!("{found:?}");
        };
        assert!(sans.iter().any(|s| s == "*.api.example"), "{sans:?}");
        assert_eq!(
            read(dir.path().join("gone.crt")).await.read,
            CertRead::Missing
        );
        std::fs::write(&cert, "apiserver cert of cp1\n").unwrap();
        assert!(matches!(read(cert).await.read, CertRead::Unreadable(_)));
    }
}
