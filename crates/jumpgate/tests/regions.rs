//! Seed 004 across real network delay: two regions (network namespaces joined by a cable
//! with 40 ms one way, `jumpgate_test_support::Regions`), the auth server and one proxy in
//! `eu`, another proxy and the node in `us`, `tunnel_strategy: proxy_peering` with
//! `agent_connection_count: 1`. The node tunnels only to the `us` proxy; a user in `eu`
//! connects through the `eu` proxy and reaches it through peering, with one session in the
//! audit log. Then the same user's connection is timed with the node tunnelled straight to
//! the `eu` proxy: peering may add at most one inter-region round trip (issue 16).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use jumpgate_test_support::{Daemon, Host, Regions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{text, wait_until};

const ONE_WAY: Duration = Duration::from_millis(40);
const SAMPLES: usize = 5;

fn write(path: &Path, contents: String) -> &Path {
    std::fs::write(path, contents).unwrap();
    path
}

/// A proxy on `host`, joined to the auth server at `auth` with `token`, listening on its
/// own address (also its public address, which its certificate names) and peering on the
/// default `0.0.0.0:3021` (advertised as the address it reaches auth from).
fn start_proxy(dir: &Path, host: &Host, auth: &str, token: &str, pin: &str) -> (Daemon, PathBuf) {
    let name = host.name();
    let data = dir.join(format!("{name}-data"));
    let addr = host.addr(3080).to_string();
    let config = dir.join(format!("{name}.yaml"));
    write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: {name}\n  auth_server: {auth}\n  auth_token: \"{token}\"\n  ca_pin: \"{pin}\"\nauth_service:\n  enabled: false\nproxy_service:\n  web_listen_addr: {addr}\n  public_addr: {addr}\nssh_service:\n  enabled: false\n",
            data.display()
        ),
    );
    let daemon = Daemon::start_in(
        host,
        support::bins(),
        &["-c", config.to_str().unwrap(), "--proxy-addr", &addr],
        &dir.join(format!("{name}.log")),
    );
    daemon.wait_ready(&["proxy"], &[]);
    (daemon, data)
}

/// The agent of node `app-1` on `host`, tunnelling through `proxy` only.
fn start_agent(dir: &Path, host: &Host, proxy: &str, token: &str, pin: &str, log: &str) -> Daemon {
    let config = support::agent_config(dir, "app-1", proxy, Some(token), pin);
    Daemon::start_in(
        host,
        support::bins(),
        &["-c", config.to_str().unwrap()],
        &dir.join(log),
    )
}

