//! The Jumpgate agent (`crates/node`), used by every service that is not auth:
//!
//! - [`join`]: the first start joins with a token and the cluster's `ca_pin`, through the
//!   proxy's public port (or an auth server); [`identity`] keeps what it got in the data
//!   directory, so later starts need no token.
//! - [`tunnel`]: a reverse tunnel to the proxy, which opens streams to the agent through
//!   it (hosts behind NAT need no inbound port).
//! - [`heartbeat`]: the node's presence record with its labels and tunnels.
//! - [`service`]: the agent's lifecycle in the daemon: settings from the config, join, run.
//! - [`ssh`]: the SSH service, for the connections the proxy opens through the tunnel.
#![forbid(unsafe_code)]

pub mod heartbeat;
pub mod identity;
pub mod join;
pub mod renew;
pub mod service;
pub mod ssh;
pub mod tunnel;

pub use heartbeat::{NodeState, SharedState};
pub use identity::HostIdentity;
/// The config's command labels, as the agent runs them.
pub use jumpgate_types::config::CommandLabel;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Why the agent cannot run. [`AgentError::Unreachable`] is worth retrying (the cluster
/// may come back); the others need an operator. Each keeps the error underneath as its
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The config lacks what joining needs; the message says what to set.
    #[error("{0}")]
    Config(String),
    /// `jumpgate.ca_pin` is not a usable pin (ours: fix the config).
    #[error("jumpgate.ca_pin: {0}")]
    CaPin(#[source] jumpgate_api::ApiError),
    /// The cluster did not answer (the network, or the peer is down): try again later.
    #[error("cannot reach the cluster: {0}")]
    Unreachable(#[source] Unreachable),
    /// The cluster answered and refused (the peer's decision: a used or expired token, a
    /// CA that does not match the pin).
    #[error("the cluster refused to let this host join: {0}")]
    JoinRefused(#[source] JoinRefused),
    /// This host's own keys or stored identity are unusable (internal: files, key
    /// generation).
    #[error("host identity: {0}")]
    Identity(#[source] IdentityError),
}

/// Why the cluster could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    /// Dialling the auth API failed.
    #[error(transparent)]
    Connect(jumpgate_api::ApiError),
    /// The auth API failed a call as unavailable (or did not answer in time); the message
    /// is what it said.
    #[error("{}", .0.message())]
    Status(#[source] tonic::Status),
    /// The reverse tunnel to the proxy at `addr` could not be set up.
    #[error("{addr}: {failure}")]
    Tunnel {
        addr: String,
        #[source]
        failure: TunnelFailure,
    },
}

/// Which step of setting up a reverse tunnel failed.
#[derive(Debug, thiserror::Error)]
pub enum TunnelFailure {
    /// The TCP connection was not answered in time.
    #[error("no answer")]
    DialTimeout,
    /// The TCP connection failed.
    #[error("{0}")]
    Dial(#[source] std::io::Error),
    /// The TLS handshake was not finished in time.
    #[error("TLS handshake timed out")]
    TlsTimeout,
    /// The TLS handshake failed (the proxy's certificate, or the connection).
    #[error("TLS: {0}")]
    Tls(#[source] std::io::Error),
    /// The peer's certificate is not a proxy's of this host's cluster.
    #[error("the peer is not a proxy of this cluster")]
    NotAProxy,
    /// The HTTP/2 handshake over the tunnel failed.
    #[error("HTTP/2: {0}")]
    Http2(#[source] h2::Error),
}

/// Why the cluster refused this host.
#[derive(Debug, thiserror::Error)]
pub enum JoinRefused {
    /// Auth refused the call; the message is what it said (a bad token, a name it
    /// reserves).
    #[error("{}", .0.message())]
    Status(#[source] tonic::Status),
    /// The cluster's answer carries no CA matching `jumpgate.ca_pin`.
    #[error("the cluster's answer carries no CA matching jumpgate.ca_pin")]
    UnpinnedCa,
}

/// Why this host's identity (its keys, its stored certificates) is unusable.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The stored TLS certificate, key or CAs do not make a TLS configuration.
    #[error("{0}")]
    Credentials(#[source] jumpgate_api::ApiError),
    /// Making a new key failed (the crypto library).
    #[error("{0}")]
    Keys(#[source] jumpgate_pki::PkiError),
    /// The name the tunnel checks in the proxy's certificate is not a DNS name (a bug).
    #[error("{0}")]
    ServerName(#[source] rustls::pki_types::InvalidDnsNameError),
    /// Writing the identity failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of the stored identity cannot be read.
    #[error(
        "{}: {source}; the stored identity is incomplete: remove {} and join again with a \
         new token",
        path.display(),
        dir.display()
    )]
    Incomplete {
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<IdentityError> for AgentError {
    fn from(err: IdentityError) -> Self {
        AgentError::Identity(err)
    }
}

/// What the agent needs.
#[derive(Clone)]
pub struct AgentConfig {
    pub data_dir: PathBuf,
    /// `proxy_server` (public port: joins, heartbeats and tunnels) or, when `tunnel` is
    /// false, an auth server.
    pub server: String,
    pub tunnel: bool,
    /// For the first join only.
    pub token: Option<String>,
    pub ca_pins: Vec<String>,
    pub host_uuid: String,
    pub host_name: String,
    pub labels: BTreeMap<String, String>,
    pub commands: Vec<CommandLabel>,
    /// `ssh_service.listen_addr`: also serve SSH on this address (direct dial), besides
    /// the reverse tunnel.
    pub listen_addr: Option<String>,
    /// The SSH algorithms to offer (`jumpgate.kex_algos`, `ciphers`, `mac_algos`).
    pub ssh_algorithms: jumpgate_types::config::SshAlgorithms,
    /// How every connection to `server` is dialled (the all-in-one daemon's agent sends
    /// its own proxy a `LOCAL` PROXY header when that proxy has `proxy_protocol: on`).
    pub dial: jumpgate_api::DialOptions,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("server", &self.server)
            .field("tunnel", &self.tunnel)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("host_uuid", &self.host_uuid)
            .finish_non_exhaustive()
    }
}

impl AgentConfig {
    /// What joining as a node takes (the token goes to [`load_or_join`] separately).
    pub fn join_spec(&self) -> join::JoinSpec<'_> {
        join::JoinSpec {
            server: &self.server,
            token: "",
            ca_pins: &self.ca_pins,
            host_uuid: &self.host_uuid,
            host_name: &self.host_name,
            role: "node",
            addresses: &[],
            dial: self.dial,
        }
    }
}

/// The identity stored in `data_dir`, or a new one from joining with `token` (stored
/// before it is returned). `params.token` is ignored; `token` is used only when there is
/// nothing stored, and its absence then is an error saying what to configure.
pub async fn load_or_join(
    data_dir: &std::path::Path,
    token: Option<&str>,
    params: join::JoinSpec<'_>,
) -> Result<HostIdentity, AgentError> {
    if let Some(stored) = HostIdentity::load(data_dir)? {
        // Auth decides the UUID at join (another host may have held the one asked
        // for): the stored identity's UUID is this host's.
        info!(
            cluster = %stored.cluster,
            host_uuid = %stored.host_uuid,
            "using the stored host identity"
        );
        return Ok(stored);
    }
    let Some(token) = token else {
        return Err(AgentError::Config(format!(
            "this host has not joined a cluster yet: set jumpgate.auth_token (or join_params) \
             to a token from `jctl tokens add --type {}`, and jumpgate.ca_pin",
            params.role
        )));
    };
    let joined = join::join(join::JoinSpec { token, ..params }).await?;
    joined.save(data_dir)?;
    info!(cluster = %joined.cluster, role = params.role, "joined the cluster; identity stored");
    Ok(joined)
}

/// Connects to the auth API (through `server`, dialling as `dial` says) with the identity
/// of the moment.
///
/// Every caller shares one connection per identity: the caches, the audit events and the
/// recording uploads are streams multiplexed over one HTTP/2 connection (a tonic channel,
/// which dials again by itself when the connection breaks), not a connection each, so
/// auth holds one socket per node rather than five. A renewed identity gets a new one.
pub fn auth_connector_from(
    server: String,
    dial: jumpgate_api::DialOptions,
    identity: watch::Receiver<HostIdentity>,
) -> jumpgate_api::mirror::Connect {
    let shared: Arc<tokio::sync::Mutex<Option<(String, jumpgate_api::AuthClient)>>> =
        Arc::default();
    Arc::new(move || {
        let server = server.clone();
        let identity = identity.borrow().clone();
        let shared = shared.clone();
        Box::pin(async move {
            let mut shared = shared.lock().await;
            if let Some((cert, client)) = shared.as_ref()
                && *cert == identity.tls_cert_pem
            {
                return Ok(client.clone());
            }
            let client = heartbeat::auth_api(&server, dial, &identity).await?;
            *shared = Some((identity.tls_cert_pem.clone(), client.clone()));
            Ok(client)
        })
    })
}

/// The agent's copies of the cluster state its SSH service checks logins against, each
/// kept current from the auth API ([`jumpgate_api::mirror::Mirror`]).
#[derive(Debug, Clone)]
pub struct Caches {
    pub roles: Arc<jumpgate_api::mirror::Mirror<jumpgate_types::Role>>,
    pub users: Arc<jumpgate_api::mirror::Mirror<jumpgate_types::UserView>>,
    pub locks: Arc<jumpgate_api::mirror::Mirror<jumpgate_types::Lock>>,
}

impl Caches {
    /// Starts the agent's caches, each until its `stop()` resolves: what [`run`] starts.
    ///
    /// `identity` is the agent's identity of the moment: when it is renewed, the caches
    /// watch again with the new one (which `connect` dials with).
    pub fn spawn<S>(
        connect: &jumpgate_api::mirror::Connect,
        identity: &watch::Receiver<HostIdentity>,
        stop: impl Fn() -> S,
    ) -> Caches
    where
        S: std::future::Future<Output = ()> + Send + 'static,
    {
        let roles = jumpgate_api::mirror::Mirror::spawn(
            "role",
            connect.clone(),
            |document| jumpgate_types::Role::from_json("auth:role", document),
            identity.clone(),
            stop(),
        );
        let users = jumpgate_api::mirror::Mirror::spawn(
            "user",
            connect.clone(),
            jumpgate_types::UserView::from_json,
            identity.clone(),
            stop(),
        );
        let locks = jumpgate_api::mirror::Mirror::spawn(
            "lock",
            connect.clone(),
            |document| jumpgate_types::Lock::from_json("auth:lock", document),
            identity.clone(),
            stop(),
        );
        Caches {
            roles,
            users,
            locks,
        }
    }

    /// Whether every cache has received its first copy.
    pub fn loaded(&self) -> bool {
        *self.roles.changes().borrow() > 0
            && *self.users.changes().borrow() > 0
            && *self.locks.changes().borrow() > 0
    }
}

/// Runs the agent's background work (heartbeats, label commands, the tunnel) with
/// `identity` until `shutdown` is cancelled.
pub async fn run(config: AgentConfig, identity: HostIdentity, shutdown: CancellationToken) {
    let state: SharedState = Arc::new(Mutex::new(NodeState::default()));
    let stop = || shutdown.clone().cancelled_owned();
    let mut tasks = Vec::new();
    for label in config.commands.clone() {
        tasks.push(tokio::spawn(heartbeat::run_command_label(
            label,
            state.clone(),
            stop(),
        )));
    }
    let (identity_tx, identity_rx) = watch::channel(identity);
    let connect = auth_connector_from(config.server.clone(), config.dial, identity_rx.clone());
    let events = ssh::events::EventSink::default();
    tasks.push(tokio::spawn(events.clone().run(connect.clone(), stop())));
    let Caches {
        roles,
        users,
        locks,
    } = Caches::spawn(&connect, &identity_rx, stop);
    let recordings = ssh::recording::Recordings::new(&config.data_dir, false);
    tasks.push(tokio::spawn(
        recordings.clone().upload(connect.clone(), stop()),
    ));
    let labels_state = state.clone();
    let static_labels = config.labels.clone();
    let ssh = Arc::new(ssh::SshService {
        host_name: config.host_name.clone(),
        identity: identity_rx.clone(),
        labels: Arc::new(move || {
            let mut labels = static_labels.clone();
            labels.extend(heartbeat::lock(&labels_state).command_labels.clone());
            labels
        }),
        roles,
        users,
        locks,
        live: Arc::default(),
        sessions: heartbeat::lock(&state).sessions.clone(),
        events,
        recordings,
        unauthenticated: Arc::new(tokio::sync::Semaphore::new(ssh::MAX_UNAUTHENTICATED)),
        preferred: ssh::preferred_algorithms(&config.ssh_algorithms),
        refusal_budget: std::sync::Mutex::default(),
    });
    tasks.push(tokio::spawn(ssh.clone().enforce_locks(stop())));
    if let Some(addr) = config.listen_addr.clone() {
        tasks.push(tokio::spawn(ssh::listen(ssh.clone(), addr, stop())));
    }
    if config.tunnel {
        tasks.push(tokio::spawn(tunnel::run_from(
            config.server.clone(),
            config.dial,
            identity_rx.clone(),
            state.clone(),
            Some(ssh.clone()),
            stop(),
        )));
    }
    tasks.push(tokio::spawn(renew::run(
        config.server.clone(),
        config.dial,
        identity_tx,
        config.data_dir.clone(),
        config.host_name.clone(),
        Vec::new(),
        stop(),
    )));
    tasks.push(tokio::spawn(heartbeat::run(
        config.server.clone(),
        config.dial,
        identity_rx,
        config.host_name.clone(),
        config.labels.clone(),
        state,
        stop(),
    )));
    // At shutdown, a call in flight to an auth service that is stopping too must not
    // hold the daemon: what has not ended a moment after the signal is aborted.
    let aborts: Vec<_> = tasks
        .iter()
        .map(tokio::task::JoinHandle::abort_handle)
        .collect();
    let all = async {
        for task in tasks {
            let _ = task.await;
        }
    };
    let grace = async {
        stop().await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    tokio::select! {
        () = all => {}
        () = grace => aborts.iter().for_each(tokio::task::AbortHandle::abort),
    }
}

/// How long the agent's tasks may take to end after the shutdown signal.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(3);
