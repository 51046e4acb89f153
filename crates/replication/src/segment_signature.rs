//! Segment signatures: the producer signs every segment with the key that signs its manifests
//! (`signing.key_file`), and every reader checks it against the keys it trusts
//! (`signing.trusted_keys`), as for manifests. The signature sits in the segment's `extension`
//! field (covered by the trailer) and covers the segment as it would be without it: header
//! (cluster id, generation, revisions, times, the previous segment's digest, so the chain) and
//! body, plus the store's cluster name. The same signer signs the heartbeat
//! (`heartbeat_signature.rs`).

use std::fmt;
use std::sync::Arc;

use etcd_dr_transport::{DetachedSignature, ManifestSigner, ManifestTrust};
use sha2::{Digest, Sha256};

/// The first bytes of a segment's signed payload: never valid as a manifest's (whose domain is
/// `etcd-dr manifest signature v1`).
pub const SEGMENT_SIGNATURE_DOMAIN: &[u8] = b"etcd-dr segment signature v1\n";
/// The extension's first byte when it holds an Ed25519 signature.
const ED25519_EXTENSION_KIND: u8 = 1;
/// Bytes of a signed segment's extension: kind, public key, signature.
pub(crate) const SIGNED_EXTENSION_LEN: usize = 1 + 32 + 64;

/// The producer's signing key, for the segments of one cluster.
#[derive(Clone)]
pub struct SegmentSigner {
    pub(crate) signer: Arc<ManifestSigner>,
    pub(crate) cluster: String,
}

impl fmt::Debug for SegmentSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // ManifestSigner's Debug shows the public key only.
        f.debug_struct("SegmentSigner")
            .field("signer", &self.signer)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl SegmentSigner {
    /// Signs the segments of `cluster` (the store's cluster name) with `signer`.
    pub fn new(signer: Arc<ManifestSigner>, cluster: &str) -> Self {
        Self {
            signer,
            cluster: cluster.to_string(),
        }
    }

    /// The extension bytes of a segment whose unsigned content hashes to `unsigned_hash`.
    pub(crate) fn extension(&self, unsigned_hash: &[u8; 32]) -> [u8; SIGNED_EXTENSION_LEN] {
        let signature = self
            .signer
            .sign_detached(&signed_payload(&self.cluster, unsigned_hash));
        let mut extension = [0; SIGNED_EXTENSION_LEN];
        extension[0] = ED25519_EXTENSION_KIND;
        extension[1..33].copy_from_slice(&signature.public_key);
        extension[33..].copy_from_slice(&signature.signature);
        extension
    }
}

/// SHA-256 of a segment's content with an empty extension: `prefix` is every byte before the
/// extension's length, `body` every byte after the extension (up to the trailer).
pub(crate) fn unsigned_content_hash(prefix: &[u8], body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prefix);
    hasher.update(0u32.to_le_bytes());
    hasher.update(body);
    hasher.finalize().into()
}

/// What is signed: the domain, the cluster name (length-prefixed), the unsigned content's hash.
fn signed_payload(cluster: &str, unsigned_hash: &[u8; 32]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(SEGMENT_SIGNATURE_DOMAIN.len() + 4 + cluster.len() + 32);
    payload.extend_from_slice(SEGMENT_SIGNATURE_DOMAIN);
    payload.extend_from_slice(&(cluster.len() as u32).to_be_bytes());
    payload.extend_from_slice(cluster.as_bytes());
    payload.extend_from_slice(unsigned_hash);
    payload
}

/// The signature an extension holds: `None` when it is empty (unsigned); an error for anything
/// this build does not know.
pub(crate) fn parse_extension(extension: &[u8]) -> Result<Option<DetachedSignature>, String> {
    match extension {
        [] => Ok(None),
        [ED25519_EXTENSION_KIND, rest @ ..] if rest.len() == SIGNED_EXTENSION_LEN - 1 => {
            let mut signature = DetachedSignature {
                public_key: [0; 32],
                signature: [0; 64],
            };
            signature.public_key.copy_from_slice(&rest[..32]);
            signature.signature.copy_from_slice(&rest[32..]);
            Ok(Some(signature))
        }
        [kind, ..] => Err(format!(
            "its extension ({} bytes, kind {kind}) is not a signature this build reads: upgrade etcd-dr",
            extension.len()
        )),
    }
}

