//! Where the installed test tools are.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The Kubernetes minor the install script builds (its `KUBERNETES_VERSION`), the default
/// directory name of its binaries.
pub const KUBERNETES_SERIES: &str = "1.34";

/// Paths of the tools `scripts/install-test-deps.sh` installs.
#[derive(Debug, Clone)]
pub struct Tools {
    /// Directory with etcd, etcdctl, etcdutl 3.5.x.
    pub etcd35_bin: PathBuf,
    /// Directory with etcd, etcdctl 3.4.x.
    pub etcd34_bin: PathBuf,
    /// The moto S3 server's console script.
    pub moto_server: PathBuf,
    /// promtool.
    pub promtool: PathBuf,
    /// sshd.
    pub sshd: PathBuf,
    /// systemd-analyze.
    pub systemd_analyze: PathBuf,
    /// Directory with etcd, etcdctl, etcdutl 3.6.x (built from the Go module proxy).
    pub etcd36_bin: PathBuf,
    /// Directory with etcd, etcdctl, etcdutl 3.7.x.
    pub etcd37_bin: PathBuf,
    /// Directory with kube-apiserver and kubectl.
    pub kube_bin: PathBuf,
}

impl Tools {
    /// etcd 3.6's directory; panics with what to run when it is missing.
    pub fn etcd36_bin(&self) -> &Path {
        go_built(&self.etcd36_bin, "etcd", "TESTGROUND_ETCD36_BIN_DIR")
    }

    /// etcd 3.7's directory; panics with what to run when it is missing.
    pub fn etcd37_bin(&self) -> &Path {
        go_built(&self.etcd37_bin, "etcd", "TESTGROUND_ETCD37_BIN_DIR")
    }

    /// The Kubernetes binaries' directory; panics with what to run when it is missing.
    pub fn kube_bin(&self) -> &Path {
        go_built(&self.kube_bin, "kube-apiserver", "TESTGROUND_KUBE_BIN_DIR")
    }
}

/// `dir`, after checking that it holds `binary` (the tools built from the Go module proxy are
/// checked when a test first needs them, so the other tests run without them).
fn go_built<'a>(dir: &'a Path, binary: &str, variable: &str) -> &'a Path {
    assert!(
        dir.join(binary).exists(),
        "{} is missing ({variable}): run scripts/install-test-deps.sh (as root; it builds etcd \
         3.6/3.7 and Kubernetes from the Go module proxy), then `. .tools/env.sh`",
        dir.join(binary).display()
    );
    dir
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The installed tools; panics with what to run when they are missing.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let base = std::env::var_os("TESTGROUND_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join(".tools"));
        let var = |name: &str, default: PathBuf| -> PathBuf {
            std::env::var_os(name).map(PathBuf::from).unwrap_or(default)
        };
        let tools = Tools {
            etcd35_bin: var("TESTGROUND_ETCD35_BIN_DIR", base.join("etcd-3.5/bin")),
            etcd34_bin: var("TESTGROUND_ETCD34_BIN_DIR", base.join("etcd-3.4/bin")),
            moto_server: var("TESTGROUND_MOTO_SERVER", base.join("bin/moto_server")),
            promtool: var("TESTGROUND_PROMTOOL", base.join("bin/promtool")),
            sshd: var("TESTGROUND_SSHD", PathBuf::from("/usr/sbin/sshd")),
            systemd_analyze: var(
                "TESTGROUND_SYSTEMD_ANALYZE",
                PathBuf::from("/usr/bin/systemd-analyze"),
            ),
            etcd36_bin: var("TESTGROUND_ETCD36_BIN_DIR", base.join("etcd-3.6/bin")),
            etcd37_bin: var("TESTGROUND_ETCD37_BIN_DIR", base.join("etcd-3.7/bin")),
            kube_bin: var(
                "TESTGROUND_KUBE_BIN_DIR",
                base.join(format!("kubernetes-{KUBERNETES_SERIES}/bin")),
            ),
        };
        for path in [
            tools.etcd35_bin.join("etcd"),
            tools.etcd35_bin.join("etcdutl"),
            tools.etcd34_bin.join("etcd"),
            tools.moto_server.clone(),
        ] {
            assert!(
                path.exists(),
                "test tool {} is missing: run scripts/install-test-deps.sh (as root), then `. .tools/env.sh`",
                path.display()
            );
        }
        tools
    })
}

/// The `etcd-dr` binary of this build (`target/<profile>/etcd-dr`), or `$TESTGROUND_ETCD_DR_BIN`.
pub fn etcd_dr_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TESTGROUND_ETCD_DR_BIN") {
        return PathBuf::from(path);
    }
    // Test executables live in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test exe in target/<profile>/deps");
    let bin = profile_dir.join("etcd-dr");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build --workspace`)",
        bin.display()
    );
    bin
}
