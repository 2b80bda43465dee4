//! The public port: every connection is TLS, routed by its ClientHello before any
//! TLS is terminated.
//!
//! For each accepted connection, within one handshake deadline:
//! 1. with `proxy_protocol: on`, read the load balancer's PROXY header (v1 or v2); the
//!    address in it is the client's from then on (logs, audit, rate limits). With it
//!    off, a PROXY header is refused: a client must not choose its own address.
//! 2. read the ClientHello into a buffer (not consumed) and look at SNI and ALPN;
//! 3. route: the auth API is passed through untouched (its mutual TLS ends at the auth
//!    server, which checks the caller's certificate itself); the web API is terminated
//!    here with the proxy's public certificate; anything else is closed with a logged
//!    reason.
//!
//! A connection limit and the deadline keep slow or silent clients from holding
//! resources; garbage on one connection costs only that connection.

use crate::client_hello::{ClientHelloInfo, PeekError, read_client_hello};
use crate::idle::Watched;
use crate::per_source::{PerSourceLimit, SourceSlot};
use crate::prefixed::PrefixedStream;
use crate::proxy_protocol::{self, read_header};
use crate::ssh::SshRouting;
use crate::tunnel::Tunnels;
use crate::web::WebApi;
use jumpgate_api::forwarded::SharedForwardSigner;
use jumpgate_api::{AUTH_SERVER_NAME, ServerConfig};
use jumpgate_pki::{IdentityKind, TlsIdentity};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, info, warn};

pub use jumpgate_api::ssh_route::ALPN_SSH;
pub use jumpgate_api::tunnel::ALPN_REVERSE_TUNNEL;
/// ALPN of the auth API passed through to an auth server.
pub const ALPN_AUTH: &[u8] = b"jumpgate-auth";
const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// How the public port behaves.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// Expect a PROXY protocol header on every connection (behind a layer-4 load balancer).
    pub proxy_protocol: bool,
    /// With `proxy_protocol`: the only source networks a header is taken from (the load
    /// balancers); others are refused. Empty: any source.
    pub proxy_protocol_trusted: Vec<ipnet::IpNet>,
    /// From accept to the end of the TLS handshake (PROXY header and ClientHello included).
    pub handshake_timeout: Duration,
    /// Web API connections on which nothing moves for this long are closed (their
    /// first request must come within `handshake_timeout`).
    pub web_idle_timeout: Duration,
    /// Auth API connections passed through on which nothing moves for this long are
    /// closed (auth servers ping their clients every 30 s, so live ones never are).
    pub passthrough_idle_timeout: Duration,
    /// Connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// Connections one source address may hold before it authenticates (handshakes,
    /// the anonymous web API, the auth passthrough until auth answers); more are closed
    /// at once. See [`crate::per_source`].
    pub max_unauthenticated_per_source: usize,
    /// Auth servers (`host:port`) the auth API is passed through to, tried in order.
    pub auth_addrs: Vec<String>,
    /// Signs the PROXY header that tells auth the real client of a passed-through
    /// connection (see [`jumpgate_api::forwarded`]). `None`: auth sees this proxy as the
    /// client.
    pub forward_signer: Option<SharedForwardSigner>,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            proxy_protocol: false,
            proxy_protocol_trusted: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            web_idle_timeout: Duration::from_secs(90),
            passthrough_idle_timeout: Duration::from_secs(300),
            max_connections: 20_000,
            max_unauthenticated_per_source: 256,
            auth_addrs: Vec::new(),
            forward_signer: None,
        }
    }
}

/// How a connection ended, for `jumpgate_proxy_connections_total`.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    route: &'static str,
    result: &'static str,
}

const SERVED: &str = "served";
const REFUSED: &str = "refused";
const FAILED: &str = "failed";

impl Default for Outcome {
    /// Closed before a route was chosen (a limit, a bad PROXY header, not TLS).
    fn default() -> Outcome {
        Outcome {
            route: "none",
            result: REFUSED,
        }
    }
}

/// Where a connection goes, decided from its ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Raw bytes to an auth server: SNI `jumpgate.cluster.local` or ALPN `jumpgate-auth`.
    Auth,
    /// TLS ends here; HTTP/1.1 or HTTP/2 web API. Also clients that offer no ALPN.
    Web,
    /// An agent's reverse tunnel: TLS ends here, a node certificate is required.
    ReverseTunnel,
    /// A user's SSH connection to a node: TLS ends here, a user certificate is required.
    Ssh,
    /// Nothing this proxy speaks.
    Unknown(Vec<String>),
}

