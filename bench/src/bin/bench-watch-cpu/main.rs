//! Idle CPU of a cluster with many nodes, before and after proxies and nodes followed
//! the cluster state with `Watch` streams instead of polling `GetResources` (commit
//! 7b221ec): two builds measured in one run by this one harness.
//!
//! `cargo build --release -p jumpgate --bins -p jumpgate-bench` in each tree (in trees
//! where jsh is its own package, add `-p jsh`), then (as
//! root: it raises the open-files limit for the processes it starts)
//! `target/release/bench-watch-cpu bench --before-bin-dir OLD/target/release
//!  --after-bin-dir target/release [--nodes 10000] [--tunnels N] [--proxies 3]
//!  [--idle-secs 300] [--settle-secs 30] [--heartbeats] [--append-json FILE]`
//!
//! Each `--*-bin-dir` holds that build's `jumpgate`, `jctl` and `bench-watch-cpu` (the
//! load tool must be the same build's: the before-build's runs the polling mirror). For
//! each build, before first, on loopback in a temporary directory (every process stopped
//! when dropped):
//! 1. an auth-only daemon (SQLite) listening on 0.0.0.0 (proxy k reaches it at
//!    127.0.0.(2+k), so that each proxy's connections to auth have their own 28,000
//!    ephemeral ports: the nodes' API connections are passed through the proxies);
//! 2. `--proxies` proxy-only daemons, each joined with its own proxy token;
//!    `tunnel_strategy` is `proxy_peering` with `agent_connection_count: 1`: each node
//!    keeps one tunnel, to its proxy. (With `agent_mesh` an agent reaches every proxy by
//!    dialling `proxy_server` again until a load balancer lands it on one it does not
//!    hold; without a load balancer the extra dials churn, and one would hold two more
//!    sockets per tunnel, where every process here may have 20,000 open files);
//! 3. the load tool, that build's `bench-watch-cpu agents` (see `agents.rs`), as several
//!    processes when one may not open enough files: `--nodes` simulated nodes, each a real
//!    join and the agent's caches through its proxy, the first `--tunnels` (default all)
//!    also running the real tunnel code;
//! 4. once every node has joined, every cache holds a first copy and every tunnel is up,
//!    `--settle-secs`, then over `--idle-secs` of idle: the CPU of auth, of each proxy and
//!    of the load tool (utime + stime from /proc, % of one core), auth's RSS at the end,
//!    and auth's cluster-state backend requests (`jumpgate_backend_requests_total` on its
//!    `/metrics`; no metric counts auth RPCs).
//!
//! Prints each figure before and after and the ratio after/before, then a `JSON:` line.
// A benchmark harness fails by panicking with the reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod agents;

use jumpgate_bench::procs::{clock_ticks, cpu_seconds, rss_kib};
use jumpgate_bench::{append_line, git_commit, load_average};
use jumpgate_test_support::{Bins, Process, free_port, http_get, wait_for};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("agents") => agents::agents(agents::AgentArgs::parse(args)),
        Some("bench") => bench(&BenchArgs::parse(args)),
        _ => panic!(
            "usage: bench-watch-cpu bench --before-bin-dir DIR --after-bin-dir DIR [--nodes N] \
             [--tunnels N] [--proxies P] [--idle-secs S] [--settle-secs S] [--heartbeats] \
             [--append-json FILE]\n\
             \x20      bench-watch-cpu agents --proxies ADDR,... --auth ADDR --token T --pin P [--first I] \
             --count N [--tunnels N] [--heartbeats]"
        ),
    }
}

struct BenchArgs {
    before: PathBuf,
    after: PathBuf,
    nodes: usize,
    tunnels: Option<usize>,
    proxies: usize,
    idle: Duration,
    settle: Duration,
    heartbeats: bool,
    append_json: Option<PathBuf>,
}