fn host_uuid(data: &Path) -> String {
    std::fs::read_to_string(data.join("host_uuid"))
        .unwrap()
        .trim()
        .to_string()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
fn across_regions_peering_reaches_a_far_node_for_at_most_one_round_trip_more() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let regions = Regions::new(&["eu", "us"], ONE_WAY);
    let auth_host = regions.add_host("eu");
    let proxy_eu_host = regions.add_host("eu");
    let user_host = regions.add_host("eu");
    let proxy_us_host = regions.add_host("us");
    let node_host = regions.add_host("us");

    let data = dir.join("auth-data");
    let auth_addr = auth_host.addr(3025).to_string();
    let auth_config = write(
        &dir.join("auth.yaml"),
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\nauth_service:\n  cluster_name: regions\n  listen_addr: {auth_addr}\n  tunnel_strategy:\n    type: proxy_peering\n    agent_connection_count: 1\nproxy_service:\n  enabled: false\nssh_service:\n  enabled: false\n",
            data.display()
        ),
    )
    .to_path_buf();
    let auth = Daemon::start_in(
        &auth_host,
        support::bins(),
        &[
            "-c",
            auth_config.to_str().unwrap(),
            "--auth-addr",
            &auth_addr,
        ],
        &dir.join("auth.log"),
    );
    assert!(
        wait_until(Duration::from_secs(30), || data
            .join("admin/auth_addr")
            .exists()),
        "{}",
        auth.log_text()
    );
    let admin = support::bins().in_host(&auth_host);
    let (token, pin) = admin.new_join_token(&data, &["--type", "proxy,node", "--reusable"]);
    let (proxy_eu, eu_data) = start_proxy(dir, &proxy_eu_host, &auth_addr, &token, &pin);
    let (proxy_us, us_data) = start_proxy(dir, &proxy_us_host, &auth_addr, &token, &pin);
    let (eu_uuid, us_uuid) = (host_uuid(&eu_data), host_uuid(&us_data));
    // The proxies the node's record says hold its tunnels.
    let holders = || support::tunnel_holders(&admin, &data, "app-1");

    let proxy_eu_addr = proxy_eu_host.addr(3080).to_string();
    let proxy_us_addr = proxy_us_host.addr(3080).to_string();
    let agent = start_agent(dir, &node_host, &proxy_us_addr, &token, &pin, "agent.log");
    assert!(
        wait_until(Duration::from_secs(40), || holders() == [us_uuid.clone()]),
        "the node never tunnelled to the us proxy alone: {:?}\n{}",
        holders(),
        agent.log_text()
    );

    let login = jumpgate_test_support::current_user();
    let otp = admin.add_user(&data, "uma", "access", &login);
    let user = support::bins().in_host(&user_host);
    let home = dir.join("uma-home");
    let logged_in = user.login(
        &home,
        &proxy_eu_addr,
        &data.join("admin/ca.pem"),
        "uma",
        &otp,
    );
    assert!(logged_in.status.success(), "{}", text(&logged_in.stderr));
    let target = format!("{login}@app-1");
    let timed_ssh = |what: &str| -> Duration {
        let started = Instant::now();
        let out = user.jsh(&home, &["ssh", &target, "echo", "reached"], None);
        let took = started.elapsed();
        assert!(
            text(&out.stdout).contains("reached"),
            "{what}: {}\neu proxy:\n{}\nus proxy:\n{}",
            text(&out.stderr),
            proxy_eu.log_text(),
            proxy_us.log_text()
        );
        took
    };
    // The first connection warms both ends (the user's TLS session, the node's caches).
    timed_ssh("first through peering");
    let connections = SAMPLES + 1;
    let peered: Vec<Duration> = (0..SAMPLES).map(|_| timed_ssh("through peering")).collect();
    let forwarded = proxy_eu
        .log_text()
        .matches("SSH connection to a node through a peer proxy")
        .count();
    assert_eq!(forwarded, connections, "{}", proxy_eu.log_text());
    support::assert_sessions_audited(&admin, &data, &["uma"], connections);

    // The same user and node, the tunnel now straight to the eu proxy across the cable.
    drop(agent);
    let agent = start_agent(dir, &node_host, &proxy_eu_addr, &token, &pin, "agent-2.log");
    assert!(
        wait_until(Duration::from_secs(40), || holders() == [eu_uuid.clone()]),
        "the node never tunnelled to the eu proxy alone: {:?}\n{}",
        holders(),
        agent.log_text()
    );
    timed_ssh("first direct");
    let direct: Vec<Duration> = (0..SAMPLES).map(|_| timed_ssh("direct")).collect();

    let (peered, direct) = (median(peered), median(direct));
    let round_trip = ONE_WAY * 2;
    println!(
        "jsh ssh app-1 echo, user and proxy in eu, node in us (RTT {round_trip:?}): through \
         peering {peered:?}, tunnel straight to the eu proxy {direct:?} ({:.2}×)",
        peered.as_secs_f64() / direct.as_secs_f64()
    );
    // At most one inter-region round trip more, plus jitter of a loaded 2-core machine.
    assert!(
        peered <= direct + round_trip + Duration::from_millis(40),
        "peering cost {:?} over the direct tunnel (one round trip is {round_trip:?})",
        peered.saturating_sub(direct)
    );
}
