use std::os::unix::fs::PermissionsExt;

use chrono::{TimeZone, Utc};
use etcd_dr_core::{
    Compression, Encryption, EtcdClusterInfo, ObjectDigest, Producer, SnapshotId,
    MANIFEST_FORMAT_VERSION,
};

use super::*;

fn manifest(cluster: &str, encrypted: bool) -> SnapshotManifest {
    let at = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
    SnapshotManifest {
        format_version: MANIFEST_FORMAT_VERSION,
        id: SnapshotId::new(at, 7),
        cluster: cluster.into(),
        label: None,
        etcd: EtcdClusterInfo {
            cluster_id: "abc".into(),
            version: "3.5.16".into(),
            revision: 7,
            raft_index: 9,
            raft_term: 2,
            source_endpoint: "http://127.0.0.1:2379".into(),
            source_member_id: "1".into(),
            members: Vec::new(),
            previous_cluster_id: None,
            replication_generation: None,
            rewound_from_revision: None,
        },
        raw: ObjectDigest {
            size: 10,
            sha256: "aa".repeat(32),
        },
        etcd_sha256: "bb".repeat(32),
        stored: StoredObject {
            name: "etcd.db.zst.age".into(),
            size: 5,
            sha256: "cc".repeat(32),
            compression: Compression::Zstd { level: 3 },
            encryption: encrypted.then(|| Encryption::Age {
                recipients: vec!["age1x".into()],
            }),
        },
        created_at: at,
        completed_at: at,
        duration_seconds: 1.0,
        producer: Producer {
            tool: "t".into(),
            host: "h".into(),
        },
        nodes: Vec::new(),
        signature: None,
        kubernetes: None,
    }
}

fn signer_in(dir: &Path) -> (ManifestSigner, PathBuf) {
    let (file, public) = generate_signing_key();
    let path = dir.join(format!("signing-{}.key", &public[8..14].replace('/', "_")));
    std::fs::write(&path, file).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let signer = ManifestSigner::load(&path, SecretFileModes::Refuse).unwrap();
    assert_eq!(signer.public_key(), public);
    (signer, path)
}

fn trusting(keys: &[&str], allow_unsigned: bool, require_encryption: bool) -> ManifestTrust {
    let config = SigningConfig {
        key_file: None,
        trusted_keys: keys.iter().map(|k| k.to_string()).collect(),
        allow_unsigned,
    };
    ManifestTrust::new("prod", &config, None, require_encryption).unwrap()
}

#[test]
fn a_manifest_signed_by_a_trusted_key_is_accepted_and_every_change_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, _) = signer_in(dir.path());
    let trust = trusting(&[signer.public_key()], false, true);
    let mut signed = manifest("prod", true);
    signer.sign(&mut signed);
    assert_eq!(trust.check(&signed), Ok(()));
    // Through JSON, as a reader gets it.
    let back: SnapshotManifest =
        serde_json::from_str(&serde_json::to_string(&signed).unwrap()).unwrap();
    assert_eq!(trust.check(&back), Ok(()));

    let mut altered = signed.clone();
    altered.stored.sha256 = "dd".repeat(32);
    let reason = trust.check(&altered).unwrap_err();
    assert!(reason.contains("does not match its content"), "{reason}");
}

#[test]
fn unsigned_unknown_signer_other_cluster_and_plain_objects_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (trusted, _) = signer_in(dir.path());
    let (attacker, _) = signer_in(dir.path());
    let trust = trusting(&[trusted.public_key()], false, true);

    let unsigned = manifest("prod", true);
    let reason = trust.check(&unsigned).unwrap_err();
    assert!(reason.contains("not signed"), "{reason}");

    let mut forged = manifest("prod", true);
    attacker.sign(&mut forged);
    let reason = trust.check(&forged).unwrap_err();
    assert!(
        reason.contains("not among signing.trusted_keys"),
        "{reason}"
    );
    assert!(reason.contains(attacker.public_key()), "{reason}");

    // Signed by the right key (one key for two clusters) but of another cluster, and plain.
    let mut downgraded = manifest("staging\u{1b}[2J", false);
    trusted.sign(&mut downgraded);
    let reason = trust.check(&downgraded).unwrap_err();
    assert!(reason.contains("belongs to cluster"), "{reason}");
    assert!(
        !reason.contains('\u{1b}'),
        "control characters escaped: {reason}"
    );
    assert!(
        reason.contains("etcd.db.zst.age is not encrypted"),
        "{reason}"
    );
}

