//! Dialling the auth service.

use crate::proto::auth_service_client::AuthServiceClient;
use crate::tls::{AUTH_SERVER_NAME, ApiError};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::net::IpAddr;
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
    connect_from(addr, tls, None).await
}

/// [`connect`] from the source address `local_ip` (any port) when given: a load tool
/// simulating many hosts on one machine gives each its own loopback address.
pub async fn connect_from(
    addr: &str,
    tls: Arc<ClientConfig>,
    local_ip: Option<IpAddr>,
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
                let tcp = dial(&target, local_ip).await?;
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
/// [`PER_ADDRESS_TIMEOUT`], until one accepts. From `local_ip` (any port) when given.
/// The error of a list names every address and what each did.
pub async fn dial(target: &str, local_ip: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let addrs: Vec<&str> = target
        .split(',')
        .map(str::trim)
        .filter(|addr| !addr.is_empty())
        .collect();
    if addrs.len() <= 1 {
        return dial_one(target.trim(), local_ip).await;
    }
    let start = NEXT_START.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut failures = Vec::with_capacity(addrs.len());
    let mut kind = std::io::ErrorKind::ConnectionRefused;
    for i in 0..addrs.len() {
        let Some(addr) = addrs.get((start + i) % addrs.len()) else {
            continue;
        };
        match tokio::time::timeout(PER_ADDRESS_TIMEOUT, dial_one(addr, local_ip)).await {
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

/// Opens a TCP connection to one `host:port`.
async fn dial_one(target: &str, local_ip: Option<IpAddr>) -> std::io::Result<TcpStream> {
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
            let tcp = super::dial(&list, None).await.unwrap();
            assert_eq!(tcp.peer_addr().unwrap(), live_addr);
        }
        accepting.await.unwrap();

        let other_dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other_addr = other_dead.local_addr().unwrap();
        drop(other_dead);
        let err = super::dial(&format!("{dead_addr}, {other_addr}"), None)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&dead_addr.to_string()) && text.contains(&other_addr.to_string()),
            "{text}"
        );
    }
}
