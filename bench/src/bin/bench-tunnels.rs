//! Reverse tunnels at scale: N real agent tunnels with real identities to one proxy,
//! the proxy's memory and idle CPU, and what a proxy restart costs.
//!
//! `cargo build --release -p jumpgate -p jsh -p jumpgate-bench`
//! `target/release/bench-tunnels bench [--counts 1000,10000] [--user-runs 40] [--append-json FILE]`
//!
//! Must run as root (it raises the open-files limit for the processes it starts, and a
//! real agent runs sessions as the login `jgbench`, created if missing). For each N,
//! on loopback in a temporary directory, every process stopped when dropped:
//! 1. an auth-only daemon (SQLite), a proxy-only daemon joined with a proxy token, one
//!    real agent daemon (`ssh_service`, joined through the proxy), and a user `alice`
//!    logged in with `jsh login`;
//! 2. the load tool, this binary's `agents` mode as a child process: N simulated hosts,
//!    each a real join with a reusable node token (real keys and certificates) from its
//!    own loopback source address (127.1.0.0 + i: the auth service rate-limits joins per
//!    source address), then the real `jumpgate_node::tunnel::run_from` code (`ssh: None`);
//! 3. measured once all N are up and 10 s have passed: the proxy's resident memory
//!    against before the load tool started (per tunnel), the CPU of the proxy, the auth
//!    service and the load tool over 20 s of idle heartbeats, and `jsh ssh
//!    jgbench@bench-agent true` (sequential runs, p50/p99);
//! 4. the proxy restarted (SIGTERM, wait for its exit, start it again): the time until
//!    all N tunnels are back (from the SIGTERM and from the new proxy's listening), the
//!    agents' failed connection attempts meanwhile (attempts per agent: the backoff keeps
//!    a restarted proxy from an error storm), and `jsh ssh` run back to back from the
//!    SIGTERM until 5 s after all are back: successes, failures, p50/p99 of the successes.
//!
//! `tunnels agents --proxy ADDR --auth ADDR --token T --pin P --count N [--want K]` is the
//! load tool alone (also run by `bench-storm`). Each host runs in a span of its own, which
//! the tunnel code's slot tasks inherit, so its events are counted per host. Every 250 ms
//! it prints `up=U full=F tunnels=T joined=J join_failures=F drops=D failed_attempts=A
//! warns=W dup_landings=L tunnel_ups=T zeroed=Z max_failed=M max_landings=X marks=K
//! holders=P:N,...`:
//! `up`/`full` hosts with at least one / `--want` tunnels (default 1), `drops` hosts seen
//! going from some tunnel to none, `failed_attempts` tunnel dials that failed (the tunnel
//! code's "cannot open a reverse tunnel"), `warns` every WARN event, `dup_landings` dials
//! that reached a proxy the host already held, `holders` the tunnels per proxy identity;
//! `zeroed` (hosts whose last tunnel went down), `max_failed` and `max_landings` (most
//! failed dials, most dials landing on a held proxy, of one host) count since the last
//! `mark` line on its standard input. `--auth` must be the auth
//! service's own address: joins through the proxy's SNI passthrough all come from the
//! proxy's address.
// A benchmark harness fails by panicking with the reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_bench::procs::{
    add_user_and_login, clock_ticks, cpu_seconds, ensure_login_user, rss_kib,
};
use jumpgate_bench::tunnels::{
    AGENT, Agents, AgentsSpec, BenchAuth, UserLoop, quantile, raise_open_files, start_jumpgate,
    user_connection, write_config,
};
use jumpgate_bench::{append_line, git_commit, load_average, ms, ms_or_dash};
use jumpgate_node::{NodeState, SharedState};
use jumpgate_test_support::{Bins, Process, free_port, wait_for};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const JOIN_CONCURRENCY: usize = 32;
const JOIN_TRIES: usize = 5;
/// How long to wait for all tunnels to come back after a restart before giving up.
const BACK_WITHIN: Duration = Duration::from_secs(180);

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("agents") => agents(AgentArgs::parse(args)),
        Some("bench") => bench(BenchArgs::parse(args)),
        _ => panic!(
            "usage: tunnels bench [--counts 1000,10000] [--user-runs N] [--append-json FILE]\n\
             \x20      tunnels agents --proxy ADDR --auth ADDR --token T --pin P --count N [--want K]"
        ),
    }
}

