//! Dialling the auth service.

use crate::proto::auth_service_client::AuthServiceClient;
use crate::tls::{AUTH_SERVER_NAME, ApiError};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

/// The typed auth API client.
pub type AuthClient = AuthServiceClient<Channel>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the auth service at `addr` (`host:port`) with `tls` (an identity's
/// [`crate::TlsCredentials::client_config`], or [`crate::tls::pinned_client_config`] to
/// join). The server must prove it holds a certificate for [`AUTH_SERVER_NAME`] under the
/// trusted CA, whatever `addr` is.
pub async fn connect(addr: &str, tls: Arc<ClientConfig>) -> Result<AuthClient, ApiError> {
    connect_from(addr, tls, DialOptions::default()).await
}

/// How a dial goes out, beyond where to: the agent next to a proxy, and load tools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DialOptions {
    /// Dial from this source address (any port): a load tool simulating many hosts on one
    /// machine gives each its own loopback address.
    pub local_ip: Option<IpAddr>,
    /// Open a connection to exactly this address with a PROXY protocol v2 `LOCAL` header.
    /// The agent of an all-in-one daemon sets it to its own proxy when that proxy has
    /// `proxy_protocol: on`, which refuses a connection without a header. `LOCAL` claims no
    /// address (the proxy takes the socket's peer), so it gives the dialer nothing a
    /// header-less connection would not.
    pub local_header_to: Option<SocketAddr>,
}

/// [`connect`] with [`DialOptions`].
pub async fn connect_from(
    addr: &str,
    tls: Arc<ClientConfig>,
    options: DialOptions,
) -> Result<AuthClient, ApiError> {
    let connect_error = |reason: String| ApiError::Connect {
        addr: addr.to_string(),
        reason,
    };
    // The URI only names the channel: the connector below dials (every address of a list).
    let first = addr.split(',').next().unwrap_or(addr).trim();
    let endpoint = Endpoint::from_shared(format!("http://{first}"))
        .map_err(|err| connect_error(format!("not a host:port address: {err}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(Duration::from_secs(60))
        .http2_keep_alive_interval(Duration::from_secs(30));
    let target = addr.to_string();
    let connector = TlsConnector::from(tls);
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let target = target.clone();
            let connector = connector.clone();
            async move {
                let tcp = dial(&target, options).await?;
                let _ = tcp.set_nodelay(true);
                let name = ServerName::try_from(AUTH_SERVER_NAME)
                    .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|err| connect_error(error_chain(&err)))?;
    Ok(AuthServiceClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(crate::MAX_MESSAGE_SIZE))
}

/// How long one address of a list may take to accept before the next is tried.
const PER_ADDRESS_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the next dial of a list starts: successive dials (an agent's tunnel slots, its
/// reconnects) spread over the servers, and the dial after a failure starts elsewhere.
static NEXT_START: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Opens a TCP connection to `target`: one `host:port`, or several separated by commas
/// (`proxy_server: a:443,b:443`), tried in turn from a rotating start, each for at most
/// [`PER_ADDRESS_TIMEOUT`], until one accepts, as `options` say. The error of a list
/// names every address and what each did.
pub async fn dial(target: &str, options: DialOptions) -> std::io::Result<TcpStream> {
    let addrs: Vec<&str> = target
        .split(',')
        .map(str::trim)
        .filter(|addr| !addr.is_empty())
        .collect();
    if addrs.len() <= 1 {
        return dial_one(target.trim(), options).await;
    }
    let start = NEXT_START.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut failures = Vec::with_capacity(addrs.len());
    let mut kind = std::io::ErrorKind::ConnectionRefused;
    for i in 0..addrs.len() {
        let Some(addr) = addrs.get((start + i) % addrs.len()) else {
            continue;
        };
        match tokio::time::timeout(PER_ADDRESS_TIMEOUT, dial_one(addr, options)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(err)) => {
                kind = err.kind();
                failures.push(format!("{addr}: {err}"));
            }
            Err(_) => {
                kind = std::io::ErrorKind::TimedOut;
                failures.push(format!("{addr}: no answer within {PER_ADDRESS_TIMEOUT:?}"));
            }
        }
    }
    Err(std::io::Error::new(
        kind,
        format!("no server answered ({})", failures.join("; ")),
    ))
}

/// Opens a TCP connection to one `host:port`, with the `LOCAL` header when `options` ask.
async fn dial_one(target: &str, options: DialOptions) -> std::io::Result<TcpStream> {
    let mut tcp = connect_one(target, options.local_ip).await?;
    if let Some(to) = options.local_header_to
        && tcp.peer_addr().is_ok_and(|peer| peer == to)
    {
        use tokio::io::AsyncWriteExt;
        tcp.write_all(&local_header()?).await?;
    }
    Ok(tcp)
}

/// A PROXY protocol v2 header with the `LOCAL` command: "this connection is the dialer's
/// own; take its socket's peer as the client".
fn local_header() -> std::io::Result<Vec<u8>> {
    use ppp::v2;
    v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Local,
        v2::Protocol::Unspecified,
        v2::Addresses::Unspecified,
    )
    .build()
}

/// Opens a TCP connection to one `host:port`, from `local_ip` (any port) when given.
async fn connect_one(target: &str, local_ip: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(local_ip) = local_ip else {
        return TcpStream::connect(target).await;
    };
    let mut last = None;
    for remote in tokio::net::lookup_host(target).await? {
        if remote.is_ipv4() != local_ip.is_ipv4() {
            continue;
        }
        let socket = if remote.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(std::net::SocketAddr::new(local_ip, 0))?;
        match socket.connect(remote).await {
            Ok(tcp) => return Ok(tcp),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("{target}: no address of the family of {local_ip}"),
        )
    }))
}

