//! Throws arbitrary bytes at SSH user certificates as a node receives them: as an OpenSSH
//! certificate line (`Certificate::from_openssh`, how `jsh` and the node read stored
//! certificates) and as the binary blob russh decodes from the wire
//! (`Certificate::from_bytes`), then at the node's check, `jumpgate_pki::verify_user_cert`
//! (and `verify_host_cert`, what clients run on a node's certificate).
//!
//! A mutated certificate never carries a valid signature, so the check would stop at the
//! signature every time. Each parsed certificate is therefore also signed again, as it is,
//! by a CA the check trusts: that reaches what a node reads from a certificate it trusts
//! (principals, validity, `source-address`, the Jumpgate extensions and the traits JSON).
//!
//! Besides "never panics", checks that the answer is consistent: a certificate encodes
//! back to what reads as the same certificate, and a re-signed one is refused only for
//! what it says, never for its signature or CA, and when accepted reports its own
//! principals and expiry.

#![no_main]

use jumpgate_pki::ssh::EXT_CLUSTER;
use jumpgate_pki::ssh_key::certificate::{Builder, CertType};
use jumpgate_pki::ssh_key::private::Ed25519Keypair;
use jumpgate_pki::ssh_key::{Certificate, Fingerprint, HashAlg, PrivateKey};
use jumpgate_pki::{CertError, UserCertCheck, verify_host_cert, verify_user_cert};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static CA: LazyLock<PrivateKey> =
    LazyLock::new(|| PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32])));

/// Each address a node may see a client from: none (no `source-address` can pass),
/// IPv4, and IPv4 seen through an IPv6 socket.
const CLIENTS: [Option<IpAddr>; 3] = [
    None,
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
    Some(IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped())),
];

fn at(unix: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(unix))
}

/// The certificate as it is, trusting its own signer.
fn check_as_is(cert: &Certificate) {
    let trusted = [cert.signature_key().fingerprint(HashAlg::Sha256)];
    let login = cert
        .valid_principals()
        .first()
        .map_or("root", String::as_str);
    let cluster = cert
        .extensions()
        .get(EXT_CLUSTER)
        .map_or("", String::as_str);
    let now = at(cert.valid_after()).unwrap_or(UNIX_EPOCH);
    let _ = verify_user_cert(
        cert,
        &UserCertCheck {
            trusted: &trusted,
            cluster,
            login,
            client_addr: CLIENTS[1],
            now,
        },
    );
    let _ = verify_host_cert(cert, &trusted, login, now);
}

/// The same fields, signed by [`CA`].
fn resign(cert: &Certificate) -> Option<Certificate> {
    let mut builder = Builder::new(
        cert.nonce().to_vec(),
        cert.public_key().clone(),
        cert.valid_after(),
        cert.valid_before(),
    )
    .ok()?;
    builder.serial(cert.serial()).ok()?;
    builder.cert_type(cert.cert_type()).ok()?;
    builder.key_id(cert.key_id()).ok()?;
    if cert.valid_principals().is_empty() {
        builder.all_principals_valid().ok()?;
    }
    for principal in cert.valid_principals() {
        builder.valid_principal(principal.as_str()).ok()?;
    }
    for (name, value) in cert.critical_options().iter() {
        builder
            .critical_option(name.as_str(), value.as_str())
            .ok()?;
    }
    for (name, value) in cert.extensions().iter() {
        builder.extension(name.as_str(), value.as_str()).ok()?;
    }
    builder.comment(cert.comment()).ok()?;
    builder.sign(&*CA).ok()
}

fn check_resigned(cert: &Certificate) {
    // Valid at `valid_after` unless the window is empty.
    let Some(now) = at(cert.valid_after()).filter(|_| cert.valid_after() < cert.valid_before())
    else {
        return;
    };
    let trusted: [Fingerprint; 1] = [CA.public_key().fingerprint(HashAlg::Sha256)];
    let login = cert
        .valid_principals()
        .first()
        .map_or("root", String::as_str);
    let cluster = cert
        .extensions()
        .get(EXT_CLUSTER)
        .map_or("", String::as_str);
    for client_addr in CLIENTS {
        let check = UserCertCheck {
            trusted: &trusted,
            cluster,
            login,
            client_addr,
            now,
        };
        match verify_user_cert(cert, &check) {
            Ok(user) => {
                assert_eq!(cert.cert_type(), CertType::User);
                assert_eq!(user.logins, cert.valid_principals());
                assert!(user.logins.iter().any(|l| l == login));
                assert_eq!(user.valid_before, cert.valid_before());
            }
            Err(CertError::WrongType { .. }) => assert_eq!(cert.cert_type(), CertType::Host),
            Err(CertError::NoPrincipals) => assert!(cert.valid_principals().is_empty()),
            Err(
                CertError::UnknownCriticalOption { .. }
                | CertError::SourceAddressDenied { .. }
                | CertError::MalformedSourceAddress { .. }
                | CertError::MalformedTraits(_),
            ) => {}
            Err(err) => panic!("a certificate signed by a trusted CA was refused: {err}"),
        }
    }
    match verify_host_cert(cert, &trusted, login, now) {
        Ok(host) => assert_eq!(host.principals, cert.valid_principals()),
        Err(CertError::WrongType { .. }) => assert_eq!(cert.cert_type(), CertType::User),
        Err(CertError::NoPrincipals | CertError::UnknownCriticalOption { .. }) => {}
        Err(err) => panic!("a host certificate signed by a trusted CA was refused: {err}"),
    }
}

fn exercise(cert: &Certificate) {
    check_as_is(cert);
    if let Some(resigned) = resign(cert) {
        check_resigned(&resigned);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cert) = Certificate::from_openssh(text.trim())
    {
        let line = cert.to_openssh().expect("a parsed certificate encodes");
        assert_eq!(Certificate::from_openssh(&line).ok().as_ref(), Some(&cert));
        exercise(&cert);
    }
    if let Ok(cert) = Certificate::from_bytes(data) {
        let bytes = cert.to_bytes().expect("a parsed certificate encodes");
        assert_eq!(Certificate::from_bytes(&bytes).ok().as_ref(), Some(&cert));
        exercise(&cert);
    }
});
