//! The promotion itself: the steps in order, each recorded in the tracker, with the rollback of
//! every node when a step after the fence fails.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use etcd_dr_core::{PromotionMarker, PromotionMode, RestoreLock, SnapshotManifest};
use etcd_dr_nodes::Node;
use etcd_dr_scheduler::EtcdSource;
use etcd_dr_transport::{
    acquire_restore_lock, promotion_marker_path, read_promotion_marker, read_restore_lock,
    release_restore_lock, resolve_snapshot, restore_lock_path, write_promotion_marker, Identities,
    ManifestTrust, SnapshotLayout, SnapshotSelector, TransportError,
};
use futures::future::join_all;
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bundle_keys::service_account_keys_from_bundles;
use crate::health::wait_healthy;
use crate::kube::KubeClient;
use crate::node_ops::{gather_facts, restore_node, rollback_node, ServiceAccountKeys};
use crate::plan::{evaluate_preflight, EtcdVersion, PreflightInputs, PromotionPlan, RestoreTool};
use crate::switchover::request_final_snapshot;
use crate::verify::{local_snapshot, LocalSnapshot};
use crate::{PromoteConfig, PromoteError, PromotionState, PromotionTracker, StepName, StepState};

/// Records the failure of `step` before any node changed and ends the promotion.
fn fail(tracker: &PromotionTracker, step: StepName, error: PromoteError) -> PromotionState {
    let text = error.to_string();
    tracing::error!(step = step.as_str(), error = %text, "step failed");
    tracker.failed(step, &text);
    tracker.finish(
        PromotionState::Failed,
        Some(format!("{}: {text}", step.as_str())),
    );
    PromotionState::Failed
}

/// Everything a promotion needs, built once by the binary.
pub struct Promoter {
    config: PromoteConfig,
    store: Arc<dyn ObjectStore>,
    layout: SnapshotLayout,
    control_plane: Vec<Node>,
    workers: Vec<Node>,
    etcd: EtcdSource,
    kube: Option<KubeClient>,
    /// The secondary's pre-staged snapshots (`<id>.db`), used when one matches.
    pub prestage_dir: Option<PathBuf>,
    /// The service-account keys to install instead of those in the snapshot's node bundles.
    pub service_account_keys: Option<ServiceAccountKeys>,
    /// The age identities that decrypt the snapshot and its bundles.
    pub identities: Identities,
    /// What a snapshot must be to be restored (signed by a trusted key, of this cluster,
    /// encrypted where required); refuses everything until the binary sets it.
    pub trust: ManifestTrust,
}

impl Promoter {
    /// Reads the TLS material of the secondary's etcd and Kubernetes API.
    pub fn new(
        config: PromoteConfig,
        store: Arc<dyn ObjectStore>,
        layout: SnapshotLayout,
        control_plane: Vec<Node>,
        workers: Vec<Node>,
    ) -> Result<Self, PromoteError> {
        let etcd = EtcdSource::new(config.etcd.clone())?;
        let kube = config
            .kubernetes
            .as_ref()
            .map(KubeClient::new)
            .transpose()?;
        Ok(Self {
            config,
            store,
            layout,
            control_plane,
            workers,
            etcd,
            kube,
            prestage_dir: None,
            service_account_keys: None,
            identities: Identities::none(),
            trust: ManifestTrust::refuse_all(),
        })
    }

    /// The control-plane nodes.
    pub fn control_plane(&self) -> &[Node] {
        &self.control_plane
    }

