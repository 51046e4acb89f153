use super::*;
use crate::read_keyspace;

fn revision_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut key = main.to_be_bytes().to_vec();
    key.push(b'_');
    key.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        key.push(b't');
    }
    key
}

fn put(key: &str, value: &str, revision: i64, created: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.as_bytes().to_vec(),
        create_revision: created,
        mod_revision: revision,
        version,
        value: value.as_bytes().to_vec(),
        lease: 0,
    }
}

/// A base as etcd leaves it: `a` put at 2, `b` at 3 with lease 7, `a` deleted at 4;
/// `meta` says compacted at `compacted`.
fn base(dir: &Path, compacted: Option<i64>) -> PathBuf {
    let path = dir.join("base.db");
    let mut out = BoltWriter::create(&path, 4096).unwrap();
    let mut buckets = Vec::new();
    let empty: [(&[u8], &[u8]); 0] = [];
    buckets.push((b"alarm".to_vec(), out.write_bucket(0, empty).unwrap()));
    let mut b = put("b", "2", 3, 3, 1);
    b.lease = 7;
    let entries = [
        (
            revision_key(2, 0, false),
            put("a", "1", 2, 2, 1).encode_to_vec(),
        ),
        (revision_key(3, 0, false), b.encode_to_vec()),
        (
            revision_key(4, 0, true),
            KeyValue {
                key: b"a".to_vec(),
                ..KeyValue::default()
            }
            .encode_to_vec(),
        ),
    ];
    let header = out
        .write_bucket(0, entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
        .unwrap();
    buckets.push((b"key".to_vec(), header));
    let lease = Lease {
        id: 7,
        ttl: 30,
        remaining_ttl: 0,
    }
    .encode_to_vec();
    let header = out
        .write_bucket(0, [(&7i64.to_be_bytes()[..], lease.as_slice())])
        .unwrap();
    buckets.push((b"lease".to_vec(), header));
    let compact = compacted.map(|c| revision_key(c, 0, false));
    let meta: Vec<(&[u8], &[u8])> = compact
        .iter()
        .map(|c| (FINISHED_COMPACT, c.as_slice()))
        .collect();
    buckets.push((b"meta".to_vec(), out.write_bucket(0, meta).unwrap()));
    out.finish(&buckets, 0).unwrap();
    path
}

fn leases(path: &Path) -> Vec<Lease> {
    let file = BoltFile::open(path).unwrap();
    let mut leases = Vec::new();
    file.for_each_flat(LEASE_BUCKET, |_, value| {
        leases.push(Lease::decode(value).unwrap());
        Ok(())
    })
    .unwrap();
    leases
}

#[test]
fn appended_revisions_follow_the_base_and_the_file_ends_with_its_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path(), None);
    let output = dir.path().join("out.db");
    let mut extension = BackendExtension::start(&base, &output).unwrap();
    assert_eq!(extension.base_revision(), 4);
    assert!(extension.base_has_lease(7));
    let mut c = put("c", "3", 5, 5, 1);
    c.lease = 9;
    extension.append(5, 0, Change::Put, &c).unwrap();
    extension
        .append(5, 1, Change::Put, &put("d", "4", 5, 5, 1))
        .unwrap();
    extension
        .append(6, 0, Change::Delete, &put("b", "", 6, 0, 0))
        .unwrap();
    let written = extension.finish([(9, 60), (7, 99)]).unwrap();
    assert_eq!(written.revision, 6);
    assert_eq!(written.appended_revisions, 2);
    assert_eq!(written.leases_added, 1);

    let bytes = std::fs::read(&output).unwrap();
    assert_eq!(written.bytes, bytes.len() as u64);
    assert_eq!(bytes.len() % 512, 32, "the trailer etcdutl looks for");
    let (db, trailer) = bytes.split_at(bytes.len() - 32);
    assert_eq!(Sha256::digest(db).as_slice(), trailer);

    let keyspace = read_keyspace(&output, |_| true).unwrap();
    assert_eq!(keyspace.revision, 6);
    assert_eq!(keyspace.revisions_stored, 6);
    let keys: Vec<&[u8]> = keyspace.keys.keys().map(Vec::as_slice).collect();
    assert_eq!(keys, [&b"c"[..], b"d"]);
    // The base's lease keeps its TTL; the new one gets the recorded one.
    let leases = leases(&output);
    assert_eq!(
        leases.iter().map(|l| (l.id, l.ttl)).collect::<Vec<_>>(),
        [(7, 30), (9, 60)]
    );
    // A deletion stores only its key, under a `t`-marked revision.
    let file = BoltFile::open(&output).unwrap();
    let mut tombstone = None;
    file.for_each_flat(KEY_BUCKET, |key, value| {
        if key == revision_key(6, 0, true) {
            tombstone = Some(KeyValue::decode(value).unwrap());
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(
        tombstone,
        Some(KeyValue {
            key: b"b".to_vec(),
            ..KeyValue::default()
        })
    );
}

#[test]
fn out_of_order_changes_are_refused_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path(), None);
    let output = dir.path().join("out.db");
    let cases = [
        (
            (4, 0),
            put("x", "", 4, 4, 1),
            "at or below the base's revision 4",
        ),
        (
            (6, 0),
            put("x", "", 6, 6, 1),
            "revisions must follow each other",
        ),
        (
            (5, 1),
            put("x", "", 5, 5, 1),
            "revisions must follow each other",
        ),
        ((5, 0), put("x", "", 9, 5, 1), "records mod_revision 9"),
        (
            (5, 0),
            put("x", "", 5, 3, 1),
            "version 1 created at revision 3",
        ),
        (
            (5, 0),
            put("x", "", 5, 5, 2),
            "version 2 created at revision 5",
        ),
        ((5, 0), put("x", "", 5, 7, 2), "created at revision 7"),
        ((5, 0), put("x", "", 5, 2, 0), "version 0"),
    ];
    for ((revision, sub), kv, expected) in cases {
        let mut extension = BackendExtension::start(&base, &output).unwrap();
        let error = extension
            .append(revision, sub, Change::Put, &kv)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error}");
        drop(extension);
        assert!(!output.exists(), "an unfinished extension leaves nothing");
    }
}

#[test]
fn a_compaction_above_the_newest_change_is_the_base_revision() {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path(), Some(8));
    let output = dir.path().join("out.db");
    let mut extension = BackendExtension::start(&base, &output).unwrap();
    assert_eq!(extension.base_revision(), 8);
    assert!(extension
        .append(5, 0, Change::Put, &put("x", "", 5, 5, 1))
        .is_err());
    extension
        .append(9, 0, Change::Put, &put("x", "", 9, 9, 1))
        .unwrap();
    assert_eq!(extension.finish([]).unwrap().revision, 9);
}

#[test]
fn an_existing_output_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path(), None);
    let output = dir.path().join("out.db");
    std::fs::write(&output, b"keep").unwrap();
    assert!(BackendExtension::start(&base, &output).is_err());
    assert_eq!(std::fs::read(&output).unwrap(), b"keep");
}
