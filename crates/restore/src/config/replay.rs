//! `[promote.replay]`: how a restore to a point carries the base snapshot forward.

use std::path::PathBuf;

use etcd_dr_replication::{EtcdBinaries, ReplayEngine};
use serde::Deserialize;

/// `[promote.replay]`: the replay engine of a restore to a point (`at`), on the machine that
/// runs the promotion (not the nodes); `etcd` and `etcdutl` (3.5+) only for `engine = "etcd"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// `backend` (the base's backend file extended directly, no etcd needed) or `etcd` (a
    /// throw-away etcd applies every revision as a transaction).
    #[serde(default)]
    pub engine: ReplayEngineName,
    /// `etcd` (a name on `PATH` or a path).
    #[serde(default = "default_replay_etcd")]
    pub etcd: PathBuf,
    /// `etcdutl`.
    #[serde(default = "default_replay_etcdutl")]
    pub etcdutl: PathBuf,
}

/// `[promote.replay] engine`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayEngineName {
    /// The base's backend file extended directly.
    #[default]
    Backend,
    /// A throw-away etcd.
    Etcd,
}

impl ReplayConfig {
    /// The engine, with the binaries it needs.
    pub fn engine(&self) -> ReplayEngine {
        match self.engine {
            ReplayEngineName::Backend => ReplayEngine::Backend,
            ReplayEngineName::Etcd => ReplayEngine::Etcd(EtcdBinaries {
                etcd: self.etcd.clone(),
                etcdutl: self.etcdutl.clone(),
            }),
        }
    }
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            engine: ReplayEngineName::default(),
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
