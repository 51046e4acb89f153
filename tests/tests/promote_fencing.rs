//! The binary promotes: `POST /v1/promote` on the secondary daemon (token, conflicts, the
//! restore lock, the Kubernetes API after-steps through faults: a slow `/readyz`, one rollout
//! restart failing) fences the primary daemon, which then ships nothing; `etcd-dr promote
//! --switchover` restores exactly the primary's final snapshot.

use std::time::Duration;

use etcd_dr_e2e::daemon::{write_token, Api, PrimaryDaemon};
use etcd_dr_e2e::kube_recorder::{KubeFaults, KubeRecorder, INJECTED_ERROR};
use etcd_dr_e2e::kubelet::{dump_member, member_revision, put_keys};
use etcd_dr_e2e::local_secondary::{this_host, LocalSecondary};
use etcd_dr_e2e::promotion::{step_states, write_lock};
use etcd_dr_e2e::{http_request, terminate, wait_for, EtcdDr, KillOnDrop, StoreTarget};

/// The Kubernetes API steps meet faults the real API (`kube_api.rs`) cannot produce on demand,
/// from a small recording HTTP server that checks the exact requests: the first `/readyz`
/// answers later than the request timeout (the health step asks again), and one Deployment's
/// rollout restart gets a 500 (its result is `failed` with the API's message, every other
/// workload and pod delete is still done, and the promotion succeeds).
#[test]
fn the_api_promotes_once_fences_the_primary_and_calls_the_kubernetes_api() {
    let host = this_host();
    let store = tempfile::tempdir().unwrap();
    let primary = PrimaryDaemon::start(&host, store.path(), "10s");
    // The first run of the schedule comes at once.
    wait_for(
        "the primary's first snapshot",
        Duration::from_secs(30),
        || (!primary.snapshots().is_empty()).then_some(()),
    );
    let primary_keys = primary.etcd.dump();

    let node = LocalSecondary::start(&host);
    let kube = KubeRecorder::start_with(KubeFaults {
        failing_rollout: Some("shop/cart".into()),
        first_readyz_delay: Some(Duration::from_secs(3)),
    });
    let kube_token = node.dir().join("kube-token");
    std::fs::write(&kube_token, "kube-bearer-123\n").unwrap();
    let api = Api::on_free_port();
    let secondary = EtcdDr::with_sections(
        "prod",
        "",
        &StoreTarget::Local(store.path()),
        &format!(
            "role = \"secondary\"\n{}{}[promote.kubernetes]\napi_server = \"{}\"\ntoken_file = \"{}\"\nrequest_timeout = \"1s\"\n[secondary]\npoll_interval = \"1s\"\n",
            api.section(&write_token(node.dir()), ""),
            node.sections(&node.dir().join("bastion"), ""),
            kube.url(),
            kube_token.display()
        ),
    );
    // Killed if an assertion fails first, so a failed run leaves no daemon behind.
    let child = KillOnDrop::new(secondary.spawn(&["run"], "secondary.log"));
    api.wait_ready();
    assert_eq!(api.metric("etcd_dr_promotion_state"), 0.0);
    let response = api.get("/v1/promote");
    assert_eq!(response.status, 404, "{}", response.text());

    // No token, no promotion; a bad body is named.
    let response = http_request(api.addr, "POST", "/v1/promote", &[], b"{}").unwrap();
    assert_eq!(response.status, 401, "{}", response.text());
    let response = api.post_json("/v1/promote", r#"{"mode":"sideways"}"#);
    assert_eq!(response.status, 400, "{}", response.text());
    // In place is the command line's `etcd-dr restore`, not the daemon's.
    let response = api.post_json("/v1/promote", r#"{"mode":"in-place"}"#);
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response.text().contains("etcd-dr restore"),
        "{}",
        response.text()
    );
    // A restore lock left by a crashed run is a conflict, not a start.
    write_lock(store.path(), "r-crashed");
    let response = api.post_json("/v1/promote", "{}");
    assert_eq!(response.status, 409, "{}", response.text());
    assert!(response.text().contains("r-crashed"), "{}", response.text());
    std::fs::remove_file(store.path().join("prod/restore-lock.json")).unwrap();

    let response = api.post_json("/v1/promote", r#"{"snapshot":"latest","mode":"failover"}"#);
    assert_eq!(response.status, 202, "{}", response.text());
    let id = response.json()["id"].as_str().unwrap().to_string();
    // While it runs (or once it ran), a second one is refused.
    let again = api.post_json("/v1/promote", "{}");
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(again.json()["error"], "promotion_conflict");

    let record = api.wait_promotion();
    assert_eq!(record["id"], id.as_str());
    // The caller is recorded (token and address), not the daemon's own user; the fence marker
    // names it too.
    let requested_by = record["requested_by"].as_str().unwrap();
    assert!(
        requested_by.starts_with("api token from 127.0.0.1:")
            && requested_by.ends_with(&format!("(API of {host})")),
        "{record:#}"
    );
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.path().join("prod/promotion.json")).unwrap())
            .unwrap();
    assert_eq!(marker["requested_by"], requested_by);
    assert_eq!(
        record["state"],
        "succeeded",
        "{record:#}\n{}",
        secondary.log("secondary.log")
    );
    assert_eq!(
        step_states(&record),
        [
            ("switchover", "skipped"),
            ("select", "done"),
            ("fence", "done"),
            ("verify", "done"),
            ("preflight", "done"),
            ("hooks-before", "skipped"),
            ("restore", "done"),
            ("front-end", "skipped"),
            ("health", "done"),
            // One rollout restart failed: the step says so, the restore stands.
            ("after", "failed"),
            ("hooks-after", "skipped"),
            ("rollback", "skipped"),
        ]
    );
    let health = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "health")
        .unwrap();
    assert!(
        health["detail"]
            .as_str()
            .unwrap()
            .contains("kube-apiserver ready and serving lists"),
        "{record:#}"
    );
    assert!(
        dump_member(&node.client_url) == primary_keys,
        "restored data differs from the primary's"
    );
    assert_eq!(api.metric("etcd_dr_promotion_state"), 2.0);
    assert!(api.metric("etcd_dr_promotion_duration_seconds") > 0.0);
    let status = api.status();
    assert_eq!(status["promotion"]["id"], id.as_str());
    assert_eq!(status["promotion"]["state"], "succeeded");
    let again = api.post_json("/v1/promote", "{}");
    assert_eq!(again.status, 409, "{}", again.text());
    assert!(again.json()["detail"].as_str().unwrap().contains(&id));

    // The Kubernetes API saw exactly: readiness and a list, the Nodes, then rollout restarts,
    // then pod deletions.
    let requests = kube.requests();
    let path = |target: &str| target.split('?').next().unwrap_or("").to_string();
    let first_non_ready = requests
        .iter()
        .position(|r| path(&r.target) != "/readyz")
        .unwrap();
    // The first `/readyz` answered after the 1 s request timeout: asked again.
    assert!(first_non_ready >= 2, "{requests:#?}");
    assert!(requests
        .iter()
        .all(|r| r.authorization.as_deref() == Some("Bearer kube-bearer-123")));
    let calls: Vec<String> = requests[first_non_ready..]
        .iter()
        .map(|r| format!("{} {}", r.method, path(&r.target)))
        .collect();
    assert_eq!(
        calls,
        [
            "GET /api/v1/namespaces",
            "GET /api/v1/nodes",
            "GET /apis/apps/v1/deployments",
            "PATCH /apis/apps/v1/namespaces/default/deployments/web",
            "PATCH /apis/apps/v1/namespaces/shop/deployments/cart",
            "GET /apis/apps/v1/daemonsets",
            "PATCH /apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy",
            "DELETE /api/v1/namespaces/kube-system/pods",
            "DELETE /api/v1/namespaces/kube-system/pods",
            "DELETE /api/v1/namespaces/kube-system/pods",
        ]
    );
    let deletes: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.target.as_str())
        .collect();
    // The record's typed after-step results name each object the calls acted on.
    let results: Vec<String> = record["after_results"]
        .as_array()
        .unwrap_or_else(|| panic!("no after_results: {record:#}"))
        .iter()
        .filter(|r| r["action"] != "kubelet-restart")
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["action"].as_str().unwrap(),
                r["resource"].as_str().unwrap_or("-"),
                r["target"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
                r["detail"].as_str().unwrap_or("-")
            )
        })
        .collect();
    let failed = "rollout-restart deployments shop/cart failed ";
    let (failed_at, failure) = results
        .iter()
        .enumerate()
        .find(|(_, r)| r.starts_with(failed))
        .unwrap_or_else(|| panic!("no failed rollout of shop/cart: {record:#}"));
    assert!(failure.contains(INJECTED_ERROR), "{failure}");
    let mut results = results;
    results[failed_at] = failed.to_string();
    assert_eq!(
        results,
        [
            "nodes-ready nodes * done every Node Ready (1)",
            "rollout-restart deployments default/web done -",
            failed,
            "rollout-restart daemonsets kube-system/kube-proxy done -",
            "pod-delete pods kube-system/deleted-1 done label k8s-app=kube-proxy",
            "pod-delete pods kube-system/deleted-1 done label component=kube-controller-manager",
            "pod-delete pods kube-system/deleted-1 done label component=kube-scheduler",
        ],
        "{record:#}"
    );
    // The failure is a warning of the promotion, naming the workload.
    let warnings = record["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| {
            let w = w.as_str().unwrap_or("");
            w.starts_with("after-steps failed") && w.contains("shop/cart")
        }),
        "{record:#}"
    );
    for (delete, selector) in deletes.iter().zip([
        "labelSelector=k8s-app%3Dkube-proxy",
        "labelSelector=component%3Dkube-controller-manager",
        "labelSelector=component%3Dkube-scheduler",
    ]) {
        assert!(delete.contains(selector), "{delete}");
    }
    for patch in requests.iter().filter(|r| r.method == "PATCH") {
        assert_eq!(
            patch.content_type.as_deref(),
            Some("application/strategic-merge-patch+json")
        );
        let body: serde_json::Value = serde_json::from_str(&patch.body).unwrap();
        let stamp = body["spec"]["template"]["metadata"]["annotations"]
            ["kubectl.kubernetes.io/restartedAt"]
            .as_str()
            .unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "{stamp}"
        );
    }

    // The primary sees the marker, says so, and ships no more.
    wait_for("the primary to be fenced", Duration::from_secs(10), || {
        (primary.api.status()["fenced"] == true).then_some(())
    });
    let status = primary.api.status();
    assert!(
        status["fenced_reason"].as_str().unwrap().contains(&id),
        "{status:#}"
    );
    assert_eq!(primary.api.metric("etcd_dr_fenced"), 1.0);
    let shipped = primary.snapshots().len();
    primary.etcd.put("/registry/after-the-fence", b"x");
    // Longer than the schedule's interval: a run came and shipped nothing.
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(
        primary.snapshots().len(),
        shipped,
        "a fenced primary shipped"
    );
    let trigger = primary.api.post_json("/v1/snapshots", "");
    assert_eq!(trigger.status, 409, "{}", trigger.text());
    assert!(primary.dr.log("primary.log").contains("fenced"));

    terminate(child.child());
    let _ = child.into_inner().wait_with_output();
}

