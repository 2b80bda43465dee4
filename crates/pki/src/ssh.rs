//! SSH certificate authorities: issuing user and host certificates, exporting the CAs in
//! OpenSSH's formats, and verifying certificates.
//!
//! What a Jumpgate user certificate carries (see `docs/security.md`):
//! - key id: the Jumpgate user name (it shows in sshd's logs);
//! - principals: the OS logins the user may use; **never empty**, because OpenSSH treats
//!   a certificate without principals as valid for every login;
//! - extensions: `permit-pty`, `permit-port-forwarding`, `permit-agent-forwarding`,
//!   `permit-X11-forwarding`, `permit-user-rc` as the roles allow, plus
//!   `jumpgate-user@jumpgate`, `jumpgate-roles@jumpgate` (comma-separated) and
//!   `jumpgate-cluster@jumpgate` and `jumpgate-traits@jumpgate` (the user's traits as
//!   JSON, for role templates such as `{{internal.logins}}`), which OpenSSH ignores and
//!   Jumpgate nodes read;
//! - critical option `source-address` when the roles pin client addresses;
//! - validity from one minute before issuance (clock skew between hosts) to the TTL.

use ipnet::IpNet;
use ssh_key::certificate::{Builder, CertType};
use ssh_key::{Algorithm, Certificate, Fingerprint, HashAlg, LineEnding, PrivateKey, PublicKey};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Extension naming the Jumpgate user (OpenSSH ignores unknown extensions).
pub const EXT_USER: &str = "jumpgate-user@jumpgate";
/// Extension listing the user's roles, comma-separated.
pub const EXT_ROLES: &str = "jumpgate-roles@jumpgate";
/// Extension naming the issuing cluster.
pub const EXT_CLUSTER: &str = "jumpgate-cluster@jumpgate";
/// Extension carrying the user's traits (`{"logins": [...]}`) as JSON, so a node can
/// expand role templates exactly as the auth service did.
pub const EXT_TRAITS: &str = "jumpgate-traits@jumpgate";
/// The only critical option Jumpgate issues and honours.
pub const OPT_SOURCE_ADDRESS: &str = "source-address";
/// How far before "now" a certificate becomes valid, to absorb clock skew between hosts.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(60);

/// Which certificates a CA signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaKind {
    User,
    Host,
}

impl CaKind {
    fn cert_type(self) -> CertType {
        match self {
            CaKind::User => CertType::User,
            CaKind::Host => CertType::Host,
        }
    }
}

impl fmt::Display for CaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CaKind::User => "user",
            CaKind::Host => "host",
        })
    }
}

/// Errors in making keys or certificates (the caller's request or the crypto library).
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("invalid certificate request: {0}")]
    InvalidRequest(String),
    #[error("the {kind} CA cannot sign a {requested} certificate")]
    WrongCa { kind: CaKind, requested: CaKind },
    #[error("SSH key or certificate error: {0}")]
    Ssh(#[from] ssh_key::Error),
    #[error("the system clock is before 1970")]
    Clock,
}

/// An SSH certificate authority: the active signing key, plus public keys that are
/// still trusted (during a rotation's grace period).
#[derive(Clone)]
pub struct SshCa {
    kind: CaKind,
    cluster: String,
    signer: PrivateKey,
    also_trusted: Vec<PublicKey>,
}

