//! Faults on the way in: endpoints down or cut mid-stream, bad TLS material, a store that
//! answers 5xx or is gone, a snapshot interrupted mid-upload. In every case either a complete,
//! verified snapshot lands or nothing becomes visible.

use std::time::{Duration, Instant};

use etcd_dr_e2e::{
    free_port, terminate, wait_for, EtcdCluster, EtcdDr, EtcdOptions, FillSpec, MotoServer,
    ProxyMode, StoreTarget, TcpProxy,
};

fn s3_target<'a>(s3: &'a MotoServer, bucket: &'a str) -> StoreTarget<'a> {
    StoreTarget::S3 {
        server: s3,
        bucket,
        prefix: "dr",
    }
}

#[test]
fn a_dead_endpoint_is_skipped() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::objects(100));
    let store = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let endpoints = vec![dead.clone(), etcd.endpoint(0)];
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&endpoints),
        &StoreTarget::Local(store.path()),
        "",
    );
    let manifest = dr.snapshot_json(&[]);
    assert_eq!(manifest["etcd"]["source_endpoint"], etcd.endpoint(0));
    dr.run_ok(&["verify", "latest"]);
}

#[test]
fn a_killed_leader_is_replaced_by_a_follower() {
    let mut etcd = EtcdCluster::start(EtcdOptions {
        members: 3,
        ..EtcdOptions::default()
    });
    etcd.fill(FillSpec::objects(200));
    let old_leader = etcd.leader_index();
    let store = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        "",
    );
    etcd.kill(old_leader);
    etcd.wait_healthy();
    let manifest = dr.snapshot_json(&[]);
    assert_ne!(
        manifest["etcd"]["source_endpoint"],
        etcd.endpoint(old_leader)
    );
    let source = manifest["etcd"]["source_member_id"].clone();
    let members = manifest["etcd"]["members"].as_array().unwrap();
    let leader = members.iter().find(|m| m["is_leader"] == true).unwrap();
    assert_eq!(leader["id"], source, "streamed from the new leader");
    dr.run_ok(&["verify", "latest"]);
}

#[test]
fn a_stream_cut_mid_way_fails_over_to_the_next_member() {
    let etcd = EtcdCluster::start(EtcdOptions {
        members: 3,
        ..EtcdOptions::default()
    });
    // Incompressible enough that the stream takes a while through a throttled proxy.
    etcd.fill(FillSpec {
        objects: 3000,
        value_bytes: 2048,
        seed: 7,
    });
    let proxies: Vec<TcpProxy> = (0..3)
        .map(|i| TcpProxy::start(etcd.client_addr(i)))
        .collect();
    let endpoints: Vec<String> = proxies
        .iter()
        .map(|p| format!("http://{}", p.addr()))
        .collect();
    let leader = etcd.leader_index();
    let store = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&endpoints),
        &StoreTarget::Local(store.path()),
        "",
    );
    proxies[leader].throttle(1024 * 1024);
    let before = proxies[leader].downstream_bytes();
    let child = dr.spawn(&["snapshot", "--json"], "snapshot.log");
    wait_for(
        "the leader's stream to start",
        Duration::from_secs(20),
        || (proxies[leader].downstream_bytes() > before + 512 * 1024).then_some(()),
    );
    proxies[leader].set_mode(ProxyMode::Refuse);
    proxies[leader].cut();
    let output = child.wait_with_output().unwrap();
    let log = dr.log("snapshot.log");
    assert!(output.status.success(), "{log}");
    let manifest: serde_json::Value = serde_json::from_str(&dr.stdout("snapshot.log")).unwrap();
    assert_ne!(manifest["etcd"]["source_endpoint"], endpoints[leader]);
    assert!(log.contains("trying the next endpoint"), "{log}");
    dr.run_ok(&["verify", "latest"]);
    assert_eq!(dr.list_json().len(), 1);
}

