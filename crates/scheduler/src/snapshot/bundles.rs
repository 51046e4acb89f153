//! The control-plane node bundles taken with a snapshot: each node's tar streamed into the
//! snapshot's folder, all nodes at once.

use etcd_dr_core::{NodeBundle, SnapshotId};
use etcd_dr_nodes::{BundleConfig, Node, NodeError, NodeRole, TarScanner, UnreachablePolicy};
use etcd_dr_transport::{
    upload_object, AttemptToken, ShipProgress, SnapshotLayout, TransportError,
};
use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;

use super::{BundlePlan, SnapshotContext, SnapshotError};
use crate::ClusterSurvey;

impl SnapshotContext {
    /// Streams every control-plane node's bundle into the snapshot's folder, all nodes at once.
    /// A node that cannot be reached fails the set, or, with `on_unreachable = "warn"`, is
    /// marked missing.
    pub(super) async fn take_bundles(
        &self,
        plan: &BundlePlan,
        survey: &ClusterSurvey,
        id: &SnapshotId,
        attempt: &AttemptToken,
        cancel: &CancellationToken,
    ) -> Result<Vec<NodeBundle>, SnapshotError> {
        let nodes = bundle_nodes(plan, survey);
        if nodes.is_empty() {
            return Err(SnapshotError::NoNodes);
        }
        // The first failure stops the other nodes' uploads (each aborts its own multipart
        // upload); dropping them instead would leave orphan parts behind.
        let stop = cancel.child_token();
        let taken = futures::future::join_all(nodes.iter().map(|node| async {
            let taken = self
                .take_bundle(&plan.bundle, node, id, attempt, &stop)
                .await;
            if taken.is_err() {
                stop.cancel();
            }
            taken
        }))
        .await;
        let mut bundles = Vec::with_capacity(taken.len());
        let mut failures = Vec::new();
        for result in taken {
            match result {
                Ok(bundle) => bundles.push(bundle),
                Err(error) => failures.push(error),
            }
        }
        match failure_to_report(failures) {
            Some(_) if cancel.is_cancelled() => Err(SnapshotError::Cancelled),
            Some(error) => Err(error),
            None => Ok(bundles),
        }
    }

    async fn take_bundle(
        &self,
        bundle: &BundleConfig,
        node: &Node,
        id: &SnapshotId,
        attempt: &AttemptToken,
        cancel: &CancellationToken,
    ) -> Result<NodeBundle, SnapshotError> {
        let name = attempt.object_name(
            &self
                .upload
                .stored_name(&SnapshotLayout::node_bundle_name(node.name())),
        );
        let mut scanner = TarScanner::new();
        let tar = bundle
            .stream_bundle(node, cancel)
            .inspect_ok(|chunk| scanner.update(chunk));
        let uploaded = upload_object(
            &self.store,
            &self.layout.object_path(id, &name),
            &name,
            tar,
            &self.upload,
            &ShipProgress::default(),
            cancel,
        )
        .await;
        let fail = |source| SnapshotError::Bundle {
            node: node.name().to_string(),
            source,
        };
        let uploaded = match uploaded {
            Ok(uploaded) => uploaded,
            Err(TransportError::Source { source, bytes_read }) => {
                let error = match source.downcast::<NodeError>() {
                    Ok(error) => *error,
                    Err(source) => {
                        return Err(fail(TransportError::Source { source, bytes_read }));
                    }
                };
                if error.is_unreachable() && bundle.on_unreachable == UnreachablePolicy::Warn {
                    tracing::warn!(node = node.name(), %error, "node unreachable; its bundle is marked missing");
                    return Ok(NodeBundle::Missing {
                        node: node.name().to_string(),
                        reason: error.to_string(),
                    });
                }
                return Err(SnapshotError::Node(error));
            }
            Err(error) => return Err(fail(error)),
        };
        let summary = scanner.finish();
        if !summary.complete {
            return Err(fail(TransportError::Pipeline(
                "the tar stream ended without its end-of-archive marker".into(),
            )));
        }
        if summary.service_account_keys.is_empty() {
            tracing::warn!(
                node = node.name(),
                "the bundle holds no service-account key (sa.key, sa.pub)"
            );
        }
        tracing::info!(
            node = node.name(),
            entries = summary.entries,
            stored_bytes = uploaded.stored.size,
            "node bundle stored"
        );
        Ok(NodeBundle::Stored {
            node: node.name().to_string(),
            object: uploaded.stored,
            raw: uploaded.raw,
            entries: summary.entries,
            service_account_keys: summary.service_account_keys,
        })
    }
}