impl fmt::Debug for SshCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshCa")
            .field("kind", &self.kind)
            .field("cluster", &self.cluster)
            .field("fingerprint", &self.fingerprint().to_string())
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl SshCa {
    /// A new CA with a fresh Ed25519 key.
    pub fn generate(kind: CaKind, cluster: &str) -> Result<SshCa, PkiError> {
        let signer = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)?;
        Ok(SshCa {
            kind,
            cluster: cluster.to_string(),
            signer,
            also_trusted: Vec::new(),
        })
    }

    /// Loads a CA from its private key in OpenSSH format (as stored in the backend).
    pub fn from_openssh(kind: CaKind, cluster: &str, private_key: &str) -> Result<SshCa, PkiError> {
        Ok(SshCa {
            kind,
            cluster: cluster.to_string(),
            signer: PrivateKey::from_openssh(private_key)?,
            also_trusted: Vec::new(),
        })
    }

    /// The private key in OpenSSH format, for storage. Never log it.
    pub fn private_key_openssh(&self) -> Result<String, PkiError> {
        Ok(self.signer.to_openssh(LineEnding::LF)?.to_string())
    }

    /// Also trusts `previous` (the old key during a rotation's grace period).
    pub fn trust_previous(&mut self, previous: PublicKey) {
        self.also_trusted.push(previous);
    }

    pub fn kind(&self) -> CaKind {
        self.kind
    }

    pub fn public_key(&self) -> &PublicKey {
        self.signer.public_key()
    }

    /// The SHA-256 fingerprint of the signing key.
    pub fn fingerprint(&self) -> Fingerprint {
        self.signer.fingerprint(HashAlg::Sha256)
    }

    /// Fingerprints of every key whose signatures are accepted.
    pub fn trusted_fingerprints(&self) -> Vec<Fingerprint> {
        std::iter::once(self.fingerprint())
            .chain(
                self.also_trusted
                    .iter()
                    .map(|key| key.fingerprint(HashAlg::Sha256)),
            )
            .collect()
    }

    /// The CA in the format OpenSSH reads, one line per trusted key:
    /// user CA → lines for sshd's `TrustedUserCAKeys` file;
    /// host CA → `@cert-authority *` lines for `known_hosts`.
    pub fn export_openssh(&self) -> Result<String, PkiError> {
        let comment = format!("jumpgate-{}-ca@{}", self.kind, self.cluster);
        let mut out = String::new();
        let keys = std::iter::once(self.signer.public_key()).chain(self.also_trusted.iter());
        for key in keys {
            let mut key = key.clone();
            key.set_comment(comment.as_str());
            let line = key.to_openssh()?;
            match self.kind {
                CaKind::User => out.push_str(&line),
                CaKind::Host => {
                    out.push_str("@cert-authority * ");
                    out.push_str(&line);
                }
            }
            out.push('\n');
        }
        Ok(out)
    }

    /// Signs a user certificate for `params.public_key`, valid from a minute before
    /// `now` to `now + ttl`.
    pub fn sign_user(
        &self,
        params: &UserCertParams,
        now: SystemTime,
    ) -> Result<Certificate, PkiError> {
        if self.kind != CaKind::User {
            return Err(PkiError::WrongCa {
                kind: self.kind,
                requested: CaKind::User,
            });
        }
        params.validate()?;
        let mut builder = self.builder(&params.public_key, now, params.ttl)?;
        builder.key_id(params.user.as_str())?;
        for login in &params.logins {
            builder.valid_principal(login.as_str())?;
        }
        let permissions = &params.permissions;
        let flags = [
            ("permit-X11-forwarding", permissions.x11_forwarding),
            ("permit-agent-forwarding", permissions.agent_forwarding),
            ("permit-port-forwarding", permissions.port_forwarding),
            ("permit-pty", permissions.pty),
            ("permit-user-rc", permissions.user_rc),
        ];
        for (name, allowed) in flags {
            if allowed {
                builder.extension(name, "")?;
            }
        }
        builder.extension(EXT_USER, params.user.as_str())?;
        builder.extension(EXT_ROLES, params.roles.join(","))?;
        builder.extension(EXT_CLUSTER, self.cluster.as_str())?;
        if !params.traits.is_empty() {
            let traits = serde_json::to_string(&params.traits)
                .map_err(|err| PkiError::InvalidRequest(format!("traits: {err}")))?;
            builder.extension(EXT_TRAITS, traits)?;
        }
        if let Some(sources) = &params.source_address {
            let list: Vec<String> = sources.iter().map(IpNet::to_string).collect();
            builder.critical_option(OPT_SOURCE_ADDRESS, list.join(","))?;
        }
        builder.comment(format!("{}@{}", params.user, self.cluster))?;
        Ok(builder.sign(&self.signer)?)
    }

    /// Signs a host certificate whose principals are the node's name, UUID and addresses.
    pub fn sign_host(
        &self,
        params: &HostCertParams,
        now: SystemTime,
    ) -> Result<Certificate, PkiError> {
        if self.kind != CaKind::Host {
            return Err(PkiError::WrongCa {
                kind: self.kind,
                requested: CaKind::Host,
            });
        }
        if params.principals.is_empty() {
            return Err(PkiError::InvalidRequest(
                "a host certificate needs at least one principal (its name)".to_string(),
            ));
        }
        let mut builder = self.builder(&params.public_key, now, params.ttl)?;
        builder.key_id(params.host_id.as_str())?;
        for principal in &params.principals {
            builder.valid_principal(principal.as_str())?;
        }
        builder.extension(EXT_CLUSTER, self.cluster.as_str())?;
        Ok(builder.sign(&self.signer)?)
    }

    fn builder(
        &self,
        key: &PublicKey,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<Builder, PkiError> {
        if ttl.is_zero() {
            return Err(PkiError::InvalidRequest(
                "the TTL must be more than zero".to_string(),
            ));
        }
        let now = unix_seconds(now)?;
        let valid_after = now.saturating_sub(CLOCK_SKEW_ALLOWANCE.as_secs());
        let valid_before = now.saturating_add(ttl.as_secs().max(1));
        let mut builder = Builder::new_with_random_nonce(
            &mut rand::rng(),
            key.key_data().clone(),
            valid_after,
            valid_before,
        )?;
        builder.serial(rand::random())?;
        builder.cert_type(self.kind.cert_type())?;
        Ok(builder)
    }
}

