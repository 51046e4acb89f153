//! systemd booted as PID 1 of its own namespaces on this machine, for the package's service
//! test (`package.rs`), and the small probes that test uses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Boots systemd in fresh namespaces (run as their PID 1 by `unshare`): `$1` becomes a tmpfs
/// holding an overlay of this machine's root (copy-on-write: nothing reaches the real one),
/// with its own /proc, /sys, cgroup2 (the namespace's own subtree), a minimal /dev whose
/// console is the file `$2`, and empty /run, /tmp and /etc/systemd/system (none of this
/// machine's enabled services start). Mounts are made shared, as systemd does when the kernel
/// starts it: the service's credentials are mounted through propagation. `container=other`
/// tells systemd it is a container's init; `basic.target` keeps the boot to systemd's own units;
/// gettys are masked (no terminal here) for when the test starts `multi-user.target`.
pub const BOOT: &str = r#"set -eu
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
pub struct BootedSystemd {
    /// `unshare` (`--kill-child`): its child is the namespace's PID 1.
    launcher: Child,
    init: u32,
    cgroup: PathBuf,
    work: tempfile::TempDir,
}

impl BootedSystemd {
    pub fn boot() -> Self {
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
    pub fn wait_for<T>(
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
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.init))
    }

    /// `args` run inside the namespaces (root and working directory of its PID 1), bounded in time.
    pub fn exec(&self, args: &[&str]) -> Output {
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

    pub fn systemctl(&self, args: &[&str]) -> Output {
        self.exec(&[&["systemctl", "--no-pager"], args].concat())
    }

    /// `args` inside, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
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
    pub fn property(&self, name: &str) -> String {
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
    pub fn diagnostics(&self) -> String {
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
    pub fn power_off(mut self) {
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
pub fn wait_until_unpopulated(cgroup: &Path) -> bool {
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
pub fn processes_in(cgroup: &Path) -> Vec<String> {
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
pub fn http(
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
pub fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in:\n{status}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
