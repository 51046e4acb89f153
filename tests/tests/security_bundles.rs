//! What a store writer who also holds the signing key (or a compromised primary) can still not
//! do on the machine that reads its snapshots: a node bundle with `..`, an absolute symbolic
//! link or a special file is refused by `etcd-dr fetch --node`, naming the entry, with nothing
//! written outside (or left inside) the target; setuid and world-write bits and a 0666 `sa.key`
//! are masked; and a label with terminal escape sequences is listed escaped.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bytes::Bytes;
use etcd_dr_core::{NodeBundle, SnapshotId, SnapshotManifest};
use etcd_dr_e2e::promotion::{local_store, prod_layout};
use etcd_dr_e2e::{sign_with_test_key, EtcdCluster, EtcdDr, EtcdOptions, StoreTarget};
use etcd_dr_transport::{upload_object, Recipients, ShipProgress, UploadOptions};
use tar::EntryType;
use tokio_util::sync::CancellationToken;

/// One tar entry as a hostile producer writes it: the name and link target go into the
/// header's raw fields (the `tar` crate itself refuses to write `..`).
#[derive(Clone, Copy)]
struct Entry<'a> {
    name: &'a str,
    kind: EntryType,
    mode: u32,
    data: &'a [u8],
    link: Option<&'a str>,
}

fn file<'a>(name: &'a str, mode: u32, data: &'a [u8]) -> Entry<'a> {
    Entry {
        name,
        kind: EntryType::Regular,
        mode,
        data,
        link: None,
    }
}

fn dir(name: &str) -> Entry<'_> {
    Entry {
        name,
        kind: EntryType::Directory,
        mode: 0o755,
        data: b"",
        link: None,
    }
}

fn special<'a>(name: &'a str, kind: EntryType, link: Option<&'a str>) -> Entry<'a> {
    Entry {
        name,
        kind,
        mode: 0o644,
        data: b"",
        link,
    }
}

