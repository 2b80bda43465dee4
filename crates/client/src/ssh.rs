//! The SSH client session with a node, over the stream the proxy opened
//! ([`crate::dial`]), with russh.
//!
//! - The node must present an OpenSSH **host certificate** signed by the cluster's host
//!   CA (the `known_hosts` lines of the profile) with the node's UUID among its
//!   principals, checked by [`jumpgate_pki::verify_host_cert`]; a plain host key is
//!   refused. The client advertises only the certificate algorithms, so a Jumpgate node
//!   presents its certificate.
//! - The user authenticates with the certificate from the profile.
//! - Deny by default: every channel the node may try to open towards us is refused,
//!   except agent forwarding when the user asked for it (`-A`).

use crate::dial::{DialAnswer, dial_node_pipelined};
use crate::error::ClientError;
use crate::profile::Profile;
use crate::web::error_chain;
use futures::FutureExt;
use jumpgate_pki::ssh_key::{Certificate, Fingerprint, HashAlg, PrivateKey};
use russh::client::{self, ChannelOpenHandle, Handle, Msg, Session};
use russh::keys::{Algorithm, EcdsaCurve, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, ChannelOpenFailure, Disconnect, Sig};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long the SSH handshake and authentication may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the handler stopped the connection.
#[derive(Debug)]
enum HandlerError {
    Ssh(russh::Error),
    HostRejected(String),
}

impl From<russh::Error> for HandlerError {
    fn from(err: russh::Error) -> HandlerError {
        HandlerError::Ssh(err)
    }
}

/// russh's client callbacks: the host check, and the channels a node may open to us.
struct NodeHandler {
    trusted_host_cas: Vec<Fingerprint>,
    host_principal: HostPrincipal,
    agent_socket: Option<PathBuf>,
    /// What the node said when it closed the connection (a lock, an expired
    /// certificate, an idle timeout), for the user.
    disconnect_reason: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for NodeHandler {
    type Error = HandlerError;

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<HandlerError>,
    ) -> Result<(), HandlerError> {
        match reason {
            client::DisconnectReason::ReceivedDisconnect(info) => {
                if !info.message.is_empty() {
                    *self
                        .disconnect_reason
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(info.message);
                }
                Ok(())
            }
            client::DisconnectReason::Error(err) => Err(err),
        }
    }

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, HandlerError> {
        match server_key {
            PublicKeyOrCertificate::Certificate(cert) => {
                let principal = match &self.host_principal {
                    HostPrincipal::Named(principal) => principal.clone(),
                    // The answer line comes before the node's first byte, so it is in.
                    HostPrincipal::Dialled(answer) => match answer.connected() {
                        Some((node_uuid, _)) => node_uuid,
                        None => {
                            return Err(HandlerError::HostRejected(
                                "the proxy named no node to check its host certificate against"
                                    .to_string(),
                            ));
                        }
                    },
                };
                jumpgate_pki::verify_host_cert(
                    cert,
                    &self.trusted_host_cas,
                    &principal,
                    SystemTime::now(),
                )
                .map_err(|err| {
                    HandlerError::HostRejected(format!("its host certificate does not pass: {err}"))
                })?;
                Ok(true)
            }
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                Err(HandlerError::HostRejected(format!(
                    "it presented a plain host key ({}) instead of a host certificate of this cluster; \
                     a Jumpgate node always has one, so this may be a man in the middle",
                    key.fingerprint(HashAlg::Sha256)
                )))
            }
        }
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), HandlerError> {
        let Some(socket) = self.agent_socket.clone() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        match tokio::net::UnixStream::connect(&socket).await {
            Ok(mut agent) => {
                reply.accept().await;
                tokio::spawn(async move {
                    let mut stream = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut agent).await;
                });
            }
            Err(err) => {
                tracing::debug!(%err, socket = %socket.display(), "cannot reach the local SSH agent");
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
            }
        }
        Ok(())
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _connected_address: &str,
        _connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), HandlerError> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), HandlerError> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn server_channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), HandlerError> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), HandlerError> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn server_channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), HandlerError> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn server_channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), HandlerError> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }
}

