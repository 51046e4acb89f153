use std::time::Duration;

use chrono::{DateTime, Utc};
use etcd_dr_core::Role;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::{ControlError, DaemonStatus, SnapshotSummary};

mod replication;

use replication::ReplicationMetrics;
pub use replication::GENERATION_BREAK_REASONS;

/// Upper bounds of the snapshot duration histogram, in seconds: from a small test cluster to a
/// multi-GiB production one over a slow link.
const DURATION_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// Every metric etcd-dr exports, in the one registry the daemon builds at start-up.
///
/// Counters and histograms are recorded by the daemon as things happen; gauges that derive from
/// the daemon's state (lag, in progress, store reachable) are refreshed from its
/// [`DaemonStatus`] at each scrape, so they are never stale.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    replication_lag: Gauge,
    last_success: Gauge,
    snapshot_duration: Histogram,
    snapshot_size: IntGaugeVec,
    snapshots: IntCounterVec,
    uploaded_bytes: IntCounter,
    etcd_revision: IntGauge,
    snapshots_stored: IntGauge,
    verify_failures: IntCounter,
    verified_snapshots: IntCounter,
    in_progress: IntGauge,
    store_reachable: IntGauge,
    expected_interval: Gauge,
    failing: IntGauge,
    fenced: IntGauge,
    promotion_state: IntGauge,
    promotion_duration: Gauge,
    snapshots_refused: IntGauge,
    unsigned_allowed: IntGauge,
    unreadable_manifests: IntGauge,
    clock_skew: Gauge,
    upload_leftovers: IntCounterVec,
    replication: ReplicationMetrics,
}

