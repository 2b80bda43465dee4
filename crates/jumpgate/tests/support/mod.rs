//! The shared test support (`jumpgate-test-support`) bound to the binaries cargo built for
//! these tests: the same helpers under short names, so a test reads
//! `jctl_ok(&data, ...)`, not where the binary is.
#![allow(dead_code)]

pub use jumpgate_test_support::*;

use rand::seq::SliceRandom;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::LazyLock;

/// The `jumpgate`, `jctl` and `jsh` that cargo built for this test.
pub fn bins() -> &'static Bins {
    static BINS: LazyLock<Bins> = LazyLock::new(|| {
        Bins::new(
            env!("CARGO_BIN_EXE_jumpgate"),
            env!("CARGO_BIN_EXE_jctl"),
            jsh_bin(),
        )
    });
    &BINS
}

/// `jsh`, a package of its own (`crates/jsh`, so it links no server code), next to
/// `jumpgate`. Cargo builds a package's binaries only for that package's own tests, so
/// `test.sh` (the README's test command) runs `cargo build --workspace --bins` first.
pub fn jsh_bin() -> &'static str {
    static JSH: LazyLock<String> = LazyLock::new(|| {
        let path = Path::new(env!("CARGO_BIN_EXE_jumpgate")).with_file_name("jsh");
        assert!(
            path.is_file(),
            "{} is missing: build it with `cargo build -p jsh` (test.sh builds every binary first)",
            path.display()
        );
        path.display().to_string()
    });
    &JSH
}

/// The seed configuration snippets of `crates/types`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../types/tests/fixtures")
}

pub fn jumpgate() -> Command {
    bins().jumpgate()
}

/// [`Bins::run`]: `jumpgate ARGS` to completion.
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    bins().run(args, stdin)
}

/// [`Daemon::start`]: `jumpgate start ARGS`, up (`/healthz`).
pub fn start_daemon(args: &[&str], log: &Path) -> Daemon {
    Daemon::start(bins(), args, log)
}

/// [`Daemon::start_dev`]: `jumpgate start --dev`, its auth API up.
pub fn start_dev_daemon(data: &Path, log: &Path) -> Daemon {
    Daemon::start_dev(bins(), data, log)
}

/// [`Daemon::start_auth_and_proxy`]: the cluster (`edge`) agents and proxies join.
pub fn start_cluster(dir: &Path, data: &Path, proxy_port: u16, log: &str) -> Daemon {
    Daemon::start_auth_and_proxy(bins(), dir, data, proxy_port, log)
}

/// [`Cluster::start`]: a dev cluster in `dir`, its auth and proxy ready.
pub fn start_dev_cluster(dir: &Path) -> Cluster {
    Cluster::start(bins(), dir)
}

pub fn jctl(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    bins().jctl(data, args, stdin)
}

pub fn jctl_ok(data: &Path, args: &[&str]) -> String {
    bins().jctl_ok(data, args)
}

pub fn jctl_ok_stdin(data: &Path, args: &[&str], stdin: &str) -> String {
    bins().jctl_ok_stdin(data, args, stdin)
}

pub fn jsh(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    bins().jsh(home, args, stdin)
}

pub fn jsh_ok(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    bins().jsh_ok(home, args, stdin)
}

pub fn jsh_until(home: &Path, args: &[&str], done: impl FnMut(&Output) -> bool) -> Output {
    bins().jsh_until(home, args, done)
}

pub fn audit_events(data: &Path, event_type: &str) -> Vec<serde_json::Value> {
    bins().audit_events(data, event_type)
}

pub fn new_join_token(data: &Path, args: &[&str]) -> (String, String) {
    bins().new_join_token(data, args)
}

/// An agent's config: node `name` (label `env: staging`, command label `kernel`), tunnelling
/// through `proxy`, joining with `token` (first start only) and `pin`.
pub fn agent_config(
    dir: &Path,
    name: &str,
    proxy: &str,
    token: Option<&str>,
    pin: &str,
) -> PathBuf {
    let data = dir.join(format!("{name}-data"));
    let token_line = token
        .map(|token| format!("  auth_token: \"{token}\"\n"))
        .unwrap_or_default();
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "version: v3\njumpgate:\n  data_dir: {data}\n  nodename: {name}\n  proxy_server: {proxy}\n{token_line}  ca_pin: \"{pin}\"\nssh_service:\n  labels:\n    env: staging\n  commands:\n    - name: kernel\n      command: [uname, -s]\n      period: 1s\n",
            data = data.display()
        ),
    )
    .unwrap();
    path
}

/// The node records `jctl nodes ls` shows, by host name.
pub fn node(data: &Path, host: &str) -> Option<Value> {
    node_with(bins(), data, host)
}

