//! One snapshot, end to end: survey etcd, stream from the best member (failing over to the
//! next), upload, stream each control-plane node's bundle, commit the manifest.

mod bundles;
mod error;
mod manifest;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use etcd_dr_core::{ClusterShape, SnapshotId, SnapshotManifest};
use etcd_dr_nodes::{BundleConfig, NodesConfig};
use etcd_dr_transport::{
    commit_manifest, delete_uncommitted, is_committed, list_snapshots, producer_lease_path,
    upload_snapshot_data, AttemptToken, LeaseKeeper, ManifestSigner, ManifestTrust, ProducerLease,
    ShipProgress, SnapshotLayout, TransportError, UploadOptions, DATA_OBJECT_NAME,
};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{EndpointStatus, EtcdSource};
pub use error::SnapshotError;
pub use manifest::host_name;
use manifest::{
    build_manifest, new_generation_after, producer, rewound_below, unchanged_since, Attempt,
};

/// How long removing a failed attempt's objects may take. The removal runs to its end even
/// during shutdown (the attempt's uploads are already gone, so it is short); retention removes
/// what is left after its grace period.
const CLEANUP_DEADLINE: Duration = Duration::from_secs(30);

/// How long releasing the producer lease may take at the end of a run.
const LEASE_RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a snapshot needs, built once from the settings.
#[derive(Clone)]
pub struct SnapshotContext {
    /// The cluster's name, written into each manifest.
    pub cluster: String,
    /// Where the snapshot comes from.
    pub source: EtcdSource,
    /// Where it goes.
    pub store: Arc<dyn ObjectStore>,
    /// The cluster's folder in the store.
    pub layout: SnapshotLayout,
    /// Compression, multipart tuning and encryption.
    pub upload: UploadOptions,
    /// Node bundles taken with every snapshot, when enabled.
    pub bundles: Option<BundlePlan>,
    /// Signs every manifest (`signing.key_file`); `None` only where unsigned ones are allowed.
    pub signer: Option<Arc<ManifestSigner>>,
    /// What the primary accepts when it reads the store back (its own signatures).
    pub trust: ManifestTrust,
    /// How long the producer lease lives without a renewal.
    pub lease_ttl: Duration,
}

/// What the node bundles take and from where.
#[derive(Clone)]
pub struct BundlePlan {
    /// What each bundle holds.
    pub bundle: BundleConfig,
    /// The nodes and how they are reached.
    pub nodes: NodesConfig,
}

/// How a snapshot run ended when it did not fail.
#[derive(Debug)]
pub enum SnapshotOutcome {
    /// A new snapshot was committed.
    Taken(Box<SnapshotManifest>),
    /// Nothing changed since the newest stored snapshot (same revision): nothing was written.
    Unchanged {
        /// The revision etcd is at.
        revision: i64,
        /// The stored snapshot of that revision.
        newest: SnapshotId,
    },
}

/// What the caller of a snapshot run hears of it and adds to its manifest.
#[derive(Clone, Copy)]
pub struct SnapshotHooks<'a> {
    /// Hears the id of each attempt (the id carries the revision of the member streamed from,
    /// so a failover changes it).
    pub on_attempt: &'a (dyn Fn(&SnapshotId) + Send + Sync),
    /// Asked with the snapshot's revision once its data and bundles are stored, just before
    /// the manifest commits: the replication generation whose history the snapshot is in
    /// (`etcd.replication_generation`), if any.
    pub replication_generation: &'a (dyn Fn(i64) -> Option<String> + Send + Sync),
}

impl SnapshotHooks<'static> {
    /// Hears nothing, adds nothing (a one-off snapshot outside the daemon).
    pub const NONE: Self = Self {
        on_attempt: &|_| {},
        replication_generation: &|_| None,
    };
}

