//! Where snapshots come from and when they are taken.
//!
//! - [`EtcdSource`]: surveys the configured endpoints (mTLS), picks the member to stream from
//!   (the leader, else the healthy member with the highest raft index) and opens the snapshot
//!   stream, failing over to the next endpoint when one is down.
//! - [`Schedule`]: interval or cron, with jitter; [`run_schedule`] drives a job on it, one at a
//!   time, until cancelled.
//! - [`SnapshotContext::take_snapshot`]: one snapshot end to end (survey, stream with failover,
//!   node bundles, manifest commit), shipped through `etcd-dr-transport`.

#![forbid(unsafe_code)]

mod cluster_read;
mod error;
mod etcd_config;
mod schedule;
mod snapshot;
mod source;

pub use error::SourceError;
pub use etcd_config::EtcdConfig;
pub use schedule::{run_schedule, Schedule, ScheduleConfig};
pub use snapshot::{
    host_name, BundlePlan, SnapshotContext, SnapshotError, SnapshotHooks, SnapshotOutcome,
};
pub use source::{ClusterSurvey, EndpointReport, EndpointStatus, EtcdSource, SnapshotChunks};
