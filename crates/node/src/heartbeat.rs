//! The node's presence record: written to the auth service every [`HEARTBEAT_EVERY`]
//! with a TTL of three beats, so a host that goes away disappears from `jctl nodes ls`
//! by itself. It carries the static labels, the labels computed by commands, and which
//! proxies hold this host's reverse tunnels.

use crate::identity::HostIdentity;
use crate::{AgentError, IdentityError, Unreachable};
use jumpgate_api::{AuthClient, TlsCredentials, proto};
use jumpgate_types::config::CommandLabel;
use jumpgate_types::{NodePresence, NodeTunnel};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{debug, warn};

pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
const HEARTBEAT_TTL: Duration = Duration::from_secs(15);
/// How long a heartbeat waits after a tunnel change for others of the same moment.
const TUNNEL_CHANGE_SETTLE: Duration = Duration::from_millis(100);
/// Longest a label command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What the heartbeat reports, shared with the tunnel and label tasks.
#[derive(Debug, Default)]
pub struct NodeState {
    pub command_labels: BTreeMap<String, String>,
    /// Proxy identity name → Unix seconds since the tunnel is up.
    tunnels: BTreeMap<String, u64>,
    /// Wakes the heartbeat when the tunnels change: proxies forward users to the proxies a
    /// node's record names (proxy peering), so the record follows a moved tunnel at once,
    /// not a beat later.
    tunnels_changed: Arc<tokio::sync::Notify>,
    /// The IDs of the sessions in progress here, named in every heartbeat so that auth
    /// keeps them in its list of active sessions.
    pub sessions: Arc<jumpgate_api::live::LiveSet<String>>,
}

impl NodeState {
    /// A tunnel to `proxy` is up (now).
    pub fn tunnel_up(&mut self, proxy: &str) {
        self.tunnels.insert(proxy.to_string(), unix_now());
        self.tunnels_changed.notify_one();
    }

    /// The tunnel to `proxy` is down.
    pub fn tunnel_down(&mut self, proxy: &str) {
        if self.tunnels.remove(proxy).is_some() {
            self.tunnels_changed.notify_one();
        }
    }

    /// The proxies holding a tunnel now, with the Unix second each came up.
    pub fn tunnels(&self) -> &BTreeMap<String, u64> {
        &self.tunnels
    }
}

pub type SharedState = Arc<Mutex<NodeState>>;

pub(crate) fn lock(state: &SharedState) -> std::sync::MutexGuard<'_, NodeState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The record, as JSON.
pub fn document(
    identity: &HostIdentity,
    host_name: &str,
    labels: &BTreeMap<String, String>,
    state: &NodeState,
) -> String {
    let mut all_labels = labels.clone();
    all_labels.extend(state.command_labels.clone());
    NodePresence {
        uuid: identity.host_uuid.clone(),
        labels: all_labels,
        hostname: host_name.to_string(),
        tunnels: state
            .tunnels
            .iter()
            .map(|(proxy, since)| NodeTunnel {
                proxy: proxy.clone(),
                since_unix: *since,
            })
            .collect(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
    .to_json()
}

/// A client of the auth API with the node's identity, through `server` (the proxy
/// passes it through, or an auth server directly).
pub async fn auth_client(server: &str, identity: &HostIdentity) -> Result<AuthClient, AgentError> {
    auth_client_from(server, jumpgate_api::DialOptions::default(), identity).await
}

/// [`auth_client`], dialling as `dial` says (a load tool simulating many hosts on one
/// machine gives each its own loopback address).
pub async fn auth_client_from(
    server: &str,
    dial: jumpgate_api::DialOptions,
    identity: &HostIdentity,
) -> Result<AuthClient, AgentError> {
    let tls = identity_tls(identity).map_err(IdentityError::Credentials)?;
    jumpgate_api::connect_from(server, tls, dial)
        .await
        .map_err(|err| AgentError::Unreachable(Unreachable::Connect(err)))
}

/// [`auth_client_from`] for the auth API mirrors, which take the API's own error.
pub(crate) async fn auth_api(
    server: &str,
    dial: jumpgate_api::DialOptions,
    identity: &HostIdentity,
) -> Result<AuthClient, jumpgate_api::ApiError> {
    jumpgate_api::connect_from(server, identity_tls(identity)?, dial).await
}

fn identity_tls(
    identity: &HostIdentity,
) -> Result<std::sync::Arc<rustls::ClientConfig>, jumpgate_api::ApiError> {
    TlsCredentials::from_pem(
        &identity.tls_cert_pem,
        &identity.tls_key_pem,
        &identity.tls_ca_pem,
    )?
    .client_config()
}

/// Sends heartbeats until `stop` resolves, reconnecting when the auth API goes away.
pub async fn run(
    server: String,
    dial: jumpgate_api::DialOptions,
    mut identity: tokio::sync::watch::Receiver<HostIdentity>,
    host_name: String,
    labels: BTreeMap<String, String>,
    state: SharedState,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut client: Option<AuthClient> = None;
    let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let tunnels_changed = lock(&state).tunnels_changed.clone();
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = beat.tick() => {}
            () = tunnels_changed.notified() => {
                // Let the other slots' changes of the same moment join this beat.
                tokio::time::sleep(TUNNEL_CHANGE_SETTLE).await;
                beat.reset();
            }
        }
        if identity.has_changed().unwrap_or(false) {
            // Renewed: reconnect with the new certificate.
            identity.borrow_and_update();
            client = None;
        }
        let current = identity.borrow().clone();
        if client.is_none() {
            match auth_client_from(&server, dial, &current).await {
                Ok(connected) => client = Some(connected),
                Err(err) => {
                    warn!(%err, "cannot reach the auth service for heartbeats; retrying");
                    continue;
                }
            }
        }
        let (document, live_sessions) = {
            let state = lock(&state);
            (
                document(&current, &host_name, &labels, &state),
                state.sessions.infos(),
            )
        };
        if let Some(connected) = client.as_mut() {
            let sent = connected
                .heartbeat(proto::HeartbeatRequest {
                    document,
                    ttl_seconds: i64::try_from(HEARTBEAT_TTL.as_secs()).unwrap_or(15),
                    live_sessions,
                })
                .await;
            match sent {
                Ok(_) => debug!("heartbeat sent"),
                Err(status) => {
                    warn!(error = %status.message(), "heartbeat failed");
                    if status.code() == tonic::Code::Unavailable {
                        client = None;
                    }
                }
            }
        }
    }
}

