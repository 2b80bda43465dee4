//! The agent's end of a reverse tunnel (see `jumpgate_api::tunnel` for the protocol):
//! dial the proxy, serve the HTTP/2 streams it opens, send PINGs, and reconnect with
//! jittered exponential backoff when the tunnel drops, so a restarted proxy is not hit
//! by every agent at the same instant.

use crate::heartbeat::{SharedState, lock};
use crate::identity::HostIdentity;
use crate::ssh::SshService;
use crate::{AgentError, IdentityError, TunnelFailure, Unreachable};
use bytes::Bytes;
use jumpgate_api::TlsCredentials;
use jumpgate_api::ssh_route::{HEADER_CLIENT_ADDR, TARGET_SSH};
use jumpgate_api::tunnel::{
    ALPN_REVERSE_TUNNEL, CONNECTION_WINDOW, Discovery, H2Stream, MAX_DISCOVERY_LEN, MAX_FRAME_SIZE,
    PROXY_SERVER_NAME, STREAM_WINDOW, TARGET_DISCOVERY, TARGET_PING, heartbeat,
};
use jumpgate_pki::TlsIdentity;
use jumpgate_types::config::TunnelStrategy;
use rand::RngExt;
use rustls::pki_types::ServerName;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tracing::{Instrument, debug, info, warn};

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Dials in a row that may land on a proxy already held before the backoff grows (see
/// [`Landings`]). With two proxies left, one agent in 2^k lands k times in a row, so
/// among the n agents that lost a tunnel at once the longest run is about log2(n): 12
/// keeps a few thousand agents out of the growing backoff, and a load balancer that pins
/// an agent to one proxy costs 12 handshakes (about 3 s) before it backs off.
const LANDINGS_BEFORE_BACKOFF: u32 = 12;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often surplus slots are looked for besides discovery changes.
const SURPLUS_CHECK_EVERY: Duration = Duration::from_secs(2);

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
        jitter(ceiling)
    }

    pub fn reset(&mut self) {
        self.ceiling = FIRST_RETRY;
    }
}

/// The wait after a dial that landed on a proxy this agent already holds. That is no
/// failure: behind a round-robin load balancer with two proxies left, half the dials of an
/// agent that holds one land on it. Growing the backoff for it, as for a failure, made the
/// unlucky few of a thousand agents wait tens of seconds for their second tunnel after a
/// proxy died (2^-k of them land k times in a row; by the ninth landing the waits add up to
/// a minute). So the first [`LANDINGS_BEFORE_BACKOFF`] in a row wait a jittered pause of
/// at most [`FIRST_RETRY`] and leave the backoff as it is; past that (a load balancer that
/// pins an agent to one proxy, `balance source`) the backoff grows as for a failure, so
/// such an agent does not dial several times a second for ever.
#[derive(Debug, Default)]
struct Landings {
    in_a_row: u32,
}

impl Landings {
    fn next_delay(&mut self, backoff: &mut Backoff) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        if self.in_a_row <= LANDINGS_BEFORE_BACKOFF {
            jitter(FIRST_RETRY)
        } else {
            backoff.next_delay()
        }
    }

    /// A dial reached a proxy not held: the next landing starts a new run.
    fn reset(&mut self) {
        self.in_a_row = 0;
    }
}

/// Keeps tunnels to distinct proxies through `proxy_addr` (usually a load balancer in
/// front of every proxy) until `stop` resolves: as many as the proxies' [`Discovery`]
/// asks for (one to every proxy with `agent_mesh`, `agent_connection_count` with
/// `proxy_peering`), at least one. A dial that lands on a proxy already held is closed
/// and retried after a jittered pause, so the load balancer spreads the next one.
pub async fn run(
    proxy_addr: String,
    identity: watch::Receiver<HostIdentity>,
    state: SharedState,
    ssh: Option<Arc<SshService>>,
    stop: impl std::future::Future<Output = ()>,
) {
    run_from(
        proxy_addr,
        jumpgate_api::DialOptions::default(),
        identity,
        state,
        ssh,
        stop,
    )
    .await;
}

