//! The configuration file, composed of each crate's section, plus `ETCD_DR_…` overrides:
//! loading and validation here, the binary's own sections in `sections.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use etcd_dr_control::{HttpConfig, Role, TOKEN_ENV};
use etcd_dr_core::{ConfigProblems, SecretFileModes};
use etcd_dr_nodes::{BundleConfig, NodesConfig};
use etcd_dr_replication::ReplicationConfig;
use etcd_dr_restore::PromoteConfig;
use etcd_dr_scheduler::{EtcdConfig, ScheduleConfig};
use etcd_dr_transport::{EncryptionConfig, RetentionConfig, SigningConfig, StoreConfig};
use serde::Deserialize;

mod sections;

pub use sections::{FencingSettings, LogFormat, LogSettings, SecondarySettings, UploadSettings};

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
    /// Continuous replication: every revision captured into segments between full snapshots.
    #[serde(default)]
    pub replication: ReplicationConfig,
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
    /// by default on when an identity file is set, or on a primary that takes node bundles.
    /// A secondary's `[nodes]` name the nodes it restores onto, not bundles it takes: without
    /// an identity it could not decrypt anything, so plain snapshots are what it can use.
    pub fn requires_encryption_to_read(&self) -> bool {
        let takes_bundles = self.role == Role::Primary && self.bundles_enabled();
        self.encryption
            .require_encryption
            .unwrap_or(takes_bundles || self.encryption.identity_file.is_some())
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
        self.upload
            .validate_against_store(&self.store, &mut problems);
        self.nodes.validate("nodes", &mut problems);
        self.bundle.validate("bundle", &mut problems);
        self.encryption.validate("encryption", &mut problems);
        self.signing.validate("signing", &mut problems);
        self.replication.validate("replication", &mut problems);
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
    /// The age identities of `[encryption]` (none when no identity file is set). An identity file
    /// others can read is refused (or, with `secret_file_modes = "warn"`, used with a warning).
    pub fn identities(&self) -> anyhow::Result<etcd_dr_transport::Identities> {
        if let Some(path) = &self.encryption.identity_file {
            self.check_secret_file(path, "the age identity file (encryption.identity_file)")?;
        }
        Ok(self.encryption.identities()?)
    }

    /// Refuses a secret file that group or others can read, or warns about it, as
    /// `secret_file_modes` says.
    pub fn check_secret_file(&self, path: &std::path::Path, what: &str) -> anyhow::Result<()> {
        if let Some(warning) = etcd_dr_core::check_secret_file(path, what, self.secret_file_modes)?
        {
            tracing::warn!("{warning}");
        }
        Ok(())
    }

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
mod tests;
