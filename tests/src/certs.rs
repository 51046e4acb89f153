//! Certificates generated per test, laid out as kubeadm lays out etcd's under
//! `/etc/kubernetes/pki/etcd/`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The TLS files of one test etcd cluster.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The directory holding them.
    pub dir: PathBuf,
    /// `ca.crt`.
    pub ca: PathBuf,
    /// `server.crt` (SANs: localhost, 127.0.0.1 and any loopback names asked for).
    pub server_cert: PathBuf,
    /// `server.key`.
    pub server_key: PathBuf,
    /// `healthcheck-client.crt`.
    pub client_cert: PathBuf,
    /// `healthcheck-client.key`.
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// Generates a CA, a server certificate for `names` (host names or IP addresses, on top of
    /// localhost and 127.0.0.1) and a client certificate, into `dir`.
    pub fn generate(dir: &Path, names: &[&str]) -> Self {
        std::fs::create_dir_all(dir).expect("create pki dir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "etcd-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("ca key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, ca_key);

        let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
        sans.extend(names.iter().map(|n| n.to_string()));
        let mut server = CertificateParams::new(Vec::<String>::new()).expect("server params");
        for name in &sans {
            server.subject_alt_names.push(match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into().expect("dns name")),
            });
        }
        server
            .distinguished_name
            .push(DnType::CommonName, "etcd-server");
        server.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let server_key = KeyPair::generate().expect("server key");
        let server_cert = server.signed_by(&server_key, &issuer).expect("server cert");

        let mut client = CertificateParams::new(Vec::<String>::new()).expect("client params");
        client
            .distinguished_name
            .push(DnType::CommonName, "kube-etcd-healthcheck-client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().expect("client key");
        let client_cert = client.signed_by(&client_key, &issuer).expect("client cert");

        let files = Self {
            dir: dir.to_path_buf(),
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("healthcheck-client.crt"),
            client_key: dir.join("healthcheck-client.key"),
        };
        for (path, pem) in [
            (&files.ca, ca_cert.pem()),
            (&files.server_cert, server_cert.pem()),
            (&files.server_key, server_key.serialize_pem()),
            (&files.client_cert, client_cert.pem()),
            (&files.client_key, client_key.serialize_pem()),
        ] {
            std::fs::write(path, pem).expect("write pem");
        }
        files
    }
}
