//! The files in `deploy/` checked by the tools that consume them: systemd-analyze for the unit,
//! promtool for the alert rules (and their unit tests), and the daemon's own metrics registry for
//! every query of the Grafana dashboard and the rules.
//!
//! Needs the test ground's tools (`. .tools/env.sh`): TESTGROUND_PROMTOOL,
//! TESTGROUND_SYSTEMD_ANALYZE.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use etcd_dr_control::{Metrics, Role};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

fn tool(variable: &str) -> PathBuf {
    let path = std::env::var_os(variable).unwrap_or_else(|| {
        panic!(
            "{variable} is not set: source .tools/env.sh (scripts/install-test-deps.sh writes it)"
        )
    });
    PathBuf::from(path)
}

/// Runs a tool; returns (success, stdout + stderr).
fn run(command: &mut Command) -> (bool, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Every metric family the daemon exports.
fn exported() -> BTreeSet<String> {
    Metrics::new(Role::Primary)
        .unwrap()
        .family_names()
        .into_iter()
        .collect()
}

/// The `etcd_dr_…` names in a PromQL expression, histogram series mapped to their family.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(start) = rest.find("etcd_dr_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| *base == "etcd_dr_snapshot_duration_seconds")
            .unwrap_or(name);
        names.insert(family.to_string());
        rest = &tail[end..];
    }
    names
}

/// Every query string of a Grafana dashboard: panel targets and template variables.
fn dashboard_queries(value: &serde_json::Value, queries: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "definition", serde_json::Value::String(text)) => {
                        queries.push(text.clone())
                    }
                    ("query", serde_json::Value::String(text)) if text.contains('(') => {
                        queries.push(text.clone())
                    }
                    _ => dashboard_queries(value, queries),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                dashboard_queries(item, queries);
            }
        }
        _ => {}
    }
}

#[test]
fn every_dashboard_query_names_metrics_the_daemon_exports() {
    let text = std::fs::read_to_string(deploy("grafana/etcd-dr.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 10, "only {} queries found", queries.len());
    let exported = exported();
    let mut used = BTreeSet::new();
    for query in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "query names no etcd-dr metric: {query}");
        for name in names {
            assert!(
                exported.contains(&name),
                "`{name}` in `{query}` is not exported; exported: {exported:?}"
            );
            used.insert(name);
        }
    }
    // What operators look at first (the list): lag, last success, durations, sizes,
    // failures.
    for needed in [
        "etcd_dr_replication_lag_seconds",
        "etcd_dr_last_success_timestamp_seconds",
        "etcd_dr_snapshot_duration_seconds",
        "etcd_dr_snapshot_size_bytes",
        "etcd_dr_snapshots_total",
        "etcd_dr_verify_failures_total",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
}

#[test]
fn the_metric_name_scanner_finds_names_and_histogram_families() {
    assert_eq!(
        metric_names(
            "rate(etcd_dr_snapshot_duration_seconds_bucket{a=\"b\"}[5m]) / etcd_dr_x_total"
        ),
        ["etcd_dr_snapshot_duration_seconds", "etcd_dr_x_total"]
            .map(String::from)
            .into()
    );
    assert!(metric_names("time() - up").is_empty());
}

#[test]
fn every_alert_rule_names_metrics_the_daemon_exports() {
    let text = std::fs::read_to_string(deploy("prometheus/etcd-dr.rules.yml")).unwrap();
    let exported = exported();
    let mut expressions = 0;
    let mut in_expr = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(expr) = trimmed.strip_prefix("expr:") {
            expressions += 1;
            in_expr = expr.trim() == "|";
            for name in metric_names(expr) {
                assert!(
                    exported.contains(&name),
                    "`{name}` in rules is not exported"
                );
            }
        } else if in_expr && line.starts_with("          ") {
            for name in metric_names(trimmed) {
                assert!(
                    exported.contains(&name),
                    "`{name}` in rules is not exported"
                );
            }
        } else {
            in_expr = false;
        }
    }
    assert_eq!(expressions, 15);
    for alert in [
        "EtcdDrSnapshotRefused",
        "EtcdDrUnsignedAllowed",
        "EtcdDrReplicationLagHigh",
        "EtcdDrSnapshotFailures",
        "EtcdDrNothingStored",
        "EtcdDrUnreadableManifest",
        "EtcdDrClockSkew",
        "EtcdDrVerifyFailures",
        "EtcdDrPromotionFailed",
        "EtcdDrFenced",
        "EtcdDrContinuousReplicationLagHigh",
        "EtcdDrReplicationGenerationBreak",
    ] {
        assert!(
            text.contains(&format!("alert: {alert}\n")),
            "{alert} missing"
        );
    }
}

#[test]
fn promtool_accepts_the_rules_and_the_scrape_config() {
    let promtool = tool("TESTGROUND_PROMTOOL");
    let (ok, output) = run(Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(deploy("prometheus/etcd-dr.rules.yml")));
    assert!(ok, "promtool check rules:\n{output}");
    assert!(output.contains("SUCCESS: 15 rules found"), "{output}");
    let (ok, output) = run(Command::new(&promtool)
        .arg("check")
        .arg("config")
        .arg(deploy("prometheus/scrape.yml")));
    assert!(ok, "promtool check config:\n{output}");
}