impl Route {
    /// The route's name in metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Auth => "auth",
            Route::Web => "web",
            Route::ReverseTunnel => "reversetunnel",
            Route::Ssh => "ssh",
            Route::Unknown(_) => "unknown",
        }
    }
}

/// Decides the route. The internal protocols win over web ALPNs a client may also
/// offer, so a client cannot be routed to the wrong service by listing more.
pub fn route(hello: &ClientHelloInfo) -> Route {
    let offers = |proto: &[u8]| hello.alpn.iter().any(|offered| offered == proto);
    if offers(ALPN_AUTH)
        || hello
            .server_name
            .as_deref()
            .is_some_and(|name| name.eq_ignore_ascii_case(AUTH_SERVER_NAME))
    {
        return Route::Auth;
    }
    if offers(ALPN_REVERSE_TUNNEL) {
        return Route::ReverseTunnel;
    }
    if offers(ALPN_SSH) {
        return Route::Ssh;
    }
    if hello.alpn.is_empty() || offers(ALPN_H2) || offers(ALPN_HTTP1) {
        return Route::Web;
    }
    Route::Unknown(
        hello
            .alpn
            .iter()
            .map(|proto| String::from_utf8_lossy(proto).into_owned())
            .collect(),
    )
}

/// Where reverse tunnels end: the proxy's internal TLS config (its cluster-issued
/// certificate for `PROXY_SERVER_NAME`, client certificates required; replaced after a
/// CA rotation) and the registry.
#[derive(Debug, Clone)]
pub struct TunnelEndpoint {
    pub tls: Arc<std::sync::RwLock<Arc<ServerConfig>>>,
    pub tunnels: Arc<Tunnels>,
    pub cluster: String,
    /// Where refused tunnels are reported (for the audit log); a full queue drops the
    /// report rather than slow the accept path.
    pub refusals: Option<tokio::sync::mpsc::Sender<Refusal>>,
    /// Users' SSH connections (`jumpgate-ssh`), when this proxy routes them.
    pub ssh: Option<SshRouting>,
}

/// A connection the proxy refused, to be audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub remote: SocketAddr,
    pub protocol: &'static str,
    pub reason: String,
    /// The identity presented, as its URI.
    pub identity: Option<String>,
}

impl TunnelEndpoint {
    fn refuse(&self, remote: SocketAddr, reason: String, identity: Option<String>) {
        self.report("jumpgate-reversetunnel", remote, reason, identity);
    }

    fn report(
        &self,
        protocol: &'static str,
        remote: SocketAddr,
        reason: String,
        identity: Option<String>,
    ) {
        info!(client = %remote, protocol, %reason, "connection refused");
        if let Some(refusals) = &self.refusals {
            let report = Refusal {
                remote,
                protocol,
                reason,
                identity,
            };
            if refusals.try_send(report).is_err() {
                warn!(client = %remote, "too many refusals to audit at once; one was only logged");
            }
        }
    }
}

/// The public port's listener.
pub struct Router {
    settings: RouterSettings,
    web_tls: Arc<ServerConfig>,
    web: WebApi,
    tunnel: Option<TunnelEndpoint>,
    slots: Arc<Semaphore>,
    per_source: Arc<PerSourceLimit>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// `web_tls` must offer the web ALPNs (`h2`, `http/1.1`).
    pub fn new(
        settings: RouterSettings,
        web_tls: Arc<ServerConfig>,
        web: WebApi,
        tunnel: Option<TunnelEndpoint>,
    ) -> Arc<Router> {
        let slots = Arc::new(Semaphore::new(settings.max_connections));
        let per_source = PerSourceLimit::new(settings.max_unauthenticated_per_source);
        Arc::new(Router {
            settings,
            web_tls,
            web,
            tunnel,
            slots,
            per_source,
        })
    }