/// [`run`], dialling as `dial` says (a load tool simulating many hosts on one machine
/// gives each its own loopback address; the agent of an all-in-one daemon sends its own
/// proxy a `LOCAL` PROXY header).
pub async fn run_from(
    proxy_addr: String,
    dial: jumpgate_api::DialOptions,
    identity: watch::Receiver<HostIdentity>,
    state: SharedState,
    ssh: Option<Arc<SshService>>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let (discovery_tx, mut discovery_rx) = watch::channel(Discovery::default());
    let discovery_tx = Arc::new(discovery_tx);
    let mut tasks: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    let mut slots: Vec<Slot> = Vec::new();
    let held: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut surplus_check = tokio::time::interval(SURPLUS_CHECK_EVERY);
    surplus_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let desired = discovery_rx.borrow_and_update().desired_tunnels();
        // One task per wanted tunnel; each keeps one tunnel up (or retries).
        while slots.len() < desired {
            let holding: Holding = Arc::default();
            let context = SlotContext {
                proxy_addr: proxy_addr.clone(),
                dial,
                identity: identity.clone(),
                state: state.clone(),
                held: held.clone(),
                discovery: discovery_tx.clone(),
                ssh: ssh.clone(),
            };
            // In the caller's span: what a slot logs (failed dials, tunnels up and down)
            // stays attributed to the host the caller runs it for (one span per simulated
            // host in the tunnels benchmark's load tool).
            let abort = tasks.spawn(keep_one(context, holding.clone()).in_current_span());
            slots.push(Slot { abort, holding });
        }
        tokio::select! {
            () = &mut stop => {
                tasks.shutdown().await;
                return;
            }
            changed = discovery_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let discovery = discovery_rx.borrow().clone();
                end_surplus(&mut slots, &discovery, &held, &state);
            }
            // A live tunnel kept past a shrink (see `slots_to_end`) that has died since is a
            // surplus slot retrying: end it then, not at the next discovery change.
            _ = surplus_check.tick() => {
                let discovery = discovery_rx.borrow().clone();
                end_surplus(&mut slots, &discovery, &held, &state);
            }
            Some(_) = tasks.join_next() => {}
        }
    }
}

/// Ends the slots beyond what `discovery` asks for that matter least (see [`slots_to_end`]).
fn end_surplus(
    slots: &mut Vec<Slot>,
    discovery: &Discovery,
    held: &Mutex<BTreeSet<String>>,
    state: &SharedState,
) {
    let desired = discovery.desired_tunnels();
    if slots.len() <= desired {
        return;
    }
    let holdings: Vec<Option<String>> = slots.iter().map(Slot::holding).collect();
    let live_cap = match discovery.strategy() {
        TunnelStrategy::ProxyPeering {
            agent_connection_count,
        } => usize::try_from(agent_connection_count).unwrap_or(1).max(1),
        TunnelStrategy::AgentMesh => usize::MAX,
    };
    let mut victims = slots_to_end(&holdings, desired, live_cap, discovery.proxies());
    // From the highest index down, so each swap_remove moves a slot that is kept.
    victims.sort_unstable_by(|a, b| b.cmp(a));
    for index in victims {
        if index < slots.len() {
            let slot = slots.swap_remove(index);
            slot.end(held, state);
        }
    }
}

/// What every slot's task shares: where to dial, as whom, and what to serve.
struct SlotContext {
    proxy_addr: String,
    dial: jumpgate_api::DialOptions,
    identity: watch::Receiver<HostIdentity>,
    state: SharedState,
    /// The proxies some slot holds, so that no two slots hold the same one.
    held: Arc<Mutex<BTreeSet<String>>>,
    discovery: Arc<watch::Sender<Discovery>>,
    ssh: Option<Arc<SshService>>,
}

/// What a slot's task holds a tunnel to (or is handshaking with); `None` while retrying.
type Holding = Arc<Mutex<Option<String>>>;

/// One wanted tunnel: the task keeping it, and the proxy it holds.
struct Slot {
    abort: tokio::task::AbortHandle,
    holding: Holding,
}

impl Slot {
    fn holding(&self) -> Option<String> {
        self.holding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stops the task and does the cleanup it cannot do once aborted.
    fn end(self, held: &Mutex<BTreeSet<String>>, state: &SharedState) {
        self.abort.abort();
        if let Some(proxy) = self.holding() {
            held.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&proxy);
            lock(state).tunnel_down(&proxy);
            info!(proxy = %proxy, "reverse tunnel closed: fewer tunnels wanted");
        }
    }
}

