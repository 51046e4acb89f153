//! One snapshot, end to end: survey etcd, stream from the best member (failing over to the next),
//! upload, commit the manifest.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use etcd_dr_core::{
    etcd_id_hex, EtcdClusterInfo, Producer, SnapshotId, SnapshotManifest, MANIFEST_FORMAT_VERSION,
};
use etcd_dr_scheduler::{ClusterSurvey, EndpointStatus, EtcdSource, SourceError};
use etcd_dr_transport::{
    commit_manifest, list_snapshots, upload_snapshot_data, ShipProgress, SnapshotLayout,
    TransportError, UploadOptions,
};
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
            let catalog = list_snapshots(&self.store, &self.layout, cancel).await?;
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
        let data = upload_snapshot_data(
            &self.store,
            &self.layout.data_path(id),
            chunks,
            &self.upload,
            progress,
            cancel,
        )
        .await?;
        let completed_at = Utc::now();
        let manifest = SnapshotManifest {
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
        };
        commit_manifest(&self.store, &self.layout, &manifest).await?;
        tracing::info!(
            raw_bytes = manifest.raw.size,
            stored_bytes = manifest.stored.size,
            seconds = manifest.duration_seconds,
            "snapshot committed"
        );
        Ok(manifest)
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
