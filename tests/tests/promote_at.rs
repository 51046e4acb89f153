//! Promote to a point in history (`at`) with the local executor: a primary snapshotted by
//! `etcd-dr snapshot`, its later revisions captured into segments beside the snapshot, and the
//! promoter replaying them to exactly the revision asked for before restoring the secondary.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::Client;
use etcd_dr_core::RestorePoint;
use etcd_dr_e2e::kubelet::{dump_member, member_revision};
use etcd_dr_e2e::local_secondary::{this_host, LocalSecondary};
use etcd_dr_e2e::promotion::{
    assert_state, local_store, primary_with_snapshot, promote_locally, record_json,
};
use etcd_dr_e2e::replication_ground::{generation_around, keyspace, CaptureRun, CaptureTarget};
use etcd_dr_e2e::{block_on, EtcdVersion};
use etcd_dr_replication::{CaptureOptions, ReplicationLayout};
use etcd_dr_restore::{PromotionRequest, PromotionState, ReplayEngineName, StepName, StepState};

#[test]
fn a_promotion_at_a_revision_restores_exactly_that_revision() {
    let host = this_host();
    let primary = primary_with_snapshot(&host);
    let snapshot_revision = primary.etcd.revision();
    let generation = generation_around(&primary.dr.list_json()[0]);
    let (endpoints, options) = primary.etcd.connect_parts();
    let store = local_store(primary.store.path());
    let (middle, last, at_middle) = block_on(async move {
        let client = Client::connect(endpoints, Some(options)).await.unwrap();
        let mut writer = client.clone();
        let captured = CaptureTarget {
            store,
            layout: ReplicationLayout::new("", "prod").unwrap(),
            generation,
            base_db: Default::default(),
            base_revision: snapshot_revision,
        };
        let capture = CaptureRun::start(
            client.clone(),
            &captured,
            None,
            CaptureOptions {
                max_segment_age: Duration::from_millis(200),
                ..CaptureOptions::default()
            },
        );
        let mut middle = 0;
        let mut last = 0;
        for i in 0..40 {
            let put = writer
                .put(format!("/registry/after/{}", i % 11), format!("v{i}"), None)
                .await
                .unwrap();
            last = put.header().unwrap().revision();
            if i == 20 {
                middle = last;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        capture
            .stop_when_stored(last, Duration::from_secs(30))
            .await
            .unwrap();
        let at_middle: BTreeMap<Vec<u8>, Vec<u8>> = keyspace(&mut writer, middle)
            .await
            .into_iter()
            .map(|kv| (kv.0, kv.1))
            .collect();
        (middle, last, at_middle)
    });

    let node = LocalSecondary::start(&host);
    let config = node.config(&EtcdVersion::V3_5.bin("etcdutl"));
    // The dry run replays in a throw-away etcd, the promotion with the default engine.
    let mut with_etcd = config.clone();
    with_etcd.replay.engine = ReplayEngineName::Etcd;
    with_etcd.replay.etcd = EtcdVersion::V3_5.bin("etcd");
    with_etcd.replay.etcdutl = EtcdVersion::V3_5.bin("etcdutl");

    // A dry run at `newest` plans the newest stored revision and changes nothing.
    let record = promote_locally(
        with_etcd,
        primary.store.path(),
        &host,
        PromotionRequest {
            dry_run: true,
            at: Some(RestorePoint::Newest),
            ..PromotionRequest::default()
        },
    );
    assert_state(&record, PromotionState::Planned);
    let replay = record
        .replay
        .as_ref()
        .expect("the record says what is replayed");
    assert_eq!(replay.target_revision, last, "{}", record_json(&record));
    assert_eq!(replay.replayed_revisions as i64, last - snapshot_revision);
    assert_eq!(replay.engine, "etcd");
    assert_eq!(record.plan.as_ref().unwrap().snapshot_revision, last);
    assert_eq!(node.data_dir_entries(), ["member"]);

    // The promotion at the middle revision: every key as it was then.
    let record = promote_locally(
        config,
        primary.store.path(),
        &host,
        PromotionRequest {
            at: Some(RestorePoint::Revision(middle)),
            ..PromotionRequest::default()
        },
    );
    assert_state(&record, PromotionState::Succeeded);
    assert_eq!(
        record.step(StepName::Verify).progress.state,
        StepState::Done
    );
    let replay = record.replay.as_ref().unwrap();
    assert_eq!(replay.target_revision, middle);
    assert_eq!(replay.base_revision, snapshot_revision);
    assert_eq!(replay.replayed_revisions as i64, middle - snapshot_revision);
    assert!(replay.segments_used >= 1 && replay.first_segment.is_some());
    assert_eq!(replay.engine, "backend");
    // The verify step says what the replay did (while it ran: how far it was).
    let detail = record.step(StepName::Verify).progress.detail.clone();
    assert!(
        detail.as_deref().is_some_and(|d| d.contains(&format!(
            "replayed {} revision(s)",
            middle - snapshot_revision
        ))),
        "{detail:?}"
    );
    let plan = record.plan.as_ref().unwrap();
    assert_eq!(plan.snapshot_revision, middle);
    assert!(member_revision(&node.client_url) >= plan.expected_min_revision);
    let restored = dump_member(&node.client_url);
    assert_eq!(restored.len(), at_middle.len());
    assert!(
        restored == at_middle,
        "the restored keys differ from revision {middle}"
    );
}
