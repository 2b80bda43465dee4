//! Reaching a node through the proxy (`jumpgate_api::ssh_route`): mutual TLS to the
//! proxy's public port with ALPN `jumpgate-ssh`, one JSON line asking for the node and
//! login, one line back; then the stream carries SSH end to end with the node.

use crate::error::ClientError;
use crate::profile::Profile;
use crate::web::{ProxyAddr, connect_tls, error_chain};
use bytes::Bytes;
use jumpgate_api::ssh_route::{
    ALPN_SSH, DialRequest, DialResponse, LineError, MAX_LINE, from_line, to_line,
};
use jumpgate_api::tunnel::PROXY_SERVER_NAME;
use rustls::pki_types::ServerName;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How long connecting and the proxy's answer may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// A dial whose answer is still on its way: the request is sent, and SSH can start at
/// once over [`PipelinedDial::stream`], which reads the proxy's answer line before the
/// node's first bytes. The proxy passes what SSH sends meanwhile on to the node as the
/// node's stream opens, so SSH's first flight saves the round trip to the node that
/// waiting for the answer would cost (a whole inter-region round trip for a node in
/// another region). Nothing reaches a node before the proxy has decided: it reads the
/// request, checks the roles, and only then opens the stream.
#[derive(Debug)]
pub struct PipelinedDial {
    pub stream: AnswerFirst<TlsStream<TcpStream>>,
    /// What the proxy answered, once the stream has read it.
    pub answer: Arc<DialAnswer>,
}

/// Connects to the proxy and asks for `node` as `login` without waiting for the answer
/// ([`PipelinedDial`]).
pub async fn dial_node_pipelined(
    profile: &Profile,
    node: &str,
    login: &str,
) -> Result<PipelinedDial, ClientError> {
    let (stream, addr) = tokio::time::timeout(DIAL_TIMEOUT, send_request(profile, node, login))
        .await
        .map_err(|_| no_answer(profile))??;
    let answer = Arc::new(DialAnswer::default());
    Ok(PipelinedDial {
        stream: AnswerFirst {
            inner: stream,
            answer: Arc::clone(&answer),
            addr,
            line: Vec::new(),
            after: Bytes::new(),
        },
        answer,
    })
}

/// TLS to the proxy with ALPN `jumpgate-ssh`, then the request line; returns the stream
/// and the address it reached.
async fn send_request(
    profile: &Profile,
    node: &str,
    login: &str,
) -> Result<(TlsStream<TcpStream>, String), ClientError> {
    profile.check_valid(SystemTime::now())?;
    let proxy = ProxyAddr::parse(&profile.meta.proxy)?;
    let tls = profile
        .tls_credentials()?
        .client_config_for(jumpgate_api::tls::IdentityKind::Proxy, &[ALPN_SSH])?;
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
    Ok((stream, addr))
}

fn no_answer(profile: &Profile) -> ClientError {
    ClientError::Connect {
        addr: profile.meta.proxy.clone(),
        reason: format!("no answer in {} s", DIAL_TIMEOUT.as_secs()),
    }
}

/// Why reading the answer line failed, for the user.
fn answer_error(addr: &str, err: LineError) -> ClientError {
    match err {
        // A TLS alert (say, our certificate was refused) surfaces when reading.
        LineError::Io(err) => ClientError::ClusterTls {
            addr: addr.to_string(),
            reason: error_chain(&err),
        },
        LineError::Closed => ClientError::DialProtocol(
            "the proxy closed the connection without an answer; does it route jumpgate-ssh?"
                .to_string(),
        ),
        other => ClientError::DialProtocol(other.to_string()),
    }
}

/// The node's UUID and host name from an answer, or the refusal it carries.
fn accepted(response: DialResponse) -> Result<(String, String), ClientError> {
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
    Ok((response.node_uuid, response.hostname))
}

/// The proxy's answer to a [`PipelinedDial`], shared by the stream that reads it and the
/// SSH handshake, whose host check needs the node's UUID.
#[derive(Debug, Default)]
pub struct DialAnswer(Mutex<AnswerState>);

#[derive(Debug, Default)]
enum AnswerState {
    #[default]
    Pending,
    Connected {
        node_uuid: String,
        hostname: String,
    },
    /// Taken by [`DialAnswer::take_failure`].
    Failed(Option<ClientError>),
}

impl DialAnswer {
    fn state(&self) -> std::sync::MutexGuard<'_, AnswerState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The node the proxy connected us to: its UUID and host name.
    pub fn connected(&self) -> Option<(String, String)> {
        match &*self.state() {
            AnswerState::Connected {
                node_uuid,
                hostname,
            } => Some((node_uuid.clone(), hostname.clone())),
            _ => None,
        }
    }

    /// Why the dial failed (a refusal, an unusable answer, a lost connection), once.
    pub fn take_failure(&self) -> Option<ClientError> {
        match &mut *self.state() {
            AnswerState::Failed(failure) => failure.take(),
            _ => None,
        }
    }

    fn settle(&self, outcome: Result<(String, String), ClientError>) {
        *self.state() = match outcome {
            Ok((node_uuid, hostname)) => AnswerState::Connected {
                node_uuid,
                hostname,
            },
            Err(err) => AnswerState::Failed(Some(err)),
        };
    }
}

