//! Kubernetes-shaped data for etcd: keys `/registry/<resource>/<namespace>/<name>`, values that
//! look like what the API server stores (protobuf behind the `k8s\0` magic, JSON for custom
//! resources), deterministic from a seed so tests can compare, partly compressible like real
//! objects (names, labels, repeated field names, a few random identifiers).

use std::time::Duration;

use etcd_client::{Client, Txn, TxnOp};

use crate::EtcdCluster;

/// What to write.
#[derive(Debug, Clone, Copy)]
pub struct FillSpec {
    /// Number of objects.
    pub objects: usize,
    /// Approximate size of each value in bytes.
    pub value_bytes: usize,
    /// Seed of the content.
    pub seed: u64,
}

impl FillSpec {
    /// `objects` values of about 1 KiB.
    pub fn objects(objects: usize) -> Self {
        Self {
            objects,
            value_bytes: 1024,
            seed: 1,
        }
    }

    /// Enough objects of `value_bytes` to add up to about `total_bytes`.
    pub fn total_bytes(total_bytes: u64, value_bytes: usize) -> Self {
        Self {
            objects: (total_bytes / value_bytes.max(1) as u64).max(1) as usize,
            value_bytes,
            seed: 1,
        }
    }
}

/// (resource path, kind, is a custom resource stored as JSON)
const RESOURCES: [(&str, &str, bool); 9] = [
    ("pods", "Pod", false),
    ("secrets", "Secret", false),
    ("configmaps", "ConfigMap", false),
    ("deployments", "Deployment", false),
    ("services/specs", "Service", false),
    ("events", "Event", false),
    ("leases", "Lease", false),
    ("serviceaccounts", "ServiceAccount", false),
    ("cert-manager.io/certificates", "Certificate", true),
];

const NAMESPACES: [&str; 8] = [
    "kube-system",
    "default",
    "monitoring",
    "ingress-nginx",
    "team-payments",
    "team-search",
    "team-platform",
    "cert-manager",
];

const WORDS: [&str; 16] = [
    "app.kubernetes.io/name",
    "controller-revision-hash",
    "containerPort",
    "imagePullPolicy",
    "IfNotPresent",
    "registry.k8s.io/pause:3.9",
    "resources",
    "requests",
    "memory",
    "readinessProbe",
    "httpGet",
    "terminationMessagePath",
    "/dev/termination-log",
    "serviceAccountName",
    "ownerReferences",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// splitmix64: small, fast, deterministic.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The key and value of object `index` of `spec`.
pub fn kubernetes_object(index: usize, spec: &FillSpec) -> (String, Vec<u8>) {
    let mut rng = Mix(spec.seed ^ (index as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let (resource, kind, custom) = RESOURCES[index % RESOURCES.len()];
    let namespace = NAMESPACES[(rng.next() % NAMESPACES.len() as u64) as usize];
    let name = format!(
        "{}-{index:07}-{:05x}",
        kind.to_lowercase(),
        rng.next() % 0xFFFFF
    );
    let key = format!("/registry/{resource}/{namespace}/{name}");
    let uid = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        rng.next() as u32,
        rng.next() as u16,
        rng.next() as u16,
        rng.next() as u16,
        rng.next() & 0xFFFF_FFFF_FFFF
    );
    let mut value = Vec::with_capacity(spec.value_bytes + 64);
    if custom {
        value.extend_from_slice(
            format!(
                "{{\"apiVersion\":\"cert-manager.io/v1\",\"kind\":\"{kind}\",\"metadata\":{{\"name\":\"{name}\",\"namespace\":\"{namespace}\",\"uid\":\"{uid}\"}},\"spec\":{{\"data\":\""
            )
            .as_bytes(),
        );
    } else {
        value.extend_from_slice(b"k8s\0");
        // TypeMeta, then ObjectMeta-like fields, protobuf-framed.
        let type_meta = format!("\n\x02v1\x12{}{kind}", kind.len() as u8 as char);
        value.push(0x0a);
        value.push(type_meta.len() as u8);
        value.extend_from_slice(type_meta.as_bytes());
        for field in [name.as_str(), namespace, uid.as_str()] {
            value.push(0x12);
            value.push(field.len() as u8);
            value.extend_from_slice(field.as_bytes());
        }
    }
    while value.len() < spec.value_bytes {
        let roll = rng.next();
        if roll.is_multiple_of(4) {
            // Identifiers and hashes: incompressible.
            value.extend_from_slice(format!("{:016x}", rng.next()).as_bytes());
        } else {
            value.extend_from_slice(WORDS[(roll % WORDS.len() as u64) as usize].as_bytes());
        }
        value.push(if custom { b' ' } else { 0x1a });
    }
    value.truncate(spec.value_bytes.max(16));
    if custom {
        value.extend_from_slice(b"\"}}");
    }
    (key, value)
}

/// Writes `spec`'s objects through `client` in batched transactions, several at once. Returns
/// the revision after the last write.
pub async fn fill_kubernetes_shaped(client: &Client, spec: &FillSpec) -> i64 {
    const BATCH: usize = 64;
    const WRITERS: usize = 4;
    let batches: Vec<std::ops::Range<usize>> = (0..spec.objects)
        .step_by(BATCH)
        .map(|start| start..(start + BATCH).min(spec.objects))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let writers = (0..WRITERS).map(|_| {
        let mut kv = client.kv_client();
        let batches = &batches;
        let next = &next;
        async move {
            let mut revision = 0;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(range) = batches.get(n) else {
                    return revision;
                };
                let ops: Vec<TxnOp> = range
                    .clone()
                    .map(|i| {
                        let (key, value) = kubernetes_object(i, spec);
                        TxnOp::put(key, value, None)
                    })
                    .collect();
                let mut attempt = 0;
                let response = loop {
                    match kv.txn(Txn::new().and_then(ops.clone())).await {
                        Ok(response) => break response,
                        Err(error) if attempt < 5 => {
                            attempt += 1;
                            eprintln!("fill: txn failed ({error}); retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(error) => panic!("fill: txn failed: {error}"),
                    }
                };
                revision = revision.max(response.header().map(|h| h.revision()).unwrap_or(0));
            }
        }
    });
    futures::future::join_all(writers)
        .await
        .into_iter()
        .max()
        .unwrap_or(0)
}

impl EtcdCluster {
    /// Fills the cluster with `spec`'s objects; returns the revision after the last write.
    pub fn fill(&self, spec: FillSpec) -> i64 {
        let (endpoints, options) = self.connect_parts();
        crate::block_on(async move {
            let client = Client::connect(endpoints, Some(options))
                .await
                .expect("connect to etcd");
            fill_kubernetes_shaped(&client, &spec).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_deterministic_and_kubernetes_shaped() {
        let spec = FillSpec::objects(100);
        let (key, value) = kubernetes_object(7, &spec);
        assert_eq!(kubernetes_object(7, &spec), (key.clone(), value.clone()));
        assert!(key.starts_with("/registry/"), "{key}");
        assert_eq!(key.split('/').count(), 5, "{key}");
        assert!(value.starts_with(b"k8s\0"));
        assert!((1000..1100).contains(&value.len()), "{}", value.len());
        let (crd_key, crd_value) = kubernetes_object(8, &spec);
        assert!(crd_key.starts_with("/registry/cert-manager.io/certificates/"));
        assert!(crd_value.starts_with(b"{\"apiVersion\""));
        let keys: std::collections::HashSet<_> =
            (0..100).map(|i| kubernetes_object(i, &spec).0).collect();
        assert_eq!(keys.len(), 100);
    }
}
