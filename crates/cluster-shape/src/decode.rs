//! Kubernetes objects as the API server stores them in etcd: protobuf inside the `k8s\0`
//! envelope for built-in types, JSON for custom resources (or for everything when the API
//! server stores JSON), `k8s:enc:` when encrypted at rest.

use prost::Message;
use serde::de::DeserializeOwned;

use crate::proto::Unknown;
use crate::ShapeError;

/// The magic before a protobuf-encoded object.
pub const PROTOBUF_MAGIC: &[u8] = b"k8s\0";
/// The prefix of a value encrypted at rest.
pub const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";

/// Decodes one stored object as `T`, named `kind` in errors.
pub fn decode_object<T>(key: &str, value: &[u8], kind: &'static str) -> Result<T, ShapeError>
where
    T: Message + Default + DeserializeOwned,
{
    if value.starts_with(ENCRYPTED_PREFIX) {
        return Err(ShapeError::Encrypted { key: key.into() });
    }
    if let Some(envelope) = value.strip_prefix(PROTOBUF_MAGIC) {
        let protobuf = |source| ShapeError::Protobuf {
            key: key.into(),
            kind,
            source,
        };
        let unknown = Unknown::decode(envelope).map_err(protobuf)?;
        return T::decode(unknown.raw.unwrap_or_default().as_slice()).map_err(protobuf);
    }
    if value.trim_ascii_start().starts_with(b"{") {
        return serde_json::from_slice(value).map_err(|source| ShapeError::Json {
            key: key.into(),
            kind,
            source,
        });
    }
    Err(ShapeError::UnknownEncoding { key: key.into() })
}
