//! How fast a revocation reaches the proxy and the node: the time from `jctl` returning
//! (a role taken from a user, or the user deleted) until a connection with the
//! certificate the user still holds is refused, through the proxy (`jsh ssh`) and
//! straight to the node's own SSH listener (OpenSSH `ssh` with a `jctl auth sign`
//! certificate), measured in parallel, over many tries.
//!
//! `target/release/bench-revocation [--tries N] [--append-json FILE]` (default 50 tries;
//! as root: it adds the OS login `jgbench`).
//!
//! Each figure is an upper bound: the end of the first refused attempt (an attempt takes
//! tens of milliseconds). Proxies and nodes follow auth's changes through `Watch`
//! streams; before that they re-read everything every 2 s (proxy) and 3 s (node), so a
//! revocation took up to that long (see bench/HISTORY.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jumpgate_bench::procs::{LOGIN, add_user_and_login, ensure_login_user};
use jumpgate_bench::{append_line, git_commit, load_average, median, ms};
use jumpgate_test_support::{Bins, KnownHosts, Process, free_port, openssh_to, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NODE: &str = "revocation-node";
/// An attempt that is still allowed after this long counts as a failure of the target.
const GIVE_UP: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|at| args.get(at + 1).cloned())
    };
    let tries: usize = flag("--tries").map_or(50, |n| n.parse().expect("--tries N"));
    let append_json = flag("--append-json").map(PathBuf::from);
    ensure_login_user();
    let bins = Bins::release();
    let dir = tempfile::Builder::new()
        .prefix("jumpgate-bench-revocation.")
        .tempdir()
        .unwrap();
    let dir = dir.path();
    let data = dir.join("data");
    let proxy = format!("127.0.0.1:{}", free_port());
    let ssh_port = free_port();
    let config = dir.join("jumpgate.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: {NODE}\nauth_service:\n  cluster_name: bench\nproxy_service:\n  web_listen_addr: {proxy}\nssh_service:\n  listen_addr: 127.0.0.1:{ssh_port}\n",
            data.display()
        ),
    )
    .unwrap();
    let mut daemon = Process::spawn(
        bins.jumpgate().arg("start").arg("-c").arg(&config),
        "jumpgate",
        &dir.join("jumpgate.log"),
    )
    .stop_gracefully_on_drop(Duration::from_secs(5));
    wait_for("the cluster", Duration::from_secs(60), || {
        daemon.check_alive();
        data.join("admin/auth_addr").is_file() && data.join("proxy_addr").is_file()
    });
    let home = dir.join("jsh-home");
    add_user_and_login(&bins, &data, "alice", &proxy, &home);
    let key = sign_for_openssh(&bins, &data, dir);
    let through_proxy = || jsh_ssh(&bins.jsh, &home);
    let to_node = || direct_ssh(dir, &key, ssh_port);
    wait_until_allowed("jsh ssh", &through_proxy);
    wait_until_allowed("ssh to the node", &to_node);

    let user_yaml = dir.join("alice.yaml");
    let write_user = |roles: &str| {
        std::fs::write(
            &user_yaml,
            format!(
                "kind: user\nversion: v2\nmetadata:\n  name: alice\nspec:\n  roles: [{roles}]\n  traits:\n    logins: [{LOGIN}]\n"
            ),
        )
        .unwrap();
        bins.jctl_ok(&data, &["create", "-f", user_yaml.to_str().unwrap()]);
    };
    let mut proxy_times = Vec::new();
    let mut node_times = Vec::new();
    // Lower bounds: the end of the last attempt still allowed (0 when none was).
    let mut proxy_lows = Vec::new();
    let mut node_lows = Vec::new();
    // How long one attempt takes: the resolution of the upper bounds.
    let attempt_ms = |attempt: &dyn Fn() -> bool| {
        let started = Instant::now();
        let _ = attempt();
        ms(started.elapsed())
    };
    let proxy_attempt_ms = attempt_ms(&through_proxy);
    let node_attempt_ms = attempt_ms(&to_node);
    for attempt in 0..tries {
        // Revoke: take the role away, or (every other try) delete the user.
        let revoked_at = if attempt % 2 == 0 {
            write_user("auditor");
            Instant::now()
        } else {
            bins.jctl_ok(&data, &["users", "rm", "alice"]);
            Instant::now()
        };
        let (proxy_time, node_time) = std::thread::scope(|scope| {
            let proxy = scope.spawn(|| refused_after(revoked_at, &through_proxy));
            let node = scope.spawn(|| refused_after(revoked_at, &to_node));
            (proxy.join().unwrap(), node.join().unwrap())
        });
        let (proxy_low, proxy_high) = proxy_time.unwrap_or_else(|| {
            panic!("try {attempt}: the proxy still allowed alice after {GIVE_UP:?}")
        });
        let (node_low, node_high) = node_time.unwrap_or_else(|| {
            panic!("try {attempt}: the node still allowed alice after {GIVE_UP:?}")
        });
        proxy_times.push(proxy_high);
        node_times.push(node_high);
        proxy_lows.push(proxy_low);
        node_lows.push(node_low);
        // Grant again for the next try.
        write_user("access");
        wait_until_allowed("jsh ssh after the grant", &through_proxy);
        wait_until_allowed("ssh to the node after the grant", &to_node);
        daemon.check_alive();
    }
    let worst = |times: &[Duration]| times.iter().max().copied().unwrap_or_default();
    println!(
        "revocation ({tries} tries; half a role taken, half the user deleted), from jctl \
         returning to the end of the first refused attempt: proxy median {:.0} ms, worst \
         {:.0} ms (one jsh ssh takes {proxy_attempt_ms:.0} ms); node median {:.0} ms, worst \
         {:.0} ms (one OpenSSH ssh takes {node_attempt_ms:.0} ms). Attempts still allowed \
         after the revocation ended at worst {:.0} ms (proxy) and {:.0} ms (node)",
        ms(median(&proxy_times)),
        ms(worst(&proxy_times)),
        ms(median(&node_times)),
        ms(worst(&node_times)),
        ms(worst(&proxy_lows)),
        ms(worst(&node_lows)),
    );
    let record = serde_json::json!({
        "bench": "revocation",
        "date": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "commit": git_commit(),
        "load_average_before": load_average(),
        "command": format!("target/release/bench-revocation --tries {tries}"),
        "tries": tries,
        "proxy_ms": {
            "median": ms(median(&proxy_times)),
            "worst": ms(worst(&proxy_times)),
            "last_allowed_worst": ms(worst(&proxy_lows)),
            "one_attempt": proxy_attempt_ms,
        },
        "node_ms": {
            "median": ms(median(&node_times)),
            "worst": ms(worst(&node_times)),
            "last_allowed_worst": ms(worst(&node_lows)),
            "one_attempt": node_attempt_ms,
        },
        "target_ms": 1000,
    });
    println!("JSON: {record}");
    if let Some(path) = append_json {
        append_line(&path, &record.to_string());
    }
}

