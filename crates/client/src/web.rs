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

/// A proxy address: `host:port`, `host` (port 3080) or `[v6]:port`; or several separated by
/// commas (`a.example.com:443,b.example.com:443`), tried in turn: a small cluster's users
/// fail over between its proxies with no load balancer or DNS change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAddr {
    /// Never empty, no address twice.
    addrs: Vec<(String, u16)>,
}

/// Where the next connection of a list starts, so that after a failure the next one
/// starts elsewhere.
static NEXT_START: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How long one address of a list may take to accept before the next is tried.
const PER_ADDRESS_TIMEOUT: Duration = Duration::from_secs(3);

impl ProxyAddr {
    pub fn parse(text: &str) -> Result<ProxyAddr, ClientError> {
        let mut addrs: Vec<(String, u16)> = Vec::new();
        for part in text.split(',') {
            let addr = parse_one(part, text)?;
            if addrs.contains(&addr) {
                return Err(ClientError::InvalidArgument {
                    what: "proxy address",
                    value: text.to_string(),
                    reason: format!("{} is listed twice", show(&addr.0, addr.1)),
                });
            }
            addrs.push(addr);
        }
        Ok(ProxyAddr { addrs })
    }

    /// The host of the first address.
    pub fn host(&self) -> &str {
        self.addrs.first().map_or("", |(host, _)| host)
    }

    /// The port of the first address.
    pub fn port(&self) -> u16 {
        self.addrs
            .first()
            .map_or(DEFAULT_PROXY_PORT, |(_, port)| *port)
    }

    /// The addresses, in the order given, as `host:port`.
    pub fn addrs(&self) -> Vec<String> {
        self.addrs
            .iter()
            .map(|(host, port)| show(host, *port))
            .collect()
    }
}

fn show(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One `host:port`, `host` or `[v6]:port` of `whole` (the list, for messages).
fn parse_one(part: &str, whole: &str) -> Result<(String, u16), ClientError> {
    let invalid = |reason: &str| ClientError::InvalidArgument {
        what: "proxy address",
        value: whole.to_string(),
        reason: reason.to_string(),
    };
    let text = part.trim();
    if text.is_empty() {
        return Err(invalid(
            "an empty entry; separate proxy addresses with single commas",
        ));
    }
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
    Ok((host.to_string(), port))
}

fn server_name_of(host: &str) -> Result<ServerName<'static>, ClientError> {
    ServerName::try_from(host.to_string()).map_err(|err| ClientError::InvalidArgument {
        what: "proxy host",
        value: host.to_string(),
        reason: err.to_string(),
    })
}

impl fmt::Display for ProxyAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addrs().join(","))
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
    /// The default connector when `kind` is an SSO kind.
    #[serde(default)]
    pub connector_name: String,
    /// Whether passwords are accepted.
    #[serde(default = "yes")]
    pub local_auth: bool,
    /// The cluster's SSO connectors.
    #[serde(default)]
    pub connectors: Vec<PingConnector>,
}

/// An SSO connector as `/webapi/ping` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct PingConnector {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub display: String,
}

fn yes() -> bool {
    true
}