impl BenchArgs {
    fn parse(mut args: impl Iterator<Item = String>) -> BenchArgs {
        let (mut before, mut after) = (None, None);
        let mut parsed = BenchArgs {
            before: PathBuf::new(),
            after: PathBuf::new(),
            nodes: 10_000,
            tunnels: None,
            proxies: 3,
            idle: Duration::from_secs(300),
            settle: Duration::from_secs(30),
            heartbeats: false,
            append_json: None,
        };
        while let Some(flag) = args.next() {
            if flag == "--heartbeats" {
                parsed.heartbeats = true;
                continue;
            }
            let value = args
                .next()
                .unwrap_or_else(|| panic!("{flag} needs a value"));
            let secs = |value: &str| Duration::from_secs(value.parse().expect("seconds"));
            match flag.as_str() {
                "--before-bin-dir" => before = Some(PathBuf::from(value)),
                "--after-bin-dir" => after = Some(PathBuf::from(value)),
                "--nodes" => parsed.nodes = value.parse().expect("--nodes N"),
                "--tunnels" => parsed.tunnels = Some(value.parse().expect("--tunnels N")),
                "--proxies" => parsed.proxies = value.parse().expect("--proxies P"),
                "--idle-secs" => parsed.idle = secs(&value),
                "--settle-secs" => parsed.settle = secs(&value),
                "--append-json" => parsed.append_json = Some(value.into()),
                other => panic!("unknown option {other}"),
            }
        }
        parsed.before = before.expect("--before-bin-dir DIR");
        parsed.after = after.expect("--after-bin-dir DIR");
        assert!(
            (1..=60_000).contains(&parsed.nodes),
            "--nodes: between 1 and 60000 (one loopback address per node)"
        );
        assert!(
            (1..=250).contains(&parsed.proxies),
            "--proxies: between 1 and 250"
        );
        parsed
    }

    fn tunnels(&self) -> usize {
        self.tunnels.unwrap_or(self.nodes).min(self.nodes)
    }
}

/// One build's binaries: the daemon, `jctl` and the load tool.
struct Build {
    label: &'static str,
    dir: PathBuf,
    bins: Bins,
    load_tool: PathBuf,
}

impl Build {
    fn new(label: &'static str, dir: &Path) -> Build {
        let binary = |name: &str| {
            let path = dir.join(name);
            assert!(
                path.is_file(),
                "{} is missing: `cargo build --release -p jumpgate --bins -p jumpgate-bench` in that tree (plus `-p jsh` where jsh is its own package)",
                path.display()
            );
            path.canonicalize().unwrap()
        };
        Build {
            label,
            dir: dir.canonicalize().unwrap(),
            bins: Bins::new(binary("jumpgate"), binary("jctl"), binary("jsh")),
            load_tool: binary("bench-watch-cpu"),
        }
    }
}

/// What the load tool last printed.
#[derive(Debug, Clone, Copy, Default)]
struct LoadLine {
    joined: usize,
    join_failures: usize,
    cached: usize,
    tunnels: usize,
}

impl LoadLine {
    fn parse(line: &str) -> Option<LoadLine> {
        let mut parsed = LoadLine::default();
        for pair in line.split_whitespace() {
            let (key, value) = pair.split_once('=')?;
            let value: usize = value.parse().ok()?;
            match key {
                "joined" => parsed.joined = value,
                "join_failures" => parsed.join_failures = value,
                "cached" => parsed.cached = value,
                "tunnels" => parsed.tunnels = value,
                _ => {}
            }
        }
        Some(parsed)
    }
}

/// A `jumpgate start -c CONFIG`, its output in `LOG`.
fn start_jumpgate(bins: &Bins, config: &Path, log: &Path, name: &str) -> Process {
    Process::spawn(
        bins.jumpgate().arg("start").arg("-c").arg(config),
        name,
        log,
    )
    .stop_gracefully_on_drop(Duration::from_secs(10))
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

/// A port nothing holds on any address (auth listens on 0.0.0.0, where a port a
/// loopback connection of the other build's run still holds is taken).
fn free_port_on_every_address() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The sum of every sample of `metric` (all label sets) in a Prometheus text page.
fn metric_sum(page: &str, metric: &str) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, value| sum + value)
}

