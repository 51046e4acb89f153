/// Why an object of the cluster's shape could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// The value is encrypted at rest (`k8s:enc:` prefix): etcd-dr holds no key for it.
    #[error("{key}: encrypted at rest by the API server (k8s:enc:), not readable without its key")]
    Encrypted {
        /// The etcd key.
        key: String,
    },
    /// The value is neither Kubernetes protobuf (`k8s\0`) nor JSON.
    #[error("{key}: not a Kubernetes object (neither the k8s protobuf envelope nor JSON)")]
    UnknownEncoding {
        /// The etcd key.
        key: String,
    },
    /// The protobuf envelope or the object inside it does not decode.
    #[error("{key}: protobuf does not decode as {kind}: {source}")]
    Protobuf {
        /// The etcd key.
        key: String,
        /// What it was read as (`Node`, `ConfigMap`, …).
        kind: &'static str,
        /// The decoder's error.
        #[source]
        source: prost::DecodeError,
    },
    /// The JSON form does not decode.
    #[error("{key}: JSON does not decode as {kind}: {source}")]
    Json {
        /// The etcd key.
        key: String,
        /// What it was read as.
        kind: &'static str,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A kubeadm or kubelet configuration document inside a ConfigMap does not parse.
    #[error("{key}: {document} does not parse as YAML: {source}")]
    Yaml {
        /// The etcd key of the ConfigMap.
        key: String,
        /// The ConfigMap data entry (`ClusterConfiguration`, `kubelet`).
        document: &'static str,
        /// The parser's error.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A certificate (kube-apiserver's serving certificate, read on a node) does not parse.
    #[error("not a PEM X.509 certificate: {detail}")]
    Certificate {
        /// What the parser said.
        detail: String,
    },
}
