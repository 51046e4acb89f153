//! The Debian package: `scripts/build-deb.sh` builds it (from this test build's binary, not a
//! second, release build), `dpkg --root` installs it into a throw-away root with its maintainer
//! scripts run (chrootless, `DPKG_ROOT` set), and the result is checked as a service would
//! meet it: the system user, the directories and their modes, the unit passing
//! `systemd-analyze verify`, `etcd-dr check-config` as the service user on a prepared config;
//! then `dpkg --purge`.
//!
//! Then the service itself: this machine's systemd booted as PID 1 of private namespaces on a
//! copy-on-write overlay of this machine's root ([`BootedSystemd`]; no systemd on the host
//! needed), the package installed there with `dpkg -i`, a prepared config, and
//! `systemctl start etcd-dr`: the API answers, the daemon runs as the service user under the
//! unit's sandbox, `systemctl stop` ends it cleanly, enabled it starts with multi-user.target,
//! a crash is restarted, the watchdog is fed, `dpkg --purge` stops a running one, and poweroff
//! leaves nothing running. Needs root (dpkg, setpriv, namespaces, a cgroup), as CI and
//! scripts/test.sh run.

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

mod booted_systemd;

use booted_systemd::{http, status_field, BootedSystemd};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The package, built once per run of this file from this test build's binary.
fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package");
        let built = run(Command::new(workspace_root().join("scripts/build-deb.sh"))
            .args([
                "--binary",
                env!("CARGO_BIN_EXE_etcd-dr"),
                "--compression",
                "gzip",
                "--out",
            ])
            .arg(&out));
        let deb = PathBuf::from(String::from_utf8(built.stdout).unwrap().trim());
        assert!(deb.is_file(), "{}", deb.display());
        deb
    })
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The uid and gid of `user` in the passwd file under `root`.
fn user_ids(root: &Path, user: &str) -> Option<(u32, u32, String, String)> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&user) && fields.len() == 7).then(|| {
            (
                fields[2].parse().unwrap(),
                fields[3].parse().unwrap(),
                fields[5].to_string(),
                fields[6].to_string(),
            )
        })
    })
}

fn mode(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.permissions().mode() & 0o7777, meta.uid(), meta.gid())
}

#[test]
fn the_package_installs_a_service_user_its_directories_and_a_verified_unit() {
    let work = tempfile::tempdir().unwrap();
    // The service user must be able to walk down to the root's config.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let deb = package();

    let fields = run(Command::new("dpkg-deb").arg("--field").arg(deb));
    let fields = String::from_utf8_lossy(&fields.stdout).into_owned();
    assert!(fields.contains("Package: etcd-dr"), "{fields}");
    assert!(fields.contains("libc6 (>="), "{fields}");
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(deb));
    let contents = String::from_utf8_lossy(&contents.stdout).into_owned();
    for path in [
        "./usr/bin/etcd-dr",
        "./lib/systemd/system/etcd-dr.service",
        "./usr/lib/sysusers.d/etcd-dr.conf",
        "./usr/lib/tmpfiles.d/etcd-dr.conf",
        "./usr/share/doc/etcd-dr/examples/primary.toml",
        "./usr/share/doc/etcd-dr/examples/secondary.toml",
        "./usr/share/doc/etcd-dr/examples/etcd-dr.env.example",
        "./usr/share/doc/etcd-dr/copyright",
        "./usr/share/man/man1/etcd-dr.1.gz",
        "./usr/share/man/man1/etcd-dr-promote.1.gz",
        "./usr/share/bash-completion/completions/etcd-dr",
        "./usr/share/zsh/vendor-completions/_etcd-dr",
        "./usr/share/fish/vendor_completions.d/etcd-dr.fish",
    ] {
        assert!(contents.contains(path), "{path} missing:\n{contents}");
    }
    assert!(
        contents.lines().all(|l| l.contains("root/root")),
        "every file owned by root:\n{contents}"
    );

    // A throw-away root with an empty dpkg database; the maintainer scripts run on this
    // machine's systemd-sysusers/-tmpfiles with --root="$DPKG_ROOT". `--force-depends`: the
    // empty root has no libc6 or systemd package to depend on.
    let root = work.path().join("root");
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "etc",
        "usr/lib/systemd/system",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let dpkg = |args: &[&str]| {
        run(Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args([
                "--force-script-chrootless",
                "--force-depends",
                "--log=/dev/null",
            ])
            .args(args))
    };
    dpkg(&["--install", deb.to_str().unwrap()]);

    let (uid, gid, home, shell) = user_ids(&root, "etcd-dr").expect("the etcd-dr user");
    assert!(uid > 0 && uid < 1000, "a system uid: {uid}");
    assert_eq!(home, "/var/lib/etcd-dr");
    assert_eq!(shell, "/usr/sbin/nologin");
    assert!(
        std::fs::read_to_string(root.join("etc/group"))
            .unwrap()
            .lines()
            .any(|l| l.starts_with(&format!("etcd-dr:x:{gid}:"))),
        "the etcd-dr group"
    );
    assert_eq!(mode(&root.join("var/lib/etcd-dr")), (0o700, uid, gid));
    assert_eq!(mode(&root.join("etc/etcd-dr")), (0o750, 0, gid));
    assert_eq!(mode(&root.join("usr/bin/etcd-dr")), (0o755, 0, 0));

    // systemd-analyze resolves the unit's dependencies (sysinit.target …) in the root: give it
    // this machine's systemd units, as the systemd package the root lacks would.
    run(Command::new("cp")
        .arg("-a")
        .arg("/lib/systemd/system/.")
        .arg(root.join("usr/lib/systemd/system")));
    let unit = root.join("lib/systemd/system/etcd-dr.service");
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg(&unit)
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&verified.stderr).into_owned();
    assert!(
        verified.status.success(),
        "systemd-analyze verify:\n{complaints}"
    );
    assert!(
        !complaints.contains("etcd-dr.service"),
        "systemd-analyze complained about the unit:\n{complaints}"
    );

    // A prepared config, as the operator writes it: root-owned, readable by the group.
    let config = root.join("etc/etcd-dr/etcd-dr.toml");
    std::fs::write(
        &config,
        format!(
            "cluster = \"prod-eu\"\n[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n\
             [store]\ntype = \"local\"\npath = \"{}\"\n",
            root.join("var/lib/etcd-dr/snapshots").display()
        ),
    )
    .unwrap();
    std::os::unix::fs::chown(&config, Some(0), Some(gid)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let as_user = |uid: u32, gid: u32| {
        Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg(root.join("usr/bin/etcd-dr"))
            .arg("--config")
            .arg(&config)
            .arg("check-config")
            .env_remove("ETCD_DR_CONFIG")
            .output()
            .unwrap()
    };
    let checked = as_user(uid, gid);
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "check-config as etcd-dr:\n{stdout}\n{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        stdout.contains("configuration OK: role primary, cluster prod-eu"),
        "{stdout}"
    );
    // The modes matter: another unprivileged user cannot read it (exit 2: bad configuration).
    let other = as_user(65534, 65534);
    assert_eq!(other.status.code(), Some(2), "{other:?}");

    // Purge: the package's files go, the state directory (snapshots) stays.
    std::fs::remove_file(&config).unwrap();
    dpkg(&["--purge", "etcd-dr"]);
    assert!(!root.join("usr/bin/etcd-dr").exists());
    assert!(!unit.exists());
    assert!(
        !root.join("etc/etcd-dr").exists(),
        "empty /etc/etcd-dr removed"
    );
    assert!(root.join("var/lib/etcd-dr").is_dir(), "state kept");
}

