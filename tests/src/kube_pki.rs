//! Kubernetes PKI for the tests, laid out as kubeadm lays it out under `/etc/kubernetes/pki`:
//! the cluster CA, kube-apiserver's serving certificate, the service-account key pair, etcd's CA
//! and certificates, the front-proxy CA, and client-certificate kubeconfigs (`admin.conf`,
//! `controller-manager.conf`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// One certificate and its key, as PEM.
#[derive(Debug, Clone)]
pub struct CertPair {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

/// A cluster's PKI: everything kubeadm's `certs` and `kubeconfig` phases write that the test
/// control plane uses (no front-proxy client, no kubelet client).
#[derive(Debug, Clone)]
pub struct KubePki {
    /// `ca.crt` / `ca.key`: the cluster CA (client certificates and kube-apiserver's serving
    /// certificate).
    pub ca: CertPair,
    /// `apiserver.crt` / `apiserver.key`.
    pub apiserver: CertPair,
    /// `sa.key` (PKCS#8, ECDSA P-256).
    pub sa_key: String,
    /// `sa.pub`.
    pub sa_pub: String,
    /// `etcd/ca.crt` / `etcd/ca.key`.
    pub etcd_ca: CertPair,
    /// `etcd/server.crt` / `etcd/server.key` (serving and client use, as kubeadm signs it).
    pub etcd_server: CertPair,
    /// `etcd/peer.crt` / `etcd/peer.key`.
    pub etcd_peer: CertPair,
    /// `etcd/healthcheck-client.crt` / `.key`.
    pub etcd_healthcheck: CertPair,
    /// `apiserver-etcd-client.crt` / `.key`.
    pub apiserver_etcd_client: CertPair,
    /// The `kubernetes-admin` client certificate (`system:masters`), for `admin.conf`.
    pub admin: CertPair,
    /// `front-proxy-ca.crt` / `.key`: kube-controller-manager's `--requestheader-client-ca-file`
    /// (with it, the controller manager does not look the CA up in the API at start-up).
    pub front_proxy_ca: CertPair,
    /// The `system:kube-controller-manager` client certificate, for `controller-manager.conf`.
    pub controller_manager: CertPair,
}

fn new_ca(common_name: &str) -> (CertPair, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("ca key");
    let cert = params.self_signed(&key).expect("ca cert");
    let pair = CertPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    };
    (pair, Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    organization: Option<&str>,
    sans: &[String],
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> CertPair {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
    }
    for name in sans {
        params.subject_alt_names.push(match name.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.clone().try_into().expect("dns name")),
        });
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages;
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("sign");
    CertPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

impl KubePki {
    /// Generates a cluster's PKI. `names` are the control-plane nodes' host names and
    /// addresses: they go into kube-apiserver's and etcd's serving certificates next to
    /// kubeadm's fixed names (`kubernetes`, `kubernetes.default…`, the service IP `10.96.0.1`,
    /// `localhost`, `127.0.0.1`).
    pub fn generate(names: &[&str]) -> Self {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let (ca, ca_issuer) = new_ca("kubernetes");
        let (etcd_ca, etcd_issuer) = new_ca("etcd-ca");
        let (front_proxy_ca, _) = new_ca("front-proxy-ca");
        let mut apiserver_sans: Vec<String> = [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "10.96.0.1",
            "localhost",
            "127.0.0.1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        apiserver_sans.extend(names.iter().map(|n| n.to_string()));
        let mut etcd_sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
        etcd_sans.extend(names.iter().map(|n| n.to_string()));
        let sa = KeyPair::generate().expect("sa key");
        Self {
            apiserver: leaf(
                &ca_issuer,
                "kube-apiserver",
                None,
                &apiserver_sans,
                vec![ServerAuth],
            ),
            admin: leaf(
                &ca_issuer,
                "kubernetes-admin",
                Some("system:masters"),
                &[],
                vec![ClientAuth],
            ),
            controller_manager: leaf(
                &ca_issuer,
                "system:kube-controller-manager",
                None,
                &[],
                vec![ClientAuth],
            ),
            etcd_server: leaf(
                &etcd_issuer,
                "etcd-server",
                None,
                &etcd_sans,
                vec![ServerAuth, ClientAuth],
            ),
            etcd_peer: leaf(
                &etcd_issuer,
                "etcd-peer",
                None,
                &etcd_sans,
                vec![ServerAuth, ClientAuth],
            ),
            etcd_healthcheck: leaf(
                &etcd_issuer,
                "kube-etcd-healthcheck-client",
                None,
                &[],
                vec![ClientAuth],
            ),
            apiserver_etcd_client: leaf(
                &etcd_issuer,
                "kube-apiserver-etcd-client",
                None,
                &[],
                vec![ClientAuth],
            ),
            sa_key: sa.serialize_pem(),
            sa_pub: sa.public_key_pem(),
            ca,
            etcd_ca,
            front_proxy_ca,
        }
    }

    /// Writes the files into `pki` (a node's `/etc/kubernetes/pki`, host side) with kubeadm's
    /// names and modes (0600 keys, 0644 certificates).
    pub fn write(&self, pki: &Path) {
        let pairs: [(&str, &CertPair); 9] = [
            ("ca", &self.ca),
            ("front-proxy-ca", &self.front_proxy_ca),
            ("apiserver", &self.apiserver),
            ("apiserver-etcd-client", &self.apiserver_etcd_client),
            ("etcd/ca", &self.etcd_ca),
            ("etcd/server", &self.etcd_server),
            ("etcd/peer", &self.etcd_peer),
            ("etcd/healthcheck-client", &self.etcd_healthcheck),
            ("admin-client", &self.admin),
        ];
        std::fs::create_dir_all(pki.join("etcd")).expect("pki dir");
        let write = |name: String, text: &str, mode: u32| {
            let path = pki.join(name);
            std::fs::write(&path, text).expect("write pki file");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        for (name, pair) in pairs {
            if name == "admin-client" {
                continue; // only inside admin.conf, as kubeadm does it
            }
            write(format!("{name}.crt"), &pair.cert, 0o644);
            write(format!("{name}.key"), &pair.key, 0o600);
        }
        write("sa.key".into(), &self.sa_key, 0o600);
        write("sa.pub".into(), &self.sa_pub, 0o644);
    }

    /// A kubeconfig for `kubernetes-admin@kubernetes` at `server`, certificates inline, as
    /// kubeadm writes `/etc/kubernetes/admin.conf`.
    pub fn admin_conf(&self, server: &str) -> String {
        self.kubeconfig(server, "kubernetes-admin", &self.admin)
    }

    /// A kubeconfig for `system:kube-controller-manager@kubernetes` at `server` (the node's
    /// own kube-apiserver), as kubeadm writes `/etc/kubernetes/controller-manager.conf`.
    pub fn controller_manager_conf(&self, server: &str) -> String {
        self.kubeconfig(
            server,
            "system:kube-controller-manager",
            &self.controller_manager,
        )
    }

    fn kubeconfig(&self, server: &str, user: &str, pair: &CertPair) -> String {
        use base64::Engine;
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    \
             server: {server}\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    \
             user: {user}\n  name: {user}@kubernetes\n\
             current-context: {user}@kubernetes\npreferences: {{}}\nusers:\n\
             - name: {user}\n  user:\n    client-certificate-data: {cert}\n    \
             client-key-data: {key}\n",
            ca = b64(&self.ca.cert),
            cert = b64(&pair.cert),
            key = b64(&pair.key),
        )
    }
}
