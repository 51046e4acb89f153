//! Node access and control-plane bundles against three namespace nodes with real sshd: the ssh
//! executor, `etcd-dr nodes check`, bundles with kubeadm's default paths round-tripping byte
//! for byte with modes and owners, and unreachable nodes failing the set (or marked missing).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use etcd_dr_e2e::files::files_under;
use etcd_dr_e2e::nodes::ControlPlaneNodes;
use etcd_dr_e2e::{EtcdCluster, EtcdDr, EtcdOptions, StoreTarget};
use etcd_dr_nodes::{Node, NodeError, NodeRole, SshExecutor};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

fn ssh_node(ground: &ControlPlaneNodes, index: usize) -> Node {
    let executor = SshExecutor {
        ssh_config: Some(ground.ssh_config().to_path_buf()),
        connect_timeout: Duration::from_secs(5),
        ..SshExecutor::new(ground.node(index).name.clone())
    };
    Node::new(NodeRole::ControlPlane, Arc::new(executor))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_ssh_executor_reaches_each_node_with_argv_intact() {
    let mut ground = ControlPlaneNodes::start(3);
    let cancel = CancellationToken::new();
    runtime().block_on(async {
        for index in 0..3 {
            let node = ssh_node(&ground, index);
            let out = node.command(["hostname"]).run(&cancel).await.unwrap();
            assert_eq!(out.stdout_text().trim(), format!("cp{}", index + 1));
        }
        let node = ssh_node(&ground, 1);

        // Words that a shell would otherwise split, expand or run arrive unchanged.
        let words = [
            "two words",
            "it's",
            "\"quoted\"",
            "$HOME",
            "`id`",
            "$(id)",
            "*",
            "a;b|c&d",
            "",
            "new\nline",
        ];
        let mut argv = vec!["printf", "%s\\0"];
        argv.extend(words);
        let out = node.command(argv).run(&cancel).await.unwrap();
        let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        assert_eq!(got.len(), words.len() + 1);
        for (got, want) in got.iter().zip(words) {
            assert_eq!(*got, want.as_bytes());
        }

        // The node's own files: cp2's /etc/kubernetes is the ground's cp2 directory.
        let target = "/etc/kubernetes/it's a \"file\" $x";
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        node.write_file(target, 0o600, data.len() as u64, &data[..], &cancel)
            .await
            .unwrap();
        let host = ground.node(1).host_path(target);
        assert_eq!(std::fs::read(&host).unwrap(), data);
        assert!(!ground.node(0).host_path(target).exists());

        // Streamed stdout over ssh, byte for byte.
        let mut stream = node.command(["cat", "--", target]).stream(&cancel);
        let mut back = Vec::new();
        while let Some(chunk) = stream.next().await {
            back.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(back, data);

        // A failing remote command names node, command, status and stderr.
        let error = node
            .command(["ls", "/nonexistent/etcd-dr"])
            .run(&cancel)
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, NodeError::Failed { .. }), "{text}");
        assert!(text.contains("cp2") && text.contains("`ls`"), "{text}");
        assert!(text.contains("No such file"), "{text}");

        // A timeout kills the command.
        let started = std::time::Instant::now();
        let error = node
            .command(["sleep", "30"])
            .timeout(Duration::from_secs(2))
            .run(&cancel)
            .await
            .unwrap_err();
        assert!(matches!(error, NodeError::TimedOut { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(10));
    });

    // A stopped node is unreachable, not a failed command.
    ground.stop_node(2);
    runtime().block_on(async {
        let error = ssh_node(&ground, 2)
            .command(["true"])
            .run(&cancel)
            .await
            .unwrap_err();
        assert!(error.is_unreachable(), "{error}");
        assert!(error.to_string().contains("cp3"), "{error}");
    });
}

/// A config for `etcd` and the ground's nodes, storing into `store`, plain (no encryption).
fn plain_config(
    etcd: &EtcdCluster,
    ground: &ControlPlaneNodes,
    store: &Path,
    extra: &str,
) -> EtcdDr {
    EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store),
        &format!(
            "{}{extra}\n[encryption]\nrequire_encryption = false\n",
            ground.config_section()
        ),
    )
}

