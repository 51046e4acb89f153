//! Promote over ssh onto three namespace nodes (each with its own `/etc/hosts`), beyond the
//! restore itself: preflight reading the nodes' own shape (kubeadm-flags.env's runtime
//! endpoint, the names in kube-apiserver's certificate), the API front-end alias on every node and its rollback, and the operator's hooks
//! with their environment, order and failure policies.

use std::time::Duration;

use etcd_dr_cluster_shape::CheckSeverity;
use etcd_dr_e2e::k8s_fixtures::KubeadmCluster;
use etcd_dr_e2e::kube_pki::KubePki;
use etcd_dr_e2e::kubelet::{dump_member, member_revision, put_keys};
use etcd_dr_e2e::promotion::{
    assert_state, primary_with_bundles, primary_with_bundles_and_objects, promote_over_ssh,
    promote_over_ssh_request, record_json,
};
use etcd_dr_e2e::secondary::SshSecondary;
use etcd_dr_e2e::wait_for;
use etcd_dr_restore::{
    FrontEndConfig, HookConfig, HookFailure, HookPhase, HookTarget, PromotionRequest,
    PromotionState, StepName, StepState, HOSTS_MARK,
};

const FRONT_END: &str = "k8s-api.dr.test";
const CONTAINERD: &str = "unix:///var/run/containerd/containerd.sock";
const CRIO: &str = "unix:///var/run/crio/crio.sock";

fn hook(name: &str, phase: HookPhase, script: &str) -> HookConfig {
    HookConfig {
        name: name.into(),
        phase,
        command: vec!["sh".into(), "-c".into(), script.into()],
        run_on: HookTarget::Bastion,
        timeout: Duration::from_secs(20),
        on_failure: HookFailure::Abort,
    }
}

fn front_end(address: &str) -> FrontEndConfig {
    FrontEndConfig {
        enabled: true,
        address: Some(address.into()),
        ..FrontEndConfig::default()
    }
}

