//! Signed manifests: the primary signs each manifest with its Ed25519 key; every reader checks
//! the signature against the public keys it trusts, the cluster, and that what must be
//! encrypted is. age recipients give confidentiality only (anyone can encrypt to a public key);
//! the signature is what tells a reader that its primary wrote the snapshot.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use etcd_dr_core::{
    check_secret_file, ConfigProblems, ManifestSignature, NodeBundle, SecretFileModes,
    SnapshotManifest, StoredObject,
};
use serde::Deserialize;

use crate::TransportError;

/// Prefix of a public key's text form (`ed25519:<base64>`).
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";
/// Prefix of the secret key line in a signing key file.
const SECRET_KEY_PREFIX: &str = "ETCD-DR-SIGNING-KEY-ED25519:";

/// `[signing]`: who signs manifests and whose signatures readers accept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// The primary's signing key file (`etcd-dr keygen --signing`), owner-only: on the
    /// primary, never on the secondary.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Public keys (`ed25519:…`) whose signatures readers accept. More than one while a key is
    /// rotated. The key of `key_file`, when set, is trusted as well.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Accept manifests without a signature (written before signing existed, or by a primary
    /// without a key) and let a primary without `key_file` write them. Anyone who can write to
    /// the store can then plant a snapshot: an explicit, temporary opt-out for upgrades.
    #[serde(default)]
    pub allow_unsigned: bool,
}

impl SigningConfig {
    /// Reports every bad field under `field` (e.g. `signing`).
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        for (i, key) in self.trusted_keys.iter().enumerate() {
            if key.starts_with(SECRET_KEY_PREFIX) {
                // Never echo it: it is a secret.
                problems.push(
                    format!("{field}.trusted_keys[{i}]"),
                    "is a secret signing key: put only public keys (ed25519:…) here, and keep the key file on the primary",
                );
            } else if parse_public_key(key).is_err() {
                problems.push(
                    format!("{field}.trusted_keys[{i}]"),
                    "is not an Ed25519 public key (ed25519:<base64>); `etcd-dr keygen --signing` prints one",
                );
            }
        }
        if let Some(path) = &self.key_file {
            if !path.is_absolute() {
                problems.push(
                    format!("{field}.key_file"),
                    format!("`{}` must be an absolute path", path.display()),
                );
            }
        }
    }

    /// Problems that only matter where snapshots are read: without any trusted key, every
    /// snapshot would be refused, unless `allow_unsigned` says otherwise.
    pub fn validate_for_reading(&self, field: &str, problems: &mut ConfigProblems) {
        if self.trusted_keys.is_empty() && self.key_file.is_none() && !self.allow_unsigned {
            problems.push(
                format!("{field}.trusted_keys"),
                format!("no trusted signing key: every snapshot would be refused. Add the primary's public key (`etcd-dr keygen --signing` prints it; the primary sets {field}.key_file), or set {field}.allow_unsigned = true to accept unsigned snapshots (anyone who can write to the store can then plant one)"),
            );
        }
    }

    /// Problems that only matter where manifests are written (the primary).
    pub fn validate_for_shipping(&self, field: &str, problems: &mut ConfigProblems) {
        if self.key_file.is_none() && !self.allow_unsigned {
            problems.push(
                format!("{field}.key_file"),
                format!("the primary signs every manifest: create a key with `etcd-dr keygen --signing -o /etc/etcd-dr/signing.key`, set {field}.key_file to it and put the printed public key in the secondary's {field}.trusted_keys (or set {field}.allow_unsigned = true to write unsigned manifests)"),
            );
        }
    }

    /// The signer of `key_file`, `None` when it is not set.
    pub fn signer(&self, modes: SecretFileModes) -> Result<Option<ManifestSigner>, TransportError> {
        self.key_file
            .as_deref()
            .map(|path| ManifestSigner::load(path, modes))
            .transpose()
    }
}

/// Parses `ed25519:<base64>`.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let encoded = text
        .trim()
        .strip_prefix(PUBLIC_KEY_PREFIX)
        .ok_or_else(|| format!("does not start with `{PUBLIC_KEY_PREFIX}`"))?;
    let bytes: [u8; 32] = BASE64
        .decode(encoded)
        .map_err(|e| format!("not base64: {e}"))?
        .try_into()
        .map_err(|_| "not 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not a valid Ed25519 point: {e}"))
}

/// A public key's text form.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("{PUBLIC_KEY_PREFIX}{}", BASE64.encode(key.as_bytes()))
}

/// The primary's signing key.
pub struct ManifestSigner {
    key: SigningKey,
    public_key: String,
}

