//! Which full snapshots a generation's segments may be replayed onto.
//!
//! A revision range alone cannot say it: an etcd restored from an older snapshot under the same
//! cluster id numbers a new history over the old one's revisions, so a snapshot of one history
//! can lie inside the revision range of a generation of the other. Replaying one onto the other
//! would silently mix them. So a snapshot is a base for a generation when:
//! - its manifest names the generation (`etcd.replication_generation`, signed): the daemon
//!   writes the generation a snapshot starts, or the one whose watch stayed open, unbroken,
//!   while the snapshot was taken (an etcd restored under a watch breaks it);
//! - its manifest names no generation (a one-off `etcd-dr snapshot`, another producer): it lies
//!   above the generation's base and was started while the generation was the newest one
//!   (after it started, before the next one did). Its producer's clock decides: a snapshot of
//!   the old history started before the rewind that ended the old generation, so before the
//!   next generation started.

use chrono::{DateTime, Utc};
use etcd_dr_core::SnapshotManifest;

use crate::GenerationId;

/// What decides whether a snapshot is a base for a generation.
#[derive(Debug, Clone, Copy)]
pub struct BaseCandidate<'a> {
    /// The revision the snapshot was recorded at.
    pub revision: i64,
    /// When it was started (its producer's clock).
    pub created_at: DateTime<Utc>,
    /// The generation its manifest names, if any.
    pub generation: Option<&'a str>,
}

impl<'a> From<&'a SnapshotManifest> for BaseCandidate<'a> {
    fn from(manifest: &'a SnapshotManifest) -> Self {
        Self {
            revision: manifest.etcd.revision,
            created_at: manifest.created_at,
            generation: manifest.etcd.replication_generation.as_deref(),
        }
    }
}

impl BaseCandidate<'_> {
    /// Whether `generation`'s segments may be replayed onto this snapshot; `next` is the
    /// generation that started after it, if any (module docs).
    pub fn serves(&self, generation: &GenerationId, next: Option<&GenerationId>) -> bool {
        if self.revision < generation.base_revision() {
            return false;
        }
        match self.generation {
            Some(named) => named == generation.to_string(),
            None => {
                self.revision > generation.base_revision()
                    && self.created_at >= generation.started()
                    && next.is_none_or(|next| self.created_at < next.started())
            }
        }
    }
}

/// The generation after each one: `generations` oldest first.
pub(crate) fn with_next(
    generations: &[GenerationId],
) -> impl Iterator<Item = (&GenerationId, Option<&GenerationId>)> {
    generations
        .iter()
        .enumerate()
        .map(|(i, generation)| (generation, generations.get(i + 1)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A manifest of a snapshot at `revision` started at `created_at` (RFC 3339).
    pub(crate) fn manifest(revision: i64, created_at: &str) -> SnapshotManifest {
        let id = etcd_dr_core::SnapshotId::new(created_at.parse().unwrap(), revision);
        serde_json::from_value(serde_json::json!({
            "format_version": 2,
            "id": id.to_string(),
            "cluster": "prod",
            "etcd": {
                "cluster_id": "cdf818194e3a8c32", "version": "3.5.16", "revision": revision,
                "raft_index": 1, "raft_term": 2, "source_endpoint": "http://127.0.0.1:2379",
                "source_member_id": "8e9e05c52164694d", "members": []
            },
            "raw": {"size": 1, "sha256": "ab".repeat(32)},
            "etcd_sha256": "cd".repeat(32),
            "stored": {"name": "etcd.db.zst", "size": 1, "sha256": "ef".repeat(32), "compression": {"type": "zstd", "level": 3}},
            "created_at": created_at,
            "completed_at": created_at,
            "duration_seconds": 0.0,
            "producer": {"tool": "etcd-dr", "host": "bastion"}
        }))
        .expect("a manifest")
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_named_snapshot_serves_only_the_generation_it_names() {
        let old = GenerationId::new(at("2026-12-02T10:00:00Z"), 40);
        // etcd rewound to revision 21 under the same cluster id: the new history's generation.
        let new = GenerationId::new(at("2026-12-02T10:05:00Z"), 25);
        let old_name = old.to_string();
        let of_old = BaseCandidate {
            revision: 60,
            created_at: at("2026-12-02T10:02:00Z"),
            generation: Some(&old_name),
        };
        assert!(of_old.serves(&old, Some(&new)));
        // Inside the new generation's range, and newer than its base: still not of its history.
        assert!(!of_old.serves(&new, None));
        let new_name = new.to_string();
        let of_new = BaseCandidate {
            revision: 25,
            created_at: at("2026-12-02T10:04:59Z"),
            generation: Some(&new_name),
        };
        assert!(of_new.serves(&new, None));
        assert!(!of_new.serves(&old, Some(&new)));
        // Below the generation's base: never.
        let below = BaseCandidate {
            revision: 24,
            ..of_new
        };
        assert!(!below.serves(&new, None));
    }

    #[test]
    fn an_unnamed_snapshot_serves_the_generation_that_was_newest_when_it_started() {
        let old = GenerationId::new(at("2026-12-02T10:00:00Z"), 40);
        let new = GenerationId::new(at("2026-12-02T10:05:00Z"), 25);
        let before_the_rewind = BaseCandidate {
            revision: 60,
            created_at: at("2026-12-02T10:02:00Z"),
            generation: None,
        };
        assert!(before_the_rewind.serves(&old, Some(&new)));
        assert!(!before_the_rewind.serves(&new, None));
        let after = BaseCandidate {
            revision: 60,
            created_at: at("2026-12-02T10:06:00Z"),
            generation: None,
        };
        assert!(after.serves(&new, None));
        assert!(!after.serves(&old, Some(&new)));
        // At the base revision exactly: only the snapshot the generation names starts it.
        let at_base = BaseCandidate {
            revision: 25,
            ..after
        };
        assert!(!at_base.serves(&new, None));
    }
}