/// The daemon's `/metrics` page on diagnostics port `port` (empty when it does not answer).
fn metrics(port: u16) -> String {
    http_get(port, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default()
}

/// CPU seconds of each of `pids` over `window`.
fn cpu_over(pids: &[u32], window: Duration) -> Vec<f64> {
    let ticks = clock_ticks();
    let read = || -> Vec<f64> {
        pids.iter()
            .map(|pid| cpu_seconds(&pid.to_string(), ticks))
            .collect()
    };
    let before = read();
    std::thread::sleep(window);
    read()
        .into_iter()
        .zip(before)
        .map(|(after, before)| after - before)
        .collect()
}

/// Open files a load tool's node holds at most: a connection per cache (3, after the
/// change) and its tunnel.
const FILES_PER_NODE: usize = 3 + 1;

/// How many nodes one load tool simulates: as many as its open-files limit allows, less
/// a margin.
fn nodes_per_load_tool() -> usize {
    let limit = usize::try_from(agents::raise_open_files()).unwrap();
    (limit.saturating_sub(1000) / FILES_PER_NODE).max(1)
}

/// What a load tool is told.
struct LoadToolArgs<'a> {
    proxies: &'a [String],
    auth: &'a str,
    token: &'a str,
    pin: &'a str,
    first: usize,
    count: usize,
    tunnels: usize,
    heartbeats: bool,
}

/// One load tool process (a build's `bench-watch-cpu agents`), its last status line read
/// by a thread.
struct LoadTool {
    process: Process,
    latest: Arc<Mutex<LoadLine>>,
}

impl LoadTool {
    fn start(build: &Build, args: &LoadToolArgs<'_>, log: &Path) -> LoadTool {
        let mut command = Command::new(&build.load_tool);
        command
            .arg("agents")
            .args(["--proxies", &args.proxies.join(",")])
            .args([
                "--auth", args.auth, "--token", args.token, "--pin", args.pin,
            ])
            .args(["--first", &args.first.to_string()])
            .args(["--count", &args.count.to_string()])
            .args(["--tunnels", &args.tunnels.to_string()]);
        if args.heartbeats {
            command.arg("--heartbeats");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let latest: Arc<Mutex<LoadLine>> = Arc::default();
        {
            let latest = latest.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(parsed) = LoadLine::parse(&line) {
                        *latest.lock().unwrap() = parsed;
                    }
                }
            });
        }
        LoadTool {
            process: Process::from_child(child, "load tool", log)
                .stop_gracefully_on_drop(Duration::from_secs(5)),
            latest,
        }
    }
}

