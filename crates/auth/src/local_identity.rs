//! TLS identities of services that run in the same process as the auth service (the auth
//! server itself, the admin identity `jctl` uses, a proxy next to auth): issued straight
//! from the cluster's CA, with no join, and re-issued after every CA rotation and before
//! they expire.

use crate::ClusterAuthorities;
use jumpgate_api::PemIdentity;
use jumpgate_pki::{IdentityKind, PkiError, TlsCertParams, TlsIdentity, generate_tls_key};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tracing::{info, warn};

/// How long these certificates last. They are re-issued at every start, after every CA
/// rotation and every [`LOCAL_CERT_RENEW_EVERY`], so a copy of an old admin certificate
/// and key stops working within a day.
const LOCAL_CERT_TTL: Duration = Duration::from_secs(24 * 3600);

/// How often a running process re-issues its own identities' certificates.
pub const LOCAL_CERT_RENEW_EVERY: Duration = Duration::from_secs(8 * 3600);

/// A TLS identity of this process. Its key stays the same across CA rotations, so a reader
/// of the admin identity files never sees a certificate for another key.
pub struct LocalIdentity {
    kind: IdentityKind,
    name: String,
    dns_names: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    key_pem: String,
    public_key_pem: String,
}

impl std::fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl LocalIdentity {
    /// A fresh key, made here. The certificate names `dns_names` and `ip_addresses`
    /// (for identities that also serve).
    pub fn new(
        kind: IdentityKind,
        name: &str,
        dns_names: Vec<String>,
        ip_addresses: Vec<IpAddr>,
    ) -> Result<LocalIdentity, PkiError> {
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
    /// peers still trusting only an earlier CA accept it; every CA still trusted.
    pub fn issue(&self, authorities: &ClusterAuthorities) -> Result<PemIdentity, PkiError> {
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
                ttl: LOCAL_CERT_TTL,
            },
            SystemTime::now(),
        )?;
        Ok(PemIdentity {
            cluster: authorities.cluster.clone(),
            cert_pem: std::iter::once(cert)
                .chain(authorities.tls_cross_certs.iter().cloned())
                .collect(),
            key_pem: self.key_pem.clone(),
            ca_pem: authorities.tls.trusted_cert_pems().concat(),
        })
    }

    /// Issues now, then again whenever `authorities` change (a rotation here or on another
    /// auth server, the end of a grace period) and every [`LOCAL_CERT_RENEW_EVERY`], until
    /// `stop` or until the authorities' sender is gone. The receiver always holds a usable
    /// identity: a failed re-issue keeps the previous one and is logged.
    pub fn follow(
        self,
        mut authorities: watch::Receiver<Arc<ClusterAuthorities>>,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<watch::Receiver<Arc<PemIdentity>>, PkiError> {
        let current = authorities.borrow_and_update().clone();
        let (issued_tx, issued_rx) = watch::channel(Arc::new(self.issue(&current)?));
        tokio::spawn(async move {
            tokio::pin!(stop);
            let every = LOCAL_CERT_RENEW_EVERY;
            let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    () = &mut stop => return,
                    () = issued_tx.closed() => return,
                    changed = authorities.changed() => if changed.is_err() { return },
                    _ = renew.tick() => {}
                }
                let current = authorities.borrow_and_update().clone();
                match self.issue(&current) {
                    Ok(issued) => {
                        info!(kind = %self.kind.as_str(), name = %self.name, "re-issued a local certificate");
                        let _ = issued_tx.send(Arc::new(issued));
                    }
                    Err(err) => warn!(
                        %err,
                        kind = %self.kind.as_str(),
                        "cannot re-issue a local certificate; the previous one stays in use"
                    ),
                }
            }
        });
        Ok(issued_rx)
    }
}