/// How much of a session's output is gathered before it is written out (output is
/// also written whenever no more is queued): one write per SSH packet of 32 KiB would
/// cost a hand-off to tokio's blocking pool each.
const OUTPUT_BUFFER: usize = 256 * 1024;

/// The ciphers jsh offers, best first. AES-GCM leads (OpenSSH puts ChaCha20-Poly1305
/// first): with AES instructions, which every x86-64 and ARMv8 server CPU of the last
/// decade has, aws-lc's AES-256-GCM costs several times less CPU per byte than its
/// ChaCha20-Poly1305 (measured in `bench/src/bin/ssh.rs`, profiles in bench/HISTORY.md), and
/// bulk transfers through the proxy are CPU-bound.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];

/// The russh client configuration: host certificates only (Ed25519 and ECDSA P-256,
/// the kinds a cluster's host CA signs), [`CIPHERS`], keepalives so a dead path is
/// noticed.
fn ssh_config() -> client::Config {
    let mut config = client::Config {
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        ..client::Config::default()
    };
    config.preferred.host_key_certificates = Cow::Borrowed(&[
        Algorithm::Ed25519,
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
    ]);
    config.preferred.cipher = Cow::Borrowed(CIPHERS);
    config
}

/// An authenticated SSH connection to one node.
pub struct SshConnection {
    handle: Arc<Handle<NodeHandler>>,
    node: String,
    disconnect_reason: Arc<std::sync::Mutex<Option<String>>>,
}

impl std::fmt::Debug for SshConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshConnection")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// A PTY request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtyRequest {
    /// `TERM`.
    pub term: String,
    pub cols: u32,
    pub rows: u32,
}

/// What to run on the node.
#[derive(Debug, Clone, Default)]
pub struct SessionRequest {
    /// A command line (run by the login's shell); `None`: an interactive shell.
    pub command: Option<String>,
    pub pty: Option<PtyRequest>,
    /// Ask the node to forward the agent ([`connect`]'s `agent_socket` must be set).
    pub forward_agent: bool,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The remote command exited with this status.
    Exited(u32),
    /// The remote command was killed by a signal.
    Signalled {
        signal: String,
        core_dumped: bool,
        message: String,
    },
    /// The channel closed without an exit status.
    NoStatus,
}

impl SessionEnd {
    /// The exit status for the local process: the remote status, 128 + the signal
    /// number after a signal (as shells report it), 255 without a status (as `ssh`).
    pub fn exit_code(&self) -> i32 {
        match self {
            SessionEnd::Exited(status) => i32::try_from(*status & 0xff).unwrap_or(255),
            SessionEnd::Signalled { signal, .. } => 128 + signal_number(signal),
            SessionEnd::NoStatus => 255,
        }
    }
}

fn signal_name(signal: &Sig) -> String {
    match signal {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name.as_str(),
    }
    .to_string()
}

/// Linux signal numbers of the names SSH uses (RFC 4254 section 6.10).
fn signal_number(name: &str) -> i32 {
    match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 127,
    }
}

/// Where a session's bytes come from and go to.
pub struct SessionIo<I, O, E> {
    pub stdin: I,
    pub stdout: O,
    pub stderr: E,
    /// New terminal sizes (cols, rows) to pass on, e.g. from [`crate::terminal::resizes`].
    pub resizes: Option<mpsc::UnboundedReceiver<(u32, u32)>>,
    /// Put this before every output line (when running on several nodes at once); lines
    /// are then written whole.
    pub line_prefix: Option<String>,
}

impl<I, O, E> std::fmt::Debug for SessionIo<I, O, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionIo")
            .field("line_prefix", &self.line_prefix)
            .finish_non_exhaustive()
    }
}

