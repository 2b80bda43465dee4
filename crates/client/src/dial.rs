//! Reaching a node through the proxy (`jumpgate_api::ssh_route`): mutual TLS to the
//! proxy's public port with ALPN `jumpgate-ssh`, one JSON line asking for the node and
//! login, one line back; then the stream carries SSH end to end with the node.

use crate::error::ClientError;
use crate::profile::Profile;
use crate::web::{ProxyAddr, connect_tls, error_chain};
use jumpgate_api::ssh_route::{ALPN_SSH, DialRequest, DialResponse, LineError, read_line, to_line};
use jumpgate_api::tunnel::PROXY_SERVER_NAME;
use rustls::pki_types::ServerName;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How long connecting and the proxy's answer may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// A stream to a node's SSH service, through the proxy.
#[derive(Debug)]
pub struct NodeStream {
    pub stream: TlsStream<TcpStream>,
    /// The node's UUID: a principal its host certificate must carry.
    pub node_uuid: String,
    pub hostname: String,
}

/// Asks the proxy for `node` (host name, UUID or address) as `login`. The proxy checks
/// the roles; refusals come back as [`ClientError::DialRefused`].
pub async fn dial_node(
    profile: &Profile,
    node: &str,
    login: &str,
) -> Result<NodeStream, ClientError> {
    profile.check_valid(SystemTime::now())?;
    let proxy = ProxyAddr::parse(&profile.meta.proxy)?;
    let tls = profile
        .tls_credentials()?
        .client_config_for(jumpgate_api::tls::IdentityKind::Proxy, &[ALPN_SSH])?;
    let addr = proxy.to_string();
    let exchange = async {
        let name = ServerName::try_from(PROXY_SERVER_NAME)
            .map_err(|err| ClientError::DialProtocol(format!("proxy server name: {err}")))?;
        let (mut stream, addr) = connect_tls(
            &proxy,
            tls,
            crate::web::TlsName::Fixed(name),
            |addr, reason| ClientError::ClusterTls { addr, reason },
        )
        .await?;
        let request = DialRequest {
            node: node.to_string(),
            login: login.to_string(),
        };
        let lost = |err: std::io::Error| ClientError::ClusterTls {
            addr: addr.clone(),
            reason: error_chain(&err),
        };
        stream.write_all(&to_line(&request)).await.map_err(lost)?;
        stream.flush().await.map_err(lost)?;
        let response: DialResponse = read_line(&mut stream).await.map_err(|err| match err {
            // A TLS alert (say, our certificate was refused) surfaces when reading.
            LineError::Io(err) => ClientError::ClusterTls {
                addr: addr.clone(),
                reason: error_chain(&err),
            },
            LineError::Closed => ClientError::DialProtocol(
                "the proxy closed the connection without an answer; does it route jumpgate-ssh?"
                    .to_string(),
            ),
            other => ClientError::DialProtocol(other.to_string()),
        })?;
        Ok::<_, ClientError>((stream, response))
    };
    let (stream, response) = tokio::time::timeout(DIAL_TIMEOUT, exchange)
        .await
        .map_err(|_| ClientError::Connect {
            addr: addr.clone(),
            reason: format!("no answer in {} s", DIAL_TIMEOUT.as_secs()),
        })??;
    if !response.ok {
        return Err(match response.code {
            Some(code) => ClientError::DialRefused {
                code,
                message: response.error,
            },
            None => ClientError::DialProtocol(format!(
                "refused without a reason code: {}",
                response.error
            )),
        });
    }
    if response.node_uuid.is_empty() {
        return Err(ClientError::DialProtocol(
            "the answer names no node UUID to check the host certificate against".to_string(),
        ));
    }
    Ok(NodeStream {
        stream,
        node_uuid: response.node_uuid,
        hostname: response.hostname,
    })
}
