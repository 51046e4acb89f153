//! Snapshots the daemon refuses (unsigned, unknown signer, altered, another cluster, plain where
//! encryption is required): counted in `etcd_dr_snapshots_refused` at every listing, logged
//! once each.

use std::collections::BTreeSet;
use std::sync::Mutex;

use etcd_dr_core::SnapshotId;
use etcd_dr_transport::Catalog;

use super::DaemonState;

/// The refused snapshots already logged, so that each is logged once, not at every poll.
#[derive(Default)]
pub struct RefusedSnapshots(Mutex<BTreeSet<SnapshotId>>);

impl DaemonState {
    /// Records what a listing refused: the gauge, and an error log for each new one.
    pub fn note_refused(&self, catalog: &Catalog) {
        self.metrics.set_snapshots_refused(catalog.refused.len());
        let mut logged = self
            .refused
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        logged.retain(|id| catalog.refused.iter().any(|r| &r.id == id));
        for refused in &catalog.refused {
            if logged.insert(refused.id.clone()) {
                tracing::error!(
                    id = %refused.id,
                    reason = %refused.reason,
                    "snapshot refused: it is never used; find out who wrote it into the store"
                );
            }
        }
    }
}
