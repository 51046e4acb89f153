//! The primary's replication heartbeat: `replication-progress.json`, overwritten every
//! `heartbeat_interval`, saying how far the stored chain reaches and as of when it held
//! everything etcd had. Only the secondary's lag is measured from it: it claims nothing that
//! a restore uses (the chain is the truth) and is written only after the segments it counts.
//! It is signed like the segments (`heartbeat_signature.rs`), and read only when the signature
//! satisfies the reader's trust: a store writer cannot make the secondary's lag look small.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use etcd_dr_core::ManifestSignature;
use etcd_dr_transport::ManifestTrust;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::heartbeat_signature::check_heartbeat_signature;
use crate::{
    CaptureProgress, ChainLink, GenerationId, ReplicationError, ReplicationLayout, SegmentSigner,
};

/// Largest heartbeat a reader accepts (it is a few hundred bytes).
const MAX_HEARTBEAT_BYTES: usize = 64 << 10;

/// What `replication-progress.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationHeartbeat {
    /// The generation being written.
    pub generation: String,
    /// The newest revision durably stored in it.
    pub stored_revision: i64,
    /// The newest revision etcd reported.
    pub etcd_revision: i64,
    /// Every revision etcd had at this moment is stored (the primary's clock).
    pub complete_as_of: DateTime<Utc>,
    /// When this heartbeat was written (the primary's clock).
    pub written_at: DateTime<Utc>,
    /// The stored end of the chain: lets a primary that cannot decrypt its own segments (age
    /// recipients, no identity) continue the chain after a restart. A wrong one cannot hide
    /// anything: the next segment would not link, and every chain reader says so.
    #[serde(default)]
    pub tail: Option<HeartbeatTail>,
    /// The producer's Ed25519 signature over every field above and the store's cluster name
    /// (`docs/segments.md`); absent when the producer has no signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ManifestSignature>,
}

/// The chain's end as the heartbeat records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatTail {
    /// The last stored revision.
    pub last_revision: i64,
    /// The digest (trailer) of the segment holding it, hex.
    pub digest: String,
    /// etcd's cluster id the chain records.
    pub cluster_id: u64,
}

impl HeartbeatTail {
    /// The chain link it records; `None` when the digest is not 32 bytes of hex.
    pub fn link(&self) -> Option<ChainLink> {
        let digest = hex::decode(&self.digest).ok()?.try_into().ok()?;
        Some(ChainLink {
            last_revision: self.last_revision,
            digest,
            cluster_id: self.cluster_id,
        })
    }
}

impl ReplicationHeartbeat {
    /// The heartbeat for `progress`; `None` before the capture has a generation and an answer
    /// from etcd.
    pub fn from_progress(progress: &CaptureProgress, now: SystemTime) -> Option<Self> {
        let generation = progress.generation.as_ref()?;
        let complete = progress.complete_as_of()?;
        Some(Self {
            generation: generation.to_string(),
            stored_revision: progress.stored_revision,
            etcd_revision: progress.etcd_revision,
            complete_as_of: complete.into(),
            written_at: now.into(),
            tail: progress.stored_tail.map(|link| HeartbeatTail {
                last_revision: link.last_revision,
                digest: hex::encode(link.digest),
                cluster_id: link.cluster_id,
            }),
            signature: None,
        })
    }

    /// The generation, parsed.
    pub fn generation_id(&self) -> Option<GenerationId> {
        self.generation.parse().ok()
    }
}

/// Overwrites the heartbeat.
pub async fn write_heartbeat(
    store: &Arc<dyn ObjectStore>,
    layout: &ReplicationLayout,
    heartbeat: &ReplicationHeartbeat,
    cancel: &CancellationToken,
) -> Result<(), ReplicationError> {
    let path = layout.progress_path();
    let body =
        serde_json::to_vec_pretty(heartbeat).map_err(|e| ReplicationError::BadHeartbeat {
            key: path.to_string(),
            detail: format!("encoding: {e}"),
        })?;
    tokio::select! {
        result = store.put(path, PutPayload::from(body)) => result.map(|_| ()).map_err(|source| ReplicationError::store("put", path, source)),
        () = cancel.cancelled() => Err(ReplicationError::Cancelled),
    }
}

