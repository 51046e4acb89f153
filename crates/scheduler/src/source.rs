use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, SnapshotStreaming, TlsOptions};
use etcd_dr_core::{etcd_id_hex, EtcdMember, MemberStatus};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::{EtcdConfig, SourceError};

/// Streams snapshots out of one etcd cluster.
#[derive(Clone)]
pub struct EtcdSource {
    pub(crate) config: EtcdConfig,
    tls: Option<TlsOptions>,
}

/// What one endpoint's status RPC said.
#[derive(Debug, Clone)]
pub struct EndpointStatus {
    /// The endpoint asked.
    pub endpoint: String,
    /// etcd cluster id.
    pub cluster_id: u64,
    /// The member behind the endpoint.
    pub member_id: u64,
    /// The leader that member knows of.
    pub leader_id: u64,
    /// Server version.
    pub version: String,
    /// Backend size in bytes.
    pub db_size: i64,
    /// Current revision.
    pub revision: i64,
    /// Raft index.
    pub raft_index: u64,
    /// Raft term.
    pub raft_term: u64,
    /// True for a learner.
    pub is_learner: bool,
    /// Errors the member reports about itself (alarms such as NOSPACE).
    pub errors: Vec<String>,
}

impl EndpointStatus {
    /// True when this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.member_id == self.leader_id && self.leader_id != 0
    }
}

/// One endpoint's answer, or why it did not answer.
#[derive(Debug, Clone)]
pub struct EndpointReport {
    /// The endpoint.
    pub endpoint: String,
    /// Its status, or the error text.
    pub status: Result<EndpointStatus, String>,
}

/// The cluster as seen from every configured endpoint.
#[derive(Debug, Clone)]
pub struct ClusterSurvey {
    /// etcd cluster id.
    pub cluster_id: u64,
    /// Each configured endpoint's answer, in configuration order.
    pub endpoints: Vec<EndpointReport>,
    /// The member list, with each member's status where one of its endpoints answered.
    pub members: Vec<EtcdMember>,
}

impl ClusterSurvey {
    /// Endpoints to stream a snapshot from, best first: the leader, then healthy voting members
    /// by raft index (the most up to date first). Members reporting errors go last.
    pub fn candidates(&self) -> Vec<&EndpointStatus> {
        let mut healthy: Vec<&EndpointStatus> = self
            .endpoints
            .iter()
            .filter_map(|r| r.status.as_ref().ok())
            .collect();
        healthy.sort_by_key(|s| {
            (
                !s.errors.is_empty(),
                !s.is_leader(),
                s.is_learner,
                std::cmp::Reverse(s.raft_index),
            )
        });
        healthy
    }

    /// Highest revision any endpoint reported.
    pub fn revision(&self) -> Option<i64> {
        self.candidates().iter().map(|s| s.revision).max()
    }
}

/// The raw bytes of one snapshot as etcd streams them (its SHA-256 trailer included).
pub struct SnapshotChunks {
    endpoint: String,
    inner: BoxStream<'static, Result<Bytes, SourceError>>,
}

struct ChunkState {
    endpoint: String,
    client: Client,
    stream: Option<SnapshotStreaming>,
    /// What the server said it still had to send after its last message.
    remaining: Option<u64>,
    stall_timeout: Duration,
    cancel: CancellationToken,
    done: bool,
}

impl ChunkState {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, SourceError>> {
        if self.done {
            return None;
        }
        let result = self.receive().await;
        if !matches!(result, Some(Ok(_))) {
            self.done = true;
        }
        result
    }

    async fn receive(&mut self) -> Option<Result<Bytes, SourceError>> {
        loop {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => {
                    // Opening is under the same deadline as each message: a member that
                    // accepts the call and then sends nothing must not hold the run forever.
                    let opened = tokio::select! {
                        biased;
                        _ = self.cancel.cancelled() => return Some(Err(SourceError::Cancelled)),
                        opened = tokio::time::timeout(self.stall_timeout, self.client.snapshot()) => opened,
                    };
                    match opened {
                        Ok(Ok(stream)) => self.stream.insert(stream),
                        Ok(Err(e)) => {
                            return Some(Err(endpoint_error(&self.endpoint, "snapshot", e)))
                        }
                        Err(_) => {
                            return Some(Err(SourceError::Stalled {
                                endpoint: self.endpoint.clone(),
                                seconds: self.stall_timeout.as_secs(),
                            }))
                        }
                    }
                }
            };
            let next = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Some(Err(SourceError::Cancelled)),
                next = tokio::time::timeout(self.stall_timeout, stream.message()) => next,
            };
            match next {
                Err(_) => {
                    return Some(Err(SourceError::Stalled {
                        endpoint: self.endpoint.clone(),
                        seconds: self.stall_timeout.as_secs(),
                    }))
                }
                Ok(Err(e)) => return Some(Err(endpoint_error(&self.endpoint, "snapshot", e))),
                Ok(Ok(None)) => {
                    return match self.remaining {
                        Some(0) => None,
                        remaining => Some(Err(SourceError::Truncated {
                            endpoint: self.endpoint.clone(),
                            remaining: remaining.unwrap_or(0),
                        })),
                    }
                }
                Ok(Ok(Some(mut message))) => {
                    self.remaining = Some(message.remaining_bytes());
                    if !message.blob().is_empty() {
                        // Take the message's buffer rather than copy it (etcd-client's
                        // `pub-response-field`): one copy less of every snapshot byte.
                        return Some(Ok(Bytes::from(std::mem::take(&mut message.0.blob))));
                    }
                }
            }
        }
    }
}

