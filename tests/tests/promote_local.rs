//! Promote with the local executor: a real primary etcd snapshotted by `etcd-dr snapshot`, a
//! secondary control plane of one node on this machine (named after this host) whose etcd is run
//! by a kubelet stand-in from a kubeadm-shaped static pod manifest, and the promoter, run in this
//! process, restoring the primary's snapshot onto it, or rolling back when the restore fails.

use etcd_dr_core::PromotionMode;
use etcd_dr_e2e::kubelet::{dump_member, member_names, member_revision, put_keys};
use etcd_dr_e2e::local_secondary::{this_host, LocalSecondary};
use etcd_dr_e2e::promotion::{
    assert_state, marker_of, primary_of_version, primary_with_snapshot, promote_locally,
    record_json, service_account_keys, write_failing_etcdutl,
};
use etcd_dr_e2e::EtcdVersion;
use etcd_dr_restore::{PromotionRequest, PromotionState, RestoreTool, StepName, StepState};

#[test]
fn local_in_place_restore_serves_the_primary_with_a_bumped_revision() {
    let host = this_host();
    let primary = primary_with_snapshot(&host);
    let primary_keys = primary.etcd.dump();
    let primary_revision = primary.etcd.revision();

    let node = LocalSecondary::start(&host);
    // The secondary is ahead of the primary: the bump must clear its revision too.
    let secondary_revision = put_keys(&node.endpoints(), "/secondary-only", 400);
    assert!(secondary_revision > primary_revision);

    let config = node.config(&EtcdVersion::V3_5.bin("etcdutl"));
    let record = promote_locally(
        config.clone(),
        primary.store.path(),
        &host,
        PromotionRequest::default(),
    );
    assert_state(&record, PromotionState::Succeeded);
    for step in [
        StepName::Select,
        StepName::Fence,
        StepName::Verify,
        StepName::Preflight,
        StepName::Restore,
        StepName::Health,
        StepName::After,
    ] {
        assert_eq!(
            record.step(step).progress.state,
            StepState::Done,
            "{step:?}: {}",
            record_json(&record)
        );
    }
    assert_eq!(
        record.step(StepName::Rollback).progress.state,
        StepState::Skipped
    );
    assert_eq!(record.step(StepName::Restore).nodes[0].node, host);

    // Every primary key, nothing of the secondary's own.
    let restored = dump_member(&node.client_url);
    assert_eq!(restored.len(), primary_keys.len());
    assert!(
        restored == primary_keys,
        "restored keys differ from the primary's"
    );
    assert_eq!(member_names(&node.endpoints()), vec![host.clone()]);
    let revision = member_revision(&node.client_url);
    assert!(
        revision > secondary_revision + 999_000_000 && revision > primary_revision + 999_000_000,
        "revision {revision} not bumped above {secondary_revision} and {primary_revision}"
    );
    let plan = record.plan.as_ref().unwrap();
    assert_eq!(plan.secondary_revision, Some(secondary_revision));
    assert_eq!(
        plan.bump_revision,
        Some((secondary_revision - primary_revision) as u64 + 1_000_000_000)
    );

    // The primary's service-account keys, the old ones kept.
    let work = node.data().join(format!("etcd-dr-{}", record.id));
    assert_eq!(
        std::fs::read(node.kube().join("pki/sa.key")).unwrap(),
        service_account_keys().key
    );
    assert_eq!(
        std::fs::read(node.kube().join("pki/sa.pub")).unwrap(),
        service_account_keys().public
    );
    assert_eq!(
        std::fs::read_to_string(work.join("kubernetes/pki/sa.key")).unwrap(),
        "secondary sa.key"
    );
    // The old data dir kept aside, never deleted.
    assert!(work.join("old/member/snap/db").is_file());
    assert!(!work.join("snapshot.db").exists());

    // The fence names this promotion and snapshot.
    let marker = marker_of(primary.store.path()).unwrap();
    assert_eq!(marker.promotion_id, record.id);
    assert_eq!(marker.mode, PromotionMode::Failover);
    assert_eq!(Some(marker.snapshot), record.snapshot);

    // A second promotion stops at the fence and changes nothing.
    let again = promote_locally(
        config,
        primary.store.path(),
        &host,
        PromotionRequest::default(),
    );
    assert_state(&again, PromotionState::Failed);
    assert_eq!(
        again.step(StepName::Fence).progress.state,
        StepState::Failed
    );
    assert!(
        again.error.as_deref().unwrap().contains(&record.id),
        "{:?}",
        again.error
    );
    assert_eq!(member_revision(&node.client_url), revision);
    drop(primary.dr);
}

