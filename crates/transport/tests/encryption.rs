//! The age stage of the pipeline against an in-memory store: round trips, what the stored bytes
//! reveal, and the errors a missing or wrong identity gives.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use etcd_dr_core::SnapshotId;
use etcd_dr_transport::{
    generate_identity, read_object, read_snapshot, upload_object, upload_snapshot_data, Identities,
    Recipients, ShipProgress, SnapshotLayout, TransportError, UploadOptions, DATA_OBJECT_NAME,
};
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

mod common;
use common::manifest;

const SECRET: &[u8] = b"-----BEGIN RSA PRIVATE KEY----- etcd-dr-distinctive-secret-value";

/// An etcd-like stream: content with a secret repeated through it, then its SHA-256.
fn etcd_stream() -> Vec<u8> {
    let mut content = Vec::new();
    for i in 0..20_000u32 {
        content.extend_from_slice(format!("/registry/secrets/ns/s{i} ").as_bytes());
        if i % 1000 == 0 {
            content.extend_from_slice(SECRET);
        }
    }
    let hash = Sha256::digest(&content);
    content.extend_from_slice(&hash);
    content
}

fn chunks(data: &[u8]) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    futures::stream::iter(
        data.chunks(32 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    )
}

fn identity_file(dir: &std::path::Path, name: &str) -> (Identities, String) {
    let (file, recipient) = generate_identity();
    let path = dir.join(name);
    std::fs::write(&path, file).unwrap();
    (Identities::load(&path).unwrap(), recipient)
}

fn options(recipients: &[String]) -> UploadOptions {
    UploadOptions {
        part_size: 64 * 1024,
        encrypt_to: Some(Recipients::parse(recipients).unwrap()),
        ..UploadOptions::default()
    }
}

async fn stored_bytes(store: &Arc<dyn ObjectStore>) -> Vec<u8> {
    let objects: Vec<_> = store.list(None).try_collect().await.unwrap();
    let mut all = Vec::new();
    for object in objects {
        let body = store
            .get(&object.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        all.extend_from_slice(&body);
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn encrypted_snapshots_round_trip_and_reveal_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (secondary, recipient) = identity_file(dir.path(), "secondary.txt");
    let (break_glass, other_recipient) = identity_file(dir.path(), "break-glass.txt");
    let (stranger, _) = identity_file(dir.path(), "stranger.txt");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layout = SnapshotLayout::new("dr", "prod").unwrap();
    let id = SnapshotId::new(Utc::now(), 7);
    let cancel = CancellationToken::new();
    let stream = etcd_stream();

    let options = options(&[recipient.clone(), other_recipient.clone()]);
    let name = options.stored_name(DATA_OBJECT_NAME);
    assert_eq!(name, "etcd.db.zst.age");
    let data = upload_snapshot_data(
        &store,
        &layout.object_path(&id, &name),
        &name,
        chunks(&stream),
        &options,
        &ShipProgress::default(),
        &cancel,
    )
    .await
    .unwrap();
    let encryption = data
        .stored
        .encryption
        .clone()
        .expect("recorded as encrypted");
    assert_eq!(encryption.recipients(), [recipient, other_recipient]);
    let manifest = manifest(id.clone(), data);

    // Compression alone would keep the secret readable; encryption must not.
    let stored = stored_bytes(&store).await;
    assert!(!contains(&stored, SECRET));
    assert!(!contains(&stored, b"/registry/secrets"));
    assert!(stored.starts_with(b"age-encryption.org/v1"));

    // Either recipient's identity reads it back, byte for byte.
    for identities in [&secondary, &break_glass] {
        let (verified, plain) =
            read_snapshot(&store, &layout, &manifest, identities, Vec::new(), &cancel)
                .await
                .unwrap();
        assert_eq!(plain, stream);
        assert_eq!(verified.raw_size, stream.len() as u64);
    }

    // A stranger's identity and no identity fail clearly, naming the snapshot, with nothing
    // written to the sink.
    let error = read_snapshot(&store, &layout, &manifest, &stranger, Vec::new(), &cancel)
        .await
        .unwrap_err();
    assert!(
        matches!(error, TransportError::WrongIdentity { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(text.contains(&id.to_string()), "{text}");
    assert!(text.contains("stranger.txt"), "{text}");
    let error = read_snapshot(
        &store,
        &layout,
        &manifest,
        &Identities::none(),
        Vec::new(),
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, TransportError::IdentityRequired { .. }),
        "{error}"
    );
    assert!(error.to_string().contains(&id.to_string()));
    assert!(error.to_string().contains("encryption.identity_file"));
}

#[tokio::test]
async fn tampered_ciphertext_never_reaches_the_sink_as_plain_data() {
    let dir = tempfile::tempdir().unwrap();
    let (identities, recipient) = identity_file(dir.path(), "id.txt");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layout = SnapshotLayout::new("", "prod").unwrap();
    let id = SnapshotId::new(Utc::now(), 9);
    let cancel = CancellationToken::new();
    let plain: Vec<u8> = (0..500_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let options = options(&[recipient]);
    let name = options.stored_name("nodes/cp1.tar.zst");
    let location = layout.object_path(&id, &name);
    let uploaded = upload_object(
        &store,
        &location,
        &name,
        chunks(&plain),
        &options,
        &ShipProgress::default(),
        &cancel,
    )
    .await
    .unwrap();
    let (verified, back) = read_object(
        &store,
        &layout,
        &id,
        &uploaded.stored,
        &uploaded.raw,
        &identities,
        Vec::new(),
        &cancel,
    )
    .await
    .unwrap();
    assert_eq!(back, plain);
    assert_eq!(verified.stored_size, uploaded.stored.size);

    // Flip one byte in the middle and pretend the manifest agrees: age's authentication
    // still refuses it.
    let mut body = store
        .get(&location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let middle = body.len() / 2;
    body[middle] ^= 1;
    store.put(&location, body.clone().into()).await.unwrap();
    let mut forged = uploaded.stored.clone();
    forged.sha256 = hex::encode(Sha256::digest(&body));
    let error = read_object(
        &store,
        &layout,
        &id,
        &forged,
        &uploaded.raw,
        &identities,
        Vec::new(),
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, TransportError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("does not decrypt"), "{error}");
}

#[tokio::test]
async fn plain_uploads_are_unchanged() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layout = SnapshotLayout::new("", "prod").unwrap();
    let id = SnapshotId::new(Utc::now(), 3);
    let cancel = CancellationToken::new();
    let stream = etcd_stream();
    let options = UploadOptions::default();
    let data = upload_snapshot_data(
        &store,
        &layout.data_path(&id),
        DATA_OBJECT_NAME,
        chunks(&stream),
        &options,
        &ShipProgress::default(),
        &cancel,
    )
    .await
    .unwrap();
    assert_eq!(data.stored.encryption, None);
    assert_eq!(data.stored.name, DATA_OBJECT_NAME);
    let manifest = manifest(id, data);
    // A configured identity does not matter for plain objects.
    let dir = tempfile::tempdir().unwrap();
    let (identities, _) = identity_file(dir.path(), "id.txt");
    let (_, plain) = read_snapshot(&store, &layout, &manifest, &identities, Vec::new(), &cancel)
        .await
        .unwrap();
    assert_eq!(plain, stream);
}
