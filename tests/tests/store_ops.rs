//! What happens to snapshots once stored: corruption is caught, leftovers are ignored,
//! retention keeps what it must, and bad configuration is refused by name.

use std::time::Duration;

use etcd_dr_e2e::{wait_for, EtcdCluster, EtcdDr, EtcdOptions, FillSpec, KillOnDrop, StoreTarget};

fn local_dr(etcd: &EtcdCluster, store: &std::path::Path, extra: &str) -> EtcdDr {
    EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store),
        extra,
    )
}

#[test]
fn a_corrupt_or_missing_object_fails_verify_and_fetch() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::objects(500));
    let store = tempfile::tempdir().unwrap();
    let dr = local_dr(&etcd, store.path(), "");
    let manifest = dr.snapshot_json(&[]);
    let id = manifest["id"].as_str().unwrap();
    // The manifest names the data object (inside its attempt's folder).
    let data = store
        .path()
        .join("prod/snapshots")
        .join(id)
        .join(manifest["stored"]["name"].as_str().unwrap());

    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap();
    let error = dr.run_err(&["verify", id]);
    assert!(
        error.contains(&format!("snapshot {id} is corrupt")),
        "{error}"
    );
    let output = dr.dir().join("out.db");
    let error = dr.run_err(&["fetch", id, "--output", output.to_str().unwrap()]);
    assert!(error.contains("corrupt"), "{error}");
    assert!(!output.exists(), "a failed fetch leaves no file");
    assert!(!dr.dir().join("out.db.partial").exists());

    std::fs::remove_file(&data).unwrap();
    let error = dr.run_err(&["verify", "latest"]);
    assert!(error.contains("is missing"), "{error}");
}

#[test]
fn a_folder_without_manifest_does_not_exist_for_readers() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let store = tempfile::tempdir().unwrap();
    let dr = local_dr(&etcd, store.path(), "");
    dr.run_ok(&["snapshot"]);
    let good = dr.list_json()[0]["id"].as_str().unwrap().to_string();
    // A later upload that never committed: data, no manifest.
    let leftover = store.path().join("prod/snapshots/29991231T000000Z-r99999");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("etcd.db.zst"), b"partial").unwrap();

    let list = dr.list_json();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], good.as_str());
    let verified = dr.run_ok(&["verify", "latest"]);
    assert!(
        verified.contains(&good),
        "latest is the newest committed one: {verified}"
    );
    let output = dr.run(&["list"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("incomplete"));
    // Younger than the grace period: retention leaves it alone.
    dr.run_ok(&["prune"]);
    assert!(leftover.join("etcd.db.zst").exists());
}

#[test]
fn retention_keeps_the_newest_whatever_the_policy() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let store = tempfile::tempdir().unwrap();
    let dr = local_dr(
        &etcd,
        store.path(),
        "[retention]\nkeep_last = 2\nmax_age = \"1s\"\n",
    );
    let mut ids = Vec::new();
    for i in 0..4 {
        etcd.put(&format!("/registry/configmaps/default/c{i}"), b"v");
        ids.push(dr.snapshot_json(&[])["id"].as_str().unwrap().to_string());
    }
    // The ids are distinct even within one second: the revision differs.
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        4
    );

    let plan = dr.run_ok(&["prune", "--dry-run"]);
    assert!(
        plan.contains(&ids[0]) && plan.contains("would delete"),
        "{plan}"
    );
    assert_eq!(dr.list_json().len(), 4, "a dry run deletes nothing");

    // Everything is older than max_age now, yet the newest must stay.
    std::thread::sleep(Duration::from_millis(1200));
    dr.run_ok(&["prune"]);
    let left: Vec<String> = dr
        .list_json()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, vec![ids[3].clone()]);
    for id in &ids[..3] {
        assert!(!store
            .path()
            .join("prod/snapshots")
            .join(id)
            .join("manifest.json")
            .exists());
        let folder = store.path().join("prod/snapshots").join(id);
        assert!(
            !folder.exists() || etcd_dr_e2e::files::files_under(&folder).is_empty(),
            "{id} left objects behind"
        );
    }
    dr.run_ok(&["verify", &ids[3]]);
}