/// [`node`] with `bins`' `jctl` (e.g. [`Bins::in_host`] for a cluster in a region).
pub fn node_with(bins: &Bins, data: &Path, host: &str) -> Option<Value> {
    let listed = bins.jctl(data, &["nodes", "ls", "--format", "json"], None);
    if !listed.status.success() {
        return None;
    }
    let nodes: Vec<Value> = serde_json::from_slice(&listed.stdout).ok()?;
    nodes.into_iter().find(|n| n["spec"]["hostname"] == host)
}

/// The proxies (identity names) node `host`'s record says hold its tunnels; none when the
/// node is not listed.
pub fn tunnel_holders(bins: &Bins, data: &Path, host: &str) -> Vec<String> {
    node_with(bins, data, host)
        .and_then(|record| {
            record["spec"]["tunnels"].as_array().map(|tunnels| {
                tunnels
                    .iter()
                    .filter_map(|t| t["proxy"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// HAProxy on a free loopback port, balancing TCP round robin over `proxies` with a health
/// check every 500 ms (a dead one is out after 2 misses); returns it and its address.
pub fn haproxy_in_front_of(dir: &Path, proxies: &[&str]) -> (Haproxy, String) {
    let port = free_port();
    let servers: String = proxies
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("  server p{i} {addr} check inter 500ms fall 2 rise 1\n"))
        .collect();
    let haproxy = start_haproxy(
        dir,
        &format!(
            "frontend proxies\n  bind 127.0.0.1:{port}\n  default_backend all\n\
             backend all\n  balance roundrobin\n  option redispatch\n  retries 2\n{servers}"
        ),
        &[port],
    );
    (haproxy, format!("127.0.0.1:{port}"))
}

/// Asserts the audit log holds exactly `expected` `session.start` events of `users`: all
/// of them arrive (within 10 s), and none twice (checked again half a second later).
pub fn assert_sessions_audited(bins: &Bins, data: &Path, users: &[&str], expected: usize) {
    let sessions = || {
        bins.audit_events(data, "session.start")
            .iter()
            .filter(|event| users.iter().any(|user| event["user"] == *user))
            .count()
    };
    assert!(
        wait_until(std::time::Duration::from_secs(10), || sessions()
            >= expected),
        "{} of {expected} sessions audited",
        sessions()
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(sessions(), expected, "a session was audited twice");
}

/// Whether a node record lists a tunnel.
pub fn has_tunnel(node: &Value) -> bool {
    node["spec"]["tunnels"]
        .as_array()
        .is_some_and(|tunnels| !tunnels.is_empty())
}

/// What a user does with a cluster, each through whichever proxy and auth server the
/// request lands on (issue 16: "login, `jsh ssh` exec and interactive, `jsh scp`, OpenSSH
/// via `jsh config`, audit search and playback of a recording all work"): with the profile
/// in `home` (logged in, with `bins`, possibly inside a region's host), as `login` on node
/// `node`. `tag` marks this round's output and files (under `dir`). Each step must work the
/// first time. Returns the sessions it opened (one per command; the caller counts them in
/// the audit log with [`assert_sessions_audited`]).
pub fn use_every_path(
    bins: &Bins,
    home: &Path,
    dir: &Path,
    login: &str,
    node: &str,
    tag: &str,
) -> usize {
    let target = format!("{login}@{node}");
    let exec = bins.jsh(
        home,
        &["ssh", &target, "echo", &format!("exec-{tag}")],
        None,
    );
    assert_eq!(
        text(&exec.stdout).trim(),
        format!("exec-{tag}"),
        "jsh ssh ({tag}): {}",
        text(&exec.stderr)
    );
    // A terminal session: the node records it.
    let marker = format!("pty-{tag}");
    let pty = bins.jsh(
        home,
        &["ssh", "-t", &target, &format!("echo {marker}")],
        None,
    );
    assert!(
        text(&pty.stdout).contains(&marker),
        "jsh ssh -t ({tag}): {}",
        text(&pty.stderr)
    );

    let sent = dir.join(format!("{tag}-sent"));
    let payload: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(31) >> 3) as u8)
        .collect();
    std::fs::write(&sent, &payload).unwrap();
    let remote = format!("{target}:/tmp/jumpgate-{tag}-{}", std::process::id());
    let back = dir.join(format!("{tag}-back"));
    for (from, to) in [
        (sent.to_str().unwrap(), remote.as_str()),
        (remote.as_str(), back.to_str().unwrap()),
    ] {
        let out = bins.jsh(home, &["scp", from, to], None);
        assert!(
            out.status.success(),
            "jsh scp {from} {to} ({tag}): {}",
            text(&out.stderr)
        );
    }
    assert!(
        std::fs::read(&back).unwrap() == payload,
        "jsh scp changed the file ({tag})"
    );
    let _ = std::fs::remove_file(format!("/tmp/jumpgate-{tag}-{}", std::process::id()));

    // OpenSSH, configured by `jsh config`, through `jsh proxy ssh`.
    let status = text(&bins.jsh_ok(home, &["status"], None).stdout);
    let cluster = status
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("Cluster:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("jsh status names no cluster: {status}"))
        .to_string();
    let config = dir.join(format!("{tag}-ssh_config"));
    std::fs::write(&config, bins.jsh_ok(home, &["config"], None).stdout).unwrap();
    let openssh = output_within(
        bins.program("ssh")
            .args(["-o", "BatchMode=yes", "-F", config.to_str().unwrap()])
            .arg(format!("{login}@{node}.{cluster}"))
            .arg(format!("echo openssh-{tag}"))
            .env_remove("SSH_AUTH_SOCK"),
        None,
        std::time::Duration::from_secs(60),
    );
    assert_eq!(
        text(&openssh.stdout).trim(),
        format!("openssh-{tag}"),
        "OpenSSH via jsh config ({tag}): {}",
        text(&openssh.stderr)
    );

    // The terminal session's recording, complete and played back.
    let mut listed: Vec<Value> = Vec::new();
    let mut listing_errors = String::new();
    let played = wait_until(std::time::Duration::from_secs(20), || {
        let out = bins.jsh(home, &["recordings", "ls", "--format", "json"], None);
        listing_errors = format!(
            "jsh recordings ls: {}; stdout {:?}; stderr {}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        listed = serde_json::from_slice(&out.stdout).unwrap_or_default();
        listed
            .iter()
            .filter(|recording| recording["completed"] == true)
            .filter_map(|recording| recording["session_id"].as_str())
            .any(|id| {
                let play = bins.jsh(home, &["play", id, "--format", "text"], None);
                text(&play.stdout).contains(&marker)
            })
    });
    assert!(
        played,
        "no playable recording shows {marker}: {listed:?}\n{listing_errors}"
    );
    5
}

/// How many timed runs each latency comparison takes: 7 by default, so CI stays quick;
/// `JUMPGATE_TIMING_SAMPLES=31` for a figure to record at rest, where 7 samples spread
/// as widely as the differences being measured.
pub fn timing_samples() -> usize {
    std::env::var("JUMPGATE_TIMING_SAMPLES")
        .ok()
        .and_then(|samples| samples.parse().ok())
        .filter(|samples| *samples > 0)
        .unwrap_or(7)
}

/// Medians of `samples` runs of `jsh ssh TARGET true` for each `(bins, home, target)`, the
/// runs interleaved (one of each per round, after one each to warm up) so that a machine
/// busy with something else slows every path alike. Each round takes the paths in a fresh
/// random order: a session leaves work behind when it ends (its audit events, its
/// recording's upload, SQLite's fsync on a dev cluster), and in a fixed order each path
/// would always pay for the same predecessor's. Each run must succeed; each is one
/// session.
pub fn ssh_medians(paths: &[(&Bins, &Path, &str)], samples: usize) -> Vec<std::time::Duration> {
    let run = |(bins, home, target): &(&Bins, &Path, &str)| {
        let started = std::time::Instant::now();
        let out = bins.jsh(home, &["ssh", target, "true"], None);
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "jsh ssh {target}: {}",
            text(&out.stderr)
        );
        took
    };
    paths.iter().for_each(|path| {
        run(path);
    });
    let mut times = vec![Vec::with_capacity(samples); paths.len()];
    let mut order: Vec<usize> = (0..paths.len()).collect();
    for _ in 0..samples {
        order.shuffle(&mut rand::rng());
        for &index in &order {
            times[index].push(run(&paths[index]));
        }
    }
    times
        .into_iter()
        .zip(paths)
        .map(|(mut times, (_, _, target))| {
            times.sort();
            println!("jsh ssh {target} true: {times:?}");
            times[times.len() / 2]
        })
        .collect()
}

/// `jumpgate`, `jctl` and `jsh` as an operator gets them: the Debian package built by
/// `jumpgate-dist deb` from the binaries cargo built, unpacked with `dpkg-deb -x` (built
/// once per test process). The HA tests that use it install nothing by hand that the
/// package brings; the daemon is started as the package's systemd unit starts it
/// (`start -c CONFIG`, checked against the unit's `ExecStart`).
pub fn packaged_bins() -> &'static Bins {
    static PACKAGED: LazyLock<Bins> = LazyLock::new(|| {
        let built = Path::new(env!("CARGO_BIN_EXE_jumpgate"));
        let dist = built.with_file_name("jumpgate-dist");
        assert!(
            dist.is_file() && Path::new(jsh_bin()).is_file(),
            "{} is missing: build every binary first with `cargo build --workspace --bins` \
             (test.sh does)",
            dist.display()
        );
        // Kept for the whole test process (a LazyLock is never dropped).
        let dir = tempfile::Builder::new()
            .prefix("jumpgate-packaged")
            .tempdir()
            .unwrap()
            .keep();
        let package = run_ok(
            Command::new(&dist)
                .arg("deb")
                .arg("--bin-dir")
                .arg(built.parent().unwrap())
                .arg("--out-dir")
                .arg(&dir)
                .args(["--compression", "none"]),
            None,
        );
        let root = dir.join("root");
        run_ok(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(package.trim())
                .arg(&root),
            None,
        );
        let unit = ["lib/systemd/system", "usr/lib/systemd/system"]
            .iter()
            .map(|at| root.join(at).join("jumpgate.service"))
            .find(|path| path.is_file())
            .expect("the package installs jumpgate.service");
        let unit = std::fs::read_to_string(unit).unwrap();
        assert!(
            unit.lines()
                .any(|line| line == "ExecStart=/usr/bin/jumpgate start -c /etc/jumpgate.yaml"),
            "the unit's ExecStart changed; start the packaged daemon as it does:\n{unit}"
        );
        let bin = root.join("usr/bin");
        Bins::new(bin.join("jumpgate"), bin.join("jctl"), bin.join("jsh"))
    });
    &PACKAGED
}

/// Registers `nodes` in the cluster whose admin files are in `data`, as their heartbeats
/// would (with the admin identity `jctl` uses, which may write any presence record), for
/// 10 minutes; 64 at a time. For tests that need many nodes or nodes no agent would send.
#[allow(dead_code)] // Not every test binary that includes this module registers nodes.
pub async fn register_nodes(data: &Path, nodes: Vec<jumpgate_types::NodePresence>) {
    use futures::StreamExt;
    let read = |name: &str| std::fs::read_to_string(data.join("admin").join(name)).unwrap();
    let tls = jumpgate_api::TlsCredentials::from_pem(
        &read("cert.pem"),
        &read("key.pem"),
        &read("ca.pem"),
    )
    .unwrap()
    .client_config()
    .unwrap();
    let admin = jumpgate_api::connect(read("auth_addr").trim(), tls)
        .await
        .unwrap();
    let beats = nodes.into_iter().map(|node| {
        let mut admin = admin.clone();
        async move {
            admin
                .heartbeat(jumpgate_api::proto::HeartbeatRequest {
                    document: node.to_json(),
                    ttl_seconds: 600,
                    live_sessions: Vec::new(),
                })
                .await
                .unwrap();
        }
    });
    futures::stream::iter(beats)
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
}

/// `count` nodes named `node-00000`... with a `rack` label (`r0`..`r9`), for listings.
#[allow(dead_code)]
pub fn many_nodes(count: usize) -> Vec<jumpgate_types::NodePresence> {
    (0..count)
        .map(|i| jumpgate_types::NodePresence {
            uuid: format!("00000000-0000-4000-8000-{i:012}"),
            hostname: format!("node-{i:05}"),
            labels: [("rack".to_string(), format!("r{}", i % 10))].into(),
            tunnels: Vec::new(),
            version: "test".to_string(),
        })
        .collect()
}

/// `node --test-reporter=spec tests/SCRIPT` in `web/`: a browser test script on the harness
/// of `web/tests/harness.mjs` (Playwright, Debian's chromium). The caller adds the
/// script's environment and runs it; [`assert_browser_report`] reads the outcome.
pub fn browser_script(script: &str) -> Command {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "{}/node_modules is missing: run `npm ci` in web/ (./test.sh does), and install \
         Debian's chromium (`apt-get install chromium`)",
        web.display()
    );
    let mut command = Command::new("node");
    command
        .arg("--test-reporter=spec")
        .arg(format!("tests/{script}"))
        .current_dir(&web);
    command
}

/// Panics with a browser script's report, and `logs()` after it (the daemon's, an
/// IdP's), unless the script ran at least one test and none failed.
pub fn assert_browser_report(out: &Output, logs: impl FnOnce() -> String) {
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    println!("{report}");
    assert!(
        out.status.success(),
        "browser tests failed (screenshots in web/test-artefacts):\n{report}\n{}",
        logs()
    );
    // node's spec reporter closes with "ℹ pass N" / "ℹ fail N".
    let count = |what: &str| {
        report.lines().find_map(|line| {
            line.trim_start_matches(|c: char| !c.is_ascii_alphabetic())
                .strip_prefix(what)
                .and_then(|n| n.trim().parse::<u32>().ok())
        })
    };
    assert_eq!(count("fail "), Some(0), "{report}");
    assert!(
        count("pass ").is_some_and(|n| n > 0),
        "no browser test ran:\n{report}"
    );
}