    /// Runs the promotion the tracker describes to its end and returns how it ended. Every
    /// step, node, timing and error is in the tracker.
    pub async fn run(
        &self,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> PromotionState {
        let record = tracker.snapshot();
        let span = tracing::info_span!(
            "promote",
            id = %record.id,
            mode = record.request.mode.as_str(),
            dry_run = record.request.dry_run
        );
        async {
            tracing::info!(snapshot = %record.request.snapshot, "promotion started");
            let state = self.run_steps(tracker, cancel).await;
            let record = tracker.snapshot();
            match state {
                PromotionState::Succeeded | PromotionState::Planned => tracing::info!(
                    state = state.as_str(),
                    seconds = record.duration_seconds,
                    "promotion finished"
                ),
                _ => tracing::error!(
                    state = state.as_str(),
                    error = record.error.as_deref().unwrap_or(""),
                    "promotion failed"
                ),
            }
            state
        }
        .instrument(span)
        .await
    }

    /// Refuses a fenced prefix, takes the restore lock (not for a dry run), runs the steps and
    /// gives the lock back, whatever the outcome.
    async fn run_steps(
        &self,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> PromotionState {
        let record = tracker.snapshot();
        let request = record.request.clone();
        let id = record.id.clone();
        let in_place = request.mode == PromotionMode::InPlace;
        let fail = |step: StepName, error: PromoteError| fail(tracker, step, error);

        // A fence already in place stops us before the primary is asked for anything. An
        // in-place restore never passes it: the prefix belongs to a promoted cluster now.
        if in_place || (!request.dry_run && !request.force) {
            match read_promotion_marker(&self.store, &self.layout).await {
                Ok(Some(marker)) if in_place => {
                    return fail(
                        StepName::Fence,
                        PromoteError::Config(format!(
                            "promotion {} ({}, snapshot {}, by {} at {}) fenced this prefix: another cluster was promoted from it, and restoring this one in place would bring back a primary that must not ship. To make this cluster primary again, follow \"Failing back\" (docs/runbooks/failback.md); remove `{}` only if you deliberately want this cluster back as the primary of this prefix",
                            marker.promotion_id,
                            marker.mode.as_str(),
                            marker.snapshot,
                            marker.requested_by,
                            marker.fenced_at,
                            promotion_marker_path(&self.layout)
                        )),
                    )
                }
                Ok(Some(marker)) => {
                    return fail(
                        StepName::Fence,
                        PromoteError::Config(format!(
                            "promotion {} ({}, snapshot {}, by {} at {}) already fenced this cluster; promote with force to replace it",
                            marker.promotion_id,
                            marker.mode.as_str(),
                            marker.snapshot,
                            marker.requested_by,
                            marker.fenced_at
                        )),
                    )
                }
                Ok(None) => {}
                Err(error) => return fail(StepName::Fence, error.into()),
            }
        }

        // One restore or promotion of this prefix at a time. A dry run only looks.
        if request.dry_run {
            match read_restore_lock(&self.store, &self.layout).await {
                Ok(Some(lock)) => tracker.update(|r| {
                    r.warnings.push(format!(
                        "{} {} by {} since {} holds the restore lock `{}`: a real run is refused until it ends (or with force, if it crashed)",
                        lock.mode.as_str(),
                        lock.promotion_id,
                        lock.requested_by,
                        lock.locked_at,
                        restore_lock_path(&self.layout)
                    ))
                }),
                Ok(None) => {}
                Err(error) => return fail(StepName::Fence, error.into()),
            }
            return self.steps(tracker, cancel).await;
        }
        let lock = RestoreLock {
            promotion_id: id.clone(),
            mode: request.mode,
            requested_by: record.requested_by.clone(),
            locked_at: Utc::now(),
        };
        match acquire_restore_lock(&self.store, &self.layout, &lock, request.force).await {
            Ok(()) => {}
            Err(error @ TransportError::Locked { .. }) => {
                return fail(
                    StepName::Fence,
                    PromoteError::Config(format!(
                        "{error}; only one restore or promotion runs at a time. If it still runs, wait for it to end; if it crashed, run again with force (`--force`, `\"force\": true`: it takes the lock over) or delete `{}`",
                        restore_lock_path(&self.layout)
                    )),
                )
            }
            Err(error) => return fail(StepName::Fence, error.into()),
        }
        let state = self.steps(tracker, cancel).await;
        match release_restore_lock(&self.store, &self.layout, &id).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("another run took the restore lock over; left to it"),
            Err(error) => {
                let text = format!(
                    "could not remove the restore lock `{}` ({error}); delete it before the next restore or promotion, or run that with force",
                    restore_lock_path(&self.layout)
                );
                tracing::warn!("{text}");
                tracker.update(|r| r.warnings.push(text));
            }
        }
        state
    }

    /// The steps themselves, from the switchover to the after-steps (and the rollback).
    async fn steps(
        &self,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> PromotionState {
        let record = tracker.snapshot();
        let request = record.request.clone();
        let id = record.id.clone();
        let in_place = request.mode == PromotionMode::InPlace;
        let fail = |step: StepName, error: PromoteError| fail(tracker, step, error);

        // Switchover: the primary's final snapshot.
        let selector = match (request.mode, request.dry_run) {
            (PromotionMode::Switchover, false) => {
                tracker.start(
                    StepName::Switchover,
                    "asking the primary for a final snapshot".to_string(),
                );
                let asked = request_final_snapshot(
                    &self.store,
                    &self.layout,
                    &id,
                    &record.requested_by,
                    self.config.switchover_timeout,
                    |waited| {
                        tracker.update(|r| {
                            r.steps[0].progress.detail = Some(format!(
                                "waiting for the primary's final snapshot ({}s)",
                                waited.as_secs()
                            ))
                        })
                    },
                    cancel,
                )
                .await;
                match asked {
                    Ok(snapshot) => {
                        tracker.done(
                            StepName::Switchover,
                            format!("the primary committed {snapshot} and stopped shipping"),
                        );
                        SnapshotSelector::Id(snapshot)
                    }
                    Err(error) => return fail(StepName::Switchover, error),
                }
            }
            (PromotionMode::Switchover, true) => {
                tracker.skipped(
                    StepName::Switchover,
                    "dry run: the primary is not asked; the plan uses the newest snapshot",
                );
                SnapshotSelector::Latest
            }
            (PromotionMode::Failover | PromotionMode::InPlace, _) => {
                tracker.skipped(
                    StepName::Switchover,
                    if in_place {
                        "in place: this cluster goes back to one of its own snapshots"
                    } else {
                        "failover"
                    },
                );
                match request.snapshot.parse::<SnapshotSelector>() {
                    Ok(selector) => selector,
                    Err(error) => {
                        return fail(StepName::Select, PromoteError::Config(error.to_string()))
                    }
                }
            }
        };

        // Select.
        tracker.start(StepName::Select, None);
        let manifest =
            match resolve_snapshot(&self.store, &self.layout, &self.trust, &selector, cancel).await
            {
                Ok(manifest) => manifest,
                Err(error) => return fail(StepName::Select, error.into()),
            };
        tracker.update(|r| r.snapshot = Some(manifest.id.clone()));
        tracker.done(
            StepName::Select,
            format!(
                "snapshot {} (etcd {}, revision {}, taken {})",
                manifest.id, manifest.etcd.version, manifest.etcd.revision, manifest.created_at
            ),
        );

        // Fence.
        if in_place {
            tracker.skipped(
                StepName::Fence,
                "in place: no promotion marker; this cluster stays the primary of its prefix and keeps shipping",
            );
        } else if request.dry_run {
            tracker.skipped(StepName::Fence, "dry run: nothing is written");
        } else {
            tracker.start(StepName::Fence, None);
            let replaces = if request.force {
                read_promotion_marker(&self.store, &self.layout)
                    .await
                    .ok()
                    .flatten()
                    .map(|m| m.promotion_id)
            } else {
                None
            };
            let marker = PromotionMarker {
                promotion_id: id.clone(),
                mode: request.mode,
                snapshot: manifest.id.clone(),
                requested_by: record.requested_by.clone(),
                fenced_at: Utc::now(),
                replaces,
            };
            if let Err(error) =
                write_promotion_marker(&self.store, &self.layout, &marker, request.force).await
            {
                return fail(StepName::Fence, error.into());
            }
            tracing::warn!(snapshot = %manifest.id, "fenced: the primary stops shipping into this prefix");
            tracker.done(
                StepName::Fence,
                "promotion marker written; a primary that sees it stops shipping".to_string(),
            );
        }

        // Verify.
        tracker.start(StepName::Verify, None);
        let local = match local_snapshot(
            &self.store,
            &self.layout,
            &manifest,
            &self.identities,
            self.prestage_dir.as_deref(),
            &self.config.work_dir,
            cancel,
        )
        .await
        {
            Ok(local) => local,
            Err(error) => return fail(StepName::Verify, error),
        };
        // A dry run leaves no plain copy behind, however it ends.
        let _discard = request.dry_run.then(|| local.discard_on_drop()).flatten();
        tracker.done(
            StepName::Verify,
            format!(
                "{} ({} bytes, SHA-256 matches the manifest{})",
                local.path.display(),
                local.size,
                if local.prestaged {
                    ", pre-staged"
                } else {
                    ", downloaded and checked"
                }
            ),
        );

        // Preflight.
        let (plan, keys) = match self.preflight(&id, &manifest, tracker, cancel).await {
            Ok(found) => found,
            Err(error) => return fail(StepName::Preflight, error),
        };
        tracker.update(|r| {
            r.warnings.extend(plan.warnings.iter().cloned());
            r.plan = Some(plan.clone());
        });
        if request.dry_run {
            tracker.finish(PromotionState::Planned, None);
            return PromotionState::Planned;
        }

        // Restore, on every node at once.
        if let Err(error) = self
            .restore(&plan, &local, keys.as_ref(), tracker, cancel)
            .await
        {
            return self
                .roll_back(StepName::Restore, error, &plan, tracker)
                .await;
        }

        // Health.
        tracker.start(
            StepName::Health,
            "waiting for every etcd member".to_string(),
        );
        let expected = plan.member_names();
        let healthy = wait_healthy(
            &self.etcd,
            &expected,
            plan.expected_min_revision,
            self.config.health_timeout,
            |why| tracker.update(|r| r.steps[6].progress.detail = Some(format!("waiting: {why}"))),
            cancel,
        )
        .await;
        let healthy = match healthy {
            Ok(healthy) => healthy,
            Err(error) => {
                return self
                    .roll_back(StepName::Health, error, &plan, tracker)
                    .await
            }
        };
        let mut detail = format!(
            "etcd healthy: members {}, leader {}, revision {}",
            healthy.members.join(", "),
            healthy.leader,
            healthy.revision
        );
        if let Some(kube) = &self.kube {
            tracker.update(|r| {
                r.steps[6].progress.detail =
                    Some(format!("{detail}; waiting for the API server's /readyz"))
            });
            if let Err(error) = self.wait_api_ready(kube, cancel).await {
                return self
                    .roll_back(StepName::Health, error, &plan, tracker)
                    .await;
            }
            detail.push_str("; API server ready");
        }
        tracker.done(StepName::Health, detail);

        // After-steps: failures are reported, the restore stands.
        self.after(tracker, cancel).await;
        tracker.finish(PromotionState::Succeeded, None);
        PromotionState::Succeeded
    }

    async fn preflight(
        &self,
        id: &str,
        manifest: &SnapshotManifest,
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
            facts
        }));
        let revision = async {
            match self.etcd.survey(cancel).await {
                Ok(survey) => survey.revision(),
                Err(error) => {
                    tracing::warn!(%error, "the secondary's etcd does not answer; its revision is unknown");
                    None
                }
            }
        };
        let (facts, secondary_revision) = tokio::join!(facts, revision);
        let mut extra_problems = Vec::new();
        let mut extra_warnings = Vec::new();
        let in_place = tracker.snapshot().request.mode == PromotionMode::InPlace;
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

