//! kube-apiserver's serving certificate as a node holds it: which names it is valid for. The
//! seed's procedure puts the API front-end name among them (`apiServer.certSANs`), or clients
//! that reach the API through that name refuse the secondary's API server after a switch.

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use crate::ShapeError;

/// The subject alternative names of the first certificate in `pem`: DNS names as written,
/// IP addresses in their usual text form.
pub fn certificate_sans(pem: &[u8]) -> Result<Vec<String>, ShapeError> {
    let bad = |detail: String| ShapeError::Certificate { detail };
    let block = Pem::iter_from_buffer(pem)
        .next()
        .ok_or_else(|| bad("no PEM block".into()))?
        .map_err(|e| bad(format!("PEM: {e}")))?;
    if block.label != "CERTIFICATE" {
        return Err(bad(format!(
            "a PEM {} block, not a CERTIFICATE",
            block.label
        )));
    }
    let cert = block.parse_x509().map_err(|e| bad(format!("X.509: {e}")))?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| bad(format!("subjectAltName: {e}")))?;
    let Some(sans) = sans else {
        return Ok(Vec::new());
    };
    Ok(sans
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect())
}

/// Whether a certificate with `sans` is valid for `name`, as a TLS client checks it: an IP
/// address against the IP SANs, a host name against the DNS SANs without regard to case, a
/// `*.` wildcard standing for exactly one leftmost label.
pub fn sans_cover(sans: &[String], name: &str) -> bool {
    let name = name.trim_end_matches('.');
    if let Ok(address) = name.parse::<IpAddr>() {
        return sans
            .iter()
            .any(|san| san.parse::<IpAddr>().ok() == Some(address));
    }
    sans.iter().any(|san| {
        let san = san.trim_end_matches('.');
        if san.eq_ignore_ascii_case(name) {
            return true;
        }
        match (san.strip_prefix("*."), name.split_once('.')) {
            (Some(suffix), Some((first, rest))) => {
                !first.is_empty() && !suffix.is_empty() && rest.eq_ignore_ascii_case(suffix)
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // How it was made: tests/fixtures/README.md.
    const CERT: &str = include_str!("../tests/fixtures/apiserver.crt");

    #[test]
    fn reads_dns_and_ip_sans() {
        let sans = certificate_sans(CERT.as_bytes()).unwrap();
        assert_eq!(
            sans,
            [
                "cp1",
                "kubernetes.default.svc",
                "*.api.example",
                "10.96.0.1",
                "fd00::10"
            ]
        );
    }

    #[test]
    fn what_is_not_a_certificate_says_why() {
        let error = certificate_sans(b"apiserver cert of cp1\n").unwrap_err();
        assert!(error.to_string().contains("no PEM block"), "{error}");
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let error = certificate_sans(key.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("PRIVATE KEY block"), "{error}");
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(certificate_sans(broken.as_bytes()).is_err());
    }

    #[test]
    fn names_are_matched_as_a_tls_client_matches_them() {
        let sans: Vec<String> = [
            "cp1",
            "K8S-API.example",
            "*.api.example",
            "10.96.0.1",
            "fd00::10",
        ]
        .map(String::from)
        .to_vec();
        assert!(sans_cover(&sans, "k8s-api.example"));
        assert!(sans_cover(&sans, "k8s-api.example."));
        assert!(sans_cover(&sans, "front.api.example"));
        assert!(!sans_cover(&sans, "a.front.api.example"));
        assert!(!sans_cover(&sans, "api.example"));
        assert!(!sans_cover(&sans, "k8s-api"));
        assert!(sans_cover(&sans, "10.96.0.1"));
        assert!(sans_cover(&sans, "fd00:0::10"));
        assert!(!sans_cover(&sans, "10.96.0.2"));
        assert!(!sans_cover(&[], "cp1"));
    }
}
