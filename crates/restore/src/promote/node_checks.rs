//! Preflight's look at the secondary's nodes themselves (control plane and workers, over their
//! executors): runtime endpoint, kubelet version, etcd static pod, what the API front-end name
//! resolves to, the names kube-apiserver's certificate is valid for, each compared with the
//! snapshot's recorded shape; and whether the front-end step can run.

use etcd_dr_cluster_shape::{
    compare_configured_nodes, compare_node, front_end_host, CheckSeverity, ShapeDifference,
};
use etcd_dr_core::{SnapshotManifest, StepName};
use etcd_dr_nodes::Node;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::promoter::Promoter;
use crate::{describe_node_shape, is_host_name, read_node_shape, NodeFacts, PromotionTracker};

impl Promoter {
    /// The name the front-end step points (configured, else the host of the snapshot's
    /// `controlPlaneEndpoint`), if it is a host name.
    pub(super) fn front_end_name(&self, manifest: &SnapshotManifest) -> Option<String> {
        let name = match &self.config.front_end.name {
            Some(name) => name.clone(),
            None => {
                let endpoint = manifest
                    .kubernetes
                    .as_ref()?
                    .kubeadm
                    .as_ref()?
                    .control_plane_endpoint
                    .as_deref()?;
                front_end_host(endpoint).to_string()
            }
        };
        // Text from the store: only a plain host name goes into a hosts file or a command.
        is_host_name(&name).then_some(name)
    }

    /// Every node (control plane, then workers).
    pub(super) fn every_node(&self) -> impl Iterator<Item = &Node> {
        self.control_plane.iter().chain(self.workers.iter())
    }

    /// Judges the configured node names against the snapshot's Nodes, reads every node's shape
    /// and judges it against the snapshot's; the front-end step's own requirements too. Not in
    /// place (same machines), and not for a snapshot that records no shape (preflight warns
    /// about that already).
    pub(super) async fn check_nodes(
        &self,
        manifest: &SnapshotManifest,
        facts: &[Result<NodeFacts, String>],
        in_place: bool,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> (Vec<String>, Vec<String>) {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let front_end = &self.config.front_end;
        let name = self.front_end_name(manifest);
        if front_end.enabled && name.is_none() {
            problems.push(format!(
                "[promote.front_end] is enabled but has no name, and snapshot {} records no usable controlPlaneEndpoint: set [promote.front_end] name",
                manifest.id
            ));
        }
        let Some(recorded) = manifest.kubernetes.as_ref().filter(|_| !in_place) else {
            return (problems, warnings);
        };
        let step = StepName::Preflight;
        let worker_names: Vec<&str> = self.workers.iter().map(Node::name).collect();
        // From the configuration alone: holds when the secondary's etcd is empty or silent.
        let control_plane_names: Vec<&str> = self.control_plane.iter().map(Node::name).collect();
        sort_differences(
            "configured nodes",
            compare_configured_nodes(
                recorded,
                &control_plane_names,
                &worker_names,
                &self.config.shape_checks,
            ),
            &mut problems,
            &mut warnings,
        );
        tracker.add_nodes(step, &worker_names);
        let shapes = join_all(self.every_node().map(|node| {
            let pod = facts
                .iter()
                .filter_map(|f| f.as_ref().ok())
                .find(|f| f.node == node.name())
                .and_then(|f| f.pod.as_ref().ok());
            let name = name.as_deref();
            let cert = (node.role() == etcd_dr_nodes::NodeRole::ControlPlane).then(|| {
                format!(
                    "{}/pki/apiserver.crt",
                    self.config.kubernetes_dir.trim_end_matches('/')
                )
            });
            async move {
                let shape = read_node_shape(
                    node,
                    &self.config.kubeadm_flags_file,
                    name,
                    cert.as_deref(),
                    pod,
                    cancel,
                )
                .await;
                if node.role() == etcd_dr_nodes::NodeRole::Worker {
                    match &shape {
                        Ok(shape) => {
                            tracker.node_done(step, node.name(), describe_node_shape(shape))
                        }
                        Err(error) => tracker.node_failed(step, node.name(), error),
                    }
                }
                (node.name(), shape)
            }
        }))
        .await;
        for (node, shape) in shapes {
            let shape = match shape {
                Ok(shape) => shape,
                Err(error) => {
                    warnings.push(format!(
                        "{node}: cannot read its runtime, kubelet and front-end resolution ({error}): not compared with the snapshot's"
                    ));
                    continue;
                }
            };
            tracing::info!(node, shape = %describe_node_shape(&shape), "node shape read");
            sort_differences(
                "node shape",
                compare_node(
                    recorded,
                    &manifest.etcd.version,
                    &shape,
                    &self.config.shape_checks,
                    front_end.enabled,
                    name.as_deref(),
                ),
                &mut problems,
                &mut warnings,
            );
        }
        (problems, warnings)
    }
}

/// Errors refuse (with the setting that would let them through), warnings are recorded.
pub(super) fn sort_differences(
    what: &str,
    differences: Vec<ShapeDifference>,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    for difference in differences {
        let text = format!("{what}, {}: {}", difference.check, difference.detail);
        match difference.severity {
            CheckSeverity::Error => problems.push(format!(
                "{text} (or set [promote.shape_checks] {} = \"warn\")",
                difference.check
            )),
            CheckSeverity::Warn => warnings.push(text),
            CheckSeverity::Off => {}
        }
    }
}
