//! The segment format (docs/segments.md): a header, lease records, every event of a run of
//! whole revisions in etcd's own protobuf encoding, and a SHA-256 trailer. The trailer is the
//! segment's digest; the next segment's header repeats it (the hash chain).

use etcd_client::proto::PbEvent;
use prost::Message;
use sha2::{Digest, Sha256};

use etcd_dr_transport::ManifestTrust;

use crate::segment_signature::{
    check_segment_signature, unsigned_content_hash, SegmentSigner, SIGNED_EXTENSION_LEN,
};
use crate::{GenerationId, ReplicationError};

/// First bytes of every segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"ETCDDRSG";
/// The format version this build writes and reads.
pub const SEGMENT_FORMAT_VERSION: u16 = 1;
/// SHA-256 of a segment's plain bytes (everything before its trailer).
pub type SegmentDigest = [u8; 32];
/// The previous digest of a generation's first segment.
pub const NO_PREVIOUS_SEGMENT: SegmentDigest = [0; 32];

/// Events of one revision, in etcd's order, with when the capture saw them.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionEvents {
    /// The revision (every event's `kv.mod_revision`).
    pub revision: i64,
    /// When the capture received the revision, Unix milliseconds.
    pub observed_unix_ms: i64,
    /// etcd's events (put or delete), never empty.
    pub events: Vec<PbEvent>,
}

impl RevisionEvents {
    /// Bytes this revision takes in a segment body.
    pub fn encoded_len(&self) -> usize {
        20 + self
            .events
            .iter()
            .map(|event| 4 + event.encoded_len())
            .sum::<usize>()
    }
}

/// A lease first seen (on a put) in a segment, with the TTL it was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The lease id.
    pub id: i64,
    /// The TTL it was granted (seconds); -1 when it had already expired when asked.
    pub granted_ttl_seconds: i64,
    /// The first revision of the segment whose put carried it.
    pub first_revision: i64,
}

/// What a segment says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentHeader {
    /// etcd's cluster id.
    pub cluster_id: u64,
    /// The generation (unbroken chain) the segment belongs to.
    pub generation: GenerationId,
    /// Its first revision.
    pub first_revision: i64,
    /// Its last revision.
    pub last_revision: i64,
    /// When the first revision was observed, Unix milliseconds.
    pub first_observed_unix_ms: i64,
    /// When the last revision was observed, Unix milliseconds.
    pub last_observed_unix_ms: i64,
    /// The previous segment's digest, zeros for a generation's first segment.
    pub previous_digest: SegmentDigest,
    /// The producer's signature (docs/segments.md#signatures), empty when unsigned; covered by
    /// the trailer.
    pub extension: Vec<u8>,
}

/// A run of whole revisions of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// The header.
    pub header: SegmentHeader,
    /// Leases first seen in this segment.
    pub leases: Vec<LeaseRecord>,
    /// The revisions, ascending and consecutive.
    pub revisions: Vec<RevisionEvents>,
}

impl Segment {
    /// Builds a segment from consecutive revisions; the header's range and times come from them.
    pub fn new(
        cluster_id: u64,
        generation: GenerationId,
        previous_digest: SegmentDigest,
        leases: Vec<LeaseRecord>,
        revisions: Vec<RevisionEvents>,
    ) -> Result<Self, ReplicationError> {
        let (Some(first), Some(last)) = (revisions.first(), revisions.last()) else {
            return Err(ReplicationError::corrupt("new segment", "no revision"));
        };
        let segment = Self {
            header: SegmentHeader {
                cluster_id,
                generation,
                first_revision: first.revision,
                last_revision: last.revision,
                first_observed_unix_ms: first.observed_unix_ms,
                last_observed_unix_ms: last.observed_unix_ms,
                previous_digest,
                extension: Vec::new(),
            },
            leases,
            revisions,
        };
        segment
            .check_body()
            .map_err(|detail| ReplicationError::corrupt("new segment", detail))?;
        Ok(segment)
    }

    /// The plain bytes (header, body, trailer) and the digest (the trailer), with the header's
    /// extension as it is (empty for a new segment: unsigned).
    pub fn encode(&self) -> (Vec<u8>, SegmentDigest) {
        self.encode_with(None)
    }

    /// [`encode`](Self::encode), with `signer`'s signature in the extension (any extension the
    /// header holds is replaced).
    pub fn encode_signed(&self, signer: &SegmentSigner) -> (Vec<u8>, SegmentDigest) {
        self.encode_with(Some(signer))
    }

