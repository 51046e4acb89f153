//! Promote over ssh: three namespace nodes cp1..cp3 with their own sshd, `/etc/kubernetes` and
//! `/var/lib/etcd`, whose files also provide the snapshot's (encrypted) node bundles with the
//! primary's service-account keys; the promoter, run in this process, restores a three-member
//! primary onto them (etcd 3.5, 3.6 and 3.7), or rolls every node back when one fails.

use std::time::Duration;

use etcd_dr_e2e::kubelet::{dump_member, member_names, member_revision, put_keys};
use etcd_dr_e2e::promotion::{
    assert_state, primary_with_bundles, promote_over_ssh, record_json, write_failing_etcdutl,
};
use etcd_dr_e2e::secondary::SshSecondary;
use etcd_dr_e2e::{wait_for, EtcdVersion};
use etcd_dr_restore::{PromotionState, StepName, StepState};

/// A three-member primary of etcd `version` promoted over ssh onto three nodes of the same
/// version: the primary's data and member names, a bumped revision, its service-account keys,
/// and the record's byte counters of both copies (download and onto each node).
fn promote_restores_the_primary_on_three_nodes(version: EtcdVersion) {
    let mut secondary = SshSecondary::start_version(version);
    let (primary, identity) = primary_with_bundles(&secondary);
    let primary_keys = primary.etcd.dump();
    let primary_revision = primary.etcd.revision();
    secondary.become_secondary();
    let secondary_revision = put_keys(&secondary.client_urls, "/secondary-only", 400);
    assert!(secondary_revision > primary_revision);

    let config = secondary.config(&primary.store.path().join("work"));
    let record = promote_over_ssh(
        &secondary,
        config,
        &primary.store.path().join("bucket"),
        &identity,
    );
    assert_state(&record, PromotionState::Succeeded);
    let restore = record.step(StepName::Restore);
    assert_eq!(restore.nodes.len(), 3);
    assert!(restore
        .nodes
        .iter()
        .all(|n| n.progress.state == StepState::Done));

    // Both copies counted to their end: the download, and the snapshot onto each node.
    let manifest = &primary.dr.list_json()[0];
    assert!(manifest["etcd"]["version"]
        .as_str()
        .unwrap()
        .starts_with(version_series(version)));
    let size = manifest["raw"]["size"].as_u64().unwrap();
    let download = record.step(StepName::Verify).progress.transfer.unwrap();
    assert_eq!((download.done_bytes, download.total_bytes), (size, size));
    for node in &restore.nodes {
        let copy = node.progress.transfer.unwrap();
        assert_eq!(
            (copy.done_bytes, copy.total_bytes),
            (size, size),
            "{}",
            node.node
        );
    }
    let copies = restore.progress.transfer.unwrap();
    assert_eq!(
        (copies.done_bytes, copies.total_bytes),
        (3 * size, 3 * size)
    );

    // The restored cluster: the secondary's peer URLs, the primary's member names and keys.
    let plan = record.plan.as_ref().unwrap();
    for (index, node) in plan.nodes.iter().enumerate() {
        assert_eq!(node.member_name, format!("cp{}", index + 1));
        assert!(
            node.peer_urls[0].starts_with(&format!("http://127.0.0.1{}:", index + 1)),
            "{:?}",
            node.peer_urls
        );
    }
    assert_eq!(member_names(&secondary.client_urls), ["cp1", "cp2", "cp3"]);
    for url in &secondary.client_urls {
        let restored = dump_member(url);
        assert_eq!(restored.len(), primary_keys.len(), "{url}");
        assert!(
            restored == primary_keys,
            "{url} serves other data than the primary's"
        );
        let revision = member_revision(url);
        assert!(
            revision > secondary_revision + 999_000_000,
            "{url}: revision {revision}"
        );
    }
    for (index, node) in secondary.ground.nodes().iter().enumerate() {
        // The primary's service-account keys, from the encrypted bundle; the node's own kept.
        assert_eq!(
            std::fs::read_to_string(node.host_path("/etc/kubernetes/pki/sa.key")).unwrap(),
            secondary.files.sa_key
        );
        let work = format!("/var/lib/etcd/etcd-dr-{}", record.id);
        assert_eq!(
            std::fs::read_to_string(node.host_path(&format!("{work}/kubernetes/pki/sa.key")))
                .unwrap(),
            format!("secondary sa.key of cp{}", index + 1)
        );
        assert!(node
            .host_path(&format!("{work}/old/member/snap/db"))
            .is_file());
    }
}

fn version_series(version: EtcdVersion) -> &'static str {
    match version {
        EtcdVersion::V3_4 => "3.4.",
        EtcdVersion::V3_5 => "3.5.",
        EtcdVersion::V3_6 => "3.6.",
        EtcdVersion::V3_7 => "3.7.",
    }
}

#[test]
fn promote_over_ssh_restores_the_primary_on_three_nodes() {
    promote_restores_the_primary_on_three_nodes(EtcdVersion::V3_5);
}

#[test]
fn promote_over_ssh_on_etcd_36() {
    promote_restores_the_primary_on_three_nodes(EtcdVersion::V3_6);
}

#[test]
fn promote_over_ssh_on_etcd_37() {
    promote_restores_the_primary_on_three_nodes(EtcdVersion::V3_7);
}

#[test]
fn a_restore_failing_on_one_node_rolls_every_node_back() {
    let mut secondary = SshSecondary::start();
    let (primary, identity) = primary_with_bundles(&secondary);
    secondary.become_secondary();
    put_keys(&secondary.client_urls, "/secondary-only", 30);
    let before = dump_member(&secondary.client_urls[0]);
    let before_revision = member_revision(&secondary.client_urls[0]);

    // etcdutl fails on cp2 only (the preflight still sees a good tool everywhere).
    let wrapper = secondary.ground.dir().join("etcdutl-fails-on-cp2");
    write_failing_etcdutl(
        &wrapper,
        "[ \"$(hostname)\" = cp2 ]",
        "simulated: cp2 disk full",
    );
    let mut config = secondary.config(&primary.store.path().join("work"));
    config.etcdutl = wrapper.display().to_string();

    let record = promote_over_ssh(
        &secondary,
        config,
        &primary.store.path().join("bucket"),
        &identity,
    );
    assert_state(&record, PromotionState::RolledBack);
    let error = record.error.as_deref().unwrap();
    assert!(
        error.contains("cp2") && error.contains("simulated: cp2 disk full"),
        "{error}"
    );
    let rollback = record.step(StepName::Rollback);
    assert_eq!(
        rollback.progress.state,
        StepState::Done,
        "{}",
        record_json(&record)
    );
    assert_eq!(rollback.nodes.len(), 3);
    assert!(
        record
            .step(StepName::Restore)
            .nodes
            .iter()
            .all(|n| n.progress.state == StepState::RolledBack),
        "{}",
        record_json(&record)
    );

    // Every member serves the secondary's own data again, at its old revision, with its keys.
    secondary.wait_serving();
    assert_eq!(member_names(&secondary.client_urls), ["cp1", "cp2", "cp3"]);
    for url in &secondary.client_urls {
        wait_for("the old data", Duration::from_secs(20), || {
            (dump_member(url) == before).then_some(())
        });
        assert_eq!(member_revision(url), before_revision, "{url}");
    }
    for (index, node) in secondary.ground.nodes().iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(node.host_path("/etc/kubernetes/pki/sa.key")).unwrap(),
            format!("secondary sa.key of cp{}", index + 1)
        );
    }
}