#[test]
fn bad_configuration_is_refused_naming_every_field() {
    let missing = EtcdDr::new("");
    std::fs::remove_file(missing.config_path()).unwrap();
    let output = missing.run(&["list"]);
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains(&missing.config_path().display().to_string()),
        "{error}"
    );

    let unknown = EtcdDr::new(
        "cluster = \"prod\"\n[etcd]\nendpoints = [\"http://127.0.0.1:1\"]\n[store]\ntype = \"local\"\npath = \"/tmp/x\"\n[retention]\nkeep_lats = 3\n",
    );
    let error = unknown.run_err(&["list"]);
    assert!(error.contains("keep_lats"), "{error}");

    let many = EtcdDr::new(
        "cluster = \"a/b\"\n[etcd]\nendpoints = [\"10.0.0.1:2379\"]\nca_file = \"/nonexistent/ca.crt\"\n[store]\ntype = \"s3\"\n[schedule]\ninterval = \"1s\"\n",
    );
    let output = many.run(&["list"]);
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr);
    for field in [
        "cluster:",
        "etcd.endpoints[0]",
        "etcd.ca_file",
        "store.bucket",
        "schedule.interval",
    ] {
        assert!(error.contains(field), "{field} not named in: {error}");
    }

    // Environment overrides are applied before validation.
    let fixed = EtcdDr::new(
        "cluster = \"prod\"\n[etcd]\nendpoints = [\"http://127.0.0.1:1\"]\n[store]\ntype = \"s3\"\n",
    )
    .env("ETCD_DR_STORE__TYPE", "local")
    .env("ETCD_DR_STORE__PATH", "/tmp/etcd-dr-env-override");
    let out = fixed.run_ok(&["check-config"]);
    assert!(out.contains("/tmp/etcd-dr-env-override"), "{out}");
}

#[test]
fn the_daemon_skips_unchanged_revisions_and_stops_cleanly() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.put("/registry/namespaces/default", b"k8s\0ns");
    let store = tempfile::tempdir().unwrap();
    // Port 0: the daemon's HTTP API on any free port, so parallel tests never collide.
    let dr = local_dr(
        &etcd,
        store.path(),
        "[schedule]\ninterval = \"10s\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
    );
    let child = KillOnDrop::new(dr.spawn(&["run"], "daemon.log"));
    wait_for(
        "the first scheduled snapshot",
        Duration::from_secs(20),
        || (dr.list_json().len() == 1).then_some(()),
    );
    wait_for("the second cycle to skip", Duration::from_secs(20), || {
        dr.log("daemon.log").contains("unchanged").then_some(())
    });
    assert_eq!(dr.list_json().len(), 1, "nothing new when nothing changed");
    etcd.put("/registry/namespaces/team-a", b"k8s\0ns");
    wait_for(
        "a snapshot of the new revision",
        Duration::from_secs(20),
        || (dr.list_json().len() == 2).then_some(()),
    );
    let status = child.terminate_and_wait().status;
    assert!(status.success(), "{}", dr.log("daemon.log"));
    assert!(dr.log("daemon.log").contains("stopped"));
}

#[test]
fn transfers_show_progress_on_a_terminal_and_nowhere_else() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::objects(500));
    let store = tempfile::tempdir().unwrap();
    let dr = local_dr(&etcd, store.path(), "");
    let id = dr.snapshot_json(&[])["id"].as_str().unwrap().to_string();

    // On a terminal: a bar with the bytes and the rate while it runs, then the summary.
    let output = dr.dir().join("terminal.db");
    let shown = dr.run_on_terminal(&["fetch", &id, "--output", output.to_str().unwrap()]);
    assert!(shown.contains(&format!("fetch {id}")), "{shown:?}");
    assert!(shown.contains("B/s"), "{shown:?}");
    assert!(
        shown.contains(&format!("snapshot {id} written to")),
        "{shown:?}"
    );
    let shown = dr.run_on_terminal(&["verify", &id]);
    assert!(shown.contains(&format!("verify {id}")), "{shown:?}");

    // Piped, or with --json: the summary alone.
    let output = dr.dir().join("piped.db");
    let piped = dr.run(&["fetch", &id, "--output", output.to_str().unwrap()]);
    assert!(piped.status.success());
    for stream in [&piped.stdout, &piped.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(!text.contains("B/s") && !text.contains('\r'), "{text:?}");
    }
    // A new revision: a snapshot in the same second at the same revision would have the
    // first one's id (and be refused as already stored).
    etcd.put("/after-the-first-snapshot", b"x");
    let shown = dr.run_on_terminal(&["snapshot", "--json"]);
    assert!(!shown.contains("B/s"), "{shown:?}");
    assert!(shown.contains("\"etcd_sha256\""), "{shown:?}");
}
