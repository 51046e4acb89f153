//! The core path on etcd 3.6 and 3.7 (built from the Go modules by the install script) as on
//! 3.5: `etcd-dr snapshot` of a three-member cluster → store → `verify` → `fetch` → `etcdutl
//! snapshot restore` of the same version → a new etcd serving exactly the source's keys.

use etcd_dr_e2e::kube_ground::etcd_version_of;
use etcd_dr_e2e::{EtcdCluster, EtcdDr, EtcdOptions, EtcdVersion, FillSpec, StoreTarget};

fn core_path(version: EtcdVersion, series: &str) {
    let etcd = EtcdCluster::start(EtcdOptions {
        members: 3,
        version,
        ..EtcdOptions::default()
    });
    let revision = etcd.fill(FillSpec::objects(1000));
    let store = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        "",
    );
    dr.run_ok(&["snapshot"]);
    let list = dr.list_json();
    assert_eq!(list.len(), 1, "{list:?}");
    let manifest = &list[0];
    let id = manifest["id"].as_str().unwrap();
    assert_eq!(manifest["etcd"]["revision"], revision);
    assert_eq!(manifest["etcd"]["version"], etcd_version_of(version));
    assert!(
        manifest["etcd"]["version"]
            .as_str()
            .unwrap()
            .starts_with(series),
        "{manifest}"
    );
    assert_eq!(manifest["etcd"]["members"].as_array().unwrap().len(), 3);
    let verified = dr.run_ok(&["verify", "latest"]);
    assert!(verified.contains("OK"), "{verified}");

    let db = dr.dir().join(format!("{id}.db"));
    dr.run_ok(&["fetch", id, "--output", db.to_str().unwrap()]);
    let restored = EtcdCluster::start_restored(&db, version);
    let expected = etcd.dump();
    let actual = restored.dump();
    assert_eq!(actual.len(), expected.len(), "number of keys after restore");
    assert!(
        actual == expected,
        "restored keys or values differ from the source"
    );
}

#[test]
fn core_path_on_etcd_36() {
    core_path(EtcdVersion::V3_6, "3.6.");
}

#[test]
fn core_path_on_etcd_37() {
    core_path(EtcdVersion::V3_7, "3.7.");
}
