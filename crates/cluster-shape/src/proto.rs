//! The few Kubernetes protobuf messages etcd-dr reads, reduced to the fields it uses.
//!
//! Field numbers are those of `k8s.io/api` and `k8s.io/apimachinery`'s `generated.proto`
//! (checked against v0.34); protobuf skips every field not declared here, so a newer
//! Kubernetes with more fields still decodes. The same structs read the JSON form (CRD objects,
//! or every object of an API server started with `--storage-media-type=application/json`).

use std::collections::HashMap;

/// `k8s.io.apimachinery.pkg.runtime.Unknown`: the envelope after the `k8s\0` magic.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Unknown {
    #[prost(message, optional, tag = "1")]
    pub type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    pub content_encoding: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub content_type: Option<String>,
}

/// `k8s.io.apimachinery.pkg.runtime.TypeMeta`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    pub api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub kind: Option<String>,
}

/// `ObjectMeta`: name, namespace, uid, labels, annotations.
#[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub namespace: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub uid: Option<String>,
    #[prost(map = "string, string", tag = "11")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "12")]
    pub annotations: HashMap<String, String>,
}

/// `core/v1 ConfigMap`.
#[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ObjectMeta>,
    #[prost(map = "string, string", tag = "2")]
    pub data: HashMap<String, String>,
}

/// `core/v1 Node`.
#[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Node {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "3")]
    pub status: Option<NodeStatus>,
}

/// `core/v1 NodeStatus`.
#[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeStatus {
    #[prost(message, repeated, tag = "4")]
    pub conditions: Vec<NodeCondition>,
    #[prost(message, repeated, tag = "5")]
    pub addresses: Vec<NodeAddress>,
    #[prost(message, optional, tag = "7")]
    pub node_info: Option<NodeSystemInfo>,
}

/// `core/v1 NodeCondition`.
#[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeCondition {
    #[prost(string, optional, tag = "1")]
    pub r#type: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub status: Option<String>,
}

/// `core/v1 NodeAddress`.
#[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeAddress {
    #[prost(string, optional, tag = "1")]
    pub r#type: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub address: Option<String>,
}

/// `core/v1 NodeSystemInfo`.
#[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeSystemInfo {
    #[prost(string, optional, tag = "5")]
    pub os_image: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub container_runtime_version: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub kubelet_version: Option<String>,
    #[prost(string, optional, tag = "10")]
    pub architecture: Option<String>,
}

/// `apps/v1 DaemonSet`.
#[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DaemonSet {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    pub spec: Option<DaemonSetSpec>,
}

/// `apps/v1 DaemonSetSpec`.
#[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DaemonSetSpec {
    #[prost(message, optional, tag = "2")]
    pub template: Option<PodTemplateSpec>,
}

/// `core/v1 PodTemplateSpec`.
#[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodTemplateSpec {
    #[prost(message, optional, tag = "2")]
    pub spec: Option<PodSpec>,
}

/// `core/v1 PodSpec`: the containers and init containers.
#[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    #[prost(message, repeated, tag = "2")]
    pub containers: Vec<Container>,
    #[prost(message, repeated, tag = "20")]
    pub init_containers: Vec<Container>,
}

/// `core/v1 Container`: name and image.
#[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub image: Option<String>,
}