#[test]
fn bundles_from_three_nodes_round_trip_with_modes_and_owners() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.put("/registry/configmaps/default/hello", b"world");
    let ground = ControlPlaneNodes::start(3);
    let files = ground.populate_kubeadm();
    let store = tempfile::tempdir().unwrap();
    let dr = plain_config(&etcd, &ground, store.path(), "");

    let manifest = dr.snapshot_json(&[]);
    let id = manifest["id"].as_str().unwrap().to_string();
    let nodes = manifest["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{manifest:#}");
    for (index, bundle) in nodes.iter().enumerate() {
        let name = format!("cp{}", index + 1);
        assert_eq!(bundle["node"], name.as_str());
        assert_eq!(bundle["state"], "stored");
        let object = bundle["object"]["name"].as_str().unwrap();
        assert!(
            object.ends_with(&format!("/nodes/{name}.tar.zst")),
            "{object}"
        );
        let keys: Vec<&str> = bundle["service_account_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            ["etc/kubernetes/pki/sa.key", "etc/kubernetes/pki/sa.pub"]
        );
        assert!(bundle["entries"].as_u64().unwrap() >= 22);
    }
    // One attempt's folder holds the data and every bundle.
    let attempt = manifest["stored"]["name"]
        .as_str()
        .unwrap()
        .trim_end_matches("/etcd.db.zst");
    assert_eq!(
        files_under(store.path()),
        [
            format!("prod/snapshots/{id}/{attempt}/etcd.db.zst"),
            format!("prod/snapshots/{id}/{attempt}/nodes/cp1.tar.zst"),
            format!("prod/snapshots/{id}/{attempt}/nodes/cp2.tar.zst"),
            format!("prod/snapshots/{id}/{attempt}/nodes/cp3.tar.zst"),
            format!("prod/snapshots/{id}/manifest.json"),
        ]
    );

    let verified = dr.run_ok(&["verify", &id]);
    for name in ["cp1", "cp2", "cp3"] {
        assert!(verified.contains(&format!("node {name} OK")), "{verified}");
    }

    for index in 0..3 {
        let out = dr.dir().join(format!("cp{}-bundle", index + 1));
        let printed = dr.run_ok(&[
            "fetch",
            &id,
            "--node",
            &format!("cp{}", index + 1),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(printed.contains("etc/kubernetes/pki/sa.key"), "{printed}");
        files.assert_unpacked(index, &out);
        // Only the configured paths: nothing else of the node.
        assert!(!out
            .join("etc/kubernetes/pki/../../../var/lib/etcd")
            .exists());
    }

    // Never over an existing directory, and an unknown node is named.
    let existing = dr.dir().join("cp1-bundle");
    let error = dr.run_err(&[
        "fetch",
        &id,
        "--node",
        "cp1",
        "-o",
        existing.to_str().unwrap(),
    ]);
    assert!(error.contains("already exists"), "{error}");
    let error = dr.run_err(&["fetch", &id, "--node", "cp9", "-o", "/tmp/x-etcd-dr"]);
    assert!(error.contains("no bundle of node cp9"), "{error}");
    assert!(error.contains("cp1, cp2, cp3"), "{error}");
}

#[test]
fn an_unreachable_node_fails_the_set_or_is_marked_missing() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let mut ground = ControlPlaneNodes::start(3);
    ground.populate_kubeadm();
    ground.stop_node(2);
    let store = tempfile::tempdir().unwrap();

    let dr = plain_config(&etcd, &ground, store.path(), "");
    let error = dr.run_err(&["snapshot"]);
    assert!(
        error.contains("node cp3 is unreachable over ssh (running `tar`)"),
        "{error}"
    );
    assert_eq!(error.matches("unreachable").count(), 1, "{error}");
    // Nothing half-written: no manifest, and the objects already stored were removed.
    assert!(dr.list_json().is_empty());
    assert_eq!(files_under(store.path()), Vec::<String>::new());

    let dr = plain_config(
        &etcd,
        &ground,
        store.path(),
        "[bundle]\non_unreachable = \"warn\"\n",
    );
    let manifest = dr.snapshot_json(&[]);
    let id = manifest["id"].as_str().unwrap();
    let states: Vec<(&str, &str)> = manifest["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["node"].as_str().unwrap(), b["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("cp1", "stored"), ("cp2", "stored"), ("cp3", "missing")]
    );
    assert!(manifest["nodes"][2]["reason"]
        .as_str()
        .unwrap()
        .contains("unreachable"));
    let verified = dr.run_ok(&["verify", id]);
    assert!(verified.contains("node cp3 MISSING"), "{verified}");
    let out = dr.dir().join("cp3");
    let error = dr.run_err(&["fetch", id, "--node", "cp3", "-o", out.to_str().unwrap()]);
    assert!(error.contains("not reachable"), "{error}");
    assert!(!out.exists());
}

