use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use etcd_dr_core::ConfigProblems;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use serde::Deserialize;

use crate::TransportError;

/// Which kind of store holds the snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A directory on this machine (the embedded default).
    Local,
    /// Amazon S3 or any S3-compatible server.
    S3,
    /// OCI Object Storage through its S3-compatible API.
    Oci,
}

/// Where snapshots are stored (`[store]`). Which fields apply depends on `type`; `validate`
/// names every missing or misplaced one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `local`, `s3` or `oci`.
    #[serde(rename = "type")]
    pub kind: StoreKind,
    /// Key prefix inside the bucket or directory (may be empty).
    #[serde(default)]
    pub prefix: String,
    /// `local`: the directory (created if missing).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `s3`, `oci`: the bucket.
    #[serde(default)]
    pub bucket: Option<String>,
    /// `s3`, `oci`: the region (`s3` defaults to `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// `s3`: endpoint URL of an S3-compatible server (AWS when absent). `oci`: overrides the
    /// endpoint built from namespace and region (realms outside `oraclecloud.com`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `s3`: path-style requests (`endpoint/bucket/key`) instead of virtual-host style.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// `oci`: the Object Storage namespace (tenancy name space).
    #[serde(default)]
    pub namespace: Option<String>,
    /// `s3`, `oci`: an AWS-style credentials file (`aws_access_key_id`,
    /// `aws_secret_access_key`); without it the `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
    /// environment variables are used.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Profile (section) of `credentials_file` to use.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Per-request timeout.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Retries of a failed request (5xx, connection errors) before giving up.
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
}

