//! Jumpgate's certificate authorities (DESIGN.md, "Identity").
//!
//! A cluster has a **user CA** (SSH; signs users' certificates), a **host CA** (SSH; signs
//! nodes' certificates) and a **TLS CA** (X.509; the mutual-TLS identities of users,
//! nodes, proxies and auth servers, and the `ca_pin` joining hosts check). This crate makes
//! their keys, issues certificates, and holds **every certificate check in one place**:
//! russh, like most SSH libraries, verifies only a certificate's signature and validity
//! window; which CA, which type, which principal and which critical options are
//! acceptable is decided here, by [`ssh::verify_user_cert`] and [`ssh::verify_host_cert`].
#![forbid(unsafe_code)]

pub mod ssh;
pub mod tls;

pub use ssh::{
    CaKind, CertError, HostCertParams, Permissions, PkiError, SshCa, SshKeyPair, UserCertCheck,
    UserCertParams, VerifiedHost, VerifiedUser, generate_ssh_key, verify_host_cert,
    verify_user_cert,
};
/// The SSH key and certificate types in our API, re-exported so callers use the same version.
pub use ssh_key;
pub use tls::{
    IdentityKind, TlsCa, TlsCertError, TlsCertParams, TlsIdentity, cert_pem_to_der, cert_validity,
    check_public_key_pem, generate_tls_key,
};