/// A fresh Ed25519 key pair made where it will be used, in OpenSSH formats.
#[derive(Clone)]
pub struct SshKeyPair {
    /// The private key file (`-----BEGIN OPENSSH PRIVATE KEY-----`). Never log it.
    pub private_openssh: String,
    /// The `.pub` line.
    pub public_openssh: String,
}

impl std::fmt::Debug for SshKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshKeyPair")
            .field("public_openssh", &self.public_openssh)
            .field("private_openssh", &"[redacted]")
            .finish()
    }
}

/// Makes an Ed25519 key pair with `comment` (for `jctl auth sign`, agents, `jsh`).
pub fn generate_ssh_key(comment: &str) -> Result<SshKeyPair, PkiError> {
    let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)?;
    key.set_comment(comment);
    let private_openssh = key.to_openssh(ssh_key::LineEnding::LF)?.to_string();
    let mut public_openssh = key.public_key().to_openssh()?;
    public_openssh.push('\n');
    Ok(SshKeyPair {
        private_openssh,
        public_openssh,
    })
}

/// What the roles allow a session to do, carried as certificate extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub pty: bool,
    pub port_forwarding: bool,
    pub agent_forwarding: bool,
    pub x11_forwarding: bool,
    pub user_rc: bool,
}

/// A request for a user certificate, already authorised by the caller (auth service).
#[derive(Debug, Clone)]
pub struct UserCertParams {
    /// The user's own public key (the private key never leaves the user's machine).
    pub public_key: PublicKey,
    /// The Jumpgate user name.
    pub user: String,
    /// OS logins allowed (SSH principals); must not be empty.
    pub logins: Vec<String>,
    pub roles: Vec<String>,
    /// The user's traits, for role templates on nodes.
    pub traits: BTreeMap<String, Vec<String>>,
    pub ttl: Duration,
    pub permissions: Permissions,
    /// Client networks the certificate may be used from (`source-address`).
    pub source_address: Option<Vec<IpNet>>,
}

impl UserCertParams {
    fn validate(&self) -> Result<(), PkiError> {
        let invalid = |why: String| Err(PkiError::InvalidRequest(why));
        if self.user.is_empty() {
            return invalid("the user name is empty".to_string());
        }
        if self.logins.is_empty() {
            // OpenSSH would accept such a certificate for *any* login.
            return invalid(format!(
                "user {} has no allowed logins; give them logins before issuing a certificate",
                self.user
            ));
        }
        if let Some(login) = self.logins.iter().find(|l| l.is_empty() || l.contains(',')) {
            return invalid(format!("login {login:?} is empty or contains a comma"));
        }
        if let Some(role) = self.roles.iter().find(|r| r.is_empty() || r.contains(',')) {
            return invalid(format!("role name {role:?} is empty or contains a comma"));
        }
        if matches!(&self.source_address, Some(list) if list.is_empty()) {
            return invalid(
                "source_address is an empty list: nobody could use the certificate".to_string(),
            );
        }
        Ok(())
    }
}

