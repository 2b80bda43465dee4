//! The certificate the proxy shows on its public port.
//!
//! Production deployments configure `proxy_service.https_keypairs` (a public certificate,
//! often renewed every few weeks by an ACME client or a secret manager that swaps the
//! files). [`PublicCerts`] is the rustls resolver; [`watch_keypairs`] re-reads the files
//! when they change, so a renewed certificate is served to new connections without a
//! restart and without dropping established ones. A renewal that leaves broken files
//! (half-written, key and certificate not matching) is logged and the previous
//! certificate stays in service. Without keypairs, the daemon gives the proxy a
//! certificate from the cluster's TLS CA (development).

use jumpgate_api::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tracing::{error, info};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Why the proxy's public keypair files cannot be used; the message names the file.
///
/// Not [`jumpgate_pki::CertError`], which says why an SSH certificate fails
/// verification.
#[derive(Debug, thiserror::Error)]
pub enum KeypairError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A certificate (chain, leaf first) and key as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeypairFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// One loaded certificate and the DNS names it serves (for SNI selection).
#[derive(Clone)]
struct LoadedCert {
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

/// The proxy's public certificates; the first one is served when no name matches.
pub struct PublicCerts {
    current: RwLock<Arc<Vec<LoadedCert>>>,
}

impl fmt::Debug for PublicCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<Vec<String>> = self
            .loaded()
            .iter()
            .map(|cert| cert.names.clone())
            .collect();
        f.debug_struct("PublicCerts")
            .field("names", &names)
            .finish()
    }
}

use jumpgate_api::tls::provider;

fn invalid(path: &Path, reason: impl fmt::Display) -> KeypairError {
    KeypairError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Builds a certified key from PEM texts; `cert_path`/`key_path` name them in errors.
fn certified_key(
    cert_pem: &str,
    key_pem: &str,
    cert_path: &Path,
    key_path: &Path,
) -> Result<LoadedCert, KeypairError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(cert_path, format!("not PEM certificates: {err}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| invalid(cert_path, "holds no PEM certificate"))?;
    let names = dns_names(leaf).map_err(|reason| invalid(cert_path, reason))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|err| invalid(key_path, format!("not a PEM private key: {err}")))?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|err| {
        invalid(
            key_path,
            format!("does not belong to {}: {err}", cert_path.display()),
        )
    })?;
    Ok(LoadedCert {
        names,
        key: Arc::new(key),
    })
}

/// The DNS names in a certificate's subject alternative names, lower case.
fn dns_names(leaf: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|err| format!("the first certificate cannot be parsed: {err}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    Ok(names)
}

/// Whether a certificate name (possibly `*.example.com`) covers `host`.
fn name_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

impl PublicCerts {
    /// From PEM texts already in memory (a certificate issued by the cluster's CA).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Arc<PublicCerts>, KeypairError> {
        let memory = Path::new("(issued certificate)");
        let loaded = certified_key(cert_pem, key_pem, memory, memory)?;
        Ok(Arc::new(PublicCerts {
            current: RwLock::new(Arc::new(vec![loaded])),
        }))
    }

    /// Reads every keypair; any error is fatal at start (a proxy must not come up with a
    /// certificate other than the one configured).
    pub fn load(pairs: &[KeypairFiles]) -> Result<Arc<PublicCerts>, KeypairError> {
        Ok(Arc::new(PublicCerts {
            current: RwLock::new(Arc::new(read_all(pairs)?)),
        }))
    }

    /// Replaces the certificates with one issued in memory (after a CA rotation).
    pub fn replace_pem(&self, cert_pem: &str, key_pem: &str) -> Result<(), KeypairError> {
        let memory = Path::new("(issued certificate)");
        let loaded = certified_key(cert_pem, key_pem, memory, memory)?;
        self.set(vec![loaded]);
        Ok(())
    }

    fn set(&self, certs: Vec<LoadedCert>) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(certs);
    }

    fn loaded(&self) -> Arc<Vec<LoadedCert>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A server config serving these certificates with the given ALPN protocols.
    /// Fails only when the crypto provider offers none of the safe protocol versions.
    pub fn server_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
    ) -> Result<Arc<ServerConfig>, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|proto| proto.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for PublicCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.loaded();
        if let Some(host) = hello.server_name() {
            let host = host.to_ascii_lowercase();
            if let Some(found) = certs
                .iter()
                .find(|cert| cert.names.iter().any(|name| name_matches(name, &host)))
            {
                return Some(found.key.clone());
            }
        }
        certs.first().map(|cert| cert.key.clone())
    }
}

fn read_file(path: &Path) -> Result<String, KeypairError> {
    std::fs::read_to_string(path).map_err(|source| KeypairError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_all(pairs: &[KeypairFiles]) -> Result<Vec<LoadedCert>, KeypairError> {
    pairs
        .iter()
        .map(|pair| {
            certified_key(
                &read_file(&pair.cert_file)?,
                &read_file(&pair.key_file)?,
                &pair.cert_file,
                &pair.key_file,
            )
        })
        .collect()
}

/// What identifies a file's version: modification time and length. Renewal tools
/// replace files by rename (or Kubernetes swaps a symlink); both change this.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn stamps(pairs: &[KeypairFiles]) -> Vec<Option<(SystemTime, u64)>> {
    pairs
        .iter()
        .flat_map(|pair| [stamp(&pair.cert_file), stamp(&pair.key_file)])
        .collect()
}

/// Re-reads `pairs` into `certs` whenever their files change, checking every
/// `interval`, until `shutdown` resolves. The file system is read on a blocking thread,
/// never on the connection path.
pub async fn watch_keypairs(
    certs: Arc<PublicCerts>,
    pairs: Vec<KeypairFiles>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let pairs = Arc::new(pairs);
    let mut seen = {
        let pairs = pairs.clone();
        tokio::task::spawn_blocking(move || stamps(&pairs))
            .await
            .unwrap_or_default()
    };
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(interval) => {}
        }
        let checked = {
            let pairs = pairs.clone();
            tokio::task::spawn_blocking(move || {
                let now = stamps(&pairs);
                (read_all(&pairs), now)
            })
            .await
        };
        let Ok((loaded, now)) = checked else { continue };
        if now == seen {
            continue;
        }
        match loaded {
            Ok(loaded) => {
                let names: Vec<String> = loaded.iter().flat_map(|c| c.names.clone()).collect();
                certs.set(loaded);
                seen = now;
                info!(?names, "reloaded the proxy's https_keypairs");
            }
            // Keep `seen` so the next round tries again (the writer may be half-way).
            Err(err) => error!(
                %err,
                "the proxy's https_keypairs changed but cannot be used; still serving the previous certificate"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn wildcards_cover_one_label_only() {
        assert!(name_matches("proxy.example.com", "proxy.example.com"));
        assert!(name_matches("*.example.com", "proxy.example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("proxy.example.com", "other.example.com"));
    }
}
