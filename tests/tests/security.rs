//! What someone who can write to the store cannot do: plant a snapshot (another etcd's, to the
//! secondary's public age recipient, signed by a key the readers do not trust) or slip in a
//! downgraded one (plain, of another cluster). verify, fetch, list, the secondary daemon and
//! promote all refuse them; and plain copies on local disk stay owner-only under umask 022.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use etcd_dr_e2e::{EtcdCluster, EtcdDr, EtcdOptions, KillOnDrop, StoreTarget};

/// `etcd-dr keygen [--signing] -o <dir>/<name>`: the key file and the printed public key.
fn keygen(dir: &Path, name: &str, signing: bool) -> (PathBuf, String) {
    let path = dir.join(name);
    let mut args = vec!["keygen", "-o", path.to_str().unwrap()];
    if signing {
        args.push("--signing");
    }
    let public = EtcdDr::new("").run_ok(&args).trim().to_string();
    assert_eq!(mode(&path), 0o600, "{}", path.display());
    (path, public)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Copies a snapshot's folder from one store into another, as a store writer would.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A snapshot's id; the next one starts in a later second, so ids sort in the order taken.
fn snapshot_id(dr: &EtcdDr) -> String {
    let id = dr.snapshot_json(&[])["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1100));
    id
}

/// Runs `args` under `umask 022` (through `sh`, since a `Command` cannot set one).
fn run_with_umask_022(dr: &EtcdDr, args: &[&str]) -> Output {
    let inner = dr.command(args);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("umask 022 && exec \"$@\"")
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command.output().unwrap()
}

struct Ground {
    /// The real primary's etcd.
    etcd: EtcdCluster,
    store: tempfile::TempDir,
    keys: tempfile::TempDir,
    identity: PathBuf,
    /// Genuine, downgraded (plain, cluster `staging`, signed with the shared key), forged
    /// (another etcd, to the secondary's recipient, signed with the attacker's key): oldest
    /// first.
    genuine: String,
    downgraded: String,
    forged: String,
    attacker_key: String,
    _other_etcd: EtcdCluster,
}

fn ground() -> Ground {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.put("/registry/secrets/default/real", b"genuine-value");
    let other = EtcdCluster::start(EtcdOptions::default());
    other.put("/registry/secrets/default/real", b"attacker-value");
    let keys = tempfile::tempdir().unwrap();
    let (identity, recipient) = keygen(keys.path(), "secondary.age", false);
    let store = tempfile::tempdir().unwrap();
    let snapshots = store.path().join("prod/snapshots");

    // The real primary: encrypted to the secondary, signed with the shared test key.
    let primary = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        &format!("[encryption]\nrecipients = [\"{recipient}\"]\n"),
    );
    let genuine = snapshot_id(&primary);

    // A sibling cluster signed with the same key, plain: copied into prod's prefix.
    let staging_store = tempfile::tempdir().unwrap();
    let staging = EtcdDr::with_sections(
        "staging",
        &other.config_section(&other.endpoints()),
        &StoreTarget::Local(staging_store.path()),
        "",
    );
    let downgraded = snapshot_id(&staging);
    copy_dir(
        &staging_store
            .path()
            .join(format!("staging/snapshots/{downgraded}")),
        &snapshots.join(&downgraded),
    );

    // The attacker: another etcd, the secondary's public recipient from any manifest, its own
    // signing key; the folder copied in under the newest id.
    let (attacker_key_file, attacker_key) = keygen(keys.path(), "attacker.key", true);
    let attacker_store = tempfile::tempdir().unwrap();
    let attacker = EtcdDr::with_sections(
        "prod",
        &other.config_section(&other.endpoints()),
        &StoreTarget::Local(attacker_store.path()),
        &format!(
            "[signing]\nkey_file = \"{}\"\n[encryption]\nrecipients = [\"{recipient}\"]\n",
            attacker_key_file.display()
        ),
    );
    let forged = snapshot_id(&attacker);
    copy_dir(
        &attacker_store
            .path()
            .join(format!("prod/snapshots/{forged}")),
        &snapshots.join(&forged),
    );
    Ground {
        etcd,
        store,
        keys,
        identity,
        genuine,
        downgraded,
        forged,
        attacker_key,
        _other_etcd: other,
    }
}

/// The secondary's command-line configuration: its identity, the shared trusted key.
fn reader(ground: &Ground, extra: &str) -> EtcdDr {
    EtcdDr::new(&format!(
        "role = \"secondary\"\ncluster = \"prod\"\n{}\n[encryption]\nidentity_file = \"{}\"\n{extra}",
        StoreTarget::Local(ground.store.path()).config_section(),
        ground.identity.display()
    ))
}

#[test]
fn forged_and_downgraded_snapshots_are_refused_by_verify_fetch_list_promote_and_restore() {
    let ground = ground();
    let work = ground.keys.path().join("promote-work");
    let dr = reader(
        &ground,
        &format!(
            "[nodes]\ncontrol_plane = [\"cp1\"]\n[nodes.access]\ntype = \"local\"\n\
             [promote]\nwork_dir = \"{}\"\n[promote.etcd]\nendpoints = [\"{}\"]\n",
            work.display(),
            ground.etcd.endpoints()[0]
        ),
    );

    // The genuine snapshot verifies.
    let verified = dr.run_ok(&["verify", &ground.genuine]);
    assert!(
        verified.contains(&format!("snapshot {} OK", ground.genuine)),
        "{verified}"
    );

    // `latest` is the forged one: refused, naming the stranger's key and the one to use instead.
    let error = dr.run_err(&["verify", "latest"]);
    assert!(
        error.contains(&format!("snapshot {} is refused", ground.forged)),
        "{error}"
    );
    assert!(error.contains(&ground.attacker_key), "{error}");
    assert!(error.contains("not among signing.trusted_keys"), "{error}");
    assert!(error.contains(&ground.genuine), "{error}");

    // The downgraded one: another cluster, and plain where an identity makes encryption required.
    let error = dr.run_err(&["verify", &ground.downgraded]);
    assert!(
        error.contains("belongs to cluster `staging`, not `prod`"),
        "{error}"
    );
    assert!(error.contains("etcd.db.zst is not encrypted"), "{error}");

    // fetch hands out neither, and writes nothing.
    for id in [&ground.forged, &ground.downgraded] {
        let out = dr.dir().join(format!("{id}.db"));
        let error = dr.run_err(&["fetch", id, "-o", out.to_str().unwrap()]);
        assert!(error.contains("is refused"), "{error}");
        assert!(!out.exists());
        assert!(!dr.dir().join(format!("{id}.db.partial")).exists());
    }

    // list shows only the genuine one, and names the refused ones.
    let listed = dr.list_json();
    let ids: Vec<&str> = listed.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [ground.genuine.as_str()]);
    let output = dr.run(&["list"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("REFUSED (not used): {}", ground.forged)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("REFUSED (not used): {}", ground.downgraded)),
        "{stderr}"
    );

    // promote --dry-run and an in-place restore --dry-run (the same select step, the same
    // trust) refuse at the select step, before anything is downloaded.
    for command in ["promote", "restore"] {
        for snapshot in ["latest", ground.downgraded.as_str()] {
            let output = dr.run(&[command, "--dry-run", "--snapshot", snapshot, "--json"]);
            assert!(!output.status.success(), "{command} {snapshot}");
            let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            assert_eq!(record["state"], "failed", "{record:#}");
            let error = record["error"].as_str().unwrap();
            assert!(error.starts_with("select:"), "{error}");
            assert!(error.contains("is refused"), "{error}");
            assert!(!work.exists(), "nothing downloaded for a refused snapshot");
        }
    }

    // The genuine one gets past select and verify; the dry run leaves no plain copy behind,
    // whatever the later steps say (no etcd.yaml on this machine).
    let output = dr.run(&[
        "promote",
        "--dry-run",
        "--snapshot",
        &ground.genuine,
        "--json",
    ]);
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let verify = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "verify")
        .unwrap();
    assert_eq!(verify["state"], "done", "{record:#}");
    assert!(!work.exists(), "the dry run left {}", work.display());
}