    /// Accepts connections until `shutdown` resolves. Connections already routed finish
    /// on their own (the web API's are closed by the shutdown of their server tasks).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: back off briefly.
                        debug!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                warn!(%peer, limit = self.settings.max_connections, "connection limit reached; closing a new connection");
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let router = self.clone();
            // One span per connection: what it became and who it was for.
            let span = tracing::info_span!(
                "connection",
                %peer,
                route = tracing::field::Empty,
                user = tracing::field::Empty,
                node = tracing::field::Empty,
            );
            tokio::spawn(
                async move {
                    let mut outcome = Outcome::default();
                    router.handle(tcp, peer, &mut outcome).await;
                    jumpgate_telemetry::count(
                        |m| &m.proxy_connections,
                        &[outcome.route, outcome.result],
                    );
                    drop(slot);
                }
                .instrument(span),
            );
        }
    }

    async fn handle(&self, mut tcp: TcpStream, peer: SocketAddr, outcome: &mut Outcome) {
        let deadline = tokio::time::Instant::now() + self.settings.handshake_timeout;
        let trusted = &self.settings.proxy_protocol_trusted;
        let untrusted = self.settings.proxy_protocol
            && !trusted.is_empty()
            && !trusted.iter().any(|net| net.contains(&peer.ip()));
        // This host's own connections (the all-in-one daemon's agent) may come from outside
        // the balancers' networks, with a LOCAL header that claims no address.
        let from_this_host =
            peer.ip().is_loopback() || tcp.local_addr().is_ok_and(|local| local.ip() == peer.ip());
        if untrusted && !from_this_host {
            info!(%peer, "refused a connection: proxy_protocol is on and it does not come from a trusted load balancer (proxy_protocol_trusted_cidrs), so its PROXY header could claim any address");
            return;
        }
        let (client, mut buffer) = if self.settings.proxy_protocol {
            match read_header(&mut tcp, self.settings.handshake_timeout).await {
                Ok((header, _)) if untrusted && header.source.is_some() => {
                    info!(%peer, "refused a connection: a PROXY header claiming a client address from this host, outside proxy_protocol_trusted_cidrs (only a LOCAL header is taken from here)");
                    return;
                }
                Ok((header, leftover)) => (header.source.unwrap_or(peer), leftover),
                Err(err) => {
                    info!(%peer, %err, "refused a connection: bad or missing PROXY protocol header (proxy_protocol is on)");
                    return;
                }
            }
        } else {
            (peer, Vec::new())
        };
        let Some(source_slot) = self.per_source.acquire(client.ip()) else {
            info!(
                client = %client,
                limit = self.settings.max_unauthenticated_per_source,
                "closed a connection: this address holds too many unauthenticated connections"
            );
            return;
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let hello = match read_client_hello(&mut tcp, &mut buffer, remaining).await {
            Ok(hello) => hello,
            Err(PeekError::NotTls(what))
                if !self.settings.proxy_protocol && proxy_protocol::looks_like_header(&buffer) =>
            {
                info!(%peer, detail = %what, "refused a PROXY protocol header: proxy_protocol is off on this proxy, so a client could claim any address; turn it on only behind a load balancer that sends it");
                return;
            }
            Err(err) => {
                info!(client = %client, %err, "closed a connection before TLS");
                return;
            }
        };
        let chosen = route(&hello);
        outcome.route = chosen.label();
        tracing::Span::current().record("route", outcome.route);
        match chosen {
            Route::Auth => {
                if self.pass_to_auth(tcp, buffer, client, source_slot).await {
                    outcome.result = SERVED;
                } else {
                    outcome.result = FAILED;
                }
            }
            Route::Web => {
                let stream = PrefixedStream::new(buffer, tcp);
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                let accepted = tokio::time::timeout(
                    remaining,
                    TlsAcceptor::from(self.web_tls.clone()).accept(stream),
                )
                .await;
                match accepted {
                    // Anonymous: counted against its source for as long as it lasts.
                    Ok(Ok(tls)) => {
                        outcome.result = SERVED;
                        let _counted = source_slot;
                        let first_request =
                            deadline.saturating_duration_since(tokio::time::Instant::now());
                        self.web
                            .serve_connection(
                                tls,
                                client,
                                first_request,
                                self.settings.web_idle_timeout,
                            )
                            .await;
                    }
                    Ok(Err(err)) => {
                        outcome.result = FAILED;
                        info!(client = %client, %err, "TLS handshake failed");
                    }
                    Err(_) => {
                        outcome.result = FAILED;
                        info!(client = %client, "TLS handshake timed out");
                    }
                }
            }
            Route::ReverseTunnel => {
                let Some(endpoint) = &self.tunnel else {
                    info!(client = %client, "closed a reverse tunnel: this proxy does not take tunnels");
                    return;
                };
                let protocol = "jumpgate-reversetunnel";
                let Some((tls_stream, id)) =
                    accept_mutual(endpoint, protocol, tcp, buffer, client, deadline).await
                else {
                    return;
                };
                // Authenticated by a cluster certificate: no longer counted.
                source_slot.release();
                let locked = endpoint.ssh.as_ref().and_then(|ssh| {
                    ssh.lock_refusal(&jumpgate_types::LockSubject {
                        node: Some(&id.name),
                        ..jumpgate_types::LockSubject::default()
                    })
                });
                if let Some(reason) = locked {
                    endpoint.refuse(client, reason, Some(id.to_uri()));
                } else if id.kind == IdentityKind::Node {
                    outcome.result = SERVED;
                    tracing::Span::current().record("node", id.name.as_str());
                    let _open = jumpgate_telemetry::Active::new(|m| &m.reverse_tunnels);
                    endpoint
                        .tunnels
                        .clone()
                        .serve(tls_stream, id.name, client)
                        .await;
                } else {
                    endpoint.refuse(
                        client,
                        "not a node of this cluster".to_string(),
                        Some(id.to_uri()),
                    );
                }
            }
            Route::Ssh => {
                if self
                    .serve_ssh(tcp, buffer, client, deadline, source_slot)
                    .await
                {
                    outcome.result = SERVED;
                }
            }
            Route::Unknown(offered) => {
                info!(client = %client, ?offered, sni = ?hello.server_name, "closed a connection: no protocol this proxy speaks (ALPN)");
            }
        }
    }

    /// A user's SSH connection: mutual TLS with a user certificate, then the dial
    /// request (see [`crate::ssh`]).
    async fn serve_ssh(
        &self,
        tcp: TcpStream,
        buffer: Vec<u8>,
        client: SocketAddr,
        deadline: tokio::time::Instant,
        source_slot: SourceSlot,
    ) -> bool {
        let protocol = "jumpgate-ssh";
        let Some(endpoint) = &self.tunnel else {
            info!(client = %client, "closed an SSH connection: this proxy does not route SSH");
            return false;
        };
        let Some(routing) = &endpoint.ssh else {
            info!(client = %client, "closed an SSH connection: this proxy does not route SSH");
            return false;
        };
        let Some((tls_stream, id)) =
            accept_mutual(endpoint, protocol, tcp, buffer, client, deadline).await
        else {
            return false;
        };
        source_slot.release();
        if id.kind != IdentityKind::User {
            endpoint.report(
                protocol,
                client,
                format!(
                    "a {} certificate cannot open SSH sessions; log in as a user",
                    id.kind
                ),
                Some(id.to_uri()),
            );
            return false;
        }
        tracing::Span::current().record("user", id.name.as_str());
        let _relayed = jumpgate_telemetry::Active::new(|m| &m.proxy_ssh_sessions);
        match routing.serve(tls_stream, &id, client).await {
            Ok(()) => true,
            Err(refusal) => {
                endpoint.report(
                    protocol,
                    client,
                    refusal.audit_reason().to_string(),
                    Some(id.to_uri()),
                );
                false
            }
        }
    }

    /// Splices the connection to the first auth server that answers, replaying the
    /// bytes read so far.
    async fn pass_to_auth(
        &self,
        client_stream: TcpStream,
        replay: Vec<u8>,
        client: SocketAddr,
        source_slot: SourceSlot,
    ) -> bool {
        let mut upstream = None;
        for addr in &self.settings.auth_addrs {
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    upstream = Some(stream);
                    break;
                }
                Ok(Err(err)) => warn!(auth = %addr, %err, "cannot reach an auth server"),
                Err(_) => warn!(auth = %addr, "an auth server did not answer in 5 s"),
            }
        }
        let Some(mut upstream) = upstream else {
            warn!(client = %client, "no auth server reachable for an auth API connection");
            return false;
        };
        let _ = upstream.set_nodelay(true);
        let mut first_bytes = match &self.settings.forward_signer {
            Some(signer) => {
                let signer = signer
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                let destination = client_stream.local_addr().unwrap_or(client);
                match signer.header(client, destination, SystemTime::now()) {
                    Ok(header) => header,
                    Err(err) => {
                        warn!(client = %client, %err, "cannot sign the client's address for auth");
                        return false;
                    }
                }
            }
            None => Vec::new(),
        };
        first_bytes.extend_from_slice(&replay);
        if let Err(err) = upstream.write_all(&first_bytes).await {
            debug!(%err, "auth server closed the connection");
            return false;
        }
        debug!(client = %client, "auth API connection passed through");
        let (mut client_stream, activity) = Watched::new(client_stream);
        let idle = self.settings.passthrough_idle_timeout;
        // Counted against its source until the auth server answers its handshake (auth
        // keeps its own deadline and limits from there); agents behind one NAT each
        // hold a connection here.
        let mut first = vec![0u8; 16 * 1024];
        let answered = tokio::time::timeout(
            self.settings.handshake_timeout,
            tokio::io::AsyncReadExt::read(&mut upstream, &mut first),
        )
        .await;
        match answered {
            Ok(Ok(n)) if n > 0 => {
                let Some(answer) = first.get(..n) else {
                    return false;
                };
                if client_stream.write_all(answer).await.is_err() {
                    return false;
                }
            }
            _ => {
                debug!(client = %client, "the auth server did not answer a passed-through connection");
                return false;
            }
        }
        source_slot.release();
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client_stream, &mut upstream) => {}
            why = activity.expired(idle, idle) => {
                debug!(client = %client, why, "closed an auth API connection");
            }
        }
        true
    }
}

