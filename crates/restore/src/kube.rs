//! The few Kubernetes API calls a promotion makes: `/readyz`, rollout restarts (the same PATCH
//! `kubectl rollout restart` sends) and deleting pods by label. A small HTTP client with the
//! admin kubeconfig's CA and client certificate, or a bearer token.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Certificate, Identity, Method, StatusCode};
use serde_yaml_ng::Value;

use crate::{KubernetesConfig, PodSelector, PromoteError};

/// A client of the secondary's kube-apiserver.
#[derive(Debug, Clone)]
pub struct KubeClient {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

/// TLS material and server from a kubeconfig's current context.
#[derive(Default)]
struct KubeconfigParts {
    server: Option<String>,
    ca_pem: Option<Vec<u8>>,
    cert_pem: Option<Vec<u8>>,
    key_pem: Option<Vec<u8>>,
    token: Option<String>,
}

fn read_file(path: &Path) -> Result<Vec<u8>, PromoteError> {
    std::fs::read(path).map_err(|e| PromoteError::local_io("reading", path.display(), e))
}

fn named<'a>(list: Option<&'a Value>, name: &str, field: &str) -> Option<&'a Value> {
    let items = list?.as_sequence()?;
    items
        .iter()
        .find(|item| item.get("name").and_then(Value::as_str) == Some(name))
        .or_else(|| items.first())
        .and_then(|item| item.get(field))
}

