//! Kubernetes-shaped data for etcd, deterministic from a seed: keys
//! `/registry/<resource>/<namespace>/<name>`, values with the `k8s\0` magic of kube-apiserver's
//! protobuf storage and a protobuf-like body that mixes what real objects hold: repeated
//! structure and JSON (managed fields, configuration) that compresses well, names and labels
//! from a small vocabulary, and random parts (uids, hashes, secret data, addresses) that do not.
//! Kinds come in a real cluster's proportions and sizes (Pods, Events, ConfigMaps, Secrets…).
//! At the typical sizes ([`FillSpec::TYPICAL_VALUE_BYTES`]) zstd -3 shrinks a snapshot about
//! 2.8×, like a real control plane's.
//!
//! The e2e tests write a fixed number of objects ([`EtcdCluster::fill`]); `bench/run.sh` and the
//! promote benchmark fill until etcd's database reaches a size ([`fill_to_db_size`], also the
//! `etcd-fill` tool).

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Txn, TxnOp};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::EtcdCluster;

/// What to write: objects `0..objects` of the generator seeded with `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillSpec {
    /// Number of objects.
    pub objects: usize,
    /// Mean size of a value in bytes. Each kind keeps its share of it (a Pod about 1.5×, an
    /// Event about a fifth); no value is smaller than its metadata (about 1.3 KB).
    pub value_bytes: usize,
    /// Seed of the content: the same seed gives the same objects.
    pub seed: u64,
}

impl FillSpec {
    /// The mean value size of a real cluster's mix of kinds (the weighted mean of their
    /// typical sizes); `bench/run.sh` fills with it.
    pub const TYPICAL_VALUE_BYTES: usize = 4_116;

    /// `objects` values of about 1 KiB (small and quick, for tests).
    pub fn objects(objects: usize) -> Self {
        Self {
            objects,
            value_bytes: 1024,
            seed: 1,
        }
    }

    /// Enough objects of about `value_bytes` to add up to about `total_bytes`.
    pub fn total_bytes(total_bytes: u64, value_bytes: usize) -> Self {
        Self {
            objects: (total_bytes / value_bytes.max(1) as u64).max(1) as usize,
            value_bytes,
            seed: 1,
        }
    }

    /// `objects` values of a real cluster's typical sizes.
    pub fn typical(objects: usize) -> Self {
        Self {
            objects,
            value_bytes: Self::TYPICAL_VALUE_BYTES,
            seed: 1,
        }
    }
}

/// How to write: transactions in flight and their size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Transactions in flight at once.
    pub concurrency: usize,
    /// Upper bound of one transaction's key and value bytes (etcd refuses requests over
    /// 1.5 MiB by default); a transaction also holds at most 128 puts, etcd's limit.
    pub batch_bytes: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            batch_bytes: 768 * 1024,
        }
    }
}

/// What a fill wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Keys put.
    pub keys: u64,
    /// Bytes of keys and values put.
    pub bytes: u64,
    /// The revision after the last write.
    pub revision: i64,
    /// etcd's database size at the end (only [`fill_to_db_size`] asks for it; 0 otherwise).
    pub db_size: u64,
}

/// The key and value of object `index` of `spec`: the same for the same index and spec.
pub fn kubernetes_object(index: usize, spec: &FillSpec) -> (String, Vec<u8>) {
    // One generator per object, seeded from (seed, index): objects can be made in any order
    // and by any number of writers.
    let seed = spec.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (index as u64);
    ObjectGenerator {
        rng: SmallRng::seed_from_u64(seed),
    }
    .object(index, spec.value_bytes)
}