fn tar_of(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let raw = header.as_old_mut();
        raw.name[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
        if let Some(link) = entry.link {
            raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(entry.kind);
        header.set_mode(entry.mode);
        header.set_size(entry.data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        if matches!(entry.kind, EntryType::Char | EntryType::Block) {
            header.set_device_major(1).unwrap();
            header.set_device_minor(3).unwrap();
        }
        header.set_cksum();
        builder.append(&header, entry.data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A real snapshot of a real etcd, encrypted to a fresh identity and signed with the test key.
struct Ground {
    _etcd: EtcdCluster,
    store: tempfile::TempDir,
    scratch: tempfile::TempDir,
    identity: std::path::PathBuf,
    recipient: String,
    id: String,
}

fn ground() -> Ground {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    etcd.put("/registry/secrets/default/real", b"genuine-value");
    let scratch = tempfile::tempdir().unwrap();
    let (identity_text, recipient) = etcd_dr_transport::generate_identity();
    let identity = scratch.path().join("secondary.age");
    std::fs::write(&identity, identity_text).unwrap();
    std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store = tempfile::tempdir().unwrap();
    let primary = EtcdDr::with_sections(
        "prod",
        &etcd.config_section(&etcd.endpoints()),
        &StoreTarget::Local(store.path()),
        &format!("[encryption]\nrecipients = [\"{recipient}\"]\n"),
    );
    let id = primary.snapshot_json(&[])["id"]
        .as_str()
        .unwrap()
        .to_string();
    Ground {
        _etcd: etcd,
        store,
        scratch,
        identity,
        recipient,
        id,
    }
}

impl Ground {
    fn manifest_file(&self) -> std::path::PathBuf {
        self.store
            .path()
            .join(format!("prod/snapshots/{}/manifest.json", self.id))
    }

    fn manifest(&self) -> SnapshotManifest {
        serde_json::from_slice(&std::fs::read(self.manifest_file()).unwrap()).unwrap()
    }

    /// Re-signs `manifest` with the key the readers trust and puts it in place of the real one.
    fn replace_manifest(&self, mut manifest: SnapshotManifest) {
        sign_with_test_key(&mut manifest);
        std::fs::write(
            self.manifest_file(),
            serde_json::to_vec_pretty(&manifest).unwrap(),
        )
        .unwrap();
    }

    /// Stores `tar` as `node`'s bundle of the snapshot (zstd, age to the secondary, as the
    /// primary stores one) and records it in the manifest.
    fn add_bundle(&self, manifest: &mut SnapshotManifest, node: &str, tar: Vec<u8>, entries: u64) {
        let options = UploadOptions {
            encrypt_to: Some(Recipients::parse(&[&self.recipient]).unwrap()),
            ..UploadOptions::default()
        };
        let name = options.stored_name(&format!("nodes/{node}.tar.zst"));
        let id: SnapshotId = self.id.parse().unwrap();
        let location = prod_layout().object_path(&id, &name);
        let store = local_store(self.store.path());
        let chunks = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(tar))]);
        let uploaded = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(upload_object(
                &store,
                &location,
                &name,
                chunks,
                &options,
                &ShipProgress::default(),
                &CancellationToken::new(),
            ))
            .unwrap();
        manifest.nodes.push(NodeBundle::Stored {
            node: node.into(),
            object: uploaded.stored,
            raw: uploaded.raw,
            entries,
            service_account_keys: vec!["etc/kubernetes/pki/sa.key".into()],
        });
    }

    /// The secondary's command line: its identity, the test key trusted.
    fn reader(&self) -> EtcdDr {
        EtcdDr::new(&format!(
            "role = \"secondary\"\ncluster = \"prod\"\n{}\n[encryption]\nidentity_file = \"{}\"\n",
            StoreTarget::Local(self.store.path()).config_section(),
            self.identity.display()
        ))
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn a_hostile_bundle_set_is_refused_by_fetch_and_a_benign_one_unpacks_masked() {
    let ground = ground();
    let scratch = ground.scratch.path();
    let outside = scratch.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let outside_text = outside.display().to_string();
    let planted = format!("{outside_text}/planted");
    // Each hostile bundle starts like a real one (a key it would unpack first), then one entry
    // that must stop it; `(node, entries, the refused entry, why)`.
    let sa_key: &[u8] = b"-----BEGIN PRIVATE KEY-----\nprimary\n-----END PRIVATE KEY-----\n";
    let prelude = || {
        vec![
            dir("etc/kubernetes/pki"),
            file("etc/kubernetes/pki/sa.key", 0o666, sa_key),
        ]
    };
    let hostile: Vec<(&str, Vec<Entry<'_>>, &str, &str)> = vec![
        (
            "cp-dotdot",
            vec![file("../escaped-by-bundle", 0o644, b"out")],
            "../escaped-by-bundle",
            "refused: its name climbs out of the directory with `..`",
        ),
        (
            "cp-symlink",
            vec![
                special(
                    "etc/kubernetes/pki/link",
                    EntryType::Symlink,
                    Some(&outside_text),
                ),
                file(
                    "etc/kubernetes/pki/link/planted",
                    0o644,
                    b"through the link",
                ),
            ],
            "etc/kubernetes/pki/link",
            "which is an absolute path",
        ),
        (
            "cp-fifo",
            vec![special("etc/kubernetes/pki/fifo", EntryType::Fifo, None)],
            "etc/kubernetes/pki/fifo",
            "refused: it is a FIFO",
        ),
        (
            "cp-device",
            vec![special("etc/kubernetes/pki/null", EntryType::Char, None)],
            "etc/kubernetes/pki/null",
            "refused: it is a character device",
        ),
    ];
    let benign = vec![
        dir("etc/kubernetes/pki"),
        file("etc/kubernetes/pki/sa.key", 0o666, sa_key),
        file("etc/kubernetes/pki/ca.crt", 0o666, b"CA\n"),
        dir("usr/local/bin"),
        file("usr/local/bin/helper", 0o4755, b"#!/bin/sh\n"),
    ];
    let mut manifest = ground.manifest();
    for (node, entries, _, _) in &hostile {
        let mut all = prelude();
        all.extend(entries.iter().copied());
        ground.add_bundle(&mut manifest, node, tar_of(&all), all.len() as u64);
    }
    ground.add_bundle(
        &mut manifest,
        "cp-benign",
        tar_of(&benign),
        benign.len() as u64,
    );
    ground.replace_manifest(manifest);

    let reader = ground.reader();
    for (node, _, entry, why) in &hostile {
        let output = scratch.join(format!("out-{node}"));
        let out = reader.run(&[
            "fetch",
            &ground.id,
            "--node",
            node,
            "-o",
            output.to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "{node}: the fetch succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let named = format!("out-{node}.partial/{entry}`");
        assert!(
            stderr.contains(&named) && stderr.contains(why),
            "{node}: expected `{named}` and `{why}` in:\n{stderr}"
        );
        assert!(!output.exists(), "{node}: {} exists", output.display());
        assert!(
            !scratch.join(format!("out-{node}.partial")).exists(),
            "{node}: the partial directory was left behind"
        );
    }
    // Nothing written outside the targets: not beside them, not through the link.
    assert!(!scratch.join("escaped-by-bundle").exists());
    assert!(!Path::new(&planted).exists());
    let mut left: Vec<String> = std::fs::read_dir(scratch)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["outside", "secondary.age"]);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

    // The benign bundle unpacks, masked: no setuid, no world-write, sa.key owner-only.
    let output = scratch.join("out-cp-benign");
    reader.run_ok(&[
        "fetch",
        &ground.id,
        "--node",
        "cp-benign",
        "-o",
        output.to_str().unwrap(),
    ]);
    assert_eq!(mode(&output.join("etc/kubernetes/pki/sa.key")), 0o600);
    assert_eq!(
        std::fs::read(output.join("etc/kubernetes/pki/sa.key")).unwrap(),
        sa_key
    );
    assert_eq!(mode(&output.join("etc/kubernetes/pki/ca.crt")), 0o664);
    assert_eq!(mode(&output.join("usr/local/bin/helper")), 0o755);
}

#[test]
fn a_signed_label_with_escape_sequences_is_listed_escaped() {
    let ground = ground();
    let mut manifest = ground.manifest();
    // Sets the window title, clears the screen, then claims a different snapshot.
    manifest.label = Some("\u{1b}]0;owned\u{7}\u{1b}[2J\u{1b}[Hall good\nforged line".into());
    ground.replace_manifest(manifest);
    let out = ground.reader().run(&["list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.stdout.contains(&0x1b) && !out.stdout.contains(&0x07),
        "a raw control character reached the terminal:\n{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&ground.id), "{stdout}");
    assert!(
        stdout.contains("\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{1b}[Hall good\\u{a}forged line"),
        "{stdout}"
    );
    assert!(
        !stdout.lines().any(|l| l.starts_with("forged line")),
        "{stdout}"
    );
}