    async fn restore(
        &self,
        plan: &PromotionPlan,
        local: &LocalSnapshot,
        keys: Option<&ServiceAccountKeys>,
        tracker: &PromotionTracker,
        cancel: &CancellationToken,
    ) -> Result<(), PromoteError> {
        let step = StepName::Restore;
        tracker.start(step, None);
        // One node failing stops the others early: everything is rolled back anyway.
        let abort = cancel.child_token();
        let results = join_all(plan.nodes.iter().map(|node_plan| {
            let abort = abort.clone();
            async move {
                let node = self
                    .control_plane
                    .iter()
                    .find(|n| n.name() == node_plan.node)
                    .ok_or_else(|| {
                        (
                            node_plan.node.clone(),
                            PromoteError::Config(format!("node {} vanished", node_plan.node)),
                        )
                    })?;
                tracker.node_start(step, node.name(), "starting");
                let result = restore_node(
                    node,
                    node_plan,
                    plan,
                    &self.config,
                    &local.path,
                    local.size,
                    keys,
                    tracker,
                    &abort,
                )
                .await;
                match &result {
                    Ok(()) => {
                        tracker.node_done(step, node.name(), "restored and started".to_string())
                    }
                    Err(_) if abort.is_cancelled() && !cancel.is_cancelled() => {
                        tracker.node_failed(step, node.name(), "stopped: another node failed")
                    }
                    Err(error) => {
                        tracing::error!(node = node.name(), %error, "restore failed on node");
                        tracker.node_failed(step, node.name(), error);
                        abort.cancel();
                    }
                }
                result.map_err(|e| (node.name().to_string(), e))
            }
        }))
        .await;
        let failures: Vec<String> = results
            .into_iter()
            .filter_map(Result::err)
            // Nodes stopped because another failed are not failures of their own.
            .filter(|(_, e)| {
                !matches!(
                    e,
                    PromoteError::Cancelled
                        | PromoteError::Node(etcd_dr_nodes::NodeError::Cancelled { .. })
                )
            })
            .map(|(node, e)| format!("{node}: {e}"))
            .collect();
        if failures.is_empty() && !abort.is_cancelled() {
            tracker.done(step, format!("{} node(s) restored", plan.nodes.len()));
            Ok(())
        } else if failures.is_empty() {
            Err(PromoteError::Cancelled)
        } else {
            Err(PromoteError::Config(failures.join("; ")))
        }
    }

