//! What the etcd static pod manifest (`/etc/kubernetes/manifests/etcd.yaml`) says about the
//! member on a node: its name, data dir and peer URLs.

use serde::Serialize;
use serde_yaml_ng::Value;

/// The facts a restore needs from one node's etcd static pod manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdPod {
    /// `--name`: the member name (kubeadm: the host name).
    pub name: Option<String>,
    /// The host path of the `etcd-data` volume: the data dir on the node.
    pub data_dir: Option<String>,
    /// `--data-dir` as the container sees it.
    pub data_dir_flag: Option<String>,
    /// `--initial-advertise-peer-urls`: how the other members reach this one.
    pub peer_urls: Vec<String>,
    /// `--advertise-client-urls`.
    pub client_urls: Vec<String>,
    /// The etcd container's image (`registry.k8s.io/etcd:3.6.4-0`).
    pub image: Option<String>,
}

/// Reads a kubeadm-shaped etcd static pod manifest. Flags may be in `command` or `args`, as
/// `--flag=value` or `--flag value`.
pub fn parse_etcd_pod(yaml: &str) -> Result<EtcdPod, String> {
    let pod: Value = serde_yaml_ng::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    let spec = pod.get("spec").ok_or("no `spec`")?;
    let containers = spec
        .get("containers")
        .and_then(Value::as_sequence)
        .ok_or("no `spec.containers`")?;
    let container = containers
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some("etcd"))
        .or_else(|| containers.first())
        .ok_or("no container")?;
    let mut words: Vec<String> = Vec::new();
    for key in ["command", "args"] {
        if let Some(list) = container.get(key).and_then(Value::as_sequence) {
            words.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
        }
    }
    let flag = |name: &str| flag_value(&words, name);
    let split = |value: Option<String>| -> Vec<String> {
        value
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let data_dir = spec
        .get("volumes")
        .and_then(Value::as_sequence)
        .and_then(|volumes| {
            volumes
                .iter()
                .find(|v| v.get("name").and_then(Value::as_str) == Some("etcd-data"))
        })
        .and_then(|volume| volume.get("hostPath"))
        .and_then(|host| host.get("path"))
        .and_then(Value::as_str)
        .map(|p| p.trim_end_matches('/').to_string());
    Ok(EtcdPod {
        name: flag("name"),
        data_dir,
        data_dir_flag: flag("data-dir"),
        peer_urls: split(flag("initial-advertise-peer-urls")),
        client_urls: split(flag("advertise-client-urls")),
        image: container
            .get("image")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// The value of `--name=value` or `--name value` (the last one wins, as for etcd's own flags).
fn flag_value(words: &[String], name: &str) -> Option<String> {
    let long = format!("--{name}");
    let with_equals = format!("--{name}=");
    let mut found = None;
    let mut iter = words.iter().peekable();
    while let Some(word) = iter.next() {
        if let Some(value) = word.strip_prefix(&with_equals) {
            found = Some(value.to_string());
        } else if *word == long {
            if let Some(next) = iter.peek() {
                if !next.starts_with("--") {
                    found = iter.next().cloned();
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As kubeadm 1.30 writes it (trimmed).
    pub(crate) const KUBEADM: &str = r#"apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://10.0.1.11:2379
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://10.0.1.11:2379
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --client-cert-auth=true
    - --data-dir=/var/lib/etcd
    - --experimental-initial-corrupt-check=true
    - --initial-advertise-peer-urls=https://10.0.1.11:2380
    - --initial-cluster=cp1=https://10.0.1.11:2380
    - --key-file=/etc/kubernetes/pki/etcd/server.key
    - --listen-client-urls=https://127.0.0.1:2379,https://10.0.1.11:2379
    - --listen-peer-urls=https://10.0.1.11:2380
    - --name=cp1
    image: registry.k8s.io/etcd:3.5.16-0
    name: etcd
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
    - mountPath: /etc/kubernetes/pki/etcd
      name: etcd-certs
  hostNetwork: true
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki/etcd
      type: DirectoryOrCreate
    name: etcd-certs
  - hostPath:
      path: /data/etcd/
      type: DirectoryOrCreate
    name: etcd-data
status: {}
"#;

    #[test]
    fn reads_kubeadms_manifest() {
        let pod = parse_etcd_pod(KUBEADM).unwrap();
        assert_eq!(
            pod,
            EtcdPod {
                name: Some("cp1".into()),
                data_dir: Some("/data/etcd".into()),
                data_dir_flag: Some("/var/lib/etcd".into()),
                peer_urls: vec!["https://10.0.1.11:2380".into()],
                client_urls: vec!["https://10.0.1.11:2379".into()],
                image: Some("registry.k8s.io/etcd:3.5.16-0".into()),
            }
        );
    }

    #[test]
    fn reads_separate_flag_values_in_args() {
        let yaml = r#"
spec:
  containers:
  - name: sidecar
  - name: etcd
    command: [etcd]
    args: ["--name", "cp2", "--initial-advertise-peer-urls", "http://a:2380,http://b:2380", "--data-dir=/x"]
"#;
        let pod = parse_etcd_pod(yaml).unwrap();
        assert_eq!(pod.name.as_deref(), Some("cp2"));
        assert_eq!(pod.peer_urls, ["http://a:2380", "http://b:2380"]);
        assert_eq!(pod.data_dir, None);
        assert_eq!(pod.data_dir_flag.as_deref(), Some("/x"));
    }

    #[test]
    fn says_what_is_wrong() {
        assert!(parse_etcd_pod("a: [").unwrap_err().starts_with("not YAML"));
        assert_eq!(parse_etcd_pod("kind: Pod").unwrap_err(), "no `spec`");
        assert_eq!(
            parse_etcd_pod("spec: {}").unwrap_err(),
            "no `spec.containers`"
        );
    }
}