impl SnapshotContext {
    /// Takes one snapshot. With `skip_unchanged`, a cluster whose revision equals that of the
    /// newest stored snapshot is left alone. `hooks` hears each attempt's id and names the
    /// snapshot's replication generation.
    ///
    /// The producer lease of the prefix is held throughout: while another producer holds it
    /// this fails at once with [`TransportError::ProducerBusy`] and writes nothing.
    pub async fn take_snapshot(
        &self,
        label: Option<String>,
        skip_unchanged: bool,
        progress: &ShipProgress,
        hooks: SnapshotHooks<'_>,
        cancel: &CancellationToken,
    ) -> Result<SnapshotOutcome, SnapshotError> {
        let lease = ProducerLease::acquire(
            &self.store,
            &self.layout,
            &host_name(),
            self.lease_ttl,
            cancel,
        )
        .await?;
        // Losing the lease stops this snapshot as shutdown would.
        let leased = cancel.child_token();
        let keeper = LeaseKeeper::start(lease, leased.clone());
        let result = self
            .take_leased(label, skip_unchanged, progress, hooks, &leased)
            .await;
        let lost = keeper.is_lost();
        // Released even on shutdown (a token of its own), within a bound: a lease left
        // behind only expires.
        let never = CancellationToken::new();
        let releasing = keeper.release(&never);
        if tokio::time::timeout(LEASE_RELEASE_TIMEOUT, releasing)
            .await
            .is_err()
        {
            tracing::warn!("the producer lease was not released in time; it expires on its own");
        }
        match result {
            Err(_) if lost && !cancel.is_cancelled() => Err(TransportError::ProducerLeaseLost {
                key: producer_lease_path(&self.layout).to_string(),
            }
            .into()),
            result => result,
        }
    }

    async fn take_leased(
        &self,
        label: Option<String>,
        skip_unchanged: bool,
        progress: &ShipProgress,
        hooks: SnapshotHooks<'_>,
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
        let catalog = list_snapshots(&self.store, &self.layout, &self.trust, cancel).await?;
        if skip_unchanged {
            if let Some(unchanged) = unchanged_since(catalog.newest(), &survey) {
                return Ok(unchanged);
            }
        }
        let previous_cluster_id = new_generation_after(catalog.newest(), &survey);
        if let Some(previous) = &previous_cluster_id {
            tracing::warn!(
                previous_cluster_id = %previous,
                cluster_id = %etcd_dr_core::etcd_id_hex(survey.cluster_id),
                "the etcd cluster id changed since the newest stored snapshot: this snapshot starts a new etcd generation"
            );
        }

        let rewound_from_revision = rewound_below(catalog.newest(), &survey);
        if let Some(newest) = rewound_from_revision {
            tracing::warn!(
                newest_stored_revision = newest,
                revision = ?survey.revision(),
                "etcd is below the newest stored snapshot of the same cluster id (restored from an older snapshot?): this snapshot starts a new history, and `latest` follows it"
            );
        }

        let mut failures = Vec::new();
        for candidate in survey.candidates() {
            if cancel.is_cancelled() {
                return Err(SnapshotError::Cancelled);
            }
            let attempt = Attempt {
                survey: &survey,
                candidate,
                id: SnapshotId::new(created_at, candidate.revision),
                label: label.clone(),
                created_at,
                started,
                previous_cluster_id: previous_cluster_id.clone(),
                rewound_from_revision,
            };
            (hooks.on_attempt)(&attempt.id);
            let span =
                tracing::info_span!("snapshot", id = %attempt.id, endpoint = %candidate.endpoint);
            match self
                .stream_from(&attempt, progress, hooks, cancel)
                .instrument(span)
                .await
            {
                Ok(manifest) => return Ok(SnapshotOutcome::Taken(Box::new(manifest))),
                Err(error) if error.is_source_failure() && !cancel.is_cancelled() => {
                    tracing::warn!(endpoint = %candidate.endpoint, %error, "snapshot stream failed; trying the next endpoint");
                    failures.push(format!("{}: {error}", candidate.endpoint));
                    progress.raw_bytes.store(0, Ordering::Relaxed);
                    progress.stored_bytes.store(0, Ordering::Relaxed);
                }
                Err(error) => return Err(error),
            }
        }
        Err(SnapshotError::AllEndpointsFailed(failures.join("; ")))
    }