impl Default for PingAuth {
    fn default() -> PingAuth {
        PingAuth {
            kind: "local".to_string(),
            second_factor: default_second_factor(),
            connector_name: String::new(),
            local_auth: true,
            connectors: Vec::new(),
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
    post_json(proxy, trust, "/webapi/login", body, "login").await
}

/// `POST PATH` with `body` as JSON; the answer read as `A`. `what` names both in errors.
pub(crate) async fn post_json<B: Serialize, A: serde::de::DeserializeOwned>(
    proxy: &ProxyAddr,
    trust: &WebTrust,
    path: &str,
    body: &B,
    what: &'static str,
) -> Result<A, ClientError> {
    let json = serde_json::to_vec(body).map_err(|err| ClientError::BadResponse {
        what,
        reason: err.to_string(),
    })?;
    let answer = request(proxy, trust, http::Method::POST, path, Some(json)).await?;
    serde_json::from_slice(&answer).map_err(|err| ClientError::BadResponse {
        what,
        reason: err.to_string(),
    })
}

/// The name a proxy's certificate is checked against: the cluster's fixed proxy name
/// (cluster TLS), or the host name dialled (the web certificate).
pub(crate) enum TlsName {
    Fixed(ServerName<'static>),
    DialledHost,
}

/// TCP to the proxy (no Nagle), then TLS with `config`; for a list, each address in turn
/// (from a rotating start, each for at most [`PER_ADDRESS_TIMEOUT`] to accept) until one
/// completes both. A TLS failure is reported as `tls_error(addr, reason)` (the web
/// certificate or the cluster's) and is final: a server that answers with the wrong
/// certificate is not one to fail over from silently. Returns the address reached too.
pub(crate) async fn connect_tls(
    proxy: &ProxyAddr,
    config: Arc<ClientConfig>,
    name: TlsName,
    tls_error: fn(String, String) -> ClientError,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, String), ClientError> {
    let count = proxy.addrs.len().max(1);
    let start = if count > 1 {
        NEXT_START.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    } else {
        0
    };
    let mut failures = Vec::new();
    for i in 0..count {
        let Some((host, port)) = proxy.addrs.get((start + i) % count) else {
            continue;
        };
        let addr = show(host, *port);
        let dialled = tokio::time::timeout(
            PER_ADDRESS_TIMEOUT,
            TcpStream::connect((host.as_str(), *port)),
        )
        .await;
        let tcp = match dialled {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(err)) => {
                failures.push((addr, err.to_string()));
                continue;
            }
            Err(_) => {
                failures.push((addr, format!("no answer within {PER_ADDRESS_TIMEOUT:?}")));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let server_name = match &name {
            TlsName::Fixed(fixed) => fixed.clone(),
            TlsName::DialledHost => server_name_of(host)?,
        };
        let tls = TlsConnector::from(config.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|err| tls_error(addr.clone(), error_chain(&err)))?;
        return Ok((tls, addr));
    }
    // One address: its own error; a list: each address with its error.
    let reason = match failures.as_slice() {
        [(_, only)] => only.clone(),
        all => all
            .iter()
            .map(|(addr, err)| format!("{addr}: {err}"))
            .collect::<Vec<_>>()
            .join("; "),
    };
    Err(ClientError::Connect {
        addr: proxy.to_string(),
        reason,
    })
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
    let addr = proxy.to_string();
    let exchange = async {
        let (tls, addr) = connect_tls(proxy, config, TlsName::DialledHost, |addr, reason| {
            ClientError::WebTls { addr, reason }
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
            "a:443,,b:443",
            "a:443,a:443",
            "a:443,",
        ] {
            assert!(ProxyAddr::parse(bad).is_err(), "{bad}");
        }
        let both = ProxyAddr::parse("a.example.com:443, [::1]:3080,c").unwrap();
        assert_eq!(both.to_string(), "a.example.com:443,[::1]:3080,c:3080");
        assert_eq!(ProxyAddr::parse(&both.to_string()).unwrap(), both);
        assert_eq!((both.host(), both.port()), ("a.example.com", 443));
    }

    /// With a list, a proxy that is down is skipped; when none answers, the error names
    /// each address and what it did.
    #[tokio::test]
    async fn a_list_of_proxies_fails_over_to_one_that_answers() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        // The live "proxy" accepts and hangs up: the TLS error proves it was reached.
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = live.accept().await else {
                    return;
                };
                drop(socket);
            }
        });
        let list = ProxyAddr::parse(&format!("{dead_addr},{live_addr}")).unwrap();
        let config = WebTrust::DangerousInsecure.client_config().unwrap();
        for _ in 0..2 {
            let err = connect_tls(
                &list,
                config.clone(),
                TlsName::DialledHost,
                |addr, reason| ClientError::WebTls { addr, reason },
            )
            .await
            .unwrap_err();
            assert!(
                matches!(&err, ClientError::WebTls { addr, .. } if *addr == live_addr.to_string()),
                "{err}"
            );
        }
        let none = ProxyAddr::parse(&format!("{dead_addr}")).unwrap();
        let err = connect_tls(&none, config, TlsName::DialledHost, |addr, reason| {
            ClientError::WebTls { addr, reason }
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains(&dead_addr.to_string()), "{err}");
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
