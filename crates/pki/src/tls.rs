//! The cluster's TLS CA (X.509, ECDSA P-256): the mutual-TLS identities of users,
//! nodes, proxies and auth servers, and the `ca_pin` joining hosts check.
//!
//! An identity is carried in one URI subject alternative name,
//! `jumpgate://CLUSTER/KIND/NAME?roles=R1,R2`, readable with `openssl x509 -text`;
//! the subject's common name repeats NAME for tools that only show the subject.
//! Host identities (auth, proxy, node) may also carry DNS names and IP addresses, so
//! the same certificate serves TLS.

use crate::ssh::PkiError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SubjectPublicKeyInfo,
};
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// How long a TLS CA certificate is valid; rotation replaces it long before.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Clock skew allowance, as for SSH certificates.
const SKEW: Duration = Duration::from_secs(60);
const URI_SCHEME: &str = "jumpgate://";

/// What a certificate's holder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    User,
    Node,
    Proxy,
    Auth,
    /// The local administrator identity `jctl` uses on the auth host.
    Admin,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::User => "user",
            IdentityKind::Node => "node",
            IdentityKind::Proxy => "proxy",
            IdentityKind::Auth => "auth",
            IdentityKind::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<IdentityKind> {
        Some(match text {
            "user" => IdentityKind::User,
            "node" => IdentityKind::Node,
            "proxy" => IdentityKind::Proxy,
            "auth" => IdentityKind::Auth,
            "admin" => IdentityKind::Admin,
            _ => return None,
        })
    }

    /// Proxies and auth servers serve TLS. Nodes only dial out (their reverse tunnels;
    /// what they serve is SSH), like users and admins: their certificates carry no DNS
    /// names, no addresses and no `serverAuth`, so no TLS client can take one for a
    /// server.
    fn serves_tls(self) -> bool {
        matches!(self, IdentityKind::Proxy | IdentityKind::Auth)
    }
}

impl fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a TLS certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    pub cluster: String,
    pub kind: IdentityKind,
    pub name: String,
    pub roles: Vec<String>,
}

impl TlsIdentity {
    /// The identity as its certificate carries it: `jumpgate://CLUSTER/KIND/NAME?roles=..`.
    pub fn to_uri(&self) -> String {
        format!(
            "{URI_SCHEME}{}/{}/{}?roles={}",
            self.cluster,
            self.kind,
            self.name,
            self.roles.join(",")
        )
    }

    /// Reads the identity of a certificate (DER) whose chain the caller has already
    /// verified (rustls did, in a mutual-TLS handshake); checks nothing else.
    pub fn from_cert_der(cert_der: &[u8]) -> Result<TlsIdentity, TlsCertError> {
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|err| TlsCertError::Malformed(err.to_string()))?;
        identity_of(&cert)
    }

    fn from_uri(uri: &str) -> Option<TlsIdentity> {
        let rest = uri.strip_prefix(URI_SCHEME)?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut parts = path.split('/');
        let (cluster, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let roles = if query.is_empty() {
            Vec::new()
        } else {
            match query.strip_prefix("roles=")? {
                "" => Vec::new(),
                list => list.split(',').map(str::to_string).collect(),
            }
        };
        let identity = TlsIdentity {
            cluster: cluster.to_string(),
            kind: IdentityKind::parse(kind)?,
            name: name.to_string(),
            roles,
        };
        identity.validate().ok()?;
        Some(identity)
    }

    /// Every part must be a plain name, so the URI needs no escaping and parses back
    /// to exactly what was issued.
    fn validate(&self) -> Result<(), PkiError> {
        let plain = |what: &str, value: &str| {
            let ok = !value.is_empty()
                && value.len() <= 253
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
            if ok {
                Ok(())
            } else {
                Err(PkiError::InvalidRequest(format!(
                    "{what} {value:?} must be 1-253 characters of letters, digits, '-', '_', '.', '@'"
                )))
            }
        };
        plain("cluster name", &self.cluster)?;
        plain("identity name", &self.name)?;
        for role in &self.roles {
            plain("role name", role)?;
        }
        Ok(())
    }
}

/// A request for a TLS identity certificate, already authorised by the caller.
#[derive(Debug, Clone)]
pub struct TlsCertParams {
    pub identity: TlsIdentity,
    /// The holder's public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo): the private
    /// key never leaves the holder.
    pub public_key_pem: String,
    /// Names the holder serves TLS under (host identities only).
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub ttl: Duration,
}

