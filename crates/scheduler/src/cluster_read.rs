//! Reading the Kubernetes cluster's shape from the same etcd, at a snapshot's revision.

use etcd_client::{GetOptions, KvClient};
use etcd_dr_cluster_shape::{cluster_shape, ShapeKeys};
use etcd_dr_core::ClusterShape;
use tokio_util::sync::CancellationToken;

use crate::source::endpoint_error;
use crate::{EtcdSource, SourceError};

/// Objects per range request: Node objects are some KiB each, far below gRPC's 4 MiB per page.
const PAGE_LIMIT: i64 = 100;

impl EtcdSource {
    /// Reads the objects that describe the Kubernetes cluster from `endpoint` at `revision`
    /// (the snapshot's) and builds its shape; `None` when the etcd holds no Kubernetes
    /// objects under `prefix`. Every call is under the request timeout.
    pub async fn read_cluster_shape(
        &self,
        endpoint: &str,
        prefix: &str,
        revision: i64,
        cancel: &CancellationToken,
    ) -> Result<Option<ClusterShape>, SourceError> {
        let keys = ShapeKeys::new(prefix);
        let client = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(SourceError::Cancelled),
            client = self.connect(endpoint, Some(self.config.request_timeout)) => client?,
        };
        let mut kv = client.kv_client();
        let mut objects = Vec::new();
        for key in [&keys.kubeadm_config, &keys.kubelet_config] {
            let end = {
                let mut end = key.as_bytes().to_vec();
                end.push(0);
                end
            };
            objects.extend(
                self.range(&mut kv, endpoint, key.as_bytes(), &end, revision, cancel)
                    .await?,
            );
        }
        for prefix in [&keys.nodes_prefix, &keys.daemonsets_prefix] {
            let end = prefix_end(prefix.as_bytes());
            objects.extend(
                self.range(&mut kv, endpoint, prefix.as_bytes(), &end, revision, cancel)
                    .await?,
            );
        }
        Ok(cluster_shape(
            &keys,
            objects.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        ))
    }

    /// Every key and value in `[start, end)` at `revision`, page by page.
    async fn range(
        &self,
        kv: &mut KvClient,
        endpoint: &str,
        start: &[u8],
        end: &[u8],
        revision: i64,
        cancel: &CancellationToken,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, SourceError> {
        let mut objects = Vec::new();
        let mut from = start.to_vec();
        loop {
            let options = GetOptions::new()
                .with_range(end.to_vec())
                .with_revision(revision)
                .with_limit(PAGE_LIMIT);
            let call = kv.get(from.clone(), Some(options));
            let response = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(SourceError::Cancelled),
                answer = tokio::time::timeout(self.config.request_timeout, call) => answer
                    .map_err(|_| SourceError::Endpoint {
                        endpoint: endpoint.to_string(),
                        action: "range",
                        detail: format!("no answer within {:?}", self.config.request_timeout),
                    })?
                    .map_err(|e| endpoint_error(endpoint, "range", e))?,
            };
            for kv in response.kvs() {
                objects.push((kv.key().to_vec(), kv.value().to_vec()));
            }
            match response.kvs().last() {
                Some(last) if response.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(objects),
            }
        }
    }
}

/// The end of the range of keys starting with `prefix` (etcd's `prefix + 1`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_the_last_byte_that_can() {
        assert_eq!(
            prefix_end(b"/registry/minions/"),
            b"/registry/minions0".to_vec()
        );
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
