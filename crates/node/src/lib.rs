//! The Jumpgate agent (`crates/node`), used by every service that is not auth:
//!
//! - [`join`]: the first start joins with a token and the cluster's `ca_pin`, through the
//!   proxy's public port (or an auth server); [`identity`] keeps what it got in the data
//!   directory, so later starts need no token.
//! - [`tunnel`]: a reverse tunnel to the proxy, which opens streams to the agent through
//!   it (hosts behind NAT need no inbound port).
//! - [`heartbeat`]: the node's presence record with its labels and tunnels.
//! - [`ssh`]: the SSH service, for the connections the proxy opens through the tunnel.
#![forbid(unsafe_code)]

pub mod heartbeat;
pub mod identity;
pub mod join;
pub mod renew;
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
use tracing::info;

/// Why the agent cannot run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(String),
    #[error("cannot reach the cluster: {0}")]
    Unreachable(String),
    #[error("the cluster refused to let this host join: {0}")]
    JoinRefused(String),
    #[error("host identity: {0}")]
    Identity(String),
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
    pub fn join_params(&self) -> join::JoinParams<'_> {
        join::JoinParams {
            server: &self.server,
            token: "",
            ca_pins: &self.ca_pins,
            host_uuid: &self.host_uuid,
            host_name: &self.host_name,
            role: "node",
            addresses: &[],
            local_ip: None,
        }
    }
}

/// The identity stored in `data_dir`, or a new one from joining with `token` (stored
/// before it is returned). `params.token` is ignored; `token` is used only when there is
/// nothing stored, and its absence then is an error saying what to configure.
pub async fn load_or_join(
    data_dir: &std::path::Path,
    token: Option<&str>,
    params: join::JoinParams<'_>,
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
    let joined = join::join(join::JoinParams { token, ..params }).await?;
    joined.save(data_dir)?;
    info!(cluster = %joined.cluster, role = params.role, "joined the cluster; identity stored");
    Ok(joined)
}

/// Connects to the auth API (through `server`) with the identity of the moment.
fn auth_connector(
    server: String,
    identity: watch::Receiver<HostIdentity>,
) -> jumpgate_api::mirror::Connect {
    auth_connector_from(server, None, identity)
}

/// [`auth_connector`], dialling from the source address `local_ip` (any port) when given:
/// a load tool simulating many hosts on one machine gives each its own loopback address.
pub fn auth_connector_from(
    server: String,
    local_ip: Option<std::net::IpAddr>,
    identity: watch::Receiver<HostIdentity>,
) -> jumpgate_api::mirror::Connect {
    Arc::new(move || {
        let server = server.clone();
        let identity = identity.borrow().clone();
        Box::pin(async move {
            heartbeat::auth_client_from(&server, local_ip, &identity)
                .await
                .map_err(|err| err.to_string())
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
    pub fn spawn<S>(connect: &jumpgate_api::mirror::Connect, stop: impl Fn() -> S) -> Caches
    where
        S: std::future::Future<Output = ()> + Send + 'static,
    {
        let roles = jumpgate_api::mirror::Mirror::spawn(
            "role",
            connect.clone(),
            |document| {
                jumpgate_types::Role::from_json("auth:role", document).map_err(|e| e.to_string())
            },
            stop(),
        );
        let users = jumpgate_api::mirror::Mirror::spawn(
            "user",
            connect.clone(),
            jumpgate_types::UserView::from_json,
            stop(),
        );
        let locks = jumpgate_api::mirror::Mirror::spawn(
            "lock",
            connect.clone(),
            |document| {
                jumpgate_types::Lock::from_json("auth:lock", document).map_err(|e| e.to_string())
            },
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
/// `identity` until `shutdown` turns true.
pub async fn run(config: AgentConfig, identity: HostIdentity, shutdown: watch::Receiver<bool>) {
    let state: SharedState = Arc::new(Mutex::new(NodeState::default()));
    let stop = || {
        let mut shutdown = shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        }
    };
    let mut tasks = Vec::new();
    for label in config.commands.clone() {
        tasks.push(tokio::spawn(heartbeat::run_command_label(
            label,
            state.clone(),
            stop(),
        )));
    }
    let (identity_tx, identity_rx) = watch::channel(identity);
    let connect = auth_connector(config.server.clone(), identity_rx.clone());
    let events = ssh::events::EventSink::default();
    tasks.push(tokio::spawn(events.clone().run(connect.clone(), stop())));
    let Caches {
        roles,
        users,
        locks,
    } = Caches::spawn(&connect, stop);
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
        tasks.push(tokio::spawn(tunnel::run(
            config.server.clone(),
            identity_rx.clone(),
            state.clone(),
            Some(ssh.clone()),
            stop(),
        )));
    }
    tasks.push(tokio::spawn(renew::run(
        config.server.clone(),
        identity_tx,
        config.data_dir.clone(),
        config.host_name.clone(),
        Vec::new(),
        stop(),
    )));
    tasks.push(tokio::spawn(heartbeat::run(
        config.server.clone(),
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