/// Which slots to end so that `desired` remain. Slots retrying go first. A live tunnel goes
/// only while more than `live_cap` are live, `live_cap` being what the strategy itself
/// asks for (`agent_connection_count`; no cap with `agent_mesh`): a proxy that merely left
/// the discovery (its presence record expired while it could not reach auth, or it died)
/// keeps its tunnel for as long as that tunnel answers PINGs, so a short absence from the
/// list costs no reconnection and fails no user connection, and a dead proxy's tunnel
/// ends by itself within 5 s. Among live tunnels, those to unlisted proxies go first, then
/// the newest, keeping the tunnels that have proved themselves longest.
fn slots_to_end(
    holdings: &[Option<String>],
    desired: usize,
    live_cap: usize,
    listed: &[String],
) -> Vec<usize> {
    let excess = holdings.len().saturating_sub(desired);
    let mut ranked: Vec<(u8, std::cmp::Reverse<usize>)> = holdings
        .iter()
        .enumerate()
        .map(|(index, holding)| {
            let rank = match holding {
                None => 0,
                Some(proxy) if !listed.contains(proxy) => 1,
                Some(_) => 2,
            };
            (rank, std::cmp::Reverse(index))
        })
        .collect();
    ranked.sort_unstable();
    let mut live = holdings.iter().filter(|holding| holding.is_some()).count();
    let mut victims = Vec::new();
    for (rank, std::cmp::Reverse(index)) in ranked {
        if victims.len() == excess {
            break;
        }
        if rank == 0 {
            victims.push(index);
        } else if live > live_cap {
            victims.push(index);
            live -= 1;
        } else {
            break;
        }
    }
    victims
}

/// Keeps one tunnel to a proxy not already held by another task, reconnecting with
/// jittered backoff.
async fn keep_one(context: SlotContext, holding: Holding) {
    let SlotContext {
        proxy_addr,
        dial,
        identity,
        state,
        held,
        discovery,
        ssh,
    } = context;
    let set_holding = |proxy: Option<&String>| {
        *holding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = proxy.cloned();
    };
    let mut backoff = Backoff::default();
    let mut landings = Landings::default();
    // Changes from here on: what the discovery lists now is what the dials are for.
    let mut listed = discovery.subscribe();
    loop {
        // The identity of the moment: renewed after a CA rotation.
        let current = identity.borrow().clone();
        let mut wait = None;
        match connect(&proxy_addr, dial, &current).await {
            Ok((proxy, stream)) => {
                let fresh = held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(proxy.clone());
                if fresh {
                    landings.reset();
                    // No await between taking the proxy and saying so: an abort in between
                    // would leave it taken with nobody to give it back.
                    set_holding(Some(&proxy));
                    match handshake(stream, &proxy_addr).await {
                        Ok(connection) => {
                            info!(proxy = %proxy, addr = %proxy_addr, "reverse tunnel up");
                            lock(&state).tunnel_up(&proxy);
                            let ended = serve(connection, discovery.clone(), ssh.clone()).await;
                            lock(&state).tunnel_down(&proxy);
                            warn!(proxy = %proxy, reason = %ended, "reverse tunnel down; reconnecting");
                            backoff.reset();
                        }
                        Err(err) => warn!(addr = %proxy_addr, %err, "cannot open a reverse tunnel"),
                    }
                    held.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&proxy);
                    set_holding(None);
                } else {
                    // Behind a load balancer the dial cannot choose its proxy. Leave before
                    // the tunnel's HTTP/2 starts, so the proxy never counts this one, and
                    // keep the tunnel already held; a jittered pause spreads the next try.
                    debug!(proxy = %proxy, "landed on a proxy already held; trying again");
                    drop(stream);
                    wait = Some(landings.next_delay(&mut backoff));
                }
            }
            Err(err) => warn!(addr = %proxy_addr, %err, "cannot open a reverse tunnel"),
        }
        let wait = wait.unwrap_or_else(|| backoff.next_delay());
        debug!(?wait, "next tunnel attempt");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = a_proxy_not_held_is_listed(&mut listed, &held) => {
                // A proxy joined (or came back): a backoff grown while every dial landed
                // on the proxies held would keep this slot away from it for up to
                // MAX_RETRY. Try for it now, from a fresh start, jittered so the agents
                // that all learn of it at once do not dial at the same moment.
                debug!("a proxy not held joined the discovery; trying for it now");
                backoff.reset();
                landings.reset();
                tokio::time::sleep(jitter(FIRST_RETRY)).await;
            }
        }
    }
}

