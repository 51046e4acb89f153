//! Rules the source tree keeps, read from the files themselves:
//! - files stay small enough to read in one sitting: no Rust file under `crates/` over 500 lines
//!   (a module that grows past it splits by responsibility; unit tests go to a sibling
//!   `tests.rs`);
//! - no two modules of a crate use each other: dependencies between modules point one way, as
//!   between crates. A module "uses" another when its code (unit tests aside) names it through a
//!   `crate::`, `super::` or `self::` path; checked between sibling top-level modules and between
//!   any two modules that are not nested in one another.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 500;

type ModulePath = Vec<String>;

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The workspace's `crates/` directory.
fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `src/a/b.rs` → `[a, b]`; `src/a/mod.rs` → `[a]`; `src/lib.rs` → `[]`.
fn module_path(src: &Path, file: &Path) -> ModulePath {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: ModulePath = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// `crate::{a, b::{c, d}}` → `crate::a crate::b::c crate::b::d`.
fn expand_groups(text: &str) -> String {
    let mut text = text.to_string();
    for _ in 0..3 {
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(open) = rest.find("::{") {
            let (before, after) = rest.split_at(open);
            let Some(close) = after.find('}') else { break };
            let inner = &after[3..close];
            if inner.contains('{') {
                out.push_str(&rest[..open + 3]);
                rest = &rest[open + 3..];
                continue;
            }
            let start = before
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(0, |i| i + 1);
            let prefix = &before[start..];
            out.push_str(&before[..start]);
            let expanded: Vec<String> = inner
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| format!("{prefix}::{item}"))
                .collect();
            out.push_str(&expanded.join(" "));
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        text = out;
    }
    text
}

/// The module paths named in `text` after `anchor::` (e.g. `crate`), resolved against `base`.
fn named_paths(text: &str, anchor: &str, base: &[String]) -> Vec<ModulePath> {
    let needle = format!("{anchor}::");
    let mut found = Vec::new();
    for (at, _) in text.match_indices(&needle) {
        let before = text[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let path: String = text[at + needle.len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let mut full = base.to_vec();
        full.extend(
            path.split("::")
                .filter(|p| !p.is_empty())
                .map(str::to_string),
        );
        found.push(full);
    }
    found
}

fn is_prefix(prefix: &[String], of: &[String]) -> bool {
    of.len() >= prefix.len() && of[..prefix.len()] == *prefix
}

/// Every pair of modules of the crate at `src` that use each other.
fn cycles(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<ModulePath, PathBuf> = files
        .into_iter()
        .map(|file| (module_path(src, &file), file))
        .collect();
    let longest_module = |path: &[String]| {
        (0..=path.len())
            .rev()
            .map(|i| path[..i].to_vec())
            .find(|prefix| !prefix.is_empty() && modules.contains_key(prefix))
    };
    let mut uses: BTreeMap<ModulePath, BTreeSet<ModulePath>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let code = expand_groups(text.split("#[cfg(test)]").next().unwrap_or(""));
        // In `a/b.rs` and in `a/b/mod.rs` alike, `self` is `a::b` and `super` is `a`.
        let own = module.clone();
        let parent = &own[..own.len().saturating_sub(1)];
        let named = named_paths(&code, "crate", &[])
            .into_iter()
            .chain(named_paths(&code, "super", parent))
            .chain(named_paths(&code, "self", &own));
        let entry = uses.entry(module.clone()).or_default();
        for path in named {
            if let Some(target) = longest_module(&path) {
                if target != *module {
                    entry.insert(target);
                }
            }
        }
    }
    let mut found = Vec::new();
    let uses_module = |a: &ModulePath, b: &ModulePath| {
        uses.get(a)
            .is_some_and(|targets| targets.iter().any(|t| is_prefix(b, t)))
    };
    // Top-level modules: any file of one naming the other.
    let top: BTreeSet<&String> = modules.keys().filter_map(|m| m.first()).collect();
    let top_uses = |a: &String, b: &String| {
        uses.iter().any(|(module, targets)| {
            module.first() == Some(a) && targets.iter().any(|t| t.first() == Some(b))
        })
    };
    for a in &top {
        for b in &top {
            if a < b && top_uses(a, b) && top_uses(b, a) {
                found.push(format!("{a} <-> {b}"));
            }
        }
    }
    let names: Vec<&ModulePath> = modules.keys().collect();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            if is_prefix(a, b) || is_prefix(b, a) {
                continue;
            }
            if uses_module(a, b) && uses_module(b, a) {
                found.push(format!("{} <-> {}", a.join("::"), b.join("::")));
            }
        }
    }
    found
}

#[test]
fn no_two_modules_of_a_crate_use_each_other() {
    let crates = crates_dir();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() {
            let crate_name = src
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            found.extend(
                cycles(&src)
                    .into_iter()
                    .map(|c| format!("{crate_name}: {c}")),
            );
        }
    }
    assert!(found.is_empty(), "modules that use each other: {found:#?}");
}

#[test]
fn the_check_sees_a_cycle_through_a_brace_group_and_super() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("daemon")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod cmd;\nmod daemon;\n").unwrap();
    std::fs::write(src.join("cmd.rs"), "use crate::daemon::{run, State};\n").unwrap();
    std::fs::write(
        src.join("daemon/mod.rs"),
        "pub mod primary;\npub mod replication;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("daemon/primary.rs"),
        "use super::{replication, State};\nfn f() { crate::cmd::human(); }\n",
    )
    .unwrap();
    std::fs::write(src.join("daemon/replication.rs"), "use super::primary;\n").unwrap();
    let found = cycles(src);
    assert!(found.contains(&"cmd <-> daemon".to_string()), "{found:?}");
    assert!(
        found.contains(&"daemon::primary <-> daemon::replication".to_string()),
        "{found:?}"
    );
    // Test modules do not count.
    std::fs::write(
        src.join("daemon/replication.rs"),
        "#[cfg(test)]\nuse super::primary;\n",
    )
    .unwrap();
    std::fs::write(src.join("cmd.rs"), "").unwrap();
    assert!(cycles(src).is_empty(), "{:?}", cycles(src));
}

#[test]
fn no_rust_file_in_crates_is_over_500_lines() {
    let crates = crates_dir();
    let mut files = Vec::new();
    rust_files(&crates, &mut files);
    assert!(files.len() > 50, "{files:?}");
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(file).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines, split by responsibility: {long:#?}"
    );
}
