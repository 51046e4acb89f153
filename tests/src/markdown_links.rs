//! Relative links in Markdown files, checked the way GitHub renders them: the target file (or
//! directory) exists, and a `#fragment` names a heading of the target, by GitHub's slug.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A link that does not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// The file holding the link.
    pub file: PathBuf,
    /// Its line (1-based).
    pub line: usize,
    /// The link target as written.
    pub target: String,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: ({}) {}",
            self.file.display(),
            self.line,
            self.target,
            self.problem
        )
    }
}

/// What [`check_links`] found: how many relative links it checked, and the broken ones.
#[derive(Debug, Default)]
pub struct LinkReport {
    /// Relative links checked (external ones are not counted).
    pub checked: usize,
    /// Links that do not resolve.
    pub broken: Vec<BrokenLink>,
}

/// GitHub's anchor for a heading's text: lower case, punctuation dropped (but `-` and `_`),
/// spaces as `-`. Inline code and link syntax count by their rendered text.
pub fn github_slug(heading: &str) -> String {
    rendered_text(heading)
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Heading text as rendered: backticks gone, `[text](target)` as `text`.
fn rendered_text(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading.trim();
    while let Some(start) = rest.find('[') {
        match rest[start..].find("](").and_then(|close| {
            let after = start + close + 2;
            rest[after..]
                .find(')')
                .map(|end| (start + close, after + end))
        }) {
            Some((close, end)) => {
                text.push_str(&rest[..start]);
                text.push_str(&rest[start + 1..close]);
                rest = &rest[end + 1..];
            }
            None => break,
        }
    }
    text.push_str(rest);
    text.replace('`', "")
}

/// The lines of `markdown` outside fenced code blocks, with their 1-based numbers.
fn prose_lines(markdown: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(marker)) => fence = Some(marker),
            (Some(open), Some(marker)) if open == marker => fence = None,
            (None, None) => lines.push((index + 1, line)),
            _ => {}
        }
    }
    lines
}

/// The anchors of every ATX heading (`# …` to `###### …`) in `markdown`, duplicates numbered
/// `-1`, `-2`… as GitHub does.
pub fn heading_anchors(markdown: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = Vec::new();
    for (_, line) in prose_lines(markdown) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let text = line[hashes..].trim().trim_end_matches('#').trim();
        let slug = github_slug(text);
        let count = seen.entry(slug.clone()).or_insert(0);
        anchors.push(if *count == 0 {
            slug.clone()
        } else {
            format!("{slug}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// Removes inline code spans, whose text is never a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        let ticks = rest[start..].chars().take_while(|c| *c == '`').count();
        let marker = &rest[start..start + ticks];
        out.push_str(&rest[..start]);
        match rest[start + ticks..].find(marker) {
            Some(end) => rest = &rest[start + ticks + end + ticks..],
            None => {
                rest = &rest[start + ticks..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every link target in `markdown` (inline `[text](target)`, images, and reference
/// definitions `[name]: target`), with its line, outside code.
pub fn link_targets(markdown: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    for (number, line) in prose_lines(markdown) {
        let line = without_code_spans(line);
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            if let Some(close) = trimmed.find("]:") {
                if let Some(target) = trimmed[close + 2..].split_whitespace().next() {
                    targets.push((number, target.to_string()));
                    continue;
                }
            }
        }
        let mut rest = line.as_str();
        while let Some(open) = rest.find("](") {
            let after = &rest[open + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            targets.push((number, target.trim_matches(['<', '>']).to_string()));
            rest = &after[end + 1..];
        }
    }
    targets
}

fn is_external(target: &str) -> bool {
    target.split_once(':').is_some_and(|(scheme, _)| {
        scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+')
    })
}

/// Checks every relative link of `files` (paths to Markdown files).
pub fn check_links(files: &[PathBuf]) -> LinkReport {
    let mut report = LinkReport::default();
    for file in files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let dir = file.parent().unwrap_or(Path::new("."));
        for (line, target) in link_targets(&text) {
            if target.is_empty() || is_external(&target) {
                continue;
            }
            report.checked += 1;
            let broken = |problem: String| BrokenLink {
                file: file.clone(),
                line,
                target: target.clone(),
                problem,
            };
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path.replace("%20", " "))
            };
            if !resolved.exists() {
                report
                    .broken
                    .push(broken(format!("{} does not exist", resolved.display())));
                continue;
            }
            let Some(fragment) = fragment else { continue };
            let markdown = if resolved.is_dir() {
                resolved.join("README.md")
            } else {
                resolved.clone()
            };
            if markdown.extension().is_none_or(|e| e != "md") || !markdown.is_file() {
                report.broken.push(broken(format!(
                    "#{fragment}: {} is not a Markdown file",
                    markdown.display()
                )));
                continue;
            }
            let anchors = heading_anchors(&std::fs::read_to_string(&markdown).unwrap());
            if !anchors.iter().any(|a| a == fragment) {
                report.broken.push(broken(format!(
                    "no heading #{fragment} in {} (it has: {})",
                    markdown.display(),
                    anchors.join(", ")
                )));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_githubs() {
        assert_eq!(github_slug("Install (systemd)"), "install-systemd");
        assert_eq!(github_slug("`/v1/status`"), "v1status");
        assert_eq!(github_slug("`[nodes.access]`"), "nodesaccess");
        assert_eq!(
            github_slug("Runbook: failover (the primary region is gone)"),
            "runbook-failover-the-primary-region-is-gone"
        );
        assert_eq!(github_slug("A [link](x.md) here"), "a-link-here");
        assert_eq!(github_slug("snake_case and — dash"), "snake_case-and--dash");
    }

    #[test]
    fn headings_in_code_do_not_count_and_duplicates_are_numbered() {
        let text = "# Title\n```sh\n# a comment\n```\n## Part\n## Part\n#not a heading\n";
        assert_eq!(heading_anchors(text), ["title", "part", "part-1"]);
    }

    #[test]
    fn links_in_code_do_not_count() {
        let text = "See [a](a.md#x) and `[b](b.md)`.\n```\n[c](c.md)\n```\n[d]: d.md\n![img](i.png \"t\")\n";
        let targets: Vec<String> = link_targets(text).into_iter().map(|(_, t)| t).collect();
        assert_eq!(targets, ["a.md#x", "d.md", "i.png"]);
    }

    #[test]
    fn external_links_are_not_checked() {
        assert!(is_external("https://age-encryption.org"));
        assert!(is_external("mailto:ops@example.com"));
        assert!(!is_external("docs/api.md#token"));
        assert!(!is_external("#a-heading"));
    }
}
