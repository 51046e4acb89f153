//! Client-side encryption with age (X25519): the primary holds only recipients (public keys),
//! the secondary holds the identity file (secret keys).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use etcd_dr_core::{ConfigProblems, Encryption};
use serde::Deserialize;

use crate::TransportError;

/// Suffix of encrypted object names (`etcd.db.zst.age`).
pub const ENCRYPTED_SUFFIX: &str = ".age";

/// `[encryption]`: who can read what is shipped.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// age recipients (public keys, `age1…`) every object is encrypted to; several allowed (for
    /// example one per region, plus an offline break-glass key).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// The age identity file (secret keys, `AGE-SECRET-KEY-1…`) that decrypts: on the
    /// secondary, never on the primary.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// Refuse plain data: shipping it (primary) and reading it (a manifest with a plain object
    /// is refused). Default: on when node bundles are taken or, for readers, an identity file
    /// is set.
    #[serde(default)]
    pub require_encryption: Option<bool>,
}

impl EncryptionConfig {
    /// Reports every bad field under `field` (e.g. `encryption`).
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        for (i, recipient) in self.recipients.iter().enumerate() {
            if recipient.starts_with("AGE-SECRET-KEY-") {
                problems.push(
                    format!("{field}.recipients[{i}]"),
                    "is a secret key: put only public keys (age1…) here, and the secret key in the identity file on the secondary",
                );
            } else if age::x25519::Recipient::from_str(recipient).is_err() {
                problems.push(
                    format!("{field}.recipients[{i}]"),
                    "is not an age X25519 public key (age1…); `etcd-dr keygen` prints one",
                );
            }
        }
    }

    /// Whether plain data may be shipped, given whether node bundles are taken.
    pub fn requires_encryption(&self, bundles_enabled: bool) -> bool {
        self.require_encryption.unwrap_or(bundles_enabled)
    }

    /// Checks that this configuration may ship: with encryption required, there must be
    /// recipients. Reports under `field`.
    pub fn validate_for_shipping(
        &self,
        field: &str,
        bundles_enabled: bool,
        problems: &mut ConfigProblems,
    ) {
        if self.recipients.is_empty() && self.requires_encryption(bundles_enabled) {
            let why = if self.require_encryption.is_some() {
                format!("{field}.require_encryption = true")
            } else {
                format!("{field}.require_encryption defaults to true when node bundles are taken")
            };
            problems.push(
                format!("{field}.recipients"),
                format!("{why}, so plain data is never shipped: add the secondary's age public key (age1…, `etcd-dr keygen` makes one), or set {field}.require_encryption = false"),
            );
        }
    }

    /// The recipients to encrypt to, `None` when there are none.
    pub fn recipients(&self) -> Result<Option<Recipients>, TransportError> {
        if self.recipients.is_empty() {
            return Ok(None);
        }
        Recipients::parse(&self.recipients).map(Some)
    }

    /// The identities to decrypt with (none when no identity file is configured).
    pub fn identities(&self) -> Result<Identities, TransportError> {
        match &self.identity_file {
            Some(path) => Identities::load(path),
            None => Ok(Identities::none()),
        }
    }
}

/// The public keys objects are encrypted to.
#[derive(Clone)]
pub struct Recipients(Vec<age::x25519::Recipient>);

