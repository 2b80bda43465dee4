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
//! `tunnels agents --proxy ADDR --auth ADDR --token T --pin P --count N` is the load
//! tool alone. It prints `up=K joined=J join_failures=F drops=D failed_attempts=A` every
//! 250 ms (`drops`: tunnels seen going down; `failed_attempts`: tunnel dials that failed,
//! counted from the tunnel code's own warnings). `--auth` must be the auth service's own
//! address: joins through the proxy's SNI passthrough all come from the proxy's address.
// A benchmark harness fails by panicking with the reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_bench::procs::{
    LOGIN, add_user_and_login, clock_ticks, cpu_seconds, ensure_login_user, rss_kib,
};
use jumpgate_bench::{append_line, git_commit, load_average, ms, ms_or_dash};
use jumpgate_node::{NodeState, SharedState};
use jumpgate_test_support::{Bins, Process, free_port, wait_for};
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const JOIN_CONCURRENCY: usize = 32;
const JOIN_TRIES: usize = 5;
/// Open files the benchmark's processes may have: a tunnel is a socket at each end.
const OPEN_FILES: u64 = 65_536;
/// How long to wait for all tunnels to come back after a restart before giving up.
const BACK_WITHIN: Duration = Duration::from_secs(180);
/// The real agent's node name, the one `jsh ssh` connects to.
const AGENT: &str = "bench-agent";

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("agents") => agents(AgentArgs::parse(args)),
        Some("bench") => bench(BenchArgs::parse(args)),
        _ => panic!(
            "usage: tunnels bench [--counts 1000,10000] [--user-runs N] [--append-json FILE]\n\
             \x20      tunnels agents --proxy ADDR --auth ADDR --token T --pin P --count N"
        ),
    }
}

/// Raises this process's open-files limit (both soft and hard as root, else the soft one
/// to the hard one); children inherit it.
fn raise_open_files() -> u64 {
    use rlimit::Resource;
    if Resource::NOFILE.set(OPEN_FILES, OPEN_FILES).is_err() {
        let _ = rlimit::increase_nofile_limit(OPEN_FILES);
    }
    Resource::NOFILE.get().map_or(0, |(soft, _)| soft)
}

// ---------------------------------------------------------------------------------------
// The load tool.

struct AgentArgs {
    proxy: String,
    auth: String,
    token: String,
    pin: String,
    count: usize,
}

impl AgentArgs {
    fn parse(mut args: impl Iterator<Item = String>) -> AgentArgs {
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
        AgentArgs {
            proxy: proxy.expect("--proxy ADDR"),
            auth: auth.expect("--auth ADDR"),
            token: token.expect("--token T"),
            pin: pin.expect("--pin P"),
            count: count.expect("--count N"),
        }
    }
}

/// The loopback source address of simulated host `i`: 127.1.0.0 + i.
fn source_ip(i: usize) -> IpAddr {
    let base = u32::from(Ipv4Addr::new(127, 1, 0, 0));
    IpAddr::V4(Ipv4Addr::from(base + u32::try_from(i).unwrap()))
}

