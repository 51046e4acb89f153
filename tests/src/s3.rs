//! A real S3-compatible server: moto, on a free loopback port.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::net::wait_for_port;
use crate::{free_port, http_request, tools, HttpResponse};

/// Credentials the tests give etcd-dr for moto (moto accepts any).
pub const ACCESS_KEY_ID: &str = "etcd-dr-test";
/// See [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str = "etcd-dr-test-secret";

/// A running moto server, killed on drop. Its state lives in memory: a restart loses it.
pub struct MotoServer {
    port: u16,
    log: tempfile::NamedTempFile,
    process: Option<Child>,
}

impl MotoServer {
    /// Starts moto on a free port and waits until it answers.
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            log: tempfile::NamedTempFile::new().expect("moto log"),
            process: None,
        };
        server.spawn();
        server
    }

    /// Starts moto and creates `bucket`.
    pub fn with_bucket(bucket: &str) -> Self {
        let server = Self::start();
        server.create_bucket(bucket);
        server
    }

    fn spawn(&mut self) {
        let log = self.log.reopen().expect("moto log");
        let child = Command::new(&tools().moto_server)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log)
            .spawn()
            .expect("spawn moto_server");
        self.process = Some(child);
        assert!(
            wait_for_port(self.addr(), Duration::from_secs(30)),
            "moto_server did not listen on {}",
            self.addr()
        );
    }

    /// Kills the server (its state is lost).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed server again on the same port, empty.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "moto is running");
        self.spawn();
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) {
        let response = self.request("PUT", &format!("/{bucket}"));
        assert_eq!(response.status, 200, "create bucket: {}", response.text());
    }

    /// An unsigned request (moto does not check signatures).
    pub fn request(&self, method: &str, path: &str) -> HttpResponse {
        http_request(self.addr(), method, path, &[], b"").expect("request to moto")
    }

    /// Every object key under `prefix`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let response = self.request("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"));
        assert_eq!(response.status, 200, "list: {}", response.text());
        xml_values(&response.text(), "Key")
    }

    /// The keys of multipart uploads started and neither completed nor aborted.
    pub fn pending_multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let response = self.request("GET", &format!("/{bucket}?uploads"));
        assert_eq!(response.status, 200, "list uploads: {}", response.text());
        let text = response.text();
        text.split("<Upload>")
            .skip(1)
            .flat_map(|upload| xml_values(upload, "Key"))
            .collect()
    }

    /// An object's bytes.
    pub fn object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let response = self.request("GET", &format!("/{bucket}/{key}"));
        assert_eq!(response.status, 200, "get {key}: {}", response.text());
        response.body
    }

    /// The `[store]` section of an etcd-dr config for `bucket` on this server.
    pub fn config_section(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "[store]\ntype = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"{prefix}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true\nrequest_timeout = \"10s\"\nmax_retries = 2\n",
            self.endpoint()
        )
    }

    /// Environment variables that give etcd-dr credentials for this server.
    pub fn credentials_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ]
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The text of every `<tag>…</tag>` in `xml`, in order.
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(value, _)| value.to_string()))
        .collect()
}
