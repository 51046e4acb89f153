//! etcd generations of full snapshots: the run of snapshots taken from one etcd cluster id. A
//! snapshot whose etcd cluster id differs from the one committed before it must start a new
//! generation by naming that id in its signed `etcd.previous_cluster_id` (the producer writes
//! it when it sees the id change: an etcd rebuilt or restored into a new cluster). Otherwise it
//! is another etcd's snapshot (one signed for the same cluster name elsewhere and copied in, or
//! an old generation's copied back) and every reader refuses it.

use chrono::{DateTime, Utc};
use etcd_dr_core::SnapshotManifest;

use crate::{Catalog, RefusedSnapshot};

impl Catalog {
    /// Moves every snapshot that changes the etcd cluster id without starting a new generation
    /// to [`Catalog::refused`]. Snapshots are taken in commit order (the store's clock); each is
    /// compared with the last one accepted, so a refused snapshot never disturbs the ones after
    /// it.
    pub(crate) fn refuse_undeclared_generations(&mut self) {
        let mut by_commit: Vec<(DateTime<Utc>, SnapshotManifest)> =
            std::mem::take(&mut self.snapshots)
                .into_iter()
                .map(|m| (self.commit_time(&m), m))
                .collect();
        by_commit.sort_by(|(a_at, a), (b_at, b)| (a_at, &a.id).cmp(&(b_at, &b.id)));
        let mut current: Option<(String, String)> = None;
        for (committed_at, manifest) in by_commit {
            let etcd = &manifest.etcd;
            match &current {
                Some((cluster_id, previous))
                    if *cluster_id != etcd.cluster_id
                        && etcd.previous_cluster_id.as_ref() != Some(cluster_id) =>
                {
                    self.refused.push(RefusedSnapshot {
                        reason: format!(
                            "its etcd cluster id {} differs from {cluster_id} of the snapshot committed before it ({previous}) and it does not start a new etcd generation (its signed etcd.previous_cluster_id does not name {cluster_id}): the snapshot of another etcd",
                            escape_id(&etcd.cluster_id)
                        ),
                        id: manifest.id.clone(),
                        committed_at,
                    });
                    self.committed_at.remove(&manifest.id);
                }
                _ => {
                    current = Some((etcd.cluster_id.clone(), manifest.id.to_string()));
                    self.snapshots.push(manifest);
                }
            }
        }
    }
}

/// An etcd cluster id from a manifest, safe in a message (hex in practice).
fn escape_id(id: &str) -> String {
    id.chars().take(40).flat_map(char::escape_debug).collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn manifest(
        cluster_id: &str,
        previous: Option<&str>,
        revision: i64,
        at: DateTime<Utc>,
    ) -> SnapshotManifest {
        let mut manifest: SnapshotManifest = serde_json::from_value(serde_json::json!({
            "format_version": 1,
            "id": etcd_dr_core::SnapshotId::new(at, revision).to_string(),
            "cluster": "prod",
            "etcd": {"cluster_id": cluster_id, "version": "3.5.16", "revision": revision, "raft_index": 1,
                     "raft_term": 1, "source_endpoint": "x", "source_member_id": "1", "members": []},
            "raw": {"size": 1, "sha256": "00"},
            "etcd_sha256": "00",
            "stored": {"name": "etcd.db.zst", "size": 1, "sha256": "00", "compression": {"type": "zstd", "level": 3}},
            "created_at": at.to_rfc3339(),
            "completed_at": at.to_rfc3339(),
            "duration_seconds": 1.0,
            "producer": {"tool": "t", "host": "h"},
        }))
        .unwrap();
        manifest.etcd.previous_cluster_id = previous.map(str::to_string);
        manifest
    }

    fn catalog(manifests: &[&SnapshotManifest]) -> Catalog {
        let mut catalog = Catalog::default();
        for manifest in manifests {
            catalog
                .committed_at
                .insert(manifest.id.clone(), manifest.completed_at);
            catalog.snapshots.push((*manifest).clone());
        }
        catalog.refuse_undeclared_generations();
        catalog.order();
        catalog
    }

    #[test]
    fn a_new_generation_is_accepted_only_when_it_names_the_cluster_id_before_it() {
        let at = |minutes: i64| {
            Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
                + chrono::Duration::minutes(minutes)
        };
        let old = manifest("c1", None, 900, at(0));
        let declared = manifest("c2", Some("c1"), 10, at(10));
        let next = manifest("c2", None, 20, at(20));
        let accepted = catalog(&[&old, &declared, &next]);
        assert!(accepted.refused.is_empty(), "{:?}", accepted.refused);
        assert_eq!(accepted.newest().unwrap().id, next.id);

        // Another etcd's snapshot (signed for the same cluster name, copied in), an old
        // generation's copied back, and one that names the wrong predecessor: refused, and the
        // genuine snapshot after them still accepted.
        let foreign = manifest("f9", None, 5000, at(30));
        let copied_back = manifest("c1", None, 901, at(40));
        let wrong = manifest("c3", Some("f9"), 7, at(50));
        let later = manifest("c2", None, 30, at(60));
        let checked = catalog(&[
            &old,
            &declared,
            &next,
            &foreign,
            &copied_back,
            &wrong,
            &later,
        ]);
        let refused: Vec<_> = checked.refused.iter().map(|r| r.id.clone()).collect();
        assert_eq!(refused, [foreign.id.clone(), copied_back.id, wrong.id]);
        assert!(
            checked.refused[0].reason.contains(
                "its etcd cluster id f9 differs from c2 of the snapshot committed before it"
            ),
            "{}",
            checked.refused[0].reason
        );
        assert!(!checked.committed_at.contains_key(&foreign.id));
        assert_eq!(checked.newest().unwrap().id, later.id);
        assert_eq!(checked.snapshots.len(), 4);

        // Once the old generation is pruned, the first snapshot of the new one stands alone.
        let pruned = catalog(&[&declared, &next]);
        assert!(pruned.refused.is_empty());
    }
}
