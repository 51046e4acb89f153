//! The configuration file, composed of each crate's section, plus `ETCD_DR_…` overrides.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use etcd_dr_control::{HttpConfig, Role, TOKEN_ENV};
use etcd_dr_core::{ConfigProblems, SecretFileModes};
use etcd_dr_nodes::{BundleConfig, NodesConfig};
use etcd_dr_restore::PromoteConfig;
use etcd_dr_scheduler::{EtcdConfig, ScheduleConfig};
use etcd_dr_transport::{
    EncryptionConfig, RetentionConfig, SigningConfig, StoreConfig, UploadOptions,
};
use serde::Deserialize;

/// The whole configuration of one etcd-dr instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `primary` (takes snapshots) or `secondary` (watches the store from the other region).
    #[serde(default)]
    pub role: Role,
    /// Name of the Kubernetes cluster; the folder of its snapshots in the store.
    pub cluster: String,
    /// How to reach etcd; required for the primary role.
    #[serde(default)]
    pub etcd: Option<EtcdConfig>,
    /// Where snapshots go.
    pub store: StoreConfig,
    /// When the daemon takes snapshots.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// How long snapshots are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Compression and upload tuning.
    #[serde(default)]
    pub upload: UploadSettings,
    /// Logging.
    #[serde(default)]
    pub log: LogSettings,
    /// The cluster's nodes and how to reach them.
    #[serde(default)]
    pub nodes: NodesConfig,
    /// Which files of each control-plane node travel with every snapshot.
    #[serde(default)]
    pub bundle: BundleConfig,
    /// Client-side encryption (age).
    #[serde(default)]
    pub encryption: EncryptionConfig,
    /// Manifest signatures: the primary's signing key, the keys readers trust.
    #[serde(default)]
    pub signing: SigningConfig,
    /// What to do with a secret file (signing key, age identity, API token) that group or
    /// others can read: `refuse` (default) or `warn`.
    #[serde(default)]
    pub secret_file_modes: SecretFileModes,
    /// The HTTP API: listen address, token, readiness.
    #[serde(default)]
    pub http: HttpConfig,
    /// The secondary role's polling, verification and pre-staging.
    #[serde(default)]
    pub secondary: Option<SecondarySettings>,
    /// How a promotion restores this cluster's control plane (`etcd-dr promote`,
    /// `POST /v1/promote`).
    #[serde(default)]
    pub promote: Option<PromoteConfig>,
    /// How often a primary looks for a promotion marker or a switchover request.
    #[serde(default)]
    pub fencing: FencingSettings,
}

/// `[fencing]`: the primary's watch for promotions of its cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FencingSettings {
    /// How often the store is read for `promotion.json` and `switchover-request.json`.
    #[serde(default = "default_fencing_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
}

fn default_fencing_poll() -> Duration {
    Duration::from_secs(10)
}

impl Default for FencingSettings {
    fn default() -> Self {
        Self {
            poll_interval: default_fencing_poll(),
        }
    }
}

/// `[secondary]`: how the secondary watches the store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondarySettings {
    /// How often the store is listed for new snapshots.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The primary's snapshot interval; alerts fire when the lag exceeds twice this.
    #[serde(default = "default_expected_interval", with = "humantime_serde")]
    pub expected_interval: Duration,
    /// Stream each new snapshot back and check every checksum (on by default). Off, the lag is
    /// measured from manifests alone.
    #[serde(default = "default_true")]
    pub verify: bool,
    /// Keep the newest verified snapshot decompressed here (`<id>.db`) so a promote does not
    /// wait for a download. Needs room for two snapshots while a newer one replaces the older.
    #[serde(default)]
    pub prestage_dir: Option<PathBuf>,
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_expected_interval() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_true() -> bool {
    true
}

impl Default for SecondarySettings {
    fn default() -> Self {
        Self {
            poll_interval: default_poll_interval(),
            expected_interval: default_expected_interval(),
            verify: true,
            prestage_dir: None,
        }
    }
}