impl Recipients {
    /// Parses `age1…` public keys.
    pub fn parse<S: AsRef<str>>(keys: &[S]) -> Result<Self, TransportError> {
        let parsed = keys
            .iter()
            .map(|key| {
                age::x25519::Recipient::from_str(key.as_ref()).map_err(|e| {
                    TransportError::Config(format!(
                        "`{}` is not an age public key: {e}",
                        key.as_ref()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Err(TransportError::Config("no age recipients".into()));
        }
        Ok(Self(parsed))
    }

    /// The public keys as text (what the manifest records).
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// What the manifest records for an object encrypted to these recipients.
    pub fn manifest_entry(&self) -> Encryption {
        Encryption::Age {
            recipients: self.to_strings(),
        }
    }

    pub(crate) fn encryptor(&self) -> Result<age::Encryptor, TransportError> {
        age::Encryptor::with_recipients(self.0.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| TransportError::Pipeline(format!("age encryption: {e}")))
    }
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.to_strings()).finish()
    }
}

/// The secret keys that decrypt, and where they came from (for messages).
#[derive(Clone, Default)]
pub struct Identities {
    keys: Vec<age::x25519::Identity>,
    source: Option<PathBuf>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys themselves.
        f.debug_struct("Identities")
            .field("count", &self.keys.len())
            .field("source", &self.source)
            .finish()
    }
}

impl Identities {
    /// No identity: only plain objects can be read.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads an age identity file: `AGE-SECRET-KEY-1…` lines, `#` comments, blank lines.
    pub fn load(path: &Path) -> Result<Self, TransportError> {
        let text = std::fs::read_to_string(path).map_err(|source| TransportError::LocalIo {
            action: "reading the age identity file",
            path: path.display().to_string(),
            source,
        })?;
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = age::x25519::Identity::from_str(line).map_err(|_| {
                // The line itself is a secret: never in the message.
                TransportError::Config(format!(
                    "age identity file `{}`, line {}: not an X25519 identity (AGE-SECRET-KEY-1…)",
                    path.display(),
                    number + 1
                ))
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(TransportError::Config(format!(
                "age identity file `{}` holds no identity (AGE-SECRET-KEY-1…)",
                path.display()
            )));
        }
        Ok(Self {
            keys,
            source: Some(path.to_path_buf()),
        })
    }

    /// True when there is no identity.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Where the identities came from, for messages.
    pub fn describe(&self) -> String {
        match &self.source {
            Some(path) => format!("the identity file `{}`", path.display()),
            None if self.keys.is_empty() => {
                "no identity (encryption.identity_file is not set)".into()
            }
            None => format!("{} identities", self.keys.len()),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k as &dyn age::Identity)
    }
}

/// Encrypts a small object whole, in memory (a replication segment, bounded by its cut size).
pub fn encrypt_in_memory(recipients: &Recipients, plain: &[u8]) -> Result<Vec<u8>, TransportError> {
    use std::io::Write;
    let pipeline = |e: std::io::Error| TransportError::Pipeline(format!("age encryption: {e}"));
    let mut out = Vec::with_capacity(plain.len() + 512);
    let mut writer = recipients
        .encryptor()?
        .wrap_output(&mut out)
        .map_err(pipeline)?;
    writer.write_all(plain).map_err(pipeline)?;
    writer.finish().map_err(pipeline)?;
    Ok(out)
}

/// Decrypts a small object whole, in memory; `object` names it in errors.
pub fn decrypt_in_memory(
    identities: &Identities,
    object: &str,
    encrypted: &[u8],
) -> Result<Vec<u8>, TransportError> {
    use std::io::Read;
    if identities.is_empty() {
        return Err(TransportError::Config(format!(
            "`{object}` is encrypted (age) and no identity is configured: set encryption.identity_file"
        )));
    }
    let failed = |detail: String| {
        TransportError::Pipeline(format!(
            "`{object}` does not decrypt with {}: {detail}",
            identities.describe()
        ))
    };
    let mut reader = age::Decryptor::new_buffered(encrypted)
        .and_then(|decryptor| decryptor.decrypt(identities.iter()))
        .map_err(|e| failed(e.to_string()))?;
    let mut plain = Vec::with_capacity(encrypted.len());
    reader
        .read_to_end(&mut plain)
        .map_err(|e| failed(e.to_string()))?;
    Ok(plain)
}

/// A new X25519 identity: the text of an identity file (comment lines and the secret key) and
/// its public key (the recipient to put in the primary's config).
pub fn generate_identity() -> (String, String) {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let file = format!(
        "# etcd-dr age identity: keep it on the secondary only (mode 0600)\n# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    (file, recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identities_load_and_match_their_recipient() {
        let (file, recipient) = generate_identity();
        assert!(recipient.starts_with("age1"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.txt");
        std::fs::write(&path, &file).unwrap();
        let identities = Identities::load(&path).unwrap();
        assert_eq!(identities.keys.len(), 1);
        assert_eq!(identities.keys[0].to_public().to_string(), recipient);
        assert!(!format!("{identities:?}").contains("AGE-SECRET"));
        assert_eq!(
            Recipients::parse(std::slice::from_ref(&recipient))
                .unwrap()
                .to_strings(),
            [recipient]
        );
    }

    #[test]
    fn bad_identity_files_are_refused_without_echoing_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.txt");
        std::fs::write(&path, "# nothing\n\n").unwrap();
        assert!(Identities::load(&path)
            .unwrap_err()
            .to_string()
            .contains("holds no identity"));
        std::fs::write(&path, "AGE-SECRET-KEY-1NOTVALIDATALL\n").unwrap();
        let error = Identities::load(&path).unwrap_err().to_string();
        assert!(error.contains("line 1"), "{error}");
        assert!(!error.contains("NOTVALID"), "{error}");
    }

    #[test]
    fn config_problems_name_the_settings() {
        let (_, recipient) = generate_identity();
        let config = EncryptionConfig {
            recipients: vec![
                recipient,
                "AGE-SECRET-KEY-1XYZ".into(),
                "ssh-ed25519 AAAA".into(),
            ],
            ..EncryptionConfig::default()
        };
        let mut problems = ConfigProblems::default();
        config.validate("encryption", &mut problems);
        let fields: Vec<_> = problems.iter().map(|p| p.field.clone()).collect();
        assert_eq!(
            fields,
            ["encryption.recipients[1]", "encryption.recipients[2]"]
        );

        let plain = EncryptionConfig::default();
        let mut problems = ConfigProblems::default();
        plain.validate_for_shipping("encryption", false, &mut problems);
        assert!(problems.is_empty());
        plain.validate_for_shipping("encryption", true, &mut problems);
        let text = problems.to_string();
        assert!(text.contains("encryption.recipients"), "{text}");
        assert!(text.contains("encryption.require_encryption"), "{text}");
    }
}