    /// Records the failure of `step`, puts every node back and ends the promotion.
    async fn roll_back(
        &self,
        step: StepName,
        error: PromoteError,
        plan: &PromotionPlan,
        tracker: &PromotionTracker,
    ) -> PromotionState {
        let text = error.to_string();
        tracing::error!(step = step.as_str(), error = %text, "step failed; rolling every node back");
        tracker.failed(step, &text);
        tracker.start(
            StepName::Rollback,
            "putting every node's old data dir and files back".to_string(),
        );
        let names: Vec<&str> = plan.nodes.iter().map(|n| n.node.as_str()).collect();
        tracker.add_nodes(StepName::Rollback, &names);
        // The rollback runs to its end even during shutdown: a half-restored node is worse.
        let cancel = CancellationToken::new();
        let results = join_all(plan.nodes.iter().map(|node_plan| {
            let cancel = cancel.clone();
            async move {
                let Some(node) = self
                    .control_plane
                    .iter()
                    .find(|n| n.name() == node_plan.node)
                else {
                    return false;
                };
                tracker.node_start(StepName::Rollback, node.name(), "putting back");
                match rollback_node(node, node_plan, &self.config, &cancel).await {
                    Ok(detail) => {
                        tracker.node_done(StepName::Rollback, node.name(), detail);
                        tracker.node_state(StepName::Restore, node.name(), StepState::RolledBack);
                        true
                    }
                    Err(error) => {
                        tracing::error!(node = node.name(), %error, "rollback failed on node");
                        tracker.node_failed(StepName::Rollback, node.name(), error);
                        false
                    }
                }
            }
        }))
        .await;
        let failed: Vec<&str> = plan
            .nodes
            .iter()
            .zip(&results)
            .filter(|(_, ok)| !**ok)
            .map(|(n, _)| n.node.as_str())
            .collect();
        if step == StepName::Health {
            tracker.set_state(StepName::Restore, StepState::RolledBack);
        }
        if !failed.is_empty() {
            tracker.failed(
                StepName::Rollback,
                format!("could not put back {}: see each node; the old data is in <data dir>/etcd-dr-<id>/old", failed.join(", ")),
            );
            tracker.finish(
                PromotionState::RollbackFailed,
                Some(format!(
                    "{}: {text}; the rollback failed on {}",
                    step.as_str(),
                    failed.join(", ")
                )),
            );
            return PromotionState::RollbackFailed;
        }
        // The old cluster should come back as it was; say so if it does not.
        let back = wait_healthy(
            &self.etcd,
            &[],
            0,
            self.config.health_timeout,
            |_| {},
            &cancel,
        )
        .await;
        let detail = match back {
            Ok(healthy) => format!(
                "every node put back; the old cluster is healthy (leader {}, revision {})",
                healthy.leader, healthy.revision
            ),
            Err(error) => {
                tracker.update(|r| r.warnings.push(format!("after the rollback: {error}")));
                format!("every node put back, but the old cluster is not healthy: {error}")
            }
        };
        tracker.done(StepName::Rollback, detail);
        tracker.finish(
            PromotionState::RolledBack,
            Some(format!("{}: {text}", step.as_str())),
        );
        PromotionState::RolledBack
    }