impl SecondarySettings {
    fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        if self.poll_interval < Duration::from_millis(100) {
            problems.push(
                format!("{field}.poll_interval"),
                "must be at least 100ms, e.g. \"30s\"",
            );
        }
        if self.expected_interval < Duration::from_secs(1) {
            problems.push(
                format!("{field}.expected_interval"),
                "must be at least 1s: the primary's schedule.interval, e.g. \"15m\"",
            );
        }
        if let Some(dir) = &self.prestage_dir {
            if !dir.is_absolute() {
                problems.push(
                    format!("{field}.prestage_dir"),
                    format!(
                        "`{}` must be an absolute path, e.g. /var/lib/etcd-dr/prestage",
                        dir.display()
                    ),
                );
            }
            if !self.verify {
                problems.push(
                    format!("{field}.prestage_dir"),
                    format!("pre-staging streams and checks every snapshot: set {field}.verify = true or remove {field}.prestage_dir"),
                );
            }
        }
    }
}

/// `[upload]`: compression level and multipart tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadSettings {
    /// zstd level, 1–19.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// zstd worker threads (0: compress on the pipeline thread; default 1).
    #[serde(default = "default_zstd_workers")]
    pub zstd_workers: u32,
    /// Multipart part size in MiB (at least 5).
    #[serde(default = "default_part_size_mib")]
    pub part_size_mib: usize,
    /// Parts uploaded concurrently.
    #[serde(default = "default_concurrent_parts")]
    pub concurrent_parts: usize,
}

fn default_zstd_level() -> i32 {
    UploadOptions::default().zstd_level
}
fn default_zstd_workers() -> u32 {
    UploadOptions::default().zstd_workers
}
fn default_part_size_mib() -> usize {
    UploadOptions::default().part_size / (1024 * 1024)
}
fn default_concurrent_parts() -> usize {
    UploadOptions::default().max_concurrent_parts
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self {
            zstd_level: default_zstd_level(),
            zstd_workers: default_zstd_workers(),
            part_size_mib: default_part_size_mib(),
            concurrent_parts: default_concurrent_parts(),
        }
    }
}

impl UploadSettings {
    /// The options the upload pipeline takes.
    pub fn options(&self) -> UploadOptions {
        UploadOptions {
            zstd_level: self.zstd_level,
            zstd_workers: self.zstd_workers,
            part_size: self.part_size_mib * 1024 * 1024,
            max_concurrent_parts: self.concurrent_parts,
            // Set from `[encryption]` where snapshots are shipped.
            encrypt_to: None,
        }
    }

    fn validate(&self, problems: &mut ConfigProblems) {
        if !(1..=19).contains(&self.zstd_level) {
            problems.push(
                "upload.zstd_level",
                "must be between 1 and 19 (3 is a good default)",
            );
        }
        if self.zstd_workers > 64 {
            problems.push("upload.zstd_workers", "must be at most 64");
        }
        if !(5..=512).contains(&self.part_size_mib) {
            problems.push(
                "upload.part_size_mib",
                "must be between 5 and 512 (S3 needs parts of at least 5 MiB)",
            );
        }
        if !(1..=16).contains(&self.concurrent_parts) {
            problems.push("upload.concurrent_parts", "must be between 1 and 16");
        }
    }
}