/// The cluster's X.509 certificate authority: the active signing CA, plus earlier CA
/// certificates that are still trusted (during a rotation's grace period).
pub struct TlsCa {
    cluster: String,
    /// The CA's name and key, ready to sign: built once, not per certificate.
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
    also_trusted: Vec<TrustedCaCert>,
}

/// A CA certificate whose signatures are still accepted, without its private key.
#[derive(Clone)]
struct TrustedCaCert {
    pem: String,
    der: Vec<u8>,
}

impl fmt::Debug for TlsCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCa")
            .field("cluster", &self.cluster)
            .field("ca_pin", &self.ca_pin())
            .field("private_key", &"[redacted]")
            .finish()
    }
}

/// A CA certificate's name and uses (every TLS CA of a cluster has the same name).
fn ca_params(cluster: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("Jumpgate TLS CA {cluster}"));
    name.push(DnType::OrganizationName, cluster);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn rcgen_error(err: rcgen::Error) -> PkiError {
    PkiError::InvalidRequest(format!("X.509: {err}"))
}

fn offset_time(time: SystemTime) -> Result<OffsetDateTime, PkiError> {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| PkiError::Clock)?
        .as_secs();
    OffsetDateTime::from_unix_timestamp(i64::try_from(seconds).map_err(|_| PkiError::Clock)?)
        .map_err(|_| PkiError::Clock)
}

