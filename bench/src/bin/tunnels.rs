//! Reverse tunnels at scale: a load tool that opens N real agent tunnels, each with its
//! own real identity (a real join with a reusable node token), to one proxy.
//!
//! `tunnels agents --proxy ADDR --auth ADDR --token T --pin P --count N` joins N
//! simulated hosts (each from its own loopback source address, 127.1.0.0 + i, since the
//! auth service rate-limits joins per source IP), runs the real `jumpgate_node::tunnel`
//! code for each (`ssh: None`), and prints `up=K joined=J join_failures=F drops=D` every
//! 250 ms on stdout. `drops` counts tunnels seen going down. Every tunnel is a socket
//! (`unsafe` is forbidden here, so no setrlimit): run it under `sh -c 'ulimit -n 20000; ...'`.
//!
//! The orchestrating benchmark mode (daemons, restart, user connection times) is not
//! written yet: see bench/TUNNELS.md.
// A benchmark harness fails by panicking with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jumpgate_node::{NodeState, SharedState};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const JOIN_CONCURRENCY: usize = 32;
const JOIN_TRIES: usize = 5;

struct Args {
    proxy: String,
    auth: String,
    token: String,
    pin: String,
    count: usize,
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("agents") => {}
        _ => panic!(
            "usage: tunnels agents --proxy ADDR --auth ADDR --token T --pin P --count N \
             (the orchestrating benchmark mode is not written yet)"
        ),
    }
    let (mut proxy, mut auth, mut token, mut pin, mut count) = (None, None, None, None, None);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--proxy" => proxy = Some(value),
            "--auth" => auth = Some(value),
            "--token" => token = Some(value),
            "--pin" => pin = Some(value),
            "--count" => count = Some(value.parse().expect("--count N")),
            other => panic!("unknown option {other}"),
        }
    }
    Args {
        proxy: proxy.expect("--proxy ADDR"),
        auth: auth.expect("--auth ADDR"),
        token: token.expect("--token T"),
        pin: pin.expect("--pin P"),
        count: count.expect("--count N"),
    }
}

/// The loopback source address of simulated host `i`: 127.1.0.0 + i.
fn source_ip(i: usize) -> IpAddr {
    let base = u32::from(Ipv4Addr::new(127, 1, 0, 0));
    IpAddr::V4(Ipv4Addr::from(base + u32::try_from(i).unwrap()))
}

#[tokio::main]
async fn main() {
    let args = Arc::new(parse_args());
    let joined = Arc::new(AtomicUsize::new(0));
    let join_failures = Arc::new(AtomicUsize::new(0));
    let states: Arc<Mutex<Vec<SharedState>>> = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(JOIN_CONCURRENCY));
    for i in 0..args.count {
        let (args, joined, join_failures, states, gate) = (
            args.clone(),
            joined.clone(),
            join_failures.clone(),
            states.clone(),
            gate.clone(),
        );
        tokio::spawn(async move {
            let local_ip = Some(source_ip(i));
            let host_uuid = format!("00000000-0000-4000-8000-{i:012}");
            let host_name = format!("load-{i}");
            let pins = [args.pin.clone()];
            let mut identity = None;
            {
                let _permit = gate.acquire().await.unwrap();
                for _ in 0..JOIN_TRIES {
                    let params = jumpgate_node::join::JoinParams {
                        server: &args.auth,
                        token: &args.token,
                        ca_pins: &pins,
                        host_uuid: &host_uuid,
                        host_name: &host_name,
                        role: "node",
                        addresses: &[],
                        local_ip,
                    };
                    match jumpgate_node::join::join(params).await {
                        Ok(joined) => {
                            identity = Some(joined);
                            break;
                        }
                        Err(err) => {
                            join_failures.fetch_add(1, Ordering::Relaxed);
                            eprintln!("join {host_name}: {err}");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
            let Some(identity) = identity else {
                eprintln!("{host_name}: gave up joining after {JOIN_TRIES} tries");
                return;
            };
            joined.fetch_add(1, Ordering::Relaxed);
            let state = Arc::new(Mutex::new(NodeState::default()));
            states.lock().unwrap().push(state.clone());
            jumpgate_node::tunnel::run_from(
                args.proxy.clone(),
                local_ip,
                tokio::sync::watch::channel(identity).1,
                state,
                None,
                std::future::pending::<()>(),
            )
            .await;
        });
    }
    let mut was_up: Vec<bool> = Vec::new();
    let mut drops = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let states = states.lock().unwrap().clone();
        was_up.resize(states.len(), false);
        let mut up = 0;
        for (state, was) in states.iter().zip(was_up.iter_mut()) {
            let now = !state.lock().unwrap().tunnels.is_empty();
            if *was && !now {
                drops += 1;
            }
            *was = now;
            up += usize::from(now);
        }
        println!(
            "up={up} joined={} join_failures={} drops={drops}",
            joined.load(Ordering::Relaxed),
            join_failures.load(Ordering::Relaxed),
        );
    }
}
