//! Identity files in the data directory: the admin identity `jctl` uses on the auth
//! host (`DATA_DIR/admin/`), written by the auth service at every start.
//!
//! Layout: `cert.pem` (the X.509 identity), `key.pem` (its private key, 0600),
//! `ca.pem` (the cluster's TLS CA certificates to trust) and `auth_addr` (where this
//! host's auth API listens, as `host:port`).
//!
//! Also [`LocalIdentity`]: the TLS identities of services co-located with the auth
//! service (the auth server itself, the admin, a local proxy), issued straight from
//! the cluster's CA.

use anyhow::{Context, Result, bail};
use jumpgate_api::TlsCredentials;
use jumpgate_auth::ClusterAuthorities;
use jumpgate_pki::{IdentityKind, TlsCertParams, TlsIdentity, generate_tls_key};
use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The admin identity's directory inside a data directory.
pub fn admin_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("admin")
}

/// An identity's files, read back.
#[derive(Debug)]
pub struct IdentityFiles {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    pub auth_addr: Option<String>,
}

impl IdentityFiles {
    pub fn credentials(&self) -> Result<TlsCredentials> {
        Ok(TlsCredentials::from_pem(
            &self.cert_pem,
            &self.key_pem,
            &self.ca_pem,
        )?)
    }
}

/// Writes a file readable only by its owner, replacing it atomically (a `jctl` reading
/// concurrently sees the old or the new file, never half of one).
fn write_private(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes an identity into `dir` (created 0700).
pub fn write(dir: &Path, files: &IdentityFiles) -> Result<()> {
    crate::datadir::create_private_dir(dir)?;
    write_private(&dir.join("key.pem"), &files.key_pem)?;
    write_private(&dir.join("cert.pem"), &files.cert_pem)?;
    write_private(&dir.join("ca.pem"), &files.ca_pem)?;
    if let Some(addr) = &files.auth_addr {
        write_private(&dir.join("auth_addr"), &format!("{addr}\n"))?;
    }
    Ok(())
}

/// Reads an identity from `dir`, saying what to do when it is missing.
pub fn read(dir: &Path) -> Result<IdentityFiles> {
    if !dir.join("cert.pem").exists() {
        bail!(
            "no admin identity in {}: jctl runs on the auth host and needs the auth \
             service to have started there (with this data directory), and read access \
             to it (run as the same user, e.g. root)",
            dir.display()
        );
    }
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let auth_addr = match std::fs::read_to_string(dir.join("auth_addr")) {
        Ok(text) => Some(text.trim().to_string()).filter(|addr| !addr.is_empty()),
        Err(_) => None,
    };
    Ok(IdentityFiles {
        cert_pem: read("cert.pem")?,
        key_pem: read("key.pem")?,
        ca_pem: read("ca.pem")?,
        auth_addr,
    })
}

/// How long the certificates of this process's own identities (the auth server's, the
/// admin identity jctl uses, a proxy next to auth) last. They are re-issued at every
/// start, after every CA rotation and every [`SERVICE_CERT_RENEW_EVERY`], so a copy of
/// an old admin certificate and key stops working within a day.
const SERVICE_CERT_TTL: Duration = Duration::from_secs(24 * 3600);

/// How often a running process re-issues its own identities' certificates.
pub(crate) const SERVICE_CERT_RENEW_EVERY: Duration = Duration::from_secs(8 * 3600);

/// A TLS identity of this process: its key stays the same across CA rotations, so a
/// reader of the admin identity files never sees a certificate for another key.
pub(crate) struct LocalIdentity {
    kind: IdentityKind,
    name: String,
    dns_names: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    pub(crate) key_pem: String,
    public_key_pem: String,
}

impl LocalIdentity {
    /// A fresh key, made here.
    pub(crate) fn new(
        kind: IdentityKind,
        name: &str,
        dns_names: Vec<String>,
        ip_addresses: Vec<IpAddr>,
    ) -> Result<LocalIdentity> {
        let (key_pem, public_key_pem) = generate_tls_key()?;
        Ok(LocalIdentity {
            kind,
            name: name.to_string(),
            dns_names,
            ip_addresses,
            key_pem,
            public_key_pem,
        })
    }

    /// A certificate from the active TLS CA, followed by the cross certificates that let
    /// peers still trusting only an earlier CA accept it.
    pub(crate) fn issue(&self, authorities: &ClusterAuthorities) -> Result<String> {
        let cert = authorities.tls.issue(
            &TlsCertParams {
                identity: TlsIdentity {
                    cluster: authorities.cluster.clone(),
                    kind: self.kind,
                    name: self.name.clone(),
                    roles: vec![self.kind.as_str().to_string()],
                },
                public_key_pem: self.public_key_pem.clone(),
                dns_names: self.dns_names.clone(),
                ip_addresses: self.ip_addresses.clone(),
                ttl: SERVICE_CERT_TTL,
            },
            SystemTime::now(),
        )?;
        Ok(std::iter::once(cert)
            .chain(authorities.tls_cross_certs.iter().cloned())
            .collect())
    }
}