impl TlsCa {
    /// A new self-signed CA with a fresh ECDSA P-256 key.
    pub fn generate(cluster: &str, now: SystemTime) -> Result<TlsCa, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rcgen_error)?;
        let mut params = ca_params(cluster);
        params.not_before = offset_time(now - SKEW)?;
        params.not_after = offset_time(now + CA_VALIDITY)?;
        params.serial_number = Some(rand::random::<u64>().into());
        let cert = params.self_signed(&key).map_err(rcgen_error)?;
        Ok(TlsCa {
            cluster: cluster.to_string(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
            also_trusted: Vec::new(),
        })
    }

    /// Loads a CA from its stored certificate and private key (PEM).
    pub fn from_pem(cluster: &str, cert_pem: &str, key_pem: &str) -> Result<TlsCa, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(rcgen_error)?;
        let der = pem_to_der(cert_pem)?;
        let (_, parsed) = X509Certificate::from_der(&der)
            .map_err(|err| PkiError::InvalidRequest(format!("stored TLS CA certificate: {err}")))?;
        if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::InvalidRequest(
                "the stored TLS CA key does not belong to the stored certificate".to_string(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), key).map_err(rcgen_error)?;
        Ok(TlsCa {
            cluster: cluster.to_string(),
            cert_pem: cert_pem.to_string(),
            cert_der: der,
            issuer,
            also_trusted: Vec::new(),
        })
    }

    /// Also trusts the CA certificate `previous_pem` (the old CA during a rotation's
    /// grace period): identities it signed still verify, and it is among the
    /// [`trusted_cert_pems`](Self::trusted_cert_pems).
    pub fn trust_previous(&mut self, previous_pem: &str) -> Result<(), PkiError> {
        let der = pem_to_der(previous_pem)?;
        let (_, parsed) = X509Certificate::from_der(&der).map_err(|err| {
            PkiError::InvalidRequest(format!("trusted TLS CA certificate: {err}"))
        })?;
        if !parsed.is_ca() {
            return Err(PkiError::InvalidRequest(
                "a trusted TLS CA certificate is not a CA certificate".to_string(),
            ));
        }
        self.also_trusted.push(TrustedCaCert {
            pem: previous_pem.to_string(),
            der,
        });
        Ok(())
    }

    /// The active CA certificate (PEM): what new identities are signed by.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Every CA certificate whose signatures are accepted, the active one first: what
    /// peers must trust (`ca.pem`).
    pub fn trusted_cert_pems(&self) -> Vec<String> {
        std::iter::once(self.cert_pem.clone())
            .chain(self.also_trusted.iter().map(|ca| ca.pem.clone()))
            .collect()
    }

    /// The `ca_pin` of a CA certificate (PEM).
    pub fn pin_of_cert_pem(cert_pem: &str) -> Result<String, PkiError> {
        let der = pem_to_der(cert_pem)?;
        let (_, parsed) = X509Certificate::from_der(&der)
            .map_err(|err| PkiError::InvalidRequest(format!("TLS CA certificate: {err}")))?;
        Ok(pin_of(parsed.public_key().raw))
    }

    /// The `ca_pin` of every trusted CA, the active one first.
    pub fn trusted_pins(&self) -> Vec<String> {
        std::iter::once(self.ca_pin())
            .chain(self.also_trusted.iter().filter_map(|ca| {
                let (_, parsed) = X509Certificate::from_der(&ca.der).ok()?;
                Some(pin_of(parsed.public_key().raw))
            }))
            .collect()
    }

    /// A certificate for `newer`'s key and name, signed by this (older) CA and valid until
    /// `not_after`: sent after a leaf signed by `newer`, it lets peers that trust only this
    /// CA accept that leaf, so a TLS CA rotation breaks no connection during its grace
    /// period.
    pub fn cross_sign(
        &self,
        newer: &TlsCa,
        now: SystemTime,
        not_after: SystemTime,
    ) -> Result<String, PkiError> {
        // Same name and key as `newer`, so a leaf's issuer matches either certificate.
        let mut params = ca_params(&self.cluster);
        // Unconstrained: a chain may hold one cross certificate per rotation still in
        // its grace period.
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // The old CA's key identifier: with it, X.509 path builders (OpenSSL) see that this
        // certificate is not self-signed although its subject and issuer names are equal.
        params.use_authority_key_identifier_extension = true;
        params.not_before = offset_time(now - SKEW)?;
        params.not_after = offset_time(not_after)?;
        params.serial_number = Some(rand::random::<u64>().into());
        Ok(params
            .signed_by(newer.issuer.key(), &self.issuer)
            .map_err(rcgen_error)?
            .pem())
    }

    /// The private key (PEM), for storage. Never log it.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// `sha256:<hex>` of the CA's SubjectPublicKeyInfo: what joining hosts pin (`ca_pin`).
    pub fn ca_pin(&self) -> String {
        pin_of(&self.issuer.key().subject_public_key_info())
    }

    /// Signs an identity certificate for `params.public_key_pem`.
    pub fn issue(&self, params: &TlsCertParams, now: SystemTime) -> Result<String, PkiError> {
        params.identity.validate()?;
        if params.identity.cluster != self.cluster {
            return Err(PkiError::InvalidRequest(format!(
                "identity for cluster {:?} cannot be issued by cluster {:?}",
                params.identity.cluster, self.cluster
            )));
        }
        if params.ttl.is_zero() {
            return Err(PkiError::InvalidRequest(
                "the TTL must be more than zero".to_string(),
            ));
        }
        if !params.identity.kind.serves_tls()
            && (!params.dns_names.is_empty() || !params.ip_addresses.is_empty())
        {
            return Err(PkiError::InvalidRequest(format!(
                "a {} identity cannot carry DNS names or IP addresses",
                params.identity.kind
            )));
        }
        let public_key = SubjectPublicKeyInfo::from_pem(&params.public_key_pem)
            .map_err(|err| PkiError::InvalidRequest(format!("public key: {err}")))?;
        let mut cert = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, params.identity.name.as_str());
        name.push(DnType::OrganizationName, self.cluster.as_str());
        name.push(
            DnType::OrganizationalUnitName,
            params.identity.kind.as_str(),
        );
        cert.distinguished_name = name;
        let uri = params.identity.to_uri().try_into().map_err(rcgen_error)?;
        cert.subject_alt_names.push(SanType::URI(uri));
        for dns in &params.dns_names {
            cert.subject_alt_names.push(SanType::DnsName(
                dns.clone().try_into().map_err(rcgen_error)?,
            ));
        }
        for ip in &params.ip_addresses {
            cert.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        cert.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        cert.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if params.identity.kind.serves_tls() {
            cert.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        cert.not_before = offset_time(now - SKEW)?;
        cert.not_after = offset_time(now + params.ttl)?;
        cert.serial_number = Some(rand::random::<u64>().into());
        cert.use_authority_key_identifier_extension = true;
        Ok(cert
            .signed_by(&public_key, &self.issuer)
            .map_err(rcgen_error)?
            .pem())
    }

    /// Checks an identity certificate (DER) against this CA: signature, validity, and
    /// that it carries a Jumpgate identity of this cluster. In mutual TLS, rustls checks
    /// the chain first; this is what the services then read the identity with.
    pub fn verify(&self, cert_der: &[u8], now: SystemTime) -> Result<TlsIdentity, TlsCertError> {
        let (rest, cert) = X509Certificate::from_der(cert_der)
            .map_err(|err| TlsCertError::Malformed(err.to_string()))?;
        if !rest.is_empty() {
            return Err(TlsCertError::Malformed(
                "trailing bytes after the certificate".to_string(),
            ));
        }
        let signed_by_trusted_ca = std::iter::once(self.cert_der.as_slice())
            .chain(self.also_trusted.iter().map(|ca| ca.der.as_slice()))
            .filter_map(|der| X509Certificate::from_der(der).ok())
            .any(|(_, ca)| cert.verify_signature(Some(ca.public_key())).is_ok());
        if !signed_by_trusted_ca {
            return Err(TlsCertError::UntrustedCa);
        }
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let now_secs = i64::try_from(now_secs).unwrap_or(i64::MAX);
        let validity = cert.validity();
        if now_secs < validity.not_before.timestamp() {
            return Err(TlsCertError::NotYetValid);
        }
        if now_secs >= validity.not_after.timestamp() {
            return Err(TlsCertError::Expired);
        }
        let identity = identity_of(&cert)?;
        if identity.cluster != self.cluster {
            return Err(TlsCertError::WrongCluster {
                expected: self.cluster.clone(),
                found: identity.cluster,
            });
        }
        Ok(identity)
    }
}

