//! `etcd-dr restore`: a cluster goes back in place to one of its own snapshots (no switchover,
//! no fence: it stays the primary and keeps shipping), one restore at a time, never onto a
//! prefix a promotion fenced; on etcd 3.5, 3.6 and 3.7.

use etcd_dr_e2e::kubelet::{delete_key, dump_member, member_revision, put_keys};
use etcd_dr_e2e::local_secondary::this_host;
use etcd_dr_e2e::promotion::{
    own_cluster, own_cluster_of_version, step_states, write_lock, write_marker,
};
use etcd_dr_e2e::{output_text, EtcdVersion};

/// A cluster on etcd `version` restored in place to an earlier snapshot of its own.
fn goes_back_to_an_earlier_snapshot_and_keeps_shipping(version: EtcdVersion) {
    let host = this_host();
    let store = tempfile::tempdir().unwrap();
    let (node, dr) = own_cluster_of_version(&host, store.path(), version);
    let endpoints = node.endpoints();
    put_keys(&endpoints, "/registry/configmaps/default/kept", 20);
    put_keys(
        &endpoints,
        "/registry/deployments/shop/deleted-by-mistake",
        1,
    );
    let snapshot = dr.snapshot_json(&[]);
    let id = snapshot["id"].as_str().unwrap().to_string();
    let series = match version {
        EtcdVersion::V3_6 => "3.6.",
        EtcdVersion::V3_7 => "3.7.",
        EtcdVersion::V3_4 => "3.4.",
        EtcdVersion::V3_5 => "3.5.",
    };
    assert!(
        snapshot["etcd"]["version"]
            .as_str()
            .unwrap()
            .starts_with(series),
        "{snapshot:#}"
    );
    let earlier = dump_member(&node.client_url);

    // The mistake: a key written and a key deleted after the snapshot.
    put_keys(&endpoints, "/registry/configmaps/default/written-after", 3);
    let revision = delete_key(
        &endpoints,
        "/registry/deployments/shop/deleted-by-mistake/0",
    );
    assert!(dump_member(&node.client_url) != earlier);
    let pid = node.etcd_pid();
    let cluster_dir = store.path().join("prod");

    // A dry run prints the plan and changes nothing.
    let plan = dr.run_ok(&["restore", "--snapshot", &id, "--dry-run"]);
    assert!(plan.contains("plan (nothing was changed):"), "{plan}");
    assert!(plan.contains(&format!("snapshot       {id}")), "{plan}");
    assert!(
        plan.contains(&format!("now {revision})")),
        "the plan names the current revision: {plan}"
    );
    assert!(plan.contains("restore r-"), "{plan}");
    assert_eq!(member_revision(&node.client_url), revision);
    assert_eq!(node.etcd_pid(), pid);
    assert_eq!(node.data_dir_entries(), ["member"]);
    assert!(!cluster_dir.join("restore-lock.json").exists());
    assert!(!cluster_dir.join("promotion.json").exists());

    // The restore.
    let output = dr.run(&["restore", "--snapshot", &id, "--json"]);
    let progress = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{progress}");
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["state"], "succeeded", "{record:#}");
    assert_eq!(record["request"]["mode"], "in-place");
    assert_eq!(record["snapshot"], id.as_str());
    let restore_id = record["id"].as_str().unwrap();
    assert!(restore_id.starts_with("r-"), "{restore_id}");
    assert_eq!(
        step_states(&record),
        [
            ("switchover", "skipped"),
            ("select", "done"),
            ("fence", "skipped"),
            ("verify", "done"),
            ("preflight", "done"),
            ("hooks-before", "skipped"),
            ("restore", "done"),
            ("front-end", "skipped"),
            ("health", "done"),
            ("after", "done"),
            ("hooks-after", "skipped"),
            ("rollback", "skipped"),
        ]
    );
    assert!(
        progress.contains(&format!("restore {restore_id}: succeeded")),
        "{progress}"
    );
    // The record counts both copies of the snapshot to their end (`GET /v1/promote` shows the
    // same record while they run).
    let size = snapshot["raw"]["size"].as_u64().unwrap();
    for transfer in [
        &record["steps"][3]["transfer"],
        &record["steps"][6]["transfer"],
        &record["steps"][6]["nodes"][0]["transfer"],
    ] {
        assert_eq!(transfer["done_bytes"], size, "{record:#}");
        assert_eq!(transfer["total_bytes"], size, "{record:#}");
        assert!(transfer["started_at"].is_string(), "{record:#}");
    }

    // Exactly the earlier state: the later key gone, the deleted one back.
    assert!(
        dump_member(&node.client_url) == earlier,
        "the restored data is not the snapshot's"
    );
    // Above everything any watcher saw, by the margin.
    let restored_revision = member_revision(&node.client_url);
    assert!(
        restored_revision > revision + 999_000_000,
        "revision {restored_revision} not bumped above {revision}"
    );
    assert_eq!(record["plan"]["secondary_revision"], revision);
    // The nodes keep their own service-account keys and the old data.
    assert_eq!(
        std::fs::read_to_string(node.kube().join("pki/sa.key")).unwrap(),
        "secondary sa.key"
    );
    assert!(node
        .data()
        .join(format!("etcd-dr-{restore_id}/old/member/snap/db"))
        .is_file());

    // No fence, no lock left: the primary keeps shipping into the same prefix.
    assert!(!cluster_dir.join("promotion.json").exists());
    assert!(!cluster_dir.join("restore-lock.json").exists());
    let after = dr.snapshot_json(&[]);
    assert!(
        after["etcd"]["revision"].as_i64().unwrap() >= restored_revision,
        "{after:#}"
    );
    assert_eq!(dr.list_json().len(), 2);
}

