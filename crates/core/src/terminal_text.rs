//! Text that comes from the store (labels, node names, paths in a manifest) on its way to a
//! terminal or a log: validated where it is written, escaped where it is shown.

use std::borrow::Cow;

/// Labels longer than this are refused: they end up in every listing.
pub const MAX_LABEL_CHARS: usize = 256;

/// Checks an operator's label (`snapshot --label`, `POST /v1/snapshots`).
pub fn validate_label(label: &str) -> Result<(), String> {
    if label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
        return Err(format!(
            "a label is at most {MAX_LABEL_CHARS} characters, without control characters"
        ));
    }
    Ok(())
}

/// `text` with control characters (escape sequences, newlines) written as `\u{1b}`-style
/// escapes, so that text from the store cannot rewrite a terminal or forge a log line.
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(
            text.chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_unicode().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_in_labels_and_escaped_on_output() {
        assert!(validate_label("before upgrade to 1.31").is_ok());
        assert!(validate_label("a\u{1b}[2Jb").is_err());
        assert!(validate_label("two\nlines").is_err());
        assert!(validate_label(&"x".repeat(MAX_LABEL_CHARS + 1)).is_err());
        assert_eq!(printable("plain ünïcode"), "plain ünïcode");
        assert_eq!(printable("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\u{a}");
    }
}
