//! Leftovers of interrupted uploads, swept after `retention.incomplete_grace`: pending multipart
//! uploads on S3 and OCI (a failed abort, a SIGKILL: invisible to listings, billed until
//! aborted) and `<name>#<n>` staging files on a local store ([`crate::sweep_local_staging`]).
//!
//! object_store lists objects, not uploads, so the listing is one signed
//! `GET <bucket>?uploads&prefix=<prefix>/<cluster>/` per page, signed with the store's own
//! credentials; aborts go through object_store's `MultipartStore`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use etcd_dr_core::printable;
use object_store::aws::{AmazonS3, AmazonS3ConfigKey, AwsAuthorizer};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::ObjectStore;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::{
    cancellable, producer_lease_path, LeaseKeeper, ProducerLease, SnapshotLayout, StoreConfig,
    StoreKind, TransportError,
};

/// Pages a sweep lists at most (1,000 uploads each): a bound, not an expected size.
const MAX_PAGES: usize = 1000;

/// What a sweep of upload leftovers did.
#[derive(Debug, Default)]
pub struct LeftoverSweep {
    /// Removed: pending uploads (`<key> (upload <id>)`) or local staging files, as printable
    /// text (control characters escaped).
    pub removed: Vec<String>,
    /// Leftovers older than the grace that could not be removed, with why.
    pub failed: Vec<(String, TransportError)>,
    /// Leftovers younger than the grace, kept (pending uploads only; maybe still running).
    pub kept: usize,
}

