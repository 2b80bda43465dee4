//! Proxy peering end to end (issue 16; seed 004's `tunnel_strategy: proxy_peering`): an
//! auth server, two proxies that joined it, HAProxy in front of both (layer 4), and an
//! agent behind the load balancer that keeps `agent_connection_count: 1` tunnel. A user
//! who knows only the load balancer lands on either proxy; the one without the node's
//! tunnel forwards the connection to the one with it. Every `jsh ssh` works, the audit
//! log holds one session per connection, and when the proxy holding the tunnel is killed
//! the agent moves its tunnel to the survivor and new connections work within seconds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{
    Daemon, agent_config, free_port, new_join_token, start_daemon, text, tunnel_holders, wait_until,
};

/// An auth server alone (SQLite), with the proxy peering strategy and `count` tunnels per
/// agent.
fn auth_server(dir: &Path, port: u16, count: u32) -> (Daemon, PathBuf) {
    let data = dir.join("auth-data");
    let config = dir.join("auth.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\nauth_service:\n  cluster_name: peered\n  listen_addr: 127.0.0.1:{port}\n  tunnel_strategy:\n    type: proxy_peering\n    agent_connection_count: {count}\nproxy_service:\n  enabled: false\nssh_service:\n  enabled: false\n",
            data.display()
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let daemon = start_daemon(
        &["-c", config.to_str().unwrap(), "--auth-addr", &addr],
        &dir.join("auth.log"),
    );
    assert!(
        wait_until(Duration::from_secs(30), || data
            .join("admin/auth_addr")
            .exists()),
        "{}",
        daemon.log_text()
    );
    (daemon, data)
}

/// A proxy on a host of its own, joined with `token`, peering on a free loopback port.
fn proxy(dir: &Path, name: &str, auth: &str, token: &str, pin: &str) -> (Daemon, String, PathBuf) {
    let data = dir.join(format!("{name}-data"));
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: {name}\n  auth_server: {auth}\n  auth_token: \"{token}\"\n  ca_pin: \"{pin}\"\nauth_service:\n  enabled: false\nproxy_service:\n  web_listen_addr: {addr}\n  peer_listen_addr: 127.0.0.1:0\nssh_service:\n  enabled: false\n",
            data.display()
        ),
    )
    .unwrap();
    let daemon = start_daemon(
        &["-c", config.to_str().unwrap(), "--proxy-addr", &addr],
        &dir.join(format!("{name}.log")),
    );
    (daemon, addr, data)
}