impl fmt::Debug for ManifestSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret key.
        f.debug_struct("ManifestSigner")
            .field("public_key", &self.public_key)
            .finish()
    }
}

impl ManifestSigner {
    /// Reads a signing key file (`# comments`, one `ETCD-DR-SIGNING-KEY-ED25519:` line). A file
    /// others can read is refused (or, with `modes` = warn, used with a warning).
    pub fn load(path: &Path, modes: SecretFileModes) -> Result<Self, TransportError> {
        if let Some(warning) = check_secret_file(path, "the signing key file", modes)
            .map_err(|e| TransportError::Config(e.to_string()))?
        {
            tracing::warn!("{warning}");
        }
        let text = std::fs::read_to_string(path).map_err(|source| TransportError::LocalIo {
            action: "reading the signing key file",
            path: path.display().to_string(),
            source,
        })?;
        let bad = |what: &str| {
            // The file's lines are secrets: never in the message.
            TransportError::Config(format!(
                "signing key file `{}`: {what}; `etcd-dr keygen --signing` makes one",
                path.display()
            ))
        };
        let mut keys = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'));
        let line = keys.next().ok_or_else(|| bad("holds no key"))?;
        if keys.next().is_some() {
            return Err(bad("holds more than one key"));
        }
        let seed: [u8; 32] = line
            .strip_prefix(SECRET_KEY_PREFIX)
            .and_then(|encoded| BASE64.decode(encoded).ok())
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| bad("the key line is not an etcd-dr Ed25519 signing key"))?;
        Ok(Self::from_seed(seed))
    }

    fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let public_key = public_key_text(&key.verifying_key());
        Self { key, public_key }
    }

    /// The public key readers put in `signing.trusted_keys`.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Signs `manifest` (replacing any signature it had).
    pub fn sign(&self, manifest: &mut SnapshotManifest) {
        manifest.signature = None;
        let signature = self.key.sign(&manifest.signed_payload());
        manifest.signature = Some(ManifestSignature::Ed25519 {
            public_key: self.public_key.clone(),
            signature: BASE64.encode(signature.to_bytes()),
        });
    }

    /// Signs bytes that are not a manifest (a replication segment's signed payload). The
    /// payload must start with its own domain tag, so that no signature is valid as another
    /// kind's.
    pub fn sign_detached(&self, payload: &[u8]) -> DetachedSignature {
        DetachedSignature {
            public_key: self.key.verifying_key().to_bytes(),
            signature: self.key.sign(payload).to_bytes(),
        }
    }
}

/// An Ed25519 signature carried beside what it signs (a segment's): the signer's public key and
/// the signature, raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetachedSignature {
    /// The signer's public key.
    pub public_key: [u8; 32],
    /// The signature.
    pub signature: [u8; 64],
}

/// A new signing key: the text of its key file and its public key.
pub fn generate_signing_key() -> (String, String) {
    let seed: [u8; 32] = rand::random();
    let signer = ManifestSigner::from_seed(seed);
    let file = format!(
        "# etcd-dr manifest signing key: keep it on the primary only (mode 0600)\n# public key: {}\n{SECRET_KEY_PREFIX}{}\n",
        signer.public_key,
        BASE64.encode(seed)
    );
    (file, signer.public_key)
}

/// What a reader accepts: manifests of its cluster, signed by a trusted key, with every object
/// encrypted when encryption is required.
#[derive(Clone)]
pub struct ManifestTrust {
    cluster: String,
    keys: Vec<(String, VerifyingKey)>,
    allow_unsigned: bool,
    require_encryption: bool,
}

impl fmt::Debug for ManifestTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManifestTrust")
            .field("cluster", &self.cluster)
            .field(
                "keys",
                &self.keys.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            )
            .field("allow_unsigned", &self.allow_unsigned)
            .field("require_encryption", &self.require_encryption)
            .finish()
    }
}

impl ManifestTrust {
    /// The trust `[signing]` describes for `cluster`: its trusted keys plus the public key of
    /// `signer` (the primary reads its own manifests). `require_encryption`: refuse manifests
    /// with a plain object.
    pub fn new(
        cluster: &str,
        config: &SigningConfig,
        signer: Option<&ManifestSigner>,
        require_encryption: bool,
    ) -> Result<Self, TransportError> {
        let mut keys = Vec::new();
        for (i, text) in config.trusted_keys.iter().enumerate() {
            let key = parse_public_key(text)
                .map_err(|e| TransportError::Config(format!("signing.trusted_keys[{i}]: {e}")))?;
            keys.push((public_key_text(&key), key));
        }
        if let Some(signer) = signer {
            if !keys.iter().any(|(text, _)| text == signer.public_key()) {
                keys.push((signer.public_key.clone(), signer.key.verifying_key()));
            }
        }
        Ok(Self {
            cluster: cluster.to_string(),
            keys,
            allow_unsigned: config.allow_unsigned,
            require_encryption,
        })
    }