    async fn wait_api_ready(
        &self,
        kube: &KubeClient,
        cancel: &CancellationToken,
    ) -> Result<(), PromoteError> {
        let deadline = tokio::time::Instant::now() + self.config.health_timeout;
        loop {
            let error = match kube.readyz().await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(error);
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(PromoteError::Cancelled),
                _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            }
        }
    }

    async fn after(&self, tracker: &PromotionTracker, cancel: &CancellationToken) {
        let step = StepName::After;
        let after = &self.config.after;
        tracker.start(step, None);
        let mut done = Vec::new();
        let mut errors = Vec::new();
        if after.restart_workers && !self.workers.is_empty() {
            let names: Vec<&str> = self.workers.iter().map(Node::name).collect();
            tracker.add_nodes(step, &names);
            join_all(self.workers.iter().map(|node| async {
                tracker.node_start(step, node.name(), "restarting kubelet");
                match node
                    .command(after.worker_restart_command.iter().cloned())
                    .run(cancel)
                    .await
                {
                    Ok(_) => tracker.node_done(step, node.name(), "kubelet restarted".to_string()),
                    Err(error) => tracker.node_failed(step, node.name(), error),
                }
            }))
            .await;
            let failed = tracker
                .snapshot()
                .step(step)
                .nodes
                .iter()
                .filter(|n| n.progress.state == StepState::Failed)
                .count();
            if failed > 0 {
                errors.push(format!("kubelet restart failed on {failed} worker(s)"));
            } else {
                done.push(format!(
                    "kubelet restarted on {} worker(s)",
                    self.workers.len()
                ));
            }
        }
        match &self.kube {
            None => done.push("no [promote.kubernetes]: workloads not restarted".into()),
            Some(kube) => {
                let now = Utc::now();
                for kind in &after.rollout_restart {
                    tracker.update(|r| {
                        r.steps[7].progress.detail = Some(format!("rollout restart of {kind}"))
                    });
                    match kube.rollout_restart(kind, now).await {
                        Ok(count) => done.push(format!("{count} {kind} restarted")),
                        Err(error) => errors.push(error.to_string()),
                    }
                }
                for pods in &after.delete_pods {
                    match kube.delete_pods(pods).await {
                        Ok(count) => done.push(format!(
                            "{count} pod(s) {} deleted in {}",
                            pods.label_selector, pods.namespace
                        )),
                        Err(error) => errors.push(error.to_string()),
                    }
                }
            }
        }
        if errors.is_empty() {
            tracker.done(step, done.join("; "));
        } else {
            let text = errors.join("; ");
            tracing::warn!(errors = %text, "after-steps failed; the restore stands");
            tracker.failed(step, &text);
            tracker.update(|r| {
                r.warnings.push(format!(
                    "after-steps failed (the restore stands; do them by hand): {text}"
                ))
            });
        }
    }
}