/// A request for a host certificate.
#[derive(Debug, Clone)]
pub struct HostCertParams {
    pub public_key: PublicKey,
    /// The node's UUID (the certificate's key id).
    pub host_id: String,
    /// Names the host may be reached by: node name, UUID, addresses.
    pub principals: Vec<String>,
    pub ttl: Duration,
}

/// Why a certificate was refused. Each variant names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("the certificate's signature does not verify")]
    BadSignature,
    #[error(
        "the certificate was signed by {fingerprint}, which is not a trusted {kind} CA of this cluster"
    )]
    UntrustedCa { kind: CaKind, fingerprint: String },
    #[error("a {found} certificate was presented where a {expected} certificate is required")]
    WrongType { expected: CaKind, found: String },
    #[error(
        "the certificate is not valid yet (valid from {valid_after}, now {now}); check the clocks"
    )]
    NotYetValid { valid_after: u64, now: u64 },
    #[error("the certificate expired at {valid_before} (now {now}); log in again")]
    Expired { valid_before: u64, now: u64 },
    #[error("the certificate names no principals")]
    NoPrincipals,
    #[error("login {login:?} is not in the certificate's principals {allowed:?}")]
    PrincipalNotAllowed { login: String, allowed: Vec<String> },
    #[error(
        "connections from {addr} are not allowed by the certificate's source-address {allowed}"
    )]
    SourceAddressDenied { addr: String, allowed: String },
    #[error("the certificate's source-address {value:?} is malformed: {reason}")]
    MalformedSourceAddress { value: String, reason: String },
    #[error("the certificate carries critical option {name:?}, which Jumpgate does not implement")]
    UnknownCriticalOption { name: String },
    #[error("the certificate was issued by cluster {found:?}, not {expected:?}")]
    WrongCluster { expected: String, found: String },
    #[error("the certificate's traits extension is malformed: {0}")]
    MalformedTraits(String),
}

/// What to check a user certificate against.
#[derive(Debug, Clone)]
pub struct UserCertCheck<'a> {
    /// Fingerprints of the trusted user CA keys (`SshCa::trusted_fingerprints`).
    pub trusted: &'a [Fingerprint],
    /// This cluster's name.
    pub cluster: &'a str,
    /// The OS login requested.
    pub login: &'a str,
    /// The client's address, for `source-address`; `None` refuses pinned certificates.
    pub client_addr: Option<IpAddr>,
    pub now: SystemTime,
}

/// A user certificate that passed every check, with what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUser {
    pub user: String,
    pub roles: Vec<String>,
    /// The user's traits as issued (empty when the certificate carries none).
    pub traits: BTreeMap<String, Vec<String>>,
    pub logins: Vec<String>,
    pub permissions: Permissions,
    /// Unix seconds after which the certificate is no longer valid.
    pub valid_before: u64,
}

