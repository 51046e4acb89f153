//! One snapshot, end to end: survey etcd, stream from the best member (failing over to the next),
//! upload, stream each control-plane node's bundle, commit the manifest.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use etcd_dr_core::{
    etcd_id_hex, EtcdClusterInfo, NodeBundle, Producer, SnapshotId, SnapshotManifest,
    MANIFEST_FORMAT_VERSION,
};
use etcd_dr_nodes::{
    BundleConfig, Node, NodeError, NodeRole, NodesConfig, TarScanner, UnreachablePolicy,
};
use etcd_dr_scheduler::{ClusterSurvey, EndpointStatus, EtcdSource, SourceError};
use etcd_dr_transport::{
    commit_manifest, list_snapshots, upload_object, upload_snapshot_data, ManifestSigner,
    ManifestTrust, ShipProgress, SnapshotLayout, TransportError, UploadOptions, DATA_OBJECT_NAME,
};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Everything a snapshot needs, built once from the settings.
#[derive(Clone)]
pub struct SnapshotContext {
    pub cluster: String,
    pub source: EtcdSource,
    pub store: Arc<dyn ObjectStore>,
    pub layout: SnapshotLayout,
    pub upload: UploadOptions,
    /// Node bundles taken with every snapshot, when enabled.
    pub bundles: Option<BundlePlan>,
    /// Signs every manifest (`signing.key_file`); `None` only where unsigned ones are allowed.
    pub signer: Option<Arc<ManifestSigner>>,
    /// What the primary accepts when it reads the store back (its own signatures).
    pub trust: ManifestTrust,
}

/// What the node bundles take and from where.
#[derive(Clone)]
pub struct BundlePlan {
    pub bundle: BundleConfig,
    pub nodes: NodesConfig,
}

/// How a snapshot run ended when it did not fail.
#[derive(Debug)]
pub enum SnapshotOutcome {
    /// A new snapshot was committed.
    Taken(Box<SnapshotManifest>),
    /// Nothing changed since the newest stored snapshot (same revision): nothing was written.
    Unchanged { revision: i64, newest: SnapshotId },
}

/// Why a snapshot run failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("every etcd endpoint failed while streaming: {0}")]
    AllEndpointsFailed(String),
    /// A node's bundle failed on the node's side (unreachable, tar or sudo failing).
    #[error(transparent)]
    Node(NodeError),
    /// A node's bundle failed on the store's side. (The source is in the message, not the
    /// chain, so that logs show it and `{:#}` does not repeat it.)
    #[error("bundle of node {node}: {source}")]
    Bundle {
        node: String,
        source: TransportError,
    },
    #[error("no control-plane node to take bundles from: nodes.control_plane is empty and the etcd member list has no names")]
    NoNodes,
    #[error("cancelled")]
    Cancelled,
}