#[test]
fn tls_misconfiguration_fails_clearly_and_stores_nothing() {
    let etcd = EtcdCluster::start(EtcdOptions {
        tls: true,
        ..EtcdOptions::default()
    });
    let other_ca = tempfile::tempdir().unwrap();
    let other = etcd_dr_e2e::TlsFiles::generate(other_ca.path(), &[]);
    let store = tempfile::tempdir().unwrap();
    let tls = etcd.tls().unwrap();
    let endpoint = etcd.endpoint(0);
    let section = |ca: &std::path::Path, client: bool| {
        let mut text = format!(
            "[etcd]\nendpoints = [\"{endpoint}\"]\nconnect_timeout = \"2s\"\nrequest_timeout = \"3s\"\nca_file = \"{}\"\n",
            ca.display()
        );
        if client {
            text.push_str(&format!(
                "cert_file = \"{}\"\nkey_file = \"{}\"\n",
                tls.client_cert.display(),
                tls.client_key.display()
            ));
        }
        text
    };
    for (name, etcd_section) in [
        ("wrong CA", section(&other.ca, true)),
        ("no client certificate", section(&tls.ca, false)),
    ] {
        let dr =
            EtcdDr::with_sections("prod", &etcd_section, &StoreTarget::Local(store.path()), "");
        let error = dr.run_err(&["snapshot"]);
        assert!(error.contains(&endpoint), "{name}: {error}");
        assert!(dr.list_json().is_empty(), "{name}");
    }
}

#[test]
fn a_store_answering_503_fails_the_snapshot_then_recovers() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::objects(200));
    let s3 = MotoServer::with_bucket("flaky");
    let proxy = TcpProxy::start(s3.addr());
    let store = format!(
        "[store]\ntype = \"s3\"\nbucket = \"flaky\"\nprefix = \"dr\"\nendpoint = \"http://{}\"\npath_style = true\nrequest_timeout = \"10s\"\nmax_retries = 1\n",
        proxy.addr()
    );
    let dr = EtcdDr::new(&format!(
        "cluster = \"prod\"\n{}\n{store}",
        etcd.config_section(&etcd.endpoints())
    ));
    proxy.set_mode(ProxyMode::ServiceUnavailable);
    let error = dr.run_err(&["snapshot"]);
    assert!(
        error.contains("503") || error.contains("Service Unavailable"),
        "{error}"
    );
    assert!(s3.keys("flaky", "dr/").is_empty());

    proxy.set_mode(ProxyMode::Forward);
    dr.run_ok(&["snapshot"]);
    dr.run_ok(&["verify", "latest"]);
    assert_eq!(s3.keys("flaky", "dr/").len(), 2);
}

#[test]
fn a_store_that_is_down_fails_with_the_store_named() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let mut s3 = MotoServer::with_bucket("gone");
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &s3_target(&s3, "gone"),
        "",
    );
    s3.kill();
    let error = dr.run_err(&["snapshot"]);
    assert!(error.contains("store operation"), "{error}");
}

#[test]
fn sigterm_mid_upload_aborts_it_and_leaves_nothing() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec {
        objects: 6000,
        value_bytes: 2048,
        seed: 3,
    });
    let proxy = TcpProxy::start(etcd.client_addr(0));
    let s3 = MotoServer::with_bucket("interrupted");
    let endpoints = vec![format!("http://{}", proxy.addr())];
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&endpoints),
        &s3_target(&s3, "interrupted"),
        "[upload]\npart_size_mib = 5\n",
    );
    proxy.throttle(4 * 1024 * 1024);
    let child = dr.spawn(&["snapshot"], "snapshot.log");
    wait_for(
        "a multipart upload to start",
        Duration::from_secs(20),
        || (!s3.pending_multipart_uploads("interrupted").is_empty()).then_some(()),
    );
    // Let some bytes flow so that parts may exist, then interrupt.
    let start = proxy.downstream_bytes();
    wait_for("part of the stream", Duration::from_secs(20), || {
        (proxy.downstream_bytes() > start + 2 * 1024 * 1024).then_some(())
    });
    let signalled = Instant::now();
    terminate(&child);
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        signalled.elapsed()
    );
    assert!(
        s3.pending_multipart_uploads("interrupted").is_empty(),
        "the multipart upload was not aborted: {}",
        dr.log("snapshot.log")
    );
    assert!(s3.keys("interrupted", "dr/").is_empty());
    assert!(dr.list_json().is_empty());
}
