use super::*;
use base64::Engine;
use std::path::Path;

fn settings(kubeconfig: &Path) -> KubernetesConfig {
    KubernetesConfig {
        api_server: None,
        kubeconfig: Some(kubeconfig.to_path_buf()),
        context: None,
        ca_file: None,
        cert_file: None,
        key_file: None,
        token_file: None,
        request_timeout: Duration::from_secs(30),
        control_plane_servers: Vec::new(),
    }
}

fn kubeconfig(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("admin.conf");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    std::fs::write(dir.join("token-ca.crt"), "CA FILE").unwrap();
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: https://wrong:6443
- name: kubernetes
  cluster:
    server: https://k8s-eu:6443
    certificate-authority: token-ca.crt
contexts:
- name: other@other
  context:
    cluster: other
    user: kubernetes-admin
- name: kubernetes-admin@kubernetes
  context:
    cluster: kubernetes
    user: kubernetes-admin
current-context: kubernetes-admin@kubernetes
users:
- name: kubernetes-admin
  user:
    client-certificate-data: {}
    client-key-data: {}
"#,
            b64("CERT"),
            b64("KEY")
        ),
    )
    .unwrap();
    path
}

#[test]
fn reads_the_current_context_or_the_named_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = kubeconfig(dir.path());
    let client = KubeClient::new(&settings(&path)).unwrap();
    assert_eq!(client.server(), "https://k8s-eu:6443/");
    let mut named = settings(&path);
    named.context = Some("other@other".into());
    assert_eq!(
        KubeClient::new(&named).unwrap().server(),
        "https://wrong:6443/"
    );
    let mut overridden = settings(&path);
    overridden.api_server = Some("https://10.0.0.5:6443".into());
    assert_eq!(
        KubeClient::new(&overridden).unwrap().server(),
        "https://10.0.0.5:6443/"
    );
}

#[test]
fn a_missing_context_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = kubeconfig(dir.path());
    let mut named = settings(&path);
    named.context = Some("prod@eu".into());
    let error = KubeClient::new(&named).unwrap_err().to_string();
    assert!(
        error.contains("prod@eu") && error.contains("admin.conf"),
        "{error}"
    );
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n",
    )
    .unwrap();
    let error = KubeClient::new(&settings(&path)).unwrap_err().to_string();
    assert!(error.contains("gone"), "{error}");
}

#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = kubeconfig(dir.path());
    let mut half = settings(&path);
    half.cert_file = Some(dir.path().join("c.crt"));
    let error = KubeClient::new(&half).unwrap_err().to_string();
    assert!(
        error.contains("cert_file") && error.contains("key_file"),
        "{error}"
    );
    let mut ca = settings(&path);
    ca.ca_file = Some(dir.path().join("token-ca.crt"));
    let error = KubeClient::new(&ca).unwrap_err().to_string();
    assert!(
        error.contains("ca_file") && error.contains("token-ca.crt"),
        "{error}"
    );
    let none = KubernetesConfig {
        kubeconfig: None,
        ..settings(&path)
    };
    let error = KubeClient::new(&none).unwrap_err().to_string();
    assert!(error.contains("api_server"), "{error}");
}
