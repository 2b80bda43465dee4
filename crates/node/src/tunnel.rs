//! The agent's end of a reverse tunnel (see `jumpgate_api::tunnel` for the protocol):
//! dial the proxy, serve the HTTP/2 streams it opens, send PINGs, and reconnect with
//! jittered exponential backoff when the tunnel drops, so a restarted proxy is not hit
//! by every agent at the same instant.

use crate::AgentError;
use crate::heartbeat::{SharedState, lock, unix_now};
use crate::identity::HostIdentity;
use bytes::Bytes;
use jumpgate_api::TlsCredentials;
use jumpgate_api::tunnel::{
    ALPN_REVERSE_TUNNEL, CONNECTION_WINDOW, H2Stream, PROXY_SERVER_NAME, STREAM_WINDOW,
    TARGET_PING, heartbeat,
};
use jumpgate_pki::TlsIdentity;
use rand::RngExt;
use rustls::pki_types::ServerName;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Exponential backoff with full jitter: the n-th wait is uniform in
/// `[0, min(MAX_RETRY, FIRST_RETRY * 2^n)]`.
#[derive(Debug)]
pub struct Backoff {
    ceiling: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            ceiling: FIRST_RETRY,
        }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(MAX_RETRY);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    pub fn reset(&mut self) {
        self.ceiling = FIRST_RETRY;
    }
}

/// Keeps one tunnel to the proxy at `proxy_addr` until `stop` resolves.
pub async fn run(
    proxy_addr: String,
    identity: HostIdentity,
    state: SharedState,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut backoff = Backoff::default();
    loop {
        let attempt = async {
            let (proxy, connection) = connect(&proxy_addr, &identity).await?;
            info!(proxy = %proxy, addr = %proxy_addr, "reverse tunnel up");
            lock(&state).tunnels.insert(proxy.clone(), unix_now());
            let ended = serve(connection).await;
            lock(&state).tunnels.remove(&proxy);
            Ok::<_, AgentError>((proxy, ended))
        };
        tokio::select! {
            () = &mut stop => return,
            result = attempt => match result {
                Ok((proxy, ended)) => {
                    warn!(proxy = %proxy, reason = %ended, "reverse tunnel down; reconnecting");
                    backoff.reset();
                }
                Err(err) => warn!(addr = %proxy_addr, %err, "cannot open a reverse tunnel"),
            },
        }
        let wait = backoff.next_delay();
        debug!(?wait, "next tunnel attempt");
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

type TunnelConnection = h2::server::Connection<tokio_rustls::client::TlsStream<TcpStream>, Bytes>;

/// Dials, checks the proxy's identity, and completes the HTTP/2 handshake; returns the
/// proxy's identity name.
async fn connect(
    proxy_addr: &str,
    identity: &HostIdentity,
) -> Result<(String, TunnelConnection), AgentError> {
    let tls = TlsCredentials::from_pem(
        &identity.tls_cert_pem,
        &identity.tls_key_pem,
        &identity.tls_ca_pem,
    )
    .and_then(|credentials| credentials.client_config_with_alpn(&[ALPN_REVERSE_TUNNEL]))
    .map_err(|err| AgentError::Identity(err.to_string()))?;
    let unreachable = |err: String| AgentError::Unreachable(format!("{proxy_addr}: {err}"));
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(proxy_addr))
        .await
        .map_err(|_| unreachable("no answer".to_string()))?
        .map_err(|err| unreachable(err.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(PROXY_SERVER_NAME)
        .map_err(|err| AgentError::Identity(err.to_string()))?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TlsConnector::from(tls).connect(name, tcp))
        .await
        .map_err(|_| unreachable("TLS handshake timed out".to_string()))?
        .map_err(|err| unreachable(format!("TLS: {err}")))?;
    let proxy = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| TlsIdentity::from_cert_der(leaf.as_ref()).ok())
        .filter(|id| id.kind == jumpgate_pki::IdentityKind::Proxy && id.cluster == identity.cluster)
        .ok_or_else(|| unreachable("the peer is not a proxy of this cluster".to_string()))?;
    let connection = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(10_000)
        .handshake(stream)
        .await
        .map_err(|err| unreachable(format!("HTTP/2: {err}")))?;
    Ok((proxy.name, connection))
}

/// Serves the proxy's streams until the tunnel ends; returns why it ended.
async fn serve(mut connection: TunnelConnection) -> String {
    let Some(ping) = connection.ping_pong() else {
        return "no PING handle".to_string();
    };
    let heartbeat = heartbeat(ping, "proxy");
    let accept = async {
        loop {
            match connection.accept().await {
                Some(Ok((request, respond))) => {
                    tokio::spawn(handle_stream(request, respond));
                }
                Some(Err(err)) => return format!("HTTP/2 error: {err}"),
                None => return "the proxy closed the tunnel".to_string(),
            }
        }
    };
    tokio::select! {
        reason = heartbeat => reason,
        reason = accept => reason,
    }
}

async fn handle_stream(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let target = request.uri().path().to_string();
    let status = if target == TARGET_PING {
        http::StatusCode::OK
    } else {
        http::StatusCode::NOT_IMPLEMENTED
    };
    let response = http::Response::builder().status(status).body(());
    let Ok(response) = response else { return };
    let end = status != http::StatusCode::OK;
    let send = match respond.send_response(response, end) {
        Ok(send) => send,
        Err(err) => {
            debug!(%err, "cannot answer a tunnel stream");
            return;
        }
    };
    if end {
        debug!(%target, "refused a tunnel stream for a target this agent does not serve");
        return;
    }
    let mut stream = H2Stream::new(send, request.into_body());
    let (mut reader, mut writer) = tokio::io::split(&mut stream);
    let _ = tokio::io::copy(&mut reader, &mut writer).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut writer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_ceiling_with_jitter_below_it() {
        let mut backoff = Backoff::default();
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            let ceiling = backoff.ceiling;
            let delay = backoff.next_delay();
            assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
            ceilings.push(ceiling);
        }
        assert_eq!(ceilings.first(), Some(&FIRST_RETRY));
        assert_eq!(ceilings.last(), Some(&MAX_RETRY));
        // Jitter: many draws at the ceiling are not all equal.
        let draws: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| backoff.next_delay()).collect();
        assert!(draws.len() > 5, "{draws:?}");
        backoff.reset();
        assert!(backoff.next_delay() <= FIRST_RETRY);
    }
}
