//! The agents' reconnect storm when one proxy of three is killed (issue 16: "all back
//! within 10 s with jittered backoff, no error storm").
//!
//! `cargo build --release -p jumpgate -p jsh -p jumpgate-bench`
//! `target/release/bench-storm [--count 1000] [--back-within 60] [--append-json FILE]`
//!
//! Must run as root (open-files limits; the real agent runs sessions as `jgbench`). On
//! loopback in a temporary directory, every process stopped when dropped:
//! 1. an auth-only daemon with `tunnel_strategy: {type: proxy_peering,
//!    agent_connection_count: 2}`, three proxy-only daemons (`proxy_protocol: on`, each
//!    with its own `peer_listen_addr`), HAProxy in front of them (TCP mode, round robin,
//!    `send-proxy-v2`, health checks every 500 ms), one real agent daemon and a user
//!    `alice`, both knowing only the HAProxy address;
//! 2. the load tool (`bench-tunnels agents --want 2`, the sibling binary): N simulated
//!    hosts, each a real join from its own loopback address, then the real agent's own
//!    tunnel pool (`jumpgate_node::tunnel::run_from`), which keeps as many tunnels to
//!    distinct proxies as the proxies' discovery asks for, through HAProxy only;
//! 3. once every host holds 2 tunnels and 5 s have passed: `kill -9` of the proxy holding
//!    the most tunnels, and measured from the kill: when the hosts noticed, when every
//!    host again held 2 tunnels, all on the survivors (given up after `--back-within`
//!    seconds), the failed tunnel dials (total, per second, the most of any one host),
//!    the WARN events of the hosts and the WARN lines of the surviving proxies per
//!    second, the hosts that were ever left with no tunnel, and `jsh ssh
//!    jgbench@bench-agent true` run back to back from the kill until 5 s after all were
//!    back (tries, failures, p50/p99 of the successes).
// A benchmark harness fails by panicking with the reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_bench::procs::{add_user_and_login, ensure_login_user};
use jumpgate_bench::tunnels::{
    Agents, AgentsLine, AgentsSpec, BenchAuth, UserLoop, quantile, raise_open_files,
    start_jumpgate, user_connection, write_config,
};
use jumpgate_bench::{append_line, git_commit, load_average, ms, ms_or_dash};
use jumpgate_test_support::{Bins, Process, free_port, wait_for};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const PROXIES: usize = 3;
/// `agent_connection_count`: tunnels each agent keeps to distinct proxies.
const CONNECTIONS: usize = 2;
/// How long all tunnels stay up before the kill.
const SETTLE: Duration = Duration::from_secs(5);
/// How long user connections go on after all are back.
const AFTER_BACK: Duration = Duration::from_secs(5);
/// HAProxy's connection limit: every tunnel is one, with room for users and retries. It
/// needs two open files per connection, under the hard limit this process runs with
/// (20,000 in this project's container).
const HAPROXY_MAXCONN: usize = 8_000;

struct Args {
    count: usize,
    back_within: Duration,
    append_json: Option<PathBuf>,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Args {
        let mut parsed = Args {
            count: 1000,
            back_within: Duration::from_secs(60),
            append_json: None,
        };
        while let Some(flag) = args.next() {
            let value = args.next().unwrap_or_else(|| {
                panic!(
                    "{flag} needs a value\n\
                     usage: bench-storm [--count 1000] [--back-within 60] [--append-json FILE]"
                )
            });
            match flag.as_str() {
                "--count" => parsed.count = value.parse().expect("--count N"),
                "--back-within" => {
                    parsed.back_within =
                        Duration::from_secs(value.parse().expect("--back-within SECONDS"));
                }
                "--append-json" => parsed.append_json = Some(value.into()),
                other => panic!("unknown option {other}"),
            }
        }
        assert!(
            (1..=HAPROXY_MAXCONN / 4).contains(&parsed.count),
            "--count: between 1 and {} (one loopback address per agent, {CONNECTIONS} tunnels \
             each through HAProxy)",
            HAPROXY_MAXCONN / 4
        );
        parsed
    }
}