    /// Streams one attempt from its member, takes the bundles, commits the manifest.
    async fn stream_from(
        &self,
        attempt: &Attempt<'_>,
        progress: &ShipProgress,
        hooks: SnapshotHooks<'_>,
        cancel: &CancellationToken,
    ) -> Result<SnapshotManifest, SnapshotError> {
        let (id, candidate) = (&attempt.id, attempt.candidate);
        if matches!(
            is_committed(&self.store, &self.layout, id, cancel).await,
            Ok(true)
        ) {
            return Err(TransportError::AlreadyExists {
                id: id.clone(),
                key: self.layout.manifest_path(id).to_string(),
            }
            .into());
        }
        // Everything this attempt writes goes to a folder of its own: another attempt with the
        // same id (a second producer in the same second) can never overwrite it, nor this one
        // what another committed.
        let attempt_token = AttemptToken::random();
        tracing::info!(
            revision = candidate.revision,
            leader = candidate.is_leader(),
            "streaming snapshot"
        );
        let kubernetes = self.read_shape(candidate, cancel).await;
        let chunks = self
            .source
            .open_snapshot(&candidate.endpoint, cancel)
            .await?;
        // The snapshot is the member's database file: its size gives progress an ETA.
        progress.expected_raw_bytes.store(
            u64::try_from(candidate.db_size).unwrap_or(0),
            Ordering::Relaxed,
        );
        let name = attempt_token.object_name(&self.upload.stored_name(DATA_OBJECT_NAME));
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
            Some(plan) => match self
                .take_bundles(plan, attempt.survey, id, &attempt_token, cancel)
                .await
            {
                Ok(nodes) => nodes,
                Err(error) => {
                    self.remove_uncommitted(id, &attempt_token).await;
                    return Err(error);
                }
            },
            None => Vec::new(),
        };
        let mut manifest =
            build_manifest(&self.cluster, attempt, data, nodes, kubernetes, producer());
        manifest.etcd.replication_generation = (hooks.replication_generation)(candidate.revision);
        if let Err(error) = commit_manifest(
            &self.store,
            &self.layout,
            self.signer.as_deref(),
            &mut manifest,
            cancel,
        )
        .await
        {
            // Only this attempt's folder: a manifest that exists names another attempt's (or,
            // after a lost answer, this one's: then nothing is removed).
            self.remove_uncommitted(id, &attempt_token).await;
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

    /// The Kubernetes cluster's shape at the attempt's revision, from the member streamed from.
    /// Never fails the snapshot: the data comes first, and a shape that cannot be read is
    /// logged and left out.
    async fn read_shape(
        &self,
        candidate: &EndpointStatus,
        cancel: &CancellationToken,
    ) -> Option<ClusterShape> {
        let prefix = &self.source.config.kubernetes_prefix;
        match self
            .source
            .read_cluster_shape(&candidate.endpoint, prefix, candidate.revision, cancel)
            .await
        {
            Ok(Some(shape)) => {
                if !shape.unreadable.is_empty() {
                    tracing::warn!(unreadable = ?shape.unreadable, "parts of the cluster's shape could not be read");
                }
                Some(shape)
            }
            Ok(None) => {
                tracing::debug!(%prefix, "no Kubernetes objects in etcd: no cluster shape recorded");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the cluster's shape; the snapshot is taken without it");
                None
            }
        }
    }

    /// Best effort: deletes what a failed attempt already stored. It has no manifest, so it is
    /// invisible anyway; retention would remove it after its grace period.
    async fn remove_uncommitted(&self, id: &SnapshotId, attempt: &AttemptToken) {
        // Not the run's token: a run stopped by shutdown is cleaned up too, after that token
        // fired. The deadline bounds the removal instead.
        let never = CancellationToken::new();
        let removal = delete_uncommitted(&self.store, &self.layout, id, attempt, &never);
        let outcome = tokio::time::timeout(CLEANUP_DEADLINE, removal)
            .await
            .unwrap_or(Err(TransportError::Cancelled));
        match outcome {
            Ok(deleted) => tracing::debug!(deleted, "the failed snapshot's objects were removed"),
            Err(error) => {
                tracing::warn!(%error, "could not remove the failed snapshot's objects; retention will remove them")
            }
        }
    }
}
