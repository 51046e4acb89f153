//! The core path end to end: real etcd → `etcd-dr snapshot` → store → `verify`/`fetch` →
//! `etcdutl snapshot restore` → a new etcd serving exactly the source's keys and values.

use std::path::Path;

use etcd_dr_e2e::{
    EtcdCluster, EtcdDr, EtcdOptions, EtcdVersion, FillSpec, MotoServer, StoreTarget,
};

/// Fetches `id` from the store to a file, restores it with `version`'s tool into a fresh etcd
/// and checks that it serves exactly `source`'s data.
fn fetch_restore_and_compare(dr: &EtcdDr, id: &str, source: &EtcdCluster, version: EtcdVersion) {
    let db = dr.dir().join(format!("{id}.db"));
    let out = dr.run_ok(&["fetch", id, "--output", db.to_str().unwrap()]);
    assert!(out.contains(id), "{out}");
    let restored = EtcdCluster::start_restored(&db, version);
    let expected = source.dump();
    let actual = restored.dump();
    assert_eq!(actual.len(), expected.len(), "number of keys after restore");
    assert!(
        actual == expected,
        "restored keys or values differ from the source"
    );
}

fn only_snapshot_id(dr: &EtcdDr) -> String {
    let list = dr.list_json();
    assert_eq!(list.len(), 1, "{list:?}");
    list[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn snapshot_to_local_directory_restores_every_key() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let revision = etcd.fill(FillSpec::objects(3000));
    let store = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        "",
    );

    let summary = dr.run_ok(&["snapshot", "--label", "before upgrade"]);
    assert!(
        summary.contains(&format!("revision    {revision}")),
        "{summary}"
    );

    let list = dr.list_json();
    assert_eq!(list.len(), 1);
    let manifest = &list[0];
    let id = manifest["id"].as_str().unwrap();
    assert!(id.ends_with(&format!("-r{revision}")), "{id}");
    assert_eq!(manifest["label"], "before upgrade");
    assert_eq!(manifest["etcd"]["revision"], revision);
    assert_eq!(manifest["etcd"]["version"], "3.5.16");
    assert_eq!(manifest["etcd"]["members"].as_array().unwrap().len(), 1);
    assert!(
        manifest["stored"]["size"].as_u64().unwrap() < manifest["raw"]["size"].as_u64().unwrap()
    );

    // Documented layout: <prefix>/<cluster>/snapshots/<id>/{<attempt>/etcd.db.zst,manifest.json}
    let folder = store.path().join("prod/snapshots").join(id);
    let data = manifest["stored"]["name"].as_str().unwrap();
    assert!(data.ends_with("/etcd.db.zst"), "{data}");
    assert!(folder.join(data).is_file());
    assert!(folder.join("manifest.json").is_file());

    let table = dr.run_ok(&["list"]);
    assert!(
        table.contains(id) && table.contains("before upgrade"),
        "{table}"
    );
    let verified = dr.run_ok(&["verify", "latest"]);
    assert!(verified.contains("OK"), "{verified}");

    fetch_restore_and_compare(&dr, id, &etcd, EtcdVersion::V3_5);
}