/// The nodes to take bundles from: the configured control plane, else the etcd members named
/// like hosts (kubeadm names members after their node), each once, in name order.
fn bundle_nodes(plan: &BundlePlan, survey: &ClusterSurvey) -> Vec<Node> {
    if !plan.nodes.control_plane.is_empty() {
        return plan.nodes.control_plane_nodes();
    }
    let mut names: Vec<&str> = survey
        .members
        .iter()
        .map(|m| m.name.as_str())
        .filter(|name| etcd_dr_nodes::is_valid_node_name(name))
        .collect();
    names.sort_unstable();
    names.dedup();
    plan.nodes.nodes_named(&names, NodeRole::ControlPlane)
}

/// Of the bundles' failures (in node order), the one to report: the first node that failed,
/// not one stopped because of it.
fn failure_to_report(failures: Vec<SnapshotError>) -> Option<SnapshotError> {
    let mut reported: Option<SnapshotError> = None;
    for error in failures {
        match &reported {
            Some(first) if !first.is_cancellation() => {}
            _ => reported = Some(error),
        }
    }
    reported
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::manifest::tests::{member, survey};
    use etcd_dr_nodes::NodesConfig;

    fn plan(control_plane: &[&str]) -> BundlePlan {
        BundlePlan {
            bundle: BundleConfig::default(),
            nodes: NodesConfig {
                control_plane: control_plane.iter().map(|n| n.to_string()).collect(),
                ..NodesConfig::default()
            },
        }
    }

    fn names(nodes: &[Node]) -> Vec<&str> {
        nodes.iter().map(Node::name).collect()
    }

    fn stopped(node: &str) -> SnapshotError {
        SnapshotError::Bundle {
            node: node.into(),
            source: TransportError::Cancelled,
        }
    }

    fn failed(node: &str) -> SnapshotError {
        SnapshotError::Bundle {
            node: node.into(),
            source: TransportError::Pipeline("disk full".into()),
        }
    }

    #[test]
    fn configured_control_plane_nodes_win_over_the_member_list() {
        let mut survey = survey(vec![member("https://a:2379", 1, 1, 5)]);
        assert_eq!(
            names(&bundle_nodes(&plan(&["m2", "m1"]), &survey)),
            ["m2", "m1"]
        );
        survey.members[0].name = "etcd-a".into();
        assert_eq!(names(&bundle_nodes(&plan(&[]), &survey)), ["etcd-a"]);
    }

    #[test]
    fn member_names_are_sorted_deduplicated_and_checked() {
        let mut survey = survey(vec![
            member("https://a:2379", 1, 1, 5),
            member("https://b:2379", 2, 1, 5),
            member("https://c:2379", 3, 1, 5),
            member("https://d:2379", 4, 1, 5),
        ]);
        for (member, name) in survey
            .members
            .iter_mut()
            .zip(["cp2", "cp1", "cp2", "-o Proxy"])
        {
            member.name = name.into();
        }
        assert_eq!(names(&bundle_nodes(&plan(&[]), &survey)), ["cp1", "cp2"]);
        for member in &mut survey.members {
            member.name.clear();
        }
        assert!(bundle_nodes(&plan(&[]), &survey).is_empty());
    }

    #[test]
    fn the_node_that_failed_is_reported_not_the_ones_it_stopped() {
        assert!(failure_to_report(Vec::new()).is_none());
        let error = failure_to_report(vec![stopped("cp2"), failed("cp3"), stopped("cp4")]).unwrap();
        assert!(
            matches!(&error, SnapshotError::Bundle { node, .. } if node == "cp3"),
            "{error}"
        );
        let error = failure_to_report(vec![failed("cp1"), failed("cp2")]).unwrap();
        assert!(
            matches!(&error, SnapshotError::Bundle { node, .. } if node == "cp1"),
            "{error}"
        );
        let error = failure_to_report(vec![stopped("cp1")]).unwrap();
        assert!(error.is_cancellation(), "{error}");
    }
}
