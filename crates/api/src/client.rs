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
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
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

/// Opens a TCP connection to `target` (`host:port`), from `local_ip` (any port) when
/// given.
pub async fn dial(target: &str, local_ip: Option<IpAddr>) -> std::io::Result<TcpStream> {
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
}
