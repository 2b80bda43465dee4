//! Serving the auth API on a TCP listener with rustls, so every call can see who is
//! calling: the [`PeerInfo`] of its connection is in the request's extensions.

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
/// Largest request a caller may send (a resource document, a key): 4 MiB.
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Who is on the other end of a connection, as the TLS handshake established it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote_addr: SocketAddr,
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
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let accept_loop = tokio::spawn(async move {
        loop {
            let (tcp, remote_addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off briefly.
                    debug!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%remote_addr, limit = MAX_CONNECTIONS, "auth API connection limit reached; closing a new connection");
                continue;
            };
            let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
                tracing::warn!(%remote_addr, limit = MAX_HANDSHAKES, "too many TLS handshakes in progress; closing a new connection");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.borrow().clone());
            let connections_tx = connections_tx.clone();
            tokio::spawn(async move {
                let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                drop(handshake);
                match accepted {
                    Ok(Ok(stream)) => {
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
                                client_cert,
                            },
                            _slot: slot,
                        };
                        let _ = connections_tx.send(Ok(connection)).await;
                    }
                    Ok(Err(err)) => debug!(%remote_addr, %err, "TLS handshake failed"),
                    Err(_) => debug!(%remote_addr, "TLS handshake timed out"),
                }
            });
        }
    });
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