impl EtcdSource {
    /// Reads the TLS material named in `config`.
    pub fn new(config: EtcdConfig) -> Result<Self, SourceError> {
        let read = |field: &'static str, path: &std::path::Path| {
            std::fs::read(path).map_err(|source| SourceError::TlsFile {
                field,
                path: path.display().to_string(),
                source,
            })
        };
        let tls = if config.uses_tls() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &config.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read("etcd.ca_file", ca)?));
            }
            if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
                tls = tls.identity(Identity::from_pem(
                    read("etcd.cert_file", cert)?,
                    read("etcd.key_file", key)?,
                ));
            }
            if let Some(name) = &config.server_name {
                tls = tls.domain_name(name.clone());
            }
            Some(tls)
        } else {
            None
        };
        Ok(Self { config, tls })
    }

    /// The configured endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.config.endpoints
    }

    fn options(&self, request_timeout: Option<Duration>) -> ConnectOptions {
        let mut options = ConnectOptions::new().with_connect_timeout(self.config.connect_timeout);
        if let Some(timeout) = request_timeout {
            options = options.with_timeout(timeout);
        }
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls.clone());
        }
        options
    }

    pub(crate) async fn connect(
        &self,
        endpoint: &str,
        request_timeout: Option<Duration>,
    ) -> Result<Client, SourceError> {
        let connecting = Client::connect([endpoint], Some(self.options(request_timeout)));
        match tokio::time::timeout(self.config.connect_timeout, connecting).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(endpoint_error(endpoint, "connect", e)),
            Err(_) => Err(SourceError::Endpoint {
                endpoint: endpoint.to_string(),
                action: "connect",
                detail: format!("no answer within {:?}", self.config.connect_timeout),
            }),
        }
    }

    /// A client of every configured endpoint without a request timeout, for long-lived calls
    /// (the replication watch); the client moves to another endpoint when one fails.
    pub async fn long_lived_client(&self) -> Result<Client, SourceError> {
        let endpoints = self.config.endpoints.join(",");
        let connecting = Client::connect(&self.config.endpoints, Some(self.options(None)));
        match tokio::time::timeout(self.config.connect_timeout, connecting).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(endpoint_error(&endpoints, "connect", e)),
            Err(_) => Err(SourceError::Endpoint {
                endpoint: endpoints,
                action: "connect",
                detail: format!("no answer within {:?}", self.config.connect_timeout),
            }),
        }
    }

    async fn endpoint_status(
        &self,
        endpoint: &str,
    ) -> Result<(EndpointStatus, Client), SourceError> {
        let mut client = self
            .connect(endpoint, Some(self.config.request_timeout))
            .await?;
        let call = client.status();
        let status = tokio::time::timeout(self.config.request_timeout, call)
            .await
            .map_err(|_| SourceError::Endpoint {
                endpoint: endpoint.to_string(),
                action: "status",
                detail: format!("no answer within {:?}", self.config.request_timeout),
            })?
            .map_err(|e| endpoint_error(endpoint, "status", e))?;
        let header = status.header().ok_or_else(|| SourceError::Endpoint {
            endpoint: endpoint.to_string(),
            action: "status",
            detail: "response without header".into(),
        })?;
        Ok((
            EndpointStatus {
                endpoint: endpoint.to_string(),
                cluster_id: header.cluster_id(),
                member_id: header.member_id(),
                leader_id: status.leader(),
                version: status.version().to_string(),
                db_size: status.db_size(),
                revision: header.revision(),
                raft_index: status.raft_index(),
                raft_term: header.raft_term(),
                is_learner: status.is_learner(),
                errors: status.errors().to_vec(),
            },
            client,
        ))
    }

    /// Asks every endpoint for its status (concurrently) and one healthy member for the member
    /// list. Fails only when no endpoint answers or the endpoints disagree on the cluster.
    pub async fn survey(&self, cancel: &CancellationToken) -> Result<ClusterSurvey, SourceError> {
        let asks = self
            .config
            .endpoints
            .iter()
            .map(|e| self.endpoint_status(e));
        let answers = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(SourceError::Cancelled),
            answers = futures::future::join_all(asks) => answers,
        };
        let mut reports = Vec::new();
        let mut clients = Vec::new();
        for (endpoint, answer) in self.config.endpoints.iter().zip(answers) {
            match answer {
                Ok((status, client)) => {
                    clients.push((status.is_leader(), client));
                    reports.push(EndpointReport {
                        endpoint: endpoint.clone(),
                        status: Ok(status),
                    });
                }
                Err(e) => reports.push(EndpointReport {
                    endpoint: endpoint.clone(),
                    status: Err(e.to_string()),
                }),
            }
        }
        let healthy: Vec<&EndpointStatus> = reports
            .iter()
            .filter_map(|r| r.status.as_ref().ok())
            .collect();
        let Some(first) = healthy.first() else {
            return Err(SourceError::NoEndpoint {
                failures: reports
                    .iter()
                    .filter_map(|r| r.status.as_ref().err().cloned())
                    .collect(),
            });
        };
        let cluster_id = first.cluster_id;
        if healthy.iter().any(|s| s.cluster_id != cluster_id) {
            return Err(SourceError::MixedClusters {
                detail: healthy
                    .iter()
                    .map(|s| format!("{} → {}", s.endpoint, etcd_id_hex(s.cluster_id)))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }

        // Prefer the leader's view of the member list.
        clients.sort_by_key(|(is_leader, _)| !is_leader);
        let mut members = None;
        let mut failures = Vec::new();
        for (_, mut client) in clients {
            match tokio::time::timeout(self.config.request_timeout, client.member_list()).await {
                Ok(Ok(list)) => {
                    members = Some(list.members().to_vec());
                    break;
                }
                Ok(Err(e)) => failures.push(e.to_string()),
                Err(_) => failures.push("member list timed out".to_string()),
            }
        }
        let members = members.ok_or(SourceError::NoEndpoint { failures })?;
        let leader_id = healthy.iter().find(|s| s.is_leader()).map(|s| s.member_id);
        let members = members
            .iter()
            .map(|m| {
                let status = healthy
                    .iter()
                    .find(|s| s.member_id == m.id())
                    .map(|s| MemberStatus {
                        endpoint: s.endpoint.clone(),
                        version: s.version.clone(),
                        db_size: s.db_size,
                        revision: s.revision,
                        raft_index: s.raft_index,
                    });
                EtcdMember {
                    id: etcd_id_hex(m.id()),
                    name: m.name().to_string(),
                    peer_urls: m.peer_urls().to_vec(),
                    client_urls: m.client_urls().to_vec(),
                    is_leader: Some(m.id()) == leader_id,
                    is_learner: m.is_learner(),
                    status,
                }
            })
            .collect();
        Ok(ClusterSurvey {
            cluster_id,
            endpoints: reports,
            members,
        })
    }

    /// Opens the snapshot stream on `endpoint`. The stream has no overall deadline (a large
    /// database takes a while) but fails when no data arrives for `stall_timeout`, the answer
    /// to the call itself included.
    pub async fn open_snapshot(
        &self,
        endpoint: &str,
        cancel: &CancellationToken,
    ) -> Result<SnapshotChunks, SourceError> {
        let client = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(SourceError::Cancelled),
            client = self.connect(endpoint, None) => client?,
        };
        let state = ChunkState {
            endpoint: endpoint.to_string(),
            client,
            stream: None,
            remaining: None,
            stall_timeout: self.config.stall_timeout,
            cancel: cancel.clone(),
            done: false,
        };
        let inner = futures::stream::unfold(state, |mut state| async move {
            state.next_chunk().await.map(|chunk| (chunk, state))
        })
        .boxed();
        Ok(SnapshotChunks {
            endpoint: endpoint.to_string(),
            inner,
        })
    }
}

impl SnapshotChunks {
    /// The endpoint the snapshot streams from.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

pub(crate) fn endpoint_error(
    endpoint: &str,
    action: &'static str,
    error: etcd_client::Error,
) -> SourceError {
    SourceError::Endpoint {
        endpoint: endpoint.to_string(),
        action,
        detail: error.to_string(),
    }
}

impl Stream for SnapshotChunks {
    type Item = Result<Bytes, SourceError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}
