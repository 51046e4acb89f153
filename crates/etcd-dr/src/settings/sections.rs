//! The binary's own config sections: `[fencing]`, `[secondary]`, `[upload]`, `[log]` (each
//! library's section lives in its crate).

use std::path::PathBuf;
use std::time::Duration;

use etcd_dr_core::ConfigProblems;
use etcd_dr_transport::{StoreConfig, UploadOptions};
use serde::Deserialize;

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
    pub(super) fn validate(&self, field: &str, problems: &mut ConfigProblems) {
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
    /// How long the producer lease (one snapshot producer per prefix at a time) lives without
    /// a renewal; the holder renews it every third of this.
    #[serde(default = "default_producer_lease_ttl", with = "humantime_serde")]
    pub producer_lease_ttl: Duration,
    /// On shutdown, how long an upload that is completing may go on before it is aborted.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

fn default_shutdown_grace() -> Duration {
    UploadOptions::default().shutdown_grace
}

fn default_producer_lease_ttl() -> Duration {
    Duration::from_secs(120)
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
            producer_lease_ttl: default_producer_lease_ttl(),
            shutdown_grace: default_shutdown_grace(),
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
            shutdown_grace: self.shutdown_grace,
        }
    }

    /// A part must be able to upload within one store request: at 1 MiB/s (a slow link), a
    /// part of N MiB needs N seconds. Otherwise parts fail with a bare "operation timed out".
    pub(super) fn validate_against_store(
        &self,
        store: &StoreConfig,
        problems: &mut ConfigProblems,
    ) {
        let needed = Duration::from_secs(self.part_size_mib as u64);
        if store.request_timeout < needed {
            problems.push(
                "upload.part_size_mib",
                format!(
                    "a part of {} MiB needs {}s at 1 MiB/s, longer than store.request_timeout ({}): raise store.request_timeout or lower upload.part_size_mib",
                    self.part_size_mib,
                    needed.as_secs(),
                    humantime::format_duration(store.request_timeout)
                ),
            );
        }
    }

    pub(super) fn validate(&self, problems: &mut ConfigProblems) {
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
        if self.shutdown_grace > Duration::from_secs(300) {
            problems.push(
                "upload.shutdown_grace",
                "must be at most 5m (systemd stops waiting after TimeoutStopSec)",
            );
        }
        if !(Duration::from_secs(15)..=Duration::from_secs(3600)).contains(&self.producer_lease_ttl)
        {
            problems.push(
                "upload.producer_lease_ttl",
                "must be between 15s and 1h (a crashed producer blocks others this long)",
            );
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