    /// Trusts nothing: every manifest is refused (the default until a binary configures one).
    pub fn refuse_all() -> Self {
        Self {
            cluster: String::new(),
            keys: Vec::new(),
            allow_unsigned: false,
            require_encryption: true,
        }
    }

    /// Whether unsigned manifests are accepted.
    pub fn allows_unsigned(&self) -> bool {
        self.allow_unsigned
    }

    /// The cluster whose manifests (and segments) are accepted.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Checks a detached signature (a segment's) over `payload` by the same rules as a
    /// manifest's: refused when unsigned (unless `allow_unsigned`), signed by a key that is not
    /// trusted, or not matching `payload`.
    pub fn check_detached(
        &self,
        signature: Option<&DetachedSignature>,
        payload: &[u8],
    ) -> Result<(), String> {
        let Some(signature) = signature else {
            return if self.allow_unsigned {
                Ok(())
            } else {
                Err("it is not signed (signing.allow_unsigned is off)".into())
            };
        };
        let Some((_, key)) = self
            .keys
            .iter()
            .find(|(_, key)| key.as_bytes() == &signature.public_key)
        else {
            if self.keys.is_empty() && self.allow_unsigned {
                // Nothing to check it against: as good as unsigned, which is allowed.
                return Ok(());
            }
            return Err(format!(
                "it is signed by {}, which is not among signing.trusted_keys",
                format_args!("{PUBLIC_KEY_PREFIX}{}", BASE64.encode(signature.public_key))
            ));
        };
        key.verify_strict(payload, &Signature::from_bytes(&signature.signature))
            .map_err(|_| {
                "its signature does not match its content (changed after it was signed)".to_string()
            })
    }

    /// Checks `manifest`; the error names every reason it is refused.
    pub fn check(&self, manifest: &SnapshotManifest) -> Result<(), String> {
        let mut reasons = Vec::new();
        if let Err(reason) = self.check_signature(manifest) {
            reasons.push(reason);
        }
        if manifest.cluster != self.cluster {
            reasons.push(format!(
                "it belongs to cluster `{}`, not `{}`",
                escape(&manifest.cluster),
                self.cluster
            ));
        }
        if self.require_encryption {
            let mut plain: Vec<&StoredObject> = Vec::new();
            if manifest.stored.encryption.is_none() {
                plain.push(&manifest.stored);
            }
            for bundle in &manifest.nodes {
                if let NodeBundle::Stored { object, .. } = bundle {
                    if object.encryption.is_none() {
                        plain.push(object);
                    }
                }
            }
            if !plain.is_empty() {
                let names: Vec<String> = plain.iter().map(|o| escape(&o.name)).collect();
                reasons.push(format!(
                    "{} not encrypted, and encryption is required here (encryption.require_encryption, on whenever an identity file is set)",
                    names.join(", ") + if names.len() == 1 { " is" } else { " are" }
                ));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }

    fn check_signature(&self, manifest: &SnapshotManifest) -> Result<(), String> {
        let Some(signature) = &manifest.signature else {
            return if self.allow_unsigned {
                Ok(())
            } else {
                Err("it is not signed (signing.allow_unsigned is off)".into())
            };
        };
        let ManifestSignature::Ed25519 {
            public_key,
            signature,
        } = signature;
        let Some((_, key)) = self.keys.iter().find(|(text, _)| text == public_key.trim()) else {
            if self.keys.is_empty() && self.allow_unsigned {
                // Nothing to check it against: as good as unsigned, which is allowed.
                return Ok(());
            }
            return Err(format!(
                "it is signed by {}, which is not among signing.trusted_keys",
                escape(public_key)
            ));
        };
        let bytes: [u8; 64] = BASE64
            .decode(signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "its signature is not 64 bytes of base64".to_string())?;
        key.verify_strict(&manifest.signed_payload(), &Signature::from_bytes(&bytes))
            .map_err(|_| {
                "its signature does not match its content (changed after it was signed)".to_string()
            })
    }
}

/// Text from a manifest, safe to put in a message: control characters escaped, at most 200
/// characters.
fn escape(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(200)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
