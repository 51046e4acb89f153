//! The secondary's Kubernetes API, through kube-rs: kubeconfig loading (client certificates,
//! tokens, exec plugins), `/readyz` of each control-plane node's kube-apiserver, a real list,
//! Nodes' Ready conditions, rollout restarts (the same PATCH `kubectl rollout restart` sends),
//! and deleting pods by label.

use std::fmt::Debug;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use crate::{KubernetesConfig, PodSelector, PromoteError};

/// How many objects one list call asks for (the rest through `continue`).
const PAGE: u32 = 250;

/// A client of the secondary's kube-apiserver. The connection is made on first use (it needs
/// the async runtime); the configuration is read and checked when it is built.
#[derive(Clone)]
pub struct KubeClient {
    config: kube::Config,
    client: OnceCell<Client>,
    control_plane_servers: Vec<String>,
}

impl Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeClient")
            .field("server", &self.config.cluster_url)
            .finish()
    }
}

/// What a rollout restart of one kind did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolloutReport {
    /// `namespace/name` of each object restarted.
    pub restarted: Vec<String>,
    /// `namespace/name` of each object that could not be, and why.
    pub failed: Vec<(String, String)>,
}

fn bad_config(config: &KubernetesConfig, detail: impl std::fmt::Display) -> PromoteError {
    match &config.kubeconfig {
        Some(path) => PromoteError::Config(format!(
            "[promote.kubernetes] kubeconfig `{}`: {detail}",
            path.display()
        )),
        None => PromoteError::Config(format!("[promote.kubernetes]: {detail}")),
    }
}

fn api_error(action: impl Into<String>, error: kube::Error) -> PromoteError {
    PromoteError::Kubernetes {
        action: action.into(),
        detail: error.to_string(),
    }
}

