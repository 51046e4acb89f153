//! The Kubernetes cluster behind an etcd, read from etcd's own keys: no Kubernetes
//! credentials, no API server needed (the primary may already be gone).
//!
//! - [`cluster_shape`]: versions, nodes, kubeadm's ClusterConfiguration and the network plugin,
//!   from the few objects [`ShapeKeys`] names; recorded in every snapshot's manifest and
//!   compared with the secondary before a restore ([`compare_shapes`]).
//! - [`count_objects`]: objects per resource and namespace, from keys alone.
//! - [`read_snapshot_contents`]: both, from a snapshot file without etcd (`etcd-dr inspect`).
//!
//! Objects are decoded with `prost` from minimal message definitions ([`proto`]), or from
//! JSON, whichever way the API server stored them.

#![forbid(unsafe_code)]

mod cert;
mod compare;
mod contents;
mod counts;
mod decode;
mod error;
mod node_compare;
pub mod proto;
mod shape;

pub use cert::{certificate_sans, sans_cover};
pub use compare::{
    compare_configured_nodes, compare_shapes, CheckSeverity, ShapeChecks, ShapeDifference,
};
pub use contents::{read_snapshot_contents, SnapshotContents};
pub use counts::count_objects;
pub use decode::{decode_object, ENCRYPTED_PREFIX, PROTOBUF_MAGIC};
pub use error::ShapeError;
pub use node_compare::{
    compare_node, front_end_host, parse_kubeadm_flags, runtime_kind_of_endpoint, ApiServerCert,
    CertRead, NodeShape,
};
pub use shape::{cluster_shape, ShapeKeys, DEFAULT_KUBERNETES_PREFIX};
