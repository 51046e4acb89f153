//! Every crate of the workspace forbids unsafe code at its root, so that none creeps in.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_crate_root_forbids_unsafe_code() {
    let mut roots = vec![workspace().join("tests/src/lib.rs")];
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        for root in ["src/lib.rs", "src/main.rs"] {
            if dir.join(root).is_file() {
                roots.push(dir.join(root));
            }
        }
    }
    assert!(roots.len() >= 8, "{roots:?}");
    for root in roots {
        let text = std::fs::read_to_string(&root).unwrap();
        assert!(
            text.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]"),
            "{} does not forbid unsafe code",
            root.display()
        );
    }
}

#[test]
fn every_target_of_every_member_inherits_the_workspace_forbid() {
    let root = std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap();
    assert!(
        root.contains("[workspace.lints.rust]\nunsafe_code = \"forbid\""),
        "the workspace Cargo.toml does not forbid unsafe code"
    );
    let mut manifests = vec![workspace().join("tests/Cargo.toml")];
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        manifests.push(entry.unwrap().path().join("Cargo.toml"));
    }
    for manifest in manifests {
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(
            text.contains("[lints]\nworkspace = true"),
            "{} does not inherit the workspace lints (tests, examples and benches included)",
            manifest.display()
        );
    }
}
