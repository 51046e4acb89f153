//! Configuration errors never echo a secret: values under `encryption`, `signing`, tokens,
//! credentials, passwords and store endpoints (which may carry `user:secret@`) are replaced by
//! `<redacted>` in every message about the configuration.
//!
//! (Key files' paths under `encryption` and `signing` are redacted too: a small price for
//! never echoing a key pasted where a path belongs.)

/// True for a dotted setting path whose value is, or may hold, a secret.
fn is_sensitive(path: &str) -> bool {
    const SECTIONS: [&str; 2] = ["encryption", "signing"];
    const WORDS: [&str; 5] = ["token", "secret", "credential", "password", "access_key"];
    SECTIONS
        .iter()
        .any(|s| path == *s || path.starts_with(&format!("{s}.")))
        || WORDS.iter().any(|w| path.contains(w))
        // It may carry `user:secret@`.
        || path == "store.endpoint"
}

/// Every string value of `config` under a sensitive path.
pub fn sensitive_values(config: &config::Config) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(value) = config.clone().try_deserialize::<serde_json::Value>() {
        collect(&value, "", false, &mut found);
    }
    // Longest first, so that a secret containing another is replaced whole.
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found.dedup();
    found
}

fn collect(value: &serde_json::Value, path: &str, sensitive: bool, found: &mut Vec<String>) {
    let sensitive = sensitive || is_sensitive(path);
    match value {
        serde_json::Value::String(text) if sensitive && text.len() >= 4 => found.push(text.clone()),
        serde_json::Value::Array(items) => {
            for item in items {
                collect(item, path, sensitive, found);
            }
        }
        serde_json::Value::Object(fields) => {
            for (key, item) in fields {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                collect(item, &child, sensitive, found);
            }
        }
        _ => {}
    }
}

/// `text` with every one of `secrets` replaced by `<redacted>`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for secret in secrets {
        text = text.replace(secret.as_str(), "<redacted>");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_under_sensitive_settings_are_redacted() {
        let config = config::Config::builder()
            .add_source(config::File::from_str(
                r#"
cluster = "prod-visible"
[encryption]
recipients = "AGE-SECRET-KEY-1SECRETSECRET"
[store]
endpoint = "https://user:hunter2@s3.example"
bucket = "visible-bucket"
[http]
token_file = "/etc/etcd-dr/token"
"#,
                config::FileFormat::Toml,
            ))
            .build()
            .unwrap();
        let secrets = sensitive_values(&config);
        let text = redact(
            "invalid type: string \"AGE-SECRET-KEY-1SECRETSECRET\" at https://user:hunter2@s3.example in prod-visible/visible-bucket",
            &secrets,
        );
        assert!(!text.contains("SECRETSECRET"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("prod-visible/visible-bucket"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
}