/// Why a TLS identity certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsCertError {
    #[error("the certificate cannot be parsed: {0}")]
    Malformed(String),
    #[error("the certificate was not signed by this cluster's TLS CA")]
    UntrustedCa,
    #[error("the certificate is not valid yet; check the clocks")]
    NotYetValid,
    #[error("the certificate has expired; log in again")]
    Expired,
    #[error("the certificate carries no Jumpgate identity")]
    NoIdentity,
    #[error("the certificate was issued by cluster {found:?}, not {expected:?}")]
    WrongCluster { expected: String, found: String },
}

fn identity_of(cert: &X509Certificate<'_>) -> Result<TlsIdentity, TlsCertError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|err| TlsCertError::Malformed(err.to_string()))?
        .ok_or(TlsCertError::NoIdentity)?;
    let mut found = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with(URI_SCHEME) => Some(*uri),
            _ => None,
        });
    let uri = found.next().ok_or(TlsCertError::NoIdentity)?;
    if found.next().is_some() {
        // Two identities in one certificate would be ambiguous: refuse.
        return Err(TlsCertError::Malformed(
            "more than one Jumpgate identity".to_string(),
        ));
    }
    TlsIdentity::from_uri(uri)
        .ok_or_else(|| TlsCertError::Malformed(format!("bad identity {uri:?}")))
}

/// `sha256:<hex>` of a DER SubjectPublicKeyInfo.
fn pin_of(spki_der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(spki_der)))
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    let parsed = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|err| PkiError::InvalidRequest(format!("PEM: {err}")))?;
    Ok(parsed.1.contents)
}

/// A fresh ECDSA P-256 key for a TLS identity, made where it will be used (the private
/// key never travels): `(private key as PKCS#8 PEM, public key as PEM SubjectPublicKeyInfo)`.
pub fn generate_tls_key() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rcgen_error)?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

/// Checks that a PEM text is a public key a certificate can be issued for, before any
/// other work (or audit record) is spent on a request carrying it.
pub fn check_public_key_pem(pem: &str) -> Result<(), PkiError> {
    SubjectPublicKeyInfo::from_pem(pem)
        .map(|_| ())
        .map_err(|err| PkiError::InvalidRequest(format!("public key: {err}")))
}

/// A PEM certificate's validity window: `(not_before, not_after)`.
pub fn cert_validity(pem: &str) -> Result<(SystemTime, SystemTime), PkiError> {
    let der = pem_to_der(pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|err| PkiError::InvalidRequest(format!("certificate: {err}")))?;
    let time = |seconds: i64| {
        u64::try_from(seconds)
            .map(|seconds| UNIX_EPOCH + Duration::from_secs(seconds))
            .map_err(|_| PkiError::InvalidRequest("a certificate time before 1970".to_string()))
    };
    let validity = cert.validity();
    Ok((
        time(validity.not_before.timestamp())?,
        time(validity.not_after.timestamp())?,
    ))
}

/// Converts a PEM certificate (as `issue` returns) to DER.
pub fn cert_pem_to_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    pem_to_der(pem)
}

#[cfg(test)]
mod tests;
