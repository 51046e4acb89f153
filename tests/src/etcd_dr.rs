//! Running the real `etcd-dr` binary with a config written for the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::tools::etcd_dr_bin;
use crate::MotoServer;

/// Where a test's snapshots go.
pub enum StoreTarget<'a> {
    /// A local directory.
    Local(&'a Path),
    /// A bucket on a moto server, under a prefix.
    S3 {
        /// The server.
        server: &'a MotoServer,
        /// The bucket (must exist).
        bucket: &'a str,
        /// Key prefix.
        prefix: &'a str,
    },
}

impl StoreTarget<'_> {
    /// The `[store]` section for this target.
    pub fn config_section(&self) -> String {
        match self {
            Self::Local(path) => {
                format!("[store]\ntype = \"local\"\npath = \"{}\"\n", path.display())
            }
            Self::S3 {
                server,
                bucket,
                prefix,
            } => server.config_section(bucket, prefix),
        }
    }
}

/// One etcd-dr configuration in a scratch directory, and ways to run the binary with it.
pub struct EtcdDr {
    dir: tempfile::TempDir,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl EtcdDr {
    /// Writes `config` (TOML) to a scratch directory. S3 credentials for moto are set in the
    /// environment of every run. A run whose config has no `[signing]` section signs with and
    /// trusts the test process's signing key (one for every config of the process, so that a
    /// primary and a secondary trust each other), through `ETCD_DR_SIGNING__…` variables.
    pub fn new(config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("etcd-dr-run-")
            .tempdir()
            .expect("temp dir");
        let path = dir.path().join("etcd-dr.toml");
        write_test_signing_key(dir.path());
        std::fs::write(&path, config).expect("write config");
        let env = MotoServer::credentials_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self {
            dir,
            config: path,
            env,
        }
    }

    /// A config for `cluster` from an `[etcd]` section, a store and any extra TOML.
    pub fn with_sections(cluster: &str, etcd: &str, store: &StoreTarget<'_>, extra: &str) -> Self {
        Self::new(&format!(
            "cluster = \"{cluster}\"\n{extra}\n{etcd}\n{}",
            store.config_section()
        ))
    }

    /// Adds an environment variable to every run.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// The scratch directory (the config lives there; tests may put more files in it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Appends TOML (whole sections) to the config file.
    pub fn append_config(&self, toml: &str) {
        let mut config = std::fs::read_to_string(&self.config).expect("read config");
        config.push('\n');
        config.push_str(toml);
        std::fs::write(&self.config, config).expect("write config");
    }

    /// `etcd-dr <args>` run on a pseudo-terminal (util-linux `script`): what the terminal
    /// showed (progress bars included). Panics unless it succeeded.
    pub fn run_on_terminal(&self, args: &[&str]) -> String {
        let command = self.command(args);
        let words: Vec<String> = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|word| format!("'{}'", word.to_string_lossy().replace('\'', r"'\''")))
            .collect();
        let output = Command::new("script")
            .args([
                "--quiet",
                "--return",
                "--command",
                &words.join(" "),
                "/dev/null",
            ])
            .envs(
                command
                    .get_envs()
                    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
            )
            .env("TERM", "xterm")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{args:?} on a terminal:\n{shown}");
        shown
    }

    /// A command running `etcd-dr --config <file> <args>`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(etcd_dr_bin());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD_DR_") {
                command.env_remove(name);
            }
        }
        let config = std::fs::read_to_string(&self.config).unwrap_or_default();
        if !config.contains("secret_file_modes") {
            // Tests write their token and identity files with the umask's mode; the refusal
            // of such files is tested where the config sets `secret_file_modes` itself.
            command.env("ETCD_DR_SECRET_FILE_MODES", "warn");
        }
        if !config.contains("[signing]") {
            command
                .env(
                    "ETCD_DR_SIGNING__KEY_FILE",
                    self.dir().join(SIGNING_KEY_FILE),
                )
                .env("ETCD_DR_SIGNING__TRUSTED_KEYS", &test_signing_key().1);
        }
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        command
    }

    /// Runs to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run etcd-dr")
    }

    /// Runs to completion, panics unless it succeeds; returns stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "etcd-dr {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs to completion, panics if it succeeds; returns stderr.
    pub fn run_err(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            !output.status.success(),
            "etcd-dr {args:?} succeeded but should have failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Starts it in the background: stderr (the log) to `<log_name>`, stdout to
    /// `<log_name>.stdout`, both in the scratch directory.
    pub fn spawn(&self, args: &[&str], log_name: &str) -> Child {
        let log = std::fs::File::create(self.dir().join(log_name)).expect("log file");
        let stdout = std::fs::File::create(self.dir().join(format!("{log_name}.stdout")))
            .expect("stdout file");
        self.command(args)
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .expect("spawn etcd-dr")
    }

    /// The log (stderr) of a process started by [`Self::spawn`].
    pub fn log(&self, log_name: &str) -> String {
        std::fs::read_to_string(self.dir().join(log_name)).unwrap_or_default()
    }

    /// The stdout of a process started by [`Self::spawn`].
    pub fn stdout(&self, log_name: &str) -> String {
        std::fs::read_to_string(self.dir().join(format!("{log_name}.stdout"))).unwrap_or_default()
    }

    /// `etcd-dr list --json`, parsed.
    pub fn list_json(&self) -> Vec<serde_json::Value> {
        let stdout = self.run_ok(&["list", "--json"]);
        serde_json::from_str(&stdout).expect("list --json output is JSON")
    }

    /// `etcd-dr snapshot --json`, parsed manifest.
    pub fn snapshot_json(&self, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["snapshot", "--json"];
        args.extend_from_slice(extra);
        let stdout = self.run_ok(&args);
        serde_json::from_str(&stdout).expect("snapshot --json output is JSON")
    }
}