/// Writes objects `indices` of `spec` through `client`, in transactions of up to
/// `options.batch_bytes`, `options.concurrency` at once. A failed transaction is retried a few
/// times (a member may be electing a leader).
pub async fn put_objects(
    client: &Client,
    spec: &FillSpec,
    indices: Range<usize>,
    options: WriteOptions,
) -> Result<Written, etcd_client::Error> {
    let next = Arc::new(AtomicU64::new(indices.start as u64));
    let end = indices.end as u64;
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..options.concurrency.max(1) {
        let mut kv = client.kv_client();
        let next = next.clone();
        let spec = *spec;
        writers.spawn(async move {
            let mut written = Written::default();
            loop {
                let mut ops = Vec::new();
                let mut bytes = 0usize;
                while bytes < options.batch_bytes && ops.len() < 128 {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= end {
                        break;
                    }
                    let (key, value) = kubernetes_object(index as usize, &spec);
                    bytes += key.len() + value.len();
                    ops.push(TxnOp::put(key, value, None));
                }
                if ops.is_empty() {
                    return Ok(written);
                }
                let count = ops.len() as u64;
                let mut attempt = 0;
                let response = loop {
                    match kv.txn(Txn::new().and_then(ops.clone())).await {
                        Ok(response) => break response,
                        Err(error) if attempt < 5 => {
                            attempt += 1;
                            eprintln!("fill: txn failed ({error}); retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(error) => return Err(error),
                    }
                };
                written.keys += count;
                written.bytes += bytes as u64;
                let revision = response.header().map(|h| h.revision()).unwrap_or(0);
                written.revision = written.revision.max(revision);
            }
        });
    }
    let mut total = Written::default();
    while let Some(result) = writers.join_next().await {
        let written =
            result.unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))?;
        total.keys += written.keys;
        total.bytes += written.bytes;
        total.revision = total.revision.max(written.revision);
    }
    Ok(total)
}

/// Writes objects of `value_bytes` and `seed` (indices 0, 1, …) until etcd reports a database
/// of at least `target_bytes`. It writes in rounds sized from what is still missing, then asks
/// etcd for the real file size (bbolt adds page and tree overhead to the keys and values);
/// `progress` hears after each round.
pub async fn fill_to_db_size(
    client: &Client,
    target_bytes: u64,
    value_bytes: usize,
    seed: u64,
    options: WriteOptions,
    mut progress: impl FnMut(&Written),
) -> Result<Written, etcd_client::Error> {
    let spec = FillSpec {
        objects: 0,
        value_bytes,
        seed,
    };
    let mut total = Written {
        db_size: database_size(client).await?,
        ..Written::default()
    };
    while total.db_size < target_bytes {
        let missing = target_bytes - total.db_size;
        let round_bytes = (missing * 3 / 4).max(16 * 1024 * 1024);
        let per_object = total
            .bytes
            .checked_div(total.keys)
            .unwrap_or(value_bytes as u64 + 80);
        let start = total.keys as usize;
        let count = (round_bytes / per_object.max(1)).max(1) as usize;
        let written = put_objects(client, &spec, start..start + count, options).await?;
        total.keys += written.keys;
        total.bytes += written.bytes;
        total.revision = total.revision.max(written.revision);
        total.db_size = database_size(client).await?;
        progress(&total);
    }
    Ok(total)
}

async fn database_size(client: &Client) -> Result<u64, etcd_client::Error> {
    let status = client.maintenance_client().status().await?;
    Ok(status.db_size().max(0) as u64)
}

/// Writes `spec`'s objects through `client` with the default [`WriteOptions`]; returns the
/// revision after the last write. Panics when etcd refuses them (a test harness).
pub async fn fill_kubernetes_shaped(client: &Client, spec: &FillSpec) -> i64 {
    put_objects(client, spec, 0..spec.objects, WriteOptions::default())
        .await
        .unwrap_or_else(|error| panic!("fill: {error}"))
        .revision
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

    /// Fills the cluster with objects of the typical sizes until its database reaches
    /// `target_bytes` (the quota must leave room for it).
    pub fn fill_to_db_size(&self, target_bytes: u64, seed: u64) -> Written {
        let (endpoints, options) = self.connect_parts();
        crate::block_on(async move {
            let client = Client::connect(endpoints, Some(options))
                .await
                .expect("connect to etcd");
            fill_to_db_size(
                &client,
                target_bytes,
                FillSpec::TYPICAL_VALUE_BYTES,
                seed,
                WriteOptions::default(),
                |_| {},
            )
            .await
            .unwrap_or_else(|error| panic!("fill: {error}"))
        })
    }
}