#[test]
fn promtool_unit_tests_of_the_lag_alert_pass_and_would_catch_a_wrong_threshold() {
    let promtool = tool("TESTGROUND_PROMTOOL");
    let (ok, output) = run(Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg(deploy("prometheus/etcd-dr.rules.test.yml")));
    assert!(ok, "promtool test rules:\n{output}");
    assert!(output.contains("SUCCESS"), "{output}");

    // The same tests against rules whose lag threshold is 3x the interval must fail: they pin
    // the 2x threshold, not just the syntax.
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(deploy("prometheus/etcd-dr.rules.yml")).unwrap();
    let loosened = rules.replace(
        "> 2 * etcd_dr_snapshot_interval_seconds",
        "> 3 * etcd_dr_snapshot_interval_seconds",
    );
    assert_ne!(
        loosened, rules,
        "the lag rule's threshold is not where expected"
    );
    std::fs::write(dir.path().join("etcd-dr.rules.yml"), loosened).unwrap();
    std::fs::copy(
        deploy("prometheus/etcd-dr.rules.test.yml"),
        dir.path().join("etcd-dr.rules.test.yml"),
    )
    .unwrap();
    let (ok, output) = run(Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg(dir.path().join("etcd-dr.rules.test.yml")));
    assert!(!ok, "the tests pass with a wrong threshold:\n{output}");
    assert!(output.contains("EtcdDrReplicationLagHigh"), "{output}");
}

/// The unit with its ExecStart pointing at the binary this test built, so that
/// systemd-analyze checks a real executable.
fn unit_with_real_binary(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let unit = std::fs::read_to_string(deploy("systemd/etcd-dr.service")).unwrap();
    let binary = env!("CARGO_BIN_EXE_etcd-dr");
    let unit = edit(unit.replace("/usr/bin/etcd-dr", binary));
    let path = dir.join("etcd-dr.service");
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn systemd_analyze_verifies_the_unit_without_a_single_complaint() {
    let analyze = tool("TESTGROUND_SYSTEMD_ANALYZE");
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_real_binary(dir.path(), |u| u);
    let (ok, output) = run(Command::new(&analyze).arg("verify").arg(&unit));
    assert!(ok, "systemd-analyze verify:\n{output}");
    assert!(
        output.trim().is_empty(),
        "systemd-analyze verify complained:\n{output}"
    );

    // systemd-analyze exits 0 on unknown keys and bad values, so the check above reads its
    // output; a broken copy shows that it does complain.
    let broken = unit_with_real_binary(dir.path(), |u| {
        u.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
            .replace("ProtectSystem=strict", "ProtectSystem=strickt")
    });
    let (_, output) = run(Command::new(&analyze).arg("verify").arg(&broken));
    assert!(output.contains("NoNewPrivilege"), "{output}");
    assert!(output.contains("strickt"), "{output}");
}

/// The overall exposure `systemd-analyze security` prints for `unit`.
fn exposure(analyze: &Path, unit: &Path) -> (f64, String) {
    let (_, output) = run(Command::new(analyze)
        .arg("security")
        .arg("--offline=true")
        .arg("--no-pager")
        .arg(unit));
    let level = output
        .lines()
        .find_map(|line| line.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{output}"));
    (level, output)
}

#[test]
fn systemd_analyze_security_rates_the_unit_at_most_1_5() {
    let analyze = tool("TESTGROUND_SYSTEMD_ANALYZE");
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_real_binary(dir.path(), |u| u);
    let (level, output) = exposure(&analyze, &unit);
    assert!(level <= 1.5, "exposure {level} above 1.5:\n{output}");

    // The rating reads the unit: without its sandboxing it is far worse.
    let loose = unit_with_real_binary(dir.path(), |u| {
        u.lines()
            .filter(|line| {
                ![
                    "SystemCallFilter=",
                    "CapabilityBoundingSet=",
                    "RestrictAddressFamilies=",
                ]
                .iter()
                .any(|key| line.starts_with(key))
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let (loose_level, output) = exposure(&analyze, &loose);
    assert!(loose_level > 3.0, "{loose_level}:\n{output}");
}

#[test]
fn the_unit_is_a_hardened_notify_service_without_secrets() {
    let unit = std::fs::read_to_string(deploy("systemd/etcd-dr.service")).unwrap();
    let directives: BTreeSet<&str> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::trim)
        .collect();
    for needed in [
        "Type=notify",
        "WatchdogSec=60s",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/etcd-dr",
        "LoadCredential=api-token:/etc/etcd-dr/api-token",
        "EnvironmentFile=-/etc/etcd-dr/etcd-dr.env",
        "CapabilityBoundingSet=",
    ] {
        assert!(
            directives.contains(needed),
            "`{needed}` missing from the unit"
        );
    }
    for secret in [
        "AWS_SECRET_ACCESS_KEY=",
        "ETCD_DR_API_TOKEN=",
        "Environment=AWS",
    ] {
        assert!(
            !directives.iter().any(|d| d.contains(secret)),
            "the unit carries a secret ({secret})"
        );
    }
}