fn default_profile() -> String {
    "default".into()
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_retries() -> usize {
    5
}

/// The S3-compatible endpoint of OCI Object Storage for a namespace and region.
pub fn oci_s3_endpoint(namespace: &str, region: &str) -> String {
    format!("https://{namespace}.compat.objectstorage.{region}.oraclecloud.com")
}

impl StoreConfig {
    /// A local directory store (the embedded default).
    pub fn local(path: impl Into<PathBuf>) -> Self {
        Self {
            kind: StoreKind::Local,
            prefix: String::new(),
            path: Some(path.into()),
            bucket: None,
            region: None,
            endpoint: None,
            path_style: None,
            namespace: None,
            credentials_file: None,
            profile: default_profile(),
            request_timeout: default_request_timeout(),
            max_retries: default_max_retries(),
        }
    }

    /// Reports every missing or misplaced field under `field` (e.g. `store`).
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        let kind = match self.kind {
            StoreKind::Local => "local",
            StoreKind::S3 => "s3",
            StoreKind::Oci => "oci",
        };
        let mut require = |present: bool, name: &str, hint: &str| {
            if !present {
                problems.push(
                    format!("{field}.{name}"),
                    format!("required when {field}.type = \"{kind}\": {hint}"),
                );
            }
        };
        match self.kind {
            StoreKind::Local => {
                require(
                    self.path.is_some(),
                    "path",
                    "the directory snapshots go to, e.g. \"/var/lib/etcd-dr/snapshots\"",
                );
            }
            StoreKind::S3 => {
                require(self.bucket.is_some(), "bucket", "the bucket name");
            }
            StoreKind::Oci => {
                require(self.bucket.is_some(), "bucket", "the bucket name");
                require(
                    self.namespace.is_some(),
                    "namespace",
                    "the Object Storage namespace (`oci os ns get`)",
                );
                require(
                    self.region.is_some(),
                    "region",
                    "the region, e.g. \"eu-frankfurt-1\"",
                );
            }
        }
        let mut forbid = |present: bool, name: &str| {
            if present {
                problems.push(
                    format!("{field}.{name}"),
                    format!("does not apply when {field}.type = \"{kind}\"; remove it"),
                );
            }
        };
        match self.kind {
            StoreKind::Local => {
                forbid(self.bucket.is_some(), "bucket");
                forbid(self.region.is_some(), "region");
                forbid(self.endpoint.is_some(), "endpoint");
                forbid(self.path_style.is_some(), "path_style");
                forbid(self.namespace.is_some(), "namespace");
                forbid(self.credentials_file.is_some(), "credentials_file");
            }
            StoreKind::S3 => {
                forbid(self.path.is_some(), "path");
                forbid(self.namespace.is_some(), "namespace");
            }
            StoreKind::Oci => {
                forbid(self.path.is_some(), "path");
                forbid(self.path_style.is_some(), "path_style");
            }
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                problems.push(
                    format!("{field}.endpoint"),
                    "must be an http:// or https:// URL",
                );
            }
        }
        if self.prefix.split('/').any(|p| p == "." || p == "..") {
            problems.push(
                format!("{field}.prefix"),
                "must not contain `.` or `..` segments",
            );
        }
        problems.check_file(
            format!("{field}.credentials_file"),
            self.credentials_file.as_deref(),
        );
    }

    /// For a local store: the directory holding everything of this cluster (`<path>/<prefix>/
    /// <cluster>`: snapshots, segments, lease and fence objects), where staging leftovers may
    /// hide; `None` for other stores.
    pub fn local_cluster_dir(&self, layout: &crate::SnapshotLayout) -> Option<PathBuf> {
        let root = self
            .path
            .as_ref()
            .filter(|_| self.kind == StoreKind::Local)?;
        Some(
            layout
                .cluster_dir()
                .parts()
                .fold(root.clone(), |dir, part| dir.join(part.as_ref())),
        )
    }

    /// A human-readable description of where snapshots go, without credentials.
    pub fn describe(&self) -> String {
        match self.kind {
            StoreKind::Local => format!(
                "local directory {}",
                self.path.as_deref().unwrap_or(FsPath::new("?")).display()
            ),
            StoreKind::S3 => format!(
                "s3 bucket {} at {}",
                self.bucket.as_deref().unwrap_or("?"),
                self.endpoint
                    .as_deref()
                    .map_or(std::borrow::Cow::Borrowed("AWS"), without_userinfo)
            ),
            StoreKind::Oci => format!(
                "oci bucket {} in {}/{}",
                self.bucket.as_deref().unwrap_or("?"),
                self.namespace.as_deref().unwrap_or("?"),
                self.region.as_deref().unwrap_or("?")
            ),
        }
    }

    /// Builds the store client. Call after `validate` reported nothing.
    pub fn build(&self) -> Result<Arc<dyn ObjectStore>, TransportError> {
        match self.kind {
            StoreKind::Local => {
                let path = self
                    .path
                    .as_ref()
                    .ok_or_else(|| TransportError::Config("store.path is required".into()))?;
                prepare_local_store(path)?;
                // fsync of data, manifest and their directories before a write returns: a
                // manifest that counts as committed survives a power cut.
                let store = LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| {
                        TransportError::Config(format!("store.path `{}`: {e}", path.display()))
                    })?
                    .with_fsync(true);
                Ok(Arc::new(store))
            }
            StoreKind::S3 | StoreKind::Oci => Ok(Arc::new(self.amazon_s3()?)),
        }
    }

    /// The S3 client of an `s3` or `oci` store (its pending multipart uploads are listed and
    /// aborted through it); call after `validate` reported nothing.
    pub(crate) fn amazon_s3(&self) -> Result<AmazonS3, TransportError> {
        self.amazon_s3_builder()?
            .build()
            .map_err(|e| TransportError::Config(e.to_string()))
    }

    /// The fully configured S3 client builder of an `s3` or `oci` store.
    pub(crate) fn amazon_s3_builder(&self) -> Result<AmazonS3Builder, TransportError> {
        match self.kind {
            StoreKind::Local => Err(TransportError::Config(
                "a local store has no S3 client".into(),
            )),
            StoreKind::S3 => {
                let builder = self.s3_builder()?;
                let builder = match &self.endpoint {
                    Some(endpoint) => builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://")),
                    None => builder,
                };
                Ok(builder
                    .with_region(self.region.as_deref().unwrap_or("us-east-1"))
                    .with_virtual_hosted_style_request(!self.path_style.unwrap_or(false)))
            }
            StoreKind::Oci => {
                let (Some(namespace), Some(region)) = (&self.namespace, &self.region) else {
                    return Err(TransportError::Config(
                        "store.namespace and store.region are required for oci".into(),
                    ));
                };
                let endpoint = self
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| oci_s3_endpoint(namespace, region));
                Ok(self
                    .s3_builder()?
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint)
                    .with_region(region)
                    .with_virtual_hosted_style_request(false))
            }
        }
    }

    fn s3_builder(&self) -> Result<AmazonS3Builder, TransportError> {
        let bucket = self
            .bucket
            .as_ref()
            .ok_or_else(|| TransportError::Config("store.bucket is required".into()))?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                max_retries: self.max_retries,
                retry_timeout: self.request_timeout * (self.max_retries as u32 + 1),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(self.request_timeout)
                    .with_connect_timeout(Duration::from_secs(10)),
            );
        if let Some(file) = &self.credentials_file {
            let credentials = read_credentials_file(file, &self.profile)?;
            builder = builder
                .with_access_key_id(credentials.access_key_id)
                .with_secret_access_key(credentials.secret_access_key);
            if let Some(token) = credentials.session_token {
                builder = builder.with_token(token);
            }
        } else if self.kind == StoreKind::Oci
            && (std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
                || std::env::var_os("AWS_SECRET_ACCESS_KEY").is_none())
        {
            return Err(TransportError::Config(
                "oci needs a customer secret key: set store.credentials_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            ));
        }
        Ok(builder)
    }
}