/// A port forwarding `-L [ADDR:]PORT:HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    pub bind_addr: String,
    pub bind_port: u16,
    pub host: String,
    pub port: u16,
}

impl ForwardSpec {
    /// `[ADDR:]PORT:HOST:PORT`; IPv6 addresses in brackets. Without ADDR, 127.0.0.1.
    pub fn parse(text: &str) -> Result<ForwardSpec, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidArgument {
            what: "port forwarding",
            value: text.to_string(),
            reason: reason.to_string(),
        };
        let parts = split_colons(text).ok_or_else(|| invalid("unbalanced '[' ']'"))?;
        let port = |part: &str| {
            part.parse::<u16>()
                .map_err(|_| invalid("ports are numbers from 0 to 65535"))
        };
        let (bind_addr, bind_port, host, dest_port) = match parts.as_slice() {
            [bind_port, host, dest_port] => ("127.0.0.1", bind_port, host, dest_port),
            [bind_addr, bind_port, host, dest_port] => {
                let addr = if bind_addr.is_empty() || bind_addr == "*" {
                    "0.0.0.0"
                } else if bind_addr == "localhost" {
                    "127.0.0.1"
                } else {
                    bind_addr.as_str()
                };
                (addr, bind_port, host, dest_port)
            }
            _ => {
                return Err(invalid(
                    "expected [ADDR:]PORT:HOST:PORT, e.g. 8080:localhost:80",
                ));
            }
        };
        if host.is_empty() {
            return Err(invalid("the destination host is empty"));
        }
        Ok(ForwardSpec {
            bind_addr: bind_addr.to_string(),
            bind_port: port(bind_port)?,
            host: host.to_string(),
            port: port(dest_port)?,
        })
    }
}

/// Splits on ':' outside brackets, dropping the brackets.
fn split_colons(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut in_brackets = false;
    for c in text.chars() {
        match c {
            '[' if !in_brackets => in_brackets = true,
            ']' if in_brackets => in_brackets = false,
            ':' if !in_brackets => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if in_brackets {
        return None;
    }
    parts.push(current);
    Some(parts)
}

/// A running local port forwarding; stops when dropped.
#[derive(Debug)]
pub struct Forwarding {
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The principal a node's host certificate must carry.
enum HostPrincipal {
    Named(String),
    /// The node's UUID, from the proxy's answer to a pipelined dial.
    Dialled(Arc<DialAnswer>),
}

/// Dials `node` through the proxy and logs in as `login`. SSH starts without waiting for
/// the proxy's answer ([`dial_node_pipelined`]): one round trip to the node fewer.
pub async fn connect_node(
    profile: &Profile,
    node: &str,
    login: &str,
    agent_socket: Option<PathBuf>,
) -> Result<SshConnection, ClientError> {
    let dialled = dial_node_pipelined(profile, node, login).await?;
    let answer = Arc::clone(&dialled.answer);
    let connected = connect_as(
        profile_identity(profile)?,
        dialled.stream,
        HostPrincipal::Dialled(Arc::clone(&answer)),
        node,
        login,
        agent_socket,
    )
    .await;
    // A refusal, or an answer that made no sense, is what the user needs to hear, not
    // the SSH error it caused.
    if let Some(failure) = answer.take_failure() {
        return Err(failure);
    }
    let mut connection = connected?;
    if let Some((node_uuid, hostname)) = answer.connected() {
        connection.node = if hostname.is_empty() {
            node_uuid
        } else {
            hostname
        };
    }
    Ok(connection)
}

/// Runs SSH over any stream to an SSH server (e.g. an OpenSSH `sshd` with a host
/// certificate of the cluster): checks the host certificate, whose principals must
/// include `host_principal`, then logs in as `login` with the profile's certificate.
/// `node` names the server in messages; `agent_socket` (`SSH_AUTH_SOCK`) serves agent
/// forwarding if a session asks for it.
pub async fn connect_stream<S>(
    profile: &Profile,
    stream: S,
    host_principal: &str,
    node: &str,
    login: &str,
    agent_socket: Option<PathBuf>,
) -> Result<SshConnection, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    connect_stream_as(
        profile_identity(profile)?,
        stream,
        host_principal,
        node,
        login,
        agent_socket,
    )
    .await
}

/// The profile's SSH key, certificate and trusted host CAs.
fn profile_identity(profile: &Profile) -> Result<SshIdentity, ClientError> {
    let (key, cert) = profile.ssh_identity()?;
    Ok(SshIdentity {
        key,
        cert,
        trusted_host_cas: profile.host_ca_fingerprints()?,
        principals: profile.meta.principals.clone(),
    })
}

/// A user's SSH identity, from a profile on disk or (the web terminal) from a web
/// session: the key, its certificate, and the host CAs a node must be certified by.
pub struct SshIdentity {
    pub key: PrivateKey,
    pub cert: Certificate,
    /// SHA-256 fingerprints of the cluster's host CA keys.
    pub trusted_host_cas: Vec<Fingerprint>,
    /// The logins the certificate allows, for messages.
    pub principals: Vec<String>,
}

impl std::fmt::Debug for SshIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshIdentity")
            .field("key", &"[redacted]")
            .field("principals", &self.principals)
            .finish_non_exhaustive()
    }
}

