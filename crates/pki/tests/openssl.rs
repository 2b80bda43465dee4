//! TLS identity certificates checked by a real, independent X.509 implementation:
//! `openssl verify` must accept the chain for client (and, for hosts, server) use, and
//! refuse it against another cluster's CA.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_pki::{IdentityKind, TlsCa, TlsCertParams, TlsIdentity};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl not found: install Debian's openssl (./test.sh does)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn openssl_verifies_our_chain_and_reads_the_identity() {
    let now = SystemTime::now();
    let ca = TlsCa::generate("prod", now).unwrap();
    let other = TlsCa::generate("prod", now).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    let other_file = dir.path().join("other.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    std::fs::write(&other_file, other.cert_pem()).unwrap();

    let proxy = ca
        .issue(
            &TlsCertParams {
                identity: TlsIdentity {
                    cluster: "prod".to_string(),
                    kind: IdentityKind::Proxy,
                    name: "proxy-eu-1".to_string(),
                    roles: vec![],
                },
                public_key_pem: key.public_key_pem(),
                dns_names: vec!["jumpgate.example.com".to_string()],
                ip_addresses: vec!["127.0.0.1".parse().unwrap()],
                ttl: Duration::from_secs(3600),
            },
            now,
        )
        .unwrap();
    let cert_file = dir.path().join("proxy.pem");
    std::fs::write(&cert_file, &proxy).unwrap();

    for purpose in ["sslclient", "sslserver"] {
        let (ok, text) = openssl(&[
            "verify",
            "-purpose",
            purpose,
            "-CAfile",
            path(&ca_file),
            path(&cert_file),
        ]);
        assert!(ok, "{purpose}: {text}");
    }
    let (ok, text) = openssl(&["verify", "-CAfile", path(&other_file), path(&cert_file)]);
    assert!(!ok, "another cluster's CA accepted the certificate: {text}");

    let (ok, text) = openssl(&["x509", "-in", path(&cert_file), "-noout", "-text"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("URI:jumpgate://prod/proxy/proxy-eu-1?roles="),
        "{text}"
    );
    assert!(text.contains("DNS:jumpgate.example.com"), "{text}");
    assert!(text.contains("IP Address:127.0.0.1"), "{text}");

    // The pin a joining host checks is the SHA-256 of the CA's public key (SPKI).
    let (ok, spki) = {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r",
                path(&ca_file)
            ))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(ok);
    let digest = spki.split_whitespace().next().unwrap();
    assert_eq!(ca.ca_pin(), format!("sha256:{digest}"));
}

#[test]
fn a_user_certificate_is_for_clients_only() {
    let now = SystemTime::now();
    let ca = TlsCa::generate("prod", now).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    // Issued by the CA as the auth service holds it: reloaded from its stored PEM.
    let stored = TlsCa::from_pem("prod", ca.cert_pem(), &ca.key_pem()).unwrap();
    let user = stored
        .issue(
            &TlsCertParams {
                identity: TlsIdentity {
                    cluster: "prod".to_string(),
                    kind: IdentityKind::User,
                    name: "alice".to_string(),
                    roles: vec!["access".to_string()],
                },
                public_key_pem: key.public_key_pem(),
                dns_names: vec![],
                ip_addresses: vec![],
                ttl: Duration::from_secs(3600),
            },
            now,
        )
        .unwrap();
    let cert_file = dir.path().join("user.pem");
    std::fs::write(&cert_file, user).unwrap();
    let (ok, text) = openssl(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        path(&ca_file),
        path(&cert_file),
    ]);
    assert!(ok, "{text}");
    let (ok, _) = openssl(&[
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        path(&ca_file),
        path(&cert_file),
    ]);
    assert!(!ok, "a user certificate must not serve TLS");
}

fn node_cert(ca: &TlsCa, now: SystemTime) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    ca.issue(
        &TlsCertParams {
            identity: TlsIdentity {
                cluster: "prod".to_string(),
                kind: IdentityKind::Auth,
                name: "auth-1".to_string(),
                roles: vec![],
            },
            public_key_pem: key.public_key_pem(),
            dns_names: vec!["jumpgate.cluster.local".to_string()],
            ip_addresses: vec![],
            ttl: Duration::from_secs(3600),
        },
        now,
    )
    .unwrap()
}

/// A TLS CA rotation: a leaf signed by the new CA is accepted by a peer that trusts
/// only the old CA when the cross certificate comes with it, and not without it; a peer
/// that trusts the new CA needs nothing more; the cross certificate ends with the grace
/// period.
#[test]
fn a_cross_certificate_carries_old_ca_trust_to_the_new_ca_during_grace() {
    let now = SystemTime::now();
    let old = TlsCa::generate("prod", now).unwrap();
    let new = TlsCa::generate("prod", now).unwrap();
    let grace_end = now + Duration::from_secs(3600);
    let cross = old.cross_sign(&new, now, grace_end).unwrap();
    let leaf = node_cert(&new, now);

    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let old_file = file("old.pem", old.cert_pem());
    let new_file = file("new.pem", new.cert_pem());
    let cross_file = file("cross.pem", &cross);
    let leaf_file = file("leaf.pem", &leaf);

    let (ok, text) = openssl(&[
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        path(&old_file),
        "-untrusted",
        path(&cross_file),
        path(&leaf_file),
    ]);
    assert!(ok, "old-CA peer with the cross certificate: {text}");
    let (ok, text) = openssl(&["verify", "-CAfile", path(&old_file), path(&leaf_file)]);
    assert!(
        !ok,
        "old-CA peer accepted a new leaf without a cross certificate: {text}"
    );
    let (ok, text) = openssl(&["verify", "-CAfile", path(&new_file), path(&leaf_file)]);
    assert!(ok, "new-CA peer: {text}");

    // After the grace period the cross certificate no longer helps.
    let after = (grace_end + Duration::from_secs(60))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let (ok, text) = openssl(&[
        "verify",
        "-attime",
        &after,
        "-CAfile",
        path(&old_file),
        "-untrusted",
        path(&cross_file),
        path(&leaf_file),
    ]);
    assert!(
        !ok,
        "the cross certificate outlived the grace period: {text}"
    );

    // Our own identity check accepts leaves of the old CA only while it is trusted.
    let old_leaf = jumpgate_pki::cert_pem_to_der(&node_cert(&old, now)).unwrap();
    assert_eq!(
        new.verify(&old_leaf, now).unwrap_err(),
        jumpgate_pki::TlsCertError::UntrustedCa
    );
    let mut new_trusting_old = TlsCa::from_pem("prod", new.cert_pem(), &new.key_pem()).unwrap();
    new_trusting_old.trust_previous(old.cert_pem()).unwrap();
    assert_eq!(
        new_trusting_old.verify(&old_leaf, now).unwrap().name,
        "auth-1"
    );
    assert_eq!(
        new_trusting_old.trusted_pins(),
        vec![new.ca_pin(), old.ca_pin()]
    );
    assert!(
        new_trusting_old.trust_previous(&leaf).is_err(),
        "a leaf is no CA"
    );
}
