//! `[promote.replay]`: the local etcd of a restore to a point.

use std::path::PathBuf;

use serde::Deserialize;

/// `[promote.replay]`: `etcd` and `etcdutl` (3.5+) on the machine that runs the promotion (not
/// the nodes), for the throw-away etcd of a restore to a point (`--at`). Only used with `at`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// `etcd` (a name on `PATH` or a path).
    #[serde(default = "default_replay_etcd")]
    pub etcd: PathBuf,
    /// `etcdutl`.
    #[serde(default = "default_replay_etcdutl")]
    pub etcdutl: PathBuf,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            etcd: default_replay_etcd(),
            etcdutl: default_replay_etcdutl(),
        }
    }
}

fn default_replay_etcd() -> PathBuf {
    "etcd".into()
}
fn default_replay_etcdutl() -> PathBuf {
    "etcdutl".into()
}
