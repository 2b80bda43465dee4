//! What can go wrong on the client side, each error saying what to do about it.

use jumpgate_api::ssh_route::DialErrorCode;
use std::path::PathBuf;

/// Every error of the client library. The messages are written for the person at the
/// terminal: they name what failed and the next step (`jsh login`, `--ca-cert`, ...).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A single sign-on login could not go on (no such connector, the browser never came
    /// back, the identity provider refused).
    #[error("single sign-on: {0}")]
    Sso(String),
    /// Neither `JUMPGATE_HOME` nor `HOME` is set.
    #[error("cannot find the profile directory: set JUMPGATE_HOME (or HOME)")]
    NoHome,
    /// No profile (or no keys) in the profile directory.
    #[error("not logged in (no profile in {home}): run `jsh login --proxy HOST:PORT`")]
    NotLoggedIn { home: PathBuf },
    /// The profile's certificates are past their expiry.
    #[error(
        "the certificates of {user}@{proxy} expired at {expired}: log in again with `jsh login --proxy {proxy}`"
    )]
    Expired {
        user: String,
        proxy: String,
        expired: String,
    },
    /// A profile file exists but cannot be used.
    #[error("the profile file {path} is unusable ({reason}): run `jsh login` again")]
    BadProfile { path: PathBuf, reason: String },
    /// Reading or writing a local file failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `--proxy` address (or a port forwarding spec) that does not parse.
    #[error("{what} {value:?} is not valid: {reason}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// The TCP connection to the proxy failed.
    #[error(
        "cannot connect to the proxy at {addr}: {reason}; check --proxy and that the proxy runs"
    )]
    Connect { addr: String, reason: String },
    /// The TLS handshake with the proxy failed.
    #[error(
        "TLS with the proxy at {addr} failed: {reason}. If the proxy's web certificate is from a private CA, pass --ca-cert FILE (or --insecure for a throwaway test cluster)"
    )]
    WebTls { addr: String, reason: String },
    /// The TLS handshake with the proxy's cluster-internal side failed (mutual TLS with
    /// the user's certificate).
    #[error(
        "mutual TLS with the proxy at {addr} failed: {reason}. If your certificate expired or the cluster's CA was rotated, log in again with `jsh login`"
    )]
    ClusterTls { addr: String, reason: String },
    /// The web API answered with an error (`{"error":{"code","message"}}`).
    #[error("{message} (the proxy answered {status}, {code})")]
    Web {
        status: u16,
        code: String,
        message: String,
    },
    /// The proxy sent something that is not what its API promises.
    #[error("the proxy sent an unusable {what}: {reason}")]
    BadResponse { what: &'static str, reason: String },
    /// Making keys failed (the crypto library).
    #[error("cannot make keys: {0}")]
    Keys(#[from] jumpgate_pki::PkiError),
    /// The profile's TLS certificate, key or CA file is unusable.
    #[error("the profile's TLS credentials are unusable ({0}): run `jsh login` again")]
    Credentials(#[from] jumpgate_api::ApiError),
    /// The auth service (through the proxy) refused a call or could not be reached.
    #[error("the auth service refused: {message} ({code})")]
    Auth { code: String, message: String },
    /// The proxy refused to connect us to a node.
    #[error("{}", dial_message(*.code, .message))]
    DialRefused {
        code: DialErrorCode,
        message: String,
    },
    /// The proxy's answer to a dial request did not make sense.
    #[error("the proxy's answer to the connection request is unusable: {0}")]
    DialProtocol(String),
    /// The node's SSH host certificate did not pass the check.
    #[error("refusing node {node}: {reason}")]
    HostRejected { node: String, reason: String },
    /// The node did not accept the user's certificate for the login.
    #[error(
        "node {node} refused login {login:?} with your certificate: your roles may not allow that login there (your logins: {logins}); `jsh status` shows them"
    )]
    SshAuthRefused {
        node: String,
        login: String,
        logins: String,
    },
    /// The SSH connection failed.
    #[error("SSH with node {node} failed: {reason}")]
    Ssh { node: String, reason: String },
    /// The node refused a channel request (PTY, shell, command, forwarding).
    #[error("node {node} refused {what}")]
    Refused { node: String, what: String },
    /// Local terminal handling failed.
    #[error("terminal: {0}")]
    Terminal(std::io::Error),
    /// Reading a password or code from the terminal failed, or there is no terminal.
    #[error("{0}")]
    Prompt(String),
}

fn dial_message(code: DialErrorCode, message: &str) -> String {
    match code {
        // The proxy's own message says where to look already; an older proxy's may not.
        DialErrorCode::NotFound if message.contains("jsh ls") => format!("unknown node: {message}"),
        DialErrorCode::NotFound => {
            format!("unknown node: {message} (`jsh ls` lists the nodes you can reach)")
        }
        DialErrorCode::AccessDenied => format!("access denied: {message}"),
        DialErrorCode::Offline => format!("node offline: {message}"),
        DialErrorCode::BadRequest => format!("the proxy refused the request: {message}"),
    }
}

impl ClientError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ClientError {
        let path = path.into();
        move |source| ClientError::Io {
            action,
            path,
            source,
        }
    }
}