    fn encode_with(&self, signer: Option<&SegmentSigner>) -> (Vec<u8>, SegmentDigest) {
        let header = &self.header;
        let body_len: usize = self.revisions.iter().map(RevisionEvents::encoded_len).sum();
        let mut out = Vec::with_capacity(160 + body_len + 24 * self.leases.len());
        out.extend_from_slice(SEGMENT_MAGIC);
        out.extend_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&header.cluster_id.to_le_bytes());
        let generation = header.generation.to_string();
        out.extend_from_slice(&(generation.len() as u16).to_le_bytes());
        out.extend_from_slice(generation.as_bytes());
        for value in [
            header.first_revision,
            header.last_revision,
            header.first_observed_unix_ms,
            header.last_observed_unix_ms,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&header.previous_digest);
        let extension_at = out.len();
        // A signature's place is reserved and filled once the body is encoded.
        let extension: &[u8] = match signer {
            Some(_) => &[0; SIGNED_EXTENSION_LEN],
            None => &header.extension,
        };
        out.extend_from_slice(&(extension.len() as u32).to_le_bytes());
        out.extend_from_slice(extension);
        let body_at = out.len();
        out.extend_from_slice(&(self.leases.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.revisions.len() as u32).to_le_bytes());
        for lease in &self.leases {
            for value in [lease.id, lease.granted_ttl_seconds, lease.first_revision] {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        for revision in &self.revisions {
            out.extend_from_slice(&revision.revision.to_le_bytes());
            out.extend_from_slice(&revision.observed_unix_ms.to_le_bytes());
            out.extend_from_slice(&(revision.events.len() as u32).to_le_bytes());
            for event in &revision.events {
                out.extend_from_slice(&(event.encoded_len() as u32).to_le_bytes());
                event
                    .encode(&mut out)
                    .expect("a Vec grows to hold any message");
            }
        }
        if let Some(signer) = signer {
            let unsigned_hash = unsigned_content_hash(&out[..extension_at], &out[body_at..]);
            out[extension_at + 4..body_at].copy_from_slice(&signer.extension(&unsigned_hash));
        }
        let digest: SegmentDigest = Sha256::digest(&out).into();
        out.extend_from_slice(&digest);
        (out, digest)
    }

    /// Parses and checks plain segment bytes; `name` is used in errors. The signature, if any,
    /// is not checked: [`decode_trusted`](Self::decode_trusted) does.
    pub fn decode(name: &str, bytes: &[u8]) -> Result<(Self, SegmentDigest), ReplicationError> {
        let (segment, digest, _) = Self::decode_parts(name, bytes)?;
        Ok((segment, digest))
    }

    /// [`decode`](Self::decode), then the signature checked against `trust` (trusted signer,
    /// the store's cluster, unsigned only when allowed).
    pub fn decode_trusted(
        name: &str,
        bytes: &[u8],
        trust: &ManifestTrust,
    ) -> Result<(Self, SegmentDigest), ReplicationError> {
        let (segment, digest, unsigned_hash) = Self::decode_parts(name, bytes)?;
        check_segment_signature(&segment.header.extension, &unsigned_hash, trust).map_err(
            |reason| ReplicationError::UntrustedSegment {
                segment: name.to_string(),
                reason,
            },
        )?;
        Ok((segment, digest))
    }

    /// The segment, its digest and the hash its signature covers.
    fn decode_parts(
        name: &str,
        bytes: &[u8],
    ) -> Result<(Self, SegmentDigest, [u8; 32]), ReplicationError> {
        let corrupt = |detail: String| ReplicationError::corrupt(name, detail);
        if bytes.len() < SEGMENT_MAGIC.len() + 32 {
            return Err(corrupt(format!("{} bytes is too short", bytes.len())));
        }
        let (content, trailer) = bytes.split_at(bytes.len() - 32);
        let digest: SegmentDigest = Sha256::digest(content).into();
        if digest.as_slice() != trailer {
            return Err(corrupt(
                "the trailer checksum does not match the content (truncated or altered)".into(),
            ));
        }
        let mut reader = Reader { bytes: content };
        if reader.take(8).map_err(&corrupt)? != SEGMENT_MAGIC {
            return Err(corrupt("not a segment (bad magic)".into()));
        }
        let version = u16::from_le_bytes(reader.array().map_err(&corrupt)?);
        if version != SEGMENT_FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {version}; this build reads version {SEGMENT_FORMAT_VERSION}: upgrade etcd-dr"
            )));
        }
        let cluster_id = u64::from_le_bytes(reader.array().map_err(&corrupt)?);
        let generation_len = u16::from_le_bytes(reader.array().map_err(&corrupt)?);
        let generation = std::str::from_utf8(reader.take(generation_len.into()).map_err(&corrupt)?)
            .ok()
            .and_then(|text| text.parse::<GenerationId>().ok())
            .ok_or_else(|| corrupt("the generation id is unreadable".into()))?;
        let first_revision = reader.i64().map_err(&corrupt)?;
        let last_revision = reader.i64().map_err(&corrupt)?;
        let first_observed_unix_ms = reader.i64().map_err(&corrupt)?;
        let last_observed_unix_ms = reader.i64().map_err(&corrupt)?;
        let previous_digest: SegmentDigest = reader.array().map_err(&corrupt)?;
        let extension_at = content.len() - reader.bytes.len();
        let extension_len = u32::from_le_bytes(reader.array().map_err(&corrupt)?);
        let extension = reader
            .take(extension_len as usize)
            .map_err(&corrupt)?
            .to_vec();
        let unsigned_hash = unsigned_content_hash(&content[..extension_at], reader.bytes);
        let lease_count = u32::from_le_bytes(reader.array().map_err(&corrupt)?);
        let revision_count = u32::from_le_bytes(reader.array().map_err(&corrupt)?);
        // Counts come from the file: never pre-allocate more than the bytes can hold.
        let mut leases = Vec::with_capacity((lease_count as usize).min(reader.bytes.len() / 24));
        for _ in 0..lease_count {
            leases.push(LeaseRecord {
                id: reader.i64().map_err(&corrupt)?,
                granted_ttl_seconds: reader.i64().map_err(&corrupt)?,
                first_revision: reader.i64().map_err(&corrupt)?,
            });
        }
        let mut revisions =
            Vec::with_capacity((revision_count as usize).min(reader.bytes.len() / 20));
        for _ in 0..revision_count {
            let revision = reader.i64().map_err(&corrupt)?;
            let observed_unix_ms = reader.i64().map_err(&corrupt)?;
            let event_count = u32::from_le_bytes(reader.array().map_err(&corrupt)?);
            let mut events = Vec::with_capacity((event_count as usize).min(reader.bytes.len() / 4));
            for index in 0..event_count {
                let len = u32::from_le_bytes(reader.array().map_err(&corrupt)?);
                let encoded = reader.take(len as usize).map_err(&corrupt)?;
                let event = PbEvent::decode(encoded)
                    .map_err(|e| corrupt(format!("revision {revision}, event {index}: {e}")))?;
                events.push(event);
            }
            revisions.push(RevisionEvents {
                revision,
                observed_unix_ms,
                events,
            });
        }
        if !reader.bytes.is_empty() {
            return Err(corrupt(format!(
                "{} bytes after the last revision",
                reader.bytes.len()
            )));
        }
        let segment = Self {
            header: SegmentHeader {
                cluster_id,
                generation,
                first_revision,
                last_revision,
                first_observed_unix_ms,
                last_observed_unix_ms,
                previous_digest,
                extension,
            },
            leases,
            revisions,
        };
        segment.check_body().map_err(corrupt)?;
        Ok((segment, digest, unsigned_hash))
    }

    /// The body agrees with the header: consecutive revisions from first to last, each with
    /// events that all carry its revision.
    fn check_body(&self) -> Result<(), String> {
        let header = &self.header;
        let (Some(first), Some(last)) = (self.revisions.first(), self.revisions.last()) else {
            return Err("no revision".into());
        };
        if first.revision != header.first_revision || last.revision != header.last_revision {
            return Err(format!(
                "the header says revisions {}..={} but the body holds {}..={}",
                header.first_revision, header.last_revision, first.revision, last.revision
            ));
        }
        for pair in self.revisions.windows(2) {
            if pair[1].revision != pair[0].revision + 1 {
                return Err(format!(
                    "revision {} follows revision {}",
                    pair[1].revision, pair[0].revision
                ));
            }
        }
        for revision in &self.revisions {
            if revision.events.is_empty() {
                return Err(format!("revision {} has no event", revision.revision));
            }
            for event in &revision.events {
                let mod_revision = event.kv.as_ref().map(|kv| kv.mod_revision);
                if mod_revision != Some(revision.revision) {
                    return Err(format!(
                        "revision {} holds an event of revision {mod_revision:?}",
                        revision.revision
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A bounds-checked cursor over segment bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < len {
            return Err(format!(
                "truncated: {len} bytes expected, {} left",
                self.bytes.len()
            ));
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use etcd_client::proto::PbKeyValue;

    use super::*;

    pub(crate) fn put(revision: i64, key: &str, value: &[u8], lease: i64) -> PbEvent {
        PbEvent {
            r#type: 0,
            kv: Some(PbKeyValue {
                key: key.as_bytes().to_vec(),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                value: value.to_vec(),
                lease,
            }),
            prev_kv: None,
        }
    }

    pub(crate) fn delete(revision: i64, key: &str) -> PbEvent {
        PbEvent {
            r#type: 1,
            kv: Some(PbKeyValue {
                key: key.as_bytes().to_vec(),
                mod_revision: revision,
                ..PbKeyValue::default()
            }),
            prev_kv: None,
        }
    }

    pub(crate) fn generation() -> GenerationId {
        "20261201T120000Z-r0000000000000000010".parse().unwrap()
    }

    pub(crate) fn sample(first: i64, count: i64, previous: SegmentDigest) -> Segment {
        let revisions = (first..first + count)
            .map(|revision| RevisionEvents {
                revision,
                observed_unix_ms: 1_764_590_400_000 + revision,
                events: if revision % 3 == 0 {
                    vec![delete(revision, "a"), delete(revision, "b")]
                } else {
                    vec![put(revision, &format!("k{revision}"), b"value", 7)]
                },
            })
            .collect();
        let leases = vec![LeaseRecord {
            id: 7,
            granted_ttl_seconds: 30,
            first_revision: first,
        }];
        Segment::new(42, generation(), previous, leases, revisions).unwrap()
    }

    #[test]
    fn round_trips_every_field() {
        let segment = sample(11, 5, [9; 32]);
        let (bytes, digest) = segment.encode();
        let (decoded, decoded_digest) = Segment::decode("s", &bytes).unwrap();
        assert_eq!(decoded, segment);
        assert_eq!(decoded_digest, digest);
        assert_eq!(decoded.header.first_revision, 11);
        assert_eq!(decoded.header.last_revision, 15);
        assert_eq!(decoded.header.previous_digest, [9; 32]);
        assert_eq!(decoded.revisions[1].events.len(), 2);
        assert_eq!(&bytes[bytes.len() - 32..], digest.as_slice());
    }

    #[test]
    fn any_flipped_byte_or_truncation_is_detected() {
        let (bytes, _) = sample(11, 3, NO_PREVIOUS_SEGMENT).encode();
        for position in [0, 9, 40, bytes.len() / 2, bytes.len() - 40, bytes.len() - 1] {
            let mut altered = bytes.clone();
            altered[position] ^= 0x20;
            let error = Segment::decode("seg-x", &altered).unwrap_err().to_string();
            assert!(
                error.contains("seg-x") && error.contains("corrupt"),
                "{error}"
            );
        }
        for len in [0, 10, bytes.len() - 1] {
            assert!(Segment::decode("s", &bytes[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn a_body_that_disagrees_with_its_header_is_refused() {
        let mut revisions = sample(11, 3, NO_PREVIOUS_SEGMENT).revisions;
        revisions.remove(1);
        let error = Segment::new(42, generation(), NO_PREVIOUS_SEGMENT, vec![], revisions)
            .unwrap_err()
            .to_string();
        assert!(error.contains("revision 13 follows revision 11"), "{error}");

        let mismatched = vec![RevisionEvents {
            revision: 11,
            observed_unix_ms: 0,
            events: vec![put(12, "k", b"v", 0)],
        }];
        assert!(Segment::new(42, generation(), NO_PREVIOUS_SEGMENT, vec![], mismatched).is_err());
    }

    #[test]
    fn a_newer_format_version_is_named() {
        let (mut bytes, _) = sample(1, 1, NO_PREVIOUS_SEGMENT).encode();
        bytes[8] = 2;
        let content_len = bytes.len() - 32;
        let digest: SegmentDigest = Sha256::digest(&bytes[..content_len]).into();
        bytes[content_len..].copy_from_slice(&digest);
        let error = Segment::decode("s", &bytes).unwrap_err().to_string();
        assert!(error.contains("format version 2"), "{error}");
    }
}