impl KubeClient {
    /// Reads the kubeconfig (its current context, or `context`: a context it does not have is
    /// an error) and applies the explicit settings over it: `api_server`, `ca_file`,
    /// `cert_file`/`key_file`, `token_file`.
    pub fn new(settings: &KubernetesConfig) -> Result<Self, PromoteError> {
        let mut config = match &settings.kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path).map_err(|e| bad_config(settings, e))?;
                let options = KubeConfigOptions {
                    context: settings.context.clone(),
                    ..KubeConfigOptions::default()
                };
                // Loading does no I/O beyond the files already read: it completes at once.
                futures::executor::block_on(kube::Config::from_custom_kubeconfig(file, &options))
                    .map_err(|e| bad_config(settings, e))?
            }
            None => {
                let server = settings.api_server.as_deref().ok_or_else(|| {
                    bad_config(settings, "neither `api_server` nor `kubeconfig` is set")
                })?;
                kube::Config::new(
                    server
                        .parse()
                        .map_err(|e| bad_config(settings, format!("api_server `{server}`: {e}")))?,
                )
            }
        };
        if let Some(server) = &settings.api_server {
            config.cluster_url = server
                .parse()
                .map_err(|e| bad_config(settings, format!("api_server `{server}`: {e}")))?;
        }
        if let Some(ca) = &settings.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| PromoteError::local_io("reading", ca.display(), e))?;
            config.root_cert =
                Some(pem_to_der(&pem).map_err(|e| {
                    bad_config(settings, format!("ca_file `{}`: {e}", ca.display()))
                })?);
        }
        match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => {
                config.auth_info.client_certificate = Some(cert.display().to_string());
                config.auth_info.client_certificate_data = None;
                config.auth_info.client_key = Some(key.display().to_string());
                config.auth_info.client_key_data = None;
            }
            (None, None) => {}
            _ => {
                return Err(bad_config(
                    settings,
                    "`cert_file` and `key_file` go together: set both or neither",
                ))
            }
        }
        if let Some(path) = &settings.token_file {
            // Read here and trimmed: a token file usually ends in a newline, which is not
            // allowed in a header.
            let token = std::fs::read_to_string(path)
                .map_err(|e| PromoteError::local_io("reading", path.display(), e))?;
            let token = token.trim();
            if token.is_empty() {
                return Err(bad_config(
                    settings,
                    format!("token_file `{}` is empty", path.display()),
                ));
            }
            config.auth_info.token = Some(secrecy::SecretString::from(token.to_string()));
            config.auth_info.token_file = None;
        }
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(settings.request_timeout);
        config.reset_reader_on_write = true;
        config.write_timeout = Some(settings.request_timeout);
        Ok(Self {
            config,
            client: OnceCell::new(),
            control_plane_servers: settings.control_plane_servers.clone(),
        })
    }

    /// One client per control-plane kube-apiserver (`control_plane_servers`, same
    /// credentials), or this one when none are configured.
    pub fn control_plane(&self) -> Result<Vec<Self>, PromoteError> {
        if self.control_plane_servers.is_empty() {
            return Ok(vec![self.clone()]);
        }
        self.control_plane_servers
            .iter()
            .map(|server| {
                let mut config = self.config.clone();
                config.cluster_url = server.parse().map_err(|e| {
                    PromoteError::Config(format!(
                        "[promote.kubernetes] control_plane_servers: `{server}`: {e}"
                    ))
                })?;
                Ok(Self {
                    config,
                    client: OnceCell::new(),
                    control_plane_servers: Vec::new(),
                })
            })
            .collect()
    }

    /// The API server's URL.
    pub fn server(&self) -> String {
        self.config.cluster_url.to_string()
    }

    async fn client(&self) -> Result<Client, PromoteError> {
        self.client
            .get_or_try_init(|| async {
                // rustls finds two crypto providers in this build; pick one for the process.
                let _ = rustls::crypto::ring::default_provider().install_default();
                Client::try_from(self.config.clone()).map_err(|e| PromoteError::Kubernetes {
                    action: format!("connecting to {}", self.config.cluster_url),
                    detail: e.to_string(),
                })
            })
            .await
            .cloned()
    }

    /// `GET /readyz`: `Ok` on 200.
    pub async fn readyz(&self) -> Result<(), PromoteError> {
        let client = self.client().await?;
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| PromoteError::Kubernetes {
                action: "GET /readyz".into(),
                detail: e.to_string(),
            })?;
        client
            .request_text(request)
            .await
            .map(|_| ())
            .map_err(|e| api_error(format!("GET {}readyz", self.server()), e))
    }

    /// A real list (one namespace): the API serves from etcd, not only its health endpoint.
    pub async fn probe_list(&self) -> Result<(), PromoteError> {
        let api: Api<Namespace> = Api::all(self.client().await?);
        api.list_metadata(&ListParams::default().limit(1))
            .await
            .map(|_| ())
            .map_err(|e| api_error(format!("list namespaces on {}", self.server()), e))
    }

    /// Names of the Nodes whose Ready condition is not `True`, sorted, and how many Nodes
    /// there are.
    pub async fn nodes_not_ready(&self) -> Result<(Vec<String>, usize), PromoteError> {
        let api: Api<Node> = Api::all(self.client().await?);
        let mut not_ready = Vec::new();
        let mut total = 0;
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().limit(PAGE);
            if let Some(token) = &token {
                params = params.continue_token(token);
            }
            let page = api
                .list(&params)
                .await
                .map_err(|e| api_error("list nodes", e))?;
            for node in &page.items {
                total += 1;
                let ready = node
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                    .is_some_and(|c| c.status == "True");
                if !ready {
                    not_ready.push(node.metadata.name.clone().unwrap_or_default());
                }
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        not_ready.sort();
        Ok((not_ready, total))
    }

    /// Rollout-restarts every object of `kind` (`deployments`, `daemonsets`, `statefulsets`) in
    /// every namespace, as `kubectl rollout restart` does: a strategic-merge PATCH of the pod
    /// template's `kubectl.kubernetes.io/restartedAt` annotation. Lists page by page; one object
    /// failing does not stop the others. An error only when listing fails or `kind` is unknown.
    pub async fn rollout_restart(
        &self,
        kind: &str,
        at: DateTime<Utc>,
    ) -> Result<RolloutReport, PromoteError> {
        let client = self.client().await?;
        let stamp = at.to_rfc3339_opts(SecondsFormat::Secs, true);
        match kind {
            "deployments" => restart_all::<Deployment>(client, kind, &stamp).await,
            "daemonsets" => restart_all::<DaemonSet>(client, kind, &stamp).await,
            "statefulsets" => restart_all::<StatefulSet>(client, kind, &stamp).await,
            other => Err(PromoteError::Config(format!(
                "[promote.after] rollout_restart: unknown kind `{other}` (deployments, daemonsets, statefulsets)"
            ))),
        }
    }

    /// Deletes the pods `selector` chooses (one delete-collection call). Returns the
    /// `namespace/name` of each pod the API server listed as deleted, sorted.
    pub async fn delete_pods(&self, selector: &PodSelector) -> Result<Vec<String>, PromoteError> {
        let api: Api<Pod> = Api::namespaced(self.client().await?, &selector.namespace);
        let deleted = api
            .delete_collection(
                &DeleteParams::default(),
                &ListParams::default().labels(&selector.label_selector),
            )
            .await
            .map_err(|e| {
                api_error(
                    format!(
                        "delete pods {} in {}",
                        selector.label_selector, selector.namespace
                    ),
                    e,
                )
            })?;
        let mut names: Vec<String> = deleted
            .left()
            .map(|list| {
                list.items
                    .iter()
                    .map(|pod| {
                        format!(
                            "{}/{}",
                            pod.metadata
                                .namespace
                                .as_deref()
                                .unwrap_or(&selector.namespace),
                            pod.metadata.name.as_deref().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        Ok(names)
    }
}

async fn restart_all<K>(
    client: Client,
    kind: &str,
    stamp: &str,
) -> Result<RolloutReport, PromoteError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let all: Api<K> = Api::all(client.clone());
    let patch = serde_json::json!({
        "spec": { "template": { "metadata": { "annotations": {
            "kubectl.kubernetes.io/restartedAt": stamp
        } } } }
    });
    let mut report = RolloutReport::default();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE);
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        let page = all
            .list_metadata(&params)
            .await
            .map_err(|e| api_error(format!("list {kind}"), e))?;
        for item in &page.items {
            let (Some(namespace), Some(name)) = (&item.metadata.namespace, &item.metadata.name)
            else {
                continue;
            };
            let api: Api<K> = Api::namespaced(client.clone(), namespace);
            let key = format!("{namespace}/{name}");
            match api
                .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => report.restarted.push(key),
                Err(error) => report.failed.push((key, error.to_string())),
            }
        }
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    Ok(report)
}

/// The DER certificates of a PEM bundle.
fn pem_to_der(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<Vec<u8>> = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests;