/// What `name` resolves to on node `index`, through its own resolver.
fn resolve_on(secondary: &SshSecondary, index: usize, name: &str) -> String {
    let out = secondary.ground.ssh(
        index,
        &format!("getent hosts {name} | awk '{{print $1; exit}}'"),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const API_SERVER_CERT: &str = "/etc/kubernetes/pki/apiserver.crt";

#[test]
fn a_node_on_another_runtime_is_refused_and_with_warn_the_front_end_points_at_the_secondary() {
    let mut secondary = SshSecondary::start();
    let cluster = KubeadmCluster {
        version: "v1.34.4",
        control_plane_endpoint: &format!("{FRONT_END}:6443"),
        etcd_image_tag: "3.5.16-0",
        nodes: &["cp1", "cp2", "cp3"],
        cri_socket: CONTAINERD,
        runtime_version: "containerd://1.7.27",
    };
    let (primary, identity) = primary_with_bundles_and_objects(&secondary, &cluster.objects());
    let recorded = &primary.dr.list_json()[0]["kubernetes"];
    assert_eq!(
        recorded["kubeadm"]["control_plane_endpoint"],
        format!("{FRONT_END}:6443"),
        "{recorded}"
    );
    secondary.become_secondary();
    // cp2 was rebuilt on CRI-O, and its kube-apiserver certificate names only itself; cp3 has
    // no kube-apiserver certificate and still has an older alias to the primary's cp1.
    let mut hosts_before = Vec::new();
    for (index, node) in secondary.ground.nodes().iter().enumerate() {
        let cert = node.host_path(API_SERVER_CERT);
        match index {
            0 => std::fs::write(&cert, KubePki::generate(&["cp1", FRONT_END]).apiserver.cert),
            1 => std::fs::write(&cert, KubePki::generate(&["cp2"]).apiserver.cert),
            _ => std::fs::remove_file(&cert),
        }
        .unwrap();
        let socket = if index == 1 { CRIO } else { CONTAINERD };
        std::fs::write(
            node.host_path("/var/lib/kubelet/kubeadm-flags.env"),
            format!(
                "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint={socket} --node-ip={}\"\n",
                node.address
            ),
        )
        .unwrap();
        if index == 2 {
            let mut hosts = std::fs::read_to_string(node.hosts_file()).unwrap();
            hosts.push_str(&format!("10.0.0.11 {FRONT_END} {HOSTS_MARK}\n"));
            std::fs::write(node.hosts_file(), hosts).unwrap();
        }
        hosts_before.push(std::fs::read_to_string(node.hosts_file()).unwrap());
    }
    assert_eq!(resolve_on(&secondary, 2, FRONT_END), "10.0.0.11");
    let store = primary.store.path().join("bucket");
    let config = secondary.config(&primary.store.path().join("work"));

    // The dry run lists the node's runtime and the certificates; nothing changes.
    let dry_run = PromotionRequest {
        dry_run: true,
        ..PromotionRequest::default()
    };
    let mut strict = config.clone();
    strict.shape_checks.api_server_cert_sans = CheckSeverity::Error;
    let record = promote_over_ssh_request(&secondary, strict, &store, &identity, dry_run);
    assert_state(&record, PromotionState::Failed);
    let error = record.error.clone().unwrap_or_default();
    for expected in [
        &format!(
            "node shape, container_runtime: cp2: kubelet's container runtime endpoint is {CRIO}"
        ),
        "[promote.shape_checks] container_runtime = \"warn\"",
        &format!("node shape, api_server_cert_sans: cp2: kube-apiserver's certificate {API_SERVER_CERT} is not valid for the API front-end name {FRONT_END} (its names: "),
        &format!("node shape, api_server_cert_sans: cp3: kube-apiserver's certificate {API_SERVER_CERT} is missing"),
        "[promote.shape_checks] api_server_cert_sans = \"warn\"",
    ] {
        assert!(
            error.contains(expected),
            "missing `{expected}` in:\n{error}"
        );
    }
    assert!(!error.contains("cp1: kubelet"), "{error}");
    assert!(!error.contains("cp3: kubelet"), "{error}");
    assert!(!error.contains("cp1: kube-apiserver's"), "{error}");

    // Set to warn, the promotion goes on, points the front end at the secondary on every node
    // and runs an `after` hook on every node with the promotion's facts.
    let mut config = config;
    config.shape_checks.container_runtime = CheckSeverity::Warn;
    config.front_end = front_end("127.0.0.11");
    let mut env_hook = hook(
        "record-env",
        HookPhase::After,
        "env | grep '^DR_' | sort > /var/lib/kubelet/hook-env",
    );
    env_hook.run_on = HookTarget::Nodes;
    config.hooks = vec![env_hook];
    let record = promote_over_ssh(&secondary, config, &store, &identity);
    assert_state(&record, PromotionState::Succeeded);
    let warnings = record.warnings.join("\n");
    for expected in [
        format!("container_runtime: cp2: kubelet's container runtime endpoint is {CRIO}"),
        format!("api_server_cert_sans: cp2: kube-apiserver's certificate {API_SERVER_CERT} is not valid for the API front-end name {FRONT_END}"),
        format!("api_server_cert_sans: cp3: kube-apiserver's certificate {API_SERVER_CERT} is missing"),
    ] {
        assert!(warnings.contains(&expected), "missing `{expected}` in:\n{warnings}");
    }
    assert!(!warnings.contains("cp1: kube-apiserver's"), "{warnings}");
    let front = record.step(StepName::FrontEnd);
    assert_eq!(
        front.progress.state,
        StepState::Done,
        "{}",
        record_json(&record)
    );
    assert_eq!(front.nodes.len(), 3);
    for (index, node) in secondary.ground.nodes().iter().enumerate() {
        assert_eq!(
            resolve_on(&secondary, index, FRONT_END),
            "127.0.0.11",
            "{}",
            node.name
        );
        let hosts = std::fs::read_to_string(node.hosts_file()).unwrap();
        let marked: Vec<&str> = hosts.lines().filter(|l| l.contains(HOSTS_MARK)).collect();
        assert_eq!(
            marked,
            [format!("127.0.0.11 {FRONT_END} {HOSTS_MARK}")],
            "{hosts}"
        );
        // Every unmarked line as it was.
        let unmarked = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.contains(HOSTS_MARK))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(unmarked(&hosts), unmarked(&hosts_before[index]));

        let env = std::fs::read_to_string(node.host_path("/var/lib/kubelet/hook-env")).unwrap();
        for expected in [
            format!("DR_NODE={}", node.name),
            format!("DR_PROMOTION_ID={}", record.id),
            format!("DR_SNAPSHOT={}", record.snapshot.as_ref().unwrap()),
            "DR_MODE=failover".into(),
            "DR_HOOK_PHASE=after".into(),
            "DR_HOOK_NAME=record-env".into(),
            "DR_CONTROL_PLANE_NODES=cp1 cp2 cp3".into(),
            "DR_CLUSTER=prod".into(),
        ] {
            assert!(
                env.lines().any(|l| l == expected),
                "missing {expected} in:\n{env}"
            );
        }
    }
}

#[test]
fn hooks_run_in_order_and_a_failing_after_hook_rolls_every_node_and_alias_back() {
    let mut secondary = SshSecondary::start();
    let (primary, identity) = primary_with_bundles(&secondary);
    secondary.become_secondary();
    put_keys(&secondary.client_urls, "/secondary-only", 30);
    let before = dump_member(&secondary.client_urls[0]);
    let before_revision = member_revision(&secondary.client_urls[0]);
    // cp2 has its own alias from before, after the file's first line (not first, where the
    // step writes its own): the rollback puts it back there.
    let node = secondary.ground.node(1);
    let hosts = std::fs::read_to_string(node.hosts_file()).unwrap();
    let (first, rest) = hosts.split_once('\n').unwrap_or((&hosts, ""));
    std::fs::write(
        node.hosts_file(),
        format!("{first}\n10.0.0.12 {FRONT_END} {HOSTS_MARK}\n{rest}"),
    )
    .unwrap();
    let hosts_before: Vec<String> = secondary
        .ground
        .nodes()
        .iter()
        .map(|n| std::fs::read_to_string(n.hosts_file()).unwrap())
        .collect();

    let log = secondary.ground.dir().join("hooks.log");
    let log = log.display();
    let mut config = secondary.config(&primary.store.path().join("work"));
    config.front_end = FrontEndConfig {
        name: Some(FRONT_END.into()),
        ..front_end("127.0.0.12")
    };
    let mut second = hook(
        "second",
        HookPhase::Before,
        &format!("echo second >> {log}; echo 'second: not today' >&2; exit 3"),
    );
    second.on_failure = HookFailure::Warn;
    let mut check = hook(
        "check",
        HookPhase::After,
        &format!(
            "[ \"$(hostname)\" != cp2 ] || {{ echo 'cp2 says no' >&2; exit 4; }}; grep -q '127.0.0.12 {FRONT_END}' /etc/hosts"
        ),
    );
    check.run_on = HookTarget::Nodes;
    config.hooks = vec![
        hook(
            "first",
            HookPhase::Before,
            &format!("echo \"first $DR_HOOK_PHASE $DR_PROMOTION_ID $DR_MODE $DR_CONTROL_PLANE_NODES\" >> {log}"),
        ),
        second,
        hook("third", HookPhase::After, &format!("echo third >> {log}")),
        check,
    ];
    let record = promote_over_ssh(
        &secondary,
        config,
        &primary.store.path().join("bucket"),
        &identity,
    );
    assert_state(&record, PromotionState::RolledBack);

    // In order, with their environment; the failing `warn` hook did not stop the next one.
    let log = std::fs::read_to_string(secondary.ground.dir().join("hooks.log")).unwrap();
    assert_eq!(
        log,
        format!(
            "first before {} failover cp1 cp2 cp3\nsecond\nthird\n",
            record.id
        )
    );
    let warnings = record.warnings.join("\n");
    assert!(
        warnings.contains("hook second (before) failed") && warnings.contains("second: not today"),
        "{warnings}"
    );
    let before_hooks = record.step(StepName::HooksBefore);
    assert_eq!(before_hooks.progress.state, StepState::Done);
    let states: Vec<(&str, StepState)> = before_hooks
        .nodes
        .iter()
        .map(|n| (n.node.as_str(), n.progress.state))
        .collect();
    assert_eq!(
        states,
        [
            ("first@bastion", StepState::Done),
            ("second@bastion", StepState::Failed)
        ]
    );
    // The `abort` hook failed on cp2 only (the alias was in place on the others).
    let error = record.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("hook check (after) failed")
            && error.contains("check@cp2: exit 4; stderr: cp2 says no"),
        "{error}"
    );
    let after_hooks = record.step(StepName::HooksAfter);
    let failed: Vec<&str> = after_hooks
        .nodes
        .iter()
        .filter(|n| n.progress.state == StepState::Failed)
        .map(|n| n.node.as_str())
        .collect();
    assert_eq!(failed, ["check@cp2"], "{}", record_json(&record));

    // Everything back: the hosts files byte for byte, every member's data and revision.
    assert_eq!(
        record.step(StepName::FrontEnd).progress.state,
        StepState::RolledBack,
        "{}",
        record_json(&record)
    );
    assert_eq!(
        record.step(StepName::Rollback).progress.state,
        StepState::Done
    );
    for (index, node) in secondary.ground.nodes().iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(node.hosts_file()).unwrap(),
            hosts_before[index],
            "{}",
            node.name
        );
    }
    assert_eq!(resolve_on(&secondary, 1, FRONT_END), "10.0.0.12");
    secondary.wait_serving();
    for url in &secondary.client_urls {
        wait_for("the old data", Duration::from_secs(20), || {
            (dump_member(url) == before).then_some(())
        });
        assert_eq!(member_revision(url), before_revision, "{url}");
    }
}