/// A dialled stream that reads the proxy's answer line before handing on the node's
/// bytes ([`PipelinedDial`]). A refusal or an unusable answer is kept in the
/// [`DialAnswer`] and ends reading with an error.
#[derive(Debug)]
pub struct AnswerFirst<S> {
    inner: S,
    answer: Arc<DialAnswer>,
    addr: String,
    /// The answer line read so far.
    line: Vec<u8>,
    /// Bytes read after the answer line: the node's, handed on first.
    after: Bytes,
}

impl<S: AsyncRead + Unpin> AnswerFirst<S> {
    /// Reads until the answer line is complete and settled.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let failed = |answer: &DialAnswer, err: ClientError| {
            let shown = io::Error::other(err.to_string());
            answer.settle(Err(err));
            Poll::Ready(Err(shown))
        };
        loop {
            match &*self.answer.state() {
                AnswerState::Pending => {}
                AnswerState::Connected { .. } => return Poll::Ready(Ok(())),
                AnswerState::Failed(_) => {
                    return Poll::Ready(Err(io::Error::other("the dial failed")));
                }
            }
            let mut chunk = [0u8; 1024];
            let mut read = ReadBuf::new(&mut chunk);
            if let Err(err) = ready!(Pin::new(&mut self.inner).poll_read(cx, &mut read)) {
                return failed(&self.answer, answer_error(&self.addr, LineError::Io(err)));
            }
            let got = read.filled();
            if got.is_empty() {
                return failed(&self.answer, answer_error(&self.addr, LineError::Closed));
            }
            let Some(end) = got.iter().position(|byte| *byte == b'\n') else {
                self.line.extend_from_slice(got);
                if self.line.len() >= MAX_LINE {
                    return failed(&self.answer, answer_error(&self.addr, LineError::TooLong));
                }
                continue;
            };
            self.line
                .extend_from_slice(got.get(..end).unwrap_or_default());
            self.after = Bytes::copy_from_slice(got.get(end + 1..).unwrap_or_default());
            let outcome = from_line::<DialResponse>(&self.line)
                .map_err(|err| answer_error(&self.addr, err))
                .and_then(accepted);
            if let Err(err) = outcome {
                return failed(&self.answer, err);
            }
            self.answer.settle(outcome);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AnswerFirst<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_answer(cx))?;
        if !self.after.is_empty() {
            let n = self.after.len().min(buf.remaining());
            let chunk = self.after.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AnswerFirst<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use jumpgate_api::ssh_route::DialErrorCode;
    use tokio::io::AsyncReadExt;

    /// An [`AnswerFirst`] over one end of a pipe whose other end has sent `sent`.
    async fn reading(sent: &[u8]) -> (AnswerFirst<tokio::io::DuplexStream>, Arc<DialAnswer>) {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        theirs.write_all(sent).await.unwrap();
        drop(theirs);
        let answer = Arc::new(DialAnswer::default());
        let stream = AnswerFirst {
            inner: ours,
            answer: Arc::clone(&answer),
            addr: "proxy:3080".to_string(),
            line: Vec::new(),
            after: Bytes::new(),
        };
        (stream, answer)
    }

    #[tokio::test]
    async fn the_node_bytes_after_an_accepting_answer_are_read_whole() {
        let mut sent = to_line(&DialResponse::connected("uuid-1", "web-1"));
        sent.extend_from_slice(b"SSH-2.0-node\r\nrest");
        let (mut stream, answer) = reading(&sent).await;
        let mut read = Vec::new();
        stream.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, b"SSH-2.0-node\r\nrest");
        assert_eq!(
            answer.connected(),
            Some(("uuid-1".to_string(), "web-1".to_string()))
        );
        assert!(answer.take_failure().is_none());
    }

    #[tokio::test]
    async fn a_refusal_ends_reading_and_is_kept_for_the_user() {
        let refusal = DialResponse::refused(DialErrorCode::AccessDenied, "access denied: no");
        let (mut stream, answer) = reading(&to_line(&refusal)).await;
        assert!(stream.read(&mut [0u8; 16]).await.is_err());
        match answer.take_failure() {
            Some(ClientError::DialRefused { code, message }) => {
                assert_eq!(code, DialErrorCode::AccessDenied);
                assert_eq!(message, "access denied: no");
            }
            other => panic!("{other:?}"),
        }
        assert!(answer.connected().is_none());
    }

    #[tokio::test]
    async fn no_answer_a_bad_answer_or_an_endless_line_are_named() {
        let (mut closed, answer) = reading(b"").await;
        assert!(closed.read(&mut [0u8; 16]).await.is_err());
        let failure = answer.take_failure().unwrap().to_string();
        assert!(
            failure.contains("closed the connection without an answer"),
            "{failure}"
        );

        let (mut garbled, answer) = reading(b"SSH-2.0-not-a-proxy\r\n").await;
        assert!(garbled.read(&mut [0u8; 16]).await.is_err());
        assert!(matches!(
            answer.take_failure(),
            Some(ClientError::DialProtocol(_))
        ));

        let (mut endless, answer) = reading(&vec![b'{'; MAX_LINE + 10]).await;
        assert!(endless.read(&mut [0u8; 16]).await.is_err());
        let failure = answer.take_failure().unwrap().to_string();
        assert!(failure.contains("longer than"), "{failure}");

        let nameless = DialResponse::connected("", "web-1");
        let (mut stream, answer) = reading(&to_line(&nameless)).await;
        assert!(stream.read(&mut [0u8; 16]).await.is_err());
        let failure = answer.take_failure().unwrap().to_string();
        assert!(failure.contains("names no node UUID"), "{failure}");
    }
}
