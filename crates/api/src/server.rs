//! Serving the auth API on a TCP listener with rustls, so every call can see who is
//! calling: the [`PeerInfo`] of its connection is in the request's extensions.

use crate::forwarded::{ForwardError, Forwarded, read_forwarded};
use crate::proto::auth_service_server::{AuthService, AuthServiceServer};
use rustls::ServerConfig;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tracing::debug;

/// A TLS handshake that takes longer than this is dropped, so slow or silent clients
/// cannot hold connections open.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once (every agent and proxy holds one or two); more are closed
/// at accept, so a flood cannot exhaust the process's file descriptors.
pub const MAX_CONNECTIONS: usize = 50_000;
/// TLS handshakes in progress at once: a flood of silent or slow clients waits for its
/// deadline without holding more than this many slots; new ones beyond it are closed.
pub const MAX_HANDSHAKES: usize = 2_048;
pub use crate::MAX_MESSAGE_SIZE;

/// Who is on the other end of a connection, as the TLS handshake established it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The socket's peer: the caller, or the proxy that passed the connection through.
    pub remote_addr: SocketAddr,
    /// The client a proxy passed this connection through for, as its signed PROXY
    /// header says (signature and time checked; the caller checks that the signer is a
    /// proxy of this cluster). See [`crate::forwarded`].
    pub forwarded: Option<Forwarded>,
    /// The client's leaf certificate (DER), already verified by rustls against the
    /// cluster's CAs; `None` for an anonymous caller.
    pub client_cert: Option<Arc<Vec<u8>>>,
}

