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

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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

/// Boots systemd in fresh namespaces (run as their PID 1 by `unshare`): `$1` becomes a tmpfs
/// holding an overlay of this machine's root (copy-on-write: nothing reaches the real one),
/// with its own /proc, /sys, cgroup2 (the namespace's own subtree), a minimal /dev whose
/// console is the file `$2`, and empty /run, /tmp and /etc/systemd/system (none of this
/// machine's enabled services start). Mounts are made shared, as systemd does when the kernel
/// starts it: the service's credentials are mounted through propagation. `container=other`
/// tells systemd it is a container's init; `basic.target` keeps the boot to systemd's own units;
/// gettys are masked (no terminal here) for when the test starts `multi-user.target`.
const BOOT: &str = r#"set -eu
top=$1 console=$2
mount -t tmpfs -o mode=0755 tmpfs "$top"
mkdir "$top/upper" "$top/work" "$top/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$top/upper,workdir=$top/work" "$top/root"
r=$top/root
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount -t cgroup2 cgroup2 "$r/sys/fs/cgroup"
mount -t tmpfs -o mode=0755 tmpfs "$r/dev"
for node in null zero full random urandom tty; do
    touch "$r/dev/$node"
    mount --bind "/dev/$node" "$r/dev/$node"
done
mkdir "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
ln -s /proc/self/fd "$r/dev/fd"
mount -t tmpfs -o mode=1777 tmpfs "$r/dev/shm"
touch "$r/dev/console"
mount --bind "$console" "$r/dev/console"
mount -t tmpfs -o mode=0755 tmpfs "$r/run"
mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$r/etc/systemd/system"
ln -s /dev/null "$r/etc/systemd/system/getty.target"
mount --make-rshared "$r"
cd "$r"
exec env -i container=other PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$r" /lib/systemd/systemd --unit=basic.target
"#;

/// This machine's `/lib/systemd/systemd` as PID 1 of its own PID, mount, cgroup, UTS and IPC
/// namespaces (sharing the network, so the daemon's API is reached on loopback), booted by
/// [`BOOT`] in a cgroup of its own. Dropped, it is killed with everything it started and its
/// cgroups removed.
struct BootedSystemd {
    /// `unshare` (`--kill-child`): its child is the namespace's PID 1.
    launcher: Child,
    init: u32,
    cgroup: PathBuf,
    work: tempfile::TempDir,
}