impl SshIdentity {
    /// From OpenSSH texts: the private key, its certificate, and `known_hosts` lines with
    /// the cluster's host CAs (`@cert-authority`).
    pub fn from_openssh(
        key: &str,
        cert: &str,
        host_ca_known_hosts: &str,
        principals: Vec<String>,
    ) -> Result<SshIdentity, ClientError> {
        let bad = |what: &str, reason: String| ClientError::Ssh {
            node: String::new(),
            reason: format!("the session's {what}: {reason}"),
        };
        let key = PrivateKey::from_openssh(key).map_err(|err| bad("key", err.to_string()))?;
        let cert = Certificate::from_openssh(cert.trim())
            .map_err(|err| bad("certificate", err.to_string()))?;
        let trusted_host_cas = crate::profile::parse_host_ca_lines(host_ca_known_hosts)
            .map_err(|err| bad("host CAs", err.to_string()))?
            .iter()
            .map(|key| key.fingerprint(HashAlg::Sha256))
            .collect::<Vec<_>>();
        if trusted_host_cas.is_empty() {
            return Err(bad("host CAs", "none".to_string()));
        }
        Ok(SshIdentity {
            key,
            cert,
            trusted_host_cas,
            principals,
        })
    }
}

/// [`connect_stream`] with an [`SshIdentity`] held in memory.
pub async fn connect_stream_as<S>(
    identity: SshIdentity,
    stream: S,
    host_principal: &str,
    node: &str,
    login: &str,
    agent_socket: Option<PathBuf>,
) -> Result<SshConnection, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    connect_as(
        identity,
        stream,
        HostPrincipal::Named(host_principal.to_string()),
        node,
        login,
        agent_socket,
    )
    .await
}

