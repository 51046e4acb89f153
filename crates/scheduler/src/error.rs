/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A TLS file named in the configuration cannot be read.
    #[error("cannot read {field} `{path}`: {source}")]
    TlsFile {
        /// The config field (`etcd.ca_file`…).
        field: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting to or calling an endpoint failed.
    #[error("etcd endpoint {endpoint}: {action} failed: {detail}")]
    Endpoint {
        /// The endpoint.
        endpoint: String,
        /// What was attempted (`connect`, `status`, `member list`, `snapshot`).
        action: &'static str,
        /// The error text.
        detail: String,
    },
    /// No configured endpoint answered.
    #[error("no etcd endpoint answered: {}", .failures.join("; "))]
    NoEndpoint {
        /// Why each endpoint failed.
        failures: Vec<String>,
    },
    /// The endpoints belong to different etcd clusters.
    #[error("the configured endpoints belong to different etcd clusters: {detail}; list only one cluster's members in etcd.endpoints")]
    MixedClusters {
        /// Which endpoint reported which cluster id.
        detail: String,
    },
    /// The stream stopped delivering data for longer than the stall timeout.
    #[error("etcd endpoint {endpoint}: snapshot stream stalled for {seconds}s")]
    Stalled {
        /// The endpoint.
        endpoint: String,
        /// The stall timeout.
        seconds: u64,
    },
    /// The stream ended before `remaining_bytes` reached zero.
    #[error(
        "etcd endpoint {endpoint}: snapshot stream ended early ({remaining} bytes still announced)"
    )]
    Truncated {
        /// The endpoint.
        endpoint: String,
        /// Bytes the server had announced but not sent.
        remaining: u64,
    },
    /// Cancelled (shutdown).
    #[error("cancelled")]
    Cancelled,
}