/// Counts the tunnel code's "cannot open a reverse tunnel" warnings: failed dials.
struct FailedDials(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for FailedDials {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}") == "cannot open a reverse tunnel";
                }
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut message = Message(false);
            event.record(&mut message);
            if message.0 {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[tokio::main]
async fn agents(args: AgentArgs) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    raise_open_files();
    let failed_dials = Arc::new(AtomicUsize::new(0));
    tracing_subscriber::registry()
        .with(FailedDials(failed_dials.clone()))
        .init();
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
        tokio::spawn(async move {
            let local_ip = Some(source_ip(i));
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
            let now = !state.lock().unwrap().tunnels().is_empty();
            if *was && !now {
                drops += 1;
            }
            *was = now;
            up += usize::from(now);
        }
        println!(
            "up={up} joined={} join_failures={} drops={drops} failed_attempts={}",
            joined.load(Ordering::Relaxed),
            join_failures.load(Ordering::Relaxed),
            failed_dials.load(Ordering::Relaxed),
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

/// What the load tool last printed, and when.
#[derive(Debug, Clone, Copy, Default)]
struct AgentsLine {
    up: usize,
    joined: usize,
    join_failures: usize,
    drops: usize,
    failed_attempts: usize,
}

impl AgentsLine {
    fn parse(line: &str) -> Option<AgentsLine> {
        let mut parsed = AgentsLine::default();
        for pair in line.split_whitespace() {
            let (key, value) = pair.split_once('=')?;
            let value: usize = value.parse().ok()?;
            match key {
                "up" => parsed.up = value,
                "joined" => parsed.joined = value,
                "join_failures" => parsed.join_failures = value,
                "drops" => parsed.drops = value,
                "failed_attempts" => parsed.failed_attempts = value,
                _ => {}
            }
        }
        Some(parsed)
    }
}

/// The load tool as a child process, its status lines read by a thread.
struct Agents {
    process: Process,
    history: Arc<Mutex<Vec<(Instant, AgentsLine)>>>,
}

impl Agents {
    fn latest(&self) -> AgentsLine {
        self.history
            .lock()
            .unwrap()
            .last()
            .map(|(_, line)| *line)
            .unwrap_or_default()
    }

    /// The first line at or after `since` that says all `count` are up, after one that
    /// said fewer.
    fn back_at(&self, since: Instant, count: usize) -> Option<(Instant, AgentsLine)> {
        let history = self.history.lock().unwrap();
        let mut seen_down = false;
        for (at, line) in history.iter().filter(|(at, _)| *at >= since) {
            if line.up < count {
                seen_down = true;
            } else if seen_down {
                return Some((*at, *line));
            }
        }
        None
    }
}

/// A `jumpgate start -c CONFIG`, its output appended to `LOG`.
fn start_jumpgate(bins: &Bins, config: &Path, log: &Path, name: &str) -> Process {
    Process::spawn_appending(
        bins.jumpgate().arg("start").arg("-c").arg(config),
        name,
        log,
    )
    .stop_gracefully_on_drop(Duration::from_secs(5))
}

/// SIGTERM, then wait for the exit; returns how long the exit took.
fn terminate(process: &mut Process) -> Duration {
    let (_, took) = process
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{} did not exit within 30 s of SIGTERM", process.name));
    took
}

/// When a user connection started (since the SIGTERM) and how it went.
type UserSample = (Duration, Result<Duration, String>);

/// One `jsh ssh jgbench@bench-agent true`: its wall time, or why it failed.
fn user_connection(jsh: &Path, home: &Path) -> Result<Duration, String> {
    let started = Instant::now();
    let mut child = Command::new(jsh)
        .env("JUMPGATE_HOME", home)
        .args(["ssh", &format!("{LOGIN}@{AGENT}"), "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let elapsed = started.elapsed();
            if status.success() {
                return Ok(elapsed);
            }
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
            }
            return Err(err.trim().to_string());
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("no answer within 30 s".to_string());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The `q`-quantile (0..=1) of `samples` by the nearest-rank method.
fn quantile(samples: &[Duration], q: f64) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
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

fn write_config(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

fn json_field(json: &str, field: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|err| panic!("not JSON ({err}):\n{json}"));
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {json}"))
        .to_string()
}

/// The whole measurement for one N; returns its JSON record.
#[allow(clippy::too_many_lines)]
fn measure(bins: &Bins, count: usize, user_runs: usize) -> serde_json::Value {
    let dir = tempfile::Builder::new()
        .prefix("jumpgate-bench-tunnels.")
        .tempdir()
        .unwrap();
    let dir = dir.path();
    let auth_data = dir.join("auth");
    let auth_addr = format!("127.0.0.1:{}", free_port());
    let auth_config = write_config(
        &dir.join("auth.yaml"),
        &format!(
            "version: v3\njumpgate:\n  data_dir: {}\nauth_service:\n  cluster_name: bench\n  listen_addr: {auth_addr}\n",
            auth_data.display()
        ),
    );
    let mut auth = start_jumpgate(bins, &auth_config, &dir.join("auth.log"), "auth daemon");
    wait_for("the auth service", Duration::from_secs(60), || {
        auth.check_alive();
        auth_data.join("admin/auth_addr").is_file()
    });
    let status = bins.jctl_ok(&auth_data, &["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let pin = status["ca_pins"][0].as_str().unwrap().to_string();
    let token_of = |kind: &str, reusable: bool| {
        let mut args = vec!["tokens", "add", "--type", kind, "--ttl", "4h"];
        if reusable {
            args.push("--reusable");
        }
        args.extend(["--format", "json"]);
        json_field(&bins.jctl_ok(&auth_data, &args), "token")
    };

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
    let mut child = Command::new(exe)
        .args(["agents", "--proxy", &proxy_addr, "--auth", &auth_addr])
        .args(["--token", &node_token, "--pin", &pin])
        .args(["--count", &count.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&agents_log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let history: Arc<Mutex<Vec<(Instant, AgentsLine)>>> = Arc::default();
    {
        let history = history.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(parsed) = AgentsLine::parse(&line) {
                    history.lock().unwrap().push((Instant::now(), parsed));
                }
            }
        });
    }
    let mut agents = Agents {
        process: Process::from_child(child, "tunnels agents", &agents_log)
            .stop_gracefully_on_drop(Duration::from_secs(5)),
        history,
    };
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
    let idle_cpu = cpu_over(&[proxy_pid, auth.child.id(), agents_pid], idle_window);
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
    let user_samples: Arc<Mutex<Vec<UserSample>>> = Arc::default();
    let stop_user = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let user_thread = {
        let (samples, stop_user) = (user_samples.clone(), stop_user.clone());
        let (jsh, home) = (bins.jsh.clone(), home.clone());
        std::thread::spawn(move || {
            while !stop_user.load(Ordering::Relaxed) {
                let at = sigterm.elapsed();
                let outcome = user_connection(&jsh, &home);
                let failed = outcome.is_err();
                samples.lock().unwrap().push((at, outcome));
                if failed {
                    // A failure comes back at once; don't spin.
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    };
    wait_for("the restarted proxy", Duration::from_secs(60), || {
        proxy_listening(&mut proxy)
    });
    let listening = Instant::now();
    let mut back = None;
    wait_for("all tunnels back", BACK_WITHIN, || {
        agents.process.check_alive();
        proxy.check_alive();
        back = agents.back_at(sigterm, count);
        back.is_some()
    });
    let (back_at, back_line) = back.unwrap();
    std::thread::sleep(Duration::from_secs(5));
    stop_user.store(true, Ordering::Relaxed);
    user_thread.join().unwrap();
    let samples = std::mem::take(&mut *user_samples.lock().unwrap());
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