async fn connect_as<S>(
    identity: SshIdentity,
    stream: S,
    host_principal: HostPrincipal,
    node: &str,
    login: &str,
    agent_socket: Option<PathBuf>,
) -> Result<SshConnection, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let node = node.to_string();
    let disconnect_reason = Arc::default();
    let SshIdentity {
        key,
        cert,
        trusted_host_cas,
        principals,
    } = identity;
    let handler = NodeHandler {
        trusted_host_cas,
        host_principal,
        agent_socket,
        disconnect_reason: Arc::clone(&disconnect_reason),
    };
    let ssh_error = |reason: String| ClientError::Ssh {
        node: node.clone(),
        reason,
    };
    let handshake = async {
        let mut handle = client::connect_stream(Arc::new(ssh_config()), stream, handler)
            .await
            .map_err(|err| match err {
                HandlerError::HostRejected(reason) => ClientError::HostRejected {
                    node: node.clone(),
                    reason,
                },
                HandlerError::Ssh(err) => ssh_error(error_chain(&err)),
            })?;
        let auth = handle
            .authenticate_openssh_cert(login, Arc::new(key), cert)
            .await
            .map_err(|err| ssh_error(error_chain(&err)))?;
        if !auth.success() {
            return Err(ClientError::SshAuthRefused {
                node: node.clone(),
                login: login.to_string(),
                logins: principals.join(", "),
            });
        }
        Ok(handle)
    };
    let handle = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| {
            ssh_error(format!(
                "no SSH handshake in {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ))
        })??;
    Ok(SshConnection {
        handle: Arc::new(handle),
        node,
        disconnect_reason,
    })
}

impl SshConnection {
    /// Why the node closed the connection, when it said (OpenSSH prints it too).
    pub fn disconnect_reason(&self) -> Option<String> {
        self.disconnect_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The node's host name (or UUID).
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    fn ssh_error(&self, err: &russh::Error) -> ClientError {
        ClientError::Ssh {
            node: self.node.clone(),
            reason: error_chain(err),
        }
    }

    /// Runs one session (a command or a shell) to its end, streaming `io.stdin` to it
    /// (EOF when it ends) and its output to `io.stdout` / `io.stderr`.
    pub async fn run<I, O, E>(
        &self,
        request: &SessionRequest,
        io: SessionIo<I, O, E>,
    ) -> Result<SessionEnd, ClientError>
    where
        I: AsyncRead + Unpin + Send + 'static,
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let SessionIo {
            mut stdin,
            stdout,
            mut stderr,
            mut resizes,
            line_prefix,
        } = io;
        let mut stdout = tokio::io::BufWriter::with_capacity(OUTPUT_BUFFER, stdout);
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|err| self.ssh_error(&err))?;
        let (mut read, write) = channel.split();
        let write = Arc::new(write);
        // Requests with a reply, in the order sent: replies come back in that order.
        let mut pending: VecDeque<&'static str> = VecDeque::new();
        if request.forward_agent {
            write
                .agent_forward(false)
                .await
                .map_err(|err| self.ssh_error(&err))?;
        }
        if let Some(pty) = &request.pty {
            write
                .request_pty(true, &pty.term, pty.cols, pty.rows, 0, 0, &[])
                .await
                .map_err(|err| self.ssh_error(&err))?;
            pending.push_back("a terminal (PTY)");
        }
        match &request.command {
            Some(command) => {
                write
                    .exec(true, command.as_bytes())
                    .await
                    .map_err(|err| self.ssh_error(&err))?;
                pending.push_back("the command");
            }
            None => {
                write
                    .request_shell(true)
                    .await
                    .map_err(|err| self.ssh_error(&err))?;
                pending.push_back("a shell");
            }
        }

