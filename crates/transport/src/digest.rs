use sha2::{Digest, Sha256};

/// Hashes an etcd snapshot stream as it passes, holding back the last 32 bytes: etcd (3.4 and
/// later) appends the SHA-256 of the content to the stream, and `etcdutl snapshot restore`
/// checks it. One pass yields both that content hash and the hash of the whole stream (what a
/// `sha256sum` of the fetched `.db` prints).
#[derive(Clone, Default)]
pub struct EtcdStreamDigest {
    content: Sha256,
    held: Vec<u8>,
    total: u64,
}

/// The result of [`EtcdStreamDigest::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdStreamSums {
    /// Bytes in the whole stream, trailer included.
    pub size: u64,
    /// SHA-256 of the whole stream, lower-case hex.
    pub file_sha256: String,
    /// The trailer etcd appended (hex), when it matches the content; `None` when it does not.
    pub etcd_sha256: Option<String>,
    /// The last 32 bytes of the stream (hex), whatever they are.
    pub trailer: String,
}

const TRAILER_LEN: usize = 32;

impl EtcdStreamDigest {
    /// A fresh digest.
    pub fn new() -> Self {
        Self {
            held: Vec::with_capacity(2 * TRAILER_LEN),
            ..Self::default()
        }
    }

    /// Feeds the next bytes of the stream.
    pub fn update(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        if self.held.len() + data.len() <= TRAILER_LEN {
            self.held.extend_from_slice(data);
            return;
        }
        if data.len() >= TRAILER_LEN {
            // Everything held, and all of `data` but its last 32 bytes, is content.
            self.content.update(&self.held);
            let (body, tail) = data.split_at(data.len() - TRAILER_LEN);
            self.content.update(body);
            self.held.clear();
            self.held.extend_from_slice(tail);
        } else {
            let overflow = self.held.len() + data.len() - TRAILER_LEN;
            self.content.update(&self.held[..overflow]);
            self.held.drain(..overflow);
            self.held.extend_from_slice(data);
        }
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.total
    }

    /// Finishes both hashes and checks the trailer against the content.
    pub fn finish(self) -> EtcdStreamSums {
        let content = self.content.clone().finalize();
        let mut whole = self.content;
        whole.update(&self.held);
        let trailer = hex::encode(&self.held);
        let etcd_sha256 = (self.held.len() == TRAILER_LEN
            && content.as_slice() == self.held.as_slice())
        .then(|| trailer.clone());
        EtcdStreamSums {
            size: self.total,
            file_sha256: hex::encode(whole.finalize()),
            etcd_sha256,
            trailer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd_like(content: &[u8]) -> Vec<u8> {
        let mut stream = content.to_vec();
        stream.extend_from_slice(&Sha256::digest(content));
        stream
    }

    #[test]
    fn accepts_a_valid_trailer_whatever_the_chunking() {
        let content: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let stream = etcd_like(&content);
        for chunk in [1, 5, 31, 32, 33, 64, 4096, stream.len()] {
            let mut digest = EtcdStreamDigest::new();
            for piece in stream.chunks(chunk) {
                digest.update(piece);
            }
            let sums = digest.finish();
            assert_eq!(sums.size, stream.len() as u64);
            assert_eq!(
                sums.file_sha256,
                hex::encode(Sha256::digest(&stream)),
                "chunk {chunk}"
            );
            assert_eq!(
                sums.etcd_sha256,
                Some(hex::encode(Sha256::digest(&content))),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn flags_a_stream_whose_trailer_does_not_match() {
        let mut stream = etcd_like(b"some bolt pages");
        stream[3] ^= 1;
        let mut digest = EtcdStreamDigest::new();
        digest.update(&stream);
        let sums = digest.finish();
        assert_eq!(sums.etcd_sha256, None);
        assert_eq!(sums.file_sha256, hex::encode(Sha256::digest(&stream)));
    }

    #[test]
    fn short_streams_have_no_trailer() {
        let mut digest = EtcdStreamDigest::new();
        digest.update(b"tiny");
        assert_eq!(digest.finish().etcd_sha256, None);
    }
}