#[test]
fn a_failing_restore_is_rolled_back_and_the_old_cluster_serves() {
    let host = this_host();
    let primary = primary_with_snapshot(&host);
    let node = LocalSecondary::start(&host);
    put_keys(&node.endpoints(), "/secondary-only", 20);
    let before = dump_member(&node.client_url);
    let before_revision = member_revision(&node.client_url);

    // An etcdutl that answers the preflight like the real one but fails to restore.
    let wrapper = node.dir().join("etcdutl-failing");
    write_failing_etcdutl(&wrapper, "true", "simulated: disk on fire");

    let record = promote_locally(
        node.config(&wrapper),
        primary.store.path(),
        &host,
        PromotionRequest::default(),
    );
    assert_state(&record, PromotionState::RolledBack);
    let restore = record.step(StepName::Restore);
    assert_eq!(restore.progress.state, StepState::Failed);
    assert_eq!(restore.nodes[0].progress.state, StepState::RolledBack);
    assert!(
        record
            .error
            .as_deref()
            .unwrap()
            .contains("simulated: disk on fire"),
        "{:?}",
        record.error
    );
    assert_eq!(
        record.step(StepName::Rollback).progress.state,
        StepState::Done,
        "{}",
        record_json(&record)
    );

    // The old cluster serves its own data at its own revision, with its own keys.
    node.wait_serving();
    assert!(
        dump_member(&node.client_url) == before,
        "the secondary's data changed"
    );
    assert_eq!(member_revision(&node.client_url), before_revision);
    assert_eq!(
        std::fs::read_to_string(node.kube().join("pki/sa.key")).unwrap(),
        "secondary sa.key"
    );
}

#[test]
fn a_dry_run_plans_and_changes_nothing() {
    let host = this_host();
    let primary = primary_with_snapshot(&host);
    let node = LocalSecondary::start(&host);
    let revision = put_keys(&node.endpoints(), "/secondary-only", 5);
    let pid = node.etcd_pid();

    let request = PromotionRequest {
        dry_run: true,
        ..PromotionRequest::default()
    };
    let record = promote_locally(
        node.config(&EtcdVersion::V3_5.bin("etcdutl")),
        primary.store.path(),
        &host,
        request,
    );
    assert_state(&record, PromotionState::Planned);
    assert_eq!(
        record.step(StepName::Fence).progress.state,
        StepState::Skipped
    );
    assert_eq!(
        record.step(StepName::Restore).progress.state,
        StepState::Skipped
    );
    let plan = record.plan.as_ref().unwrap();
    assert_eq!(plan.nodes[0].member_name, host);
    assert_eq!(plan.nodes[0].data_dir, node.data().display().to_string());
    assert!(plan
        .initial_cluster
        .starts_with(&format!("{host}=http://127.0.0.1:")));

    assert!(
        marker_of(primary.store.path()).is_none(),
        "a dry run wrote the fence"
    );
    assert_eq!(member_revision(&node.client_url), revision);
    assert_eq!(node.etcd_pid(), pid);
    assert_eq!(node.data_dir_entries(), ["member"]);
}

#[test]
fn an_etcd_34_snapshot_is_restored_with_etcdctl_without_a_bump() {
    let host = this_host();
    let primary = primary_of_version(&host, EtcdVersion::V3_4);
    let primary_keys = primary.etcd.dump();
    let primary_revision = primary.etcd.revision();
    let node = LocalSecondary::start_version(&host, EtcdVersion::V3_4);
    put_keys(&node.endpoints(), "/secondary-only", 5);

    let mut config = node.config(&EtcdVersion::V3_5.bin("etcdutl"));
    config.etcdctl = EtcdVersion::V3_4.bin("etcdctl").display().to_string();
    let record = promote_locally(
        config,
        primary.store.path(),
        &host,
        PromotionRequest::default(),
    );
    assert_state(&record, PromotionState::Succeeded);
    let plan = record.plan.as_ref().unwrap();
    assert!(
        matches!(&plan.tool, RestoreTool::Etcdctl(p) if p.ends_with("etcdctl")),
        "{:?}",
        plan.tool
    );
    assert_eq!(plan.bump_revision, None);
    assert!(
        record
            .warnings
            .iter()
            .any(|w| w.contains("no --bump-revision")),
        "{:?}",
        record.warnings
    );
    assert!(dump_member(&node.client_url) == primary_keys);
    assert_eq!(member_revision(&node.client_url), primary_revision);
}