/// The one check of a user certificate: signature, trusted CA, type, validity window,
/// principal, critical options (only `source-address` is known; any other refuses), and
/// the issuing cluster.
pub fn verify_user_cert(
    cert: &Certificate,
    check: &UserCertCheck<'_>,
) -> Result<VerifiedUser, CertError> {
    verify_common(cert, CaKind::User, check.trusted, check.now)?;
    let login_allowed = cert.valid_principals().iter().any(|p| p == check.login);
    if !login_allowed {
        return Err(CertError::PrincipalNotAllowed {
            login: check.login.to_string(),
            allowed: cert.valid_principals().to_vec(),
        });
    }
    for (name, value) in cert.critical_options().iter() {
        match name.as_str() {
            OPT_SOURCE_ADDRESS => check_source_address(value, check.client_addr)?,
            _ => return Err(CertError::UnknownCriticalOption { name: name.clone() }),
        }
    }
    let extensions = cert.extensions();
    let cluster = extensions.get(EXT_CLUSTER).cloned().unwrap_or_default();
    if cluster != check.cluster {
        return Err(CertError::WrongCluster {
            expected: check.cluster.to_string(),
            found: cluster,
        });
    }
    let roles = extensions
        .get(EXT_ROLES)
        .map(|list| {
            list.split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let traits = match extensions.get(EXT_TRAITS) {
        Some(json) => {
            serde_json::from_str(json).map_err(|err| CertError::MalformedTraits(err.to_string()))?
        }
        None => BTreeMap::new(),
    };
    Ok(VerifiedUser {
        user: extensions
            .get(EXT_USER)
            .cloned()
            .unwrap_or_else(|| cert.key_id().to_string()),
        roles,
        traits,
        logins: cert.valid_principals().to_vec(),
        permissions: Permissions {
            pty: extensions.contains_key("permit-pty"),
            port_forwarding: extensions.contains_key("permit-port-forwarding"),
            agent_forwarding: extensions.contains_key("permit-agent-forwarding"),
            x11_forwarding: extensions.contains_key("permit-X11-forwarding"),
            user_rc: extensions.contains_key("permit-user-rc"),
        },
        valid_before: cert.valid_before(),
    })
}

/// A host certificate that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedHost {
    pub host_id: String,
    pub principals: Vec<String>,
}

/// The one check of a host certificate: signature, trusted host CA, type, validity, and
/// that `hostname` (what the client dialled) is among its principals.
pub fn verify_host_cert(
    cert: &Certificate,
    trusted: &[Fingerprint],
    hostname: &str,
    now: SystemTime,
) -> Result<VerifiedHost, CertError> {
    verify_common(cert, CaKind::Host, trusted, now)?;
    if !cert.valid_principals().iter().any(|p| p == hostname) {
        return Err(CertError::PrincipalNotAllowed {
            login: hostname.to_string(),
            allowed: cert.valid_principals().to_vec(),
        });
    }
    if let Some((name, _)) = cert.critical_options().iter().next() {
        return Err(CertError::UnknownCriticalOption { name: name.clone() });
    }
    Ok(VerifiedHost {
        host_id: cert.key_id().to_string(),
        principals: cert.valid_principals().to_vec(),
    })
}

fn verify_common(
    cert: &Certificate,
    expected: CaKind,
    trusted: &[Fingerprint],
    now: SystemTime,
) -> Result<(), CertError> {
    // The signature first: nothing else in an unsigned certificate means anything.
    cert.verify_signature()
        .map_err(|_| CertError::BadSignature)?;
    let signer = cert.signature_key().fingerprint(HashAlg::Sha256);
    if !trusted.contains(&signer) {
        return Err(CertError::UntrustedCa {
            kind: expected,
            fingerprint: signer.to_string(),
        });
    }
    if cert.cert_type() != expected.cert_type() {
        return Err(CertError::WrongType {
            expected,
            found: match cert.cert_type() {
                CertType::User => "user".to_string(),
                CertType::Host => "host".to_string(),
            },
        });
    }
    let now = unix_seconds(now).unwrap_or(0);
    if now < cert.valid_after() {
        return Err(CertError::NotYetValid {
            valid_after: cert.valid_after(),
            now,
        });
    }
    if now >= cert.valid_before() {
        return Err(CertError::Expired {
            valid_before: cert.valid_before(),
            now,
        });
    }
    if cert.valid_principals().is_empty() {
        // OpenSSH reads "no principals" as "any principal"; we never issue such
        // certificates and never accept them.
        return Err(CertError::NoPrincipals);
    }
    Ok(())
}

/// `source-address`: a comma-separated list of addresses or CIDR networks, as OpenSSH.
fn check_source_address(value: &str, client: Option<IpAddr>) -> Result<(), CertError> {
    let mut networks = Vec::new();
    for part in value.split(',') {
        let part = part.trim();
        let network = part
            .parse::<IpNet>()
            .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
            .map_err(|err| CertError::MalformedSourceAddress {
                value: value.to_string(),
                reason: format!("{part:?}: {err}"),
            })?;
        networks.push(network);
    }
    let denied = |addr: String| CertError::SourceAddressDenied {
        addr,
        allowed: value.to_string(),
    };
    let Some(client) = client else {
        return Err(denied("an unknown address".to_string()));
    };
    // An IPv4 client seen through an IPv6 socket is still that IPv4 address.
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(client),
        v4 => v4,
    };
    if networks.iter().any(|net| net.contains(&client)) {
        Ok(())
    } else {
        Err(denied(client.to_string()))
    }
}

fn unix_seconds(time: SystemTime) -> Result<u64, PkiError> {
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .map_err(|_| PkiError::Clock)
}

#[cfg(test)]
mod tests;