/// Why listing pending multipart uploads failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadListError {
    /// The store's credentials could not be obtained or the request not signed.
    #[error("signing the request: {0}")]
    Sign(#[source] object_store::Error),
    /// The bucket's URL (from the store's endpoint) does not parse.
    #[error("bucket URL `{0}` is not a URL")]
    BadUrl(String),
    /// The request could not be built.
    #[error("building the request: {0}")]
    Request(#[source] http::Error),
    /// The request did not get an answer.
    #[error("request: {0}")]
    Http(#[source] reqwest::Error),
    /// The store answered with an error status.
    #[error("the store answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The answer is not a `ListMultipartUploadsResult`.
    #[error("unreadable answer: {0}")]
    Xml(#[source] quick_xml::DeError),
    /// The answer says there is more but gives no marker to continue from.
    #[error("a truncated listing without a next marker")]
    NoMarker,
    /// More pages than [`MAX_PAGES`].
    #[error("more than {MAX_PAGES} pages of pending uploads")]
    TooManyPages,
}

/// A multipart upload started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The object key it would create.
    pub key: String,
    /// The store's id of the upload.
    pub upload_id: String,
    /// When it was started (the store's clock).
    pub initiated: DateTime<Utc>,
}

/// How long the lease a sweep holds lives without a renewal (renewed every third of it).
const SWEEP_LEASE_TTL: Duration = Duration::from_secs(120);

/// Removes what interrupted uploads left under the cluster's folder (`<prefix>/<cluster>/`)
/// longer than `grace` ago: pending multipart uploads on `s3`/`oci` (ages by the store's own
/// clock), staging files on `local`. Uploads outside the cluster's folder are never touched.
///
/// On `s3`/`oci` the sweep aborts under the prefix's producer lease (as `host`; taken only when
/// some upload is old enough), so no upload it aborts can belong to a snapshot in progress;
/// while another producer holds it, this fails with [`TransportError::ProducerBusy`] and
/// aborts nothing. A listing failure is an error; a
/// failed abort is reported in [`LeftoverSweep::failed`].
pub async fn sweep_upload_leftovers(
    store: &Arc<dyn ObjectStore>,
    config: &StoreConfig,
    layout: &SnapshotLayout,
    grace: Duration,
    host: &str,
    cancel: &CancellationToken,
) -> Result<LeftoverSweep, TransportError> {
    if config.kind == StoreKind::Local {
        let Some(dir) = config.local_cluster_dir(layout) else {
            return Ok(LeftoverSweep::default());
        };
        let removed = tokio::task::spawn_blocking(move || crate::sweep_local_staging(&dir, grace))
            .await
            .map_err(|e| TransportError::Pipeline(format!("staging sweep thread: {e}")))??;
        return Ok(LeftoverSweep {
            removed: removed
                .iter()
                .map(|p| printable(&p.display().to_string()).into_owned())
                .collect(),
            ..LeftoverSweep::default()
        });
    }
    let lister = UploadLister::new(config, layout)?;
    // Nothing old enough: no lease taken, so producers are never kept waiting for nothing.
    let (uploads, now) = lister.list(cancel).await?;
    let (expired, kept) = expired_uploads(uploads, now, grace);
    if expired.is_empty() {
        return Ok(LeftoverSweep {
            kept,
            ..LeftoverSweep::default()
        });
    }
    // Listed again under the lease: an upload seen before it may have been a producer's.
    let lease = ProducerLease::acquire(store, layout, host, SWEEP_LEASE_TTL, cancel).await?;
    let leased = cancel.child_token();
    let keeper = LeaseKeeper::start(lease, leased.clone());
    let swept = sweep_pending_uploads(&lister, grace, &leased).await;
    keeper.release(cancel).await;
    match swept {
        Err(TransportError::Cancelled) if !cancel.is_cancelled() => {
            Err(TransportError::ProducerLeaseLost {
                key: producer_lease_path(layout).to_string(),
            })
        }
        swept => swept,
    }
}

async fn sweep_pending_uploads(
    lister: &UploadLister,
    grace: Duration,
    cancel: &CancellationToken,
) -> Result<LeftoverSweep, TransportError> {
    let (uploads, now) = lister.list(cancel).await?;
    let (expired, kept) = expired_uploads(uploads, now, grace);
    let mut sweep = LeftoverSweep {
        kept,
        ..LeftoverSweep::default()
    };
    for upload in expired {
        // Text from the store: escaped for terminals and logs.
        let name = format!(
            "{} (upload {})",
            printable(&upload.key),
            printable(&upload.upload_id)
        );
        match lister.abort(&upload, cancel).await {
            Ok(()) => {
                tracing::info!(upload = %name, initiated = %upload.initiated, "aborted a pending multipart upload");
                sweep.removed.push(name);
            }
            Err(TransportError::Cancelled) => return Err(TransportError::Cancelled),
            Err(error) => {
                tracing::warn!(upload = %name, %error, "could not abort a pending multipart upload");
                sweep.failed.push((name, error));
            }
        }
    }
    Ok(sweep)
}

/// Splits `uploads` into those started more than `grace` before `now` and a count of the rest.
fn expired_uploads(
    uploads: Vec<PendingUpload>,
    now: DateTime<Utc>,
    grace: Duration,
) -> (Vec<PendingUpload>, usize) {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let (expired, kept): (Vec<_>, Vec<_>) = uploads
        .into_iter()
        .partition(|u| now.signed_duration_since(u.initiated) > grace);
    (expired, kept.len())
}

/// Lists and aborts the pending uploads of one cluster's folder.
struct UploadLister {
    s3: AmazonS3,
    http: reqwest::Client,
    bucket_url: String,
    region: String,
    /// `<prefix>/<cluster>/`: the trailing slash keeps `prod2/` out of `prod`'s sweep.
    prefix: String,
}

impl UploadLister {
    fn new(config: &StoreConfig, layout: &SnapshotLayout) -> Result<Self, TransportError> {
        let builder = config.amazon_s3_builder()?;
        let value = |key| builder.get_config_value(&key);
        let bucket = value(AmazonS3ConfigKey::Bucket)
            .ok_or_else(|| TransportError::Config("store.bucket is required".into()))?;
        let region = value(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let virtual_hosted =
            value(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
        // As object_store builds it, so that listing and aborting reach the same bucket.
        let bucket_url = match (value(AmazonS3ConfigKey::Endpoint), virtual_hosted) {
            (Some(endpoint), true) => endpoint,
            (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let s3 = builder
            .build()
            .map_err(|e| TransportError::Config(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| TransportError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            s3,
            http,
            bucket_url,
            region,
            prefix: format!("{}/", layout.cluster_dir()),
        })
    }

    /// Every pending upload under the prefix, and the store's clock (`Date` of the first
    /// answer; this host's clock when absent).
    async fn list(
        &self,
        cancel: &CancellationToken,
    ) -> Result<(Vec<PendingUpload>, DateTime<Utc>), TransportError> {
        let failed = |source| TransportError::ListUploads {
            prefix: self.prefix.clone(),
            source,
        };
        let mut uploads = Vec::new();
        let mut store_now = None;
        let mut marker: Option<(String, String)> = None;
        for _ in 0..MAX_PAGES {
            let (page, date) = cancellable(cancel, self.list_page(marker.as_ref()))
                .await?
                .map_err(failed)?;
            store_now = store_now.or(Some(date));
            uploads.extend(
                page.uploads
                    .into_iter()
                    // Text from the store: only keys of our own folder are ever aborted.
                    .filter(|u| u.key.starts_with(&self.prefix))
                    .map(|u| PendingUpload {
                        key: u.key,
                        upload_id: u.upload_id,
                        initiated: u.initiated,
                    }),
            );
            if !page.is_truncated {
                return Ok((uploads, store_now.flatten().unwrap_or_else(Utc::now)));
            }
            let next = (
                page.next_key_marker.unwrap_or_default(),
                page.next_upload_id_marker.unwrap_or_default(),
            );
            if next.0.is_empty() || marker.as_ref() == Some(&next) {
                return Err(failed(UploadListError::NoMarker));
            }
            marker = Some(next);
        }
        Err(failed(UploadListError::TooManyPages))
    }

    /// One page of `ListMultipartUploads` after `marker` (key, upload id), and its `Date`.
    async fn list_page(
        &self,
        marker: Option<&(String, String)>,
    ) -> Result<(ListMultipartUploadsResult, Option<DateTime<Utc>>), UploadListError> {
        let mut url = reqwest::Url::parse(&self.bucket_url)
            .map_err(|_| UploadListError::BadUrl(self.bucket_url.clone()))?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("uploads", "");
            query.append_pair("prefix", &self.prefix);
            if let Some((key, upload_id)) = marker {
                query.append_pair("key-marker", key);
                query.append_pair("upload-id-marker", upload_id);
            }
        }
        let credential = self
            .s3
            .credentials()
            .get_credential()
            .await
            .map_err(UploadListError::Sign)?;
        let mut request = http::Request::builder()
            .method(http::Method::GET)
            .uri(url.as_str())
            .body(object_store::client::HttpRequestBody::from(Vec::new()))
            .map_err(UploadListError::Request)?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(UploadListError::Sign)?;
        let response = self
            .http
            .get(url)
            .headers(request.headers().clone())
            .send()
            .await
            .map_err(UploadListError::Http)?;
        let status = response.status();
        let date = response
            .headers()
            .get(http::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.with_timezone(&Utc));
        let body = response.text().await.map_err(UploadListError::Http)?;
        if !status.is_success() {
            return Err(UploadListError::Status {
                status: status.as_u16(),
                body: body.chars().take(300).collect(),
            });
        }
        let page = quick_xml::de::from_str(&body).map_err(UploadListError::Xml)?;
        Ok((page, date))
    }

    async fn abort(
        &self,
        upload: &PendingUpload,
        cancel: &CancellationToken,
    ) -> Result<(), TransportError> {
        let path = Path::parse(&upload.key)
            .map_err(|e| TransportError::store("abort multipart", &upload.key, e.into()))?;
        match cancellable(
            cancel,
            self.s3
                .abort_multipart(&path, &upload.upload_id.to_string()),
        )
        .await?
        {
            // Completed or aborted meanwhile: gone either way.
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(TransportError::store(
                "abort multipart",
                &upload.key,
                source,
            )),
        }
    }
}

/// The part of S3's `ListMultipartUploadsResult` a sweep needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListMultipartUploadsResult {
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<UploadEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadEntry {
    key: String,
    upload_id: String,
    initiated: DateTime<Utc>,
}

#[cfg(test)]
mod tests;
