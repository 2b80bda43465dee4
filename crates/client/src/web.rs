//! The proxy's web API (`docs/webapi.yaml`): JSON over HTTPS/1.1, one request per
//! connection (a login makes two: ping, then login).
//!
//! The proxy's web certificate is checked against the system's roots plus an optional
//! CA (`--ca-cert`, e.g. the cluster's own CA on a dev cluster), or not at all with the
//! explicitly named [`WebTrust::DangerousInsecure`].

use crate::error::ClientError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The proxy's port when `--proxy` names only a host.
pub const DEFAULT_PROXY_PORT: u16 = 3080;
/// How long one web request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (certificates and CA lists are a few KiB).
const MAX_BODY: usize = 1024 * 1024;

/// A proxy address: `host:port`, `host` (port 3080) or `[v6]:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAddr {
    host: String,
    port: u16,
}

impl ProxyAddr {
    pub fn parse(text: &str) -> Result<ProxyAddr, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidArgument {
            what: "proxy address",
            value: text.to_string(),
            reason: reason.to_string(),
        };
        let text = text.trim();
        let text = text
            .strip_prefix("https://")
            .unwrap_or(text)
            .trim_end_matches('/');
        let bracketed = text.starts_with('[');
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("an IPv6 address needs a closing ']'"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(invalid("expected HOST:PORT")),
            }
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        if host.is_empty() || (!bracketed && host.contains(':')) || host.contains('/') {
            return Err(invalid("expected HOST:PORT, e.g. proxy.example.com:3080"));
        }
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?,
            None => DEFAULT_PROXY_PORT,
        };
        Ok(ProxyAddr {
            host: host.to_string(),
            port,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn server_name(&self) -> Result<ServerName<'static>, ClientError> {
        ServerName::try_from(self.host.clone()).map_err(|err| ClientError::InvalidArgument {
            what: "proxy host",
            value: self.host.clone(),
            reason: err.to_string(),
        })
    }
}

impl fmt::Display for ProxyAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How the proxy's web certificate is trusted.
#[derive(Clone)]
pub enum WebTrust {
    /// The system's root CAs, plus these PEM CA certificates.
    Verified { extra_ca_pem: Option<String> },
    /// No check at all: anyone on the path can read the password. For throwaway test
    /// clusters only; callers must warn loudly.
    DangerousInsecure,
}

impl fmt::Debug for WebTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebTrust::Verified { extra_ca_pem } => f
                .debug_struct("Verified")
                .field("extra_ca", &extra_ca_pem.is_some())
                .finish(),
            WebTrust::DangerousInsecure => f.write_str("DangerousInsecure"),
        }
    }
}

use jumpgate_api::tls::provider;