// ---------------------------------------------------------------------------------------
// The load tool.

struct AgentArgs {
    proxy: String,
    auth: String,
    token: String,
    pin: String,
    count: usize,
    want: usize,
}

impl AgentArgs {
    fn parse(mut args: impl Iterator<Item = String>) -> AgentArgs {
        let (mut proxy, mut auth, mut token, mut pin, mut count) = (None, None, None, None, None);
        let mut want = 1;
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
                "--want" => want = value.parse().expect("--want K"),
                other => panic!("unknown option {other}"),
            }
        }
        AgentArgs {
            proxy: proxy.expect("--proxy ADDR"),
            auth: auth.expect("--auth ADDR"),
            token: token.expect("--token T"),
            pin: pin.expect("--pin P"),
            count: count.expect("--count N"),
            want,
        }
    }
}

/// The loopback source address of simulated host `i`: 127.1.0.0 + i.
fn source_ip(i: usize) -> IpAddr {
    let base = u32::from(Ipv4Addr::new(127, 1, 0, 0));
    IpAddr::V4(Ipv4Addr::from(base + u32::try_from(i).unwrap()))
}

/// The span each simulated host runs in; the tunnel code's slot tasks inherit it.
const HOST_SPAN: &str = "simulated_host";

/// One simulated host's counts, kept from the tunnel code's own events.
#[derive(Default)]
struct HostCounts {
    /// Tunnels up ("reverse tunnel up" less "reverse tunnel down" and "closed: fewer
    /// tunnels wanted").
    live: AtomicUsize,
    /// Since the last mark.
    failed_dials: AtomicUsize,
    dup_landings: AtomicUsize,
    zeroed: AtomicBool,
}

/// Counts over all hosts, cumulative.
#[derive(Default)]
struct Totals {
    failed_dials: AtomicUsize,
    warns: AtomicUsize,
    dup_landings: AtomicUsize,
    tunnel_ups: AtomicUsize,
}

/// Reads the tunnel code's events (every WARN, and `jumpgate_node::tunnel`'s INFO/DEBUG),
/// attributed to a host by its span.
struct TunnelEvents {
    hosts: Arc<Vec<HostCounts>>,
    totals: Arc<Totals>,
}

struct HostIndex(usize);

impl TunnelEvents {
    fn wanted(metadata: &tracing::Metadata<'_>) -> bool {
        if metadata.is_span() {
            return metadata.name() == HOST_SPAN;
        }
        *metadata.level() <= tracing::Level::WARN
            || metadata.target().starts_with("jumpgate_node::tunnel")
    }
}

