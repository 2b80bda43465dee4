//! Reverse tunnels between agents and proxies (DESIGN.md "Flows": tunnels).
//!
//! An agent dials the proxy's public port with ALPN [`ALPN_REVERSE_TUNNEL`], SNI
//! [`PROXY_SERVER_NAME`] and its node certificate (mutual TLS under the cluster CA).
//! On that one connection the **agent is the HTTP/2 server and the proxy the client**:
//! the proxy opens one HTTP/2 stream per connection it forwards to the agent.
//!
//! Why HTTP/2 (the `h2` crate, hyper's): every stream has its own flow-control window,
//! so a stream whose reader is slow stops only itself, never the others; the
//! connection's PING frames are the heartbeat both ways; and `h2` is the most used and
//! fuzzed multiplexer in the Rust ecosystem. Each stream is a `POST` to a target path
//! ([`TARGET_PING`] echoes, for health checks and tests; `/ssh` comes with the SSH
//! service), answered `200` and then carrying raw bytes both ways ([`H2Stream`]).

use bytes::Bytes;
use h2::{RecvStream, SendStream};
use jumpgate_types::config::TunnelStrategy;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// ALPN of an agent's reverse tunnel.
pub const ALPN_REVERSE_TUNNEL: &[u8] = b"jumpgate-reversetunnel";
/// The name every proxy's internal certificate carries and agents check, whatever
/// address they dialled.
pub const PROXY_SERVER_NAME: &str = "proxy.jumpgate.cluster.local";
/// A stream that echoes what it receives.
pub const TARGET_PING: &str = "/ping";
/// A stream on which the proxy tells the agent which proxies exist and how many
/// tunnels to keep ([`Discovery`], JSON), so agents learn the set of proxies from the
/// proxies themselves.
pub const TARGET_DISCOVERY: &str = "/discovery";
/// Largest discovery message accepted.
pub const MAX_DISCOVERY_LEN: usize = 256 * 1024;
/// Most tunnels an agent keeps, whatever a discovery message says: a bound on the
/// connections one message can make an agent open.
pub const MAX_TUNNELS: usize = 64;

/// What a proxy tells its agents.
///
/// The strategy travels in its wire form (a name and a count, as in the auth API's
/// status), so agents and proxies of different versions understand each other; code reads
/// it typed, with [`Discovery::strategy`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Discovery {
    /// Identity names (host UUIDs) of the live proxies.
    proxies: Vec<String>,
    /// [`TunnelStrategy::as_str`]: `agent_mesh` or `proxy_peering`.
    tunnel_strategy: String,
    /// [`TunnelStrategy::agent_connection_count`]: with `proxy_peering`, tunnels to keep
    /// to distinct proxies.
    agent_connection_count: u32,
}

impl Discovery {
    /// The message for `proxies` and the cluster's `strategy`.
    pub fn new(proxies: Vec<String>, strategy: TunnelStrategy) -> Discovery {
        Discovery {
            proxies,
            tunnel_strategy: strategy.as_str().to_string(),
            agent_connection_count: strategy.agent_connection_count(),
        }
    }

    /// Identity names (host UUIDs) of the live proxies.
    pub fn proxies(&self) -> &[String] {
        &self.proxies
    }

    /// The cluster's tunnel strategy (agent_mesh when the message names none, or one
    /// this version does not know).
    pub fn strategy(&self) -> TunnelStrategy {
        TunnelStrategy::from_wire(&self.tunnel_strategy, self.agent_connection_count)
    }

    /// How many tunnels to distinct proxies an agent should hold: one to every proxy
    /// (agent_mesh), or `agent_connection_count` of them (proxy_peering); at least one,
    /// never more than there are proxies (nor [`MAX_TUNNELS`]).
    pub fn desired_tunnels(&self) -> usize {
        let proxies = self.proxies.len().clamp(1, MAX_TUNNELS);
        match self.strategy() {
            TunnelStrategy::ProxyPeering {
                agent_connection_count,
            } => usize::try_from(agent_connection_count)
                .unwrap_or(1)
                .clamp(1, proxies),
            TunnelStrategy::AgentMesh => proxies,
        }
    }
}