impl SnapshotContext {
    /// Takes one snapshot. With `skip_unchanged`, a cluster whose revision equals that of the
    /// newest stored snapshot is left alone. `on_attempt` hears the id of each attempt (the
    /// id carries the revision of the member streamed from, so a failover changes it).
    pub async fn take_snapshot(
        &self,
        label: Option<String>,
        skip_unchanged: bool,
        progress: &ShipProgress,
        on_attempt: &(dyn Fn(&SnapshotId) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<SnapshotOutcome, SnapshotError> {
        let started = Instant::now();
        let created_at = Utc::now();
        let survey = self.source.survey(cancel).await?;
        for report in &survey.endpoints {
            if let Err(error) = &report.status {
                tracing::warn!(endpoint = %report.endpoint, %error, "etcd endpoint did not answer");
            }
        }
        if skip_unchanged {
            let catalog = list_snapshots(&self.store, &self.layout, &self.trust, cancel).await?;
            if let (Some(newest), Some(revision)) = (catalog.newest(), survey.revision()) {
                if newest.etcd.revision == revision
                    && newest.etcd.cluster_id == etcd_id_hex(survey.cluster_id)
                {
                    return Ok(SnapshotOutcome::Unchanged {
                        revision,
                        newest: newest.id.clone(),
                    });
                }
            }
        }

        let mut failures = Vec::new();
        for candidate in survey.candidates() {
            if cancel.is_cancelled() {
                return Err(SnapshotError::Cancelled);
            }
            let id = SnapshotId::new(created_at, candidate.revision);
            on_attempt(&id);
            let span = tracing::info_span!("snapshot", id = %id, endpoint = %candidate.endpoint);
            match self
                .stream_from(
                    &survey,
                    candidate,
                    &id,
                    label.clone(),
                    created_at,
                    started,
                    progress,
                    cancel,
                )
                .instrument(span)
                .await
            {
                Ok(manifest) => return Ok(SnapshotOutcome::Taken(Box::new(manifest))),
                Err(error) if is_source_failure(&error) && !cancel.is_cancelled() => {
                    tracing::warn!(endpoint = %candidate.endpoint, %error, "snapshot stream failed; trying the next endpoint");
                    failures.push(format!("{}: {error}", candidate.endpoint));
                    progress
                        .raw_bytes
                        .store(0, std::sync::atomic::Ordering::Relaxed);
                    progress
                        .stored_bytes
                        .store(0, std::sync::atomic::Ordering::Relaxed);
                }
                Err(error) => return Err(error),
            }
        }
        Err(SnapshotError::AllEndpointsFailed(failures.join("; ")))
    }

    #[allow(clippy::too_many_arguments)]
    async fn stream_from(
        &self,
        survey: &ClusterSurvey,
        candidate: &EndpointStatus,
        id: &SnapshotId,
        label: Option<String>,
        created_at: chrono::DateTime<Utc>,
        started: Instant,
        progress: &ShipProgress,
        cancel: &CancellationToken,
    ) -> Result<SnapshotManifest, SnapshotError> {
        let manifest_key = self.layout.manifest_path(id);
        if self.store.head(&manifest_key).await.is_ok() {
            return Err(TransportError::AlreadyExists {
                id: id.clone(),
                key: manifest_key.to_string(),
            }
            .into());
        }
        tracing::info!(
            revision = candidate.revision,
            leader = candidate.is_leader(),
            "streaming snapshot"
        );
        let chunks = self
            .source
            .open_snapshot(&candidate.endpoint, cancel)
            .await?;
        let name = self.upload.stored_name(DATA_OBJECT_NAME);
        let data = upload_snapshot_data(
            &self.store,
            &self.layout.object_path(id, &name),
            &name,
            chunks,
            &self.upload,
            progress,
            cancel,
        )
        .await?;
        let nodes = match &self.bundles {
            Some(plan) => match self.take_bundles(plan, survey, id, cancel).await {
                Ok(nodes) => nodes,
                Err(error) => {
                    self.remove_uncommitted(id).await;
                    return Err(error);
                }
            },
            None => Vec::new(),
        };
        let completed_at = Utc::now();
        let mut manifest = SnapshotManifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: id.clone(),
            cluster: self.cluster.clone(),
            label,
            etcd: EtcdClusterInfo {
                cluster_id: etcd_id_hex(survey.cluster_id),
                version: candidate.version.clone(),
                revision: candidate.revision,
                raft_index: candidate.raft_index,
                raft_term: candidate.raft_term,
                source_endpoint: candidate.endpoint.clone(),
                source_member_id: etcd_id_hex(candidate.member_id),
                members: survey.members.clone(),
            },
            raw: data.raw,
            etcd_sha256: data.etcd_sha256,
            stored: data.stored,
            created_at,
            completed_at,
            duration_seconds: started.elapsed().as_secs_f64(),
            producer: Producer {
                tool: format!("etcd-dr {}", env!("CARGO_PKG_VERSION")),
                host: host_name(),
            },
            nodes,
            signature: None,
        };
        if let Err(error) = commit_manifest(
            &self.store,
            &self.layout,
            self.signer.as_deref(),
            &mut manifest,
        )
        .await
        {
            if !matches!(error, TransportError::AlreadyExists { .. }) {
                self.remove_uncommitted(id).await;
            }
            return Err(error.into());
        }
        tracing::info!(
            raw_bytes = manifest.raw.size,
            stored_bytes = manifest.stored.size,
            seconds = manifest.duration_seconds,
            "snapshot committed"
        );
        Ok(manifest)
    }
}

impl SnapshotContext {
    /// Streams every control-plane node's bundle into the snapshot's folder, all nodes at once.
    /// A node that cannot be reached fails the set, or, with `on_unreachable = "warn"`, is
    /// marked missing.
    async fn take_bundles(
        &self,
        plan: &BundlePlan,
        survey: &ClusterSurvey,
        id: &SnapshotId,
        cancel: &CancellationToken,
    ) -> Result<Vec<NodeBundle>, SnapshotError> {
        let nodes = if plan.nodes.control_plane.is_empty() {
            let mut names: Vec<&str> = survey
                .members
                .iter()
                .map(|m| m.name.as_str())
                .filter(|name| etcd_dr_nodes::is_valid_node_name(name))
                .collect();
            names.sort_unstable();
            names.dedup();
            plan.nodes.nodes_named(&names, NodeRole::ControlPlane)
        } else {
            plan.nodes.control_plane_nodes()
        };
        if nodes.is_empty() {
            return Err(SnapshotError::NoNodes);
        }
        // The first failure stops the other nodes' uploads (each aborts its own multipart
        // upload); dropping them instead would leave orphan parts behind.
        let stop = cancel.child_token();
        let taken = futures::future::join_all(nodes.iter().map(|node| async {
            let taken = self.take_bundle(&plan.bundle, node, id, &stop).await;
            if taken.is_err() {
                stop.cancel();
            }
            taken
        }))
        .await;
        let mut bundles = Vec::with_capacity(taken.len());
        let mut failure: Option<SnapshotError> = None;
        for result in taken {
            match result {
                Ok(bundle) => bundles.push(bundle),
                // Report the node that failed, not one stopped because of it.
                Err(error) => match &failure {
                    Some(first) if !is_cancellation(first) => {}
                    _ => failure = Some(error),
                },
            }
        }
        match failure {
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
        cancel: &CancellationToken,
    ) -> Result<NodeBundle, SnapshotError> {
        let name = self
            .upload
            .stored_name(&SnapshotLayout::node_bundle_name(node.name()));
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

    /// Best effort: deletes what a failed snapshot already stored. It has no manifest, so it
    /// is invisible anyway; retention would remove it after its grace period.
    async fn remove_uncommitted(&self, id: &SnapshotId) {
        let folder = self.layout.snapshot_dir(id);
        let objects: Vec<_> = match self.store.list(Some(&folder)).try_collect().await {
            Ok(objects) => objects,
            Err(error) => {
                tracing::warn!(%error, "could not list the failed snapshot's objects; retention will remove them");
                return;
            }
        };
        for object in objects {
            if object.location.filename() == Some(etcd_dr_transport::MANIFEST_OBJECT_NAME) {
                continue;
            }
            if let Err(error) = self.store.delete(&object.location).await {
                tracing::warn!(key = %object.location, %error, "could not delete an object of the failed snapshot; retention will remove it");
            }
        }
    }
}

/// A bundle stopped because another node's failed (or shutdown), not failing on its own.
fn is_cancellation(error: &SnapshotError) -> bool {
    match error {
        SnapshotError::Cancelled => true,
        SnapshotError::Node(error) => matches!(error, NodeError::Cancelled { .. }),
        SnapshotError::Bundle { source, .. } => matches!(source, TransportError::Cancelled),
        _ => false,
    }
}

/// Failures of the etcd side, where another endpoint may do better.
fn is_source_failure(error: &SnapshotError) -> bool {
    matches!(
        error,
        SnapshotError::Source(_)
            | SnapshotError::Transport(TransportError::Source { .. })
            | SnapshotError::Transport(TransportError::EtcdHashMismatch { .. })
    )
}

/// This machine's host name, for the manifest.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