        // Standard input in its own task, so that a full channel window never stops us
        // reading the node's output (which is what opens the window again).
        let input_channel = Arc::clone(&write);
        let input = tokio::spawn(async move {
            let mut writer = input_channel.make_writer();
            let _ = tokio::io::copy(&mut stdin, &mut writer).await;
            let _ = writer.flush().await;
            let _ = input_channel.eof().await;
        });
        let resize_channel = Arc::clone(&write);
        let resizer = resizes.take().map(|mut sizes| {
            tokio::spawn(async move {
                while let Some((cols, rows)) = sizes.recv().await {
                    if resize_channel
                        .window_change(cols, rows, 0, 0)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            })
        });

        let mut out_lines = line_prefix.clone().map(LineBuffer::new);
        let mut err_lines = line_prefix.map(LineBuffer::new);
        let mut end = SessionEnd::NoStatus;
        let outcome = loop {
            // Output is written without waiting for it to land, and flushed only when
            // no more is queued: a flush per message would stop reading from the node
            // until the local write finished, every 32 KiB.
            let message = match read.wait().now_or_never() {
                Some(message) => message,
                None => {
                    if let Err(err) = flush_both(&mut stdout, &mut stderr).await {
                        tracing::debug!(%err, "local output closed");
                        break Ok(());
                    }
                    read.wait().await
                }
            };
            let Some(message) = message else {
                break Ok(());
            };
            let written = match message {
                ChannelMsg::Data { data } => emit(&mut stdout, out_lines.as_mut(), &data).await,
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    emit(&mut stderr, err_lines.as_mut(), &data).await
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    end = SessionEnd::Exited(exit_status);
                    Ok(())
                }
                ChannelMsg::ExitSignal {
                    signal_name: signal,
                    core_dumped,
                    error_message,
                    ..
                } => {
                    end = SessionEnd::Signalled {
                        signal: signal_name(&signal),
                        core_dumped,
                        message: error_message,
                    };
                    Ok(())
                }
                ChannelMsg::Success => {
                    pending.pop_front();
                    Ok(())
                }
                ChannelMsg::Failure => match pending.pop_front() {
                    Some("a terminal (PTY)") => {
                        let note = format!(
                            "jsh: node {} refused a terminal (PTY); going on without one\r\n",
                            self.node
                        );
                        emit(&mut stderr, None, note.as_bytes()).await
                    }
                    Some(what) => {
                        break Err(ClientError::Refused {
                            node: self.node.clone(),
                            what: what.to_string(),
                        });
                    }
                    None => Ok(()),
                },
                ChannelMsg::Close => break Ok(()),
                _ => Ok(()),
            };
            if let Err(err) = written {
                // The local side is gone (say, `| head`): stop, as ssh does.
                tracing::debug!(%err, "local output closed");
                break Ok(());
            }
        };
        input.abort();
        if let Some(resizer) = resizer {
            resizer.abort();
        }
        if let Some(lines) = out_lines.as_mut() {
            let _ = stdout.write_all(&lines.finish()).await;
        }
        if let Some(lines) = err_lines.as_mut() {
            let _ = stderr.write_all(&lines.finish()).await;
        }
        let _ = flush_both(&mut stdout, &mut stderr).await;
        outcome.map(|()| end)
    }

    /// Opens a session channel for a caller that drives it itself: the `sftp` subsystem
    /// of file copy ([`crate::scp`]).
    pub async fn open_session_channel(&self) -> Result<Channel<Msg>, ClientError> {
        self.handle
            .channel_open_session()
            .await
            .map_err(|err| self.ssh_error(&err))
    }

    /// Listens on `spec`'s local address and forwards every connection to `spec`'s
    /// host and port as seen from the node (`direct-tcpip`).
    pub async fn forward_local(&self, spec: &ForwardSpec) -> Result<Forwarding, ClientError> {
        let listener = TcpListener::bind((spec.bind_addr.as_str(), spec.bind_port))
            .await
            .map_err(|err| ClientError::InvalidArgument {
                what: "port forwarding",
                value: format!("{}:{}", spec.bind_addr, spec.bind_port),
                reason: format!("cannot listen there: {err}"),
            })?;
        let local_addr = listener.local_addr().map_err(ClientError::io(
            "read the address of",
            "the forwarding listener",
        ))?;
        let handle = Arc::clone(&self.handle);
        let (host, port) = (spec.host.clone(), u32::from(spec.port));
        let node = self.node.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, peer)) = listener.accept().await else {
                    // Out of file descriptors and the like: back off, don't spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let handle = Arc::clone(&handle);
                let host = host.clone();
                let node = node.clone();
                tokio::spawn(async move {
                    match handle
                        .channel_open_direct_tcpip(
                            host.clone(),
                            port,
                            peer.ip().to_string(),
                            u32::from(peer.port()),
                        )
                        .await
                    {
                        Ok(channel) => {
                            let mut stream = channel.into_stream();
                            let _ = tokio::io::copy_bidirectional(&mut socket, &mut stream).await;
                        }
                        Err(err) => {
                            eprintln!(
                                "jsh: node {node} refused to forward to {host}:{port}: {}",
                                error_chain(&err)
                            );
                        }
                    }
                });
            }
        });
        Ok(Forwarding { local_addr, task })
    }

    /// Waits until the connection closes (for `-N`).
    pub async fn closed(&self) {
        while !self.handle.is_closed() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Says goodbye to the node.
    pub async fn disconnect(&self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

async fn flush_both<O: AsyncWrite + Unpin, E: AsyncWrite + Unpin>(
    stdout: &mut O,
    stderr: &mut E,
) -> std::io::Result<()> {
    stdout.flush().await?;
    stderr.flush().await
}

/// Writes a session's output (whole prefixed lines with `lines`); the caller flushes.
async fn emit<W: AsyncWrite + Unpin>(
    writer: &mut W,
    lines: Option<&mut LineBuffer>,
    data: &[u8],
) -> std::io::Result<()> {
    match lines {
        Some(lines) => writer.write_all(&lines.push(data)).await,
        None => writer.write_all(data).await,
    }
}

/// Collects output into whole lines, each with a prefix, so that the output of several
/// nodes interleaves by line and not mid-line.
#[derive(Debug)]
pub struct LineBuffer {
    prefix: String,
    partial: Vec<u8>,
}

impl LineBuffer {
    pub fn new(prefix: String) -> LineBuffer {
        LineBuffer {
            prefix,
            partial: Vec::new(),
        }
    }

    /// Takes `data`; returns the lines it completed, prefixed.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &byte in data {
            self.partial.push(byte);
            if byte == b'\n' {
                out.extend_from_slice(self.prefix.as_bytes());
                out.append(&mut self.partial);
            }
        }
        out
    }

    /// The unfinished last line, prefixed and ended.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.partial.is_empty() {
            return Vec::new();
        }
        let mut out = self.prefix.as_bytes().to_vec();
        out.append(&mut self.partial);
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_specs_parse() {
        assert_eq!(
            ForwardSpec::parse("8080:localhost:80").unwrap(),
            ForwardSpec {
                bind_addr: "127.0.0.1".to_string(),
                bind_port: 8080,
                host: "localhost".to_string(),
                port: 80,
            }
        );
        let spec = ForwardSpec::parse("[::1]:0:[fe80::1]:5432").unwrap();
        assert_eq!(
            (spec.bind_addr.as_str(), spec.host.as_str()),
            ("::1", "fe80::1")
        );
        assert_eq!(ForwardSpec::parse("*:1:h:2").unwrap().bind_addr, "0.0.0.0");
        for bad in [
            "80",
            "a:b:c",
            "1:h:99999",
            "1::2",
            "[::1:1:h:2",
            "1:2:3:4:5",
        ] {
            assert!(ForwardSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lines_are_prefixed_whole() {
        let mut lines = LineBuffer::new("[web-1] ".to_string());
        assert_eq!(lines.push(b"hel"), b"");
        assert_eq!(lines.push(b"lo\nwor"), b"[web-1] hello\n");
        assert_eq!(lines.push(b"ld\n\n"), b"[web-1] world\n[web-1] \n");
        assert_eq!(lines.push(b"end"), b"");
        assert_eq!(lines.finish(), b"[web-1] end\n");
        assert_eq!(lines.finish(), b"");
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(SessionEnd::Exited(3).exit_code(), 3);
        assert_eq!(SessionEnd::Exited(256).exit_code(), 0);
        assert_eq!(
            SessionEnd::Signalled {
                signal: "KILL".to_string(),
                core_dumped: false,
                message: String::new(),
            }
            .exit_code(),
            137
        );
        assert_eq!(SessionEnd::NoStatus.exit_code(), 255);
    }
}
