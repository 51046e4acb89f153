use std::time::Duration;

use object_store::memory::InMemory;
use object_store::ObjectStoreExt;

use super::*;
use crate::segment::tests::{generation, sample};
use crate::segment_signature::tests::{test_signer, trusting};
use crate::store::SegmentStore;

/// A chain of three segments signed by the key `trust()` trusts.
async fn stored_chain() -> (SegmentStore, Vec<Segment>) {
    let sink = SegmentStore {
        store: Arc::new(InMemory::new()),
        layout: ReplicationLayout::new("dr", "prod").unwrap(),
        recipients: None,
        signer: Some(test_signer(1)),
    };
    let cancel = CancellationToken::new();
    let mut previous = NO_PREVIOUS_SEGMENT;
    let mut segments = Vec::new();
    for first in [11, 14, 17] {
        let segment = sample(first, 3, previous);
        previous = sink.put(&segment, &cancel).await.unwrap().digest;
        segments.push(segment);
    }
    (sink, segments)
}

fn trust() -> ManifestTrust {
    trusting(&[1], false)
}

/// Where `stored_chain` put the (plain) segment of revisions `first..=last`.
fn stored_key(sink: &SegmentStore, first: i64, last: i64) -> object_store::path::Path {
    let name = SegmentName {
        first_revision: first,
        last_revision: last,
        encrypted: false,
    };
    sink.layout.segment_path(&generation(), &name)
}

async fn read_all(sink: &SegmentStore) -> Result<Vec<Segment>, ReplicationError> {
    read_all_trusting(sink, trust()).await
}

async fn read_all_trusting(
    sink: &SegmentStore,
    trust: ManifestTrust,
) -> Result<Vec<Segment>, ReplicationError> {
    let cancel = CancellationToken::new();
    let mut reader = ChainReader::open(
        sink.store.clone(),
        sink.layout.clone(),
        generation(),
        Identities::none(),
        trust,
        &cancel,
    )
    .await?;
    let mut out = Vec::new();
    while let Some((_, segment)) = reader.next_segment(&cancel).await? {
        out.push(segment);
    }
    Ok(out)
}

