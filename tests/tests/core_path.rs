//! The core path end to end, against every kind of store: real etcd → `etcd-dr snapshot` →
//! store → `verify`/`fetch` → `etcdutl snapshot restore` → a new etcd serving exactly the
//! source's keys and values.
//!
//! One function per scenario takes the store; `on_every_store!` makes one test per scenario and
//! store kind (`<scenario>::local`, `::s3`, `::oci`), as object_store's shared backend tests do.

use std::path::Path;

use etcd_dr_e2e::{
    EtcdCluster, EtcdDr, EtcdOptions, EtcdVersion, FillSpec, StoreBackend, StoreUnderTest,
};

macro_rules! on_every_store {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use etcd_dr_e2e::StoreBackend;

            #[test]
            fn local() {
                super::$scenario(StoreBackend::Local)
            }

            #[test]
            fn s3() {
                super::$scenario(StoreBackend::S3)
            }

            #[test]
            fn oci() {
                super::$scenario(StoreBackend::Oci)
            }
        }
    )*};
}

on_every_store!(
    a_labelled_snapshot_restores_every_key,
    a_tls_cluster_is_snapshotted_from_its_leader,
    an_etcd_3_4_snapshot_restores_with_etcdctl,
    fetch_never_replaces_an_existing_file,
);

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

/// The documented layout, and nothing else: `<prefix>/<cluster>/snapshots/<id>/` holds
/// `<attempt>/etcd.db.zst` and `manifest.json`, and no upload is left pending.
fn assert_stored_exactly(store: &StoreUnderTest, folder: &str, manifest: &serde_json::Value) {
    let id = manifest["id"].as_str().unwrap();
    let data = manifest["stored"]["name"].as_str().unwrap();
    let (attempt, name) = data.split_once('/').expect("an attempt folder");
    assert_eq!((attempt.len(), name), (16, "etcd.db.zst"), "{data}");
    assert_eq!(
        store.keys(folder),
        vec![
            format!("{folder}snapshots/{id}/{data}"),
            format!("{folder}snapshots/{id}/manifest.json"),
        ],
        "{}",
        store.backend()
    );
    assert!(store.pending_uploads().is_empty(), "{}", store.backend());
}

fn a_labelled_snapshot_restores_every_key(backend: StoreBackend) {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let revision = etcd.fill(FillSpec::objects(3000));
    let store = StoreUnderTest::start(backend, "eu/dr");
    let dr = store.etcd_dr("prod", &etcd.config_section(&etcd.endpoints()), "");

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
    assert_stored_exactly(&store, "eu/dr/prod/", manifest);

    let table = dr.run_ok(&["list"]);
    assert!(
        table.contains(id) && table.contains("before upgrade"),
        "{table}"
    );
    let verified = dr.run_ok(&["verify", "latest"]);
    assert!(verified.contains("OK"), "{verified}");

    fetch_restore_and_compare(&dr, id, &etcd, EtcdVersion::V3_5);
}

fn a_tls_cluster_is_snapshotted_from_its_leader(backend: StoreBackend) {
    let etcd = EtcdCluster::start(EtcdOptions {
        members: 3,
        tls: true,
        ..EtcdOptions::default()
    });
    etcd.fill(FillSpec::objects(2000));
    let store = StoreUnderTest::start(backend, "eu/dr");
    let dr = store.etcd_dr("prod", &etcd.config_section(&etcd.endpoints()), "");
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
    assert_stored_exactly(&store, "eu/dr/prod/", &manifest);
    dr.run_ok(&["verify", id]);
    fetch_restore_and_compare(&dr, id, &etcd, EtcdVersion::V3_5);
}

fn an_etcd_3_4_snapshot_restores_with_etcdctl(backend: StoreBackend) {
    let etcd = EtcdCluster::start(EtcdOptions {
        version: EtcdVersion::V3_4,
        ..EtcdOptions::default()
    });
    etcd.fill(FillSpec::objects(1500));
    // No prefix: the cluster's folder sits at the top of the bucket or directory.
    let store = StoreUnderTest::start(backend, "");
    let dr = store.etcd_dr("legacy", &etcd.config_section(&etcd.endpoints()), "");
    let manifest = dr.snapshot_json(&[]);
    assert!(manifest["etcd"]["version"]
        .as_str()
        .unwrap()
        .starts_with("3.4."));
    let list = dr.list_json();
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_str().unwrap();
    assert_stored_exactly(&store, "legacy/", &list[0]);
    fetch_restore_and_compare(&dr, id, &etcd, EtcdVersion::V3_4);
}

fn fetch_never_replaces_an_existing_file(backend: StoreBackend) {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::objects(50));
    let store = StoreUnderTest::start(backend, "");
    let dr = store.etcd_dr("prod", &etcd.config_section(&etcd.endpoints()), "");
    dr.run_ok(&["snapshot"]);
    let target = dr.dir().join("existing.db");
    std::fs::write(&target, b"precious").unwrap();
    let error = dr.run_err(&["fetch", "latest", "--output", target.to_str().unwrap()]);
    assert!(error.contains("already exists"), "{error}");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    assert!(!Path::new(&format!("{}.partial", target.display())).exists());
}
