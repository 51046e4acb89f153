//! Client-side encryption end to end: a primary that holds only the recipient ships an etcd
//! snapshot and node bundles that reveal nothing; the secondary's identity reads them back; a
//! wrong or missing identity fails naming the snapshot; plain data is refused where encryption
//! is required.

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_dr_e2e::files::files_under;
use etcd_dr_e2e::nodes::ControlPlaneNodes;
use etcd_dr_e2e::{EtcdCluster, EtcdDr, EtcdOptions, KillOnDrop, StoreTarget};

/// `etcd-dr keygen -o <dir>/<name>`: the identity file and the printed recipient.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let dr = EtcdDr::new("");
    let output = dr
        .command(&["keygen", "-o", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let recipient = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert!(recipient.starts_with("age1"), "{recipient}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    (path, recipient)
}

fn all_stored_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(dir.join(&path)).unwrap();
            (path, bytes)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn encrypted_snapshots_and_bundles_reveal_nothing_and_restore_with_the_identity() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let secret_value = b"etcd-dr-distinctive-secret-value-7f3a9c";
    etcd.put("/registry/secrets/default/db-password", secret_value);
    let ground = ControlPlaneNodes::start(3);
    let files = ground.populate_kubeadm();
    let keys = tempfile::tempdir().unwrap();
    let (identity, recipient) = keygen(keys.path(), "secondary.age");
    let (stranger, _) = keygen(keys.path(), "stranger.age");
    let store = tempfile::tempdir().unwrap();
    let etcd_section = etcd.config_section(&etcd.endpoints());
    let target = StoreTarget::Local(store.path());

    // The primary: recipients only (encryption is required by default with bundles).
    let primary = EtcdDr::with_sections(
        "prod",
        &etcd_section,
        &target,
        &format!(
            "{}\n[encryption]\nrecipients = [\"{recipient}\"]\n",
            ground.config_section()
        ),
    );
    let manifest = primary.snapshot_json(&[]);
    let id = manifest["id"].as_str().unwrap().to_string();
    let data = manifest["stored"]["name"].as_str().unwrap();
    assert!(data.ends_with("/etcd.db.zst.age"), "{data}");
    assert_eq!(manifest["stored"]["encryption"]["type"], "age");
    assert_eq!(
        manifest["stored"]["encryption"]["recipients"],
        serde_json::json!([recipient])
    );
    for bundle in manifest["nodes"].as_array().unwrap() {
        let name = bundle["node"].as_str().unwrap();
        let object = bundle["object"]["name"].as_str().unwrap();
        assert!(
            object.ends_with(&format!("/nodes/{name}.tar.zst.age")),
            "{object}"
        );
        assert_eq!(bundle["object"]["encryption"]["type"], "age");
    }

    // Nothing stored, manifest included, holds the etcd value or the service-account key.
    let stored = all_stored_bytes(store.path());
    assert_eq!(stored.len(), 5);
    let sa_marker = files.sa_key.lines().nth(1).unwrap().as_bytes();
    for (path, bytes) in &stored {
        assert!(!contains(bytes, secret_value), "{path}");
        assert!(!contains(bytes, sa_marker), "{path}");
        assert!(!contains(bytes, b"AGE-SECRET-KEY"), "{path}");
    }
    // The primary cannot read its own backups.
    let error = primary.run_err(&["verify", &id]);
    assert!(error.contains(&id), "{error}");
    assert!(error.contains("encryption.identity_file"), "{error}");

    // The secondary: the identity file.
    let secondary = EtcdDr::with_sections(
        "prod",
        &etcd_section,
        &target,
        &format!("[encryption]\nidentity_file = \"{}\"\n", identity.display()),
    );
    let verified = secondary.run_ok(&["verify", &id]);
    assert!(verified.contains("node cp3 OK"), "{verified}");
    let db = secondary.dir().join("restored.db");
    secondary.run_ok(&["fetch", &id, "-o", db.to_str().unwrap()]);
    assert!(contains(&std::fs::read(&db).unwrap(), secret_value));
    let restored = EtcdCluster::start_restored(&db, etcd.version());
    assert_eq!(restored.dump(), etcd.dump());
    let bundle = secondary.dir().join("cp2");
    secondary.run_ok(&[
        "fetch",
        &id,
        "--node",
        "cp2",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    files.assert_unpacked(1, &bundle);
    let owned = secondary.dir().join("cp2-owners");
    secondary.run_ok(&[
        "fetch",
        &id,
        "--node",
        "cp2",
        "--keep-owners",
        "-o",
        owned.to_str().unwrap(),
    ]);
    files.assert_unpacked_with_owners(1, &owned);

    // A stranger's identity: a clear error naming the snapshot, and nothing written.
    let wrong = EtcdDr::with_sections(
        "prod",
        &etcd_section,
        &target,
        &format!("[encryption]\nidentity_file = \"{}\"\n", stranger.display()),
    );
    let error = wrong.run_err(&["verify", &id]);
    assert!(
        error.contains(&format!("snapshot {id} cannot be decrypted")),
        "{error}"
    );
    assert!(error.contains(&recipient), "{error}");
    let db = wrong.dir().join("garbled.db");
    let error = wrong.run_err(&["fetch", &id, "-o", db.to_str().unwrap()]);
    assert!(error.contains(&id), "{error}");
    assert!(!db.exists());
    let out = wrong.dir().join("cp1");
    let error = wrong.run_err(&["fetch", &id, "--node", "cp1", "-o", out.to_str().unwrap()]);
    assert!(error.contains("cannot be decrypted"), "{error}");
    assert!(!out.exists());
}

#[test]
fn plain_data_is_refused_where_encryption_is_required() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let ground = ControlPlaneNodes::start(1);
    let store = tempfile::tempdir().unwrap();
    let target = StoreTarget::Local(store.path());
    let etcd_section = etcd.config_section(&etcd.endpoints());

    // Bundles on (nodes configured), no recipients: the default requirement refuses.
    let dr = EtcdDr::with_sections("prod", &etcd_section, &target, &ground.config_section());
    let error = dr.run_err(&["snapshot"]);
    assert!(error.contains("encryption.recipients"), "{error}");
    assert!(error.contains("encryption.require_encryption"), "{error}");
    let error = dr.run_err(&["run"]);
    assert!(error.contains("encryption.recipients"), "{error}");

    // Required explicitly, without bundles: refused as well.
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd_section,
        &target,
        "[encryption]\nrequire_encryption = true\n",
    );
    let error = dr.run_err(&["snapshot"]);
    assert!(
        error.contains("encryption.require_encryption = true"),
        "{error}"
    );
    // Nothing stored (the store probe leaves at most the cluster's empty folders behind).
    assert_eq!(files_under(store.path()), Vec::<String>::new());

    // A secret key where a recipient belongs is named at load time.
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd_section,
        &target,
        "[encryption]\nrecipients = [\"AGE-SECRET-KEY-1QQQQ\"]\n",
    );
    let error = dr.run_err(&["list"]);
    assert!(error.contains("encryption.recipients[0]"), "{error}");
    assert!(error.contains("secret key"), "{error}");
    assert!(!error.contains("QQQQ"), "{error}");
}

