use std::os::unix::fs::{MetadataExt, PermissionsExt};

use tar::{EntryType, Header};

use std::io::Write;

use super::*;

/// One entry of a hand-made tar: the header is written as is, so names and types the `tar`
/// crate's builder would refuse (`..`, absolute paths, devices) can be made.
struct Raw<'a> {
    name: &'a str,
    kind: EntryType,
    mode: u32,
    link: Option<&'a str>,
    data: &'a [u8],
    uid: u64,
}

fn raw(name: &str, kind: EntryType, mode: u32) -> Raw<'_> {
    Raw {
        name,
        kind,
        mode,
        link: None,
        data: b"",
        uid: 0,
    }
}

fn tar_of(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = Header::new_gnu();
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
        if let Some(link) = entry.link {
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(entry.kind);
        header.set_mode(entry.mode);
        header.set_size(entry.data.len() as u64);
        header.set_uid(entry.uid);
        header.set_gid(entry.uid);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append(&header, entry.data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn unpack(tar: &[u8], dir: &Path) -> Result<TarSummary, NodeError> {
    unpack_bundle("cp1", tar, dir, UnpackOptions::default())
}

#[test]
fn modes_are_masked_and_private_keys_stay_private() {
    let root = tempfile::tempdir().unwrap();
    let tar = tar_of(&[
        raw("etc/", EntryType::Directory, 0o1777),
        raw("etc/kubernetes/", EntryType::Directory, 0o755),
        Raw {
            data: b"#!/bin/sh\n",
            ..raw("etc/kubernetes/tool", EntryType::Regular, 0o6777)
        },
        Raw {
            data: b"PRIVATE",
            ..raw("etc/kubernetes/pki/sa.key", EntryType::Regular, 0o666)
        },
        Raw {
            data: b"PUBLIC",
            ..raw("etc/kubernetes/pki/sa.pub", EntryType::Regular, 0o644)
        },
        Raw {
            data: b"KEY",
            ..raw(
                "etc/kubernetes/pki/apiserver.key",
                EntryType::Regular,
                0o640,
            )
        },
        Raw {
            link: Some("pki/sa.pub"),
            ..raw("etc/kubernetes/sa.pub.link", EntryType::Symlink, 0o777)
        },
    ]);
    let out = root.path().join("out");
    let summary = unpack(&tar, &out).unwrap();
    assert!(summary.complete);
    assert_eq!(mode(&out), 0o700, "the unpack directory is private");
    let at = |p: &str| out.join(p);
    assert_eq!(mode(&at("etc")), 0o775, "sticky and world-write dropped");
    assert_eq!(
        mode(&at("etc/kubernetes/tool")),
        0o775,
        "setuid, setgid, world-write dropped"
    );
    assert_eq!(mode(&at("etc/kubernetes/pki/sa.key")), 0o600);
    assert_eq!(mode(&at("etc/kubernetes/pki/apiserver.key")), 0o600);
    assert_eq!(mode(&at("etc/kubernetes/pki/sa.pub")), 0o644);
    assert_eq!(
        std::fs::read_to_string(at("etc/kubernetes/sa.pub.link")).unwrap(),
        "PUBLIC"
    );
}

#[test]
fn hostile_entries_are_refused_by_name() {
    let cases: Vec<(Vec<Raw<'_>>, &str)> = vec![
        (
            vec![Raw {
                data: b"x",
                ..raw("../escaped", EntryType::Regular, 0o644)
            }],
            "..",
        ),
        (
            vec![Raw {
                data: b"x",
                ..raw("a/../../escaped", EntryType::Regular, 0o644)
            }],
            "..",
        ),
        (
            vec![Raw {
                data: b"x",
                ..raw("/tmp/etcd-dr-absolute", EntryType::Regular, 0o644)
            }],
            "absolute",
        ),
        (
            vec![Raw {
                link: Some("/etc/shadow"),
                ..raw("shadow", EntryType::Symlink, 0o777)
            }],
            "symbolic link to `/etc/shadow`",
        ),
        (
            vec![Raw {
                link: Some("../../etc"),
                ..raw("a/up", EntryType::Symlink, 0o777)
            }],
            "climbs out",
        ),
        (
            vec![Raw {
                link: Some("../outside"),
                ..raw("hard", EntryType::Link, 0o644)
            }],
            "hard link",
        ),
        (
            vec![raw("dev/sda", EntryType::Block, 0o660)],
            "block device",
        ),
        (
            vec![raw("dev/tty", EntryType::Char, 0o666)],
            "character device",
        ),
        (vec![raw("pipe", EntryType::Fifo, 0o644)], "FIFO"),
        (
            vec![
                Raw {
                    link: Some("."),
                    ..raw("a/b/c", EntryType::Symlink, 0o777)
                },
                Raw {
                    data: b"x",
                    ..raw("a/b/c/file", EntryType::Regular, 0o644)
                },
            ],
            "under the symbolic link",
        ),
    ];
    for (entries, expected) in cases {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        let error = unpack(&tar_of(&entries), &out).unwrap_err().to_string();
        assert!(error.contains(expected), "{expected}: {error}");
        assert!(error.contains("cp1"), "{error}");
        assert!(!root.path().join("escaped").exists());
        assert!(!Path::new("/tmp/etcd-dr-absolute").exists());
    }
}

#[test]
fn control_characters_in_names_are_escaped_in_errors() {
    let root = tempfile::tempdir().unwrap();
    let tar = tar_of(&[raw("dev/\u{1b}[2Jtty", EntryType::Char, 0o666)]);
    let error = unpack(&tar, &root.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(!error.contains('\u{1b}'), "{error:?}");
    assert!(error.contains("\\u{1b}"), "{error}");
}

#[test]
fn owners_are_restored_only_when_asked() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: owners can only be given away by root");
        return;
    }
    let tar = tar_of(&[Raw {
        data: b"x",
        uid: 4321,
        ..raw("owned", EntryType::Regular, 0o644)
    }]);
    let root = tempfile::tempdir().unwrap();
    let plain = root.path().join("plain");
    unpack(&tar, &plain).unwrap();
    assert_eq!(std::fs::metadata(plain.join("owned")).unwrap().uid(), 0);
    let kept = root.path().join("kept");
    unpack_bundle("cp1", &tar[..], &kept, UnpackOptions { keep_owners: true }).unwrap();
    assert_eq!(std::fs::metadata(kept.join("owned")).unwrap().uid(), 4321);
}

/// A tar of `files` (path, content), as a node's `tar` would stream it.
fn tar_of_files(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o600);
        header.set_uid(u64::from(nix::unistd::geteuid().as_raw()));
        header.set_gid(u64::from(nix::unistd::getegid().as_raw()));
        header.set_mtime(1_790_000_000);
        header.set_cksum();
        builder
            .append_data(&mut header, path, content.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

#[tokio::test]
async fn bytes_written_into_the_sink_are_unpacked() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let tar = tar_of_files(&[
        ("etc/kubernetes/pki/sa.key", "PRIVATE"),
        ("etc/kubernetes/admin.conf", "admin"),
    ]);
    let (mut sink, unpack) = unpack_bundle_from_sink("cp1", &out, UnpackOptions::default());
    for piece in tar.chunks(700) {
        sink.write_all(piece).unwrap();
    }
    drop(sink);
    let summary = unpack.finish().await.unwrap();
    assert!(summary.complete);
    assert_eq!(summary.entries, 2);
    assert_eq!(summary.service_account_keys, ["etc/kubernetes/pki/sa.key"]);
    assert_eq!(
        std::fs::read_to_string(out.join("etc/kubernetes/admin.conf")).unwrap(),
        "admin"
    );
}

#[tokio::test]
async fn an_unpacker_that_fails_stops_the_writer() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("exists");
    std::fs::create_dir(&out).unwrap();
    let tar = tar_of_files(&[("a", "x")]);
    let (mut sink, unpack) = unpack_bundle_from_sink("cp1", &out, UnpackOptions::default());
    let error = unpack.finish().await.unwrap_err();
    assert!(matches!(error, NodeError::Unpack { .. }), "{error}");
    assert!(sink.write_all(&tar).is_err());
}
