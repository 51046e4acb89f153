//! The compatibility matrix of `docs/testground.md` says what the suite covers, no more and no
//! less: every test it names exists in `tests/tests/`, runs by default (not `#[ignore]`d) and
//! runs the etcd version of its row; every test of those files named after an etcd version is
//! in the matrix. Reads files only; starts nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use etcd_dr_e2e::tools::workspace_root;

/// One named test of the matrix: its file (without `.rs`) and function, and the etcd version
/// (`3_6`) of its row, if it is in an etcd row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct NamedTest {
    file: String,
    name: String,
    series: Option<String>,
}

/// The `## Compatibility matrix` section of `docs/testground.md`.
fn matrix_section(root: &Path) -> String {
    let text = std::fs::read_to_string(root.join("docs/testground.md")).unwrap();
    let start = text
        .find("## Compatibility matrix")
        .expect("docs/testground.md has a `## Compatibility matrix` section");
    let rest = &text[start + 3..];
    let end = rest.find("\n## ").map_or(rest.len(), |end| end);
    rest[..end].to_string()
}

/// Every `file::test` in the section's table rows, with its row's etcd series.
fn named_tests(section: &str) -> Vec<NamedTest> {
    let mut tests = Vec::new();
    for row in section.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let first = cells.get(1).copied().unwrap_or_default();
        // `3.6.16 (Go build)` → `3_6`; the Kubernetes rows have none.
        let series = first
            .split(['.', ' '])
            .take(2)
            .collect::<Vec<_>>()
            .join("_");
        let series = (first.starts_with("3.") && series.len() == 3).then_some(series);
        for cell in &cells[1..] {
            for (index, quoted) in cell.split('`').enumerate() {
                if index % 2 == 0 {
                    continue;
                }
                if let Some((file, name)) = quoted.split_once("::") {
                    let is_identifier = |s: &str| {
                        !s.is_empty()
                            && s.chars()
                                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    };
                    if is_identifier(file) && is_identifier(name) {
                        tests.push(NamedTest {
                            file: file.into(),
                            name: name.into(),
                            series: series.clone(),
                        });
                    }
                }
            }
        }
    }
    tests
}

/// The text of `fn <name>(` up to the end of its body (the first `}` alone on a line), and the
/// attribute lines just above it.
fn function(source: &str, name: &str) -> Option<(String, String)> {
    let start = source.find(&format!("fn {name}("))?;
    let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
    let body_end = source[start..]
        .find("\n}\n")
        .map_or(source.len(), |end| start + end + 3);
    let mut attributes = Vec::new();
    for line in source[..line_start].lines().rev() {
        let line = line.trim();
        if line.starts_with("#[") {
            attributes.push(line.to_string());
        } else if !line.starts_with("///") {
            break;
        }
    }
    Some((attributes.join("\n"), source[start..body_end].to_string()))
}

/// Whether `name` is a scenario run by a macro that makes a test of each (core_path's
/// `on_every_store!(…)`).
fn is_macro_scenario(source: &str, name: &str) -> bool {
    source.split("on_every_store!(").skip(1).any(|list| {
        list.split(");")
            .next()
            .is_some_and(|list| list.split(',').any(|entry| entry.trim() == name))
    })
}

fn test_sources(root: &Path, files: &BTreeSet<String>) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|file| {
            let path = root.join("tests/tests").join(format!("{file}.rs"));
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("the matrix names `{file}`: {}: {e}", path.display()));
            (file.clone(), source)
        })
        .collect()
}

#[test]
fn the_compatibility_matrix_names_tests_that_run_its_versions() {
    let root = workspace_root();
    let tests = named_tests(&matrix_section(&root));
    assert!(tests.len() >= 10, "too few tests named: {tests:?}");
    let files: BTreeSet<String> = tests.iter().map(|t| t.file.clone()).collect();
    let sources = test_sources(&root, &files);
    let mut problems = Vec::new();
    for test in &tests {
        let source = &sources[&test.file];
        let Some((attributes, body)) = function(source, &test.name) else {
            problems.push(format!("{}::{}: no such function", test.file, test.name));
            continue;
        };
        let runs = attributes.contains("#[test]") || is_macro_scenario(source, &test.name);
        if !runs {
            problems.push(format!("{}::{}: not a test", test.file, test.name));
        }
        if attributes.contains("#[ignore") {
            problems.push(format!("{}::{}: ignored by default", test.file, test.name));
        }
        if let Some(series) = &test.series {
            let version = format!("EtcdVersion::V{series}");
            if !body.contains(&version) {
                problems.push(format!(
                    "{}::{}: in the {} row, but its body never names {version}",
                    test.file,
                    test.name,
                    series.replace('_', ".")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "docs/testground.md: {problems:#?}");
}

#[test]
fn every_test_named_after_an_etcd_version_is_in_the_matrix() {
    let root = workspace_root();
    let tests = named_tests(&matrix_section(&root));
    let named: BTreeSet<(String, String)> = tests
        .iter()
        .map(|t| (t.file.clone(), t.name.clone()))
        .collect();
    let files: BTreeSet<String> = tests.iter().map(|t| t.file.clone()).collect();
    let mut missing = Vec::new();
    for (file, source) in test_sources(&root, &files) {
        for piece in source.split("fn ").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let versioned = ["etcd_34", "etcd_35", "etcd_36", "etcd_37", "etcd_3_"]
                .iter()
                .any(|marker| name.contains(marker));
            let Some((attributes, _)) = function(&source, &name) else {
                continue;
            };
            let is_test = attributes.contains("#[test]") || is_macro_scenario(&source, &name);
            if versioned && is_test && !named.contains(&(file.clone(), name.clone())) {
                missing.push(format!("{file}::{name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "tests of an etcd version the compatibility matrix (docs/testground.md) does not name: {missing:?}"
    );
}

#[test]
fn the_matrix_reader_finds_rows_cells_and_functions() {
    let section = "## Compatibility matrix\n\n| etcd | a | b |\n| --- | --- | --- |\n\
                   | 3.6.16 (Go build) | `x::on_36` | — |\n| 1.34.4 kube | `k::api`, `k::api2` | |\n";
    let tests = named_tests(section);
    assert_eq!(tests.len(), 3, "{tests:?}");
    assert_eq!(tests[0].series.as_deref(), Some("3_6"));
    assert_eq!(
        (tests[0].file.as_str(), tests[0].name.as_str()),
        ("x", "on_36")
    );
    assert_eq!(tests[1].series, None);
    let source = "/// doc\n#[test]\nfn a() {\n    b(EtcdVersion::V3_6);\n}\n\nfn b(v: u8) {\n}\n";
    let (attributes, body) = function(source, "a").unwrap();
    assert_eq!(attributes, "#[test]");
    assert!(body.contains("V3_6") && !body.contains("fn b"), "{body}");
    assert!(function(source, "c").is_none());
    assert!(is_macro_scenario(
        "on_every_store!(\n    one,\n    two,\n);",
        "two"
    ));
    assert!(!is_macro_scenario("on_every_store!(\n    one,\n);", "tw"));
}
