//! The shared test support (`jumpgate-test-support`) bound to the binaries cargo built for
//! these tests: the same helpers under short names, so a test reads
//! `jctl_ok(&data, ...)`, not where the binary is.
#![allow(dead_code)]

pub use jumpgate_test_support::*;

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