impl BootedSystemd {
    fn boot() -> Self {
        for needed in [
            "/lib/systemd/systemd",
            "/usr/bin/nsenter",
            "/usr/bin/unshare",
        ] {
            assert!(
                Path::new(needed).exists(),
                "{needed} missing: this test boots systemd (package `systemd`, `util-linux`)"
            );
        }
        // The cgroup2 hierarchy: all of /sys/fs/cgroup, or its `unified` part (hybrid).
        let hierarchy = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .into_iter()
            .map(Path::new)
            .find(|dir| dir.join("cgroup.controllers").is_file())
            .expect("no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified");
        let cgroup = hierarchy.join(format!("etcd-dr-package-test-{}", std::process::id()));
        std::fs::create_dir(&cgroup)
            .unwrap_or_else(|e| panic!("cgroup {}: {e} (this test needs root)", cgroup.display()));
        let work = tempfile::tempdir().unwrap();
        let top = work.path().join("ns");
        std::fs::create_dir(&top).unwrap();
        let console = work.path().join("console.log");
        std::fs::write(&console, "").unwrap();
        let log = std::fs::File::create(work.path().join("boot.log")).unwrap();
        // The shell joins the cgroup first: `unshare --cgroup` makes it the namespace's root.
        let launcher = Command::new("sh")
            .arg("-c")
            .arg(
                r#"echo $$ > "$1/cgroup.procs" && exec unshare --mount --pid --fork --kill-child --cgroup --uts --ipc --propagation private sh -c "$2" boot "$3" "$4""#,
            )
            .arg("launch")
            .arg(&cgroup)
            .arg(BOOT)
            .arg(&top)
            .arg(&console)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sh");
        let mut booted = BootedSystemd {
            init: 0,
            launcher,
            cgroup,
            work,
        };
        let children = format!("/proc/{0}/task/{0}/children", booted.launcher.id());
        // Commands enter the namespaces only once their PID 1 is systemd in the new root: before,
        // they would reach this machine's own root (and its systemd, if it has one).
        booted.init = booted.wait_for("systemd as the namespace's PID 1", 60, |_| {
            let pid = std::fs::read_to_string(&children)
                .ok()?
                .split_whitespace()
                .next()?
                .to_string();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "systemd").then(|| pid.parse().ok())?
        });
        let state = booted.wait_for("systemd to finish booting", 180, |booted| {
            let state = booted.systemctl(&["is-system-running"]);
            let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
            ["running", "degraded"]
                .contains(&state.as_str())
                .then_some(state)
        });
        assert_eq!(
            state,
            "running",
            "failed units in the namespace:\n{}",
            booted.diagnostics()
        );
        booted
    }

    /// Polls `probe` every 200 ms for up to `seconds`; panics with the boot log when the time is
    /// up or the namespace's init has exited.
    fn wait_for<T>(
        &mut self,
        what: &str,
        seconds: u64,
        mut probe: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(found) = probe(self) {
                return found;
            }
            let exited = self.launcher.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "no {what} after {seconds} s (launcher: {exited:?}):\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The namespace's root directory, as seen from this test's.
    fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.init))
    }

    /// `args` run inside the namespaces (root and working directory of its PID 1), bounded in time.
    fn exec(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["--kill-after=10s", "300s", "nsenter"])
            .arg(format!("--target={}", self.init))
            .args([
                "--mount", "--pid", "--uts", "--ipc", "--cgroup", "--root", "--wd",
            ])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .expect("timeout nsenter")
    }

    fn systemctl(&self, args: &[&str]) -> Output {
        self.exec(&[&["systemctl", "--no-pager"], args].concat())
    }

    /// `args` inside, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.exec(args);
        assert!(
            output.status.success(),
            "{args:?} in the namespace: {}\n{}\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.diagnostics()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// One property of `etcd-dr.service`.
    fn property(&self, name: &str) -> String {
        let value = self.ok(&[
            "systemctl",
            "show",
            "etcd-dr.service",
            &format!("--property={name}"),
            "--value",
        ]);
        value.trim().to_string()
    }

    /// What a failure message needs: the service's status and journal, failed units, the boot log.
    fn diagnostics(&self) -> String {
        let mut report = String::new();
        if self.init != 0 {
            for args in [
                &[
                    "systemctl",
                    "--no-pager",
                    "--full",
                    "status",
                    "etcd-dr.service",
                ][..],
                &[
                    "journalctl",
                    "--no-pager",
                    "--unit=etcd-dr.service",
                    "--lines=100",
                ],
                &["systemctl", "--no-pager", "--failed"],
            ] {
                let output = self.exec(args);
                report += &format!(
                    "--- {}\n{}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
        for log in ["boot.log", "console.log"] {
            let text = std::fs::read_to_string(self.work.path().join(log)).unwrap_or_default();
            report += &format!("--- {log}\n{text}");
        }
        report
    }

    /// `systemctl poweroff`: systemd stops every unit and exits, which ends the namespaces.
    /// Asserts that nothing is left in the cgroup the namespace had.
    fn power_off(mut self) {
        // The call itself may fail: systemd exits before it answers.
        let _ = self.systemctl(&["poweroff"]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.launcher.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "systemd still running 120 s after poweroff:\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            wait_until_unpopulated(&self.cgroup),
            "processes left after poweroff: {:?}",
            processes_in(&self.cgroup)
        );
    }
}

impl Drop for BootedSystemd {
    fn drop(&mut self) {
        if self.launcher.try_wait().ok().flatten().is_none() {
            // PID 1 of a namespace dies with SIGKILL from outside it, and everything in the
            // namespace with it; unshare (--kill-child) too, should it be killed first.
            if self.init != 0 {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.init.to_string()])
                    .status();
            }
            let _ = self.launcher.kill();
            let _ = self.launcher.wait();
        }
        // The cgroups systemd made, deepest first, once the killed processes are gone.
        wait_until_unpopulated(&self.cgroup);
        let mut dirs = vec![self.cgroup.clone()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(entries) = std::fs::read_dir(&dirs[i]) {
                dirs.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
            i += 1;
        }
        for dir in dirs.iter().rev() {
            if let Err(e) = std::fs::remove_dir(dir) {
                eprintln!("cgroup {} not removed: {e}", dir.display());
            }
        }
    }
}

/// Waits up to 30 s for `cgroup` and its descendants to hold no process, exiting ones included
/// (until then the kernel refuses to remove them); whether they do.
fn wait_until_unpopulated(cgroup: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = std::fs::read_to_string(cgroup.join("cgroup.events")).unwrap_or_default();
        if !events.lines().any(|line| line == "populated 1") {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The processes in `cgroup` and below.
fn processes_in(cgroup: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![cgroup.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            found.extend(procs.lines().map(|pid| format!("{} {pid}", dir.display())));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    found
}

/// One HTTP/1.1 request on loopback: the status code and the body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response}")))?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((status, body.to_string()))
}

/// A line of `/proc/<pid>/status`, e.g. `Uid`: its value, whitespace-separated fields joined by
/// one space.
fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in:\n{status}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
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