#[test]
fn snapshot_of_a_tls_cluster_to_s3_comes_from_the_leader() {
    let etcd = EtcdCluster::start(EtcdOptions {
        members: 3,
        tls: true,
        ..EtcdOptions::default()
    });
    etcd.fill(FillSpec::objects(2000));
    let s3 = MotoServer::with_bucket("dr-eu");
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::S3 {
            server: &s3,
            bucket: "dr-eu",
            prefix: "eu/dr",
        },
        "",
    );
    let manifest = dr.snapshot_json(&[]);
    let leader = etcd.leader_index();
    assert_eq!(manifest["etcd"]["source_endpoint"], etcd.endpoint(leader));
    let members = manifest["etcd"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    let leaders: Vec<_> = members.iter().filter(|m| m["is_leader"] == true).collect();
    assert_eq!(leaders.len(), 1);
    assert_eq!(leaders[0]["id"], manifest["etcd"]["source_member_id"]);
    assert!(members.iter().all(|m| m["status"]["version"] == "3.5.16"));

    let id = manifest["id"].as_str().unwrap();
    let keys = s3.keys("dr-eu", "eu/dr/prod/snapshots/");
    assert_eq!(
        keys,
        vec![
            format!(
                "eu/dr/prod/snapshots/{id}/{}",
                manifest["stored"]["name"].as_str().unwrap()
            ),
            format!("eu/dr/prod/snapshots/{id}/manifest.json"),
        ]
    );
    assert!(s3.pending_multipart_uploads("dr-eu").is_empty());
    dr.run_ok(&["verify", id]);
    fetch_restore_and_compare(&dr, id, &etcd, EtcdVersion::V3_5);
}

#[test]
fn etcd_3_4_snapshot_restores_with_etcdctl() {
    let etcd = EtcdCluster::start(EtcdOptions {
        version: EtcdVersion::V3_4,
        ..EtcdOptions::default()
    });
    etcd.fill(FillSpec::objects(1500));
    let s3 = MotoServer::with_bucket("dr34");
    let dr = EtcdDr::with_sections(
        "legacy",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::S3 {
            server: &s3,
            bucket: "dr34",
            prefix: "",
        },
        "",
    );
    let manifest = dr.snapshot_json(&[]);
    assert!(manifest["etcd"]["version"]
        .as_str()
        .unwrap()
        .starts_with("3.4."));
    let id = only_snapshot_id(&dr);
    fetch_restore_and_compare(&dr, &id, &etcd, EtcdVersion::V3_4);
}

#[test]
fn fetch_never_replaces_an_existing_file() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::objects(50));
    let store = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        "",
    );
    dr.run_ok(&["snapshot"]);
    let target = dr.dir().join("existing.db");
    std::fs::write(&target, b"precious").unwrap();
    let error = dr.run_err(&["fetch", "latest", "--output", target.to_str().unwrap()]);
    assert!(error.contains("already exists"), "{error}");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    assert!(!Path::new(&format!("{}.partial", target.display())).exists());
}

#[test]
fn oci_settings_work_against_an_s3_compatible_server() {
    // OCI Object Storage is reached through its S3-compatible API with these exact client
    // settings (namespace, region, path-style, a customer secret key in a credentials file);
    // only the endpoint is overridden to point at the local server.
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::objects(300));
    let s3 = MotoServer::with_bucket("dr-oci");
    let credentials = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        credentials.path(),
        "[oci]\naws_access_key_id = ocid1.credential.test\naws_secret_access_key = customer-secret\n",
    )
    .unwrap();
    let dr = EtcdDr::new(&format!(
        "cluster = \"prod\"\n{}\n[store]\ntype = \"oci\"\nbucket = \"dr-oci\"\nnamespace = \"axaxnpcrorw5\"\nregion = \"eu-frankfurt-1\"\nendpoint = \"{}\"\ncredentials_file = \"{}\"\nprofile = \"oci\"\n",
        etcd.config_section(&etcd.endpoints()),
        s3.endpoint(),
        credentials.path().display()
    ))
    // No key in the environment: the credentials file must be what is used.
    .env("AWS_ACCESS_KEY_ID", "")
    .env("AWS_SECRET_ACCESS_KEY", "");
    let manifest = dr.snapshot_json(&[]);
    let id = manifest["id"].as_str().unwrap();
    assert_eq!(
        s3.keys("dr-oci", "prod/"),
        vec![
            format!(
                "prod/snapshots/{id}/{}",
                manifest["stored"]["name"].as_str().unwrap()
            ),
            format!("prod/snapshots/{id}/manifest.json"),
        ]
    );
    fetch_restore_and_compare(&dr, id, &etcd, EtcdVersion::V3_5);
}
