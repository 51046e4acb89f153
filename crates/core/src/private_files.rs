//! Local files that hold secrets or plain cluster data: created owner-only whatever the umask,
//! and secret files that others can read refused.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every plain copy (etcd data, unpacked keys) written to local disk.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of every directory that holds plain copies.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates a new file (never replacing one) readable and writable by its owner only. The mode is
/// set again after creation, so a restrictive or permissive umask changes nothing.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(PRIVATE_FILE_MODE))?;
    Ok(file)
}

/// Creates `path` (and missing parents) as a directory only its owner can enter; an existing
/// directory is narrowed to 0700.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(PRIVATE_DIR_MODE))
}

/// Why a file that holds a secret may not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file's metadata could not be read.
    #[error("{what} `{path}` cannot be read: {source}")]
    Unreadable {
        /// What the file holds (`the signing key file`).
        what: String,
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Group or others may read or write it.
    #[error("{what} `{path}` has mode {mode:04o}: others may read it; run `chmod 600 {path}` (or set {setting} = \"warn\" to accept it with a warning)")]
    TooOpen {
        /// What the file holds.
        what: String,
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
        /// The setting that relaxes the check.
        setting: &'static str,
    },
}

/// What to do with a secret file that group or others can read (`secret_file_modes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretFileModes {
    /// Refuse it (the default).
    #[default]
    Refuse,
    /// Use it, with a warning.
    Warn,
}

/// The setting that relaxes [`check_secret_file`].
pub const SECRET_FILE_MODES_SETTING: &str = "secret_file_modes";

/// Checks that only the owner can read or write `path` (what: `the signing key file`); with
/// [`SecretFileModes::Warn`], a wider mode is returned as a warning text instead of an error.
pub fn check_secret_file(
    path: &Path,
    what: &str,
    policy: SecretFileModes,
) -> Result<Option<String>, SecretFileError> {
    let metadata = std::fs::metadata(path).map_err(|source| SecretFileError::Unreadable {
        what: what.to_string(),
        path: path.display().to_string(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    let error = SecretFileError::TooOpen {
        what: what.to_string(),
        path: path.display().to_string(),
        mode,
        setting: SECRET_FILE_MODES_SETTING,
    };
    match policy {
        SecretFileModes::Refuse => Err(error),
        SecretFileModes::Warn => Ok(Some(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_and_dirs_are_owner_only_whatever_the_mode_asked() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_private_dir(&nested).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&nested), 0o700);
        std::fs::set_permissions(&nested, Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);

        let file = nested.join("copy.db");
        drop(create_private_file(&file).unwrap());
        assert_eq!(mode(&file), 0o600);
        assert_eq!(
            create_private_file(&file).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn secret_files_others_can_read_are_refused_or_warned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "secret").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        assert!(check_secret_file(&path, "the key", SecretFileModes::Refuse)
            .unwrap()
            .is_none());
        std::fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        let error = check_secret_file(&path, "the key", SecretFileModes::Refuse)
            .unwrap_err()
            .to_string();
        assert!(error.contains("mode 0640"), "{error}");
        assert!(error.contains("chmod 600"), "{error}");
        let warning = check_secret_file(&path, "the key", SecretFileModes::Warn)
            .unwrap()
            .unwrap();
        assert!(warning.contains("others may read it"), "{warning}");
        assert!(
            check_secret_file(&dir.path().join("none"), "the key", SecretFileModes::Warn).is_err()
        );
    }
}
