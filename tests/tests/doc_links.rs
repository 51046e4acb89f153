//! Every relative link in the Markdown docs resolves: the file or directory exists, and a
//! `#fragment` names a heading of the target (GitHub's anchors).

use std::path::{Path, PathBuf};

use etcd_dr_e2e::markdown_links::check_links;
use etcd_dr_e2e::tools::workspace_root;

/// `README.md`, `ARCHITECTURE.md`, `bench/README.md`, `tests/README.md` and every `.md` below
/// `docs/`.
fn documentation(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "bench/README.md",
        "tests/README.md",
    ]
    .iter()
    .map(|name| root.join(name))
    .collect();
    let mut pending = vec![root.join("docs")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = workspace_root();
    let files = documentation(&root);
    for required in [
        "docs/configuration.md",
        "docs/api.md",
        "docs/metrics.md",
        "docs/promote.md",
        "docs/object-layout.md",
        "docs/runbooks/failover.md",
        "docs/runbooks/switchover.md",
        "docs/runbooks/failback.md",
        "docs/runbooks/restore-in-place.md",
    ] {
        assert!(
            files.contains(&root.join(required)),
            "{required} is missing"
        );
    }
    let report = check_links(&files);
    let broken: Vec<String> = report.broken.iter().map(ToString::to_string).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    // The docs link to each other a lot: finding few links means the checker read nothing.
    assert!(report.checked > 50, "only {} links checked", report.checked);
}

#[test]
fn a_missing_file_or_heading_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    std::fs::write(
        dir.path().join("docs/target.md"),
        "# Target\n\n## `[store]` keys\n",
    )
    .unwrap();
    let source = dir.path().join("README.md");
    std::fs::write(
        &source,
        "# Readme\n\n[good](docs/target.md#store-keys) [self](#readme)\n\
         [gone](docs/missing.md)\n[no heading](docs/target.md#stores)\n\
         [web](https://example.com/x.md)\n`[in code](nowhere.md)`\n",
    )
    .unwrap();
    let report = check_links(std::slice::from_ref(&source));
    assert_eq!(report.checked, 4);
    let found: Vec<(usize, &str)> = report
        .broken
        .iter()
        .map(|b| (b.line, b.target.as_str()))
        .collect();
    assert_eq!(
        found,
        [(4, "docs/missing.md"), (5, "docs/target.md#stores")]
    );
    assert!(report.broken[0].file == source);
    assert!(
        report.broken[1].problem.contains("store-keys"),
        "{}",
        report.broken[1]
    );
}

#[test]
fn every_end_to_end_test_file_is_described_in_tests_readme() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(tests.join("README.md")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(tests.join("tests")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".rs")
            && !readme.contains(&format!("`{name}`"))
            && !readme.contains(&format!("tests/tests/{name}"))
        {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "not described in tests/README.md: {missing:?}"
    );
}
