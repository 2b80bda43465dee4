//! TLS credentials and the rustls configurations built from them.
//!
//! Every connection between services is mutual TLS under the cluster's TLS CA
//! (DESIGN.md "Invariants"). One crypto provider: aws-lc-rs, as rustls' default.

pub use jumpgate_pki::IdentityKind;
use jumpgate_pki::TlsIdentity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The DNS name every auth server certificate carries and every client checks, whatever
/// address it dialled (an IP, a load balancer): the trust comes from the cluster's CA,
/// not from public DNS.
pub const AUTH_SERVER_NAME: &str = "jumpgate.cluster.local";

/// ALPN for gRPC over TLS.
const ALPN_H2: &[u8] = b"h2";

/// Errors setting up or making a connection to the auth API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A certificate, key or CA file is unusable; the message names which.
    #[error("{what}: {reason}")]
    Credentials { what: String, reason: String },
    /// The TCP or TLS connection failed.
    #[error("cannot connect to the auth service at {addr}: {reason}")]
    Connect { addr: String, reason: String },
}

fn credentials(what: &str, reason: impl fmt::Display) -> ApiError {
    ApiError::Credentials {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

/// The one crypto provider every TLS config of Jumpgate is built with (aws-lc-rs, rustls'
/// default): the services, the proxy's public port, `jsh` and `jctl`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS identity as PEM text, as issued and as stored: the certificate (followed by any
/// cross certificates), its private key, and the CA certificates to trust for peers.
#[derive(Clone, PartialEq, Eq)]
pub struct PemIdentity {
    /// The cluster whose CA issued it.
    pub cluster: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl fmt::Debug for PemIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemIdentity")
            .field("cluster", &self.cluster)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl PemIdentity {
    /// The parsed credentials, for rustls configs.
    pub fn credentials(&self) -> Result<TlsCredentials, ApiError> {
        TlsCredentials::from_pem(&self.cert_pem, &self.key_pem, &self.ca_pem)
    }
}

/// A holder's certificate and key, and the CAs it trusts for its peers.
pub struct TlsCredentials {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    trusted: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for TlsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCredentials")
            .field("chain", &self.chain.len())
            .field("key", &"[redacted]")
            .field("trusted", &self.trusted.len())
            .finish()
    }
}

/// Every certificate in a PEM text (at least one).
pub fn certs_from_pem(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, ApiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| credentials(what, format!("not PEM certificates: {err}")))?;
    if certs.is_empty() {
        return Err(credentials(what, "holds no PEM certificate"));
    }
    Ok(certs)
}

impl TlsCredentials {
    /// From PEM texts: the holder's certificate (chain), its private key (PKCS#8, SEC1 or
    /// PKCS#1), and the trusted CA certificates (old and new during a rotation).
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        trusted_ca_pem: &str,
    ) -> Result<TlsCredentials, ApiError> {
        let chain = certs_from_pem("certificate", cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|err| credentials("private key", format!("not a PEM private key: {err}")))?;
        let trusted = certs_from_pem("trusted CAs", trusted_ca_pem)?;
        Ok(TlsCredentials {
            chain,
            key,
            trusted,
        })
    }

    /// The leaf certificate (DER).
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }

    /// The holder's private key, for signing with it (see [`crate::forwarded`]).
    pub(crate) fn private_key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, ApiError> {
        let mut roots = RootCertStore::empty();
        for cert in &self.trusted {
            roots
                .add(cert.clone())
                .map_err(|err| credentials("trusted CAs", err))?;
        }
        Ok(Arc::new(roots))
    }

    /// A server config that asks for a client certificate under the trusted CAs but
    /// also accepts callers without one (a joining host has none yet); the service
    /// decides per call. A certificate that is presented must be valid.
    ///
    /// `send_chain_with_ca` appends the trusted CAs to the chain this server sends, so
    /// that a joining host can find the CA it pins by `ca_pin`.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, ApiError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .allow_unauthenticated()
            .build()
            .map_err(|err| credentials("trusted CAs", err))?;
        let mut chain = self.chain.clone();
        chain.extend(self.trusted.iter().cloned());
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| credentials("TLS", err))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, self.key.clone_key())
            .map_err(|err| credentials("certificate and key", err))?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    /// A server config that requires a client certificate under the trusted CAs, for the
    /// proxy's internal protocols (reverse tunnels), offering `alpn`.
    pub fn server_config_requiring_clients(
        &self,
        alpn: &[&[u8]],
    ) -> Result<Arc<ServerConfig>, ApiError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(|err| credentials("trusted CAs", err))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| credentials("TLS", err))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|err| credentials("certificate and key", err))?;
        config.alpn_protocols = alpn.iter().map(|proto| proto.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A client config presenting this identity and trusting only the cluster's CAs,
    /// for the auth API: the server must hold an **auth** identity.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, ApiError> {
        self.client_config_for(IdentityKind::Auth, &[ALPN_H2])
    }

    /// A client config presenting this identity, offering `alpn`, that accepts only a
    /// server whose certificate (under the cluster's CAs) carries the identity kind
    /// `peer`: an agent's tunnel and a user's SSH dial want a proxy, every auth API
    /// client an auth server. A name in the certificate is not enough, since any host
    /// certificate may carry names (DESIGN.md "Identity": every peer checks the role).
    pub fn client_config_for(
        &self,
        peer: IdentityKind,
        alpn: &[&[u8]],
    ) -> Result<Arc<ClientConfig>, ApiError> {
        let webpki =
            rustls::client::WebPkiServerVerifier::builder_with_provider(self.roots()?, provider())
                .build()
                .map_err(|err| credentials("trusted CAs", err))?;
        let verifier = PeerRoleVerifier {
            inner: webpki,
            expected: peer,
        };
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| credentials("TLS", err))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|err| credentials("certificate and key", err))?;
        config.alpn_protocols = alpn.iter().map(|proto| proto.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// The identity kind a verified server certificate carries must be the one the client
/// meant to reach: a node that obtained a certificate naming `jumpgate.cluster.local`
/// or `proxy.jumpgate.cluster.local` still cannot pose as auth or as a proxy.
pub fn check_peer_role(end_entity: &[u8], expected: IdentityKind) -> Result<(), rustls::Error> {
    let identity = TlsIdentity::from_cert_der(end_entity).map_err(|err| {
        rustls::Error::General(format!(
            "the server's certificate carries no usable cluster identity ({err})"
        ))
    })?;
    if identity.kind != expected {
        return Err(rustls::Error::General(format!(
            "the server is a {} ({}), not the {expected} this client meant to reach; \
             check the address, or someone is posing as the {expected}",
            identity.kind, identity.name
        )));
    }
    Ok(())
}

/// webpki path validation under the cluster's CAs, then [`check_peer_role`].
#[derive(Debug)]
struct PeerRoleVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    expected: IdentityKind,
}

