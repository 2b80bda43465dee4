//! The load tool, `bench-watch-cpu agents`: N simulated nodes, each running what a real
//! agent keeps running while idle, through the agent's own library code. This file is
//! the same in the builds compared: each build's load tool runs that build's caches.
//!
//! For simulated node `i` (source address 127.1.0.0 + i, API and first tunnel dial
//! through proxy `i mod P`, as if each node's `proxy_server` were one of P load-balancer
//! addresses):
//! - a real join with the reusable node token, straight to the auth service (it
//!   rate-limits joins per source address, and through the proxy all would share one);
//! - the agent's caches, `jumpgate_node::Caches::spawn` (what `jumpgate_node::run`
//!   starts), with the agent's auth connector from the node's own source address;
//! - for nodes 0..`--tunnels` (default all), the real reverse tunnel code
//!   (`jumpgate_node::tunnel::run_from`, no SSH service), as many tunnels as the
//!   proxies' discovery asks for;
//! - with `--heartbeats`, the real heartbeat (`jumpgate_node::heartbeat::run`, every 5 s)
//!   straight to `--auth` from 127.0.0.1.
//!
//! `--first I --count N` simulates nodes I..I+N, so that several load tools share the
//! nodes out (a process may have only so many open files: each node holds a connection
//! per cache and one per tunnel). Every second it prints `joined=J join_failures=F
//! cached=C tunnels=T`: `cached` counts nodes whose caches all hold a first copy,
//! `tunnels` the tunnels up over all nodes.

use jumpgate_node::{Caches, HostIdentity, NodeState, SharedState};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const JOIN_CONCURRENCY: usize = 32;
const JOIN_TRIES: usize = 5;
/// Open files the load tool may have: each node holds a connection per cache and one
/// per tunnel.
pub const OPEN_FILES: u64 = 262_144;

pub struct AgentArgs {
    proxies: Vec<String>,
    auth: String,
    token: String,
    pin: String,
    first: usize,
    count: usize,
    tunnels: Option<usize>,
    heartbeats: bool,
}

impl AgentArgs {
    pub fn parse(mut args: impl Iterator<Item = String>) -> AgentArgs {
        let (mut proxies, mut auth, mut token, mut pin, mut count) = (None, None, None, None, None);
        let (mut first, mut tunnels, mut heartbeats) = (0, None, false);
        while let Some(flag) = args.next() {
            if flag == "--heartbeats" {
                heartbeats = true;
                continue;
            }
            let value = args
                .next()
                .unwrap_or_else(|| panic!("{flag} needs a value"));
            match flag.as_str() {
                "--proxies" => proxies = Some(value.split(',').map(str::to_string).collect()),
                "--auth" => auth = Some(value),
                "--token" => token = Some(value),
                "--pin" => pin = Some(value),
                "--first" => first = value.parse().expect("--first I"),
                "--count" => count = Some(value.parse().expect("--count N")),
                "--tunnels" => tunnels = Some(value.parse().expect("--tunnels N")),
                other => panic!("unknown option {other}"),
            }
        }
        AgentArgs {
            proxies: proxies.expect("--proxies ADDR,ADDR,..."),
            auth: auth.expect("--auth ADDR"),
            token: token.expect("--token T"),
            pin: pin.expect("--pin P"),
            first,
            count: count.expect("--count N"),
            tunnels,
            heartbeats,
        }
    }
}

/// Raises this process's open-files limit (both soft and hard as root, else the soft one
/// to the hard one); children inherit it. Returns the soft limit now.
pub fn raise_open_files() -> u64 {
    use rlimit::Resource;
    if Resource::NOFILE.set(OPEN_FILES, OPEN_FILES).is_err() {
        let _ = rlimit::increase_nofile_limit(OPEN_FILES);
    }
    Resource::NOFILE.get().map_or(0, |(soft, _)| soft)
}

/// The loopback source address of simulated node `i`: 127.1.0.0 + i.
fn source_ip(i: usize) -> IpAddr {
    let base = u32::from(Ipv4Addr::new(127, 1, 0, 0));
    IpAddr::V4(Ipv4Addr::from(base + u32::try_from(i).unwrap()))
}