/// A secondary daemon over the ground's store, polling quickly, its API on a free port.
fn secondary_daemon(ground: &Ground) -> (EtcdDr, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, 0, 1], etcd_dr_e2e::free_port()));
    let dr = reader(
        ground,
        &format!("[http]\nlisten = \"{addr}\"\n[secondary]\npoll_interval = \"200ms\"\n"),
    );
    (dr, addr)
}

fn get(addr: SocketAddr, path: &str) -> Option<etcd_dr_e2e::HttpResponse> {
    etcd_dr_e2e::http_request(addr, "GET", path, &[], b"").ok()
}

#[test]
fn the_secondary_counts_refused_snapshots_and_its_lag_stays_on_the_genuine_one() {
    let ground = ground();
    let (dr, addr) = secondary_daemon(&ground);
    let child = KillOnDrop::new(dr.spawn(&["run"], "secondary.log"));
    let metrics = etcd_dr_e2e::wait_for("the refused count", Duration::from_secs(30), || {
        get(addr, "/metrics")
            .map(|r| r.text())
            .filter(|text| text.contains("\netcd_dr_snapshots_refused 2\n"))
    });
    let status = etcd_dr_e2e::wait_for("the verification", Duration::from_secs(30), || {
        get(addr, "/v1/status")
            .filter(|r| r.status == 200)
            .map(|r| r.json())
            .filter(|s| s["newest_verified"]["id"].is_string())
    });
    let snapshots = get(addr, "/v1/snapshots").unwrap().json();
    let forged = get(addr, &format!("/v1/snapshots/{}", ground.forged)).unwrap();
    let _ = child.terminate_and_wait();

    assert!(
        metrics.contains("\netcd_dr_unsigned_snapshots_allowed 0\n"),
        "{metrics}"
    );
    // Lag is measured from the genuine snapshot, never from a refused newer one.
    assert_eq!(
        status["newest_verified"]["id"],
        ground.genuine.as_str(),
        "{status:#}"
    );
    assert_eq!(status["secondary"]["verify_failures"], 0, "{status:#}");
    assert_eq!(snapshots["count"], 1, "{snapshots:#}");
    let listed: Vec<&str> = snapshots["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ground.genuine.as_str()]);
    assert_eq!(forged.status, 422, "{}", forged.text());
    assert_eq!(forged.json()["error"], "refused");
    let log = dr.log("secondary.log");
    assert!(
        log.contains(&ground.forged) && log.contains("snapshot refused"),
        "{log}"
    );
}

#[test]
fn a_reader_without_a_trusted_key_refuses_to_start_unless_told_otherwise() {
    let ground = ground();
    let untrusting = EtcdDr::new(&format!(
        "role = \"secondary\"\ncluster = \"prod\"\n{}\n[signing]\n",
        StoreTarget::Local(ground.store.path()).config_section()
    ));
    let error = untrusting.run_err(&["verify", &ground.genuine]);
    assert!(error.contains("signing.trusted_keys"), "{error}");
    assert!(error.contains("signing.allow_unsigned = true"), "{error}");
    let error = untrusting.run_err(&["run"]);
    assert!(error.contains("signing.trusted_keys"), "{error}");

    // Opted out explicitly: the unsigned-or-untrusted snapshots read, the identity still
    // required for the encrypted one, and check-config says how open this is.
    let open = EtcdDr::new(&format!(
        "role = \"secondary\"\ncluster = \"prod\"\n{}\n[signing]\nallow_unsigned = true\n[encryption]\nidentity_file = \"{}\"\n",
        StoreTarget::Local(ground.store.path()).config_section(),
        ground.identity.display()
    ));
    open.run_ok(&["verify", &ground.genuine]);
    let shown = open.run_ok(&["check-config"]);
    assert!(shown.contains("unsigned snapshots ACCEPTED"), "{shown}");
}

#[test]
fn plain_copies_are_owner_only_under_umask_022() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.put("/registry/secrets/default/x", b"plain-value");
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("store");
    let dr = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(&store),
        "",
    );
    let output = run_with_umask_022(&dr, &["snapshot", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The local store's directory keeps others out of every object in it.
    assert_eq!(mode(&store), 0o700);

    // The command line refuses what the API refuses: control characters in a label.
    let error = dr.run_err(&["snapshot", "--label", "ok\u{1b}[2J"]);
    assert!(error.contains("without control characters"), "{error}");

    let out = root.path().join("fetched.db");
    let output = run_with_umask_022(&dr, &["fetch", &id, "-o", out.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(mode(&out), 0o600);
}

#[test]
fn secrets_stay_out_of_outputs_and_child_environments() {
    let scratch = tempfile::tempdir().unwrap();
    let recorded = scratch.path().join("child-env");
    let token = scratch.path().join("api-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();

    // A token file others can read is refused by default, with the fix named.
    let dr = EtcdDr::new(&format!(
        "secret_file_modes = \"refuse\"\nrole = \"secondary\"\ncluster = \"prod\"\n{}\n[http]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
        StoreTarget::Local(&scratch.path().join("store")).config_section(),
        token.display()
    ));
    let error = dr.run_err(&["run"]);
    assert!(error.contains("mode 0644"), "{error}");
    assert!(
        error.contains(&format!("chmod 600 {}", token.display())),
        "{error}"
    );

    // Commands on nodes (here `nodes check` on a local node, through a recording prefix) get
    // an allow-listed environment: none of the daemon's secrets.
    let dr = EtcdDr::new(&format!(
        "role = \"secondary\"\ncluster = \"prod\"\n{}\n[nodes]\ncontrol_plane = [\"cp1\"]\n[nodes.access]\ntype = \"local\"\nsudo = [\"/bin/sh\", \"-c\", \"env >> {}; exec \\\"$@\\\"\", \"sh\"]\n",
        StoreTarget::Local(&scratch.path().join("store")).config_section(),
        recorded.display()
    ))
    .env("ETCD_DR_API_TOKEN", "api-token-value-must-not-leak")
    .env("AWS_SECRET_ACCESS_KEY", "aws-secret-value-must-not-leak");
    let _ = dr.run(&["nodes", "check"]);
    let seen = std::fs::read_to_string(&recorded).expect("the prefix recorded the environment");
    assert!(seen.contains("PATH="), "{seen}");
    assert!(!seen.contains("must-not-leak"), "{seen}");

    // Printed endpoints carry no credentials; config errors echo no secret.
    let dr = EtcdDr::new(
        "role = \"secondary\"\ncluster = \"prod\"\n[store]\ntype = \"s3\"\nbucket = \"b\"\nendpoint = \"https://user:hunter2-secret@s3.example\"\n",
    );
    let shown = dr.run_ok(&["check-config"]);
    assert!(shown.contains("https://s3.example"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let dr = EtcdDr::new(
        "role = \"secondary\"\ncluster = \"prod\"\n[store]\ntype = \"local\"\npath = \"/tmp/x\"\n[encryption]\nrecipients = \"AGE-SECRET-KEY-1QQQSECRETQQQ\"\n",
    );
    let error = dr.run_err(&["check-config"]);
    assert!(
        error.contains("recipients") || error.contains("encryption"),
        "{error}"
    );
    assert!(!error.contains("QQQSECRETQQQ"), "{error}");
}

#[test]
fn a_slow_header_client_is_cut_off_while_a_normal_client_is_served() {
    use std::io::{Read, Write};
    let scratch = tempfile::tempdir().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], etcd_dr_e2e::free_port()));
    let dr = EtcdDr::new(&format!(
        "role = \"secondary\"\ncluster = \"prod\"\n{}\n[http]\nlisten = \"{addr}\"\nheader_timeout = \"1s\"\nmax_connections = 3\n[secondary]\npoll_interval = \"1s\"\n",
        StoreTarget::Local(&scratch.path().join("store")).config_section(),
    ));
    let child = KillOnDrop::new(dr.spawn(&["run"], "daemon.log"));
    assert!(etcd_dr_e2e::wait_for_port(addr, Duration::from_secs(20)));

    // Two clients that never finish their request head.
    let slow: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .write_all(b"GET /v1/status HTTP/1.1\r\nHost: etcd-dr\r\nX-Slow: ")
                .unwrap();
            stream
        })
        .collect();
    // A normal client is served meanwhile.
    let started = std::time::Instant::now();
    let healthy = get(addr, "/healthz").expect("a normal request is served");
    assert_eq!(healthy.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // The slow ones are cut off after the header timeout: the server closes them.
    for mut stream in slow {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buffer = Vec::new();
        let read = stream.read_to_end(&mut buffer);
        // A read timeout here means the server kept the connection open.
        assert!(read.is_ok(), "the connection stayed open: {read:?}");
        let text = String::from_utf8_lossy(&buffer);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let _ = child.terminate_and_wait();
}

/// A genuine snapshot of another etcd — signed with the trusted key, under the same cluster
/// name, in another store — copied in is refused as the snapshot of another etcd generation; when
/// the primary's own etcd really changes cluster id, its next snapshot declares the new
/// generation and is accepted.
#[test]
fn another_etcds_signed_snapshot_is_refused_unless_it_starts_a_new_generation() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let other = EtcdCluster::start(EtcdOptions::default());
    let store = tempfile::tempdir().unwrap();
    let primary = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        "",
    );
    let genuine = snapshot_id(&primary);
    let elsewhere_store = tempfile::tempdir().unwrap();
    let elsewhere = EtcdDr::with_sections(
        "prod",
        &other.config_section(&other.endpoints()),
        &StoreTarget::Local(elsewhere_store.path()),
        "",
    );
    let foreign = snapshot_id(&elsewhere);
    copy_dir(
        &elsewhere_store
            .path()
            .join(format!("prod/snapshots/{foreign}")),
        &store.path().join(format!("prod/snapshots/{foreign}")),
    );
    let reader = EtcdDr::new(&format!(
        "role = \"secondary\"\ncluster = \"prod\"\n{}\n",
        StoreTarget::Local(store.path()).config_section()
    ));
    for selector in ["latest", foreign.as_str()] {
        let error = reader.run_err(&["verify", selector]);
        assert!(
            error.contains(&format!("snapshot {foreign} is refused"))
                && error.contains("does not start a new etcd generation")
                && error.contains(&format!("({genuine})")),
            "{error}"
        );
    }
    let output = reader.run(&["list"]);
    let (listed, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        listed.contains(&genuine) && !listed.contains(&foreign),
        "{listed}"
    );
    assert!(
        stderr.contains(&format!("REFUSED (not used): {foreign}")),
        "{stderr}"
    );
    let verified = reader.run_ok(&["verify", &genuine]);
    assert!(
        verified.contains(&format!("snapshot {genuine} OK")),
        "{verified}"
    );
    // The API judges a named snapshot as the CLI does: 422 naming the generation.
    let addr = SocketAddr::from(([127, 0, 0, 1], etcd_dr_e2e::free_port()));
    let api_reader = EtcdDr::new(&format!(
        "role = \"secondary\"\ncluster = \"prod\"\n{}\n[http]\nlisten = \"{addr}\"\n[secondary]\npoll_interval = \"1s\"\n",
        StoreTarget::Local(store.path()).config_section()
    ));
    let daemon = KillOnDrop::new(api_reader.spawn(&["run"], "daemon.log"));
    assert!(etcd_dr_e2e::wait_for_port(addr, Duration::from_secs(20)));
    let refused = get(addr, &format!("/v1/snapshots/{foreign}")).unwrap();
    let served = get(addr, &format!("/v1/snapshots/{genuine}")).unwrap();
    let _ = daemon.terminate_and_wait();
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert!(
        refused
            .text()
            .contains("does not start a new etcd generation"),
        "{}",
        refused.text()
    );
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.json()["id"], genuine.as_str());

    // The primary now snapshots the other etcd (rebuilt under a new cluster id): it names the
    // cluster id before it, signed, and readers follow it.
    let rebuilt = EtcdDr::with_sections(
        "prod",
        &other.config_section(&other.endpoints()),
        &StoreTarget::Local(store.path()),
        "",
    );
    let next = snapshot_id(&rebuilt);
    let manifest = |id: &str| -> serde_json::Value {
        let path = store
            .path()
            .join(format!("prod/snapshots/{id}/manifest.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    assert_eq!(
        manifest(&next)["etcd"]["previous_cluster_id"],
        manifest(&genuine)["etcd"]["cluster_id"]
    );
    assert!(manifest(&genuine)["etcd"]
        .get("previous_cluster_id")
        .is_none());
    let verified = reader.run_ok(&["verify", "latest"]);
    assert!(
        verified.contains(&format!("snapshot {next} OK")),
        "{verified}"
    );
}
