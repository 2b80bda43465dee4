//! Certificates and one-time codes for tests: issued by the real CAs of `jumpgate-pki`
//! and computed as an authenticator app does.

use jumpgate_pki::{IdentityKind, TlsCa, TlsCertParams, TlsIdentity, generate_tls_key};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A fresh key and a TLS certificate from `ca` for `name` of `kind` in `cluster`, with
/// `dns` names, valid for an hour: (certificate PEM, key PEM).
pub fn issue_tls(
    ca: &TlsCa,
    cluster: &str,
    kind: IdentityKind,
    name: &str,
    dns: &[&str],
) -> (String, String) {
    let (key, public) = generate_tls_key().unwrap();
    let cert = ca
        .issue(
            &TlsCertParams {
                identity: TlsIdentity {
                    cluster: cluster.to_string(),
                    kind,
                    name: name.to_string(),
                    roles: vec![],
                },
                public_key_pem: public,
                dns_names: dns.iter().map(|d| d.to_string()).collect(),
                ip_addresses: vec![],
                ttl: Duration::from_secs(3600),
            },
            SystemTime::now(),
        )
        .unwrap();
    (cert, key)
}

/// A TLS client with no certificate of its own that trusts the CAs in `ca_pem` (e.g. a
/// cluster's `admin/ca.pem`) and offers `alpn`: what anyone on the network can be.
pub fn tls_client_trusting(ca_pem: &[u8], alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// The code of an authenticator app enrolled with `otpauth_uri`, now.
pub fn totp_now(otpauth_uri: &str) -> String {
    totp_rs::Totp::from_url(otpauth_uri)
        .unwrap()
        .generate_current()
        .to_string()
}

/// The code of an authenticator app enrolled with `otpauth_uri`, at `at`.
pub fn totp_at(otpauth_uri: &str, at: SystemTime) -> String {
    let seconds = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    totp_rs::Totp::from_url(otpauth_uri)
        .unwrap()
        .generate(seconds)
        .to_string()
}

/// Writes a private key file readable by its owner only (ssh and ssh-keygen refuse
/// others).
pub fn write_private(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
