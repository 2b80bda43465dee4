//! Dialling the auth service.

use crate::proto::auth_service_client::AuthServiceClient;
use crate::tls::{AUTH_SERVER_NAME, ApiError};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
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
                let tcp = TcpStream::connect(&target).await?;
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
        .max_encoding_message_size(crate::server::MAX_MESSAGE_SIZE))
}

/// An error with its causes, which is where TLS and socket errors say what went wrong.
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
