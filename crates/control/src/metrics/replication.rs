//! The continuous replication metrics (`etcd_dr_replication_…`), part of the one registry.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::{ControlError, ReplicationStatus};

/// Why a generation ended, as `etcd_dr_replication_generation_breaks_total` labels it (the
/// replication crate's `GenerationBreak::kind`).
pub const GENERATION_BREAK_REASONS: [&str; 5] = [
    "compacted",
    "gap",
    "regression",
    "cluster_changed",
    "watch_cancelled",
];

/// The `etcd_dr_replication_…` families.
#[derive(Clone)]
pub(super) struct ReplicationMetrics {
    enabled: IntGauge,
    captured_revision: IntGauge,
    stored_revision: IntGauge,
    restorable_revision: IntGauge,
    segments: IntCounter,
    segment_bytes: IntCounter,
    heartbeats_refused: IntCounter,
    generation_breaks: IntCounterVec,
}

impl ReplicationMetrics {
    pub(super) fn register(registry: &Registry) -> Result<Self, ControlError> {
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
        let generation_breaks = IntCounterVec::new(
            Opts::new(
                "etcd_dr_replication_generation_breaks_total",
                "Replication generations that ended, by reason (compacted, gap, regression, cluster_changed, watch_cancelled); each needs a full snapshot to start a new one.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(generation_breaks.clone()))?;
        for reason in GENERATION_BREAK_REASONS {
            generation_breaks.with_label_values(&[reason]).reset();
        }
        Ok(Self {
            enabled: int_gauge(
                "etcd_dr_replication_enabled",
                "1 when continuous replication is on ([replication] enabled = true), else 0.",
            )?,
            captured_revision: int_gauge(
                "etcd_dr_replication_captured_revision",
                "Newest etcd revision received from the watch (primary); 0 elsewhere.",
            )?,
            stored_revision: int_gauge(
                "etcd_dr_replication_stored_revision",
                "Newest revision durably stored in segments (primary) or stored and chain-verified (secondary).",
            )?,
            restorable_revision: int_gauge(
                "etcd_dr_replication_restorable_revision",
                "Newest revision a restore can reach from the store now (a full snapshot and the chain after it).",
            )?,
            segments: counter(
                "etcd_dr_replication_segments_total",
                "Segments stored (primary) or chain-verified (secondary).",
            )?,
            segment_bytes: counter(
                "etcd_dr_replication_segment_bytes_total",
                "Bytes of segments stored (primary).",
            )?,
            heartbeats_refused: counter(
                "etcd_dr_replication_heartbeats_refused_total",
                "Primary heartbeats the secondary refused (unsigned, unknown signer, another cluster, changed after signing); its lag is not measured from them.",
            )?,
            generation_breaks,
        })
    }

    pub(super) fn set_enabled(&self, enabled: bool) {
        self.enabled.set(i64::from(enabled));
    }

    pub(super) fn generation_break(&self, reason: &str) {
        self.generation_breaks.with_label_values(&[reason]).inc();
    }

    /// Gauges from the status; counters moved up to the status's totals since start-up.
    pub(super) fn observe(&self, status: Option<&ReplicationStatus>) {
        let Some(status) = status else { return };
        self.captured_revision.set(status.captured_revision);
        self.stored_revision.set(status.stored_revision);
        self.restorable_revision
            .set(status.restorable_revision.unwrap_or(0));
        let catch_up = |counter: &IntCounter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        catch_up(&self.segments, status.segments);
        catch_up(&self.segment_bytes, status.segment_bytes);
        catch_up(&self.heartbeats_refused, status.heartbeats_refused);
    }
}
