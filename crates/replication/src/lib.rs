//! Continuous replication: every etcd revision captured from one watch into hash-chained
//! segments in the store, and replayed onto a base snapshot to restore any revision.
//!
//! The segment format and object layout are documented in `docs/segments.md`. Like transport,
//! everything here takes an `Arc<dyn ObjectStore>` and a layout; every long call takes a
//! `CancellationToken`.

#![forbid(unsafe_code)]

mod base;
mod capture;
mod chain;
mod config;
mod continuous;
mod error;
mod follow;
mod heartbeat;
mod heartbeat_signature;
mod layout;
mod pipeline;
mod point_in_time;
mod replay;
mod replay_progress;
mod restore;
mod retention;
mod rotation;
mod scratch_etcd;
mod segment;
mod segment_signature;
mod store;

pub use base::BaseCandidate;
pub use capture::{
    capture_generation, CaptureOptions, CaptureProgress, CaptureStart, GenerationBreak,
};
pub use chain::{read_chain_tail, ChainLink, ChainReader};
pub use config::ReplicationConfig;
pub use continuous::{CaptureHost, ContinuousCapture};
pub use error::ReplicationError;
pub use follow::{restorable_revision, ChainFollower, FollowedChain};
pub use heartbeat::{
    keep_heartbeat, read_heartbeat, write_heartbeat, HeartbeatTail, ReplicationHeartbeat,
};
pub use heartbeat_signature::{check_heartbeat_signature, HEARTBEAT_SIGNATURE_DOMAIN};
pub use layout::{GenerationId, ReplicationLayout, SegmentName, PROGRESS_FILE, SEGMENT_SUFFIX};
pub use replay::{replay_to_revision, ReplayEngine, ReplayReport, ReplayRequest};
pub use replay_progress::{ReplayProgress, ReplayStage};
pub use restore::{
    fetch_revision, plan_restore, replay_generation, FetchedRevision, RestorePlan, RevisionSource,
};
pub use retention::{plan_generation_removal, prune_generations};
pub use scratch_etcd::{EtcdBinaries, ScratchEtcd};
pub use segment::{
    LeaseRecord, RevisionEvents, Segment, SegmentDigest, SegmentHeader, NO_PREVIOUS_SEGMENT,
    SEGMENT_FORMAT_VERSION, SEGMENT_MAGIC,
};
pub use segment_signature::{SegmentSigner, SEGMENT_SIGNATURE_DOMAIN};
pub use store::{
    list_generations, list_segments, list_segments_after, read_segment, SegmentStore,
    StoredSegment, MAX_PLAIN_SEGMENT_BYTES,
};