/// Words that names, labels and images are made of.
const WORDS: &[&str] = &[
    "api",
    "web",
    "frontend",
    "backend",
    "worker",
    "cache",
    "redis",
    "postgres",
    "kafka",
    "nginx",
    "ingress",
    "metrics",
    "prometheus",
    "grafana",
    "loki",
    "payments",
    "orders",
    "checkout",
    "auth",
    "search",
    "catalog",
    "billing",
    "notifier",
    "scheduler",
    "gateway",
    "proxy",
    "batch",
    "cron",
    "export",
    "import",
    "sync",
    "controller",
    "operator",
    "agent",
    "collector",
    "exporter",
];

const NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "monitoring",
    "logging",
    "ingress-nginx",
    "cert-manager",
    "payments",
    "orders",
    "checkout",
    "search",
    "platform",
    "data",
    "staging",
    "team-a",
    "team-b",
    "team-c",
];

/// Resource kinds, with their share of keys (percent) and typical value size in bytes.
const RESOURCES: &[(&str, &str, u32, usize)] = &[
    ("pods", "Pod", 30, 6_000),
    ("events", "Event", 20, 900),
    ("configmaps", "ConfigMap", 10, 9_000),
    ("secrets", "Secret", 8, 3_000),
    ("replicasets", "ReplicaSet", 10, 5_000),
    ("deployments", "Deployment", 5, 6_000),
    ("services/specs", "Service", 5, 1_500),
    ("endpointslices", "EndpointSlice", 5, 1_800),
    ("leases", "Lease", 4, 400),
    ("serviceaccounts", "ServiceAccount", 3, 500),
];

/// Makes one object from its own random stream.
struct ObjectGenerator {
    rng: SmallRng,
}

