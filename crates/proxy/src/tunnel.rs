//! The proxy's end of agents' reverse tunnels (protocol: `jumpgate_api::tunnel`): the
//! registry of which node is reachable through which tunnel, and how the proxy opens
//! a stream to a node through it.
//!
//! The proxy is the HTTP/2 client on the connection the agent dialled. It PINGs the
//! agent and drops a tunnel that stops answering within seconds.
//!
//! A node may hold several tunnels to one proxy for a moment: it reconnected before the
//! proxy noticed the old tunnel die, or (behind a load balancer) an agent's dial meant for
//! another proxy landed here and the agent is about to close it. So the registry keeps
//! every tunnel of a node, opens streams on the newest, falls back to older ones when the
//! newest fails, and removes a tunnel only when that tunnel ends. A newer tunnel never
//! evicts a live older one: an agent closing its duplicate must not leave its node
//! unreachable (issue 16: two tunnels replacing each other behind HAProxy).

use bytes::Bytes;
use jumpgate_api::ssh_route::HEADER_CLIENT_ADDR;
use jumpgate_api::tunnel::{
    CONNECTION_WINDOW, Discovery, EarlyBytes, H2Stream, MAX_FRAME_SIZE, STREAM_WINDOW,
    TARGET_DISCOVERY, heartbeat,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Why a stream to a node could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("node {0} has no tunnel to this proxy")]
    NoTunnel(String),
    #[error("the tunnel to node {node} failed: {reason}")]
    Tunnel { node: String, reason: String },
    #[error("node {node} refused the stream: {status}")]
    Refused { node: String, status: u16 },
}

/// Why the list of proxies could not be sent to an agent (it is sent again later).
#[derive(Debug, thiserror::Error)]
enum DiscoveryError {
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
    #[error("{0}")]
    Dial(#[from] DialError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A live tunnel, as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelInfo {
    pub node: String,
    pub remote: SocketAddr,
    pub since: SystemTime,
}

struct Entry {
    id: u64,
    info: TunnelInfo,
    send: h2::client::SendRequest<Bytes>,
    /// Set to end the tunnel from outside (a lock on its node).
    cut: Arc<tokio::sync::Notify>,
}

/// How soon a proxy tries again to tell an agent which proxies exist when sending
/// failed. Otherwise it tells each agent once when its tunnel comes up and again only
/// when the set changes: with 10,000 tunnels, a periodic message would be thousands
/// of HTTP/2 streams a second for nothing.
const DISCOVERY_RETRY: std::time::Duration = std::time::Duration::from_secs(5);
/// How long an agent has to answer the first PING of its tunnel before it counts.
const FIRST_PING_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How many tunnels of one node a proxy keeps at once. An agent holds one per proxy, and two
/// only for the moment a reconnect or a duplicate dial overlaps the old one.
const MAX_TUNNELS_PER_NODE: usize = 4;

/// The tunnels held by this proxy, by node (host UUID), oldest first.
pub struct Tunnels {
    entries: Mutex<HashMap<String, Vec<Entry>>>,
    next_id: AtomicU64,
    /// What agents are told about the cluster's proxies (set by the proxy service);
    /// every tunnel watches it.
    discovery: watch::Sender<Option<Discovery>>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            entries: Mutex::default(),
            next_id: AtomicU64::default(),
            discovery: watch::Sender::new(None),
        }
    }
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnels")
            .field("nodes", &self.list().len())
            .finish()
    }
}