#[test]
fn rotation_trusts_every_listed_key_and_the_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let (old, _) = signer_in(dir.path());
    let (new, _) = signer_in(dir.path());
    let trust = trusting(&[old.public_key(), new.public_key()], false, false);
    for signer in [&old, &new] {
        let mut m = manifest("prod", false);
        signer.sign(&mut m);
        assert_eq!(trust.check(&m), Ok(()));
    }
    let own = ManifestTrust::new("prod", &SigningConfig::default(), Some(&new), false).unwrap();
    let mut m = manifest("prod", false);
    new.sign(&mut m);
    assert_eq!(own.check(&m), Ok(()));
    let mut other = manifest("prod", false);
    old.sign(&mut other);
    assert!(own.check(&other).is_err());
}

#[test]
fn allow_unsigned_accepts_unsigned_manifests_only() {
    let dir = tempfile::tempdir().unwrap();
    let (trusted, _) = signer_in(dir.path());
    let (attacker, _) = signer_in(dir.path());
    let open = trusting(&[trusted.public_key()], true, false);
    assert_eq!(open.check(&manifest("prod", false)), Ok(()));
    let mut forged = manifest("prod", false);
    attacker.sign(&mut forged);
    assert!(
        open.check(&forged).is_err(),
        "a known key list still refuses strangers"
    );
    assert!(open.check(&manifest("other", false)).is_err());
    // Without any key, a signature cannot be checked: it counts as unsigned.
    let keyless = trusting(&[], true, false);
    assert_eq!(keyless.check(&forged), Ok(()));
    assert!(ManifestTrust::refuse_all()
        .check(&manifest("", true))
        .is_err());
}

#[test]
fn key_files_are_private_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = signer_in(dir.path());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = ManifestSigner::load(&path, SecretFileModes::Refuse)
        .unwrap_err()
        .to_string();
    assert!(error.contains("mode 0644"), "{error}");
    assert!(ManifestSigner::load(&path, SecretFileModes::Warn).is_ok());

    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "ETCD-DR-SIGNING-KEY-ED25519:c2VjcmV0c2VjcmV0\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let error = ManifestSigner::load(&bad, SecretFileModes::Refuse)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("not an etcd-dr Ed25519 signing key"),
        "{error}"
    );
    assert!(!error.contains("c2VjcmV0"), "{error}");
    let signer = format!("{:?}", ManifestSigner::from_seed([7; 32]));
    assert!(!signer.contains("ETCD-DR-SIGNING-KEY"), "{signer}");
}

#[test]
fn config_problems_name_the_settings_without_echoing_secrets() {
    let (file, public) = generate_signing_key();
    let secret = file.lines().last().unwrap().to_string();
    let config = SigningConfig {
        key_file: Some("relative.key".into()),
        trusted_keys: vec![public, secret.clone(), "ed25519:short".into()],
        allow_unsigned: false,
    };
    let mut problems = ConfigProblems::default();
    config.validate("signing", &mut problems);
    let text = problems.to_string();
    let fields: Vec<_> = problems.iter().map(|p| p.field.clone()).collect();
    assert_eq!(
        fields,
        [
            "signing.trusted_keys[1]",
            "signing.trusted_keys[2]",
            "signing.key_file"
        ]
    );
    assert!(!text.contains(&secret[30..]), "{text}");

    let mut problems = ConfigProblems::default();
    SigningConfig::default().validate("signing", &mut problems);
    assert!(problems.is_empty());
    SigningConfig::default().validate_for_reading("signing", &mut problems);
    assert!(problems
        .to_string()
        .contains("signing.allow_unsigned = true"));
    let mut problems = ConfigProblems::default();
    SigningConfig::default().validate_for_shipping("signing", &mut problems);
    assert!(problems.to_string().contains("keygen --signing"));
}