#[test]
fn nodes_check_reports_host_names_tools_and_space() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let mut ground = ControlPlaneNodes::start(3);
    let store = tempfile::tempdir().unwrap();
    let dr = plain_config(&etcd, &ground, store.path(), "");

    let table = dr.run_ok(&["nodes", "check"]);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{table}");
    for (index, row) in rows.iter().enumerate() {
        let words: Vec<&str> = row.split_whitespace().collect();
        let name = format!("cp{}", index + 1);
        // NODE ROLE STATUS HOST-NAME MISSING-TOOLS FREE…
        assert_eq!(words[0], name, "{table}");
        assert_eq!(words[1], "control-plane", "{table}");
        assert_eq!(words[2], "ok", "{table}");
        assert_eq!(words[3], name, "{table}");
        // etcdutl and etcdctl are on the nodes' PATH; systemctl may be missing here.
        assert!(
            !words[4].contains("etcdutl") && !words[4].contains("tar"),
            "{table}"
        );
        assert!(row.contains("/var/lib/etcd="), "{table}");
    }

    ground.stop_node(1);
    let output = dr.run(&["nodes", "check"]);
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("cp2") && l.contains("UNREACHABLE")),
        "{stdout}"
    );
    assert!(stderr.contains("1 of 3 nodes failed"), "{stderr}");
}

#[test]
fn bundle_paths_with_spaces_and_quotes_pass_through_safely() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let ground = ControlPlaneNodes::start(1);
    let odd_dir = "/etc/kubernetes/it's \"odd\" $(touch /tmp/etcd-dr-pwned) `x`";
    let host_dir = ground.node(0).host_path(odd_dir);
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("sa.key"), "odd key").unwrap();
    std::fs::write(host_dir.join("a b.conf"), "conf").unwrap();
    std::fs::write(host_dir.join("skip.txt"), "not matched").unwrap();
    let store = tempfile::tempdir().unwrap();
    let toml_string = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let extra = format!(
        "[bundle]\npaths = [{}, {}]\n",
        toml_string(&format!("{odd_dir}/sa.key")),
        toml_string(&format!("{odd_dir}/*.conf")),
    );
    let dr = plain_config(&etcd, &ground, store.path(), &extra);
    let manifest = dr.snapshot_json(&[]);
    let id = manifest["id"].as_str().unwrap();
    assert_eq!(manifest["nodes"][0]["entries"], 2, "{manifest:#}");
    let out = dr.dir().join("odd");
    dr.run_ok(&["fetch", id, "--node", "cp1", "-o", out.to_str().unwrap()]);
    let inside = out.join(odd_dir.trim_start_matches('/'));
    assert_eq!(
        std::fs::read_to_string(inside.join("sa.key")).unwrap(),
        "odd key"
    );
    assert_eq!(
        std::fs::read_to_string(inside.join("a b.conf")).unwrap(),
        "conf"
    );
    assert!(!inside.join("skip.txt").exists());
    assert!(!Path::new("/tmp/etcd-dr-pwned").exists());
}