/// `[log]`: log format and level.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` for people, `json` for log shippers.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `etcd_dr=debug,info`; `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_level() -> String {
    "info".into()
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Settings {
    /// Whether node bundles are taken with every snapshot.
    pub fn bundles_enabled(&self) -> bool {
        self.bundle.is_enabled(self.nodes.has_control_plane())
    }

    /// Problems that only matter where snapshots are read (every command that lists, verifies,
    /// fetches, prunes or restores, and the daemon): there must be a trusted signing key.
    pub fn validate_for_reading(&self) -> Result<(), ConfigProblems> {
        let mut problems = ConfigProblems::default();
        self.signing.validate_for_reading("signing", &mut problems);
        problems.into_result()
    }

    /// Whether readers refuse a snapshot with a plain object: `encryption.require_encryption`,
    /// by default on when node bundles are taken or an identity file is set.
    pub fn requires_encryption_to_read(&self) -> bool {
        self.encryption
            .require_encryption
            .unwrap_or(self.bundles_enabled() || self.encryption.identity_file.is_some())
    }

    /// Problems that only matter where snapshots are shipped from (the primary): with
    /// encryption required, recipients must be configured; manifests are signed.
    pub fn validate_for_shipping(&self) -> Result<(), ConfigProblems> {
        let mut problems = ConfigProblems::default();
        self.encryption
            .validate_for_shipping("encryption", self.bundles_enabled(), &mut problems);
        self.signing.validate_for_shipping("signing", &mut problems);
        problems.into_result()
    }

    /// Loads `path` and the `ETCD_DR_…` environment (`ETCD_DR_STORE__BUCKET=x` sets
    /// `store.bucket`), then validates everything, reporting every bad field at once.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Self::load_with_overrides(path, &[])
    }

    /// [`Settings::load`], then `overrides` (`("etcd.ca_file", "/tmp/ca.crt")`) on top of file
    /// and environment: for tests that load the example configs on a machine without their
    /// files.
    pub fn load_with_overrides(path: &Path, overrides: &[(&str, &str)]) -> anyhow::Result<Self> {
        if !path.is_file() {
            bail!(
                "config file `{}` does not exist or is not a file; pass --config with the path of a TOML file (see config/primary.toml)",
                path.display()
            );
        }
        std::fs::File::open(path)
            .with_context(|| format!("config file `{}` is not readable", path.display()))?;
        let mut builder = config::Config::builder()
            .add_source(config::File::from(path.to_path_buf()).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("ETCD_DR")
                    .source(Some(config_environment()))
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("etcd.endpoints")
                    .with_list_parse_key("signing.trusted_keys"),
            );
        for (key, value) in overrides {
            builder = builder
                .set_override(*key, *value)
                .with_context(|| format!("override of `{key}`"))?;
        }
        let loaded = builder
            .build()
            .with_context(|| format!("config file `{}`", path.display()))?;
        // No message about the configuration echoes a secret it holds.
        let secrets = crate::config_redaction::sensitive_values(&loaded);
        let redacted = |error: &dyn std::fmt::Display| {
            anyhow::anyhow!(crate::config_redaction::redact(
                &error.to_string(),
                &secrets
            ))
        };
        let settings: Settings = loaded
            .try_deserialize()
            .map_err(|e| redacted(&e))
            .with_context(|| {
                format!(
                    "config file `{}` (or an ETCD_DR_… variable)",
                    path.display()
                )
            })?;
        settings
            .validate()
            .map_err(|e| redacted(&e))
            .with_context(|| format!("config file `{}`", path.display()))?;
        Ok(settings)
    }

    /// Every problem with the values, by field path.
    pub fn validate(&self) -> Result<(), ConfigProblems> {
        let mut problems = ConfigProblems::default();
        if self.cluster.is_empty()
            || !self
                .cluster
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || self.cluster.starts_with('.')
        {
            problems.push(
                "cluster",
                "must be a name of letters, digits, `-`, `_` or `.` (it names the folder in the store), e.g. \"prod-eu\"",
            );
        }
        match (&self.etcd, self.role) {
            (Some(etcd), _) => etcd.validate("etcd", &mut problems),
            (None, Role::Primary) => problems.push(
                "etcd",
                "required for role = \"primary\": add an [etcd] section with endpoints (and ca_file, cert_file, key_file for TLS)",
            ),
            (None, Role::Secondary) => {}
        }
        match (&self.secondary, self.role) {
            (Some(secondary), Role::Secondary) => secondary.validate("secondary", &mut problems),
            (Some(_), Role::Primary) => problems.push(
                "secondary",
                "only for role = \"secondary\": remove the [secondary] section or set role = \"secondary\"",
            ),
            (None, _) => {}
        }
        self.http.validate("http", &mut problems);
        self.store.validate("store", &mut problems);
        self.schedule.validate("schedule", &mut problems);
        self.retention.validate("retention", &mut problems);
        self.upload.validate(&mut problems);
        self.nodes.validate("nodes", &mut problems);
        self.bundle.validate("bundle", &mut problems);
        self.encryption.validate("encryption", &mut problems);
        self.signing.validate("signing", &mut problems);
        if let Some(promote) = &self.promote {
            promote.validate("promote", &mut problems);
            if self.nodes.control_plane.is_empty() {
                problems.push(
                    "nodes.control_plane",
                    "a promotion restores onto the listed control-plane nodes: list them by host name, e.g. [\"cp1\", \"cp2\", \"cp3\"]",
                );
            }
        }
        if self.fencing.poll_interval < Duration::from_millis(100) {
            problems.push(
                "fencing.poll_interval",
                "must be at least 100ms, e.g. \"10s\"",
            );
        }
        if self.bundle.enabled == Some(true) && !self.nodes.has_control_plane() {
            problems.push(
                "bundle.enabled",
                "bundles need control-plane nodes: set nodes.control_plane or nodes.discover_control_plane = true",
            );
        }
        problems.into_result()
    }
}