#[test]
fn systemctl_start_runs_the_installed_package_as_its_sandboxed_user_and_stop_ends_it_cleanly() {
    let deb = package();
    let mut systemd = BootedSystemd::boot();
    let root = systemd.root();

    // `dpkg -i` as on a bastion: the maintainer scripts take their systemd branch
    // (daemon-reload); the service is installed but not enabled.
    std::fs::copy(deb, root.join("var/cache/etcd-dr.deb")).unwrap();
    systemd.ok(&["dpkg", "--install", "/var/cache/etcd-dr.deb"]);
    assert_eq!(systemd.property("LoadState"), "loaded");
    assert_eq!(systemd.property("UnitFileState"), "disabled");
    let (uid, gid, _, _) = user_ids(&root, "etcd-dr").expect("the etcd-dr user");

    // A prepared config: a secondary on a local store under the state directory (no etcd
    // needed), the API token as docs/install.md writes it.
    let addr = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let config = root.join("etc/etcd-dr/etcd-dr.toml");
    std::fs::write(
        &config,
        format!(
            "role = \"secondary\"\ncluster = \"prod-eu\"\n\
             [store]\ntype = \"local\"\npath = \"/var/lib/etcd-dr/store\"\n\
             [secondary]\npoll_interval = \"1s\"\nprestage_dir = \"/var/lib/etcd-dr/prestage\"\n\
             [signing]\ntrusted_keys = [\"ed25519:BVjCgYzm19++LA4nBu+h1wAztHKtuq4BZOgivrVxv0o=\"]\n\
             [http]\nlisten = \"{addr}\"\ntoken_file = \"/run/credentials/etcd-dr.service/api-token\"\n"
        ),
    )
    .unwrap();
    std::os::unix::fs::chown(&config, Some(0), Some(gid)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let token = "9f4c1d0e7b2a48c6a3e5d9b1f0c2e4a6";
    let token_file = root.join("etc/etcd-dr/api-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    systemd.ok(&["systemctl", "enable", "etcd-dr"]);
    assert_eq!(systemd.property("UnitFileState"), "enabled");
    // Type=notify: `start` returns once the daemon said READY=1.
    systemd.ok(&["systemctl", "start", "etcd-dr"]);
    assert_eq!(systemd.property("ActiveState"), "active");
    assert_eq!(systemd.property("SubState"), "running");
    assert_eq!(
        systemd.property("StatusText"),
        format!("secondary of cluster prod-eu, API on {addr}")
    );

    // The API answers on loopback; the token reached the daemon as a credential.
    let (code, body) = http(addr, "GET", "/healthz", None)
        .unwrap_or_else(|e| panic!("/healthz: {e}\n{}", systemd.diagnostics()));
    assert_eq!((code, body.as_str()), (200, r#"{"alive":true}"#));
    let (code, body) = http(addr, "GET", "/v1/status", None).unwrap();
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["role"], "secondary", "{status}");
    assert_eq!(status["store"]["reachable"], true, "{status}");
    let (code, body) = http(addr, "POST", "/v1/snapshots", Some("not-the-token")).unwrap();
    assert_eq!(code, 401, "{body}");
    let (code, body) = http(addr, "POST", "/v1/snapshots", Some(token)).unwrap();
    assert_eq!(code, 409, "past the token check, refused by role: {body}");

    // The daemon runs as the service user, unprivileged and filtered.
    let main_pid = systemd.property("MainPID");
    let process = std::fs::read_to_string(root.join(format!("proc/{main_pid}/status"))).unwrap();
    assert_eq!(
        status_field(&process, "Uid"),
        format!("{uid} {uid} {uid} {uid}")
    );
    assert_eq!(
        status_field(&process, "Gid"),
        format!("{gid} {gid} {gid} {gid}")
    );
    assert_eq!(status_field(&process, "Groups"), gid.to_string());
    assert_eq!(status_field(&process, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&process, "CapBnd"), "0000000000000000");
    assert_eq!(status_field(&process, "NoNewPrivs"), "1");
    assert_eq!(status_field(&process, "Seccomp"), "2", "SystemCallFilter");
    assert_eq!(mode(&root.join("var/lib/etcd-dr/store")).1, uid);
    let journal = systemd.ok(&["journalctl", "--no-pager", "--unit=etcd-dr.service"]);
    assert!(
        !journal.contains("mode is different"),
        "the unit's directory modes disagree with the package's:\n{journal}"
    );

    // Stop: SIGTERM, the daemon says STOPPING=1 (systemd logs notifications at debug level)
    // and exits 0.
    systemd.ok(&["systemctl", "log-level", "debug"]);
    systemd.ok(&["systemctl", "stop", "etcd-dr"]);
    systemd.ok(&["systemctl", "log-level", "info"]);
    assert_eq!(systemd.property("ActiveState"), "inactive");
    assert_eq!(systemd.property("Result"), "success");
    assert_eq!(systemd.property("ExecMainCode"), "1", "CLD_EXITED");
    assert_eq!(systemd.property("ExecMainStatus"), "0");
    let journal = systemd.ok(&["journalctl", "--no-pager", "--unit=etcd-dr.service"]);
    assert!(
        journal.contains(&format!(
            "Got notification message from PID {main_pid} (STOPPING=1"
        )),
        "no STOPPING=1 from the daemon:\n{journal}"
    );
    assert!(http(addr, "GET", "/healthz", None).is_err(), "API still up");

    // Enabled, it starts with multi-user.target, as at boot.
    systemd.ok(&["systemctl", "start", "multi-user.target"]);
    assert_eq!(systemd.property("ActiveState"), "active");
    let booted_pid = systemd.property("MainPID");
    assert_ne!(booted_pid, main_pid, "a new process");

    // A crash (SIGKILL) is restarted after RestartSec=10s.
    systemd.ok(&["systemctl", "kill", "--signal=SIGKILL", "etcd-dr"]);
    let restarted_pid = systemd.wait_for("a restart after the crash", 120, |systemd| {
        let pid = systemd.property("MainPID");
        (systemd.property("NRestarts") == "1"
            && systemd.property("ActiveState") == "active"
            && !["0", booted_pid.as_str()].contains(&pid.as_str()))
        .then_some(pid)
    });

    // The watchdog pings reach systemd: with a 2 s watchdog the same process lives on for
    // three periods (without pings systemd would kill it after one).
    let drop_in = root.join("run/systemd/system/etcd-dr.service.d");
    std::fs::create_dir_all(&drop_in).unwrap();
    std::fs::write(drop_in.join("watchdog.conf"), "[Service]\nWatchdogSec=2s\n").unwrap();
    systemd.ok(&["systemctl", "daemon-reload"]);
    systemd.ok(&["systemctl", "restart", "etcd-dr"]);
    assert_eq!(systemd.property("WatchdogUSec"), "2s");
    let watched_pid = systemd.property("MainPID");
    assert_ne!(watched_pid, restarted_pid);
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        (systemd.property("ActiveState"), systemd.property("MainPID")),
        ("active".to_string(), watched_pid),
        "killed by the watchdog?\n{}",
        systemd.diagnostics()
    );

    // Purge while it runs: prerm stops it, the binary and the unit go.
    systemd.ok(&["dpkg", "--purge", "etcd-dr"]);
    assert_eq!(systemd.property("ActiveState"), "inactive");
    assert_eq!(systemd.property("Result"), "success");
    assert!(!root.join("usr/bin/etcd-dr").exists());
    assert_eq!(systemd.property("LoadState"), "not-found");

    systemd.power_off();
}
