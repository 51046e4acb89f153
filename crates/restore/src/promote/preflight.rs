//! The preflight: every node checked at once (nothing changes), the service-account keys found,
//! and the plan judged.

use etcd_dr_cluster_shape::{compare_shapes, ShapeChecks};
use etcd_dr_core::ClusterShape;
use etcd_dr_core::{
    EtcdVersion, PromotionMode, PromotionPlan, RestoreTool, SnapshotManifest, StepName,
};
use etcd_dr_nodes::Node;
use etcd_dr_scheduler::SourceError;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::node_checks::sort_differences;
use super::promoter::Promoter;
use crate::{
    evaluate_preflight, gather_facts, service_account_keys_from_bundles, PreflightInputs,
    PromoteError, PromotionTracker, ServiceAccountKeys,
};

impl Promoter {
    /// `restored`: the revision and size of the `.db` to restore (the snapshot's own, or the
    /// replayed copy's with `at`).
    ///
    /// Gathers every node's facts and the secondary's revision, finds the service-account keys
    /// (configured, else from the snapshot's node bundles; none in place) and judges them all:
    /// the plan, or every problem at once.
    pub(super) async fn preflight(
        &self,
        id: &str,
        manifest: &SnapshotManifest,
        (restored_revision, restored_size): (i64, u64),
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> Result<(PromotionPlan, Option<ServiceAccountKeys>), PromoteError> {
        let step = StepName::Preflight;
        tracker.start(step, None);
        let names: Vec<&str> = self.control_plane.iter().map(Node::name).collect();
        tracker.add_nodes(step, &names);
        let tool = EtcdVersion::parse(&manifest.etcd.version)
            .map(|v| RestoreTool::for_version(&v, &self.config.etcdutl, &self.config.etcdctl))
            .unwrap_or_else(|| RestoreTool::Etcdutl(self.config.etcdutl.clone()));
        let facts = join_all(self.control_plane.iter().map(|node| async {
            tracker.node_start(step, node.name(), "checking");
            let facts = gather_facts(node, &self.config, tool.program(), cancel).await;
            match &facts {
                Ok(f) => tracker.node_done(
                    step,
                    node.name(),
                    format!(
                        "host {}, data dir {}, {} {}",
                        f.host_name,
                        f.data_dir.as_deref().unwrap_or("?"),
                        f.tool_path.as_deref().unwrap_or("no restore tool"),
                        f.tool_version.map(|v| v.to_string()).unwrap_or_default()
                    ),
                ),
                Err(e) => tracker.node_failed(step, node.name(), e),
            }
            // The judgement reads a node that could not be asked as its error's text.
            facts.map_err(|e| e.to_string())
        }));
        let in_place = tracker.snapshot().request.mode == PromotionMode::InPlace;
        let secondary = async {
            match self.etcd.survey(cancel).await {
                Ok(survey) => {
                    // In place the machines are the same; a restore after a bad upgrade must
                    // not be refused for the upgrade's differences.
                    let shape = match survey.candidates().first() {
                        Some(member) if !in_place => Some(
                            self.etcd
                                .read_cluster_shape(
                                    &member.endpoint,
                                    &self.config.etcd.kubernetes_prefix,
                                    0,
                                    cancel,
                                )
                                .await,
                        ),
                        _ => None,
                    };
                    (survey.revision(), shape)
                }
                Err(error) => {
                    tracing::warn!(%error, "the secondary's etcd does not answer; its revision is unknown");
                    (None, None)
                }
            }
        };
        let (facts, (secondary_revision, secondary_shape)) = tokio::join!(facts, secondary);
        let (mut extra_problems, mut extra_warnings) = self
            .check_nodes(manifest, &facts, in_place, tracker, cancel)
            .await;
        if let Some(shape) = secondary_shape {
            judge_shapes(
                manifest,
                shape,
                &self.config.shape_checks,
                &mut extra_problems,
                &mut extra_warnings,
            );
        }
        let keys = match &self.service_account_keys {
            // In place the nodes keep their own keys: the cluster's tokens are signed with them.
            _ if in_place => None,
            Some(keys) => Some(keys.clone()),
            None => match service_account_keys_from_bundles(
                &self.store,
                &self.layout,
                manifest,
                &self.identities,
                cancel,
            )
            .await
            {
                Ok(Some((node, keys))) => {
                    tracing::info!(node = %node, "service-account keys taken from the node bundle");
                    Some(keys)
                }
                Ok(None) => None,
                Err(error) => {
                    extra_problems.push(format!("service-account keys: {error}"));
                    None
                }
            },
        };
        if keys.is_none() && extra_problems.is_empty() && !in_place {
            let text = format!(
                "snapshot {} carries no service-account keys (no node bundle with sa.key and sa.pub): ServiceAccount tokens of the primary would be rejected",
                manifest.id
            );
            if self.config.require_service_account_keys {
                extra_problems.push(format!(
                    "{text}; take snapshots with node bundles, or set [promote] require_service_account_keys = false"
                ));
            } else {
                extra_warnings.push(text);
            }
        }
        let plan = evaluate_preflight(
            &facts,
            PreflightInputs {
                manifest,
                restored_revision,
                restored_size,
                promotion_id: id,
                secondary_revision,
                bump_margin: self.config.revision_bump_margin,
                free_space_factor: self.config.free_space_factor,
                etcdutl: &self.config.etcdutl,
                etcdctl: &self.config.etcdctl,
                extra_problems,
                extra_warnings,
            },
        )
        .map_err(|problems| PromoteError::Preflight { problems })?;
        tracker.done(
            step,
            format!(
                "{} node(s) ready; restore with {} into {}; bump {}",
                plan.nodes.len(),
                plan.tool.program(),
                plan.initial_cluster,
                plan.bump_revision
                    .map(|b| format!("+{b} (revision ≥ {})", plan.expected_min_revision))
                    .unwrap_or_else(|| "none".into())
            ),
        );
        Ok((plan, keys))
    }
}

/// The secondary's shape against the snapshot's: errors refuse, warnings are recorded.
fn judge_shapes(
    manifest: &SnapshotManifest,
    secondary: Result<Option<ClusterShape>, SourceError>,
    checks: &ShapeChecks,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let recorded = match &manifest.kubernetes {
        Some(recorded) => recorded,
        None => {
            warnings.push(format!(
                "snapshot {} records no Kubernetes cluster shape (taken before shapes were recorded, or not a Kubernetes etcd): the secondary's nodes, versions and subnets were not compared",
                manifest.id
            ));
            return;
        }
    };
    let secondary = match secondary {
        Ok(Some(shape)) => shape,
        Ok(None) => {
            warnings.push("the secondary's etcd holds no Kubernetes objects: its shape was not compared with the snapshot's".into());
            return;
        }
        Err(error) => {
            warnings.push(format!(
                "cannot read the secondary's cluster shape from its etcd ({error}): not compared with the snapshot's"
            ));
            return;
        }
    };
    sort_differences(
        "cluster shape",
        compare_shapes(recorded, &secondary, checks),
        problems,
        warnings,
    );
}