fn main() {
    let args = Args::parse(std::env::args().skip(1));
    let limit = raise_open_files();
    let needed = u64::try_from(args.count * CONNECTIONS * 2).unwrap() + 1024;
    assert!(
        limit >= needed,
        "the open-files limit is {limit}, {needed} are needed: run as root (or raise `ulimit -Hn`)"
    );
    ensure_login_user();
    let bins = Bins::release();
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let load_before = load_average();
    let result = measure(&bins, &args);
    let record = serde_json::json!({
        "bench": "storm",
        "date": date,
        "commit": git_commit(),
        "command": format!(
            "target/release/bench-storm --count {} --back-within {}",
            args.count,
            args.back_within.as_secs()
        ),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "result": result,
    });
    let line = serde_json::to_string(&record).unwrap();
    println!();
    println!("JSON: {line}");
    if let Some(path) = &args.append_json {
        append_line(path, &line);
    }
}

/// A proxy daemon and what names it.
struct Proxy {
    process: Process,
    /// Its identity name (host UUID): what agents' tunnel lists say.
    name: String,
    log: PathBuf,
}

impl Proxy {
    fn warn_lines(&self) -> usize {
        warn_lines(&self.log)
    }
}

fn warn_lines(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(" WARN "))
        .count()
}

/// The WARN lines of each log after its first `skip`, counted by what they say (`target:
/// message`, without the fields), most frequent first.
fn warn_messages(logs: &[(&Path, usize)]) -> Vec<(String, usize)> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for (log, skip) in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let warns = text
            .lines()
            .filter_map(|line| line.split_once(" WARN ").map(|(_, rest)| rest));
        for rest in warns.skip(*skip) {
            *counts.entry(warn_message(rest)).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    counts
}

/// What a log line says after its level: past the spans (`conn{client=... node=...}:`),
/// the target and the message, without the fields after them.
fn warn_message(rest: &str) -> String {
    let mut depth = 0usize;
    let mut words = Vec::new();
    for word in rest.split_whitespace() {
        let in_span = depth > 0 || word.contains('{');
        depth = (depth + word.matches('{').count()).saturating_sub(word.matches('}').count());
        if in_span {
            continue;
        }
        if word.contains('=') {
            break;
        }
        words.push(word);
    }
    words.join(" ")
}

