//! Every kind of store etcd-dr writes to, for suites that run the same scenario against each
//! (as object_store's shared backend tests do): a local directory, S3 on moto, and the OCI
//! settings (namespace, region, path-style, a customer secret key in a credentials file) with
//! only the endpoint pointed at moto.

use std::fmt;

use crate::files::files_under;
use crate::{EtcdDr, MotoServer};

/// Which store a scenario runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreBackend {
    /// `type = "local"`: a directory.
    Local,
    /// `type = "s3"`: a bucket on moto, credentials from the environment.
    S3,
    /// `type = "oci"`: OCI's S3-compatible client settings against moto, credentials from a
    /// credentials file only.
    Oci,
}

impl fmt::Display for StoreBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Local => "local",
            Self::S3 => "s3",
            Self::Oci => "oci",
        })
    }
}

enum Backing {
    Local(tempfile::TempDir),
    Moto {
        server: MotoServer,
        /// The OCI credentials file (OCI only).
        credentials: Option<tempfile::NamedTempFile>,
    },
}

/// A store of one [`StoreBackend`] with a bucket (or directory) ready, torn down on drop.
pub struct StoreUnderTest {
    backend: StoreBackend,
    prefix: String,
    backing: Backing,
}

/// The bucket of the moto-backed stores.
const BUCKET: &str = "dr-bucket";

impl StoreUnderTest {
    /// Starts a store of `backend` whose `[store]` section uses `prefix` (may be empty).
    pub fn start(backend: StoreBackend, prefix: &str) -> Self {
        let backing = match backend {
            StoreBackend::Local => {
                Backing::Local(tempfile::tempdir().expect("local store directory"))
            }
            StoreBackend::S3 => Backing::Moto {
                server: MotoServer::with_bucket(BUCKET),
                credentials: None,
            },
            StoreBackend::Oci => {
                let credentials = tempfile::NamedTempFile::new().expect("credentials file");
                std::fs::write(
                    credentials.path(),
                    "[oci]\naws_access_key_id = ocid1.credential.test\naws_secret_access_key = customer-secret\n",
                )
                .expect("write credentials file");
                Backing::Moto {
                    server: MotoServer::with_bucket(BUCKET),
                    credentials: Some(credentials),
                }
            }
        };
        Self {
            backend,
            prefix: prefix.to_string(),
            backing,
        }
    }

    /// Which kind of store this is.
    pub fn backend(&self) -> StoreBackend {
        self.backend
    }

    /// The `[store]` section of an etcd-dr config for this store.
    pub fn config_section(&self) -> String {
        let prefix = &self.prefix;
        match &self.backing {
            Backing::Local(dir) => format!(
                "[store]\ntype = \"local\"\npath = \"{}\"\nprefix = \"{prefix}\"\n",
                dir.path().display()
            ),
            Backing::Moto {
                server,
                credentials: None,
            } => server.config_section(BUCKET, prefix),
            Backing::Moto {
                server,
                credentials: Some(credentials),
            } => format!(
                "[store]\ntype = \"oci\"\nbucket = \"{BUCKET}\"\nprefix = \"{prefix}\"\nnamespace = \"axaxnpcrorw5\"\nregion = \"eu-frankfurt-1\"\nendpoint = \"{}\"\ncredentials_file = \"{}\"\nprofile = \"oci\"\n",
                server.endpoint(),
                credentials.path().display()
            ),
        }
    }

    /// An etcd-dr configuration for `cluster` with an `[etcd]` section, this store and `extra`
    /// TOML. For OCI the environment holds no S3 keys: the credentials file must be what is used.
    pub fn etcd_dr(&self, cluster: &str, etcd: &str, extra: &str) -> EtcdDr {
        let dr = EtcdDr::new(&format!(
            "cluster = \"{cluster}\"\n{extra}\n{etcd}\n{}",
            self.config_section()
        ));
        match self.backend {
            StoreBackend::Oci => dr
                .env("AWS_ACCESS_KEY_ID", "")
                .env("AWS_SECRET_ACCESS_KEY", ""),
            StoreBackend::Local | StoreBackend::S3 => dr,
        }
    }

    /// Every object key (with the prefix) that starts with `key_prefix`, sorted. For the local
    /// store that is every file under the directory: a staged upload left behind shows here too.
    pub fn keys(&self, key_prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = match &self.backing {
            Backing::Local(dir) => files_under(dir.path()),
            Backing::Moto { server, .. } => server.keys(BUCKET, key_prefix),
        };
        keys.retain(|key| key.starts_with(key_prefix));
        keys.sort();
        keys
    }

    /// Uploads started and neither completed nor aborted: moto's pending multipart uploads, or
    /// object_store's staged `<name>#<n>` files in a local directory.
    pub fn pending_uploads(&self) -> Vec<String> {
        match &self.backing {
            Backing::Local(dir) => files_under(dir.path())
                .into_iter()
                .filter(|path| path.contains('#'))
                .collect(),
            Backing::Moto { server, .. } => server.pending_multipart_uploads(BUCKET),
        }
    }
}