impl Metrics {
    /// Builds the registry with every metric present from the start (labelled ones with every
    /// label value), so dashboards and alerts see zeros rather than nothing.
    pub fn new(role: Role) -> Result<Self, ControlError> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| -> Result<Gauge, ControlError> {
            let metric = Gauge::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let int_gauge = |name: &str, help: &str| -> Result<IntGauge, ControlError> {
            let metric = IntGauge::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, ControlError> {
            let metric = IntCounter::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };

        let replication_lag = gauge(
            "etcd_dr_replication_lag_seconds",
            "With continuous replication: seconds since every revision etcd had was stored (verified, on the secondary). Without: seconds since the newest complete and verified snapshot was created. Since start-up while neither is known.",
        )?;
        let last_success = gauge(
            "etcd_dr_last_success_timestamp_seconds",
            "Unix time of the last snapshot taken (primary) or verified (secondary); 0 before the first.",
        )?;
        let snapshot_duration = Histogram::with_opts(
            HistogramOpts::new(
                "etcd_dr_snapshot_duration_seconds",
                "Time to take and upload a snapshot (primary) or to stream it back and verify it (secondary).",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(snapshot_duration.clone()))?;
        let snapshot_size = IntGaugeVec::new(
            Opts::new(
                "etcd_dr_snapshot_size_bytes",
                "Size of the newest snapshot taken or verified: kind=raw is the plain etcd database, kind=stored the compressed object.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(snapshot_size.clone()))?;
        let snapshots = IntCounterVec::new(
            Opts::new(
                "etcd_dr_snapshots_total",
                "Snapshot runs by result (success, failure, unchanged: skipped because etcd's revision had not moved, busy: refused because another producer held the prefix's producer lease).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(snapshots.clone()))?;
        let uploaded_bytes = counter(
            "etcd_dr_uploaded_bytes_total",
            "Compressed bytes sent to the store, including those of uploads that later failed.",
        )?;
        let etcd_revision = int_gauge(
            "etcd_dr_etcd_revision",
            "etcd revision of the newest snapshot taken (primary) or verified (secondary).",
        )?;
        let snapshots_stored = int_gauge(
            "etcd_dr_snapshots_stored",
            "Complete snapshots in the store at the last listing.",
        )?;
        let verify_failures = counter(
            "etcd_dr_verify_failures_total",
            "Stored snapshots that did not match their manifest when streamed back.",
        )?;
        let verified_snapshots = counter(
            "etcd_dr_verified_snapshots_total",
            "Stored snapshots streamed back and found to match their manifest.",
        )?;
        let in_progress = int_gauge(
            "etcd_dr_snapshot_in_progress",
            "1 while a snapshot is being taken or verified.",
        )?;
        let store_reachable = int_gauge(
            "etcd_dr_store_reachable",
            "1 when the last check reached the store, else 0.",
        )?;
        let expected_interval = gauge(
            "etcd_dr_snapshot_interval_seconds",
            "Expected time between snapshots (the primary's schedule); alerts compare the lag with it.",
        )?;
        let failing = int_gauge(
            "etcd_dr_failing",
            "1 while the last snapshot or poll cycle failed, else 0.",
        )?;
        let fenced = int_gauge(
            "etcd_dr_fenced",
            "1 while a promotion fences this cluster's prefix (the primary does not ship), else 0.",
        )?;
        let promotion_state = int_gauge(
            "etcd_dr_promotion_state",
            "State of the current or last promotion: 0 none or dry run, 1 running, 2 succeeded, 3 failed (nothing changed), 4 rolled back, 5 rollback failed.",
        )?;
        let promotion_duration = gauge(
            "etcd_dr_promotion_duration_seconds",
            "Duration of the current (so far) or last promotion; 0 before the first.",
        )?;
        let snapshots_refused = int_gauge(
            "etcd_dr_snapshots_refused",
            "Snapshots in the store whose manifest this instance refuses (unsigned, unknown signer, altered, another cluster, plain where encryption is required) at the last listing; never used.",
        )?;
        let unsigned_allowed = int_gauge(
            "etcd_dr_unsigned_snapshots_allowed",
            "1 when signing.allow_unsigned lets unsigned snapshots through (anyone who can write to the store can plant one), else 0.",
        )?;
        let unreadable_manifests = int_gauge(
            "etcd_dr_unreadable_manifests",
            "Manifests in the store that exist but cannot be read (not JSON, newer format, wrong folder) at the last listing; their snapshots count for nothing.",
        )?;
        let clock_skew = gauge(
            "etcd_dr_snapshot_clock_skew_seconds",
            "For the newest snapshot: the store's commit time (manifest Last-Modified) minus the producer's completed_at. Negative: the producer's clock runs ahead.",
        )?;
        let upload_leftovers = IntCounterVec::new(
            Opts::new(
                "etcd_dr_upload_leftovers_total",
                "Leftovers of interrupted uploads older than retention.incomplete_grace (pending multipart uploads, local staging files) by result: removed, or failed (could not be removed or listed).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(upload_leftovers.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "etcd_dr_build_info",
                "Always 1; the labels give the version and role of this etcd-dr.",
            ),
            &["version", "role"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        let replication = ReplicationMetrics::register(&registry)?;

        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), role.as_str()])
            .set(1);
        for kind in ["raw", "stored"] {
            snapshot_size.with_label_values(&[kind]).set(0);
        }
        for result in ["success", "failure", "unchanged", "busy"] {
            snapshots.with_label_values(&[result]).reset();
        }
        for result in ["removed", "failed"] {
            upload_leftovers.with_label_values(&[result]).reset();
        }
        Ok(Self {
            registry,
            replication_lag,
            last_success,
            snapshot_duration,
            snapshot_size,
            snapshots,
            uploaded_bytes,
            etcd_revision,
            snapshots_stored,
            verify_failures,
            verified_snapshots,
            in_progress,
            store_reachable,
            expected_interval,
            failing,
            fenced,
            promotion_state,
            promotion_duration,
            snapshots_refused,
            unsigned_allowed,
            unreadable_manifests,
            clock_skew,
            upload_leftovers,
            replication,
        })
    }

    /// Whether continuous replication is on.
    pub fn set_replication_enabled(&self, enabled: bool) {
        self.replication.set_enabled(enabled);
    }

    /// A replication generation ended, for `reason` (one of [`GENERATION_BREAK_REASONS`]).
    pub fn replication_generation_break(&self, reason: &str) {
        self.replication.generation_break(reason);
    }

    /// The registry, for anything else that wants to register metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// How many snapshots in the store the last listing refused.
    pub fn set_snapshots_refused(&self, count: usize) {
        self.snapshots_refused
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Whether unsigned snapshots are accepted (`signing.allow_unsigned`).
    pub fn set_unsigned_allowed(&self, allowed: bool) {
        self.unsigned_allowed.set(i64::from(allowed));
    }

    /// The expected time between snapshots, for the lag alert.
    pub fn set_expected_interval(&self, interval: Duration) {
        self.expected_interval.set(interval.as_secs_f64());
    }

    /// A snapshot was taken and committed (primary).
    pub fn snapshot_taken(&self, snapshot: &SnapshotSummary) {
        self.snapshots.with_label_values(&["success"]).inc();
        self.snapshot_duration.observe(snapshot.duration_seconds);
        self.record_newest(snapshot);
        self.last_success
            .set(timestamp_seconds(snapshot.completed_at));
    }

    /// A snapshot run found etcd unchanged and stored nothing.
    pub fn snapshot_unchanged(&self) {
        self.snapshots.with_label_values(&["unchanged"]).inc();
    }

    /// A snapshot run was refused: another producer holds the prefix's producer lease.
    pub fn snapshot_skipped_busy(&self) {
        self.snapshots.with_label_values(&["busy"]).inc();
    }

    /// A snapshot run failed.
    pub fn snapshot_failed(&self) {
        self.snapshots.with_label_values(&["failure"]).inc();
    }

    /// Compressed bytes that went to the store.
    pub fn add_uploaded_bytes(&self, bytes: u64) {
        self.uploaded_bytes.inc_by(bytes);
    }

    /// A stored snapshot was streamed back and matched its manifest (secondary), taking
    /// `seconds`.
    pub fn snapshot_verified(&self, snapshot: &SnapshotSummary, seconds: f64, at: DateTime<Utc>) {
        self.verified_snapshots.inc();
        self.snapshot_duration.observe(seconds);
        self.record_newest(snapshot);
        self.last_success.set(timestamp_seconds(at));
    }

    /// A stored snapshot did not match its manifest.
    pub fn verify_failed(&self) {
        self.verify_failures.inc();
    }

    /// The number of unreadable manifests found by the last listing.
    pub fn set_unreadable_manifests(&self, count: usize) {
        self.unreadable_manifests
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The newest snapshot's clock skew (store commit time minus producer's completed_at).
    pub fn set_clock_skew(&self, seconds: f64) {
        self.clock_skew.set(seconds);
    }

    /// A sweep of upload leftovers removed `removed` and failed on `failed`.
    pub fn upload_leftovers_swept(&self, removed: usize, failed: usize) {
        for (result, count) in [("removed", removed), ("failed", failed)] {
            self.upload_leftovers
                .with_label_values(&[result])
                .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
        }
    }

    /// The number of complete snapshots found by the last listing.
    pub fn set_snapshots_stored(&self, count: usize) {
        self.snapshots_stored
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Sizes and revision of the newest snapshot known (taken, verified, or found at start-up).
    pub fn record_newest(&self, snapshot: &SnapshotSummary) {
        self.snapshot_size
            .with_label_values(&["raw"])
            .set(i64::try_from(snapshot.raw_bytes).unwrap_or(i64::MAX));
        self.snapshot_size
            .with_label_values(&["stored"])
            .set(i64::try_from(snapshot.stored_bytes).unwrap_or(i64::MAX));
        self.etcd_revision.set(snapshot.revision);
    }

    /// Refreshes the gauges that derive from the daemon's state.
    pub fn observe_status(&self, status: &DaemonStatus, now: DateTime<Utc>) {
        self.replication_lag
            .set(status.replication_lag_seconds(now));
        self.in_progress.set(i64::from(status.in_flight.is_some()));
        self.store_reachable
            .set(i64::from(status.store.reachable == Some(true)));
        self.failing.set(i64::from(status.failing_since.is_some()));
        self.fenced.set(i64::from(status.fenced == Some(true)));
        self.replication.observe(status.replication.as_ref());
        match &status.promotion {
            Some(promotion) => {
                self.promotion_state.set(promotion.state_code);
                self.promotion_duration.set(promotion.duration_seconds);
            }
            None => {
                self.promotion_state.set(0);
                self.promotion_duration.set(0.0);
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Result<String, ControlError> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer)
            .map_err(|e| ControlError::Metrics(prometheus::Error::Msg(e.to_string())))
    }

    /// The name of every metric family in the registry (histograms without their
    /// `_bucket`/`_sum`/`_count` suffixes).
    pub fn family_names(&self) -> Vec<String> {
        self.registry
            .gather()
            .iter()
            .map(|family| family.name().to_string())
            .collect()
    }
}

fn timestamp_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

#[cfg(test)]
mod tests;
