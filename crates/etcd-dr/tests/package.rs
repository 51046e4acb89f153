//! The Debian package: `scripts/build-deb.sh` builds it (from this test build's binary, not a
//! second, release build), `dpkg --root` installs it into a throw-away root with its maintainer
//! scripts run (chrootless, `DPKG_ROOT` set), and the result is checked as a service would
//! meet it: the system user, the directories and their modes, the unit passing
//! `systemd-analyze verify`, `etcd-dr check-config` as the service user on a prepared config;
//! then `dpkg --purge`. Needs root (dpkg, setpriv), as CI and scripts/test.sh run.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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
    let out = work.path().join("out");
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

    let fields = run(Command::new("dpkg-deb").arg("--field").arg(&deb));
    let fields = String::from_utf8_lossy(&fields.stdout).into_owned();
    assert!(fields.contains("Package: etcd-dr"), "{fields}");
    assert!(fields.contains("libc6 (>="), "{fields}");
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
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