#[test]
fn control_plane_nodes_can_be_discovered_from_the_etcd_member_names() {
    // An ssh alias points the harness's etcd member name at node cp1.
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let member = etcd.members()[0].name.clone();
    let ground = ControlPlaneNodes::start(1);
    let files = ground.populate_kubeadm();
    let cp1 = ground.node(0);
    let alias = ground.dir().join("ssh_config_alias");
    std::fs::write(
        &alias,
        format!(
            "Host {member}\n  HostName {}\n  Port {}\n  User root\n  HostKeyAlias cp1\n\n{}",
            cp1.address,
            cp1.ssh_port,
            std::fs::read_to_string(ground.ssh_config()).unwrap()
        ),
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        &format!(
            "[nodes]\ndiscover_control_plane = true\n[nodes.access]\nssh_config = \"{}\"\n[encryption]\nrequire_encryption = false\n",
            alias.display()
        ),
    );
    let manifest = dr.snapshot_json(&[]);
    assert_eq!(
        manifest["nodes"][0]["node"],
        member.as_str(),
        "{manifest:#}"
    );
    let id = manifest["id"].as_str().unwrap();
    let out = dr.dir().join(&member);
    dr.run_ok(&["fetch", id, "--node", &member, "-o", out.to_str().unwrap()]);
    files.assert_unpacked(0, &out);

    // The node answers as cp1, not as the member name: a restore there would not work, and
    // check says so.
    let table = dr.run_ok(&["nodes", "check"]);
    let row = table.lines().nth(1).unwrap();
    assert!(
        row.starts_with(&member) && row.contains("NAME-DIFFERS"),
        "{table}"
    );
}

#[test]
fn bundles_to_s3_leave_no_object_and_no_pending_upload_when_a_node_fails() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let mut ground = ControlPlaneNodes::start(2);
    let files = ground.populate_kubeadm();
    let s3 = etcd_dr_e2e::MotoServer::with_bucket("dr-nodes");
    let target = StoreTarget::S3 {
        server: &s3,
        bucket: "dr-nodes",
        prefix: "eu",
    };
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &target,
        &format!(
            "{}\n[upload]\npart_size_mib = 5\n[encryption]\nrequire_encryption = false\n",
            ground.config_section()
        ),
    );

    ground.stop_node(1);
    let error = dr.run_err(&["snapshot"]);
    assert!(error.contains("cp2"), "{error}");
    assert_eq!(s3.keys("dr-nodes", "eu/"), Vec::<String>::new());
    assert_eq!(
        s3.pending_multipart_uploads("dr-nodes"),
        Vec::<String>::new()
    );

    ground.start_node(1);
    let manifest = dr.snapshot_json(&[]);
    let id = manifest["id"].as_str().unwrap();
    let mut keys = s3.keys("dr-nodes", "eu/");
    keys.sort();
    let attempt = manifest["stored"]["name"]
        .as_str()
        .unwrap()
        .trim_end_matches("/etcd.db.zst");
    assert_eq!(
        keys,
        [
            format!("eu/prod/snapshots/{id}/{attempt}/etcd.db.zst"),
            format!("eu/prod/snapshots/{id}/{attempt}/nodes/cp1.tar.zst"),
            format!("eu/prod/snapshots/{id}/{attempt}/nodes/cp2.tar.zst"),
            format!("eu/prod/snapshots/{id}/manifest.json"),
        ]
    );
    let out = dr.dir().join("cp2");
    dr.run_ok(&["fetch", id, "--node", "cp2", "-o", out.to_str().unwrap()]);
    files.assert_unpacked(1, &out);
}