struct StaticCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

/// Reads one profile of an AWS-style INI credentials file.
fn read_credentials_file(
    path: &FsPath,
    profile: &str,
) -> Result<StaticCredentials, TransportError> {
    let text = std::fs::read_to_string(path).map_err(|source| TransportError::LocalIo {
        action: "read store.credentials_file",
        path: path.display().to_string(),
        source,
    })?;
    parse_credentials(&text, profile).ok_or_else(|| {
        TransportError::Config(format!(
            "store.credentials_file `{}` has no [{profile}] section with aws_access_key_id and aws_secret_access_key",
            path.display()
        ))
    })
}

fn parse_credentials(text: &str, profile: &str) -> Option<StaticCredentials> {
    let mut in_profile = false;
    let (mut key_id, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = section.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            let value = value.trim().to_string();
            match name.trim() {
                "aws_access_key_id" => key_id = Some(value),
                "aws_secret_access_key" => secret = Some(value),
                "aws_session_token" => token = Some(value),
                _ => {}
            }
        }
    }
    Some(StaticCredentials {
        access_key_id: key_id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

/// `url` without `user:password@` (printed endpoints never carry credentials).
pub fn without_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return std::borrow::Cow::Borrowed(url);
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => std::borrow::Cow::Owned(format!("{scheme}://{}", &rest[at + 1..])),
        None => std::borrow::Cow::Borrowed(url),
    }
}

/// Creates a local store's directory owner-only (0700), so that the objects in it, plain ones
/// included, are out of others' reach whatever the umask; an existing directory that others can
/// enter is used with a warning (it may be shared on purpose, with a group).
fn prepare_local_store(path: &std::path::Path) -> Result<(), TransportError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |source| TransportError::LocalIo {
        action: "create store directory",
        path: path.display().to_string(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(metadata) => {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:04o}"),
                    "the local store's directory is open to others; snapshots in it may be read by them: chmod 700 it"
                );
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)))
            .map_err(io),
        Err(error) => Err(io(error)),
    }
}

#[cfg(test)]
mod tests;