impl ObjectGenerator {
    fn word(&mut self) -> &'static str {
        WORDS[self.rng.random_range(0..WORDS.len())]
    }

    fn hex(&mut self, len: usize) -> String {
        const DIGITS: &[u8] = b"0123456789abcdef";
        (0..len)
            .map(|_| DIGITS[self.rng.random_range(0..16)] as char)
            .collect()
    }

    /// Object `serial`: a kind picked by its share, a body of about its typical size scaled to
    /// a mean of `value_bytes`.
    fn object(&mut self, serial: usize, value_bytes: usize) -> (String, Vec<u8>) {
        let weight_total: u32 = RESOURCES.iter().map(|r| r.2).sum();
        let mut pick = self.rng.random_range(0..weight_total);
        let &(resource, kind, _, typical) = RESOURCES
            .iter()
            .find(|r| {
                if pick < r.2 {
                    true
                } else {
                    pick -= r.2;
                    false
                }
            })
            .unwrap_or(&RESOURCES[0]);
        let namespace = NAMESPACES[self.rng.random_range(0..NAMESPACES.len())];
        let app = format!("{}-{}", self.word(), self.word());
        let name = format!("{app}-{}-{serial}", self.hex(10));
        let key = format!("/registry/{resource}/{namespace}/{name}");
        let size = (typical * value_bytes / FillSpec::TYPICAL_VALUE_BYTES).max(2);
        let body_size = self.rng.random_range(size / 2..size * 3 / 2);
        let value = self.value(kind, namespace, &app, &name, body_size);
        (key, value)
    }

    /// `k8s\0` + a protobuf `runtime.Unknown`: type meta, raw object, content type.
    fn value(
        &mut self,
        kind: &str,
        namespace: &str,
        app: &str,
        name: &str,
        size: usize,
    ) -> Vec<u8> {
        let mut object = Vec::with_capacity(size + 512);
        // ObjectMeta
        let mut meta = Vec::new();
        field_str(&mut meta, 1, name);
        field_str(&mut meta, 3, namespace);
        let uid = format!(
            "{}-{}-{}-{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(4),
            self.hex(4),
            self.hex(12)
        );
        field_str(&mut meta, 5, &uid);
        field_str(
            &mut meta,
            6,
            &self.rng.random_range(1_000_000..90_000_000u64).to_string(),
        );
        field_str(
            &mut meta,
            8,
            &format!(
                "2026-11-{:02}T{:02}:{:02}:{:02}Z",
                self.rng.random_range(1..29),
                self.rng.random_range(0..24),
                self.rng.random_range(0..60),
                self.rng.random_range(0..60)
            ),
        );
        for (label, value) in [
            ("app.kubernetes.io/name", app.to_string()),
            ("app.kubernetes.io/part-of", self.word().to_string()),
            ("pod-template-hash", self.hex(10)),
        ] {
            let mut entry = Vec::new();
            field_str(&mut entry, 1, label);
            field_str(&mut entry, 2, &value);
            field_bytes(&mut meta, 11, &entry);
        }
        // managedFields: fieldsV1 JSON, repetitive across objects, as in real clusters.
        let managed = format!(
            r#"{{"f:metadata":{{"f:labels":{{".":{{}},"f:app.kubernetes.io/name":{{}},"f:app.kubernetes.io/part-of":{{}}}},"f:ownerReferences":{{".":{{}},"k:{{\"uid\":\"{uid}\"}}":{{}}}}}},"f:spec":{{"f:containers":{{"k:{{\"name\":\"{app}\"}}":{{".":{{}},"f:image":{{}},"f:imagePullPolicy":{{}},"f:name":{{}},"f:ports":{{".":{{}},"k:{{\"containerPort\":8080,\"protocol\":\"TCP\"}}":{{".":{{}},"f:containerPort":{{}},"f:name":{{}},"f:protocol":{{}}}}}},"f:resources":{{".":{{}},"f:limits":{{".":{{}},"f:cpu":{{}},"f:memory":{{}}}},"f:requests":{{".":{{}},"f:cpu":{{}},"f:memory":{{}}}}}},"f:terminationMessagePath":{{}},"f:terminationMessagePolicy":{{}}}}}},"f:dnsPolicy":{{}},"f:enableServiceLinks":{{}},"f:restartPolicy":{{}},"f:schedulerName":{{}},"f:securityContext":{{}},"f:terminationGracePeriodSeconds":{{}}}}}}"#
        );
        let mut entry = Vec::new();
        field_str(&mut entry, 1, "kube-controller-manager");
        field_str(&mut entry, 2, "Update");
        field_str(&mut entry, 3, "apps/v1");
        field_str(&mut entry, 7, "FieldsV1");
        field_bytes(&mut entry, 8, managed.as_bytes());
        field_bytes(&mut meta, 17, &entry);
        field_bytes(&mut object, 1, &meta);

        // Spec and status: until the body reaches its size, alternate structured parts
        // (containers, env, conditions: compressible) with random ones (hashes, secret data,
        // addresses: not compressible), about one byte in four random.
        let mut spec = Vec::new();
        while spec.len() + object.len() < size {
            match self.rng.random_range(0..10) {
                0..=2 => {
                    let mut container = Vec::new();
                    field_str(&mut container, 1, app);
                    field_str(
                        &mut container,
                        2,
                        &format!(
                            "registry.example.com/{}/{app}:v1.{}.{}@sha256:{}",
                            self.word(),
                            self.rng.random_range(0..40),
                            self.rng.random_range(0..20),
                            self.hex(64)
                        ),
                    );
                    field_str(&mut container, 3, "/bin/server");
                    field_str(&mut container, 4, &format!("--listen=:8080 --metrics=:9090 --log-level=info --upstream=http://{}.{namespace}.svc.cluster.local:80", self.word()));
                    for _ in 0..self.rng.random_range(2..6) {
                        let mut env = Vec::new();
                        field_str(
                            &mut env,
                            1,
                            &format!(
                                "{}_{}",
                                self.word().to_uppercase(),
                                self.word().to_uppercase()
                            ),
                        );
                        field_str(
                            &mut env,
                            2,
                            &format!("{}-{}", self.word(), self.rng.random_range(0..1000)),
                        );
                        field_bytes(&mut container, 7, &env);
                    }
                    field_str(
                        &mut container,
                        8,
                        "requests: cpu 100m memory 128Mi; limits: cpu 500m memory 512Mi",
                    );
                    field_str(&mut container, 9, "/dev/termination-log");
                    field_str(&mut container, 10, "File");
                    field_str(&mut container, 14, "IfNotPresent");
                    field_bytes(&mut spec, 2, &container);
                }
                3..=4 => {
                    let mut condition = Vec::new();
                    let kinds = [
                        "Ready",
                        "ContainersReady",
                        "Initialized",
                        "PodScheduled",
                        "Available",
                        "Progressing",
                    ];
                    field_str(
                        &mut condition,
                        1,
                        kinds[self.rng.random_range(0..kinds.len())],
                    );
                    field_str(&mut condition, 2, "True");
                    field_str(
                        &mut condition,
                        4,
                        &format!(
                            "2026-11-{:02}T{:02}:{:02}:{:02}Z",
                            self.rng.random_range(1..29),
                            self.rng.random_range(0..24),
                            self.rng.random_range(0..60),
                            self.rng.random_range(0..60)
                        ),
                    );
                    field_str(&mut condition, 5, "MinimumReplicasAvailable");
                    field_str(
                        &mut condition,
                        6,
                        &format!(
                            "ReplicaSet \"{app}-{}\" has successfully progressed.",
                            self.hex(10)
                        ),
                    );
                    field_bytes(&mut spec, 5, &condition);
                }
                5..=6 => {
                    let config = format!(
                        "# {kind} {name}\nserver:\n  port: 8080\n  upstream: http://{}.{namespace}.svc.cluster.local\n  timeout: {}s\nlogging:\n  level: info\n  format: json\nfeatures:\n  {}: true\n  {}: false\n",
                        self.word(), self.rng.random_range(1..120), self.word(), self.word()
                    );
                    field_str(&mut spec, 6, &config);
                }
                7 => {
                    let ip = format!(
                        "10.{}.{}.{}",
                        self.rng.random_range(0..255),
                        self.rng.random_range(0..255),
                        self.rng.random_range(1..255)
                    );
                    field_str(&mut spec, 7, &ip);
                    field_str(&mut spec, 8, &format!("containerd://{}", self.hex(64)));
                }
                _ => {
                    // Secret data, tokens, certificates: random bytes.
                    let len = self.rng.random_range(200..1200);
                    let mut blob = vec![0u8; len];
                    self.rng.fill(&mut blob[..]);
                    field_bytes(&mut spec, 9, &blob);
                }
            }
        }
        field_bytes(&mut object, 2, &spec);

        let mut type_meta = Vec::new();
        field_str(
            &mut type_meta,
            1,
            if kind == "Deployment" || kind == "ReplicaSet" {
                "apps/v1"
            } else {
                "v1"
            },
        );
        field_str(&mut type_meta, 2, kind);
        let mut unknown = Vec::with_capacity(object.len() + 64);
        unknown.extend_from_slice(b"k8s\0");
        field_bytes(&mut unknown, 1, &type_meta);
        field_bytes(&mut unknown, 2, &object);
        field_str(&mut unknown, 3, "");
        field_str(&mut unknown, 4, "");
        unknown
    }
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited protobuf field.
fn field_bytes(out: &mut Vec<u8>, number: u32, data: &[u8]) {
    varint(out, u64::from(number) << 3 | 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn field_str(out: &mut Vec<u8>, number: u32, text: &str) {
    field_bytes(out, number, text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zstd_ratio(data: &[u8]) -> f64 {
        data.len() as f64 / zstd::bulk::compress(data, 3).unwrap().len() as f64
    }

    #[test]
    fn objects_are_deterministic_per_seed_and_index() {
        let spec = FillSpec::objects(100);
        assert_eq!(kubernetes_object(7, &spec), kubernetes_object(7, &spec));
        assert_ne!(kubernetes_object(7, &spec), kubernetes_object(8, &spec));
        let other_seed = FillSpec { seed: 2, ..spec };
        assert_ne!(
            kubernetes_object(7, &spec),
            kubernetes_object(7, &other_seed)
        );
        let keys: std::collections::HashSet<_> =
            (0..1000).map(|i| kubernetes_object(i, &spec).0).collect();
        assert_eq!(keys.len(), 1000, "keys are unique");
    }

    #[test]
    fn objects_are_kubernetes_shaped() {
        let spec = FillSpec::typical(2000);
        let mut kinds = std::collections::BTreeMap::new();
        for index in 0..spec.objects {
            let (key, value) = kubernetes_object(index, &spec);
            let resource = RESOURCES
                .iter()
                .find(|r| key.starts_with(&format!("/registry/{}/", r.0)))
                .unwrap_or_else(|| panic!("{key}: no known resource"));
            let rest = &key[format!("/registry/{}/", resource.0).len()..];
            let (namespace, name) = rest.split_once('/').unwrap();
            assert!(NAMESPACES.contains(&namespace), "{key}");
            assert!(name.ends_with(&format!("-{index}")), "{key}");
            assert!(value.starts_with(b"k8s\0"));
            // runtime.Unknown: type meta (apiVersion, kind) first.
            assert!(
                value
                    .windows(resource.1.len())
                    .take(40)
                    .any(|w| w == resource.1.as_bytes()),
                "{key}: kind {} not in the type meta",
                resource.1
            );
            *kinds.entry(resource.1).or_insert(0usize) += 1;
        }
        // The mix follows the shares: Pods the most common, every kind present.
        assert_eq!(kinds.len(), RESOURCES.len(), "{kinds:?}");
        assert!(kinds["Pod"] > kinds["Event"] && kinds["Event"] > kinds["ServiceAccount"]);
    }

    #[test]
    fn typical_sizes_average_out_and_compress_like_a_real_cluster() {
        let weights: u32 = RESOURCES.iter().map(|r| r.2).sum();
        let weighted: usize = RESOURCES.iter().map(|r| r.2 as usize * r.3).sum();
        assert_eq!(FillSpec::TYPICAL_VALUE_BYTES, weighted / weights as usize);

        let spec = FillSpec::typical(3000);
        let data: Vec<u8> = (0..spec.objects)
            .flat_map(|i| {
                let (key, value) = kubernetes_object(i, &spec);
                key.into_bytes().into_iter().chain(value)
            })
            .collect();
        let mean = data.len() / spec.objects;
        // Small kinds never go below their metadata, which lifts the mean a little.
        assert!((4_000..6_000).contains(&mean), "mean object {mean} bytes");
        // The bare keys and values: about 2.3×; etcd's file around them (page padding, tree
        // pages) compresses better, about 2.8× for the whole snapshot.
        let ratio = zstd_ratio(&data);
        assert!((2.0..2.7).contains(&ratio), "zstd -3 ratio {ratio:.2}");

        // Smaller values: the same mix, scaled down, never below the metadata.
        let small = FillSpec::objects(1000);
        let sizes: Vec<usize> = (0..small.objects)
            .map(|i| kubernetes_object(i, &small).1.len())
            .collect();
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        assert!((1_000..2_500).contains(&mean), "mean value {mean} bytes");
        assert!(*sizes.iter().min().unwrap() > 800);
    }
}
