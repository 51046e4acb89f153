use super::*;

#[test]
fn printed_endpoints_never_carry_credentials() {
    assert_eq!(
        without_userinfo("https://key:secret@s3.example:9000/path?x=1"),
        "https://s3.example:9000/path?x=1"
    );
    assert_eq!(
        without_userinfo("http://127.0.0.1:9000"),
        "http://127.0.0.1:9000"
    );
    assert_eq!(without_userinfo("no-scheme@host"), "no-scheme@host");
    let mut config = StoreConfig::local("/tmp/x");
    config.kind = StoreKind::S3;
    config.bucket = Some("b".into());
    config.endpoint = Some("https://user:hunter2@s3.example".into());
    assert!(
        !config.describe().contains("hunter2"),
        "{}",
        config.describe()
    );
}

#[test]
fn builds_the_oci_compat_endpoint() {
    assert_eq!(
        oci_s3_endpoint("axaxnpcrorw5", "eu-frankfurt-1"),
        "https://axaxnpcrorw5.compat.objectstorage.eu-frankfurt-1.oraclecloud.com"
    );
}

#[test]
fn parses_a_profile_of_a_credentials_file() {
    let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[oci]\n# customer secret key\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=E\n";
    let oci = parse_credentials(text, "oci").unwrap();
    assert_eq!(
        (oci.access_key_id.as_str(), oci.secret_access_key.as_str()),
        ("C", "D")
    );
    assert_eq!(oci.session_token.as_deref(), Some("E"));
    assert!(parse_credentials(text, "missing").is_none());
}

#[test]
fn validation_reports_every_missing_field_for_oci() {
    let mut config = StoreConfig::local("/tmp/x");
    config.kind = StoreKind::Oci;
    let mut problems = ConfigProblems::default();
    config.validate("store", &mut problems);
    let fields: Vec<_> = problems.iter().map(|p| p.field.clone()).collect();
    assert_eq!(
        fields,
        [
            "store.bucket",
            "store.namespace",
            "store.region",
            "store.path"
        ]
    );
}

#[test]
fn oci_settings_build_a_client() {
    let mut config = StoreConfig::local("/unused");
    config.kind = StoreKind::Oci;
    config.path = None;
    config.bucket = Some("etcd-dr".into());
    config.namespace = Some("ns".into());
    config.region = Some("eu-frankfurt-1".into());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        "[default]\naws_access_key_id=a\naws_secret_access_key=b\n",
    )
    .unwrap();
    config.credentials_file = Some(file);
    let store = config.build().unwrap();
    assert!(store.to_string().contains("etcd-dr"), "{store}");
}