/// A key and an OpenSSH certificate for alice from `jctl auth sign` (what an admin hands
/// a user for plain OpenSSH).
fn sign_for_openssh(bins: &Bins, data: &Path, dir: &Path) -> PathBuf {
    let key = dir.join("alice-openssh");
    bins.sign_user(data, "alice", "2h", &key);
    key
}

fn jsh_ssh(jsh: &Path, home: &Path) -> bool {
    Command::new(jsh)
        .env("JUMPGATE_HOME", home)
        .args(["ssh", &format!("{LOGIN}@{NODE}"), "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn direct_ssh(dir: &Path, key: &Path, port: u16) -> bool {
    let cert = PathBuf::from(format!("{}-cert.pub", key.display()));
    let known_hosts = dir.join("known_hosts");
    openssh_to(port, LOGIN, key, &cert, KnownHosts::AcceptAny(&known_hosts))
        .arg("true")
        .output()
        .expect("OpenSSH's ssh")
        .status
        .success()
}

fn wait_until_allowed(what: &str, attempt: &impl Fn() -> bool) {
    wait_for(what, GIVE_UP, attempt);
}

/// When the first refused attempt after `since` began and ended: the revocation took
/// effect before its end, and after the end of the last allowed attempt (zero when none
/// was). `None` after [`GIVE_UP`].
fn refused_after(
    since: Instant,
    attempt: &(impl Fn() -> bool + Sync),
) -> Option<(Duration, Duration)> {
    let mut last_allowed_end = Duration::ZERO;
    while since.elapsed() < GIVE_UP {
        if !attempt() {
            return Some((last_allowed_end, since.elapsed()));
        }
        last_allowed_end = since.elapsed();
    }
    None
}