/// Resolves at the next change of the discovery that lists a proxy no slot holds.
async fn a_proxy_not_held_is_listed(
    listed: &mut watch::Receiver<Discovery>,
    held: &Mutex<BTreeSet<String>>,
) {
    loop {
        if listed.changed().await.is_err() {
            // The agent is stopping: the sleep beside this decides.
            std::future::pending::<()>().await;
        }
        let proxies = listed.borrow_and_update().proxies().to_vec();
        let held = held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if proxies.iter().any(|proxy| !held.contains(proxy)) {
            return;
        }
    }
}

/// A uniform wait in `[0, ceiling]`.
fn jitter(ceiling: Duration) -> Duration {
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

type TunnelStream = tokio_rustls::client::TlsStream<TcpStream>;
type TunnelConnection = h2::server::Connection<TunnelStream, Bytes>;

/// Dials and checks the proxy's identity; returns the proxy's identity name and the TLS
/// stream, before any HTTP/2.
async fn connect(
    proxy_addr: &str,
    dial: jumpgate_api::DialOptions,
    identity: &HostIdentity,
) -> Result<(String, TunnelStream), AgentError> {
    let tls = TlsCredentials::from_pem(
        &identity.tls_cert_pem,
        &identity.tls_key_pem,
        &identity.tls_ca_pem,
    )
    .and_then(|credentials| {
        credentials.client_config_for(jumpgate_pki::IdentityKind::Proxy, &[ALPN_REVERSE_TUNNEL])
    })
    .map_err(IdentityError::Credentials)?;
    let unreachable = |failure: TunnelFailure| {
        AgentError::Unreachable(Unreachable::Tunnel {
            addr: proxy_addr.to_string(),
            failure,
        })
    };
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        jumpgate_api::client::dial(proxy_addr, dial),
    )
    .await
    .map_err(|_| unreachable(TunnelFailure::DialTimeout))?
    .map_err(|err| unreachable(TunnelFailure::Dial(err)))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(PROXY_SERVER_NAME).map_err(IdentityError::ServerName)?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TlsConnector::from(tls).connect(name, tcp))
        .await
        .map_err(|_| unreachable(TunnelFailure::TlsTimeout))?
        .map_err(|err| unreachable(TunnelFailure::Tls(err)))?;
    let proxy = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| TlsIdentity::from_cert_der(leaf.as_ref()).ok())
        .filter(|id| id.kind == jumpgate_pki::IdentityKind::Proxy && id.cluster == identity.cluster)
        .ok_or_else(|| unreachable(TunnelFailure::NotAProxy))?;
    Ok((proxy.name, stream))
}

/// The tunnel's HTTP/2 handshake (the agent is the server of the connection it dialled).
async fn handshake(stream: TunnelStream, proxy_addr: &str) -> Result<TunnelConnection, AgentError> {
    h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_concurrent_streams(10_000)
        .handshake(stream)
        .await
        .map_err(|err| {
            AgentError::Unreachable(Unreachable::Tunnel {
                addr: proxy_addr.to_string(),
                failure: TunnelFailure::Http2(err),
            })
        })
}

