//! The primary's service-account signing keys, read from a control-plane node bundle taken with
//! the snapshot (decrypted with the secondary's identity, checked against the manifest).

use std::io::{Read, Write};
use std::sync::Arc;

use etcd_dr_core::{NodeBundle, SnapshotManifest};
use etcd_dr_transport::{read_object, Identities, SnapshotLayout};
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use crate::{PromoteError, ServiceAccountKeys};

/// A bundle is a tar of a node's Kubernetes files: small. More than this is refused.
const MAX_BUNDLE_BYTES: usize = 256 * 1024 * 1024;

/// A `Vec` that refuses to grow past a limit.
struct BoundedBuffer {
    data: Vec<u8>,
    limit: usize,
}

impl Write for BoundedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.data.len() + bytes.len() > self.limit {
            return Err(std::io::Error::other(format!(
                "bundle larger than {} bytes",
                self.limit
            )));
        }
        self.data.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn normalise(path: &str) -> &str {
    path.trim_start_matches("./").trim_start_matches('/')
}

/// Finds `sa.key` and `sa.pub` at the recorded paths inside a tar.
fn keys_from_tar(tar: &[u8], key_path: &str, pub_path: &str) -> Result<ServiceAccountKeys, String> {
    let mut archive = tar::Archive::new(tar);
    let mut key = None;
    let mut public = None;
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let path = normalise(&path).to_string();
        let slot = if path == normalise(key_path) {
            &mut key
        } else if path == normalise(pub_path) {
            &mut public
        } else {
            continue;
        };
        if !entry.header().entry_type().is_file() {
            // A link or device where a key belongs: refused, never followed.
            return Err(format!(
                "`{path}` is not a regular file in the tar ({:?}): refused",
                entry.header().entry_type()
            ));
        }
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(|e| e.to_string())?;
        *slot = Some(content);
    }
    match (key, public) {
        (Some(key), Some(public)) if !key.is_empty() && !public.is_empty() => {
            Ok(ServiceAccountKeys { key, public })
        }
        _ => Err(format!(
            "`{key_path}` or `{pub_path}` missing or empty in the tar"
        )),
    }
}

/// The service-account keys of the first node bundle that has both. `Ok(None)` when no bundle
/// records them; an error when a bundle that should hold them cannot be read (corrupt, wrong
/// identity).
pub async fn service_account_keys_from_bundles(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    manifest: &SnapshotManifest,
    identities: &Identities,
    cancel: &CancellationToken,
) -> Result<Option<(String, ServiceAccountKeys)>, PromoteError> {
    for bundle in &manifest.nodes {
        let NodeBundle::Stored {
            node,
            object,
            raw,
            service_account_keys,
            ..
        } = bundle
        else {
            continue;
        };
        let find = |name: &str| {
            service_account_keys
                .iter()
                .find(|p| p.rsplit('/').next() == Some(name))
                .cloned()
        };
        let (Some(key_path), Some(pub_path)) = (find("sa.key"), find("sa.pub")) else {
            continue;
        };
        let sink = BoundedBuffer {
            data: Vec::new(),
            limit: MAX_BUNDLE_BYTES,
        };
        let (_, sink) = read_object(
            store,
            layout,
            &manifest.id,
            object,
            raw,
            identities,
            sink,
            cancel,
        )
        .await?;
        let keys = keys_from_tar(&sink.data, &key_path, &pub_path).map_err(|detail| {
            PromoteError::BadBundle {
                snapshot: manifest.id.to_string(),
                node: node.clone(),
                detail,
            }
        })?;
        return Ok(Some((node.clone(), keys)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder.append_data(&mut header, path, *content).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn finds_the_keys_at_their_recorded_paths() {
        let tar = tar_with(&[
            ("etc/kubernetes/pki/ca.key", b"ca"),
            ("etc/kubernetes/pki/sa.key", b"private"),
            ("etc/kubernetes/pki/sa.pub", b"public"),
        ]);
        let keys = keys_from_tar(
            &tar,
            "etc/kubernetes/pki/sa.key",
            "/etc/kubernetes/pki/sa.pub",
        )
        .unwrap();
        assert_eq!(keys.key, b"private");
        assert_eq!(keys.public, b"public");
        let error = keys_from_tar(
            &tar_with(&[("etc/kubernetes/pki/sa.key", b"x")]),
            "etc/kubernetes/pki/sa.key",
            "etc/kubernetes/pki/sa.pub",
        )
        .unwrap_err();
        assert!(error.contains("missing"), "{error}");
    }

    #[test]
    fn a_link_where_a_key_belongs_is_refused() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        builder
            .append_link(&mut header, "etc/kubernetes/pki/sa.key", "/etc/shadow")
            .unwrap();
        let tar = builder.into_inner().unwrap();
        let error = keys_from_tar(
            &tar,
            "etc/kubernetes/pki/sa.key",
            "etc/kubernetes/pki/sa.pub",
        )
        .unwrap_err();
        assert!(error.contains("not a regular file"), "{error}");
    }

    #[test]
    fn bounded_buffer_refuses_more() {
        let mut buffer = BoundedBuffer {
            data: Vec::new(),
            limit: 4,
        };
        assert!(buffer.write_all(b"1234").is_ok());
        assert!(buffer.write_all(b"5").is_err());
    }
}