impl Settings {
    /// The etcd section, which validation guarantees for the primary role.
    pub fn etcd(&self) -> anyhow::Result<&EtcdConfig> {
        self.etcd.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "etcd: this needs an [etcd] section (role {} has none)",
                self.role.as_str()
            )
        })
    }

    /// The secondary section, defaults when absent.
    pub fn secondary(&self) -> SecondarySettings {
        self.secondary.clone().unwrap_or_default()
    }
}

/// The `ETCD_DR_…` variables that override config keys: all but `ETCD_DR_CONFIG`, which names
/// the file itself, and `ETCD_DR_API_TOKEN`, the API token (no setting either).
fn config_environment() -> std::collections::HashMap<String, String> {
    std::env::vars()
        .filter(|(name, _)| {
            name.starts_with("ETCD_DR_") && name != "ETCD_DR_CONFIG" && name != TOKEN_ENV
        })
        .collect()
}

/// The default config path of a system install.
pub fn default_config_path() -> PathBuf {
    PathBuf::from("/etc/etcd-dr/etcd-dr.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, String> {
        let loaded = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| e.to_string())?;
        loaded.try_deserialize().map_err(|e| e.to_string())
    }

    const MINIMAL: &str = r#"
cluster = "prod"
[etcd]
endpoints = ["http://127.0.0.1:2379"]
[store]
type = "local"
path = "/tmp/etcd-dr-test"
"#;

    #[test]
    fn a_minimal_file_loads_with_defaults() {
        let settings = parse(MINIMAL).unwrap();
        settings.validate().unwrap();
        assert_eq!(
            settings.schedule.interval,
            Some(std::time::Duration::from_secs(900))
        );
        assert_eq!(settings.upload.options().part_size, 8 * 1024 * 1024);
        assert_eq!(settings.upload.options().zstd_workers, 1);
    }

    #[test]
    fn an_upload_section_without_zstd_workers_keeps_the_one_worker_default() {
        let settings = parse(&format!("{MINIMAL}\n[upload]\nzstd_level = 5\n")).unwrap();
        settings.validate().unwrap();
        let options = settings.upload.options();
        assert_eq!((options.zstd_level, options.zstd_workers), (5, 1));
        let on_thread = parse(&format!("{MINIMAL}\n[upload]\nzstd_workers = 0\n")).unwrap();
        assert_eq!(on_thread.upload.options().zstd_workers, 0);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let error = parse(&format!("{MINIMAL}\n[retention]\nkeep_lats = 3\n")).unwrap_err();
        assert!(error.contains("keep_lats"), "{error}");
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let text = r#"
cluster = "bad/name"
[etcd]
endpoints = ["10.0.0.1:2379"]
[store]
type = "s3"
[upload]
zstd_level = 40
"#;
        let problems = parse(text).unwrap().validate().unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "cluster",
                "etcd.endpoints[0]",
                "store.bucket",
                "upload.zstd_level"
            ]
        );
        let text = problems.to_string();
        assert!(text.starts_with("4 configuration problem(s):"), "{text}");
    }

    #[test]
    fn a_secondary_needs_no_etcd_section_but_a_primary_does() {
        let secondary = r#"
role = "secondary"
cluster = "prod"
[store]
type = "local"
path = "/tmp/etcd-dr-test"
[secondary]
poll_interval = "10s"
prestage_dir = "/var/lib/etcd-dr/prestage"
"#;
        let settings = parse(secondary).unwrap();
        settings.validate().unwrap();
        assert_eq!(settings.role, Role::Secondary);
        assert_eq!(settings.secondary().poll_interval, Duration::from_secs(10));
        assert!(settings.etcd().is_err());

        let primary = secondary.replace("role = \"secondary\"", "role = \"primary\"");
        let problems = parse(&primary).unwrap().validate().unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["etcd", "secondary"]);
    }

    #[test]
    fn secondary_and_http_fields_are_validated_by_name() {
        let text = r#"
role = "secondary"
cluster = "prod"
[store]
type = "local"
path = "/tmp/etcd-dr-test"
[http]
token_file = "token"
[secondary]
poll_interval = "0s"
verify = false
prestage_dir = "prestage"
"#;
        let problems = parse(text).unwrap().validate().unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "secondary.poll_interval",
                "secondary.prestage_dir",
                "secondary.prestage_dir",
                "http.token_file"
            ]
        );
        let error = parse(&format!("{MINIMAL}\n[http]\nlisten_on = \"x\"\n")).unwrap_err();
        assert!(error.contains("listen_on"), "{error}");
        let error = parse(&format!("role = \"tertiary\"\n{MINIMAL}")).unwrap_err();
        assert!(error.contains("tertiary"), "{error}");
    }

    fn example(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config")
            .join(name)
    }

    #[test]
    fn the_example_configs_load_through_the_real_loader() {
        // The examples name files of a real bastion; stand-ins prove everything else is valid.
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, "stand-in").unwrap();
            path.display().to_string()
        };
        let (ca, cert, key, credentials) = (
            file("ca.crt"),
            file("client.crt"),
            file("client.key"),
            file("aws-credentials"),
        );
        let primary = Settings::load_with_overrides(
            &example("primary.toml"),
            &[
                ("etcd.ca_file", &ca),
                ("etcd.cert_file", &cert),
                ("etcd.key_file", &key),
                ("store.credentials_file", &credentials),
            ],
        )
        .unwrap();
        assert_eq!(primary.role, Role::Primary);
        assert_eq!(primary.etcd().unwrap().endpoints.len(), 3);
        assert_eq!(primary.schedule.interval, Some(Duration::from_secs(900)));
        assert!(primary.http.listen.ip().is_loopback());

        let secondary = Settings::load_with_overrides(
            &example("secondary.toml"),
            &[
                ("store.credentials_file", &credentials),
                ("promote.etcd.ca_file", &ca),
                ("promote.etcd.cert_file", &cert),
                ("promote.etcd.key_file", &key),
            ],
        )
        .unwrap();
        let promote = secondary.promote.as_ref().unwrap();
        assert_eq!(promote.etcd.endpoints.len(), 3);
        assert_eq!(secondary.nodes.control_plane, ["cp1", "cp2", "cp3"]);
        assert_eq!(secondary.role, Role::Secondary);
        assert!(secondary.etcd.is_none());
        assert_eq!(
            secondary.secondary().expected_interval,
            Duration::from_secs(900)
        );
        assert_eq!(
            secondary.secondary().prestage_dir,
            Some(PathBuf::from("/var/lib/etcd-dr/prestage"))
        );
        assert_eq!(secondary.cluster, primary.cluster);
        assert_eq!(secondary.store.bucket, primary.store.bucket);
        assert_eq!(secondary.store.prefix, primary.store.prefix);

        // As shipped, only the files missing on this machine are reported, each by name.
        let error = format!(
            "{:#}",
            Settings::load(&example("primary.toml")).unwrap_err()
        );
        for field in [
            "etcd.ca_file",
            "etcd.cert_file",
            "etcd.key_file",
            "store.credentials_file",
        ] {
            assert!(error.contains(field), "{field} not in {error}");
        }
        assert!(error.contains("4 configuration problem(s)"), "{error}");
    }

    #[test]
    fn every_key_of_the_example_configs_is_commented() {
        for name in ["primary.toml", "secondary.toml"] {
            let text = std::fs::read_to_string(example(name)).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (index, line) in lines.iter().enumerate() {
                let is_key = line.contains(" = ") && !line.starts_with('#');
                if !is_key {
                    continue;
                }
                let previous = lines[..index].last().copied().unwrap_or("");
                let previous_is_key = previous.contains(" = ") && !previous.starts_with('#');
                assert!(
                    previous.starts_with('#') || previous_is_key,
                    "{name}:{}: `{line}` has no comment above it",
                    index + 1
                );
            }
        }
    }

    #[test]
    fn nodes_bundles_and_encryption_are_validated_by_field() {
        let text = format!(
            "{MINIMAL}\n[bundle]\nenabled = true\npaths = [\"etc/kubernetes\"]\n[encryption]\nrecipients = [\"nope\"]\n"
        );
        let problems = parse(&text).unwrap().validate().unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "bundle.paths[0]",
                "encryption.recipients[0]",
                "bundle.enabled"
            ]
        );
    }

    #[test]
    fn shipping_needs_recipients_once_bundles_are_on() {
        let signed = format!("{MINIMAL}\n[signing]\nkey_file = \"/etc/etcd-dr/signing.key\"\n");
        let plain = parse(&signed).unwrap();
        assert!(!plain.bundles_enabled());
        plain.validate_for_shipping().unwrap();

        let with_nodes = parse(&format!("{signed}\n[nodes]\ncontrol_plane = [\"cp1\"]\n")).unwrap();
        with_nodes.validate().unwrap();
        assert!(with_nodes.bundles_enabled());
        let problems = with_nodes.validate_for_shipping().unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["encryption.recipients"]);
        assert!(problems
            .to_string()
            .contains("encryption.require_encryption"));
    }

    #[test]
    fn shipping_and_reading_need_signing_unless_explicitly_allowed() {
        let unsigned = parse(MINIMAL).unwrap();
        let fields = |problems: ConfigProblems| -> Vec<String> {
            problems.iter().map(|p| p.field.clone()).collect()
        };
        assert_eq!(
            fields(unsigned.validate_for_shipping().unwrap_err()),
            ["signing.key_file"]
        );
        assert_eq!(
            fields(unsigned.validate_for_reading().unwrap_err()),
            ["signing.trusted_keys"]
        );
        let opted_out = parse(&format!("{MINIMAL}\n[signing]\nallow_unsigned = true\n")).unwrap();
        opted_out.validate_for_shipping().unwrap();
        opted_out.validate_for_reading().unwrap();
    }

    #[test]
    fn an_identity_file_makes_readers_require_encryption() {
        let plain = parse(MINIMAL).unwrap();
        assert!(!plain.requires_encryption_to_read());
        let with_identity = parse(&format!(
            "{MINIMAL}\n[encryption]\nidentity_file = \"/etc/etcd-dr/age.txt\"\n"
        ))
        .unwrap();
        assert!(with_identity.requires_encryption_to_read());
        let opted_out = parse(&format!(
            "{MINIMAL}\n[encryption]\nidentity_file = \"/etc/etcd-dr/age.txt\"\nrequire_encryption = false\n"
        ))
        .unwrap();
        assert!(!opted_out.requires_encryption_to_read());
    }
}