/// Reads the heartbeat; `None` when there is none. One that `trust` does not accept (unsigned
/// unless `allow_unsigned`, an unknown signer, another cluster, changed after signing) is an
/// `UntrustedHeartbeat` error: never used.
pub async fn read_heartbeat(
    store: &Arc<dyn ObjectStore>,
    layout: &ReplicationLayout,
    trust: &ManifestTrust,
    cancel: &CancellationToken,
) -> Result<Option<ReplicationHeartbeat>, ReplicationError> {
    let path = layout.progress_path();
    let get = async { store.get(path).await?.bytes().await };
    let bytes = tokio::select! {
        result = get => match result {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(ReplicationError::store("get", path, source)),
        },
        () = cancel.cancelled() => return Err(ReplicationError::Cancelled),
    };
    let bad = |detail: String| ReplicationError::BadHeartbeat {
        key: path.to_string(),
        detail,
    };
    if bytes.len() > MAX_HEARTBEAT_BYTES {
        return Err(bad(format!(
            "{} bytes, larger than a heartbeat can be",
            bytes.len()
        )));
    }
    let heartbeat: ReplicationHeartbeat =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a heartbeat: {e}")))?;
    if heartbeat.generation_id().is_none() {
        return Err(bad("names no valid generation".into()));
    }
    check_heartbeat_signature(&heartbeat, trust).map_err(|reason| {
        ReplicationError::UntrustedHeartbeat {
            key: path.to_string(),
            reason,
        }
    })?;
    Ok(Some(heartbeat))
}

/// Writes the heartbeat, signed by `signer` when there is one, every `interval` while the
/// capture's progress moves (and once more on shutdown), until `cancel`. A failed write is
/// logged and retried at the next interval.
pub async fn keep_heartbeat(
    store: Arc<dyn ObjectStore>,
    layout: ReplicationLayout,
    signer: Option<SegmentSigner>,
    progress: watch::Receiver<CaptureProgress>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut written: Option<ReplicationHeartbeat> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            () = cancel.cancelled() => true,
        };
        let next = ReplicationHeartbeat::from_progress(&progress.borrow(), SystemTime::now());
        if let Some(mut next) = next {
            let moved = written.as_ref().is_none_or(|w| {
                (&w.generation, w.stored_revision, w.complete_as_of, &w.tail)
                    != (
                        &next.generation,
                        next.stored_revision,
                        next.complete_as_of,
                        &next.tail,
                    )
            });
            if moved {
                if let Some(signer) = &signer {
                    signer.sign_heartbeat(&mut next);
                }
                // On shutdown: one last write, bounded, whatever the shutdown token says.
                let write_cancel = CancellationToken::new();
                let write = write_heartbeat(&store, &layout, &next, &write_cancel);
                match tokio::time::timeout(interval.max(Duration::from_secs(5)), write).await {
                    Ok(Ok(())) => written = Some(next),
                    Ok(Err(error)) => warn!(%error, "writing the replication heartbeat failed"),
                    Err(_) => warn!("writing the replication heartbeat timed out"),
                }
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;
    use crate::segment_signature::tests::{test_signer, trusting};

    #[tokio::test]
    async fn a_signed_heartbeat_reads_back_and_a_foreign_or_unsigned_object_is_refused() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let layout = ReplicationLayout::new("dr", "prod").unwrap();
        let cancel = CancellationToken::new();
        let trust = trusting(&[1], false);
        assert_eq!(
            read_heartbeat(&store, &layout, &trust, &cancel)
                .await
                .unwrap(),
            None
        );
        let now = Utc::now();
        let mut heartbeat = ReplicationHeartbeat {
            generation: GenerationId::new(now, 41).to_string(),
            stored_revision: 50,
            etcd_revision: 50,
            complete_as_of: now,
            written_at: now,
            tail: Some(HeartbeatTail {
                last_revision: 50,
                digest: hex::encode([9u8; 32]),
                cluster_id: 42,
            }),
            signature: None,
        };
        // Unsigned: refused, saying why.
        write_heartbeat(&store, &layout, &heartbeat, &cancel)
            .await
            .unwrap();
        let error = read_heartbeat(&store, &layout, &trust, &cancel)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ReplicationError::UntrustedHeartbeat { reason, .. } if reason.contains("not signed")),
            "{error}"
        );

        test_signer(1).sign_heartbeat(&mut heartbeat);
        write_heartbeat(&store, &layout, &heartbeat, &cancel)
            .await
            .unwrap();
        let read = read_heartbeat(&store, &layout, &trust, &cancel)
            .await
            .unwrap();
        assert_eq!(read.as_ref(), Some(&heartbeat));
        let link = read.unwrap().tail.unwrap().link().unwrap();
        assert_eq!((link.last_revision, link.digest), (50, [9; 32]));
        // Signed by a key this reader does not trust.
        let error = read_heartbeat(&store, &layout, &trusting(&[2], false), &cancel)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("is refused: it is signed by"), "{error}");
        store
            .put(layout.progress_path(), PutPayload::from(&b"{\"x\":1}"[..]))
            .await
            .unwrap();
        let error = read_heartbeat(&store, &layout, &trust, &cancel)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("not a heartbeat: unknown field `x`"),
            "{error}"
        );
    }
}
