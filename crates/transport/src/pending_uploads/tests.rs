use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn upload(key: &str, initiated: &str) -> String {
    format!("<Upload><Key>{key}</Key><UploadId>id-{key}</UploadId><Initiator><ID>x</ID></Initiator><StorageClass>STANDARD</StorageClass><Initiated>{initiated}</Initiated></Upload>")
}

fn page(truncated: bool, next: Option<(&str, &str)>, uploads: &[String]) -> String {
    let next = next.map_or_else(String::new, |(k, u)| {
        format!("<NextKeyMarker>{k}</NextKeyMarker><NextUploadIdMarker>{u}</NextUploadIdMarker>")
    });
    format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListMultipartUploadsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>{next}<MaxUploads>2</MaxUploads><IsTruncated>{truncated}</IsTruncated>{}</ListMultipartUploadsResult>",
            uploads.concat()
        )
}

#[test]
fn only_uploads_older_than_the_grace_expire() {
    let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let pending = |key: &str, initiated: &str| PendingUpload {
        key: key.into(),
        upload_id: "u".into(),
        initiated: at(initiated),
    };
    let (expired, kept) = expired_uploads(
        vec![
            pending("old", "2030-01-01T11:49:59Z"),
            pending("young", "2030-01-01T11:50:01Z"),
            pending("ahead", "2030-01-01T12:05:00Z"),
        ],
        at("2030-01-01T12:00:00Z"),
        Duration::from_secs(600),
    );
    assert_eq!(expired, vec![pending("old", "2030-01-01T11:49:59Z")]);
    assert_eq!(kept, 2);
}

/// A stub S3 endpoint that answers each request with the next of `pages` (with `Date`)
/// and hands back the request lines it saw. Moto never truncates a listing of uploads and
/// always reports the same `Initiated`, so pagination and the store's clock need this.
async fn stub_s3(pages: Vec<String>, date: &str) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let date = date.to_string();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        for body in pages {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "request cut short");
                request.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&request).to_string();
            assert!(
                text.to_ascii_lowercase()
                    .contains("authorization: aws4-hmac-sha256"),
                "{text}"
            );
            seen.push(text.lines().next().unwrap().to_string());
            let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nDate: {date}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            socket.write_all(answer.as_bytes()).await.unwrap();
        }
        seen
    });
    (endpoint, task)
}

fn s3_config(endpoint: &str, credentials: &std::path::Path) -> StoreConfig {
    serde_json::from_value(serde_json::json!({
        "type": "s3",
        "bucket": "b",
        "prefix": "dr",
        "endpoint": endpoint,
        "path_style": true,
        "credentials_file": credentials,
        "request_timeout": "10s",
    }))
    .unwrap()
}

#[tokio::test]
async fn a_truncated_listing_is_followed_and_ages_go_by_the_stores_clock() {
    let credentials = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        credentials.path(),
        "[default]\naws_access_key_id = k\naws_secret_access_key = s\n",
    )
    .unwrap();
    let first = page(
        true,
        Some(("dr/prod/snapshots/b", "id-dr/prod/snapshots/b")),
        &[
            upload("dr/prod/snapshots/a", "2030-01-01T10:00:00.000Z"),
            upload("dr/prod/snapshots/b", "2030-01-01T11:59:00.000Z"),
        ],
    );
    // A key outside the folder, as a misbehaving store might list it: never taken.
    let second = page(
        false,
        None,
        &[
            upload("dr/prod/segments/g1/c", "2030-01-01T09:00:00.000Z"),
            upload("dr/prod2/snapshots/d", "2030-01-01T09:00:00.000Z"),
        ],
    );
    let (endpoint, stub) = stub_s3(vec![first, second], "Tue, 01 Jan 2030 12:00:00 GMT").await;
    let layout = SnapshotLayout::new("dr", "prod").unwrap();
    let lister = UploadLister::new(&s3_config(&endpoint, credentials.path()), &layout).unwrap();
    let (uploads, now) = lister.list(&CancellationToken::new()).await.unwrap();
    let keys: Vec<_> = uploads.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "dr/prod/snapshots/a",
            "dr/prod/snapshots/b",
            "dr/prod/segments/g1/c"
        ]
    );
    assert_eq!(
        now,
        "2030-01-01T12:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    let (expired, kept) = expired_uploads(uploads, now, Duration::from_secs(600));
    let expired: Vec<_> = expired.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(expired, ["dr/prod/snapshots/a", "dr/prod/segments/g1/c"]);
    assert_eq!(kept, 1);
    let seen = stub.await.unwrap();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[0].starts_with("GET /b?uploads=&prefix=dr%2Fprod%2F "),
        "{}",
        seen[0]
    );
    assert!(
        seen[1].contains(
            "key-marker=dr%2Fprod%2Fsnapshots%2Fb&upload-id-marker=id-dr%2Fprod%2Fsnapshots%2Fb"
        ),
        "{}",
        seen[1]
    );
}

#[test]
fn uploads_are_listed_at_the_bucket_object_store_uses_on_s3_and_oci() {
    let credentials = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        credentials.path(),
        "[default]\naws_access_key_id = k\naws_secret_access_key = s\n",
    )
    .unwrap();
    let layout = SnapshotLayout::new("", "prod").unwrap();
    let url = |config: serde_json::Value| {
        let mut config = config;
        config["credentials_file"] = serde_json::json!(credentials.path());
        let lister = UploadLister::new(&serde_json::from_value(config).unwrap(), &layout).unwrap();
        (lister.bucket_url, lister.region, lister.prefix)
    };
    assert_eq!(
        url(serde_json::json!({"type": "s3", "bucket": "dr", "region": "eu-west-1"})),
        (
            "https://dr.s3.eu-west-1.amazonaws.com".to_string(),
            "eu-west-1".to_string(),
            "prod/".to_string()
        )
    );
    assert_eq!(
        url(
            serde_json::json!({"type": "s3", "bucket": "dr", "path_style": true,
                "endpoint": "https://minio.example:9000/"})
        )
        .0,
        "https://minio.example:9000/dr"
    );
    // OCI: path style on the namespace's S3-compatible endpoint.
    assert_eq!(
        url(
            serde_json::json!({"type": "oci", "bucket": "dr", "namespace": "axaxnpcrorw5",
                "region": "eu-frankfurt-1"})
        ),
        (
            "https://axaxnpcrorw5.compat.objectstorage.eu-frankfurt-1.oraclecloud.com/dr"
                .to_string(),
            "eu-frankfurt-1".to_string(),
            "prod/".to_string()
        )
    );
}

#[tokio::test]
async fn a_truncated_listing_without_a_marker_is_an_error_not_a_loop() {
    let credentials = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        credentials.path(),
        "[default]\naws_access_key_id = k\naws_secret_access_key = s\n",
    )
    .unwrap();
    let (endpoint, _stub) =
        stub_s3(vec![page(true, None, &[])], "Tue, 01 Jan 2030 12:00:00 GMT").await;
    let layout = SnapshotLayout::new("dr", "prod").unwrap();
    let lister = UploadLister::new(&s3_config(&endpoint, credentials.path()), &layout).unwrap();
    let error = lister.list(&CancellationToken::new()).await.unwrap_err();
    assert!(
        matches!(
            error,
            TransportError::ListUploads {
                source: UploadListError::NoMarker,
                ..
            }
        ),
        "{error}"
    );
}
