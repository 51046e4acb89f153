//! The configuration file, composed of each crate's section, plus `ETCD_DR_…` overrides.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use etcd_dr_core::ConfigProblems;
use etcd_dr_nodes::{BundleConfig, NodesConfig};
use etcd_dr_scheduler::{EtcdConfig, ScheduleConfig};
use etcd_dr_transport::{EncryptionConfig, RetentionConfig, StoreConfig, UploadOptions};
use serde::Deserialize;

/// The whole configuration of one etcd-dr instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Name of the Kubernetes cluster; the folder of its snapshots in the store.
    pub cluster: String,
    /// How to reach etcd.
    pub etcd: EtcdConfig,
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
}

/// `[upload]`: compression level and multipart tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadSettings {
    /// zstd level, 1–19.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// zstd worker threads (0: compress on the pipeline thread).
    #[serde(default)]
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
            zstd_workers: 0,
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

    /// Problems that only matter where snapshots are shipped from (the primary): with
    /// encryption required, recipients must be configured.
    pub fn validate_for_shipping(&self) -> Result<(), ConfigProblems> {
        let mut problems = ConfigProblems::default();
        self.encryption
            .validate_for_shipping("encryption", self.bundles_enabled(), &mut problems);
        problems.into_result()
    }

    /// Loads `path` and the `ETCD_DR_…` environment (`ETCD_DR_STORE__BUCKET=x` sets
    /// `store.bucket`), then validates everything, reporting every bad field at once.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        if !path.is_file() {
            bail!(
                "config file `{}` does not exist or is not a file; pass --config with the path of a TOML file (see config/primary.toml)",
                path.display()
            );
        }
        std::fs::File::open(path)
            .with_context(|| format!("config file `{}` is not readable", path.display()))?;
        let loaded = config::Config::builder()
            .add_source(config::File::from(path.to_path_buf()).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("ETCD_DR")
                    .source(Some(config_environment()))
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("etcd.endpoints"),
            )
            .build()
            .with_context(|| format!("config file `{}`", path.display()))?;
        let settings: Settings = loaded.try_deserialize().with_context(|| {
            format!(
                "config file `{}` (or an ETCD_DR_… variable)",
                path.display()
            )
        })?;
        settings
            .validate()
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
        self.etcd.validate("etcd", &mut problems);
        self.store.validate("store", &mut problems);
        self.schedule.validate("schedule", &mut problems);
        self.retention.validate("retention", &mut problems);
        self.upload.validate(&mut problems);
        self.nodes.validate("nodes", &mut problems);
        self.bundle.validate("bundle", &mut problems);
        self.encryption.validate("encryption", &mut problems);
        if self.bundle.enabled == Some(true) && !self.nodes.has_control_plane() {
            problems.push(
                "bundle.enabled",
                "bundles need control-plane nodes: set nodes.control_plane or nodes.discover_control_plane = true",
            );
        }
        problems.into_result()
    }
}

/// The `ETCD_DR_…` variables that override config keys: all but `ETCD_DR_CONFIG`, which names
/// the file itself.
fn config_environment() -> std::collections::HashMap<String, String> {
    std::env::vars()
        .filter(|(name, _)| name.starts_with("ETCD_DR_") && name != "ETCD_DR_CONFIG")
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
        let plain = parse(MINIMAL).unwrap();
        assert!(!plain.bundles_enabled());
        plain.validate_for_shipping().unwrap();

        let with_nodes =
            parse(&format!("{MINIMAL}\n[nodes]\ncontrol_plane = [\"cp1\"]\n")).unwrap();
        with_nodes.validate().unwrap();
        assert!(with_nodes.bundles_enabled());
        let problems = with_nodes.validate_for_shipping().unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["encryption.recipients"]);
        assert!(problems
            .to_string()
            .contains("encryption.require_encryption"));
    }
}