impl Tunnels {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Entry>>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets what agents are told about the proxies; sent on every tunnel at once when
    /// it differs from what they were told, and to every new tunnel.
    pub fn set_discovery(&self, discovery: Discovery) {
        self.discovery.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&discovery);
            if changed {
                *current = Some(discovery);
            }
            changed
        });
    }

    async fn send_discovery(
        &self,
        node: &str,
        discovery: &Discovery,
    ) -> Result<(), DiscoveryError> {
        let body = serde_json::to_vec(discovery)?;
        let mut stream = self.dial(node, TARGET_DISCOVERY).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await?;
        // Wait for the agent to close its side once it has read everything: dropping the
        // stream earlier would reset it under the agent's feet.
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest).await?;
        Ok(())
    }

    /// The live tunnels, sorted by node, the newest of each node's first.
    pub fn list(&self) -> Vec<TunnelInfo> {
        let mut list: Vec<TunnelInfo> = self
            .entries()
            .values()
            .flat_map(|tunnels| tunnels.iter().rev().map(|e| e.info.clone()))
            .collect();
        list.sort_by(|a, b| a.node.cmp(&b.node));
        list
    }

    /// Runs one agent's tunnel (already authenticated as `node`) until it ends.
    pub async fn serve<S>(self: Arc<Self>, stream: S, node: String, remote: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let handshake = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE)
            .handshake::<_, Bytes>(stream)
            .await;
        let (send, mut connection) = match handshake {
            Ok(pair) => pair,
            Err(err) => {
                // The agent left right after TLS (see below); it logs its own failures.
                debug!(%node, %remote, %err, "reverse tunnel handshake failed");
                return;
            }
        };
        let Some(mut ping) = connection.ping_pong() else {
            return;
        };
        // Counted only once the agent's HTTP/2 answers a PING. An agent behind a load
        // balancer that lands on a proxy it already holds leaves right after TLS; counting
        // (and logging at warn) each such visit made hundreds of lines a second on the
        // survivors when a proxy died among several (bench-storm).
        let answered = tokio::select! {
            pong = tokio::time::timeout(FIRST_PING_WITHIN, ping.ping(h2::Ping::opaque())) => {
                matches!(pong, Ok(Ok(_)))
            }
            _ = &mut connection => false,
        };
        if !answered {
            debug!(%node, %remote, "an agent left before its tunnel started (it already holds one here)");
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let info = TunnelInfo {
            node: node.clone(),
            remote,
            since: SystemTime::now(),
        };
        let cut = Arc::new(tokio::sync::Notify::new());
        let entry = Entry {
            id,
            info,
            send,
            cut: cut.clone(),
        };
        let held = {
            let mut entries = self.entries();
            let tunnels = entries.entry(node.clone()).or_default();
            tunnels.push(entry);
            // A node (or a thief of its key) cannot grow the registry without bound: past
            // the cap its oldest tunnels are cut, which a well-behaved agent never reaches.
            let excess = tunnels.len().saturating_sub(MAX_TUNNELS_PER_NODE);
            for oldest in tunnels.drain(..excess) {
                oldest.cut.notify_one();
                warn!(%node, "too many tunnels from one node; cutting its oldest");
            }
            tunnels.len()
        };
        if held > 1 {
            info!(%node, %remote, held, "reverse tunnel up beside the node's older one(s)");
        } else {
            info!(%node, %remote, "reverse tunnel up");
        }
        let heartbeat = heartbeat(ping, "agent");
        let discovery = async {
            let mut updates = self.discovery.subscribe();
            loop {
                let current = updates.borrow_and_update().clone();
                if let Some(discovery) = current
                    && let Err(err) = self.send_discovery(&node, &discovery).await
                {
                    tracing::debug!(%node, %err, "cannot send discovery; trying again soon");
                    tokio::time::sleep(DISCOVERY_RETRY).await;
                    continue;
                }
                // `self` holds the sender, so this only waits for the next change.
                let _ = updates.changed().await;
            }
        };
        let reason = tokio::select! {
            reason = heartbeat => reason,
            () = cut.notified() => {
                "cut off by the proxy (the node is locked, or holds too many tunnels)".to_string()
            }
            () = discovery => "discovery ended".to_string(),
            ended = &mut connection => match ended {
                Ok(()) => "the agent closed the tunnel".to_string(),
                Err(err) => format!("HTTP/2 error: {err}"),
            },
        };
        // Remove only this tunnel: the node's other ones (older or newer) stay usable.
        let mut entries = self.entries();
        if let Some(tunnels) = entries.get_mut(&node) {
            tunnels.retain(|entry| entry.id != id);
            if tunnels.is_empty() {
                entries.remove(&node);
            }
        }
        drop(entries);
        warn!(%node, %remote, %reason, "reverse tunnel down");
    }

    /// Ends every tunnel of `node` now (its node is locked); says whether there was one.
    pub fn cut(&self, node: &str) -> bool {
        match self.entries().remove(node) {
            Some(tunnels) => {
                for entry in &tunnels {
                    entry.cut.notify_one();
                }
                !tunnels.is_empty()
            }
            None => false,
        }
    }

    /// Opens a stream to `target` on `node` through its tunnel.
    pub async fn dial(&self, node: &str, target: &str) -> Result<H2Stream, DialError> {
        self.dial_from(node, target, None).await
    }

    /// Opens a stream to `target` on `node` for a user at `client`, whose address the
    /// node then audits (and checks a certificate's `source-address` against).
    pub async fn dial_from(
        &self,
        node: &str,
        target: &str,
        client: Option<SocketAddr>,
    ) -> Result<H2Stream, DialError> {
        let mut nothing = tokio::io::empty();
        self.dial_forwarding(
            node,
            target,
            client,
            &mut nothing,
            &mut EarlyBytes::default(),
        )
        .await
    }

    /// [`Tunnels::dial_from`], passing on what `source` (the user's connection) sends
    /// while the node is being asked ([`EarlyBytes`]).
    pub async fn dial_forwarding<R: AsyncRead + Unpin>(
        &self,
        node: &str,
        target: &str,
        client: Option<SocketAddr>,
        source: &mut R,
        early: &mut EarlyBytes,
    ) -> Result<H2Stream, DialError> {
        // Newest first: an older tunnel may be one the agent has already left.
        let senders: Vec<h2::client::SendRequest<Bytes>> = self
            .entries()
            .get(node)
            .map(|tunnels| {
                tunnels
                    .iter()
                    .rev()
                    .map(|entry| entry.send.clone())
                    .collect()
            })
            .unwrap_or_default();
        if senders.is_empty() {
            return Err(DialError::NoTunnel(node.to_string()));
        }
        let mut last = None;
        for send in senders {
            match open_stream(send, node, target, client, source, early).await {
                // The tunnel itself failed: the next older one may still work.
                Err(err @ DialError::Tunnel { .. }) => last = Some(err),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| DialError::NoTunnel(node.to_string())))
    }
}

