use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use etcd_dr_core::{ConfigProblems, SnapshotId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::intact::{newest_intact, IntactCheck};
use crate::{Catalog, SnapshotLayout, TransportError};

/// How long snapshots are kept (`[retention]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Keep at most this many complete snapshots (the newest ones).
    #[serde(default)]
    pub keep_last: Option<usize>,
    /// Delete complete snapshots older than this (e.g. `7d`).
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Delete uncommitted leftovers (objects without a manifest) older than this.
    #[serde(default = "default_incomplete_grace", with = "humantime_serde")]
    pub incomplete_grace: Duration,
}

fn default_incomplete_grace() -> Duration {
    Duration::from_secs(6 * 3600)
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            keep_last: None,
            max_age: None,
            incomplete_grace: default_incomplete_grace(),
        }
    }
}

impl RetentionConfig {
    /// Reports bad values under `field` (e.g. `retention`).
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        if self.keep_last == Some(0) {
            problems.push(
                format!("{field}.keep_last"),
                "must be at least 1 (the newest snapshot is always kept); remove it to keep any number",
            );
        }
        if self.max_age == Some(Duration::ZERO) {
            problems.push(
                format!("{field}.max_age"),
                "must be longer than 0s, e.g. \"7d\"",
            );
        }
        if self.incomplete_grace < Duration::from_secs(600) {
            problems.push(
                format!("{field}.incomplete_grace"),
                "must be at least 10m so that uploads in progress are never pruned",
            );
        }
    }
}

/// What retention would delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Complete snapshots to delete (manifest first, then data).
    pub expired: Vec<SnapshotId>,
    /// Uncommitted leftovers to delete.
    pub leftovers: Vec<SnapshotId>,
}

impl RetentionPlan {
    /// True when there is nothing to delete.
    pub fn is_empty(&self) -> bool {
        self.expired.is_empty() && self.leftovers.is_empty()
    }
}

/// Decides what to delete. A complete snapshot goes when it is beyond `keep_last` or older than
/// `max_age` (by the store's commit time, not the producer's clock). Never deleted, whatever
/// the policy says: the newest complete snapshot, and `newest_intact`, the newest one known
/// to match its manifest ([`newest_intact`](crate::newest_intact)). Without a known intact
/// snapshot no complete snapshot is deleted at all.
pub fn plan_retention(
    catalog: &Catalog,
    policy: &RetentionConfig,
    now: DateTime<Utc>,
    newest_intact: Option<&SnapshotId>,
) -> RetentionPlan {
    let mut plan = RetentionPlan::default();
    let count = catalog.snapshots.len();
    // `snapshots` is oldest first; the last one is the newest and always stays.
    for (index, manifest) in catalog
        .snapshots
        .iter()
        .enumerate()
        .take(count.saturating_sub(1))
    {
        if newest_intact.is_none_or(|intact| intact == &manifest.id) {
            continue;
        }
        let newer = count - 1 - index;
        let beyond_count = policy.keep_last.is_some_and(|keep| newer >= keep);
        let too_old = policy.max_age.is_some_and(|max| {
            now.signed_duration_since(catalog.commit_time(manifest))
                .to_std()
                .is_ok_and(|age| age > max)
        });
        if beyond_count || too_old {
            plan.expired.push(manifest.id.clone());
        }
    }
    // Snapshots this reader refuses (written before manifests were signed, or planted) go once
    // they were committed before every snapshot the policy keeps (the store's clock); their
    // ids come from the listing.
    let has_policy = policy.keep_last.is_some() || policy.max_age.is_some();
    let oldest_kept = catalog
        .snapshots
        .iter()
        .filter(|m| !plan.expired.contains(&m.id))
        .map(|m| catalog.commit_time(m))
        .min();
    if let (true, Some(oldest_kept)) = (has_policy, oldest_kept) {
        for refused in &catalog.refused {
            if refused.committed_at < oldest_kept {
                plan.expired.push(refused.id.clone());
            }
        }
    }
    for leftover in &catalog.incomplete {
        let age = now.signed_duration_since(leftover.last_modified).to_std();
        if age.is_ok_and(|age| age > policy.incomplete_grace) {
            plan.leftovers.push(leftover.id.clone());
        }
    }
    plan
}