/// The signing key every config of this test process shares: the key file's text and its
/// public key.
pub fn test_signing_key() -> &'static (String, String) {
    static KEY: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    KEY.get_or_init(etcd_dr_transport::generate_signing_key)
}

/// What an in-process reader of `cluster` trusts: [`test_signing_key`]'s signatures, with
/// plain objects refused when `require_encryption`.
pub fn test_trust(cluster: &str, require_encryption: bool) -> etcd_dr_transport::ManifestTrust {
    let config = etcd_dr_transport::SigningConfig {
        trusted_keys: vec![test_signing_key().1.clone()],
        ..Default::default()
    };
    etcd_dr_transport::ManifestTrust::new(cluster, &config, None, require_encryption)
        .expect("the test signing key parses")
}

/// A segment signer of `cluster` holding the key of `key_file_text` (a signing key file's text,
/// e.g. [`test_signing_key`]'s `.0`, or another from `generate_signing_key`).
pub fn segment_signer(key_file_text: &str, cluster: &str) -> etcd_dr_replication::SegmentSigner {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("a scratch directory");
    let path = dir.path().join(SIGNING_KEY_FILE);
    etcd_dr_core::create_private_file(&path)
        .and_then(|mut out| out.write_all(key_file_text.as_bytes()))
        .expect("write a signing key");
    let signer = etcd_dr_transport::ManifestSigner::load(&path, Default::default())
        .expect("the signing key loads");
    etcd_dr_replication::SegmentSigner::new(std::sync::Arc::new(signer), cluster)
}

/// The file of [`test_signing_key`] in `dir` (written there if missing), for processes other
/// than the test's own that must sign as it does.
pub fn test_signing_key_file(dir: &Path) -> PathBuf {
    if !dir.join(SIGNING_KEY_FILE).exists() {
        write_test_signing_key(dir);
    }
    dir.join(SIGNING_KEY_FILE)
}

/// Signs `manifest` with [`test_signing_key`], as a primary of the test process would: for
/// tests that rewrite a manifest to stage what a real producer could have written.
pub fn sign_with_test_key(manifest: &mut etcd_dr_core::SnapshotManifest) {
    let dir = tempfile::tempdir().expect("temp dir");
    write_test_signing_key(dir.path());
    etcd_dr_transport::ManifestSigner::load(
        &dir.path().join(SIGNING_KEY_FILE),
        etcd_dr_core::SecretFileModes::Refuse,
    )
    .expect("the test signing key loads")
    .sign(manifest);
}

/// Name of the test signing key file in each scratch directory.
const SIGNING_KEY_FILE: &str = "signing.key";

fn write_test_signing_key(dir: &Path) {
    use std::io::Write;
    etcd_dr_core::create_private_file(&dir.join(SIGNING_KEY_FILE))
        .and_then(|mut out| out.write_all(test_signing_key().0.as_bytes()))
        .expect("write the test signing key");
}

/// A `[signing]` section that signs with and trusts [`test_signing_key`] (its key file in
/// `dir`, written there if missing).
pub fn signing_section(dir: &Path) -> String {
    if !dir.join(SIGNING_KEY_FILE).exists() {
        write_test_signing_key(dir);
    }
    format!(
        "[signing]\nkey_file = \"{}\"\ntrusted_keys = [\"{}\"]\n",
        dir.join(SIGNING_KEY_FILE).display(),
        test_signing_key().1
    )
}

/// A finished command's stdout followed by its stderr, as text.
pub fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A background process that is killed (and reaped) when dropped, so that a test that fails
/// midway never leaves it running (it would hold ports, files and the e2e lock).
pub struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    /// Guards `child`.
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// The process.
    pub fn child(&self) -> &Child {
        self.0
            .as_ref()
            .expect("the child is taken only by into_inner")
    }

    /// Gives the process back, unguarded (to wait for it).
    pub fn into_inner(mut self) -> Child {
        self.0.take().expect("the child is taken only once")
    }

    /// Sends SIGTERM and waits for the process to end; its output as it ended.
    pub fn terminate_and_wait(self) -> Output {
        let child = self.into_inner();
        terminate(&child);
        child.wait_with_output().expect("wait for the process")
    }
}

impl From<KillOnDrop> for Child {
    fn from(guarded: KillOnDrop) -> Child {
        guarded.into_inner()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends SIGTERM to a child process.
pub fn terminate(child: &Child) {
    // The `kill` command keeps the harness free of unsafe code.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}