impl WebTrust {
    fn client_config(&self) -> Result<Arc<ClientConfig>, ClientError> {
        let tls_error = |reason: String| ClientError::InvalidArgument {
            what: "TLS setting",
            value: String::new(),
            reason,
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| tls_error(err.to_string()))?;
        let mut config = match self {
            WebTrust::Verified { extra_ca_pem } => {
                let mut roots = RootCertStore::empty();
                // Unreadable system certificates are skipped: `--ca-cert` may be all
                // that is needed, and a missing root shows as a clear TLS error later.
                let native = rustls_native_certs::load_native_certs();
                let _ = roots.add_parsable_certificates(native.certs);
                if let Some(pem) = extra_ca_pem {
                    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|err| ClientError::InvalidArgument {
                            what: "--ca-cert file",
                            value: String::new(),
                            reason: format!("not PEM certificates: {err}"),
                        })?;
                    if certs.is_empty() {
                        return Err(ClientError::InvalidArgument {
                            what: "--ca-cert file",
                            value: String::new(),
                            reason: "holds no PEM certificate".to_string(),
                        });
                    }
                    for cert in certs {
                        roots
                            .add(cert)
                            .map_err(|err| ClientError::InvalidArgument {
                                what: "--ca-cert file",
                                value: String::new(),
                                reason: err.to_string(),
                            })?;
                    }
                }
                builder
                    .with_root_certificates(Arc::new(roots))
                    .with_no_client_auth()
            }
            WebTrust::DangerousInsecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Accepts any certificate (the handshake signatures are still checked, which proves
/// nothing about who the peer is). Only behind [`WebTrust::DangerousInsecure`].
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `GET /webapi/ping`.
#[derive(Debug, Clone, Deserialize)]
pub struct Ping {
    pub cluster_name: String,
    #[serde(default)]
    pub server_version: String,
    #[serde(default)]
    pub proxy: PingProxy,
    #[serde(default)]
    pub auth: PingAuth,
    #[serde(default)]
    pub ca_pins: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PingProxy {
    #[serde(default)]
    pub public_addr: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PingAuth {
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `otp` or `off`.
    #[serde(default = "default_second_factor")]
    pub second_factor: String,
}

impl Default for PingAuth {
    fn default() -> PingAuth {
        PingAuth {
            kind: "local".to_string(),
            second_factor: default_second_factor(),
        }
    }
}

fn default_second_factor() -> String {
    "otp".to_string()
}

impl Ping {
    /// Whether a login needs a one-time code.
    pub fn needs_otp(&self) -> bool {
        self.auth.second_factor != "off"
    }
}

/// `POST /webapi/login` body.
#[derive(Serialize)]
pub(crate) struct LoginBody<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub otp: &'a str,
    pub ssh_public_key: &'a str,
    pub tls_public_key_pem: &'a str,
    pub ttl_seconds: i64,
}

/// `POST /webapi/login` answer.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LoginAnswer {
    pub ssh_certificate: String,
    pub tls_certificate_pem: String,
    pub tls_ca_pems: Vec<String>,
    pub host_ca_known_hosts: String,
    pub expires_unix: i64,
    #[serde(default)]
    pub principals: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// `GET /webapi/ping`: the cluster's name and what a login needs.
pub async fn ping(proxy: &ProxyAddr, trust: &WebTrust) -> Result<Ping, ClientError> {
    let body = request(proxy, trust, http::Method::GET, "/webapi/ping", None).await?;
    serde_json::from_slice(&body).map_err(|err| ClientError::BadResponse {
        what: "ping answer",
        reason: err.to_string(),
    })
}

pub(crate) async fn post_login(
    proxy: &ProxyAddr,
    trust: &WebTrust,
    body: &LoginBody<'_>,
) -> Result<LoginAnswer, ClientError> {
    let json = serde_json::to_vec(body).map_err(|err| ClientError::BadResponse {
        what: "login request",
        reason: err.to_string(),
    })?;
    let answer = request(
        proxy,
        trust,
        http::Method::POST,
        "/webapi/login",
        Some(json),
    )
    .await?;
    serde_json::from_slice(&answer).map_err(|err| ClientError::BadResponse {
        what: "login answer",
        reason: err.to_string(),
    })
}

/// TCP to the proxy (no Nagle), then TLS as `name` with `config`; a TLS failure is
/// reported as `tls_error(addr, reason)` (the web certificate or the cluster's).
pub(crate) async fn connect_tls(
    proxy: &ProxyAddr,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    tls_error: fn(String, String) -> ClientError,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
    let addr = proxy.to_string();
    let tcp = TcpStream::connect((proxy.host(), proxy.port()))
        .await
        .map_err(|err| ClientError::Connect {
            addr: addr.clone(),
            reason: err.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|err| tls_error(addr, error_chain(&err)))
}

/// One HTTPS request; the body of a 2xx answer, or the error the proxy reported.
async fn request(
    proxy: &ProxyAddr,
    trust: &WebTrust,
    method: http::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Bytes, ClientError> {
    let config = trust.client_config()?;
    let name = proxy.server_name()?;
    let addr = proxy.to_string();
    let exchange = async {
        let tls = connect_tls(proxy, config, name, |addr, reason| ClientError::WebTls {
            addr,
            reason,
        })
        .await?;
        let http_error = |err: hyper::Error| ClientError::Connect {
            addr: addr.clone(),
            reason: format!("HTTP: {}", error_chain(&err)),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(http_error)?;
        let driver = tokio::spawn(connection);
        let mut builder = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &addr)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("jsh/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|err| ClientError::InvalidArgument {
                what: "request",
                value: path.to_string(),
                reason: err.to_string(),
            })?;
        let response = sender.send_request(request).await.map_err(http_error)?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|err| ClientError::BadResponse {
                what: "answer",
                reason: err.to_string(),
            })?
            .to_bytes();
        driver.abort();
        Ok::<_, ClientError>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| ClientError::Connect {
            addr: addr.clone(),
            reason: format!("no answer in {} s", REQUEST_TIMEOUT.as_secs()),
        })??;
    if status.is_success() {
        return Ok(bytes);
    }
    Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(ErrorBody { error }) => ClientError::Web {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
        },
        Err(_) => ClientError::Web {
            status: status.as_u16(),
            code: "unknown".to_string(),
            message: format!(
                "the proxy answered HTTP {status} without an error message; is {addr} a Jumpgate proxy?"
            ),
        },
    })
}

pub(crate) use jumpgate_api::client::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_addresses_parse() {
        let addr = ProxyAddr::parse("proxy.example.com:443").unwrap();
        assert_eq!((addr.host(), addr.port()), ("proxy.example.com", 443));
        assert_eq!(
            ProxyAddr::parse("proxy").unwrap().port(),
            DEFAULT_PROXY_PORT
        );
        assert_eq!(
            ProxyAddr::parse("https://127.0.0.1:3080/")
                .unwrap()
                .to_string(),
            "127.0.0.1:3080"
        );
        let v6 = ProxyAddr::parse("[::1]:3080").unwrap();
        assert_eq!((v6.host(), v6.port()), ("::1", 3080));
        assert_eq!(v6.to_string(), "[::1]:3080");
        for bad in [
            "",
            ":3080",
            "host:0",
            "host:x",
            "[::1",
            "a:b:c",
            "host/path:1",
        ] {
            assert!(ProxyAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_ca_file_is_named() {
        let trust = WebTrust::Verified {
            extra_ca_pem: Some("not a certificate".to_string()),
        };
        let message = trust.client_config().unwrap_err().to_string();
        assert!(message.contains("--ca-cert"), "{message}");
    }
}
