//! Proxy peering (DESIGN.md "Services": proxy peering, port 3021): a user on proxy A
//! reaches a node whose reverse tunnels end on proxy B.
//!
//! With `tunnel_strategy: proxy_peering` an agent keeps `agent_connection_count` tunnels,
//! not one to every proxy, and its presence record names the proxies holding them. A proxy
//! that holds no tunnel to the node a user asks for reads that list from memory and opens
//! a stream on its connection to one of those proxies; that proxy splices it into the
//! node's tunnel. Access is decided, and the refusal or the session audited, once, by the
//! user's proxy: the peer only relays, and the node checks the user's certificate itself.
//!
//! Protocol, chosen over a gRPC stream for the same reasons as the tunnels
//! (`jumpgate_api::tunnel`): **HTTP/2** (the `h2` crate) over mutual TLS with ALPN
//! [`ALPN_PEER`], SNI `jumpgate_api::tunnel::PROXY_SERVER_NAME`, and both ends' proxy
//! identities from the cluster's TLS CA. The dialling proxy is the HTTP/2 client; each
//! user connection is one stream, a `POST` to [`TARGET_SSH`] whose [`HEADER_NODE`] names
//! the node (host UUID) and whose `x-jumpgate-client-addr` carries the user's address for
//! the node's audit events. `200` and then raw bytes both ways; `404` when the peer has no
//! tunnel to the node (its reason in [`HEADER_REASON`]); `502` when the tunnel failed.
//! Per-stream flow control keeps a slow user from stalling the others; both ends PING
//! every 2 s and drop a peer that does not answer within 3 s, so a dead proxy is noticed
//! within 5 s.
//!
//! Security: only a **proxy** of this cluster may connect (its certificate's role, checked
//! on both sides, and the dialler checks it reached the very proxy it meant: the UUID in
//! the certificate). A peer stream can only reach a node's SSH service, the same thing a
//! user's connection through any proxy reaches, never the agent's other targets; the node
//! still authenticates the user. So peering gives a proxy nothing it could not do with a
//! tunnel of its own.

use crate::tunnel::{DialError, Tunnels};
use bytes::Bytes;
use jumpgate_api::mirror::Mirror;
use jumpgate_api::ssh_route::{HEADER_CLIENT_ADDR, RELAY_BUFFER};
use jumpgate_api::tunnel::{
    CONNECTION_WINDOW, EarlyBytes, H2Reader, H2Stream, MAX_FRAME_SIZE, PROXY_SERVER_NAME,
    STREAM_WINDOW, heartbeat,
};
use jumpgate_api::{ClientConfig, ServerConfig};
use jumpgate_pki::{IdentityKind, TlsIdentity};
use jumpgate_types::{NodePresence, ProxyPresence};
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::io::AsyncRead;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, info, warn};

/// ALPN of a proxy-to-proxy peering connection.
pub const ALPN_PEER: &[u8] = b"jumpgate-peer";
/// The one target a peer stream may open: the node's SSH service.
pub const TARGET_SSH: &str = jumpgate_api::ssh_route::TARGET_SSH;
/// Header of a peer stream naming the node (its host UUID).
pub const HEADER_NODE: &str = "x-jumpgate-node";
/// Header of a refused peer stream saying why.
pub const HEADER_REASON: &str = "x-jumpgate-reason";
/// How long dialling a peer (TCP, TLS and HTTP/2 handshakes) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a peer may take to answer a stream (it dials its node's tunnel meanwhile).
const STREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// How often connections to every live peer are checked when nothing changes.
const KEEP_CONNECTED_EVERY: Duration = Duration::from_secs(5);

/// Why a stream through a peer could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot reach peer proxy {peer} at {addr}: {reason}")]
    Connect {
        peer: String,
        addr: String,
        reason: String,
    },
    #[error(
        "the proxy at {addr} is {found}, not peer proxy {peer}; its peer_public_addr may be \
         wrong, or another proxy took over the address"
    )]
    WrongPeer {
        peer: String,
        addr: String,
        found: String,
    },
    #[error("peer proxy {peer} has no tunnel to node {node}: {reason}")]
    NoTunnel {
        peer: String,
        node: String,
        reason: String,
    },
    #[error("peer proxy {peer} could not reach node {node} (HTTP {status}): {reason}")]
    Refused {
        peer: String,
        node: String,
        status: u16,
        reason: String,
    },
    #[error("the connection to peer proxy {peer} failed: {reason}")]
    Stream { peer: String, reason: String },
    #[error(
        "proxy {peer} holds a tunnel to the node but is not a live peer (its presence \
         record is gone, or it says no peer address: proxy_service.peer_public_addr)"
    )]
    NotAPeer { peer: String },
}