/// How long a node's agent may take to accept a stream. It answers at once when it is
/// well; one that is stuck (or hostile) must not hold the user's connection, and this
/// proxy's task for it, for ever.
pub const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a stream to `target` on `node` over one tunnel, passing on what `source` sends
/// until the node answers.
async fn open_stream<R: AsyncRead + Unpin>(
    send: h2::client::SendRequest<Bytes>,
    node: &str,
    target: &str,
    client: Option<SocketAddr>,
    source: &mut R,
    early: &mut EarlyBytes,
) -> Result<H2Stream, DialError> {
    let failed = |reason: String| DialError::Tunnel {
        node: node.to_string(),
        reason,
    };
    let mut send = send.ready().await.map_err(|err| failed(err.to_string()))?;
    let mut request = http::Request::post(format!("https://{node}{target}"));
    if let Some(client) = client {
        request = request.header(HEADER_CLIENT_ADDR, client.to_string());
    }
    let request = request.body(()).map_err(|err| failed(err.to_string()))?;
    let (response, mut stream) = send
        .send_request(request, false)
        .map_err(|err| failed(err.to_string()))?;
    let response = tokio::time::timeout(
        STREAM_OPEN_TIMEOUT,
        early.forward_until(source, &mut stream, response),
    )
    .await
    .map_err(|_| failed(format!("no answer within {STREAM_OPEN_TIMEOUT:?}")))?
    .map_err(|err| failed(err.to_string()))?;
    if response.status() != http::StatusCode::OK {
        return Err(DialError::Refused {
            node: node.to_string(),
            status: response.status().as_u16(),
        });
    }
    Ok(H2Stream::new(stream, response.into_body()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery(proxies: &[&str]) -> Discovery {
        Discovery::new(
            proxies.iter().map(ToString::to_string).collect(),
            jumpgate_types::config::TunnelStrategy::AgentMesh,
        )
    }

    /// One node opening tunnel after tunnel keeps at most MAX_TUNNELS_PER_NODE in the
    /// registry: the oldest are cut, and the registry does not grow without bound.
    #[tokio::test]
    async fn a_node_holds_a_bounded_number_of_tunnels() {
        let tunnels = Arc::new(Tunnels::default());
        let mut agents = Vec::new();
        for i in 0..MAX_TUNNELS_PER_NODE + 3 {
            let (proxy_side, agent_side) = tokio::io::duplex(64 * 1024);
            // The agent's end: an HTTP/2 server that only keeps the connection going.
            agents.push(tokio::spawn(async move {
                if let Ok(mut connection) = h2::server::handshake(agent_side).await {
                    while let Some(Ok(_)) = connection.accept().await {}
                }
            }));
            let port = 40_000 + u16::try_from(i).unwrap_or(0);
            let remote = SocketAddr::from(([127, 0, 0, 1], port));
            tokio::spawn(Arc::clone(&tunnels).serve(proxy_side, "node-1".to_string(), remote));
            // One at a time: a tunnel counts once its agent answered a PING, so tunnels
            // opened at once would count in any order.
            let counted = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !tunnels.list().iter().any(|t| t.remote.port() == port) {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            });
            assert!(counted.await.is_ok(), "tunnel {i} never counted");
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let held = tunnels.list().len();
            if held == MAX_TUNNELS_PER_NODE {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the registry holds {held} tunnels of one node"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The newest stay: the last one opened is listed.
        assert!(
            tunnels.list().iter().any(|t| t.remote.port()
                == 40_000 + u16::try_from(MAX_TUNNELS_PER_NODE + 2).unwrap_or(0))
        );
        for agent in agents {
            agent.abort();
        }
    }

    #[test]
    fn agents_are_told_again_only_when_the_discovery_changes() {
        let tunnels = Tunnels::default();
        let mut updates = tunnels.discovery.subscribe();
        assert_eq!(*updates.borrow_and_update(), None);

        tunnels.set_discovery(discovery(&["a"]));
        assert!(updates.has_changed().unwrap());
        assert_eq!(*updates.borrow_and_update(), Some(discovery(&["a"])));

        // Every heartbeat sets the same answer again: no message to the agents.
        tunnels.set_discovery(discovery(&["a"]));
        assert!(!updates.has_changed().unwrap());

        tunnels.set_discovery(discovery(&["a", "b"]));
        assert!(updates.has_changed().unwrap());
        assert_eq!(*updates.borrow_and_update(), Some(discovery(&["a", "b"])));
    }
}
