//! The README's first command, `scripts/demo.sh`, works as documented (with this build's binary).

use etcd_dr_e2e::tools::{etcd_dr_bin, workspace_root};

#[test]
fn the_demo_script_takes_lists_and_verifies_a_snapshot() {
    let demo = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(workspace_root().join("scripts/demo.sh"))
        .env("TESTGROUND_ETCD_DR_BIN", etcd_dr_bin())
        .env("DEMO_DIR", demo.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("== etcd-dr list") && stdout.contains("demo"),
        "{stdout}"
    );
    assert!(stdout.contains("OK:"), "{stdout}");
    let manifests: Vec<_> = std::fs::read_dir(demo.path().join("store/demo/snapshots"))
        .unwrap()
        .map(|entry| entry.unwrap().path().join("manifest.json"))
        .collect();
    assert_eq!(manifests.len(), 1);
    assert!(manifests[0].is_file());
}