/// What SSH routing needs to reach a node through a peer: the connections, and where the
/// live proxies say peers reach them.
#[derive(Debug)]
pub struct Peering {
    pub clients: Arc<PeerClients>,
    pub proxies: Arc<Mirror<ProxyPresence>>,
}

impl Peering {
    /// Opens a stream to `node`'s SSH service through the first of the proxies its
    /// presence record names as holding its tunnels (never this proxy) that can; returns
    /// that proxy's name, or why each one could not.
    ///
    /// What `source` (the user's connection) sends meanwhile is passed on as the stream
    /// opens ([`EarlyBytes`]), and again to the next peer if one fails.
    pub async fn dial<R: AsyncRead + Unpin>(
        &self,
        node: &NodePresence,
        client: SocketAddr,
        source: &mut R,
        early: &mut EarlyBytes,
    ) -> Result<(String, H2Stream), Vec<PeerError>> {
        let proxies = self.proxies.current();
        let mut failures = Vec::new();
        for holder in node.tunnel_proxies() {
            if holder == self.clients.local {
                continue;
            }
            let addr = proxies
                .iter()
                .find(|proxy| proxy.uuid == holder)
                .and_then(|proxy| proxy.peer_addr.as_deref());
            let Some(addr) = addr else {
                failures.push(PeerError::NotAPeer {
                    peer: holder.to_string(),
                });
                continue;
            };
            match self
                .clients
                .dial_forwarding(holder, addr, &node.uuid, client, source, early)
                .await
            {
                Ok(stream) => return Ok((holder.to_string(), stream)),
                Err(err) => failures.push(err),
            }
        }
        Err(failures)
    }
}

/// The peers this proxy can forward to: one HTTP/2 connection to each, dialled ahead of
/// need ([`PeerClients::keep_connected`]) so that a user's connection pays one round
/// trip to the peer, not a TCP and TLS handshake.
pub struct PeerClients {
    /// This proxy's identity name (host UUID): never a peer of itself.
    local: String,
    tls: RwLock<Arc<ClientConfig>>,
    /// Shared with each connection's task, which removes its own entry when it ends.
    connections: Arc<Mutex<HashMap<String, PeerConnection>>>,
    next_id: AtomicU64,
}

#[derive(Clone)]
struct PeerConnection {
    id: u64,
    addr: String,
    send: h2::client::SendRequest<Bytes>,
}

impl std::fmt::Debug for PeerClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClients")
            .field("local", &self.local)
            .field("connected", &self.connected())
            .finish()
    }
}