/// HAProxy in TCP mode in front of `proxies`, with the PROXY protocol v2 and health
/// checks as docs/high-availability.md runs it; killed on drop.
fn start_haproxy(dir: &Path, port: u16, proxies: &[String]) -> Process {
    let servers: String = proxies
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            format!("  server p{i} {addr} check inter 500ms fall 2 rise 1 send-proxy-v2\n")
        })
        .collect();
    let config = format!(
        "global\n  maxconn {HAPROXY_MAXCONN}\n  log stderr format raw local0\n\
         defaults\n  mode tcp\n  maxconn {HAPROXY_MAXCONN}\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n\
         frontend proxies\n  bind 127.0.0.1:{port}\n  default_backend all\n\
         backend all\n  balance roundrobin\n  option redispatch\n  retries 2\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let program = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|path| Path::new(path).is_file())
        .expect("HAProxy is needed: apt-get install haproxy");
    let mut haproxy = Process::spawn(
        Command::new(program).arg("-db").arg("-f").arg(&path),
        "haproxy",
        &dir.join("haproxy.log"),
    );
    wait_for("HAProxy listening", Duration::from_secs(10), || {
        haproxy.check_alive();
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    haproxy
}

/// Per-second increases of `counter` over whole seconds from `from` (the last line at or
/// before each second's end, against the one before its start).
fn per_second(
    lines: &[(Instant, AgentsLine)],
    from: Instant,
    seconds: usize,
    counter: impl Fn(&AgentsLine) -> usize,
) -> Vec<usize> {
    let at = |t: Instant| {
        lines
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .or(lines.first())
            .map_or(0, |(_, line)| counter(line))
    };
    (0..seconds)
        .map(|s| {
            let start = from + Duration::from_secs(s as u64);
            at(start + Duration::from_secs(1)).saturating_sub(at(start))
        })
        .collect()
}

fn held_by(line: &AgentsLine, proxy: &str) -> usize {
    line.holders
        .iter()
        .find(|(name, _)| name == proxy)
        .map_or(0, |(_, count)| *count)
}

fn holders_json(line: &AgentsLine, names: &[(String, String)]) -> serde_json::Value {
    let label = |name: &str| {
        names
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| name.to_string(), |(_, label)| label.clone())
    };
    line.holders
        .iter()
        .map(|(name, count)| (label(name), serde_json::json!(count)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The whole scenario; returns its JSON record.
#[allow(clippy::too_many_lines)]
fn measure(bins: &Bins, args: &Args) -> serde_json::Value {
    let count = args.count;
    let dir = tempfile::Builder::new()
        .prefix("jumpgate-bench-storm.")
        .tempdir()
        .unwrap();
    let dir = dir.path();
    let auth = BenchAuth::start(
        bins,
        dir,
        &format!(
            "  tunnel_strategy:\n    type: proxy_peering\n    agent_connection_count: {CONNECTIONS}\nproxy_service:\n  enabled: false\nssh_service:\n  enabled: false\n"
        ),
    );
    let (auth_data, auth_addr, pin) = (auth.data.clone(), auth.addr.clone(), auth.pin.clone());
    let token_of = |kind: &str| auth.token(bins, kind, true);
    let proxy_token = token_of("proxy");
    let node_token = token_of("node");
    let lb_port = free_port();
    let lb = format!("127.0.0.1:{lb_port}");

    let mut proxies: Vec<Proxy> = Vec::new();
    let mut proxy_addrs: Vec<String> = Vec::new();
    for i in 1..=PROXIES {
        let data = dir.join(format!("proxy-{i}"));
        let addr = format!("127.0.0.1:{}", free_port());
        let config = write_config(
            &dir.join(format!("proxy-{i}.yaml")),
            &format!(
                "version: v3\njumpgate:\n  data_dir: {}\n  nodename: bench-proxy-{i}\n  auth_server: {auth_addr}\n  auth_token: \"{proxy_token}\"\n  ca_pin: \"{pin}\"\nauth_service:\n  enabled: false\nproxy_service:\n  web_listen_addr: {addr}\n  public_addr: {lb}\n  peer_listen_addr: 127.0.0.1:{}\n  proxy_protocol: on\n  proxy_protocol_trusted_cidrs: [\"127.0.0.1/32\"]\nssh_service:\n  enabled: false\n",
                data.display(),
                free_port()
            ),
        );
        let log = dir.join(format!("proxy-{i}.log"));
        let mut process = start_jumpgate(bins, &config, &log, &format!("proxy-{i}"));
        wait_for(
            &format!("proxy-{i} listening"),
            Duration::from_secs(60),
            || {
                process.check_alive();
                data.join("proxy_addr").is_file() && data.join("host_uuid").is_file()
            },
        );
        let name = std::fs::read_to_string(data.join("host_uuid"))
            .unwrap()
            .trim()
            .to_string();
        proxies.push(Proxy { process, name, log });
        proxy_addrs.push(addr);
    }
    let names: Vec<(String, String)> = proxies
        .iter()
        .enumerate()
        .map(|(i, proxy)| (proxy.name.clone(), format!("proxy-{}", i + 1)))
        .collect();
    let mut haproxy = start_haproxy(dir, lb_port, &proxy_addrs);

    let agent_config = write_config(
        &dir.join("agent.yaml"),
        &format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: {}\n  proxy_server: {lb}\n  auth_token: \"{node_token}\"\n  ca_pin: \"{pin}\"\nssh_service: {{}}\n",
            dir.join("agent").display(),
            jumpgate_bench::tunnels::AGENT,
        ),
    );
    let mut agent = start_jumpgate(bins, &agent_config, &dir.join("agent.log"), "agent daemon");
    let home = dir.join("jsh-home");
    add_user_and_login(bins, &auth_data, "alice", &lb, &home);
    wait_for(
        "jsh ssh to the real agent through HAProxy",
        Duration::from_secs(60),
        || {
            agent.check_alive();
            user_connection(&bins.jsh, &home).is_ok()
        },
    );

    // The load tool, the sibling binary.
    let exe = std::env::current_exe()
        .unwrap()
        .with_file_name("bench-tunnels");
    let mut agents = Agents::spawn(&AgentsSpec {
        exe: &exe,
        proxy: &lb,
        auth: &auth_addr,
        token: &node_token,
        pin: &pin,
        count,
        want: CONNECTIONS,
        log: &dir.join("agents.log"),
    });
    let started = Instant::now();
    let join_timeout = Duration::from_secs(90 + 30 * u64::try_from(count / 1000).unwrap());
    wait_for(
        &format!("all {count} hosts holding {CONNECTIONS} tunnels"),
        join_timeout,
        || {
            agents.process.check_alive();
            haproxy.check_alive();
            agents.latest().full == count
        },
    );
    let all_up_after = started.elapsed();
    std::thread::sleep(SETTLE);
    let before = agents.latest();
    assert_eq!(
        before.full, count,
        "not all hosts kept {CONNECTIONS} tunnels while idle: {before:?}"
    );
    println!(
        "N={count}: all {count} joined with {CONNECTIONS} tunnels each after {:.1} s ({} join \
         failures); tunnels per proxy: {}",
        all_up_after.as_secs_f64(),
        before.join_failures,
        holders_json(&before, &names)
    );

    // The kill: the proxy holding the most tunnels.
    let victim_index = (0..proxies.len())
        .max_by_key(|&i| held_by(&before, &proxies[i].name))
        .unwrap();
    let victim_tunnels = held_by(&before, &proxies[victim_index].name);
    let mut victim = proxies.remove(victim_index);
    let victim_label = format!("proxy-{}", victim_index + 1);
    let mut survivors = proxies;
    let survivor_warns_each: Vec<usize> = survivors.iter().map(Proxy::warn_lines).collect();
    let survivor_warns_before: usize = survivor_warns_each.iter().sum();
    agents.mark();
    let killed = Instant::now();
    victim.process.child.kill().unwrap();
    let _ = victim.process.child.wait();
    let users = UserLoop::start(&bins.jsh, &home, killed);
    let victim_name = victim.name.clone();
    let back_on_survivors =
        |line: &AgentsLine| line.full == count && held_by(line, &victim_name) == 0;
    // The survivors' WARN lines, read once a second.
    let mut proxy_warn_samples: Vec<usize> = vec![survivor_warns_before];
    let mut next_sample = killed + Duration::from_secs(1);
    let mut back = None;
    while killed.elapsed() < args.back_within {
        agents.process.check_alive();
        haproxy.check_alive();
        for survivor in &mut survivors {
            survivor.process.check_alive();
        }
        back = agents.back_at(killed, back_on_survivors);
        if back.is_some() {
            break;
        }
        if Instant::now() >= next_sample {
            proxy_warn_samples.push(survivors.iter().map(Proxy::warn_lines).sum());
            next_sample += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let window_end = back.as_ref().map_or_else(Instant::now, |(at, _)| *at) + AFTER_BACK;
    while Instant::now() < window_end {
        if Instant::now() >= next_sample {
            proxy_warn_samples.push(survivors.iter().map(Proxy::warn_lines).sum());
            next_sample += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let samples = users.stop();
    // From the last line before the kill: the per-second counts need a baseline.
    let window = agents.between(killed - Duration::from_millis(300), Instant::now());
    let last = agents.latest();
    for survivor in &mut survivors {
        survivor.process.check_alive();
    }
    let survivor_warns: usize =
        survivors.iter().map(Proxy::warn_lines).sum::<usize>() - survivor_warns_before;
    let logs: Vec<(&Path, usize)> = survivors
        .iter()
        .zip(&survivor_warns_each)
        .map(|(survivor, skip)| (survivor.log.as_path(), *skip))
        .collect();
    let proxy_warn_messages = warn_messages(&logs);
    let proxy_warns_per_second: Vec<usize> = proxy_warn_samples
        .windows(2)
        .map(|pair| pair[1].saturating_sub(pair[0]))
        .collect();

    let since = |at: Instant| at.saturating_duration_since(killed).as_secs_f64();
    let first_noticed = window
        .iter()
        .find(|(_, line)| held_by(line, &victim.name) < victim_tunnels)
        .map(|(at, _)| since(*at));
    let all_noticed = window
        .iter()
        .find(|(_, line)| held_by(line, &victim.name) == 0)
        .map(|(at, _)| since(*at));
    let min_full = window.iter().map(|(_, line)| line.full).min().unwrap_or(0);
    let min_up = window.iter().map(|(_, line)| line.up).min().unwrap_or(0);
    let seconds = usize::try_from(window_end.duration_since(killed).as_secs())
        .unwrap()
        .max(1);
    let failed_per_second = per_second(&window, killed, seconds, |l| l.failed_attempts);
    let warns_per_second = per_second(&window, killed, seconds, |l| l.warns);
    let dups_per_second = per_second(&window, killed, seconds, |l| l.dup_landings);
    let ups_per_second = per_second(&window, killed, seconds, |l| l.tunnel_ups);
    let failed_dials = last.failed_attempts - before.failed_attempts;
    let agent_warns = last.warns - before.warns;
    let dup_landings = last.dup_landings - before.dup_landings;
    let tunnel_ups = last.tunnel_ups - before.tunnel_ups;
    let back_after = back.as_ref().map(|(at, _)| since(*at));

    let successes: Vec<Duration> = samples
        .iter()
        .filter_map(|(_, outcome)| outcome.as_ref().ok().copied())
        .collect();
    let failures: Vec<(Duration, &String)> = samples
        .iter()
        .filter_map(|(at, outcome)| outcome.as_ref().err().map(|err| (*at, err)))
        .collect();
    let max = |v: &[usize]| v.iter().copied().max().unwrap_or(0);

    let seconds_or_dash =
        |s: Option<f64>| s.map_or_else(|| "-".to_string(), |s| format!("{s:.2} s"));
    match back_after {
        Some(after) => println!(
            "N={count}: kill -9 of {victim_label} ({victim_tunnels} tunnels): noticed by the first \
             host after {}, by all after {}; every host back to {CONNECTIONS} tunnels on the \
             survivors {after:.2} s after the kill (target 10 s: {})",
            seconds_or_dash(first_noticed),
            seconds_or_dash(all_noticed),
            if after <= 10.0 { "met" } else { "NOT met" },
        ),
        None => println!(
            "N={count}: kill -9 of {victim_label} ({victim_tunnels} tunnels): NOT all back within \
             {} s: {} of {count} hosts with {CONNECTIONS} tunnels, {} tunnels still counted on the \
             killed proxy",
            args.back_within.as_secs(),
            last.full,
            held_by(&last, &victim.name),
        ),
    }
    println!(
        "N={count}: least hosts with {CONNECTIONS} tunnels {min_full}, with any {min_up}; {} hosts \
         ever left with none; tunnels per proxy after: {}",
        last.zeroed,
        holders_json(&last, &names),
    );
    println!(
        "N={count}: error storm: {failed_dials} failed tunnel dials ({:.3} per host, at most {} \
         for one host, at most {} in one second); {dup_landings} dials landed on a proxy already \
         held (at most {} for one host); {tunnel_ups} tunnels came up; hosts' WARN events {agent_warns} (at most {} a \
         second); surviving proxies' WARN lines {survivor_warns} (at most {} a second)",
        failed_dials as f64 / count as f64,
        last.max_failed,
        max(&failed_per_second),
        last.max_landings,
        max(&warns_per_second),
        max(&proxy_warns_per_second),
    );
    for (message, n) in &proxy_warn_messages {
        println!("N={count}: surviving proxies' WARN: {n} × {message}");
    }
    println!("N={count}: per second from the kill: failed dials {failed_per_second:?}");
    println!("N={count}: per second from the kill: tunnels up {ups_per_second:?}");
    println!("N={count}: per second from the kill: hosts' WARN {warns_per_second:?}");
    println!("N={count}: per second from the kill: proxies' WARN {proxy_warns_per_second:?}");
    println!(
        "N={count}: jsh ssh from the kill until {}s after all back: {} tries, {} failed; \
         successes p50 {} ms, p99 {} ms{}",
        AFTER_BACK.as_secs(),
        samples.len(),
        failures.len(),
        ms_or_dash(quantile(&successes, 0.5)),
        ms_or_dash(quantile(&successes, 0.99)),
        failures
            .first()
            .map(|(at, err)| format!(
                "; first failure {:.2} s after the kill: {err}",
                at.as_secs_f64()
            ))
            .unwrap_or_default()
    );
    let result = serde_json::json!({
        "agents": count,
        "proxies": PROXIES,
        "agent_connection_count": CONNECTIONS,
        "all_up_after_join_s": all_up_after.as_secs_f64(),
        "join_failures": before.join_failures,
        "killed": victim_label,
        "killed_proxy_tunnels": victim_tunnels,
        "tunnels_per_proxy_before": holders_json(&before, &names),
        "tunnels_per_proxy_after": holders_json(&last, &names),
        "back_within_s": args.back_within.as_secs(),
        "all_back": back_after.is_some(),
        "all_back_after_kill_s": back_after,
        "first_host_noticed_after_kill_s": first_noticed,
        "all_hosts_noticed_after_kill_s": all_noticed,
        "least_hosts_with_all_tunnels": min_full,
        "least_hosts_with_a_tunnel": min_up,
        "hosts_left_with_no_tunnel": last.zeroed,
        "failed_tunnel_dials": failed_dials,
        "failed_tunnel_dials_per_agent": failed_dials as f64 / count as f64,
        "failed_tunnel_dials_most_for_one_agent": last.max_failed,
        "failed_tunnel_dials_per_second": failed_per_second,
        "dials_landed_on_a_held_proxy": dup_landings,
        "dials_landed_on_a_held_proxy_most_for_one_agent": last.max_landings,
        "dials_landed_on_a_held_proxy_per_second": dups_per_second,
        "tunnels_up_per_second": ups_per_second,
        "agent_warn_events": agent_warns,
        "agent_warn_events_per_second": warns_per_second,
        "surviving_proxies_warn_lines": survivor_warns,
        "surviving_proxies_warn_lines_per_second": proxy_warns_per_second,
        "surviving_proxies_warn_lines_by_message": proxy_warn_messages
            .iter()
            .map(|(message, n)| (message.clone(), serde_json::json!(n)))
            .collect::<serde_json::Map<_, _>>(),
        "jsh_ssh": {
            "tries": samples.len(),
            "failed": failures.len(),
            "failed_at_s": failures.iter().map(|(at, _)| at.as_secs_f64()).collect::<Vec<_>>(),
            "first_failure": failures.first().map(|(_, err)| err.to_string()),
            "p50_ms": quantile(&successes, 0.5).map(ms),
            "p99_ms": quantile(&successes, 0.99).map(ms),
        },
    });
    drop(agents);
    drop(agent);
    drop(haproxy);
    drop(survivors);
    drop(victim);
    drop(auth);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_is_named_by_its_target_and_message() {
        assert_eq!(
            warn_message(
                "tunnel{node=n1 remote=127.1.0.1:5 x=y}: jumpgate_proxy::tunnel: reverse tunnel down reason=gone"
            ),
            "jumpgate_proxy::tunnel: reverse tunnel down"
        );
        assert_eq!(
            warn_message("jumpgate_proxy::peer: connection to a peer proxy ended peer=p"),
            "jumpgate_proxy::peer: connection to a peer proxy ended"
        );
    }
}
