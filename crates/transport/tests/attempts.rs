//! Two attempts at the same snapshot id (two producers in the same second at the same revision)
//! never touch each other's objects: the committed one stays readable whatever the other does.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use etcd_dr_core::SnapshotId;
use etcd_dr_transport::{
    commit_manifest, read_snapshot, resolve_snapshot, upload_snapshot_data, AttemptToken,
    Identities, ManifestTrust, ShipProgress, SigningConfig, SnapshotLayout, SnapshotSelector,
    TransportError, UploadOptions, DATA_OBJECT_NAME,
};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

mod common;
use common::manifest;

fn etcd_like(seed: u8, len: usize) -> Vec<u8> {
    let mut content: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
    let hash = Sha256::digest(&content);
    content.extend_from_slice(&hash);
    content
}

async fn upload(
    store: &Arc<dyn ObjectStore>,
    layout: &SnapshotLayout,
    id: &SnapshotId,
    attempt: &AttemptToken,
    stream: &[u8],
) -> etcd_dr_transport::UploadedData {
    let options = UploadOptions {
        part_size: 64 * 1024,
        ..UploadOptions::default()
    };
    let name = attempt.object_name(DATA_OBJECT_NAME);
    let chunks: Vec<Result<Bytes, std::io::Error>> = stream
        .chunks(32 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    upload_snapshot_data(
        store,
        &layout.object_path(id, &name),
        &name,
        futures::stream::iter(chunks),
        &options,
        &ShipProgress::default(),
        &CancellationToken::new(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_second_attempt_at_the_same_id_leaves_the_committed_snapshot_intact() {
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<Arc<dyn ObjectStore>> = vec![
        Arc::new(InMemory::new()),
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap()),
    ];
    for store in stores {
        let layout = SnapshotLayout::new("dr", "prod").unwrap();
        let id = SnapshotId::new(Utc::now(), 42);
        let cancel = CancellationToken::new();
        let (first, second) = (AttemptToken::random(), AttemptToken::random());
        let first_stream = etcd_like(3, 300_000);

        let first_data = upload(&store, &layout, &id, &first, &first_stream).await;
        // The second attempt uploads other bytes while the first commits.
        let second_data = upload(&store, &layout, &id, &second, &etcd_like(5, 200_000)).await;
        // Unsigned: what is tested here is the attempt folders, not the signature.
        let trust = ManifestTrust::new(
            "prod",
            &SigningConfig {
                key_file: None,
                trusted_keys: Vec::new(),
                allow_unsigned: true,
            },
            None,
            false,
        )
        .unwrap();
        commit_manifest(
            &store,
            &layout,
            None,
            &mut manifest(id.clone(), first_data),
            &cancel,
        )
        .await
        .unwrap();
        let refused = commit_manifest(
            &store,
            &layout,
            None,
            &mut manifest(id.clone(), second_data),
            &cancel,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(refused, TransportError::AlreadyExists { .. }),
            "{refused}"
        );

        let committed =
            resolve_snapshot(&store, &layout, &trust, &SnapshotSelector::Latest, &cancel)
                .await
                .unwrap();
        assert!(committed.stored.name.starts_with(first.as_str()));
        let (verified, plain) = read_snapshot(
            &store,
            &layout,
            &committed,
            &Identities::default(),
            Vec::new(),
            &cancel,
        )
        .await
        .unwrap();
        assert_eq!(plain, first_stream);
        assert_eq!(verified.raw_size, first_stream.len() as u64);
    }
}
