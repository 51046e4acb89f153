use super::*;

fn parse(text: &str) -> Result<Settings, String> {
    let loaded = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| e.to_string())?;
    loaded.try_deserialize().map_err(|e| e.to_string())
}

const MINIMAL: &str = r#"
cluster = "prod"
[etcd]
endpoints = ["http://127.0.0.1:2379"]
[store]
type = "local"
path = "/tmp/etcd-dr-test"
"#;

#[test]
fn a_minimal_file_loads_with_defaults() {
    let settings = parse(MINIMAL).unwrap();
    settings.validate().unwrap();
    assert_eq!(
        settings.schedule.interval,
        Some(std::time::Duration::from_secs(900))
    );
    assert_eq!(settings.upload.options().part_size, 8 * 1024 * 1024);
    assert_eq!(settings.upload.options().zstd_workers, 1);
}

#[test]
fn an_upload_section_without_zstd_workers_keeps_the_one_worker_default() {
    let settings = parse(&format!("{MINIMAL}\n[upload]\nzstd_level = 5\n")).unwrap();
    settings.validate().unwrap();
    let options = settings.upload.options();
    assert_eq!((options.zstd_level, options.zstd_workers), (5, 1));
    let on_thread = parse(&format!("{MINIMAL}\n[upload]\nzstd_workers = 0\n")).unwrap();
    assert_eq!(on_thread.upload.options().zstd_workers, 0);
}

#[test]
fn parts_that_cannot_upload_within_a_request_and_bad_reliability_values_are_refused() {
    let text = format!(
        "{MINIMAL}request_timeout = \"10s\"\n[upload]\npart_size_mib = 64\nproducer_lease_ttl = \"5s\"\nshutdown_grace = \"1h\"\n"
    );
    let problems = parse(&text).unwrap().validate().unwrap_err();
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "upload.shutdown_grace",
            "upload.producer_lease_ttl",
            "upload.part_size_mib"
        ]
    );
    assert!(problems.to_string().contains("store.request_timeout (10s)"));
    let fine = format!("{MINIMAL}request_timeout = \"64s\"\n[upload]\npart_size_mib = 64\n");
    parse(&fine).unwrap().validate().unwrap();
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let error = parse(&format!("{MINIMAL}\n[retention]\nkeep_lats = 3\n")).unwrap_err();
    assert!(error.contains("keep_lats"), "{error}");
}

#[test]
fn every_bad_value_is_reported_at_once() {
    let text = r#"
cluster = "bad/name"
[etcd]
endpoints = ["10.0.0.1:2379"]
[store]
type = "s3"
[upload]
zstd_level = 40
"#;
    let problems = parse(text).unwrap().validate().unwrap_err();
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "cluster",
            "etcd.endpoints[0]",
            "store.bucket",
            "upload.zstd_level"
        ]
    );
    let text = problems.to_string();
    assert!(text.starts_with("4 configuration problem(s):"), "{text}");
}

#[test]
fn a_secondary_needs_no_etcd_section_but_a_primary_does() {
    let secondary = r#"
role = "secondary"
cluster = "prod"
[store]
type = "local"
path = "/tmp/etcd-dr-test"
[secondary]
poll_interval = "10s"
prestage_dir = "/var/lib/etcd-dr/prestage"
"#;
    let settings = parse(secondary).unwrap();
    settings.validate().unwrap();
    assert_eq!(settings.role, Role::Secondary);
    assert_eq!(settings.secondary().poll_interval, Duration::from_secs(10));
    assert!(settings.etcd().is_err());

    let primary = secondary.replace("role = \"secondary\"", "role = \"primary\"");
    let problems = parse(&primary).unwrap().validate().unwrap_err();
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["etcd", "secondary"]);
}

#[test]
fn secondary_and_http_fields_are_validated_by_name() {
    let text = r#"
role = "secondary"
cluster = "prod"
[store]
type = "local"
path = "/tmp/etcd-dr-test"
[http]
token_file = "token"
[secondary]
poll_interval = "0s"
verify = false
prestage_dir = "prestage"
"#;
    let problems = parse(text).unwrap().validate().unwrap_err();
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "secondary.poll_interval",
            "secondary.prestage_dir",
            "secondary.prestage_dir",
            "http.token_file"
        ]
    );
    let error = parse(&format!("{MINIMAL}\n[http]\nlisten_on = \"x\"\n")).unwrap_err();
    assert!(error.contains("listen_on"), "{error}");
    let error = parse(&format!("role = \"tertiary\"\n{MINIMAL}")).unwrap_err();
    assert!(error.contains("tertiary"), "{error}");
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(name)
}