/// Checks the signature in `extension` against `trust` (its keys, `allow_unsigned` and
/// cluster); the error says why the segment is refused.
pub(crate) fn check_segment_signature(
    extension: &[u8],
    unsigned_hash: &[u8; 32],
    trust: &ManifestTrust,
) -> Result<(), String> {
    let signature = parse_extension(extension)?;
    trust.check_detached(
        signature.as_ref(),
        &signed_payload(trust.cluster(), unsigned_hash),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use etcd_dr_core::SecretFileModes;
    use etcd_dr_transport::{generate_signing_key, SigningConfig};

    use super::*;
    use crate::segment::tests::sample;
    use crate::{ReplicationError, Segment, NO_PREVIOUS_SEGMENT};

    /// Three signing keys (key file text, public key), the same for the whole test run.
    fn keys() -> &'static [(String, String); 3] {
        static KEYS: OnceLock<[(String, String); 3]> = OnceLock::new();
        KEYS.get_or_init(|| std::array::from_fn(|_| generate_signing_key()))
    }

    /// The signer of test key `n` (1 to 3) for cluster `prod`.
    pub(crate) fn test_signer(n: usize) -> SegmentSigner {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        std::fs::write(&path, &keys()[n - 1].0).unwrap();
        let signer = ManifestSigner::load(&path, SecretFileModes::Warn).unwrap();
        SegmentSigner::new(Arc::new(signer), "prod")
    }

    /// A reader of cluster `prod` trusting test keys `trusted`.
    pub(crate) fn trusting(trusted: &[usize], allow_unsigned: bool) -> ManifestTrust {
        let config = SigningConfig {
            key_file: None,
            trusted_keys: trusted.iter().map(|n| keys()[n - 1].1.clone()).collect(),
            allow_unsigned,
        };
        ManifestTrust::new("prod", &config, None, false).unwrap()
    }

    fn refusal(bytes: &[u8], trust: &ManifestTrust) -> String {
        match Segment::decode_trusted("seg", bytes, trust) {
            Err(error @ ReplicationError::UntrustedSegment { .. }) => error.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_signed_segment_verifies_and_every_forgery_is_refused() {
        let segment = sample(11, 3, [5; 32]);
        let (bytes, digest) = segment.encode_signed(&test_signer(1));
        let (read, read_digest) =
            Segment::decode_trusted("seg", &bytes, &trusting(&[1], false)).unwrap();
        assert_eq!(read.revisions, segment.revisions);
        assert_eq!(read_digest, digest);
        assert_eq!(read.header.extension.len(), SIGNED_EXTENSION_LEN);
        // Encoding what was read gives the same bytes: the signature is part of the segment.
        assert_eq!(read.encode(), (bytes.clone(), digest));

        // Unsigned, by an unknown key, for another cluster.
        let (unsigned, _) = segment.encode();
        assert!(refusal(&unsigned, &trusting(&[1], false)).contains("is not signed"));
        assert!(refusal(&bytes, &trusting(&[2], false)).contains("not among signing.trusted_keys"));
        let other_cluster = SegmentSigner::new(test_signer(1).signer, "staging");
        let (elsewhere, _) = segment.encode_signed(&other_cluster);
        assert!(refusal(&elsewhere, &trusting(&[1], false)).contains("does not match its content"));

        // Content changed after signing, the trailer recomputed (what a store writer can do):
        // the previous digest (the chain) and a revision's value.
        let mut relinked = read.clone();
        relinked.header.previous_digest = NO_PREVIOUS_SEGMENT;
        let (relinked, _) = relinked.encode();
        assert!(refusal(&relinked, &trusting(&[1], false)).contains("does not match its content"));
        let mut altered = read.clone();
        altered.revisions[0].events[0].kv.as_mut().unwrap().value = b"planted".to_vec();
        let (altered, _) = altered.encode();
        assert!(refusal(&altered, &trusting(&[1], false)).contains("does not match its content"));

        // An extension this build does not know is refused, not ignored.
        let mut unknown = read;
        unknown.header.extension = vec![9; 4];
        let (unknown, _) = unknown.encode();
        assert!(refusal(&unknown, &trusting(&[1], true)).contains("kind 9"));
    }

    #[test]
    fn allow_unsigned_accepts_unsigned_segments_only() {
        let segment = sample(11, 2, NO_PREVIOUS_SEGMENT);
        let (unsigned, _) = segment.encode();
        assert!(Segment::decode_trusted("seg", &unsigned, &trusting(&[1], true)).is_ok());
        assert!(Segment::decode_trusted("seg", &unsigned, &trusting(&[], true)).is_ok());
        let (signed, _) = segment.encode_signed(&test_signer(2));
        assert!(refusal(&signed, &trusting(&[1], true)).contains("not among"));
        // Nothing trusted at all and unsigned allowed: a signature cannot be checked, as good
        // as unsigned (the manifests' rule).
        assert!(Segment::decode_trusted("seg", &signed, &trusting(&[], true)).is_ok());
    }
}