/// One accepted, handshaken connection.
struct TlsConnection {
    stream: TlsStream<TcpStream>,
    peer: PeerInfo,
    /// One of [`MAX_CONNECTIONS`], given back when the connection is dropped.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// How many connections the auth API holds and how long a handshake may take.
#[derive(Debug, Clone, Copy)]
pub struct AcceptLimits {
    /// Connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// Handshakes (signed PROXY header and TLS) in progress at once; more are closed at
    /// accept.
    pub max_handshakes: usize,
    /// From accept to the end of the TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for AcceptLimits {
    fn default() -> Self {
        AcceptLimits {
            max_connections: MAX_CONNECTIONS,
            max_handshakes: MAX_HANDSHAKES,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

/// Serves `service` on `listener` with `tls` until `shutdown` completes. Each new
/// connection uses the config `tls` holds at that moment, so a CA rotation takes effect
/// without a restart (established connections keep theirs). Handshakes
/// run concurrently, each bounded by a timeout; a failed handshake is logged at debug
/// and costs nothing else.
pub async fn serve<S, F>(
    listener: TcpListener,
    tls: tokio::sync::watch::Receiver<Arc<ServerConfig>>,
    service: S,
    shutdown: F,
) -> Result<(), tonic::transport::Error>
where
    S: AuthService,
    F: Future<Output = ()> + Send,
{
    let (connections_tx, connections_rx) = tokio::sync::mpsc::channel::<io::Result<_>>(64);
    let accept_loop = tokio::spawn(accept_connections(
        listener,
        tls,
        AcceptLimits::default(),
        connections_tx,
    ));
    let result = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(
            AuthServiceServer::new(service)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(64 * 1024 * 1024),
        )
        .serve_with_incoming_shutdown(ReceiverStream::new(connections_rx), shutdown)
        .await;
    accept_loop.abort();
    result
}

/// Accepts connections on `listener` within `limits`, reads a proxy's signed PROXY
/// header when one comes first, ends TLS, and sends each connection that made it to
/// `connections`. Runs until `connections` is closed.
async fn accept_connections(
    listener: TcpListener,
    tls: tokio::sync::watch::Receiver<Arc<ServerConfig>>,
    limits: AcceptLimits,
    connections: tokio::sync::mpsc::Sender<io::Result<TlsConnection>>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let handshakes = Arc::new(tokio::sync::Semaphore::new(limits.max_handshakes));
    while !connections.is_closed() {
        let (mut tcp, remote_addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: back off briefly.
                debug!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%remote_addr, limit = limits.max_connections, "auth API connection limit reached; closing a new connection");
            continue;
        };
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(%remote_addr, limit = limits.max_handshakes, "too many TLS handshakes in progress; closing a new connection");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.borrow().clone());
        let connections = connections.clone();
        tokio::spawn(async move {
            let accepted = tokio::time::timeout(limits.handshake_timeout, async {
                // A proxy's signed PROXY header first, when it passed the connection
                // through; a header that does not verify ends the connection.
                let forwarded = read_forwarded(&mut tcp).await.map_err(|err| {
                    // Skewed clocks break every passed-through call: say so loudly.
                    // Other refusals can be anyone's noise.
                    if matches!(err, ForwardError::Stale { .. }) {
                        tracing::warn!(%remote_addr, %err, "refused a passed-through connection");
                    }
                    io::Error::new(io::ErrorKind::PermissionDenied, err)
                })?;
                let stream = acceptor.accept(tcp).await?;
                Ok::<_, io::Error>((forwarded, stream))
            })
            .await;
            drop(handshake);
            match accepted {
                Ok(Ok((forwarded, stream))) => {
                    let client_cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .map(|cert| Arc::new(cert.as_ref().to_vec()));
                    let connection = TlsConnection {
                        stream,
                        peer: PeerInfo {
                            remote_addr,
                            forwarded,
                            client_cert,
                        },
                        _slot: slot,
                    };
                    let _ = connections.send(Ok(connection)).await;
                }
                Ok(Err(err)) => debug!(%remote_addr, %err, "handshake failed"),
                Err(_) => debug!(%remote_addr, "handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::TlsCredentials;
    use rustls::ClientConfig;
    use rustls::pki_types::ServerName;
    use tokio::io::AsyncReadExt;
    use tokio_rustls::TlsConnector;

    fn tls_pair() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let server = TlsCredentials::from_pem(&cert.pem(), &key.serialize_pem(), &cert.pem())
            .unwrap()
            .server_config()
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (server, Arc::new(client))
    }

    /// Whether the server closes `tcp` within `limit`.
    async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(limit, tcp.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    async fn tls_connect(
        addr: SocketAddr,
        client: &Arc<ClientConfig>,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(client.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    #[tokio::test]
    async fn handshakes_and_connections_beyond_the_limits_are_closed_at_once() {
        let (server_tls, client_tls) = tls_pair();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connections_tx, mut connections_rx) = tokio::sync::mpsc::channel(16);
        let (_tls_tx, tls_rx) = tokio::sync::watch::channel(server_tls);
        let limits = AcceptLimits {
            max_connections: 3,
            max_handshakes: 2,
            handshake_timeout: Duration::from_millis(800),
        };
        let accepting = tokio::spawn(accept_connections(listener, tls_rx, limits, connections_tx));

        // Two silent clients hold both handshake slots; a third is closed at once...
        let mut silent = vec![
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut third, Duration::from_millis(300)).await);
        assert!(!closed_within(&mut silent[0], Duration::from_millis(100)).await);
        // ... and the silent ones at the handshake deadline, which frees the slots.
        for tcp in &mut silent {
            assert!(closed_within(tcp, Duration::from_secs(2)).await);
        }

        // Three finished handshakes hold every connection slot; a fourth is closed.
        let mut clients = Vec::new();
        let mut accepted = Vec::new();
        for _ in 0..3 {
            clients.push(tls_connect(addr, &client_tls).await.unwrap());
            accepted.push(connections_rx.recv().await.unwrap().unwrap());
        }
        assert!(tls_connect(addr, &client_tls).await.is_err());
        // A connection that ends gives its slot back.
        drop(accepted.pop());
        let again = tls_connect(addr, &client_tls).await;
        assert!(again.is_ok(), "{again:?}");
        accepting.abort();
    }
}