impl<S> tracing_subscriber::Layer<S> for TunnelEvents
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // Everything else (h2's and rustls' trace events) is off at its call site, so
    // 2,000 tunnels' PINGs cost the load tool nothing here.
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if Self::wanted(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        Self::wanted(metadata)
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Index(Option<usize>);
        impl tracing::field::Visit for Index {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "index" {
                    self.0 = usize::try_from(value).ok();
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut index = Index(None);
        attrs.record(&mut index);
        if let (Some(index), Some(span)) = (index.0, ctx.span(id)) {
            span.extensions_mut().insert(HostIndex(index));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let totals = &self.totals;
        if *event.metadata().level() <= tracing::Level::WARN {
            totals.warns.fetch_add(1, Ordering::Relaxed);
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let host = ctx.event_scope(event).and_then(|scope| {
            scope
                .from_root()
                .find_map(|span| span.extensions().get::<HostIndex>().map(|index| index.0))
        });
        let host = host.and_then(|index| self.hosts.get(index));
        match message.0.as_str() {
            "cannot open a reverse tunnel" => {
                totals.failed_dials.fetch_add(1, Ordering::Relaxed);
                if let Some(host) = host {
                    host.failed_dials.fetch_add(1, Ordering::Relaxed);
                }
            }
            "landed on a proxy already held; trying again" => {
                totals.dup_landings.fetch_add(1, Ordering::Relaxed);
                if let Some(host) = host {
                    host.dup_landings.fetch_add(1, Ordering::Relaxed);
                }
            }
            "reverse tunnel up" => {
                totals.tunnel_ups.fetch_add(1, Ordering::Relaxed);
                if let Some(host) = host {
                    host.live.fetch_add(1, Ordering::Relaxed);
                }
            }
            "reverse tunnel down; reconnecting" | "reverse tunnel closed: fewer tunnels wanted" => {
                if let Some(host) = host {
                    let before = host
                        .live
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| {
                            Some(live.saturating_sub(1))
                        })
                        .unwrap_or(0);
                    if before <= 1 {
                        host.zeroed.store(true, Ordering::Relaxed);
                    }
                }
            }
            _ => {}
        }
    }
}

#[tokio::main]
async fn agents(args: AgentArgs) {
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    raise_open_files();
    let hosts: Arc<Vec<HostCounts>> =
        Arc::new((0..args.count).map(|_| HostCounts::default()).collect());
    let totals = Arc::new(Totals::default());
    tracing_subscriber::registry()
        .with(TunnelEvents {
            hosts: hosts.clone(),
            totals: totals.clone(),
        })
        .init();
    // `mark` on standard input starts the since-mark counts over (bench-storm sends one
    // just before it kills a proxy).
    let marks = Arc::new(AtomicUsize::new(0));
    {
        let (hosts, marks) = (hosts.clone(), marks.clone());
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if line.trim() == "mark" {
                    for host in hosts.iter() {
                        host.failed_dials.store(0, Ordering::Relaxed);
                        host.dup_landings.store(0, Ordering::Relaxed);
                        host.zeroed.store(false, Ordering::Relaxed);
                    }
                    marks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let args = Arc::new(args);
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
        let host = async move {
            let dial = jumpgate_api::DialOptions {
                local_ip: Some(source_ip(i)),
                ..Default::default()
            };
            let host_uuid = format!("00000000-0000-4000-8000-{i:012}");
            let host_name = format!("load-{i}");
            let pins = [args.pin.clone()];
            let mut identity = None;
            {
                let _permit = gate.acquire().await.unwrap();
                for _ in 0..JOIN_TRIES {
                    let params = jumpgate_node::join::JoinSpec {
                        server: &args.auth,
                        token: &args.token,
                        ca_pins: &pins,
                        host_uuid: &host_uuid,
                        host_name: &host_name,
                        role: "node",
                        addresses: &[],
                        dial,
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
            // The agent's own pool: as many tunnels to distinct proxies as the proxies'
            // discovery asks for, each slot reconnecting with jittered backoff.
            jumpgate_node::tunnel::run_from(
                args.proxy.clone(),
                dial,
                tokio::sync::watch::channel(identity).1,
                state,
                None,
                std::future::pending::<()>(),
            )
            .await;
        };
        tokio::spawn(host.instrument(tracing::info_span!(HOST_SPAN, index = i)));
    }
    let mut was_up: Vec<bool> = Vec::new();
    let mut drops = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let states = states.lock().unwrap().clone();
        was_up.resize(states.len(), false);
        let (mut up, mut full, mut tunnels) = (0, 0, 0);
        let mut holders: BTreeMap<String, usize> = BTreeMap::new();
        for (state, was) in states.iter().zip(was_up.iter_mut()) {
            let state = state.lock().unwrap();
            let held = state.tunnels();
            for proxy in held.keys() {
                *holders.entry(proxy.clone()).or_default() += 1;
            }
            let now = !held.is_empty();
            if *was && !now {
                drops += 1;
            }
            *was = now;
            up += usize::from(now);
            full += usize::from(held.len() >= args.want);
            tunnels += held.len();
        }
        let zeroed = hosts
            .iter()
            .filter(|host| host.zeroed.load(Ordering::Relaxed))
            .count();
        let max_failed = hosts
            .iter()
            .map(|host| host.failed_dials.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let max_landings = hosts
            .iter()
            .map(|host| host.dup_landings.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let holders: Vec<String> = holders
            .iter()
            .map(|(proxy, count)| format!("{proxy}:{count}"))
            .collect();
        println!(
            "up={up} full={full} tunnels={tunnels} joined={} join_failures={} drops={drops} \
             failed_attempts={} warns={} dup_landings={} tunnel_ups={} zeroed={zeroed} \
             max_failed={max_failed} max_landings={max_landings} marks={} holders={}",
            joined.load(Ordering::Relaxed),
            join_failures.load(Ordering::Relaxed),
            totals.failed_dials.load(Ordering::Relaxed),
            totals.warns.load(Ordering::Relaxed),
            totals.dup_landings.load(Ordering::Relaxed),
            totals.tunnel_ups.load(Ordering::Relaxed),
            marks.load(Ordering::Relaxed),
            holders.join(","),
        );
    }
}

// ---------------------------------------------------------------------------------------
// The benchmark.

struct BenchArgs {
    counts: Vec<usize>,
    user_runs: usize,
    append_json: Option<PathBuf>,
}

impl BenchArgs {
    fn parse(mut args: impl Iterator<Item = String>) -> BenchArgs {
        let mut parsed = BenchArgs {
            counts: vec![1000, 10_000],
            user_runs: 40,
            append_json: None,
        };
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .unwrap_or_else(|| panic!("{flag} needs a value"));
            match flag.as_str() {
                "--counts" => {
                    parsed.counts = value
                        .split(',')
                        .map(|n| n.trim().parse().expect("--counts N,N,..."))
                        .collect();
                }
                "--user-runs" => parsed.user_runs = value.parse().expect("--user-runs N"),
                "--append-json" => parsed.append_json = Some(value.into()),
                other => panic!("unknown option {other}"),
            }
        }
        assert!(
            parsed.counts.iter().all(|&n| (1..=60_000).contains(&n)),
            "--counts: each between 1 and 60000 (one loopback address per agent)"
        );
        assert!(parsed.user_runs >= 2, "--user-runs: at least 2");
        parsed
    }
}

/// SIGTERM, then wait for the exit; returns how long the exit took.
fn terminate(process: &mut Process) -> Duration {
    let (_, took) = process
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{} did not exit within 30 s of SIGTERM", process.name));
    took
}

/// CPU seconds of each of `pids` (and their reaped children) over `window`.
fn cpu_over(pids: &[u32], window: Duration) -> Vec<f64> {
    let ticks = clock_ticks();
    let before: Vec<f64> = pids
        .iter()
        .map(|pid| cpu_seconds(&pid.to_string(), ticks))
        .collect();
    std::thread::sleep(window);
    pids.iter()
        .zip(before)
        .map(|(pid, before)| cpu_seconds(&pid.to_string(), ticks) - before)
        .collect()
}

/// The whole measurement for one N; returns its JSON record.
#[allow(clippy::too_many_lines)]
fn measure(bins: &Bins, count: usize, user_runs: usize) -> serde_json::Value {
    let dir = tempfile::Builder::new()
        .prefix("jumpgate-bench-tunnels.")
        .tempdir()
        .unwrap();
    let dir = dir.path();
    let auth = BenchAuth::start(bins, dir, "");
    let (auth_data, auth_addr, pin) = (auth.data.clone(), auth.addr.clone(), auth.pin.clone());
    let token_of = |kind: &str, reusable: bool| auth.token(bins, kind, reusable);

    let proxy_data = dir.join("proxy");
    let proxy_addr = format!("127.0.0.1:{}", free_port());
    let proxy_config = write_config(
        &dir.join("proxy.yaml"),
        &format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: bench-proxy\n  auth_server: {auth_addr}\n  auth_token: \"{}\"\n  ca_pin: \"{pin}\"\nproxy_service:\n  web_listen_addr: {proxy_addr}\n  peer_listen_addr: 127.0.0.1:{}\n",
            proxy_data.display(),
            token_of("proxy", false),
            free_port()
        ),
    );
    let proxy_log = dir.join("proxy.log");
    let proxy_listening = |proxy: &mut Process| {
        proxy.check_alive();
        proxy_data.join("proxy_addr").is_file()
    };
    let mut proxy = start_jumpgate(bins, &proxy_config, &proxy_log, "proxy daemon");
    wait_for("the proxy", Duration::from_secs(60), || {
        proxy_listening(&mut proxy)
    });

    let node_token = token_of("node", true);
    let agent_config = write_config(
        &dir.join("agent.yaml"),
        &format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: {AGENT}\n  proxy_server: {proxy_addr}\n  auth_token: \"{node_token}\"\n  ca_pin: \"{pin}\"\nssh_service: {{}}\n",
            dir.join("agent").display()
        ),
    );
    let mut agent = start_jumpgate(bins, &agent_config, &dir.join("agent.log"), "agent daemon");
    let home = dir.join("jsh-home");
    add_user_and_login(bins, &auth_data, "alice", &proxy_addr, &home);
    wait_for("jsh ssh to the real agent", Duration::from_secs(60), || {
        agent.check_alive();
        user_connection(&bins.jsh, &home).is_ok()
    });
    // A moment for the user's connections to settle before the baseline.
    std::thread::sleep(Duration::from_secs(2));
    let proxy_pid = proxy.child.id();
    let rss_before = rss_kib(proxy_pid);

    // The load tool.
    let exe = std::env::current_exe().unwrap();
    let agents_log = dir.join("agents.log");
    let mut agents = Agents::spawn(&AgentsSpec {
        exe: &exe,
        proxy: &proxy_addr,
        auth: &auth_addr,
        token: &node_token,
        pin: &pin,
        count,
        want: 1,
        log: &agents_log,
    });
    let started = Instant::now();
    let join_timeout = Duration::from_secs(60 + 10 * u64::try_from(count / 1000).unwrap());
    wait_for("all tunnels up", join_timeout, || {
        agents.process.check_alive();
        proxy.check_alive();
        agents.latest().up == count
    });
    let all_up_after = started.elapsed();
    let after_join = agents.latest();
    println!(
        "N={count}: all {count} joined and up after {:.1} s ({} join failures)",
        all_up_after.as_secs_f64(),
        after_join.join_failures
    );
    std::thread::sleep(Duration::from_secs(10));
    let rss_after = rss_kib(proxy_pid);
    let agents_pid = agents.process.child.id();
    let idle_window = Duration::from_secs(20);
    let idle_cpu = cpu_over(
        &[proxy_pid, auth.process.child.id(), agents_pid],
        idle_window,
    );
    let cpu_share = |seconds: f64| seconds / idle_window.as_secs_f64() * 100.0;
    let agents_rss = rss_kib(agents_pid);
    let per_tunnel_kib = rss_after.saturating_sub(rss_before) as f64 / count as f64;
    println!(
        "N={count}: proxy RSS {rss_before} -> {rss_after} KiB ({per_tunnel_kib:.1} KiB per tunnel); \
         idle CPU over {}s: proxy {:.1}%, auth {:.1}%, load tool {:.1}% of one core",
        idle_window.as_secs(),
        cpu_share(idle_cpu[0]),
        cpu_share(idle_cpu[1]),
        cpu_share(idle_cpu[2]),
    );

    let idle_user: Vec<Duration> = (0..user_runs)
        .map(|_| user_connection(&bins.jsh, &home).expect("jsh ssh while idle"))
        .collect();
    println!(
        "N={count}: jsh ssh while idle ({user_runs} runs): p50 {} ms, p99 {} ms",
        ms_or_dash(quantile(&idle_user, 0.5)),
        ms_or_dash(quantile(&idle_user, 0.99)),
    );

    // The restart.
    let before_restart = agents.latest();
    let _ = std::fs::remove_file(proxy_data.join("proxy_addr"));
    let sigterm = Instant::now();
    let stop_took = terminate(&mut proxy);
    proxy = start_jumpgate(bins, &proxy_config, &proxy_log, "proxy daemon (restarted)");
    let users = UserLoop::start(&bins.jsh, &home, sigterm);
    wait_for("the restarted proxy", Duration::from_secs(60), || {
        proxy_listening(&mut proxy)
    });
    let listening = Instant::now();
    let mut back = None;
    wait_for("all tunnels back", BACK_WITHIN, || {
        agents.process.check_alive();
        proxy.check_alive();
        back = agents.back_at(sigterm, |line| line.up == count);
        back.is_some()
    });
    let (back_at, back_line) = back.unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let samples = users.stop();
    let successes: Vec<Duration> = samples
        .iter()
        .filter_map(|(_, outcome)| outcome.as_ref().ok().copied())
        .collect();
    let failures: Vec<&String> = samples
        .iter()
        .filter_map(|(_, outcome)| outcome.as_ref().err())
        .collect();
    let first_success_after = samples
        .iter()
        .find(|(_, outcome)| outcome.is_ok())
        .map(|(at, _)| *at);
    let failed_attempts = back_line.failed_attempts - before_restart.failed_attempts;
    let back_since_sigterm = back_at - sigterm;
    let back_since_listening = back_at.saturating_duration_since(listening);
    println!(
        "N={count}: proxy restart: exit took {:.2} s, listening {:.2} s after SIGTERM, all {count} back \
         {:.2} s after SIGTERM ({:.2} s after listening); {failed_attempts} failed tunnel dials \
         ({:.2} per agent), {} drops",
        stop_took.as_secs_f64(),
        (listening - sigterm).as_secs_f64(),
        back_since_sigterm.as_secs_f64(),
        back_since_listening.as_secs_f64(),
        failed_attempts as f64 / count as f64,
        back_line.drops - before_restart.drops,
    );
    println!(
        "N={count}: jsh ssh during the restart: {} tries, {} failed, first success {} ms after SIGTERM; \
         successes p50 {} ms, p99 {} ms{}",
        samples.len(),
        failures.len(),
        ms_or_dash(first_success_after),
        ms_or_dash(quantile(&successes, 0.5)),
        ms_or_dash(quantile(&successes, 0.99)),
        failures
            .first()
            .map(|err| format!("; first failure: {err}"))
            .unwrap_or_default()
    );
    let proxy_warnings = std::fs::read_to_string(&proxy_log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("WARN"))
        .count();
    drop(agents);
    drop(agent);
    drop(proxy);
    drop(auth);
    serde_json::json!({
        "tunnels": count,
        "all_up_after_join_s": all_up_after.as_secs_f64(),
        "join_failures": after_join.join_failures,
        "proxy_rss_kib_before": rss_before,
        "proxy_rss_kib_after": rss_after,
        "proxy_kib_per_tunnel": per_tunnel_kib,
        "load_tool_rss_kib": agents_rss,
        "idle_cpu_percent_of_one_core": {
            "proxy": cpu_share(idle_cpu[0]),
            "auth": cpu_share(idle_cpu[1]),
            "load_tool": cpu_share(idle_cpu[2]),
        },
        "idle_jsh_ssh_ms": {
            "runs": user_runs,
            "p50": quantile(&idle_user, 0.5).map(ms),
            "p99": quantile(&idle_user, 0.99).map(ms),
        },
        "restart": {
            "exit_s": stop_took.as_secs_f64(),
            "listening_after_sigterm_s": (listening - sigterm).as_secs_f64(),
            "all_back_after_sigterm_s": back_since_sigterm.as_secs_f64(),
            "all_back_after_listening_s": back_since_listening.as_secs_f64(),
            "failed_tunnel_dials": failed_attempts,
            "failed_tunnel_dials_per_agent": failed_attempts as f64 / count as f64,
            "drops": back_line.drops - before_restart.drops,
            "proxy_log_warnings_total": proxy_warnings,
            "jsh_ssh": {
                "tries": samples.len(),
                "failed": failures.len(),
                "first_success_after_sigterm_ms": first_success_after.map(ms),
                "p50_ms": quantile(&successes, 0.5).map(ms),
                "p99_ms": quantile(&successes, 0.99).map(ms),
            },
        },
    })
}

fn bench(args: BenchArgs) {
    let limit = raise_open_files();
    let needed = u64::try_from(args.counts.iter().max().copied().unwrap_or(0)).unwrap() + 1024;
    assert!(
        limit >= needed,
        "the open-files limit is {limit}, {needed} are needed: run as root (or raise `ulimit -Hn`)"
    );
    ensure_login_user();
    let bins = Bins::release();
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let load_before = load_average();
    let results: Vec<serde_json::Value> = args
        .counts
        .iter()
        .map(|&count| measure(&bins, count, args.user_runs))
        .collect();
    let record = serde_json::json!({
        "bench": "tunnels",
        "date": date,
        "commit": git_commit(),
        "command": format!(
            "target/release/bench-tunnels bench --counts {} --user-runs {}",
            args.counts.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            args.user_runs
        ),
        "load_average_before": load_before,
        "results": results,
    });
    let line = serde_json::to_string(&record).unwrap();
    println!();
    println!("JSON: {line}");
    if let Some(path) = &args.append_json {
        append_line(path, &line);
    }
}
