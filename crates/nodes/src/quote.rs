//! POSIX shell quoting: how an argv vector crosses `ssh`, which hands the remote login shell one
//! command string.

use std::borrow::Cow;

/// Quotes one word for a POSIX shell so that it reaches the command unchanged, whatever it holds
/// (spaces, quotes, `$`, backticks, newlines, globs, a leading `-` or `~`).
///
/// Words made only of characters no shell treats specially are returned as they are; any other
/// word is wrapped in single quotes, with each `'` written as `'\''`.
pub fn shell_quote(word: &str) -> Cow<'_, str> {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./,:+@%".contains(&b));
    if plain {
        return Cow::Borrowed(word);
    }
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('\'');
    for c in word.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    Cow::Owned(quoted)
}

/// Joins an argv vector into one shell command line, each word quoted by [`shell_quote`].
pub fn shell_join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|word| shell_quote(word.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_plain() {
        assert_eq!(shell_quote("etcdutl"), "etcdutl");
        assert_eq!(shell_quote("/etc/kubernetes/pki"), "/etc/kubernetes/pki");
        assert_eq!(shell_quote("--data-dir"), "--data-dir");
    }

    #[test]
    fn special_words_are_single_quoted() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("A=b"), "'A=b'");
        assert_eq!(shell_quote("~root"), "'~root'");
        assert_eq!(shell_quote("*.conf"), "'*.conf'");
    }

    /// Words that would break naive quoting, each checked against a real `sh`.
    const NASTY: &[&str] = &[
        "",
        "plain",
        "two words",
        "it's",
        "'",
        "''",
        "\"double\"",
        "$HOME",
        "${PATH}",
        "`id`",
        "$(id)",
        "a\\b",
        "back\\",
        "new\nline",
        "tab\there",
        "*",
        "/etc/*.conf",
        "?",
        "[abc]",
        "~",
        "-n",
        "--",
        "a;b",
        "a|b",
        "a&b",
        "a>b",
        "#comment",
        "!",
        "{a,b}",
        "A=b",
        "é ü 雪",
        "x'\"'\"y",
    ];

    #[test]
    fn a_real_sh_gets_every_word_back_unchanged() {
        let mut argv = vec!["printf".to_string(), "%s\\0".to_string()];
        argv.extend(NASTY.iter().map(|s| s.to_string()));
        let script = shell_join(&argv);
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(std::env::temp_dir())
            .output()
            .expect("sh runs");
        assert!(output.status.success(), "{script}");
        let words: Vec<&[u8]> = output.stdout.split(|b| *b == 0).collect();
        // printf's output ends with a NUL, so the last split piece is empty.
        assert_eq!(words.len(), NASTY.len() + 1, "{script}");
        for (got, want) in words.iter().zip(NASTY) {
            assert_eq!(std::str::from_utf8(got).unwrap(), *want, "{script}");
        }
    }

    #[test]
    fn sh_dash_c_scripts_survive_a_second_shell() {
        // What ssh does: the joined line is run by the remote login shell, which runs `sh -c`.
        let inner = shell_join(&["sh", "-c", r#"printf '%s|' "$@""#, "sh", "a b", "it's"]);
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&inner)
            .output()
            .expect("sh runs");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "a b|it's|");
    }
}
