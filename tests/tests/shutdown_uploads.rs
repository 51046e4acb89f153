//! SIGTERM while the upload is completing (S3's CompleteMultipartUpload sent, not answered):
//! the snapshot finishes or aborts its upload within `upload.shutdown_grace`, says which, and
//! leaves no pending upload, no object and no manifest behind. The store is moto behind a proxy
//! that holds the completion request, so the window is hit every time.

use std::time::{Duration, Instant};

use etcd_dr_e2e::{
    terminate, wait_for, EtcdCluster, EtcdDr, EtcdOptions, FillSpec, KillOnDrop, MotoServer,
    TcpProxy,
};

const BUCKET: &str = "grace";

struct Ground {
    _etcd: EtcdCluster,
    s3: MotoServer,
    proxy: TcpProxy,
    dr: EtcdDr,
}

fn ground() -> Ground {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.fill(FillSpec::total_bytes(2 << 20, 4096));
    let s3 = MotoServer::with_bucket(BUCKET);
    let proxy = TcpProxy::start(s3.addr());
    let dr = EtcdDr::new("");
    std::fs::write(
        dr.config_path(),
        format!(
            "cluster = \"prod\"\n{etcd_section}\n[store]\ntype = \"s3\"\nbucket = \"{BUCKET}\"\nprefix = \"dr\"\n\
             endpoint = \"http://{store}\"\nregion = \"us-east-1\"\npath_style = true\n\
             [upload]\nshutdown_grace = \"3s\"\n",
            etcd_section = etcd.config_section(&etcd.endpoints()),
            store = proxy.addr(),
        ),
    )
    .unwrap();
    Ground {
        _etcd: etcd,
        s3,
        proxy,
        dr,
    }
}

/// `etcd-dr snapshot` started; returns once its CompleteMultipartUpload is held by the proxy.
fn snapshot_held_at_completion(ground: &Ground) -> KillOnDrop {
    ground.proxy.hold_requests("POST", "uploadId=");
    let child = KillOnDrop::new(ground.dr.spawn(&["snapshot", "--json"], "snapshot.log"));
    wait_for(
        "the upload's completion request to reach the store",
        Duration::from_secs(60),
        || (ground.proxy.held_requests() > 0).then_some(()),
    );
    child
}

/// SIGTERM to the held snapshot, `after_sigterm`, then its exit within the grace (3 s) and a
/// margin; what it logged.
fn terminate_within_grace(
    ground: &Ground,
    child: KillOnDrop,
    after_sigterm: impl FnOnce(),
) -> String {
    let mut child = child.into_inner();
    let started = Instant::now();
    terminate(&child);
    after_sigterm();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the snapshot did not stop within 20 s of SIGTERM (grace 3 s)\n{}",
            ground.dr.log("snapshot.log")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ground.proxy.release();
    ground.dr.log("snapshot.log")
}

/// Nothing of the snapshot is left in the store: no pending upload, no object, no manifest.
fn assert_nothing_left(ground: &Ground) {
    let pending = ground.s3.pending_multipart_uploads(BUCKET);
    assert!(pending.is_empty(), "pending uploads left: {pending:?}");
    let keys: Vec<String> = ground
        .s3
        .keys(BUCKET, "dr/")
        .into_iter()
        .filter(|key| key.contains("/snapshots/"))
        .collect();
    assert!(keys.is_empty(), "objects left: {keys:?}");
    assert!(ground.dr.list_json().is_empty());
}

#[test]
fn a_completion_that_outlasts_the_grace_is_aborted() {
    let ground = ground();
    let child = snapshot_held_at_completion(&ground);
    // The store never answers the completion: after the grace the upload is aborted.
    let log = terminate_within_grace(&ground, child, || {});
    assert!(
        log.contains("shutdown while completing the upload; giving it a grace period"),
        "{log}"
    );
    assert!(
        log.contains("the upload did not complete within the shutdown grace period; aborting it"),
        "{log}"
    );
    assert!(log.contains("multipart upload aborted"), "{log}");
    assert_nothing_left(&ground);
}

#[test]
fn a_completion_answered_within_the_grace_is_finished_then_removed() {
    let ground = ground();
    let child = snapshot_held_at_completion(&ground);
    // The store answers the completion a moment after SIGTERM: the upload completes, and the
    // object, which no manifest will name, is deleted again.
    let log = terminate_within_grace(&ground, child, || {
        std::thread::sleep(Duration::from_millis(500));
        ground.proxy.release();
    });
    assert!(
        log.contains("shutdown while completing the upload; giving it a grace period"),
        "{log}"
    );
    assert!(
        log.contains("upload completed during shutdown; deleting it"),
        "{log}"
    );
    assert_nothing_left(&ground);
}
