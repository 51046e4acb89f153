use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use etcd_dr_core::ConfigProblems;
use serde::Deserialize;

/// `[http]`: where the API listens, its token, and what `/readyz` checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address; loopback unless an operator chooses otherwise.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// File holding the bearer token for mutating endpoints (first line; e.g. a systemd
    /// credential). `ETCD_DR_API_TOKEN` is used when this is not set. Without either, mutating
    /// endpoints answer 403.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// File holding a separate bearer token for `POST /v1/promote`. When set, the
    /// `token_file` token triggers snapshots but no longer promotes.
    #[serde(default)]
    pub promote_token_file: Option<PathBuf>,
    /// `/readyz` turns unready when every cycle has failed for longer than this.
    #[serde(default = "default_readiness_grace", with = "humantime_serde")]
    pub readiness_grace: Duration,
    /// How often the daemon checks that the store answers (for `/readyz`).
    #[serde(default = "default_store_check_interval", with = "humantime_serde")]
    pub store_check_interval: Duration,
    /// A store check that takes longer than this counts as unreachable.
    #[serde(default = "default_store_check_timeout", with = "humantime_serde")]
    pub store_check_timeout: Duration,
    /// A client must send its request head within this, or its connection is closed.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A request must be answered within this (then 408). Above the 60 s that
    /// `POST /v1/snapshots` may wait for etcd.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connections open at once; further clients wait until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

/// The environment variable holding the API token when `http.token_file` is not set.
pub const TOKEN_ENV: &str = "ETCD_DR_API_TOKEN";

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_readiness_grace() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_store_check_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_store_check_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(90)
}
fn default_max_connections() -> usize {
    64
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            token_file: None,
            promote_token_file: None,
            readiness_grace: default_readiness_grace(),
            store_check_interval: default_store_check_interval(),
            store_check_timeout: default_store_check_timeout(),
            header_timeout: default_header_timeout(),
            request_timeout: default_request_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

impl HttpConfig {
    /// Reports every bad field under `field` (e.g. `http`). The token file itself is read at
    /// start-up of `etcd-dr run`, so a configuration can be checked on another machine.
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        for (name, path) in [
            ("token_file", &self.token_file),
            ("promote_token_file", &self.promote_token_file),
        ] {
            if let Some(path) = path {
                if !path.is_absolute() {
                    problems.push(
                        format!("{field}.{name}"),
                        format!(
                            "`{}` must be an absolute path, e.g. /etc/etcd-dr/api-token",
                            path.display()
                        ),
                    );
                }
            }
        }
        for (name, value, minimum) in [
            ("readiness_grace", self.readiness_grace, Duration::ZERO),
            (
                "store_check_interval",
                self.store_check_interval,
                Duration::from_millis(100),
            ),
            (
                "store_check_timeout",
                self.store_check_timeout,
                Duration::from_millis(100),
            ),
            (
                "header_timeout",
                self.header_timeout,
                Duration::from_millis(100),
            ),
            (
                "request_timeout",
                self.request_timeout,
                Duration::from_secs(1),
            ),
        ] {
            if value < minimum {
                problems.push(
                    format!("{field}.{name}"),
                    format!("must be at least {minimum:?}"),
                );
            }
        }
        if !(1..=10_000).contains(&self.max_connections) {
            problems.push(
                format!("{field}.max_connections"),
                "must be between 1 and 10000",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_loopback() {
        let config = HttpConfig::default();
        assert!(config.listen.ip().is_loopback());
        let mut problems = ConfigProblems::default();
        config.validate("http", &mut problems);
        assert!(problems.is_empty());
    }

    #[test]
    fn names_bad_fields() {
        let config = HttpConfig {
            token_file: Some("relative/token".into()),
            store_check_interval: Duration::ZERO,
            ..HttpConfig::default()
        };
        let mut problems = ConfigProblems::default();
        config.validate("http", &mut problems);
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["http.token_file", "http.store_check_interval"]);
    }
}