/// Starts one build's cluster and load tool, waits for every cache and tunnel, and
/// measures the idle window; returns its JSON record.
#[allow(clippy::too_many_lines)]
fn measure(build: &Build, args: &BenchArgs) -> serde_json::Value {
    let label = build.label;
    let bins = &build.bins;
    let dir = tempfile::Builder::new()
        .prefix("jumpgate-bench-watch-cpu.")
        .tempdir()
        .unwrap();
    let dir = dir.path();
    let auth_data = dir.join("auth");
    let auth_port = free_port_on_every_address();
    let auth_diag = free_port();
    let auth_config = write_config(
        &dir.join("auth.yaml"),
        &format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  diag_addr: 127.0.0.1:{auth_diag}\n\
             auth_service:\n  cluster_name: bench\n  listen_addr: 0.0.0.0:{auth_port}\n  \
             tunnel_strategy:\n    type: proxy_peering\n    agent_connection_count: 1\n",
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

    let mut proxies = Vec::new();
    let mut proxy_addrs = Vec::new();
    let mut proxy_diags = Vec::new();
    for k in 0..args.proxies {
        let data = dir.join(format!("proxy{k}"));
        let addr = format!("127.0.0.1:{}", free_port());
        let diag = free_port();
        let config = write_config(
            &dir.join(format!("proxy{k}.yaml")),
            &format!(
                "version: v3\njumpgate:\n  data_dir: {}\n  nodename: bench-proxy-{k}\n  \
                 diag_addr: 127.0.0.1:{diag}\n  auth_server: 127.0.0.{}:{auth_port}\n  \
                 auth_token: \"{}\"\n  ca_pin: \"{pin}\"\nproxy_service:\n  \
                 web_listen_addr: {addr}\n  peer_listen_addr: 127.0.0.1:{}\n",
                data.display(),
                2 + k,
                token_of("proxy", false),
                free_port()
            ),
        );
        let mut proxy = start_jumpgate(
            bins,
            &config,
            &dir.join(format!("proxy{k}.log")),
            &format!("proxy daemon {k}"),
        );
        wait_for("a proxy", Duration::from_secs(60), || {
            proxy.check_alive();
            data.join("proxy_addr").is_file()
        });
        proxies.push(proxy);
        proxy_addrs.push(addr);
        proxy_diags.push(diag);
    }

    // The load tools, this build's, each with as many nodes as its open files allow.
    let count = args.nodes;
    let tunnels = args.tunnels();
    let want_tunnels = tunnels;
    let node_token = token_of("node", true);
    let mut loads: Vec<LoadTool> = Vec::new();
    let per_process = nodes_per_load_tool();
    let mut first = 0;
    while first < count {
        let share = per_process.min(count - first);
        loads.push(LoadTool::start(
            build,
            &LoadToolArgs {
                proxies: &proxy_addrs,
                auth: &format!("127.0.0.1:{auth_port}"),
                token: &node_token,
                pin: &pin,
                first,
                count: share,
                tunnels,
                heartbeats: args.heartbeats,
            },
            &dir.join(format!("load{}.log", loads.len())),
        ));
        first += share;
    }
    let total = |loads: &[LoadTool]| {
        loads.iter().fold(LoadLine::default(), |sum, load| {
            let line = *load.latest.lock().unwrap();
            LoadLine {
                joined: sum.joined + line.joined,
                join_failures: sum.join_failures + line.join_failures,
                cached: sum.cached + line.cached,
                tunnels: sum.tunnels + line.tunnels,
            }
        })
    };
    let started = Instant::now();
    let ready_within = Duration::from_secs(120 + 60 * u64::try_from(count / 1000).unwrap());
    let mut last_report = Instant::now();
    wait_for(
        "every node joined, cached and tunnelled",
        ready_within,
        || {
            loads.iter_mut().for_each(|load| load.process.check_alive());
            auth.check_alive();
            proxies.iter_mut().for_each(Process::check_alive);
            let line = total(&loads);
            if last_report.elapsed() > Duration::from_secs(15) {
                last_report = Instant::now();
                println!(
                    "[{label}] {:.0} s: joined {}/{count}, cached {}/{count}, tunnels {}/{want_tunnels}",
                    started.elapsed().as_secs_f64(),
                    line.joined,
                    line.cached,
                    line.tunnels
                );
            }
            line.joined == count && line.cached == count && line.tunnels == want_tunnels
        },
    );
    let ready_after = started.elapsed();
    let at_ready = total(&loads);
    println!(
        "[{label}] {count} nodes joined, caches loaded, {want_tunnels} tunnels up after {:.1} s \
         ({} join failures); settling {} s, then measuring {} s of idle",
        ready_after.as_secs_f64(),
        at_ready.join_failures,
        args.settle.as_secs(),
        args.idle.as_secs()
    );
    std::thread::sleep(args.settle);

    let auth_metrics_before = metrics(auth_diag);
    let mut pids = vec![auth.id()];
    pids.extend(proxies.iter().map(Process::id));
    pids.extend(loads.iter().map(|load| load.process.id()));
    let cpu = cpu_over(&pids, args.idle);
    let auth_metrics_after = metrics(auth_diag);
    let share = |seconds: f64| seconds / args.idle.as_secs_f64() * 100.0;
    let auth_cpu = share(cpu[0]);
    let proxy_cpu: Vec<f64> = cpu[1..=args.proxies].iter().map(|s| share(*s)).collect();
    let load_cpu = share(cpu[args.proxies + 1..].iter().sum());
    let auth_rss = rss_kib(auth.id());
    let proxy_rss: Vec<u64> = proxies.iter().map(|p| rss_kib(p.id())).collect();
    let load_rss: u64 = loads.iter().map(|load| rss_kib(load.process.id())).sum();
    let at_end = total(&loads);
    let backend_requests = metric_sum(&auth_metrics_after, "jumpgate_backend_requests_total")
        - metric_sum(&auth_metrics_before, "jumpgate_backend_requests_total");
    let watch_streams = metric_sum(&auth_metrics_after, "jumpgate_watch_streams");
    let proxy_tunnels: Vec<f64> = proxy_diags
        .iter()
        .map(|port| metric_sum(&metrics(*port), "jumpgate_reverse_tunnels_connected"))
        .collect();
    // Every process must have lived through the window.
    loads.iter_mut().for_each(|load| load.process.check_alive());
    auth.check_alive();
    proxies.iter_mut().for_each(Process::check_alive);
    let warnings = |path: &Path| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("WARN"))
            .count()
    };
    let auth_warnings = warnings(&dir.join("auth.log"));
    let proxy_warnings: usize = (0..args.proxies)
        .map(|k| warnings(&dir.join(format!("proxy{k}.log"))))
        .sum();
    println!(
        "[{label}] idle {} s: auth {auth_cpu:.1}%, proxies {}, load tool {load_cpu:.1}% of one core; \
         auth RSS {auth_rss} KiB; auth backend requests {:.1}/s; at the end cached {}/{count}, \
         tunnels {}/{want_tunnels}",
        args.idle.as_secs(),
        proxy_cpu
            .iter()
            .map(|c| format!("{c:.1}%"))
            .collect::<Vec<_>>()
            .join(" "),
        backend_requests / args.idle.as_secs_f64(),
        at_end.cached,
        at_end.tunnels,
    );
    let load_tools = loads.len();
    drop(loads);
    drop(proxies);
    drop(auth);
    serde_json::json!({
        "bin_dir": build.dir.display().to_string(),
        "ready_after_s": ready_after.as_secs_f64(),
        "join_failures": at_ready.join_failures,
        "cpu_percent_of_one_core": {
            "auth": auth_cpu,
            "proxies": proxy_cpu,
            "proxies_total": proxy_cpu.iter().sum::<f64>(),
            "load_tool": load_cpu,
        },
        "load_tool_processes": load_tools,
        "rss_kib": { "auth": auth_rss, "proxies": proxy_rss, "load_tool": load_rss },
        "auth_backend_requests_per_s": backend_requests / args.idle.as_secs_f64(),
        "auth_watch_streams": watch_streams,
        "proxy_tunnels_connected": proxy_tunnels,
        "at_end": { "cached": at_end.cached, "tunnels": at_end.tunnels },
        "log_warnings": { "auth": auth_warnings, "proxies": proxy_warnings },
    })
}