/// Reads the current context of a kubeconfig: inline `*-data` (base64) or file references.
fn parse_kubeconfig(path: &Path) -> Result<KubeconfigParts, PromoteError> {
    let bad =
        |detail: String| PromoteError::Config(format!("kubeconfig `{}`: {detail}", path.display()));
    let text = read_file(path)?;
    let doc: Value = serde_yaml_ng::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    let current = doc
        .get("current-context")
        .and_then(Value::as_str)
        .unwrap_or("");
    let context = named(doc.get("contexts"), current, "context");
    let cluster_name = context
        .and_then(|c| c.get("cluster"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let user_name = context
        .and_then(|c| c.get("user"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let cluster = named(doc.get("clusters"), cluster_name, "cluster")
        .ok_or_else(|| bad("no cluster".into()))?;
    let user = named(doc.get("users"), user_name, "user");
    let base = path.parent().unwrap_or(Path::new("/"));
    let material =
        |node: Option<&Value>, data: &str, file: &str| -> Result<Option<Vec<u8>>, PromoteError> {
            let Some(node) = node else { return Ok(None) };
            if let Some(encoded) = node.get(data).and_then(Value::as_str) {
                return base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map(Some)
                    .map_err(|e| bad(format!("{data} is not base64: {e}")));
            }
            match node.get(file).and_then(Value::as_str) {
                Some(file) => read_file(&base.join(file)).map(Some),
                None => Ok(None),
            }
        };
    Ok(KubeconfigParts {
        server: cluster
            .get("server")
            .and_then(Value::as_str)
            .map(str::to_string),
        ca_pem: material(
            Some(cluster),
            "certificate-authority-data",
            "certificate-authority",
        )?,
        cert_pem: material(user, "client-certificate-data", "client-certificate")?,
        key_pem: material(user, "client-key-data", "client-key")?,
        token: user
            .and_then(|u| u.get("token"))
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

impl KubeClient {
    /// Builds the client: explicit files win over the kubeconfig's.
    pub fn new(config: &KubernetesConfig) -> Result<Self, PromoteError> {
        let mut parts = match &config.kubeconfig {
            Some(path) => parse_kubeconfig(path)?,
            None => KubeconfigParts::default(),
        };
        if let Some(path) = &config.ca_file {
            parts.ca_pem = Some(read_file(path)?);
        }
        if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
            parts.cert_pem = Some(read_file(cert)?);
            parts.key_pem = Some(read_file(key)?);
        }
        if let Some(path) = &config.token_file {
            let token = String::from_utf8_lossy(&read_file(path)?)
                .trim()
                .to_string();
            parts.token = Some(token);
        }
        let base = config.api_server.clone().or(parts.server).ok_or_else(|| {
            PromoteError::Config("[promote.kubernetes]: no API server URL".into())
        })?;
        let tls =
            |detail: String| PromoteError::Config(format!("[promote.kubernetes] TLS: {detail}"));
        let mut builder = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10));
        if let Some(ca) = &parts.ca_pem {
            let certs = Certificate::from_pem_bundle(ca).map_err(|e| tls(format!("CA: {e}")))?;
            builder = builder.tls_certs_only(certs);
        }
        if let (Some(cert), Some(key)) = (&parts.cert_pem, &parts.key_pem) {
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            builder = builder.identity(
                Identity::from_pem(&pem).map_err(|e| tls(format!("client certificate: {e}")))?,
            );
        }
        let client = builder.build().map_err(|e| tls(e.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            client,
            token: parts.token,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, String)>,
    ) -> Result<(StatusCode, String), PromoteError> {
        let action = format!("{method} {path}");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.map_err(|e| PromoteError::Kubernetes {
            action: action.clone(),
            detail: e.to_string(),
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Ok((status, text))
    }

    async fn call_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, String)>,
    ) -> Result<String, PromoteError> {
        let action = format!("{method} {path}");
        let (status, text) = self.call(method, path, body).await?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(PromoteError::Kubernetes {
                action,
                detail: format!("{status}: {}", text.chars().take(300).collect::<String>()),
            })
        }
    }

    /// `GET /readyz`: `Ok` on 200.
    pub async fn readyz(&self) -> Result<(), PromoteError> {
        self.call_ok(Method::GET, "/readyz", None).await.map(|_| ())
    }

    /// Rollout-restarts every object of `kind` (`deployments`, `daemonsets`, `statefulsets`) in
    /// every namespace, as `kubectl rollout restart` does: a strategic-merge PATCH of the pod
    /// template's `kubectl.kubernetes.io/restartedAt` annotation. Returns how many.
    pub async fn rollout_restart(
        &self,
        kind: &str,
        at: DateTime<Utc>,
    ) -> Result<usize, PromoteError> {
        let list = self
            .call_ok(Method::GET, &format!("/apis/apps/v1/{kind}"), None)
            .await?;
        let list: serde_json::Value =
            serde_json::from_str(&list).map_err(|e| PromoteError::Kubernetes {
                action: format!("GET /apis/apps/v1/{kind}"),
                detail: format!("not JSON: {e}"),
            })?;
        let stamp = at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let patch = serde_json::json!({
            "spec": { "template": { "metadata": { "annotations": {
                "kubectl.kubernetes.io/restartedAt": stamp
            } } } }
        })
        .to_string();
        let mut count = 0;
        for item in list["items"].as_array().into_iter().flatten() {
            let (Some(namespace), Some(name)) = (
                item["metadata"]["namespace"].as_str(),
                item["metadata"]["name"].as_str(),
            ) else {
                continue;
            };
            self.call_ok(
                Method::PATCH,
                &format!("/apis/apps/v1/namespaces/{namespace}/{kind}/{name}"),
                Some(("application/strategic-merge-patch+json", patch.clone())),
            )
            .await?;
            count += 1;
        }
        Ok(count)
    }

    /// Deletes the pods `selector` chooses (one delete-collection call). Returns how many the
    /// API server listed as deleted.
    pub async fn delete_pods(&self, selector: &PodSelector) -> Result<usize, PromoteError> {
        let query: String = url_encode(&selector.label_selector);
        let text = self
            .call_ok(
                Method::DELETE,
                &format!(
                    "/api/v1/namespaces/{}/pods?labelSelector={query}",
                    selector.namespace
                ),
                None,
            )
            .await?;
        let deleted = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["items"].as_array().map(Vec::len))
            .unwrap_or(0);
        Ok(deleted)
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_selectors() {
        assert_eq!(url_encode("k8s-app=kube-proxy"), "k8s-app%3Dkube-proxy");
        assert_eq!(url_encode("a in (b,c)"), "a%20in%20%28b%2Cc%29");
    }

    #[test]
    fn reads_a_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.conf");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(dir.path().join("token-ca.crt"), "CA FILE").unwrap();
        std::fs::write(
            &path,
            format!(
                r#"apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: https://wrong:6443
- name: kubernetes
  cluster:
    server: https://k8s-eu:6443
    certificate-authority: token-ca.crt
contexts:
- name: kubernetes-admin@kubernetes
  context:
    cluster: kubernetes
    user: kubernetes-admin
current-context: kubernetes-admin@kubernetes
users:
- name: kubernetes-admin
  user:
    client-certificate-data: {}
    client-key-data: {}
"#,
                b64("CERT"),
                b64("KEY")
            ),
        )
        .unwrap();
        let parts = parse_kubeconfig(&path).unwrap();
        assert_eq!(parts.server.as_deref(), Some("https://k8s-eu:6443"));
        assert_eq!(parts.ca_pem.as_deref(), Some(&b"CA FILE"[..]));
        assert_eq!(parts.cert_pem.as_deref(), Some(&b"CERT"[..]));
        assert_eq!(parts.key_pem.as_deref(), Some(&b"KEY"[..]));
        assert_eq!(parts.token, None);
    }
}
