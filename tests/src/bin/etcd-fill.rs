//! `etcd-fill`: fills an etcd cluster with Kubernetes-shaped data until its database reaches a
//! target size, fast (concurrent transactions of many puts).
//!
//! Keys look like `/registry/<resource>/<namespace>/<name>`; values carry the `k8s\0` magic of
//! kube-apiserver's protobuf storage and a protobuf-like body that mixes what real objects hold:
//! repeated structure and JSON (managed fields, last-applied annotations) that compresses well,
//! names and labels from a small vocabulary, and random parts (uids, hashes, secret data, IPs)
//! that do not. A zstd -3 of the resulting snapshot shrinks it about 3 to 4 times, like a real
//! control plane's.
//!
//! ```text
//! etcd-fill --endpoint http://127.0.0.1:2379 --target-mib 512
//! ```
//!
//! Not a test: a tool for `bench/run.sh` and for tests that need a big database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use etcd_client::{Client, ConnectOptions, Txn, TxnOp};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Parser)]
#[command(about = "Fill etcd with Kubernetes-shaped keys until its database reaches a size.")]
struct Args {
    /// etcd client URL.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    endpoint: String,
    /// Stop once etcd reports a database of at least this many MiB.
    #[arg(long, default_value_t = 512)]
    target_mib: u64,
    /// Transactions in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Upper bound of one transaction's value bytes (etcd refuses requests over 1.5 MiB).
    #[arg(long, default_value_t = 768 * 1024)]
    batch_bytes: usize,
    /// Seed of the generator: the same seed gives the same data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = ConnectOptions::new().with_connect_timeout(std::time::Duration::from_secs(5));
    let mut client = Client::connect([args.endpoint.as_str()], Some(options))
        .await
        .with_context(|| format!("connecting to {}", args.endpoint))?;
    let target = args.target_mib * 1024 * 1024;
    let started = Instant::now();
    let written = Arc::new(AtomicU64::new(0));
    let keys = Arc::new(AtomicU64::new(0));

    let mut db_size = database_size(&mut client).await?;
    let mut round = 0u64;
    while db_size < target {
        // Write in rounds sized from what is still missing (values are most of the file), then
        // ask etcd for the real file size: bbolt adds page and tree overhead on top.
        let missing = target - db_size;
        let round_bytes = (missing * 3 / 4).max(16 * 1024 * 1024);
        let per_task = round_bytes / args.concurrency as u64;
        let mut tasks = Vec::new();
        for task in 0..args.concurrency {
            let mut kv = client.kv_client();
            let written = written.clone();
            let keys = keys.clone();
            let seed = args
                .seed
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(round << 16 | task as u64);
            let batch_bytes = args.batch_bytes;
            tasks.push(tokio::spawn(async move {
                let mut generator = ObjectGenerator::new(seed);
                let mut done = 0u64;
                while done < per_task {
                    let mut ops = Vec::new();
                    let mut bytes = 0usize;
                    // etcd allows 128 operations per transaction.
                    while bytes < batch_bytes && ops.len() < 128 {
                        let (key, value) = generator.next_object();
                        bytes += key.len() + value.len();
                        ops.push(TxnOp::put(key, value, None));
                    }
                    let count = ops.len() as u64;
                    kv.txn(Txn::new().and_then(ops)).await?;
                    done += bytes as u64;
                    written.fetch_add(bytes as u64, Ordering::Relaxed);
                    keys.fetch_add(count, Ordering::Relaxed);
                }
                Ok::<(), etcd_client::Error>(())
            }));
        }
        for task in tasks {
            task.await.context("filler task panicked")??;
        }
        db_size = database_size(&mut client).await?;
        round += 1;
        eprintln!(
            "etcd-fill: {} keys, {} MiB of values written, database {} MiB ({:.1}s)",
            keys.load(Ordering::Relaxed),
            written.load(Ordering::Relaxed) / (1024 * 1024),
            db_size / (1024 * 1024),
            started.elapsed().as_secs_f64()
        );
    }
    println!(
        "{} keys, {} bytes of keys and values, database {} bytes, {:.1}s",
        keys.load(Ordering::Relaxed),
        written.load(Ordering::Relaxed),
        db_size,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn database_size(client: &mut Client) -> anyhow::Result<u64> {
    let status = client.status().await.context("etcd status")?;
    Ok(status.db_size().max(0) as u64)
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

/// Resource kinds, with their share of keys and typical body size in bytes.
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

/// Deterministic generator of Kubernetes-shaped keys and values.
struct ObjectGenerator {
    rng: SmallRng,
    serial: u64,
    weight_total: u32,
}

impl ObjectGenerator {
    fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            serial: 0,
            weight_total: RESOURCES.iter().map(|r| r.2).sum(),
        }
    }

    fn word(&mut self) -> &'static str {
        WORDS[self.rng.random_range(0..WORDS.len())]
    }

    fn hex(&mut self, len: usize) -> String {
        const DIGITS: &[u8] = b"0123456789abcdef";
        (0..len)
            .map(|_| DIGITS[self.rng.random_range(0..16)] as char)
            .collect()
    }

    fn next_object(&mut self) -> (String, Vec<u8>) {
        self.serial += 1;
        let mut pick = self.rng.random_range(0..self.weight_total);
        let &(resource, kind, _, size) = RESOURCES
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
        let name = format!("{app}-{}-{}", self.hex(10), self.serial);
        let key = format!("/registry/{resource}/{namespace}/{name}");
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