fn host_uuid(data: &Path) -> String {
    std::fs::read_to_string(data.join("host_uuid"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn behind_a_load_balancer_a_proxy_without_the_tunnel_forwards_to_its_peer() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let auth_port = free_port();
    let auth_addr = format!("127.0.0.1:{auth_port}");
    let (auth, data) = auth_server(dir, auth_port, 1);
    let (token, pin) = new_join_token(&data, &["--type", "proxy,node", "--reusable"]);
    let (proxy_a, addr_a, data_a) = proxy(dir, "proxy-a", &auth_addr, &token, &pin);
    let (proxy_b, addr_b, data_b) = proxy(dir, "proxy-b", &auth_addr, &token, &pin);
    for daemon in [&proxy_a, &proxy_b] {
        daemon.wait_ready(&["proxy"], &[]);
    }
    let (_lb, lb) = support::haproxy_in_front_of(dir, &[&addr_a, &addr_b]);
    let agent_config = agent_config(dir, "app-1", &lb, Some(&token), &pin);
    let agent = start_daemon(
        &["-c", agent_config.to_str().unwrap()],
        &dir.join("agent.log"),
    );
    let one_tunnel = wait_until(Duration::from_secs(40), || {
        tunnel_holders(support::bins(), &data, "app-1").len() == 1
    });
    assert!(
        one_tunnel,
        "the agent never held one tunnel:\n{}",
        agent.log_text()
    );
    // `agent_connection_count: 1`: it stays at one, not one per proxy.
    std::thread::sleep(Duration::from_secs(3));
    let holders = tunnel_holders(support::bins(), &data, "app-1");
    assert_eq!(holders.len(), 1, "{holders:?}\n{}", agent.log_text());

    let bins = support::bins();
    let login = jumpgate_test_support::current_user();
    let otp = bins.add_user(&data, "pia", "access", &login);
    let home = dir.join("pia-home");
    let logged_in = bins.login(&home, &lb, &data.join("admin/ca.pem"), "pia", &otp);
    assert!(logged_in.status.success(), "{}", text(&logged_in.stderr));
    let target = format!("{login}@app-1");
    let ssh = || support::jsh(&home, &["ssh", &target, "echo", "reached"], None);

    // Round robin: half of these land on the proxy without the tunnel.
    let connections = 6;
    for attempt in 0..connections {
        let out = ssh();
        assert!(
            text(&out.stdout).contains("reached"),
            "attempt {attempt}: {}\nproxy-a:\n{}\nproxy-b:\n{}",
            text(&out.stderr),
            proxy_a.log_text(),
            proxy_b.log_text()
        );
    }
    let forwarded = [&proxy_a, &proxy_b]
        .iter()
        .map(|daemon| {
            daemon
                .log_text()
                .matches("SSH connection to a node through a peer proxy")
                .count()
        })
        .sum::<usize>();
    assert!(
        forwarded >= 1,
        "no connection went through peering:\nproxy-a:\n{}\nproxy-b:\n{}",
        proxy_a.log_text(),
        proxy_b.log_text()
    );
    // One session per connection in the audit log, whichever way it went.
    support::assert_sessions_audited(support::bins(), &data, &["pia"], connections);

    // Kill the proxy holding the tunnel; the agent moves it to the survivor.
    let holder = holders[0].clone();
    let (dead, survivor_uuid) = if holder == host_uuid(&data_a) {
        (proxy_a, host_uuid(&data_b))
    } else {
        assert_eq!(
            holder,
            host_uuid(&data_b),
            "an unknown proxy holds the tunnel"
        );
        (proxy_b, host_uuid(&data_a))
    };
    let dead_uuid = holder.clone();
    drop(dead); // SIGKILL
    let killed = Instant::now();
    let record_gone = {
        let data = data.clone();
        std::thread::spawn(move || {
            while killed.elapsed() < Duration::from_secs(10) {
                let proxies = support::jctl_ok(&data, &["get", "proxies", "--format", "json"]);
                if !proxies.contains(&dead_uuid) {
                    return Some(killed.elapsed());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            None
        })
    };
    let mut first_success = None;
    while killed.elapsed() < Duration::from_secs(20) {
        if text(&ssh().stdout).contains("reached") {
            first_success = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let first_success = first_success.unwrap_or_else(|| {
        panic!(
            "no connection within 20 s after the tunnel's proxy died:\n{}",
            agent.log_text()
        )
    });
    // 5 s is the target; a connection started at 4.9 s still takes its own time.
    assert!(
        first_success < Duration::from_secs(7),
        "the first new connection after the kill worked only after {first_success:?}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || tunnel_holders(
            support::bins(),
            &data,
            "app-1"
        ) == [survivor_uuid.clone()]),
        "the node's record does not show its tunnel on the survivor: {:?}",
        tunnel_holders(support::bins(), &data, "app-1")
    );
    // The dead proxy's presence record is gone within 5 s of the kill (plus one poll):
    // no agent is told to look for it any more.
    let gone_after = record_gone.join().unwrap();
    assert!(
        gone_after.is_some_and(|after| after <= Duration::from_millis(5_500)),
        "the dead proxy's record was still listed {gone_after:?} after the kill"
    );
    for attempt in 0..4 {
        let out = ssh();
        assert!(
            text(&out.stdout).contains("reached"),
            "after the kill, attempt {attempt}: {}",
            text(&out.stderr)
        );
    }
    println!("first connection after killing the tunnel's proxy: {first_success:?}");
    drop(auth);
}

/// Seed 004's `agent_connection_count: 2` with three proxies behind one load balancer: the
/// agent holds two tunnels to distinct proxies; when one of them is killed it holds two
/// again, on the two survivors, within 5 s (plus the load balancer's health check).
#[test]
fn with_two_tunnels_wanted_a_killed_proxy_is_replaced_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let auth_port = free_port();
    let auth_addr = format!("127.0.0.1:{auth_port}");
    let (auth, data) = auth_server(dir, auth_port, 2);
    let (token, pin) = new_join_token(&data, &["--type", "proxy,node", "--reusable"]);
    let proxies: Vec<(Daemon, String, PathBuf)> = ["proxy-a", "proxy-b", "proxy-c"]
        .iter()
        .map(|name| proxy(dir, name, &auth_addr, &token, &pin))
        .collect();
    for (daemon, _, _) in &proxies {
        daemon.wait_ready(&["proxy"], &[]);
    }
    let addrs: Vec<&str> = proxies.iter().map(|(_, addr, _)| addr.as_str()).collect();
    let (_lb, lb) = support::haproxy_in_front_of(dir, &addrs);
    let agent_config = agent_config(dir, "app-2", &lb, Some(&token), &pin);
    let agent = start_daemon(
        &["-c", agent_config.to_str().unwrap()],
        &dir.join("agent.log"),
    );
    assert!(
        wait_until(Duration::from_secs(40), || tunnel_holders(
            support::bins(),
            &data,
            "app-2"
        )
        .len()
            == 2),
        "the agent never held two tunnels: {:?}\n{}",
        tunnel_holders(support::bins(), &data, "app-2"),
        agent.log_text()
    );
    // Two, not three: the count is the strategy's, not the number of proxies.
    std::thread::sleep(Duration::from_secs(3));
    let holders = tunnel_holders(support::bins(), &data, "app-2");
    assert_eq!(holders.len(), 2, "{holders:?}");

    let mut proxies = proxies;
    let victim = proxies
        .iter()
        .position(|(_, _, data)| host_uuid(data) == holders[0])
        .expect("a listed proxy holds the tunnel");
    let (dead, _, dead_data) = proxies.remove(victim);
    let dead_uuid = host_uuid(&dead_data);
    drop(dead); // SIGKILL
    let killed = Instant::now();
    let survivors: Vec<String> = proxies.iter().map(|(_, _, data)| host_uuid(data)).collect();
    let restored = wait_until(Duration::from_secs(15), || {
        let now = tunnel_holders(support::bins(), &data, "app-2");
        now.len() == 2 && now.iter().all(|holder| survivors.contains(holder))
    });
    let took = killed.elapsed();
    assert!(
        restored,
        "two tunnels on the survivors never came back: {:?} (dead {dead_uuid})\n{}",
        tunnel_holders(support::bins(), &data, "app-2"),
        agent.log_text()
    );
    println!("two tunnels again, on the survivors, {took:?} after the kill");
    // 5 s is the target; the load balancer needs up to 1 s to stop sending to the dead one.
    assert!(
        took < Duration::from_secs(6),
        "restored only after {took:?}"
    );
    drop(auth);
}