#[test]
fn restore_in_place_goes_back_to_an_earlier_snapshot_and_the_primary_keeps_shipping() {
    goes_back_to_an_earlier_snapshot_and_keeps_shipping(EtcdVersion::V3_5);
}

#[test]
fn restore_in_place_on_etcd_36() {
    goes_back_to_an_earlier_snapshot_and_keeps_shipping(EtcdVersion::V3_6);
}

#[test]
fn restore_in_place_on_etcd_37() {
    goes_back_to_an_earlier_snapshot_and_keeps_shipping(EtcdVersion::V3_7);
}

#[test]
fn restore_in_place_refuses_a_fenced_prefix_and_runs_one_at_a_time() {
    let host = this_host();
    let store = tempfile::tempdir().unwrap();
    let (node, dr) = own_cluster(&host, store.path());
    put_keys(&node.endpoints(), "/registry/configmaps/default/a", 5);
    dr.run_ok(&["snapshot"]);
    let revision = put_keys(&node.endpoints(), "/registry/configmaps/default/b", 5);
    let lock_file = store.path().join("prod/restore-lock.json");

    // A restore that crashed holding the lock: refused, naming the holder and the way out.
    write_lock(store.path(), "r-crashed");
    let output = dr.run(&["restore"]);
    assert!(!output.status.success());
    let text = output_text(&output);
    assert!(
        text.contains("r-crashed")
            && text.contains("ops@crashed-bastion")
            && text.contains("restore-lock.json")
            && text.contains("with force"),
        "{text}"
    );
    assert_eq!(member_revision(&node.client_url), revision);
    // `--force` takes the lock over, restores, and gives it back.
    let forced = dr.run_ok(&["restore", "--force"]);
    assert!(forced.contains(": succeeded after"), "{forced}");
    assert!(!lock_file.exists());
    assert!(member_revision(&node.client_url) > revision + 999_000_000);
    let revision = member_revision(&node.client_url);

    // Two at once: one restores, the other is refused at the lock.
    let spawn = || {
        dr.command(&["restore"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let succeeded = outputs.iter().filter(|o| o.status.success()).count();
    let texts: Vec<String> = outputs.iter().map(output_text).collect();
    assert_eq!(succeeded, 1, "{texts:#?}");
    let refused = outputs
        .iter()
        .zip(&texts)
        .find(|(o, _)| !o.status.success())
        .map(|(_, t)| t)
        .unwrap();
    assert!(refused.contains("holds the restore lock"), "{refused}");
    assert!(!lock_file.exists());
    assert!(member_revision(&node.client_url) > revision);
    let revision = member_revision(&node.client_url);

    // A promotion fenced the prefix: refused, even forced and as a dry run; nothing changes.
    let snapshot = dr.list_json()[0]["id"].as_str().unwrap().to_string();
    write_marker(store.path(), "p-elsewhere", &snapshot);
    for args in [
        &["restore"][..],
        &["restore", "--force"],
        &["restore", "--dry-run"],
    ] {
        let output = dr.run(args);
        assert!(!output.status.success(), "{args:?}");
        let text = output_text(&output);
        assert!(
            text.contains("p-elsewhere") && text.contains("Failing back"),
            "{args:?}: {text}"
        );
    }
    assert!(!lock_file.exists());
    assert_eq!(member_revision(&node.client_url), revision);
}
