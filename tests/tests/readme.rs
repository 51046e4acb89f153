//! The README's first command, `scripts/demo.sh`, works as documented (with this build's binary):
//! both daemons run and report, the lag metric is exported, a snapshot is taken through the
//! API, a restore is planned, and `--stop` leaves nothing running.

use etcd_dr_e2e::tools::{etcd_dr_bin, workspace_root};

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

#[test]
fn the_demo_runs_both_daemons_reports_lag_takes_a_snapshot_and_plans_a_restore() {
    let demo = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(workspace_root().join("scripts/demo.sh"))
        .arg("--stop")
        .env("TESTGROUND_ETCD_DR_BIN", etcd_dr_bin())
        .env("DEMO_DIR", demo.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let logs = || {
        ["primary.log", "secondary.log"]
            .iter()
            .map(|log| std::fs::read_to_string(demo.path().join(log)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        output.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        logs()
    );

    // Both daemons answered /v1/status with their role, and the secondary verified and
    // pre-staged a snapshot.
    assert!(
        stdout.contains("role            primary (cluster demo)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("role            secondary (cluster demo)"),
        "{stdout}"
    );
    assert!(stdout.contains("reachable True"), "{stdout}");
    let prestaged = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("verified "))
        .unwrap_or_else(|| panic!("no secondary verification line:\n{stdout}"));
    assert!(!prestaged.contains("pre-staged none"), "{prestaged}");

    // The lag metric: one sample, a small number of seconds.
    let lag: Vec<f64> = stdout
        .lines()
        .filter(|l| l.starts_with("etcd_dr_replication_lag_seconds"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(lag.len(), 1, "{stdout}");
    assert!((0.0..120.0).contains(&lag[0]), "lag {}", lag[0]);

    // The snapshot asked for with the token was accepted and committed.
    let accepted = stdout
        .lines()
        .skip_while(|l| !l.contains("/v1/snapshots"))
        .nth(1)
        .unwrap_or_else(|| panic!("no POST answer:\n{stdout}"));
    let accepted: serde_json::Value = serde_json::from_str(accepted).unwrap();
    let id = accepted["id"].as_str().expect("an id").to_string();
    let manifests: Vec<_> = std::fs::read_dir(demo.path().join("store/demo/snapshots"))
        .unwrap()
        .map(|entry| entry.unwrap().path().join("manifest.json"))
        .filter(|manifest| manifest.is_file())
        .collect();
    assert!(
        manifests.len() >= 2,
        "the scheduled and the requested one: {manifests:?}"
    );
    assert!(stdout.contains(&id), "`list` shows {id}:\n{stdout}");

    // The in-place restore was planned, not run.
    assert!(stdout.contains("plan (nothing was changed):"), "{stdout}");
    assert!(stdout.contains("restore with"), "{stdout}");

    // --stop ended everything the demo started.
    let left = processes_mentioning(&demo.path().display().to_string());
    assert!(left.is_empty(), "still running: {left:?}");
}
