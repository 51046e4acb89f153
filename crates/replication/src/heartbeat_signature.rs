//! Heartbeat signatures: the secondary measures its lag from the primary's heartbeat, so a store
//! writer who could rewrite it could make the lag look small. The primary signs it with the key
//! that signs its manifests and segments; readers check it against the same trust (signer,
//! `allow_unsigned`, cluster).
//!
//! The signed payload is the domain tag [`HEARTBEAT_SIGNATURE_DOMAIN`], then named records, each
//! `len(name) name len(value) value` with 4-byte big-endian lengths (the manifests' encoding):
//! the store's cluster name, every field of the heartbeat (numbers as decimal text, times
//! RFC 3339 with nanoseconds), the tail's fields only when it has one.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use etcd_dr_core::ManifestSignature;
use etcd_dr_transport::{parse_public_key, DetachedSignature, ManifestTrust};

use crate::{ReplicationHeartbeat, SegmentSigner};

/// The first bytes of a heartbeat's signed payload: never valid as a manifest's or a segment's.
pub const HEARTBEAT_SIGNATURE_DOMAIN: &[u8] = b"etcd-dr heartbeat signature v1\n";

/// Builds the payload record by record.
struct Payload(Vec<u8>);

impl Payload {
    fn record(&mut self, name: &str, value: &str) {
        for part in [name.as_bytes(), value.as_bytes()] {
            // A heartbeat is a few hundred bytes (read back at most 64 KiB).
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            self.0.extend_from_slice(&len.to_be_bytes());
            self.0.extend_from_slice(part);
        }
    }

    fn time(&mut self, name: &str, time: &DateTime<Utc>) {
        self.record(name, &time.to_rfc3339_opts(SecondsFormat::Nanos, true));
    }
}

/// What a heartbeat's signature covers, for the store's cluster `cluster`.
fn signed_payload(cluster: &str, heartbeat: &ReplicationHeartbeat) -> Vec<u8> {
    let mut payload = Payload(HEARTBEAT_SIGNATURE_DOMAIN.to_vec());
    payload.record("cluster", cluster);
    payload.record("generation", &heartbeat.generation);
    payload.record("stored_revision", &heartbeat.stored_revision.to_string());
    payload.record("etcd_revision", &heartbeat.etcd_revision.to_string());
    payload.time("complete_as_of", &heartbeat.complete_as_of);
    payload.time("written_at", &heartbeat.written_at);
    if let Some(tail) = &heartbeat.tail {
        payload.record("tail.last_revision", &tail.last_revision.to_string());
        payload.record("tail.digest", &tail.digest);
        payload.record("tail.cluster_id", &tail.cluster_id.to_string());
    }
    payload.0
}

impl SegmentSigner {
    /// Signs `heartbeat` (replacing any signature it had).
    pub fn sign_heartbeat(&self, heartbeat: &mut ReplicationHeartbeat) {
        heartbeat.signature = None;
        let signature = self
            .signer
            .sign_detached(&signed_payload(&self.cluster, heartbeat));
        heartbeat.signature = Some(ManifestSignature::Ed25519 {
            public_key: self.signer.public_key().to_string(),
            signature: BASE64.encode(signature.signature),
        });
    }
}

/// Checks `heartbeat`'s signature against `trust` (its keys, `allow_unsigned` and cluster);
/// the error says why it is refused.
pub fn check_heartbeat_signature(
    heartbeat: &ReplicationHeartbeat,
    trust: &ManifestTrust,
) -> Result<(), String> {
    let signature = match &heartbeat.signature {
        None => None,
        Some(ManifestSignature::Ed25519 {
            public_key,
            signature,
        }) => {
            let key = parse_public_key(public_key.trim())
                .map_err(|e| format!("its signer's public key is not one: {e}"))?;
            let signature: [u8; 64] = BASE64
                .decode(signature)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| "its signature is not 64 bytes of base64".to_string())?;
            Some(DetachedSignature {
                public_key: key.to_bytes(),
                signature,
            })
        }
    };
    trust.check_detached(
        signature.as_ref(),
        &signed_payload(trust.cluster(), heartbeat),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Duration;

    use super::*;
    use crate::segment_signature::tests::{test_signer, trusting};
    use crate::{GenerationId, HeartbeatTail};

    fn heartbeat() -> ReplicationHeartbeat {
        let now = Utc::now();
        ReplicationHeartbeat {
            generation: GenerationId::new(now, 41).to_string(),
            stored_revision: 50,
            etcd_revision: 52,
            complete_as_of: now - Duration::seconds(30),
            written_at: now,
            tail: Some(HeartbeatTail {
                last_revision: 50,
                digest: hex::encode([9u8; 32]),
                cluster_id: 42,
            }),
            signature: None,
        }
    }

    #[test]
    fn a_signed_heartbeat_verifies_and_every_forgery_is_refused() {
        let mut signed = heartbeat();
        test_signer(1).sign_heartbeat(&mut signed);
        let trust = trusting(&[1], false);
        assert_eq!(check_heartbeat_signature(&signed, &trust), Ok(()));
        // Through JSON, as the store holds it.
        let json = serde_json::to_vec(&signed).unwrap();
        let read: ReplicationHeartbeat = serde_json::from_slice(&json).unwrap();
        assert_eq!(check_heartbeat_signature(&read, &trust), Ok(()));

        let refused = |heartbeat: &ReplicationHeartbeat, trust: &ManifestTrust| {
            check_heartbeat_signature(heartbeat, trust).unwrap_err()
        };
        // Unsigned; signed by a key not trusted; for another cluster.
        assert!(refused(&heartbeat(), &trust).contains("is not signed"));
        assert!(refused(&signed, &trusting(&[2], false)).contains("not among"));
        let mut elsewhere = heartbeat();
        SegmentSigner::new(Arc::clone(&test_signer(1).signer), "staging")
            .sign_heartbeat(&mut elsewhere);
        assert!(refused(&elsewhere, &trust).contains("does not match"));
        // What a store writer would change to make the lag look small, or the tail it names.
        let mut fresher = signed.clone();
        fresher.complete_as_of = Utc::now();
        assert!(refused(&fresher, &trust).contains("does not match"));
        let mut lower = signed.clone();
        lower.stored_revision = 1;
        assert!(refused(&lower, &trust).contains("does not match"));
        let mut retailed = signed.clone();
        retailed.tail = None;
        assert!(refused(&retailed, &trust).contains("does not match"));
        // A signature that is not one.
        let mut garbled = signed.clone();
        garbled.signature = Some(ManifestSignature::Ed25519 {
            public_key: test_signer(1).signer.public_key().to_string(),
            signature: "AAAA".into(),
        });
        assert!(refused(&garbled, &trust).contains("not 64 bytes"));
    }

    #[test]
    fn allow_unsigned_accepts_an_unsigned_heartbeat_but_not_an_unknown_signer() {
        assert_eq!(
            check_heartbeat_signature(&heartbeat(), &trusting(&[1], true)),
            Ok(())
        );
        let mut signed = heartbeat();
        test_signer(2).sign_heartbeat(&mut signed);
        assert!(check_heartbeat_signature(&signed, &trusting(&[1], true))
            .unwrap_err()
            .contains("not among"));
    }
}