/// Both ends send an HTTP/2 PING this often and drop the tunnel when no answer comes
/// within [`HEARTBEAT_TIMEOUT`]: a proxy (or agent) that dies without closing its
/// connections (a crashed host, a cut network) is noticed within 5 s (issue 16), so the
/// agent's slot dials again and lands on a live proxy. A PING is 17 bytes each way; with
/// 10,000 tunnels a proxy answers 5,000 a second.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);
/// Per-stream and per-connection receive windows: big enough for full speed over a
/// long-distance link, small enough that a stalled stream holds little memory.
pub const STREAM_WINDOW: u32 = 1024 * 1024;
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Largest HTTP/2 frame each end accepts (the protocol's default is 16 KiB): a bulk
/// transfer then takes a quarter of the frames, TLS writes and wake-ups, while one
/// stream's frame still holds up the others' keystrokes for only 64 KiB.
pub const MAX_FRAME_SIZE: u32 = 64 * 1024;

/// Pings the peer every [`HEARTBEAT_EVERY`] until an answer does not come within
/// [`HEARTBEAT_TIMEOUT`] (or the connection fails); returns why. Both ends run it.
pub async fn heartbeat(mut ping: h2::PingPong, peer: &str) -> String {
    loop {
        tokio::time::sleep(HEARTBEAT_EVERY).await;
        match tokio::time::timeout(HEARTBEAT_TIMEOUT, ping.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return format!("heartbeat failed: {err}"),
            Err(_) => return format!("the {peer} stopped answering heartbeats"),
        }
    }
}

/// One HTTP/2 stream as a byte stream (after the request and the `200` answer).
#[derive(Debug)]
pub struct H2Stream {
    send: SendStream<Bytes>,
    reader: H2Reader,
}

impl H2Stream {
    pub fn new(send: SendStream<Bytes>, recv: RecvStream) -> H2Stream {
        H2Stream::from_parts(send, H2Reader::new(recv))
    }

    /// A stream whose receiving half was already read from (bytes it holds come first).
    pub fn from_parts(send: SendStream<Bytes>, reader: H2Reader) -> H2Stream {
        H2Stream { send, reader }
    }
}

/// The receiving half of an HTTP/2 stream as a byte source: what a proxy reads of a
/// peer's request before it answers it ([`EarlyBytes`]).
#[derive(Debug)]
pub struct H2Reader {
    recv: RecvStream,
    pending: Bytes,
}

impl H2Reader {
    pub fn new(recv: RecvStream) -> H2Reader {
        H2Reader {
            recv,
            pending: Bytes::new(),
        }
    }
}

fn h2_io(err: h2::Error) -> io::Error {
    if err.is_io() {
        err.into_io()
            .unwrap_or_else(|| io::Error::other("tunnel I/O error"))
    } else {
        io::Error::new(io::ErrorKind::BrokenPipe, err)
    }
}

impl AsyncRead for H2Reader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Open the window again for what we took; the reader's pace is the
                    // stream's pace.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(err)) => return Poll::Ready(Err(h2_io(err))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        let chunk = self.pending.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for H2Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

/// Most bytes of a user's connection passed on before the node has accepted its stream;
/// past it the user waits (SSH's first flight, a version line and a key exchange offer,
/// is under 2 KiB).
pub const EARLY_LIMIT: usize = 64 * 1024;

/// What a user sent after asking for a node, passed on while the stream to the node is
/// being opened rather than after: SSH's first flight then travels with the stream's
/// opening, and a user across a long link to the node saves one round trip. Kept, so
/// that a stream opened elsewhere after a failed one (an older tunnel, another peer)
/// gets the same bytes first.
///
/// Only what the proxy has already decided to forward goes early: the user's request
/// was checked before any stream is opened.
#[derive(Debug, Default)]
pub struct EarlyBytes {
    held: Vec<u8>,
    /// The user's side ended (or failed) before the node answered.
    source_done: bool,
}

impl EarlyBytes {
    /// Waits for `answer` (the far end accepting the stream `send` opened) while passing
    /// on to `send` what `source` sends meanwhile: first what an earlier attempt already
    /// read, then new bytes, up to [`EARLY_LIMIT`]. A failed send shows up in `answer`.
    pub async fn forward_until<R, F>(
        &mut self,
        source: &mut R,
        send: &mut SendStream<Bytes>,
        answer: F,
    ) -> F::Output
    where
        R: AsyncRead + Unpin,
        F: std::future::Future,
    {
        if !self.held.is_empty() {
            let _ = send.send_data(Bytes::copy_from_slice(&self.held), false);
        }
        tokio::pin!(answer);
        let mut buf = vec![0u8; 8 * 1024];
        loop {
            let room = !self.source_done && self.held.len() < EARLY_LIMIT;
            let limit = EARLY_LIMIT.saturating_sub(self.held.len()).min(buf.len());
            tokio::select! {
                biased;
                answered = &mut answer => return answered,
                read = tokio::io::AsyncReadExt::read(source, buf.get_mut(..limit).unwrap_or_default()), if room => {
                    match read {
                        Ok(0) | Err(_) => self.source_done = true,
                        Ok(n) => {
                            let chunk = buf.get(..n).unwrap_or_default();
                            self.held.extend_from_slice(chunk);
                            let _ = send.send_data(Bytes::copy_from_slice(chunk), false);
                        }
                    }
                }
            }
        }
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        loop {
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let n = n.min(buf.len());
                    let chunk = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                    self.send.send_data(chunk, false).map_err(h2_io)?;
                    return Poll::Ready(Ok(n));
                }
                Some(Err(err)) => return Poll::Ready(Err(h2_io(err))),
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the tunnel stream was closed",
                    )));
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.send.reserve_capacity(0);
        Poll::Ready(self.send.send_data(Bytes::new(), true).map_err(h2_io))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery(proxies: usize, strategy: &str, count: u32) -> Discovery {
        Discovery {
            proxies: (0..proxies).map(|i| format!("p{i}")).collect(),
            tunnel_strategy: strategy.to_string(),
            agent_connection_count: count,
        }
    }

    #[test]
    fn desired_tunnels_follow_the_strategy_within_bounds() {
        assert_eq!(discovery(0, "agent_mesh", 0).desired_tunnels(), 1);
        assert_eq!(discovery(3, "agent_mesh", 0).desired_tunnels(), 3);
        assert_eq!(discovery(3, "proxy_peering", 2).desired_tunnels(), 2);
        assert_eq!(discovery(1, "proxy_peering", 2).desired_tunnels(), 1);
        assert_eq!(discovery(3, "proxy_peering", 0).desired_tunnels(), 1);
        assert_eq!(
            discovery(10_000, "agent_mesh", 0).desired_tunnels(),
            MAX_TUNNELS
        );
    }

    #[test]
    fn the_strategy_is_sent_in_its_wire_form_and_read_typed() {
        let peering = TunnelStrategy::ProxyPeering {
            agent_connection_count: 2,
        };
        let sent = Discovery::new(vec!["p1".to_string()], peering);
        let json = serde_json::to_value(&sent).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "proxies": ["p1"],
                "tunnel_strategy": "proxy_peering",
                "agent_connection_count": 2,
            })
        );
        let received: Discovery = serde_json::from_value(json).unwrap();
        assert_eq!(received.strategy(), peering);
        assert_eq!(
            Discovery::new(Vec::new(), TunnelStrategy::AgentMesh),
            discovery(0, "agent_mesh", 0)
        );
        assert_eq!(Discovery::default().strategy(), TunnelStrategy::AgentMesh);
    }
}