/// Plans retention the safe way: when the policy would delete complete snapshots, the stored
/// objects are read back newest first until one matches its manifest, and that one is kept
/// with everything newer. Nothing is read when nothing would be deleted.
pub async fn plan_verified_retention(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    catalog: &Catalog,
    policy: &RetentionConfig,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> Result<(RetentionPlan, IntactCheck), TransportError> {
    let newest = catalog.newest().map(|m| m.id.clone());
    let optimistic = plan_retention(catalog, policy, now, newest.as_ref());
    if optimistic.expired.is_empty() {
        return Ok((optimistic, IntactCheck::default()));
    }
    let check = newest_intact(store, layout, catalog, cancel).await?;
    let plan = plan_retention(catalog, policy, now, check.newest_intact.as_ref());
    Ok((plan, check))
}

/// Deletes what the plan says: for each snapshot the manifest first (so a half-deleted snapshot
/// is never visible as complete), then the rest of its folder. Returns what was deleted.
pub async fn apply_retention(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    plan: &RetentionPlan,
    cancel: &CancellationToken,
) -> Result<RetentionPlan, TransportError> {
    let mut done = RetentionPlan::default();
    for id in &plan.expired {
        if cancel.is_cancelled() {
            return Err(TransportError::Cancelled);
        }
        delete_if_present(store, &layout.manifest_path(id)).await?;
        delete_folder(store, layout, id).await?;
        tracing::info!(snapshot = %id, "retention deleted snapshot");
        done.expired.push(id.clone());
    }
    for id in &plan.leftovers {
        if cancel.is_cancelled() {
            return Err(TransportError::Cancelled);
        }
        // A manifest may have landed since the listing: then it is a snapshot, not a leftover.
        if store.head(&layout.manifest_path(id)).await.is_ok() {
            continue;
        }
        delete_folder(store, layout, id).await?;
        tracing::info!(snapshot = %id, "retention deleted uncommitted leftover");
        done.leftovers.push(id.clone());
    }
    Ok(done)
}

async fn delete_folder(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    id: &SnapshotId,
) -> Result<(), TransportError> {
    use futures::TryStreamExt;
    let folder = layout.snapshot_dir(id);
    let objects: Vec<_> = store
        .list(Some(&folder))
        .try_collect()
        .await
        .map_err(|e| TransportError::store("list", &folder, e))?;
    for object in objects {
        delete_if_present(store, &object.location).await?;
    }
    Ok(())
}

async fn delete_if_present(store: &Arc<dyn ObjectStore>, key: &Path) -> Result<(), TransportError> {
    match store.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(TransportError::store("delete", key, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IncompleteSnapshot;
    use chrono::TimeZone;
    use etcd_dr_core::SnapshotManifest;

    fn manifest_at(hours_ago: i64, now: DateTime<Utc>) -> SnapshotManifest {
        let json = serde_json::json!({
            "format_version": 1,
            "id": SnapshotId::new(now - chrono::Duration::hours(hours_ago), 100 - hours_ago).to_string(),
            "cluster": "prod",
            "etcd": {"cluster_id": "1", "version": "3.5.16", "revision": 1, "raft_index": 1, "raft_term": 1,
                     "source_endpoint": "x", "source_member_id": "1", "members": []},
            "raw": {"size": 1, "sha256": "00"},
            "etcd_sha256": "00",
            "stored": {"name": "etcd.db.zst", "size": 1, "sha256": "00", "compression": {"type": "zstd", "level": 3}},
            "created_at": (now - chrono::Duration::hours(hours_ago)).to_rfc3339(),
            "completed_at": now.to_rfc3339(),
            "duration_seconds": 1.0,
            "producer": {"tool": "t", "host": "h"},
        });
        serde_json::from_value(json).unwrap()
    }

    /// Snapshots committed (by the store's clock) when their producer says it created them.
    fn catalog(hours_ago: &[i64], now: DateTime<Utc>) -> Catalog {
        let snapshots: Vec<SnapshotManifest> =
            hours_ago.iter().map(|h| manifest_at(*h, now)).collect();
        Catalog {
            committed_at: snapshots
                .iter()
                .map(|m| (m.id.clone(), m.created_at))
                .collect(),
            snapshots,
            ..Catalog::default()
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let catalog = catalog(&[5, 4, 3, 2, 1], now());
        let policy = RetentionConfig {
            keep_last: Some(2),
            ..RetentionConfig::default()
        };
        let plan = plan_retention(&catalog, &policy, now(), catalog.newest().map(|m| &m.id));
        let ids: Vec<_> = catalog.snapshots.iter().map(|m| m.id.clone()).collect();
        assert_eq!(plan.expired, ids[..3].to_vec());
    }

    #[test]
    fn max_age_never_deletes_the_newest() {
        let catalog = catalog(&[50, 40, 30], now());
        let policy = RetentionConfig {
            max_age: Some(Duration::from_secs(3600)),
            ..RetentionConfig::default()
        };
        let plan = plan_retention(&catalog, &policy, now(), catalog.newest().map(|m| &m.id));
        assert_eq!(plan.expired.len(), 2);
        assert!(!plan.expired.contains(&catalog.snapshots[2].id));
    }

    #[test]
    fn no_policy_deletes_nothing() {
        let catalog = catalog(&[3, 2, 1], now());
        assert!(plan_retention(
            &catalog,
            &RetentionConfig::default(),
            now(),
            catalog.newest().map(|m| &m.id)
        )
        .is_empty());
    }

    #[test]
    fn refused_snapshots_go_only_when_older_than_everything_kept() {
        let mut catalog = catalog(&[5, 3, 1], now());
        for hours in [6, 4, 0] {
            catalog.refused.push(crate::RefusedSnapshot {
                id: SnapshotId::new(now() - chrono::Duration::hours(hours), 200 + hours),
                reason: "it is not signed".into(),
                committed_at: now() - chrono::Duration::hours(hours),
            });
        }
        let newest = catalog.newest().map(|m| m.id.clone());
        assert!(plan_retention(
            &catalog,
            &RetentionConfig::default(),
            now(),
            newest.as_ref()
        )
        .is_empty());
        let policy = RetentionConfig {
            keep_last: Some(2),
            ..RetentionConfig::default()
        };
        let plan = plan_retention(&catalog, &policy, now(), newest.as_ref());
        // The oldest trusted one expires; of the refused, the two older than the oldest kept
        // (3 h) go, the newest (planted, say) stays for an operator to look at.
        assert_eq!(
            plan.expired,
            [
                catalog.snapshots[0].id.clone(),
                catalog.refused[0].id.clone(),
                catalog.refused[1].id.clone()
            ]
        );
    }

    #[test]
    fn leftovers_wait_for_the_grace_period() {
        let mut catalog = catalog(&[1], now());
        for (hours, rev) in [(1, 7), (10, 8)] {
            catalog.incomplete.push(IncompleteSnapshot {
                id: SnapshotId::new(now() - chrono::Duration::hours(hours), rev),
                objects: vec![],
                last_modified: now() - chrono::Duration::hours(hours),
            });
        }
        let plan = plan_retention(
            &catalog,
            &RetentionConfig::default(),
            now(),
            catalog.newest().map(|m| &m.id),
        );
        assert_eq!(plan.leftovers, vec![catalog.incomplete[1].id.clone()]);
    }

    #[test]
    fn the_newest_intact_snapshot_stays_and_without_one_nothing_goes() {
        let catalog = catalog(&[5, 4, 3, 2, 1], now());
        let ids: Vec<_> = catalog.snapshots.iter().map(|m| m.id.clone()).collect();
        let policy = RetentionConfig {
            keep_last: Some(1),
            ..RetentionConfig::default()
        };
        // The two newest are corrupt: the third newest is the newest intact one. The newest
        // stays whatever it holds; the corrupt one beyond `keep_last` goes.
        let plan = plan_retention(&catalog, &policy, now(), Some(&ids[2]));
        assert_eq!(
            plan.expired,
            vec![ids[0].clone(), ids[1].clone(), ids[3].clone()]
        );
        assert!(plan_retention(&catalog, &policy, now(), None)
            .expired
            .is_empty());
    }

    #[test]
    fn max_age_goes_by_the_stores_commit_time_not_the_producers_clock() {
        // A producer two days behind: created_at says 48 h old, the store committed it now.
        let mut catalog = catalog(&[50, 49, 48], now());
        for manifest in &catalog.snapshots {
            catalog.committed_at.insert(manifest.id.clone(), now());
        }
        let first = catalog.snapshots[0].id.clone();
        catalog
            .committed_at
            .insert(first, now() - chrono::Duration::hours(50));
        let policy = RetentionConfig {
            max_age: Some(Duration::from_secs(24 * 3600)),
            ..RetentionConfig::default()
        };
        let newest = catalog.newest().map(|m| m.id.clone());
        let plan = plan_retention(&catalog, &policy, now(), newest.as_ref());
        assert_eq!(plan.expired, vec![catalog.snapshots[0].id.clone()]);
    }

    #[test]
    fn validation_names_fields() {
        let mut problems = ConfigProblems::default();
        RetentionConfig {
            keep_last: Some(0),
            max_age: Some(Duration::ZERO),
            incomplete_grace: Duration::from_secs(1),
        }
        .validate("retention", &mut problems);
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "retention.keep_last",
                "retention.max_age",
                "retention.incomplete_grace"
            ]
        );
    }
}