/// A secondary daemon (`role = "secondary"`) over `store`, polling quickly, pre-staging into its
/// scratch directory, with `identity` as its identity file; its API on a free port.
fn secondary_daemon(store: &Path, identity: &Path) -> (EtcdDr, std::net::SocketAddr) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], etcd_dr_e2e::free_port()));
    let dr = EtcdDr::new("");
    let config = format!(
        "role = \"secondary\"\ncluster = \"prod\"\n{}\n[http]\nlisten = \"{addr}\"\n[secondary]\npoll_interval = \"200ms\"\nprestage_dir = \"{}\"\n[encryption]\nidentity_file = \"{}\"\n",
        StoreTarget::Local(store).config_section(),
        dr.dir().join("prestage").display(),
        identity.display()
    );
    std::fs::write(dr.config_path(), config).unwrap();
    (dr, addr)
}

fn status(addr: std::net::SocketAddr) -> Option<serde_json::Value> {
    let response = etcd_dr_e2e::http_request(addr, "GET", "/v1/status", &[], b"").ok()?;
    (response.status == 200).then(|| response.json())
}

#[test]
fn the_secondary_verifies_and_prestages_encrypted_snapshots_with_its_identity() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let secret_value = b"etcd-dr-secondary-secret-4b1d";
    etcd.put("/registry/secrets/kube-system/token", secret_value);
    let ground = ControlPlaneNodes::start(1);
    ground.populate_kubeadm();
    let keys = tempfile::tempdir().unwrap();
    let (identity, recipient) = keygen(keys.path(), "secondary.age");
    let (stranger, _) = keygen(keys.path(), "stranger.age");
    let store = tempfile::tempdir().unwrap();
    let primary = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        &format!(
            "{}\n[encryption]\nrecipients = [\"{recipient}\"]\n",
            ground.config_section()
        ),
    );
    let id = primary.snapshot_json(&[])["id"]
        .as_str()
        .unwrap()
        .to_string();

    // With a stranger's identity: no verification, the error names the snapshot, nothing staged.
    let (wrong, addr) = secondary_daemon(store.path(), &stranger);
    let child = KillOnDrop::new(wrong.spawn(&["run"], "secondary.log"));
    let failed = etcd_dr_e2e::wait_for("the failed verification", Duration::from_secs(20), || {
        status(addr).filter(|s| s["last_error"]["message"].is_string())
    });
    let _ = child.terminate_and_wait();
    let message = failed["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("snapshot {id} cannot be decrypted")),
        "{message}"
    );
    assert!(failed["newest_verified"].is_null(), "{failed:#}");
    let staged: Vec<_> = std::fs::read_dir(wrong.dir().join("prestage"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(staged.is_empty());

    // With its identity: verified and staged as the plain snapshot.
    let (right, addr) = secondary_daemon(store.path(), &identity);
    let child = KillOnDrop::new(right.spawn(&["run"], "secondary.log"));
    let verified = etcd_dr_e2e::wait_for("the verification", Duration::from_secs(20), || {
        status(addr).filter(|s| s["newest_verified"]["id"] == id.as_str())
    });
    let _ = child.terminate_and_wait();
    assert_eq!(verified["secondary"]["prestaged"]["id"], id.as_str());
    let staged = std::fs::read(right.dir().join("prestage").join(format!("{id}.db"))).unwrap();
    assert!(contains(&staged, secret_value));

    // The node bundles are part of the check: a damaged one fails the snapshot's verification.
    etcd.put("/registry/configmaps/default/next", b"x");
    let second_manifest = primary.snapshot_json(&[]);
    let second = second_manifest["id"].as_str().unwrap().to_string();
    let cp1 = second_manifest["nodes"][0]["object"]["name"]
        .as_str()
        .unwrap();
    assert!(cp1.ends_with("nodes/cp1.tar.zst.age"), "{cp1}");
    let bundle = store.path().join(format!("prod/snapshots/{second}/{cp1}"));
    let mut bytes = std::fs::read(&bundle).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&bundle, bytes).unwrap();
    let (again, addr) = secondary_daemon(store.path(), &identity);
    let child = KillOnDrop::new(again.spawn(&["run"], "secondary.log"));
    let failed = etcd_dr_e2e::wait_for("the failed verification", Duration::from_secs(20), || {
        status(addr).filter(|s| s["secondary"]["verify_failures"] == 1)
    });
    let _ = child.terminate_and_wait();
    let message = failed["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("snapshot {second} is corrupt")),
        "{message}"
    );
    assert!(message.contains("nodes/cp1.tar.zst.age"), "{message}");
}