#[tokio::test]
async fn a_stored_chain_reads_back_in_order() {
    let (sink, segments) = stored_chain().await;
    let read = read_all(&sink).await.unwrap();
    let headers = |segments: &[Segment]| -> Vec<(i64, i64, SegmentDigest)> {
        segments
            .iter()
            .map(|s| {
                let h = &s.header;
                (h.first_revision, h.last_revision, h.previous_digest)
            })
            .collect()
    };
    assert_eq!(headers(&read), headers(&segments));
    for (read, written) in read.iter().zip(&segments) {
        assert_eq!(read.revisions, written.revisions);
        assert_eq!(read.header.extension.len(), 97, "signed");
    }
    let tail = read_chain_tail(
        &sink.store,
        &sink.layout,
        &generation(),
        &Identities::none(),
        &trust(),
        &CancellationToken::new(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(tail.last_revision, 19);
}

#[tokio::test]
async fn the_next_segments_are_fetched_while_one_is_handed_out() {
    use etcd_dr_transport::fault_store::{Call, Fault, FaultStore};
    let (sink, _) = stored_chain().await;
    let slow = FaultStore::new(sink.store.clone());
    for nth in 1..=3 {
        slow.arm(Call::Get, nth, Fault::Delay(Duration::from_millis(300)));
    }
    let cancel = CancellationToken::new();
    let mut reader = ChainReader::open(
        Arc::new(slow.clone()),
        sink.layout.clone(),
        generation(),
        Identities::none(),
        trust(),
        &cancel,
    )
    .await
    .unwrap();
    let (_, first) = reader.next_segment(&cancel).await.unwrap().unwrap();
    assert_eq!(first.header.first_revision, 11);
    // The two after it were requested before the first came back, not after.
    assert_eq!(slow.count(Call::Get), 3);
    let mut rest = Vec::new();
    while let Some((_, segment)) = reader.next_segment(&cancel).await.unwrap() {
        rest.push(segment.header.first_revision);
    }
    assert_eq!(rest, [14, 17]);
    assert_eq!(slow.count(Call::Get), 3, "each segment is read once");
}

#[tokio::test]
async fn a_retried_put_meets_its_own_object_and_a_different_one_conflicts() {
    let (sink, segments) = stored_chain().await;
    let cancel = CancellationToken::new();
    sink.put(&segments[1], &cancel).await.unwrap();
    let mut other = segments[1].clone();
    other.revisions[0].observed_unix_ms += 1;
    other.header.first_observed_unix_ms += 1;
    let error = sink.put(&other, &cancel).await.unwrap_err();
    assert!(
        matches!(error, ReplicationError::SegmentConflict { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_missing_segment_breaks_the_chain() {
    let (sink, _) = stored_chain().await;
    let middle = stored_key(&sink, 14, 16);
    sink.store.delete(&middle).await.unwrap();
    let error = read_all(&sink).await.unwrap_err().to_string();
    assert!(error.contains("a missing segment"), "{error}");
    assert!(error.contains("0000000000000000017-"), "{error}");
}

#[tokio::test]
async fn a_segment_from_another_chain_breaks_it() {
    let (sink, segments) = stored_chain().await;
    let cancel = CancellationToken::new();
    let last = stored_key(&sink, 17, 19);
    sink.store.delete(&last).await.unwrap();
    // Same revisions, but linked to a different predecessor (signed by the producer's
    // key: a bug, not an attack, since a store writer cannot sign).
    let forged = sample(17, 3, [1; 32]);
    assert_ne!(forged, segments[2]);
    sink.put(&forged, &cancel).await.unwrap();
    let error = read_all(&sink).await.unwrap_err().to_string();
    assert!(error.contains("previous-segment digest"), "{error}");
}

#[tokio::test]
async fn a_planted_segment_is_refused_unless_signed_by_a_trusted_key() {
    let (sink, segments) = stored_chain().await;
    let cancel = CancellationToken::new();
    let last = stored_key(&sink, 17, 19);
    // A store writer replaces the newest segment with one that links correctly, unsigned
    // and then signed by a key of its own.
    let previous = segments[1].encode_signed(&test_signer(1)).1;
    for (planter, expected) in [
        (None, "is not signed"),
        (Some(test_signer(2)), "not among signing.trusted_keys"),
    ] {
        sink.store.delete(&last).await.unwrap();
        let planting = SegmentStore {
            signer: planter,
            ..sink.clone()
        };
        planting
            .put(&sample(17, 3, previous), &cancel)
            .await
            .unwrap();
        let error = read_all(&sink).await.unwrap_err();
        assert!(
            matches!(&error, ReplicationError::UntrustedSegment { segment, .. } if segment.ends_with("0000000000000000017-0000000000000000019.seg.zst")),
            "{error}"
        );
        assert!(error.to_string().contains(expected), "{error}");
        let tail = read_chain_tail(
            &sink.store,
            &sink.layout,
            &generation(),
            &Identities::none(),
            &trust(),
            &cancel,
        )
        .await;
        assert!(tail.is_err(), "a capture must not continue a planted tail");
    }
    // Rotation: a reader trusting both keys reads the chain; allow_unsigned alone does not
    // make an unknown signer trusted.
    assert_eq!(
        read_all_trusting(&sink, trusting(&[1, 2], false))
            .await
            .unwrap()
            .len(),
        3
    );
    let error = read_all_trusting(&sink, trusting(&[1], true))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not among"), "{error}");
}

#[tokio::test]
async fn unsigned_chains_are_read_only_where_allowed() {
    let (signed, _) = stored_chain().await;
    let sink = SegmentStore {
        store: Arc::new(InMemory::new()),
        signer: None,
        ..signed
    };
    let cancel = CancellationToken::new();
    let mut previous = NO_PREVIOUS_SEGMENT;
    for first in [11, 14] {
        previous = sink
            .put(&sample(first, 3, previous), &cancel)
            .await
            .unwrap()
            .digest;
    }
    let error = read_all(&sink).await.unwrap_err().to_string();
    assert!(
        error.contains("is not signed (signing.allow_unsigned is off)"),
        "{error}"
    );
    assert_eq!(
        read_all_trusting(&sink, trusting(&[], true))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        read_all_trusting(&sink, trusting(&[1], true))
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn a_corrupt_object_is_named() {
    let (sink, _) = stored_chain().await;
    let first = stored_key(&sink, 11, 13);
    let stored = sink.store.get(&first).await.unwrap().bytes().await.unwrap();
    let mut plain = zstd::decode_all(&stored[..]).unwrap();
    let middle = plain.len() / 2;
    plain[middle] ^= 1;
    let altered = zstd::encode_all(&plain[..], 3).unwrap();
    sink.store.put(&first, altered.into()).await.unwrap();
    let error = read_all(&sink).await.unwrap_err().to_string();
    assert!(
        error.contains("0000000000000000011-0000000000000000013.seg.zst` is corrupt"),
        "{error}"
    );
}

#[tokio::test]
async fn encrypted_segments_read_back_only_with_the_identity() {
    let (identity_file, recipient) = etcd_dr_transport::generate_identity();
    let dir = tempfile::tempdir().unwrap();
    let identity_path = dir.path().join("id.txt");
    std::fs::write(&identity_path, identity_file).unwrap();
    let sink = SegmentStore {
        store: Arc::new(InMemory::new()),
        layout: ReplicationLayout::new("dr", "prod").unwrap(),
        recipients: Some(etcd_dr_transport::Recipients::parse(&[recipient]).unwrap()),
        signer: Some(test_signer(1)),
    };
    let cancel = CancellationToken::new();
    let segment = sample(11, 2, NO_PREVIOUS_SEGMENT);
    let stored = sink.put(&segment, &cancel).await.unwrap();
    assert!(stored.key.ends_with(".seg.zst.age"), "{}", stored.key);
    let path = object_store::path::Path::from(stored.key.as_str());
    let identities = Identities::load(&identity_path).unwrap();
    let (read, digest) = read_segment(&sink.store, &path, &identities, &trust(), &cancel)
        .await
        .unwrap();
    assert_eq!((read.revisions, digest), (segment.revisions, stored.digest));
    let error = read_segment(&sink.store, &path, &Identities::none(), &trust(), &cancel)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("no identity is configured"), "{error}");
}