impl ServerCertVerifier for PeerRoleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        check_peer_role(end_entity.as_ref(), self.expected)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client config without an identity that trusts the cluster CA whose public key
/// hashes to one of `ca_pins` (`sha256:<hex>`, from `jctl status` or `jctl tokens add`):
/// how a host that has only a join token and a pin reaches the auth service.
pub fn pinned_client_config(ca_pins: &[String]) -> Result<Arc<ClientConfig>, ApiError> {
    if ca_pins.is_empty() {
        return Err(credentials(
            "ca_pin",
            "no CA pin given; `jctl status` on the auth host prints it",
        ));
    }
    let mut pins = Vec::new();
    for pin in ca_pins {
        let hex_part = pin.strip_prefix("sha256:").unwrap_or(pin);
        let bytes = hex::decode(hex_part)
            .ok()
            .filter(|bytes| bytes.len() == 32)
            .ok_or_else(|| {
                credentials(
                    "ca_pin",
                    format!("{pin:?} is not sha256:<64 hex digits> (as `jctl status` prints it)"),
                )
            })?;
        pins.push(bytes);
    }
    let verifier = PinnedCaVerifier {
        pins,
        provider: provider(),
    };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| credentials("TLS", err))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// `sha256:<hex>` of a certificate's SubjectPublicKeyInfo: the `ca_pin` form.
pub fn spki_pin(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    Some(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(cert.public_key().raw))
    ))
}

/// Trusts a server whose chain includes a CA with a pinned public key, and whose leaf
/// that CA signed for [`AUTH_SERVER_NAME`] with an auth identity: full webpki path
/// validation, with the pinned CA as the only root, then the role.
#[derive(Debug)]
struct PinnedCaVerifier {
    pins: Vec<Vec<u8>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = intermediates.iter().find(|cert| {
            X509Certificate::from_der(cert.as_ref()).is_ok_and(|(_, parsed)| {
                let digest = Sha256::digest(parsed.public_key().raw);
                self.pins
                    .iter()
                    .any(|pin| pin.as_slice() == digest.as_slice())
            })
        });
        let Some(ca) = pinned else {
            return Err(rustls::Error::General(
                "the auth server's CA does not match the ca_pin: check the pin, or this is \
                 not your cluster"
                    .to_string(),
            ));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|err| rustls::Error::General(err.to_string()))?;
        let verified =
            inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)?;
        // A joining host sends its token to this server: it must be an auth server.
        check_peer_role(end_entity.as_ref(), IdentityKind::Auth)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