/// Serves the proxy's streams until the tunnel ends; returns why it ended.
async fn serve(
    mut connection: TunnelConnection,
    discovery: Arc<watch::Sender<Discovery>>,
    ssh: Option<Arc<SshService>>,
) -> String {
    let Some(ping) = connection.ping_pong() else {
        return "no PING handle".to_string();
    };
    let heartbeat = heartbeat(ping, "proxy");
    let accept = async {
        loop {
            match connection.accept().await {
                Some(Ok((request, respond))) => {
                    tokio::spawn(handle_stream(
                        request,
                        respond,
                        discovery.clone(),
                        ssh.clone(),
                    ));
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
    discovery: Arc<watch::Sender<Discovery>>,
    ssh: Option<Arc<SshService>>,
) {
    let target = request.uri().path().to_string();
    let serves_ssh = target == TARGET_SSH && ssh.is_some();
    let status = if target == TARGET_PING || target == TARGET_DISCOVERY || serves_ssh {
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
    // Set by the proxy, which the tunnel's mutual TLS authenticated.
    let client_addr = request
        .headers()
        .get(HEADER_CLIENT_ADDR)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<std::net::SocketAddr>().ok());
    let mut stream = H2Stream::new(send, request.into_body());
    if let (true, Some(ssh)) = (serves_ssh, ssh) {
        ssh.serve(stream, client_addr).await;
        return;
    }
    if target == TARGET_DISCOVERY {
        let mut body = Vec::new();
        let read = tokio::io::AsyncReadExt::read_to_end(
            &mut tokio::io::AsyncReadExt::take(&mut stream, MAX_DISCOVERY_LEN as u64),
            &mut body,
        )
        .await;
        match read
            .map_err(|err| err.to_string())
            .and_then(|_| serde_json::from_slice::<Discovery>(&body).map_err(|err| err.to_string()))
        {
            Ok(found) => {
                discovery.send_if_modified(|current| {
                    let changed = *current != found;
                    if changed {
                        info!(proxies = found.proxies().len(), strategy = %found.strategy(), "learned the cluster's proxies");
                        *current = found;
                    }
                    changed
                });
            }
            Err(err) => warn!(%err, "unusable discovery message from the proxy"),
        }
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
        return;
    }
    let (mut reader, mut writer) = tokio::io::split(&mut stream);
    let _ = tokio::io::copy(&mut reader, &mut writer).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut writer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A retrying slot wakes for a proxy it could take, not for a change that lists only
    /// proxies already held (which would make a region's agents dial at every change).
    #[tokio::test]
    async fn a_retrying_slot_wakes_when_a_proxy_not_held_is_listed() {
        let strategy = TunnelStrategy::ProxyPeering {
            agent_connection_count: 2,
        };
        let listing = |names: &[&str]| {
            Discovery::new(names.iter().map(ToString::to_string).collect(), strategy)
        };
        let (tx, mut rx) = watch::channel(listing(&["a"]));
        let held = Mutex::new(BTreeSet::from(["a".to_string(), "b".to_string()]));
        let mut woken = std::pin::pin!(a_proxy_not_held_is_listed(&mut rx, &held));
        let brief = Duration::from_millis(50);
        assert!(
            tokio::time::timeout(brief, woken.as_mut()).await.is_err(),
            "woke with nothing changed"
        );
        tx.send_replace(listing(&["a", "b"]));
        assert!(
            tokio::time::timeout(brief, woken.as_mut()).await.is_err(),
            "woke for proxies already held"
        );
        tx.send_replace(listing(&["a", "b", "c"]));
        assert!(
            tokio::time::timeout(brief, woken.as_mut()).await.is_ok(),
            "did not wake for a new proxy"
        );
    }

    #[test]
    fn fewer_tunnels_end_retrying_slots_and_live_ones_only_past_the_strategys_count() {
        let listed = vec!["a".to_string(), "b".to_string()];
        let holdings = vec![
            Some("a".to_string()),
            None,
            Some("gone".to_string()),
            Some("b".to_string()),
        ];
        let ended = |desired, live_cap| {
            let mut ended = slots_to_end(&holdings, desired, live_cap, &listed);
            ended.sort_unstable();
            ended
        };
        // agent_mesh (no cap), a proxy left the list: only the retrying slot goes; the
        // tunnel to the unlisted proxy lives on while it answers.
        assert_eq!(ended(2, usize::MAX), vec![1]);
        // proxy_peering with 2: the retrying slot, then the one on the vanished proxy.
        assert_eq!(ended(2, 2), vec![1, 2]);
        // proxy_peering with 1: then the newer of the listed live ones.
        assert_eq!(ended(1, 1), vec![1, 2, 3]);
        // As many as there are: none.
        assert!(ended(4, 4).is_empty());
        assert!(ended(9, 1).is_empty());
    }

    #[test]
    fn landing_on_a_held_proxy_waits_briefly_and_grows_the_backoff_only_after_many_in_a_row() {
        let mut backoff = Backoff::default();
        let mut landings = Landings::default();
        for _ in 0..LANDINGS_BEFORE_BACKOFF {
            assert!(landings.next_delay(&mut backoff) <= FIRST_RETRY);
            assert_eq!(backoff.ceiling, FIRST_RETRY, "a landing grew the backoff");
        }
        // A load balancer that keeps sending this agent to the same proxy: back off.
        assert!(landings.next_delay(&mut backoff) <= FIRST_RETRY);
        assert_eq!(backoff.ceiling, FIRST_RETRY * 2);
        assert!(landings.next_delay(&mut backoff) <= FIRST_RETRY * 2);
        assert_eq!(backoff.ceiling, FIRST_RETRY * 4);
        // A dial that reached another proxy starts a new run of landings.
        landings.reset();
        assert!(landings.next_delay(&mut backoff) <= FIRST_RETRY);
        assert_eq!(backoff.ceiling, FIRST_RETRY * 4);
    }

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