/// Runs a label command every `label.period` until `stop` resolves.
pub async fn run_command_label(
    label: CommandLabel,
    state: SharedState,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let Some((program, args)) = label.command.split_first() else {
        return;
    };
    loop {
        let run = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let value = match tokio::time::timeout(COMMAND_TIMEOUT, run).await {
            Ok(Ok(out)) if out.status.success() => {
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            }
            Ok(Ok(out)) => {
                warn!(label = %label.name, status = %out.status, "label command failed");
                String::new()
            }
            Ok(Err(err)) => {
                warn!(label = %label.name, %err, "cannot run label command");
                String::new()
            }
            Err(_) => {
                warn!(label = %label.name, "label command timed out");
                String::new()
            }
        };
        lock(&state)
            .command_labels
            .insert(label.name.clone(), value);
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(label.period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_record_carries_static_and_command_labels_and_the_tunnels() {
        let identity = HostIdentity {
            cluster: "c".to_string(),
            host_uuid: "5b0c".to_string(),
            tls_cert_pem: String::new(),
            tls_key_pem: String::new(),
            tls_ca_pem: String::new(),
            ssh_host_key: String::new(),
            ssh_host_cert: String::new(),
            user_ca_keys: String::new(),
            host_ca_known_hosts: String::new(),
        };
        let labels = BTreeMap::from([
            ("env".to_string(), "prod".to_string()),
            ("arch".to_string(), "static".to_string()),
        ]);
        let state = NodeState {
            // A command label wins over a static one of the same name.
            command_labels: BTreeMap::from([("arch".to_string(), "x86_64".to_string())]),
            tunnels: BTreeMap::from([("p1".to_string(), 7)]),
            ..NodeState::default()
        };
        let record =
            NodePresence::from_json("test", &document(&identity, "web-1", &labels, &state))
                .unwrap();
        assert_eq!(record.uuid, "5b0c");
        assert_eq!(record.hostname, "web-1");
        assert_eq!(
            record.labels,
            BTreeMap::from([
                ("arch".to_string(), "x86_64".to_string()),
                ("env".to_string(), "prod".to_string()),
            ])
        );
        assert_eq!(
            record.tunnels,
            [NodeTunnel {
                proxy: "p1".to_string(),
                since_unix: 7
            }]
        );
        assert_eq!(record.version, env!("CARGO_PKG_VERSION"));
    }
}