/// Joins as node `i`, retrying a few times; `None` when it gave up.
async fn join(args: &AgentArgs, i: usize, failures: &AtomicUsize) -> Option<HostIdentity> {
    let host_uuid = format!("00000000-0000-4000-8000-{i:012}");
    let host_name = format!("load-{i}");
    let pins = [args.pin.clone()];
    for _ in 0..JOIN_TRIES {
        let params = jumpgate_node::join::JoinSpec {
            server: &args.auth,
            token: &args.token,
            ca_pins: &pins,
            host_uuid: &host_uuid,
            host_name: &host_name,
            role: "node",
            addresses: &[],
            dial: jumpgate_api::DialOptions {
                local_ip: Some(source_ip(i)),
                ..Default::default()
            },
        };
        match jumpgate_node::join::join(params).await {
            Ok(joined) => return Some(joined),
            Err(err) => {
                failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("join {host_name}: {err}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    eprintln!("{host_name}: gave up joining after {JOIN_TRIES} tries");
    None
}

/// Never resolves: the load tool runs until it is killed.
fn forever() -> std::future::Pending<()> {
    std::future::pending()
}

#[tokio::main]
pub async fn agents(args: AgentArgs) {
    raise_open_files();
    let args = Arc::new(args);
    // Nodes (by global index) below this one run the tunnel.
    let tunnelled_below = args.tunnels.unwrap_or(usize::MAX);
    let joined = Arc::new(AtomicUsize::new(0));
    let join_failures = Arc::new(AtomicUsize::new(0));
    let caches: Arc<Mutex<Vec<Caches>>> = Arc::default();
    let states: Arc<Mutex<Vec<SharedState>>> = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(JOIN_CONCURRENCY));
    for i in args.first..args.first + args.count {
        let (args, joined, join_failures, caches, states, gate) = (
            args.clone(),
            joined.clone(),
            join_failures.clone(),
            caches.clone(),
            states.clone(),
            gate.clone(),
        );
        tokio::spawn(async move {
            let identity = {
                let _permit = gate.acquire().await.unwrap();
                join(&args, i, &join_failures).await
            };
            let Some(identity) = identity else { return };
            joined.fetch_add(1, Ordering::Relaxed);
            let proxy = args.proxies[i % args.proxies.len()].clone();
            let dial = jumpgate_api::DialOptions {
                local_ip: Some(source_ip(i)),
                ..Default::default()
            };
            let host_name = format!("load-{i}");
            let (identity_tx, identity_rx) = tokio::sync::watch::channel(identity);
            let connect =
                jumpgate_node::auth_connector_from(proxy.clone(), dial, identity_rx.clone());
            caches
                .lock()
                .unwrap()
                .push(Caches::spawn(&connect, &identity_rx, forever));
            let state = Arc::new(Mutex::new(NodeState::default()));
            states.lock().unwrap().push(state.clone());
            if args.heartbeats {
                tokio::spawn(jumpgate_node::heartbeat::run(
                    args.auth.clone(),
                    jumpgate_api::DialOptions::default(),
                    identity_rx.clone(),
                    host_name,
                    std::collections::BTreeMap::new(),
                    state.clone(),
                    forever(),
                ));
            }
            if i < tunnelled_below {
                jumpgate_node::tunnel::run_from(proxy, dial, identity_rx, state, None, forever())
                    .await;
            } else {
                // Keeps the identity sender (and so the caches' connector) alive.
                forever().await;
            }
            drop(identity_tx);
        });
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let cached = caches
            .lock()
            .unwrap()
            .iter()
            .filter(|caches| caches.loaded())
            .count();
        let tunnels: usize = states
            .lock()
            .unwrap()
            .iter()
            .map(|state| state.lock().unwrap().tunnels().len())
            .sum();
        println!(
            "joined={} join_failures={} cached={cached} tunnels={tunnels}",
            joined.load(Ordering::Relaxed),
            join_failures.load(Ordering::Relaxed),
        );
    }
}