/// An error with its causes, which is where TLS and socket errors say what went wrong.
/// A cause whose text the message already quotes is not repeated (errors here both say
/// what went wrong and keep the error underneath as their source). What the binaries print.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot reach the cluster: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("joining the cluster")]
    struct Context(#[source] Quoting);

    #[test]
    fn a_cause_is_printed_once_even_when_the_message_quotes_it() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            error_chain(&Quoting(refused())),
            "cannot reach the cluster: refused"
        );
        assert_eq!(
            error_chain(&Context(Quoting(refused()))),
            "joining the cluster: cannot reach the cluster: refused"
        );
    }

    /// A list of servers: a dead one is skipped, every dial reaches the live one, and when
    /// none answers the error names each address.
    #[tokio::test]
    async fn a_list_of_servers_fails_over_and_names_every_failure() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead); // nothing listens there now
        let list = format!("{dead_addr},{live_addr}");
        let accepting = tokio::spawn(async move {
            for _ in 0..4 {
                let _ = live.accept().await.unwrap();
            }
        });
        for _ in 0..4 {
            let tcp = super::dial(&list, super::DialOptions::default())
                .await
                .unwrap();
            assert_eq!(tcp.peer_addr().unwrap(), live_addr);
        }
        accepting.await.unwrap();

        let other_dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other_addr = other_dead.local_addr().unwrap();
        drop(other_dead);
        let err = super::dial(
            &format!("{dead_addr}, {other_addr}"),
            super::DialOptions::default(),
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&dead_addr.to_string()) && text.contains(&other_addr.to_string()),
            "{text}"
        );
    }

    /// The `LOCAL` header goes to the one address asked for, first on the connection, and
    /// nowhere else: an address reached through a load balancer gets the balancer's header.
    #[tokio::test]
    async fn the_local_header_goes_only_to_its_address() {
        use tokio::io::AsyncReadExt;
        let asked = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = super::DialOptions {
            local_ip: None,
            local_header_to: Some(asked.local_addr().unwrap()),
        };
        let first_bytes = |listener: tokio::net::TcpListener| async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut bytes = Vec::new();
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(300),
                tcp.read_to_end(&mut bytes),
            )
            .await;
            bytes
        };
        let asked_addr = asked.local_addr().unwrap().to_string();
        let to_asked = super::dial(&asked_addr, options);
        let (dialled, bytes) = tokio::join!(to_asked, first_bytes(asked));
        drop(dialled);
        let header = ppp::v2::Header::try_from(bytes.as_slice()).unwrap();
        assert_eq!(header.command, ppp::v2::Command::Local);
        assert_eq!(header.addresses, ppp::v2::Addresses::Unspecified);
        assert_eq!(bytes.len(), 16, "nothing after the header: {bytes:?}");

        let other_addr = other.local_addr().unwrap().to_string();
        let to_other = super::dial(&other_addr, options);
        let (dialled, bytes) = tokio::join!(to_other, first_bytes(other));
        drop(dialled);
        assert!(
            bytes.is_empty(),
            "a header went to another address: {bytes:?}"
        );
    }
}