impl PeerClients {
    /// Peers of the proxy `local`, dialled with `tls` (a client config that wants a
    /// **proxy** certificate and offers [`ALPN_PEER`]).
    pub fn new(local: String, tls: Arc<ClientConfig>) -> PeerClients {
        PeerClients {
            local,
            tls: RwLock::new(tls),
            connections: Arc::default(),
            next_id: AtomicU64::default(),
        }
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<String, PeerConnection>> {
        lock(&self.connections)
    }

    /// Puts a renewed identity in service for the next connections.
    pub fn set_tls(&self, tls: Arc<ClientConfig>) {
        *self.tls.write().unwrap_or_else(PoisonError::into_inner) = tls;
    }

    /// The peers connected now, by identity name, sorted.
    pub fn connected(&self) -> Vec<String> {
        let mut peers: Vec<String> = self.connections().keys().cloned().collect();
        peers.sort();
        peers
    }

    /// Keeps a connection to every live proxy (from their presence records) that says
    /// where peers reach it, and drops connections to proxies no longer listed, until
    /// `stop` resolves.
    pub async fn keep_connected(
        self: Arc<Self>,
        proxies: Arc<Mirror<ProxyPresence>>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut changes = proxies.changes();
        loop {
            let listed: Vec<(String, String)> = proxies
                .current()
                .iter()
                .filter(|proxy| proxy.uuid != self.local)
                .filter_map(|proxy| Some((proxy.uuid.clone(), proxy.peer_addr.clone()?)))
                .collect();
            self.connections()
                .retain(|uuid, _| listed.iter().any(|(listed, _)| listed == uuid));
            let mut dials = tokio::task::JoinSet::new();
            for (uuid, addr) in listed {
                let clients = Arc::clone(&self);
                dials.spawn(async move {
                    if let Err(err) = clients.connection(&uuid, &addr).await {
                        debug!(%err, "peer proxy not reachable yet");
                    }
                });
            }
            // Each dial is bounded by CONNECT_TIMEOUT.
            while dials.join_next().await.is_some() {}
            tokio::select! {
                () = &mut stop => return,
                changed = changes.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(KEEP_CONNECTED_EVERY) => {}
            }
        }
    }

    /// The live connection to `peer` at `addr`, dialled now if there is none.
    async fn connection(&self, peer: &str, addr: &str) -> Result<PeerConnection, PeerError> {
        let held = self.connections().get(peer).cloned();
        if let Some(held) = held
            && held.addr == addr
        {
            return Ok(held);
        }
        let connection = self.connect(peer, addr).await?;
        self.connections()
            .insert(peer.to_string(), connection.clone());
        Ok(connection)
    }

    /// Dials `peer` at `addr`, checks it is that proxy, and runs the connection (with its
    /// heartbeat) in a task that forgets it when it ends.
    async fn connect(&self, peer: &str, addr: &str) -> Result<PeerConnection, PeerError> {
        let failed = |reason: String| PeerError::Connect {
            peer: peer.to_string(),
            addr: addr.to_string(),
            reason,
        };
        let tls = self
            .tls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let name =
            ServerName::try_from(PROXY_SERVER_NAME).map_err(|err| failed(err.to_string()))?;
        let handshakes = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|err| failed(err.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let stream = TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|err| failed(format!("TLS: {err}")))?;
            // The certificate's role was checked during the handshake (a proxy); now that
            // it is the proxy this one meant to reach.
            let found = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|leaf| TlsIdentity::from_cert_der(leaf.as_ref()).ok())
                .map(|identity| identity.name)
                .unwrap_or_default();
            if found != peer {
                return Err(PeerError::WrongPeer {
                    peer: peer.to_string(),
                    addr: addr.to_string(),
                    found,
                });
            }
            h2::client::Builder::new()
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .max_frame_size(MAX_FRAME_SIZE)
                .handshake::<_, Bytes>(stream)
                .await
                .map_err(|err| failed(format!("HTTP/2: {err}")))
        };
        let (send, mut connection) = tokio::time::timeout(CONNECT_TIMEOUT, handshakes)
            .await
            .map_err(|_| failed(format!("no answer within {CONNECT_TIMEOUT:?}")))??;
        let ping = connection
            .ping_pong()
            .ok_or_else(|| failed("HTTP/2 PING unavailable".to_string()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        info!(%peer, %addr, "connected to a peer proxy");
        let peer_name = peer.to_string();
        let connections = Arc::clone(&self.connections);
        tokio::spawn(async move {
            let _open = jumpgate_telemetry::Active::new(|m| &m.peer_connections);
            let reason = tokio::select! {
                reason = heartbeat(ping, "peer proxy") => reason,
                ended = &mut connection => match ended {
                    Ok(()) => "closed".to_string(),
                    Err(err) => format!("HTTP/2 error: {err}"),
                },
            };
            warn!(peer = %peer_name, %reason, "connection to a peer proxy ended");
            // Only this connection: a newer one to the same peer stays.
            lock(&connections).retain(|_, held| held.id != id);
        });
        Ok(PeerConnection {
            id,
            addr: addr.to_string(),
            send,
        })
    }

    /// Opens a stream to `node`'s SSH service through `peer` at `addr`, for a user at
    /// `client`.
    pub async fn dial(
        &self,
        peer: &str,
        addr: &str,
        node: &str,
        client: SocketAddr,
    ) -> Result<H2Stream, PeerError> {
        let mut nothing = tokio::io::empty();
        let mut early = EarlyBytes::default();
        self.dial_forwarding(peer, addr, node, client, &mut nothing, &mut early)
            .await
    }

    /// [`PeerClients::dial`], passing on what `source` (the user's connection) sends
    /// until the peer answers ([`EarlyBytes`]).
    pub async fn dial_forwarding<R: AsyncRead + Unpin>(
        &self,
        peer: &str,
        addr: &str,
        node: &str,
        client: SocketAddr,
        source: &mut R,
        early: &mut EarlyBytes,
    ) -> Result<H2Stream, PeerError> {
        let connection = self.connection(peer, addr).await?;
        match open(connection.send.clone(), peer, node, client, source, early).await {
            // A connection that died since it was last used: forget it, dial once more.
            Err(PeerError::Stream { .. }) => {
                self.connections()
                    .retain(|_, held| held.id != connection.id);
                let fresh = self.connection(peer, addr).await?;
                open(fresh.send, peer, node, client, source, early).await
            }
            other => other,
        }
    }
}

fn lock(
    connections: &Mutex<HashMap<String, PeerConnection>>,
) -> std::sync::MutexGuard<'_, HashMap<String, PeerConnection>> {
    connections.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens one stream to `node`'s SSH service on a peer connection, passing on what
/// `source` sends until the peer answers.
async fn open<R: AsyncRead + Unpin>(
    send: h2::client::SendRequest<Bytes>,
    peer: &str,
    node: &str,
    client: SocketAddr,
    source: &mut R,
    early: &mut EarlyBytes,
) -> Result<H2Stream, PeerError> {
    let broken = |reason: String| PeerError::Stream {
        peer: peer.to_string(),
        reason,
    };
    let request = http::Request::post(format!("https://{PROXY_SERVER_NAME}{TARGET_SSH}"))
        .header(HEADER_NODE, node)
        .header(HEADER_CLIENT_ADDR, client.to_string())
        .body(())
        .map_err(|err| broken(err.to_string()))?;
    let opened = async {
        let mut send = send.ready().await.map_err(|err| broken(err.to_string()))?;
        let (response, mut stream) = send
            .send_request(request, false)
            .map_err(|err| broken(err.to_string()))?;
        let response = early
            .forward_until(source, &mut stream, response)
            .await
            .map_err(|err| broken(err.to_string()))?;
        Ok::<_, PeerError>((response, stream))
    };
    let (response, stream) = tokio::time::timeout(STREAM_TIMEOUT, opened)
        .await
        .map_err(|_| broken(format!("no answer within {STREAM_TIMEOUT:?}")))??;
    let status = response.status();
    if status == http::StatusCode::OK {
        return Ok(H2Stream::new(stream, response.into_body()));
    }
    let reason = response
        .headers()
        .get(HEADER_REASON)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("no reason given")
        .to_string();
    if status == http::StatusCode::NOT_FOUND {
        return Err(PeerError::NoTunnel {
            peer: peer.to_string(),
            node: node.to_string(),
            reason,
        });
    }
    Err(PeerError::Refused {
        peer: peer.to_string(),
        node: node.to_string(),
        status: status.as_u16(),
        reason,
    })
}

/// The peer listener (`proxy_service.peer_listen_addr`): ends mutual TLS with the proxy's
/// internal identity, accepts only proxies of this cluster, and splices each stream into
/// the node's tunnel held here.
#[derive(Debug, Clone)]
pub struct PeerServer {
    /// Requires a client certificate under the cluster's CA, offers [`ALPN_PEER`];
    /// replaced when the proxy's identity is renewed.
    pub tls: Arc<RwLock<Arc<ServerConfig>>>,
    pub cluster: String,
    pub tunnels: Arc<Tunnels>,
    /// Where refused connections go to be audited (through the auth API), as the public
    /// port's are.
    pub refusals: Option<tokio::sync::mpsc::Sender<crate::router::Refusal>>,
}

impl PeerServer {
    /// Logs a refused connection and sends it to the audit log.
    fn refuse(&self, remote: SocketAddr, reason: String, identity: Option<String>) {
        warn!(%remote, %reason, "refused a peer connection");
        if let Some(refusals) = &self.refusals {
            let report = crate::router::Refusal {
                remote,
                protocol: "jumpgate-peer",
                reason,
                identity,
            };
            if refusals.try_send(report).is_err() {
                warn!(%remote, "too many refusals to audit at once; one was only logged");
            }
        }
    }