/// Ends TLS with the proxy's internal certificate, requiring a client certificate of
/// this cluster (rustls checks the chain); returns the client's identity. A refusal is
/// reported for the audit log.
async fn accept_mutual(
    endpoint: &TunnelEndpoint,
    protocol: &'static str,
    tcp: TcpStream,
    buffer: Vec<u8>,
    client: SocketAddr,
    deadline: tokio::time::Instant,
) -> Option<(
    tokio_rustls::server::TlsStream<PrefixedStream<TcpStream>>,
    TlsIdentity,
)> {
    let tls = endpoint
        .tls
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let stream = PrefixedStream::new(buffer, tcp);
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let accepted = tokio::time::timeout(remaining, TlsAcceptor::from(tls).accept(stream)).await;
    let tls_stream = match accepted {
        Ok(Ok(tls_stream)) => tls_stream,
        Ok(Err(err)) => {
            endpoint.report(
                protocol,
                client,
                format!("TLS handshake failed: {err}"),
                None,
            );
            return None;
        }
        Err(_) => {
            info!(client = %client, protocol, "TLS handshake timed out");
            return None;
        }
    };
    let identity = tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|leaf| TlsIdentity::from_cert_der(leaf.as_ref()));
    match identity {
        Some(Ok(id)) if id.cluster == endpoint.cluster => Some((tls_stream, id)),
        Some(Ok(id)) => {
            endpoint.report(
                protocol,
                client,
                "an identity of another cluster".to_string(),
                Some(id.to_uri()),
            );
            None
        }
        Some(Err(err)) => {
            endpoint.report(
                protocol,
                client,
                format!("unreadable identity: {err}"),
                None,
            );
            None
        }
        None => {
            endpoint.report(protocol, client, "no client certificate".to_string(), None);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(sni: Option<&str>, alpn: &[&[u8]]) -> ClientHelloInfo {
        ClientHelloInfo {
            server_name: sni.map(str::to_string),
            alpn: alpn.iter().map(|proto| proto.to_vec()).collect(),
        }
    }

    #[test]
    fn routes_by_alpn_and_sni() {
        assert_eq!(route(&hello(Some(AUTH_SERVER_NAME), &[b"h2"])), Route::Auth);
        assert_eq!(route(&hello(None, &[ALPN_AUTH])), Route::Auth);
        assert_eq!(
            route(&hello(Some("proxy.example.com"), &[b"h2", b"http/1.1"])),
            Route::Web
        );
        assert_eq!(route(&hello(None, &[])), Route::Web);
        assert_eq!(
            route(&hello(None, &[b"h2", ALPN_REVERSE_TUNNEL])),
            Route::ReverseTunnel
        );
        assert_eq!(route(&hello(None, &[ALPN_SSH])), Route::Ssh);
        assert_eq!(
            route(&hello(None, &[b"imap"])),
            Route::Unknown(vec!["imap".to_string()])
        );
    }
}