#[test]
fn the_example_configs_load_through_the_real_loader() {
    // The examples name files of a real bastion; stand-ins prove everything else is valid.
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, "stand-in").unwrap();
        path.display().to_string()
    };
    let (ca, cert, key, credentials) = (
        file("ca.crt"),
        file("client.crt"),
        file("client.key"),
        file("aws-credentials"),
    );
    let primary = Settings::load_with_overrides(
        &example("primary.toml"),
        &[
            ("etcd.ca_file", &ca),
            ("etcd.cert_file", &cert),
            ("etcd.key_file", &key),
            ("store.credentials_file", &credentials),
        ],
    )
    .unwrap();
    assert_eq!(primary.role, Role::Primary);
    assert_eq!(primary.etcd().unwrap().endpoints.len(), 3);
    assert_eq!(primary.schedule.interval, Some(Duration::from_secs(900)));
    assert!(primary.http.listen.ip().is_loopback());

    let secondary = Settings::load_with_overrides(
        &example("secondary.toml"),
        &[
            ("store.credentials_file", &credentials),
            ("promote.etcd.ca_file", &ca),
            ("promote.etcd.cert_file", &cert),
            ("promote.etcd.key_file", &key),
        ],
    )
    .unwrap();
    let promote = secondary.promote.as_ref().unwrap();
    assert_eq!(promote.etcd.endpoints.len(), 3);
    assert_eq!(secondary.nodes.control_plane, ["cp1", "cp2", "cp3"]);
    assert_eq!(secondary.role, Role::Secondary);
    assert!(secondary.etcd.is_none());
    assert_eq!(
        secondary.secondary().expected_interval,
        Duration::from_secs(900)
    );
    assert_eq!(
        secondary.secondary().prestage_dir,
        Some(PathBuf::from("/var/lib/etcd-dr/prestage"))
    );
    assert_eq!(secondary.cluster, primary.cluster);
    assert_eq!(secondary.store.bucket, primary.store.bucket);
    assert_eq!(secondary.store.prefix, primary.store.prefix);

    // As shipped, only the files missing on this machine are reported, each by name.
    let error = format!(
        "{:#}",
        Settings::load(&example("primary.toml")).unwrap_err()
    );
    for field in [
        "etcd.ca_file",
        "etcd.cert_file",
        "etcd.key_file",
        "store.credentials_file",
    ] {
        assert!(error.contains(field), "{field} not in {error}");
    }
    assert!(error.contains("4 configuration problem(s)"), "{error}");
}

#[test]
fn every_key_of_the_example_configs_is_commented() {
    for name in ["primary.toml", "secondary.toml"] {
        let text = std::fs::read_to_string(example(name)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            let is_key = line.contains(" = ") && !line.starts_with('#');
            if !is_key {
                continue;
            }
            let previous = lines[..index].last().copied().unwrap_or("");
            let previous_is_key = previous.contains(" = ") && !previous.starts_with('#');
            assert!(
                previous.starts_with('#') || previous_is_key,
                "{name}:{}: `{line}` has no comment above it",
                index + 1
            );
        }
    }
}

#[test]
fn nodes_bundles_and_encryption_are_validated_by_field() {
    let text = format!(
        "{MINIMAL}\n[bundle]\nenabled = true\npaths = [\"etc/kubernetes\"]\n[encryption]\nrecipients = [\"nope\"]\n"
    );
    let problems = parse(&text).unwrap().validate().unwrap_err();
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "bundle.paths[0]",
            "encryption.recipients[0]",
            "bundle.enabled"
        ]
    );
}

#[test]
fn shipping_needs_recipients_once_bundles_are_on() {
    let signed = format!("{MINIMAL}\n[signing]\nkey_file = \"/etc/etcd-dr/signing.key\"\n");
    let plain = parse(&signed).unwrap();
    assert!(!plain.bundles_enabled());
    plain.validate_for_shipping().unwrap();

    let with_nodes = parse(&format!("{signed}\n[nodes]\ncontrol_plane = [\"cp1\"]\n")).unwrap();
    with_nodes.validate().unwrap();
    assert!(with_nodes.bundles_enabled());
    let problems = with_nodes.validate_for_shipping().unwrap_err();
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["encryption.recipients"]);
    assert!(problems
        .to_string()
        .contains("encryption.require_encryption"));
}

#[test]
fn shipping_and_reading_need_signing_unless_explicitly_allowed() {
    let unsigned = parse(MINIMAL).unwrap();
    let fields = |problems: ConfigProblems| -> Vec<String> {
        problems.iter().map(|p| p.field.clone()).collect()
    };
    assert_eq!(
        fields(unsigned.validate_for_shipping().unwrap_err()),
        ["signing.key_file"]
    );
    assert_eq!(
        fields(unsigned.validate_for_reading().unwrap_err()),
        ["signing.trusted_keys"]
    );
    let opted_out = parse(&format!("{MINIMAL}\n[signing]\nallow_unsigned = true\n")).unwrap();
    opted_out.validate_for_shipping().unwrap();
    opted_out.validate_for_reading().unwrap();
}

#[test]
fn an_identity_file_makes_readers_require_encryption() {
    let plain = parse(MINIMAL).unwrap();
    assert!(!plain.requires_encryption_to_read());
    let with_identity = parse(&format!(
        "{MINIMAL}\n[encryption]\nidentity_file = \"/etc/etcd-dr/age.txt\"\n"
    ))
    .unwrap();
    assert!(with_identity.requires_encryption_to_read());
    let opted_out = parse(&format!(
        "{MINIMAL}\n[encryption]\nidentity_file = \"/etc/etcd-dr/age.txt\"\nrequire_encryption = false\n"
    ))
    .unwrap();
    assert!(!opted_out.requires_encryption_to_read());
}

#[test]
fn the_replication_section_is_off_by_default_and_checked_by_field() {
    let settings = parse(MINIMAL).unwrap();
    assert!(!settings.replication.enabled);
    let text = format!(
        "{MINIMAL}\n[replication]\nenabled = true\ncut_interval = \"5m\"\ncut_size_mib = 0\n"
    );
    let problems = parse(&text).unwrap().validate().unwrap_err();
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        ["replication.cut_interval", "replication.cut_size_mib"]
    );
    let error = parse(&format!("{MINIMAL}\n[replication]\ncut_bytes = 5\n")).unwrap_err();
    assert!(error.contains("cut_bytes"), "{error}");
}