/// after / before, or `None` when before is 0.
fn ratio(before: f64, after: f64) -> Option<f64> {
    (before > 0.0).then(|| after / before)
}

fn bench(args: &BenchArgs) {
    // Each daemon raises its soft open-files limit to the hard one, which only root with
    // CAP_SYS_RESOURCE can raise: auth holds a connection per cache of every node, a
    // proxy two per cache of its nodes and a tunnel per node.
    let limit = usize::try_from(agents::raise_open_files()).unwrap();
    let auth_files = 3 * args.nodes + 1000;
    let proxy_files = args.nodes.div_ceil(args.proxies) * (3 * 2 + 1) + 1000;
    assert!(
        auth_files <= limit && proxy_files <= limit,
        "{} nodes need about {auth_files} open files in auth and {proxy_files} in each proxy, \
         the open-files limit here is {limit} (raise `ulimit -Hn` as root with \
         CAP_SYS_RESOURCE, or measure fewer nodes)",
        args.nodes
    );
    let builds = [
        Build::new("before", &args.before),
        Build::new("after", &args.after),
    ];
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let load_before = load_average();
    let records: Vec<serde_json::Value> = builds
        .iter()
        .enumerate()
        .map(|(at, build)| {
            if at > 0 {
                // The previous build's connections close; its CPU is not this one's.
                std::thread::sleep(Duration::from_secs(10));
            }
            measure(build, args)
        })
        .collect();
    let (before, after) = (&records[0], &records[1]);
    let figure = |record: &serde_json::Value, path: &[&str]| -> f64 {
        let mut value = record;
        for key in path {
            value = &value[*key];
        }
        value.as_f64().unwrap_or(0.0)
    };
    let rows: [(&str, &[&str], &str); 5] = [
        (
            "auth CPU %",
            &["cpu_percent_of_one_core", "auth"],
            "auth_cpu",
        ),
        (
            "proxies CPU % (sum)",
            &["cpu_percent_of_one_core", "proxies_total"],
            "proxies_cpu",
        ),
        (
            "load tool CPU %",
            &["cpu_percent_of_one_core", "load_tool"],
            "load_tool_cpu",
        ),
        ("auth RSS KiB", &["rss_kib", "auth"], "auth_rss"),
        (
            "auth backend requests/s",
            &["auth_backend_requests_per_s"],
            "auth_backend_requests",
        ),
    ];
    let mut ratios = serde_json::Map::new();
    println!();
    println!(
        "{} nodes, {} with a tunnel, {} proxies (proxy_peering), idle {} s{}:",
        args.nodes,
        args.tunnels(),
        args.proxies,
        args.idle.as_secs(),
        if args.heartbeats {
            ", with heartbeats"
        } else {
            ""
        }
    );
    println!(
        "{:<26} {:>12} {:>12} {:>12}",
        "", "before", "after", "after/before"
    );
    let mut print_row = |name: &str, before: f64, after: f64, key: &str| {
        let r = ratio(before, after);
        println!(
            "{name:<26} {before:>12.1} {after:>12.1} {:>12}",
            r.map_or_else(|| "-".to_string(), |r| format!("{r:.3}"))
        );
        ratios.insert(key.to_string(), serde_json::json!(r));
    };
    for (name, path, key) in rows {
        print_row(name, figure(before, path), figure(after, path), key);
    }
    for k in 0..args.proxies {
        let of = |record: &serde_json::Value| {
            record["cpu_percent_of_one_core"]["proxies"][k]
                .as_f64()
                .unwrap_or(0.0)
        };
        print_row(
            &format!("proxy {k} CPU %"),
            of(before),
            of(after),
            &format!("proxy_{k}_cpu"),
        );
    }
    let record = serde_json::json!({
        "bench": "watch_cpu",
        "date": date,
        "commit": git_commit(),
        "command": format!(
            "target/release/bench-watch-cpu bench --before-bin-dir {} --after-bin-dir {} --nodes {} \
             --tunnels {} --proxies {} --idle-secs {} --settle-secs {}{}",
            args.before.display(),
            args.after.display(),
            args.nodes,
            args.tunnels(),
            args.proxies,
            args.idle.as_secs(),
            args.settle.as_secs(),
            if args.heartbeats { " --heartbeats" } else { "" }
        ),
        "load_average_before": load_before,
        "nodes": args.nodes,
        "tunnelled_nodes": args.tunnels(),
        "proxies": args.proxies,
        "tunnel_strategy": "proxy_peering, agent_connection_count 1",
        "heartbeats": args.heartbeats,
        "idle_s": args.idle.as_secs(),
        "before": before,
        "after": after,
        "ratio_after_before": ratios,
    });
    let line = serde_json::to_string(&record).unwrap();
    println!();
    println!("JSON: {line}");
    if let Some(path) = &args.append_json {
        append_line(path, &line);
    }
}