    /// Serves `listener` until `stop` resolves.
    pub async fn serve(self, listener: TcpListener, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                () = &mut stop => break,
                accepted = listener.accept() => accepted,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            match accepted {
                Ok((tcp, remote)) => {
                    let server = self.clone();
                    connections.spawn(async move { server.serve_connection(tcp, remote).await });
                }
                Err(err) => {
                    // Out of file descriptors and the like: do not spin.
                    warn!(%err, "cannot accept a peer connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        connections.shutdown().await;
    }

    async fn serve_connection(self, tcp: TcpStream, remote: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let accepted =
            tokio::time::timeout(CONNECT_TIMEOUT, TlsAcceptor::from(tls).accept(tcp)).await;
        let stream = match accepted {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                self.refuse(remote, format!("TLS handshake failed: {err}"), None);
                return;
            }
            Err(_) => {
                info!(%remote, "refused a peer connection: TLS handshake timed out");
                return;
            }
        };
        let identity = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|leaf| TlsIdentity::from_cert_der(leaf.as_ref()));
        let peer = match identity {
            Some(Ok(id)) if id.kind == IdentityKind::Proxy && id.cluster == self.cluster => id.name,
            Some(Ok(id)) => {
                self.refuse(
                    remote,
                    format!(
                        "a {} of cluster {:?} cannot peer: only proxies of this cluster may",
                        id.kind, id.cluster
                    ),
                    Some(id.to_uri()),
                );
                return;
            }
            Some(Err(err)) => {
                self.refuse(remote, format!("unreadable identity: {err}"), None);
                return;
            }
            None => {
                self.refuse(remote, "no client certificate".to_string(), None);
                return;
            }
        };
        let handshake = h2::server::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE)
            .max_concurrent_streams(10_000)
            .handshake::<_, Bytes>(stream)
            .await;
        let mut connection = match handshake {
            Ok(connection) => connection,
            Err(err) => {
                info!(%peer, %remote, %err, "peer connection: HTTP/2 handshake failed");
                return;
            }
        };
        info!(%peer, %remote, "a peer proxy connected");
        let _open = jumpgate_telemetry::Active::new(|m| &m.peer_connections);
        let Some(ping) = connection.ping_pong() else {
            return;
        };
        let beat = heartbeat(ping, "peer proxy");
        tokio::pin!(beat);
        let mut streams = tokio::task::JoinSet::new();
        let reason = loop {
            tokio::select! {
                reason = &mut beat => break reason,
                accepted = connection.accept() => match accepted {
                    Some(Ok((request, respond))) => {
                        let tunnels = Arc::clone(&self.tunnels);
                        let peer = peer.clone();
                        streams.spawn(async move { relay(tunnels, &peer, request, respond).await });
                    }
                    Some(Err(err)) => break format!("HTTP/2 error: {err}"),
                    None => break "closed".to_string(),
                },
                Some(_) = streams.join_next(), if !streams.is_empty() => {}
            }
        };
        // Streams being relayed end with their connection.
        streams.shutdown().await;
        info!(%peer, %remote, %reason, "a peer proxy's connection ended");
    }
}

/// Serves one peer stream: the node's SSH service through its tunnel here, spliced.
async fn relay(
    tunnels: Arc<Tunnels>,
    peer: &str,
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let mut refuse = |status: http::StatusCode, reason: String| {
        debug!(%peer, %status, %reason, "refused a peer stream");
        let header = http::HeaderValue::from_str(&reason)
            .unwrap_or_else(|_| http::HeaderValue::from_static("refused"));
        let mut response = http::Response::new(());
        *response.status_mut() = status;
        response.headers_mut().insert(HEADER_REASON, header);
        let _ = respond.send_response(response, true);
    };
    if request.method() != http::Method::POST || request.uri().path() != TARGET_SSH {
        return refuse(
            http::StatusCode::FORBIDDEN,
            format!("peers may only open {TARGET_SSH}"),
        );
    }
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let Some(node) = header(HEADER_NODE).filter(|node| !node.is_empty()) else {
        return refuse(
            http::StatusCode::BAD_REQUEST,
            format!("no {HEADER_NODE} header"),
        );
    };
    // The user's address as the user's proxy saw it, for the node's audit events.
    let client = header(HEADER_CLIENT_ADDR).and_then(|addr| addr.parse::<SocketAddr>().ok());
    // The user's first bytes may already be on their way: they go on to the node as its
    // stream opens, and the peer hears back once the node has answered.
    let mut from_peer = H2Reader::new(request.into_body());
    let mut early = EarlyBytes::default();
    let dialled = tunnels
        .dial_forwarding(&node, TARGET_SSH, client, &mut from_peer, &mut early)
        .await;
    let mut upstream = match dialled {
        Ok(upstream) => upstream,
        Err(err @ DialError::NoTunnel(_)) => {
            return refuse(http::StatusCode::NOT_FOUND, err.to_string());
        }
        Err(err) => return refuse(http::StatusCode::BAD_GATEWAY, err.to_string()),
    };
    let send = match respond.send_response(http::Response::new(()), false) {
        Ok(send) => send,
        Err(err) => {
            debug!(%peer, %err, "the peer left before its stream opened");
            return;
        }
    };
    debug!(%peer, %node, ?client, "relaying a peer's SSH connection");
    let mut downstream = H2Stream::from_parts(send, from_peer);
    match tokio::io::copy_bidirectional_with_sizes(
        &mut downstream,
        &mut upstream,
        RELAY_BUFFER,
        RELAY_BUFFER,
    )
    .await
    {
        Ok((up, down)) => debug!(%peer, %node, up, down, "peer stream ended"),
        Err(err) => debug!(%peer, %node, %err, "peer stream ended with an error"),
    }
}