#[test]
fn a_switchover_restores_the_primarys_final_snapshot_exactly() {
    let host = this_host();
    let store = tempfile::tempdir().unwrap();
    // The schedule never comes round during the test: only the switchover snapshot is taken.
    let primary = PrimaryDaemon::start(&host, store.path(), "1h");
    let last_revision = put_keys(
        &primary.etcd.endpoints(),
        "/registry/configmaps/default/last",
        25,
    );
    let primary_keys = primary.etcd.dump();

    let node = LocalSecondary::start(&host);
    put_keys(&node.endpoints(), "/secondary-only", 10);
    let secondary = EtcdDr::with_sections(
        "prod",
        "",
        &StoreTarget::Local(store.path()),
        &format!(
            "role = \"secondary\"\n{}",
            node.sections(&node.dir().join("bastion"), "switchover_timeout = \"30s\"")
        ),
    );
    // A dry run prints the plan and asks the primary nothing.
    let plan = secondary.run_ok(&["promote", "--switchover", "--dry-run"]);
    assert!(plan.contains("plan (nothing was changed):"), "{plan}");
    assert!(
        plan.contains(&format!("{host}: data dir {}", node.data().display())),
        "{plan}"
    );
    assert!(plan.contains("revision bump  +"), "{plan}");
    assert!(!store.path().join("prod/switchover-request.json").exists());
    assert!(!store.path().join("prod/promotion.json").exists());
    assert_eq!(primary.api.status()["fenced"], false);

    let output = secondary.run(&["promote", "--switchover", "--json"]);
    let progress = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{progress}\n{}",
        primary.dr.log("primary.log")
    );
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["state"], "succeeded", "{record:#}");
    // The command line records who ran it: user@host.
    let requested_by = record["requested_by"].as_str().unwrap();
    assert!(
        requested_by.ends_with(&format!("@{host}")) && !requested_by.contains("token"),
        "{record:#}"
    );
    assert!(progress.contains("switchover: done"), "{progress}");
    assert!(progress.contains("restore "), "{progress}");

    // The primary took one final snapshot at its last revision, labelled, and stopped.
    let snapshots = primary.snapshots();
    let last = snapshots.last().unwrap();
    assert_eq!(last["label"], "switchover");
    assert_eq!(last["etcd"]["revision"], last_revision);
    assert_eq!(record["snapshot"], last["id"]);
    let status = primary.api.status();
    assert_eq!(status["fenced"], true, "{status:#}");
    assert_eq!(
        primary.etcd.revision(),
        last_revision,
        "the primary moved on"
    );

    // Nothing lost: the restored data is the primary's last state, its revision that of the
    // primary's last write lifted by exactly the bump.
    assert!(dump_member(&node.client_url) == primary_keys);
    let bump = record["plan"]["bump_revision"].as_i64().unwrap();
    assert_eq!(member_revision(&node.client_url) - bump, last_revision);

    // A second promotion is refused at the fence.
    let output = secondary.run(&["promote"]);
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("already fenced"), "{text}");
}
