//! An agent end to end: a cluster (auth + proxy) and a separate `jumpgate` agent
//! process that knows only the proxy's address, a join token and the `ca_pin`. It joins
//! through the proxy, appears in `jctl nodes ls` with its labels and its tunnel, keeps
//! working across a proxy restart, and restarts without its token. Bad tokens and a
//! wrong pin are refused with clear errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{
    KnownHosts, agent_config, audit_events, free_port, has_tunnel, jctl_ok, jumpgate,
    new_join_token, node, openssh_to, start_cluster, start_daemon, start_haproxy, text, wait_until,
};

/// The config of a proxy on a host of its own, joining cluster data `data` through its
/// auth API with `token` (first start only) and `pin`, listening on `addr`.
fn edge_proxy_config(
    dir: &Path,
    data: &Path,
    addr: &str,
    token: Option<&str>,
    pin: &str,
) -> PathBuf {
    let auth_addr = std::fs::read_to_string(data.join("admin/auth_addr"))
        .unwrap()
        .trim()
        .to_string();
    let token_line = token
        .map(|token| format!("  auth_token: \"{token}\"\n"))
        .unwrap_or_default();
    let path = dir.join("edge.yaml");
    std::fs::write(
        &path,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: proxy-b\n  auth_server: {auth_addr}\n{token_line}  ca_pin: \"{pin}\"\nproxy_service:\n  web_listen_addr: {addr}\n",
            dir.join("edge-data").display()
        ),
    )
    .unwrap();
    path
}

/// The cluster's active TLS CA pin (`jctl status`).
fn active_pin(data: &Path) -> String {
    let status: Value =
        serde_json::from_str(&jctl_ok(data, &["status", "--format", "json"])).unwrap();
    status["ca_pins"][0].as_str().unwrap().to_string()
}

/// Whether a stored `tls_ca.pem` holds the CA with `pin`.
fn holds_pin(stored_ca: &Path, pin: &str) -> bool {
    std::fs::read_to_string(stored_ca)
        .map(|pem| {
            jumpgate_node::renew::pins_of(&pem)
                .iter()
                .any(|held| held == pin)
        })
        .unwrap_or(false)
}

/// Runs an agent that must fail at start; returns its stderr.
fn failing_agent(config: &Path) -> String {
    let mut child = jumpgate()
        .args(["start", "-c", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(exited, "the agent did not stop: {}", text(&out.stderr));
    assert!(!out.status.success());
    text(&out.stderr)
}

#[test]
fn an_agent_joins_through_the_proxy_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster-data");
    let proxy_port = free_port();
    let proxy = format!("127.0.0.1:{proxy_port}");
    let mut cluster = start_cluster(dir.path(), &data, proxy_port, "cluster.log");

    let (token, pin) = new_join_token(&data, &["--type", "node", "--ttl", "1h"]);

    // The agent knows only the proxy, the token and the pin.
    let config = agent_config(dir.path(), "web-1", &proxy, Some(&token), &pin);
    let mut agent = start_daemon(
        &["-c", config.to_str().unwrap()],
        &dir.path().join("agent.log"),
    );
    let joined = wait_until(Duration::from_secs(20), || {
        node(&data, "web-1").is_some_and(|n| {
            has_tunnel(&n)
                && n["metadata"]["labels"]["env"] == "staging"
                && n["metadata"]["labels"]["kernel"] == "Linux"
        })
    });
    assert!(
        joined,
        "the agent did not appear with labels and a tunnel: {:?}\nagent:\n{}\ncluster:\n{}",
        node(&data, "web-1"),
        agent.log_text(),
        cluster.log_text()
    );
    let table = jctl_ok(&data, &["nodes", "ls"]);
    assert!(
        table.contains("web-1") && table.contains("env=staging") && table.contains("up via"),
        "{table}"
    );
    // The identity is kept, private.
    let key = dir.path().join("web-1-data/host_identity/tls.key");
    assert!(key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // The proxy restarts: the agent reconnects by itself.
    assert!(cluster.terminate(), "cluster did not stop cleanly");
    let cluster = start_cluster(dir.path(), &data, proxy_port, "cluster-2.log");
    assert!(
        wait_until(Duration::from_secs(30), || cluster
            .log_text()
            .contains("reverse tunnel up")),
        "the agent did not reconnect:\nagent:\n{}\ncluster:\n{}",
        agent.log_text(),
        cluster.log_text()
    );

    // The agent restarts without its token, with the identity it stored.
    assert!(agent.terminate(), "agent did not stop cleanly");
    let config = agent_config(dir.path(), "web-1", &proxy, None, &pin);
    let agent = start_daemon(
        &["-c", config.to_str().unwrap()],
        &dir.path().join("agent-2.log"),
    );
    assert!(
        wait_until(Duration::from_secs(20), || agent
            .log_text()
            .contains("using the stored host identity")
            && cluster.log_text().matches("reverse tunnel up").count() >= 2),
        "restart without a token failed:\n{}",
        agent.log_text()
    );
    let joins = audit_events(&data, "instance.join");
    let successes = joins.iter().filter(|e| e["success"] == true).count();
    assert_eq!(successes, 1, "joined more than once: {joins:#?}");

    // A reused token, a wrong token, an expired token and a wrong pin are refused,
    // clearly.
    let reused = agent_config(dir.path(), "web-2", &proxy, Some(&token), &pin);
    let err = failing_agent(&reused);
    assert!(err.contains("refused to let this host join"), "{err}");
    let wrong = agent_config(
        dir.path(),
        "bad-token",
        &proxy,
        Some("0123456789abcdef0123456789abcdef"),
        &pin,
    );
    let err = failing_agent(&wrong);
    assert!(err.contains("refused to let this host join"), "{err}");
    let (short, _) = new_join_token(&data, &["--type", "node", "--ttl", "1s"]);
    std::thread::sleep(Duration::from_secs(2));
    let expired = agent_config(dir.path(), "late", &proxy, Some(&short), &pin);
    let err = failing_agent(&expired);
    assert!(err.contains("refused to let this host join"), "{err}");
    let wrong_pin = format!("sha256:{}", "ab".repeat(32));
    let mitm = agent_config(dir.path(), "wrong-pin", &proxy, Some(&token), &wrong_pin);
    let mut child = jumpgate()
        .args(["start", "-c", mitm.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A wrong pin looks like an impostor: the agent keeps refusing and never joins.
    std::thread::sleep(Duration::from_secs(3));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(err.contains("ca_pin") || err.contains("pin"), "{err}");
    assert!(node(&data, "wrong-pin").is_none());
    let joins = audit_events(&data, "instance.join");
    let failures = joins.iter().filter(|e| e["success"] == false).count();
    assert!(failures >= 2, "refused joins not audited: {joins:#?}");
}

/// A proxy on a host of its own (as in multi-region deployments) joins with a proxy
/// token through the auth API, serves the web API with its joined identity, and carries
/// an agent's join and tunnel.
#[test]
fn a_proxy_of_its_own_joins_and_carries_agents() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster-data");
    let _cluster = start_cluster(dir.path(), &data, free_port(), "cluster.log");
    let (proxy_token, pin) = new_join_token(&data, &["--type", "proxy"]);
    let edge_port = free_port();
    let edge_addr = format!("127.0.0.1:{edge_port}");
    let edge_config =
        |token: Option<&str>| edge_proxy_config(dir.path(), &data, &edge_addr, token, &pin);
    let config = edge_config(Some(&proxy_token));
    let mut edge = start_daemon(
        &["-c", config.to_str().unwrap(), "--proxy-addr", &edge_addr],
        &dir.path().join("edge.log"),
    );
    assert!(
        wait_until(Duration::from_secs(30), || edge.readyz().is_some_and(
            |(status, body)| status == 200 && body.contains("proxy")
        )),
        "the edge proxy did not come up:\n{}",
        edge.log_text()
    );
    // Both proxies are present; the web API answers with the joined identity.
    assert!(wait_until(Duration::from_secs(20), || {
        jctl_ok(&data, &["get", "proxies", "--format", "json"]).contains(&edge_addr)
    }));
    let ping = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(data.join("admin/ca.pem"))
        .arg(format!("https://{edge_addr}/webapi/ping"))
        .output()
        .unwrap();
    assert!(
        text(&ping.stdout).contains("\"cluster_name\":\"edge\""),
        "{}{}",
        text(&ping.stdout),
        text(&ping.stderr)
    );

    // An agent that knows only the edge proxy joins and tunnels through it.
    let (node_token, _) = new_join_token(&data, &["--type", "node"]);
    let agent_config = agent_config(dir.path(), "db-1", &edge_addr, Some(&node_token), &pin);
    let agent = start_daemon(
        &["-c", agent_config.to_str().unwrap()],
        &dir.path().join("agent.log"),
    );
    assert!(
        wait_until(Duration::from_secs(20), || node(&data, "db-1")
            .is_some_and(|n| has_tunnel(&n))),
        "agent not seen through the edge proxy:\nagent:\n{}\nedge:\n{}",
        agent.log_text(),
        edge.log_text()
    );

    // The edge proxy restarts without its token, from its stored identity.
    assert!(edge.terminate());
    let config = edge_config(None);
    let edge = start_daemon(
        &["-c", config.to_str().unwrap(), "--proxy-addr", &edge_addr],
        &dir.path().join("edge-2.log"),
    );
    assert!(
        wait_until(Duration::from_secs(30), || edge
            .log_text()
            .contains("reverse tunnel up")),
        "the agent did not come back through the restarted edge proxy:\n{}",
        edge.log_text()
    );
    assert!(edge.log_text().contains("using the stored host identity"));

    // After a CA rotation the edge proxy renews its own identity through the auth API.
    jctl_ok(
        &data,
        &["auth", "rotate", "--type", "all", "--grace-period", "1h"],
    );
    let new_pin = active_pin(&data);
    let stored_ca = dir.path().join("edge-data/proxy/host_identity/tls_ca.pem");
    assert!(
        wait_until(Duration::from_secs(20), || {
            holds_pin(&stored_ca, &new_pin)
        }),
        "the edge proxy did not renew:\n{}",
        edge.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(10), || edge
            .log_text()
            .contains("the proxy follows the rotated certificate authorities")),
        "{}",
        edge.log_text()
    );
}

/// Two proxies behind one load balancer (HAProxy, round robin), as in seed 004: with the
/// default `agent_mesh` strategy an agent that knows only the load balancer learns both
/// proxies from them and holds a tunnel to each.
#[test]
fn with_two_proxies_behind_a_load_balancer_an_agent_tunnels_to_both() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster-data");
    let main_port = free_port();
    let _cluster = start_cluster(dir.path(), &data, main_port, "cluster.log");
    let (token, pin) = new_join_token(&data, &["--type", "proxy,node", "--reusable"]);
    let edge_port = free_port();
    let edge_addr = format!("127.0.0.1:{edge_port}");
    let edge_config = edge_proxy_config(dir.path(), &data, &edge_addr, Some(&token), &pin);
    let edge = start_daemon(
        &[
            "-c",
            edge_config.to_str().unwrap(),
            "--proxy-addr",
            &edge_addr,
        ],
        &dir.path().join("edge.log"),
    );
    let lb_port = free_port();
    let _lb = start_haproxy(
        dir.path(),
        &format!(
            "frontend proxies\n  bind 127.0.0.1:{lb_port}\n  default_backend all\n\
             backend all\n  balance roundrobin\n  server a 127.0.0.1:{main_port}\n  server b {edge_addr}\n"
        ),
        &[lb_port],
    );
    let lb = format!("127.0.0.1:{lb_port}");
    let agent_config = agent_config(dir.path(), "app-1", &lb, Some(&token), &pin);
    let agent = start_daemon(
        &["-c", agent_config.to_str().unwrap()],
        &dir.path().join("agent.log"),
    );
    let both = wait_until(Duration::from_secs(40), || {
        node(&data, "app-1").is_some_and(|n| {
            n["spec"]["tunnels"]
                .as_array()
                .is_some_and(|tunnels| tunnels.len() == 2)
        })
    });
    assert!(
        both,
        "the agent does not hold a tunnel to each proxy: {:?}\nagent:\n{}\nedge:\n{}",
        node(&data, "app-1"),
        agent.log_text(),
        edge.log_text()
    );
    let table = jctl_ok(&data, &["nodes", "ls"]);
    assert!(table.contains("app-1"), "{table}");
    assert!(agent.log_text().contains("learned the cluster's proxies"));
}

/// Issue 16's failure, as an operator met it: HAProxy (health-checked, TCP, round robin) in
/// front of two proxies, `agent_mesh`, the agent and the user knowing only the load
/// balancer. One proxy is killed. The agent's tunnel slot for it keeps dialling through the
/// load balancer and lands on the survivor, which must not cost the survivor's existing
/// tunnel: every `jsh ssh` through the load balancer afterwards reaches the node.
#[test]
fn behind_a_load_balancer_a_killed_proxy_does_not_cost_the_survivors_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster-data");
    let main_port = free_port();
    let cluster = start_cluster(dir.path(), &data, main_port, "cluster.log");
    let (token, pin) = new_join_token(&data, &["--type", "proxy,node", "--reusable"]);
    let edge_port = free_port();
    let edge_addr = format!("127.0.0.1:{edge_port}");
    let edge_config = edge_proxy_config(dir.path(), &data, &edge_addr, Some(&token), &pin);
    let edge = start_daemon(
        &[
            "-c",
            edge_config.to_str().unwrap(),
            "--proxy-addr",
            &edge_addr,
        ],
        &dir.path().join("edge.log"),
    );
    let lb_port = free_port();
    let _lb = start_haproxy(
        dir.path(),
        &format!(
            "frontend proxies\n  bind 127.0.0.1:{lb_port}\n  default_backend all\n\
             backend all\n  balance roundrobin\n  option redispatch\n  retries 2\n\
             server a 127.0.0.1:{main_port} check inter 500ms fall 2 rise 1\n\
             server b {edge_addr} check inter 500ms fall 2 rise 1\n"
        ),
        &[lb_port],
    );
    let lb = format!("127.0.0.1:{lb_port}");
    let agent_config = agent_config(dir.path(), "app-2", &lb, Some(&token), &pin);
    let agent = start_daemon(
        &["-c", agent_config.to_str().unwrap()],
        &dir.path().join("agent.log"),
    );
    let both = wait_until(Duration::from_secs(40), || {
        node(&data, "app-2").is_some_and(|n| {
            n["spec"]["tunnels"]
                .as_array()
                .is_some_and(|tunnels| tunnels.len() == 2)
        })
    });
    assert!(both, "no tunnel to each proxy:\n{}", agent.log_text());

    let bins = support::bins();
    let login = jumpgate_test_support::current_user();
    let otp = bins.add_user(&data, "erin", "access", &login);
    let home = dir.path().join("erin-home");
    let logged_in = bins.login(&home, &lb, &data.join("admin/ca.pem"), "erin", &otp);
    assert!(logged_in.status.success(), "{}", text(&logged_in.stderr));
    let target = format!("{login}@app-2");
    let ssh = |home: &Path| support::jsh(home, &["ssh", &target, "echo", "reached"], None);
    let first = ssh(&home);
    assert!(
        text(&first.stdout).contains("reached"),
        "{}",
        text(&first.stderr)
    );

    drop(edge); // killed, as a crashed host: no goodbye to anyone
    // The load balancer's health check (2 × 500 ms) takes the dead proxy out.
    std::thread::sleep(Duration::from_secs(2));
    let mut failures = Vec::new();
    for attempt in 0..10 {
        let out = ssh(&home);
        if !text(&out.stdout).contains("reached") {
            failures.push(format!("attempt {attempt}: {}", text(&out.stderr)));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        failures.is_empty(),
        "{} of 10 connections failed after a proxy died:\n{}\nsurvivor:\n{}\nagent:\n{}",
        failures.len(),
        failures.join("\n"),
        cluster.log_text(),
        agent.log_text()
    );
}

/// Seed 000's small cluster with no load balancer: the agent lists both proxies in
/// `proxy_server` (and joins through whichever answers), holds a tunnel to each, and the
/// user lists both in `jsh login --proxy`. When one proxy is killed, the user's commands
/// and the node's tunnel go on through the other, with no DNS change.
#[test]
fn an_agent_given_two_proxies_tunnels_to_both_and_survives_losing_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster-data");
    let main_port = free_port();
    let cluster = start_cluster(dir.path(), &data, main_port, "cluster.log");
    let (token, pin) = new_join_token(&data, &["--type", "proxy,node", "--reusable"]);
    let edge_port = free_port();
    let edge_addr = format!("127.0.0.1:{edge_port}");
    let edge_config = edge_proxy_config(dir.path(), &data, &edge_addr, Some(&token), &pin);
    let edge = start_daemon(
        &[
            "-c",
            edge_config.to_str().unwrap(),
            "--proxy-addr",
            &edge_addr,
        ],
        &dir.path().join("edge.log"),
    );
    let main_addr = format!("127.0.0.1:{main_port}");
    let both_proxies = format!("{edge_addr},{main_addr}");
    let agent_config = agent_config(dir.path(), "app-4", &both_proxies, Some(&token), &pin);
    let agent = start_daemon(
        &["-c", agent_config.to_str().unwrap()],
        &dir.path().join("agent.log"),
    );
    let both = wait_until(Duration::from_secs(40), || {
        node(&data, "app-4").is_some_and(|n| {
            n["spec"]["tunnels"]
                .as_array()
                .is_some_and(|tunnels| tunnels.len() == 2)
        })
    });
    assert!(
        both,
        "no tunnel to each listed proxy:\n{}",
        agent.log_text()
    );

    let bins = support::bins();
    let login = jumpgate_test_support::current_user();
    let otp = bins.add_user(&data, "jane", "access", &login);
    let home = dir.path().join("jane-home");
    // The user lists both proxies too (`jsh login --proxy a,b`).
    let logged_in = bins.login(
        &home,
        &both_proxies,
        &data.join("admin/ca.pem"),
        "jane",
        &otp,
    );
    assert!(logged_in.status.success(), "{}", text(&logged_in.stderr));
    let target = format!("{login}@app-4");
    drop(edge); // killed
    std::thread::sleep(Duration::from_secs(1));
    for attempt in 0..5 {
        let out = support::jsh(&home, &["ssh", &target, "echo", "reached"], None);
        assert!(
            text(&out.stdout).contains("reached"),
            "attempt {attempt}: {}\nagent:\n{}\nproxy:\n{}",
            text(&out.stderr),
            agent.log_text(),
            cluster.log_text()
        );
    }
    // Restarted, the agent still finds a live proxy in its list (the dead one first).
    drop(agent);
    let agent = start_daemon(
        &["-c", agent_config.to_str().unwrap()],
        &dir.path().join("agent-2.log"),
    );
    assert!(
        wait_until(Duration::from_secs(40), || agent
            .log_text()
            .contains("reverse tunnel up")),
        "{}",
        agent.log_text()
    );
}

/// Seed 004's auth tier: two auth servers on one PostgreSQL behind an internal layer-4
/// load balancer (HAProxy on the auth port), a proxy that knows only the load balancer,
/// and an agent behind the proxy. One auth server is killed: logins, `jsh ssh` and the
/// agent's heartbeats carry on through the other, with no configuration change.
#[test]
fn behind_an_auth_load_balancer_the_cluster_survives_the_loss_of_an_auth_server() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let postgres = runtime.block_on(jumpgate_test_support::Postgres::start());
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("pg-password");
    std::fs::write(&password_file, postgres.password()).unwrap();
    let auth_ports = [free_port(), free_port()];
    let auth_config = |name: &str, port: u16| {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "version: v3\njumpgate:\n  data_dir: {}\n  storage:\n    type: postgresql\n    conn_string: \"{}\"\n    password_file: {}\n    audit_events_uri: [\"{}\"]\nauth_service:\n  cluster_name: ha\n  listen_addr: 127.0.0.1:{port}\nproxy_service:\n  enabled: false\nssh_service:\n  enabled: false\n",
                dir.path().join(format!("{name}-data")).display(),
                postgres.conn_string(),
                password_file.display(),
                postgres
                    .conn_string()
                    .replacen('@', &format!(":{}@", postgres.password()), 1),
            ),
        )
        .unwrap();
        path
    };
    let start_auth = |name: &str, port: u16| {
        let config = auth_config(name, port);
        let addr = format!("127.0.0.1:{port}");
        start_daemon(
            &["-c", config.to_str().unwrap(), "--auth-addr", &addr],
            &dir.path().join(format!("{name}.log")),
        )
    };
    let auth_a = start_auth("auth-a", auth_ports[0]);
    let auth_b = start_auth("auth-b", auth_ports[1]);
    let data_a = dir.path().join("auth-a-data");
    let data_b = dir.path().join("auth-b-data");
    for data in [&data_a, &data_b] {
        assert!(wait_until(Duration::from_secs(30), || data
            .join("admin/auth_addr")
            .exists()));
    }
    let lb_port = free_port();
    let _lb = start_haproxy(
        dir.path(),
        &format!(
            "frontend auth\n  bind 127.0.0.1:{lb_port}\n  default_backend auth_servers\n\
             backend auth_servers\n  balance roundrobin\n  option redispatch\n  retries 2\n\
             server a 127.0.0.1:{} check inter 500ms fall 2 rise 1\n\
             server b 127.0.0.1:{} check inter 500ms fall 2 rise 1\n",
            auth_ports[0], auth_ports[1]
        ),
        &[lb_port],
    );

    let (proxy_token, pin) = new_join_token(&data_a, &["--type", "proxy"]);
    let proxy_port = free_port();
    let proxy_addr = format!("127.0.0.1:{proxy_port}");
    let proxy_config = dir.path().join("proxy.yaml");
    std::fs::write(
        &proxy_config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: proxy-1\n  auth_server: 127.0.0.1:{lb_port}\n  auth_token: \"{proxy_token}\"\n  ca_pin: \"{pin}\"\nauth_service:\n  enabled: false\nproxy_service:\n  web_listen_addr: {proxy_addr}\nssh_service:\n  enabled: false\n",
            dir.path().join("proxy-data").display()
        ),
    )
    .unwrap();
    let proxy = start_daemon(
        &[
            "-c",
            proxy_config.to_str().unwrap(),
            "--proxy-addr",
            &proxy_addr,
        ],
        &dir.path().join("proxy.log"),
    );
    let (node_token, _) = new_join_token(&data_b, &["--type", "node"]);
    let agent_config = agent_config(dir.path(), "app-3", &proxy_addr, Some(&node_token), &pin);
    let agent = start_daemon(
        &["-c", agent_config.to_str().unwrap()],
        &dir.path().join("agent.log"),
    );
    assert!(
        wait_until(Duration::from_secs(40), || node(&data_a, "app-3")
            .is_some_and(|n| has_tunnel(&n))),
        "the agent never showed up:\nproxy:\n{}\nagent:\n{}",
        proxy.log_text(),
        agent.log_text()
    );

    let bins = support::bins();
    let login = jumpgate_test_support::current_user();
    // Two users: a TOTP code is good once, and the second login must not wait a window.
    let otps = ["hana", "ivan"].map(|user| bins.add_user(&data_a, user, "access", &login));
    let ca = data_a.join("admin/ca.pem");
    let ssh_through = |home: &Path, user: usize| {
        let name = ["hana", "ivan"][user];
        let logged_in = bins.login(home, &proxy_addr, &ca, name, &otps[user]);
        assert!(logged_in.status.success(), "{}", text(&logged_in.stderr));
        let target = format!("{login}@app-3");
        support::jsh(home, &["ssh", &target, "echo", "reached"], None)
    };
    let before = ssh_through(&dir.path().join("home-1"), 0);
    assert!(
        text(&before.stdout).contains("reached"),
        "{}",
        text(&before.stderr)
    );

    drop(auth_a); // killed
    let killed = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(2)); // the load balancer's health check
    let after = ssh_through(&dir.path().join("home-2"), 1);
    assert!(
        text(&after.stdout).contains("reached"),
        "after losing one auth server: {}\nproxy:\n{}",
        text(&after.stderr),
        proxy.log_text()
    );
    // The node's record lives 15 s past its last heartbeat: still listed well after that,
    // its heartbeats go on through the surviving auth server.
    std::thread::sleep(Duration::from_secs(17).saturating_sub(killed.elapsed()));
    assert!(
        node(&data_b, "app-3").is_some_and(|n| has_tunnel(&n)),
        "the agent's heartbeats stopped with the auth server:\n{}",
        agent.log_text()
    );
    drop(auth_b);
}

/// An agent whose identity comes from another cluster (same name, other CA) gets no
/// tunnel: each side refuses the other's certificate, and the proxy's refusal is in its
/// cluster's audit log.
#[test]
fn an_agent_of_another_cluster_is_refused_on_both_sides_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let (a_data, b_data) = (a_dir.join("data"), b_dir.join("data"));
    let (a_port, b_port) = (free_port(), free_port());
    let _a = start_cluster(&a_dir, &a_data, a_port, "a.log");
    let _b = start_cluster(&b_dir, &b_data, b_port, "b.log");

    // The agent joins cluster B…
    let (token, pin) = new_join_token(&b_data, &["--type", "node"]);
    let b_proxy = format!("127.0.0.1:{b_port}");
    let config = agent_config(dir.path(), "stray", &b_proxy, Some(&token), &pin);
    let mut agent = start_daemon(
        &["-c", config.to_str().unwrap()],
        &dir.path().join("agent.log"),
    );
    assert!(wait_until(Duration::from_secs(20), || node(
        &b_data, "stray"
    )
    .is_some_and(|n| has_tunnel(&n))));
    assert!(agent.terminate());

    // …then is pointed at cluster A's proxy with B's identity.
    let a_proxy = format!("127.0.0.1:{a_port}");
    let config = agent_config(dir.path(), "stray", &a_proxy, None, &pin);
    let agent = start_daemon(
        &["-c", config.to_str().unwrap()],
        &dir.path().join("agent-2.log"),
    );
    let audited = wait_until(Duration::from_secs(20), || {
        audit_events(&a_data, "auth")
            .iter()
            .any(|e| e["method"] == "proxy:jumpgate-reversetunnel" && e["success"] == false)
    });
    assert!(
        audited,
        "the refused tunnel was not audited:\n{}",
        agent.log_text()
    );
    assert!(
        agent.log_text().contains("cannot open a reverse tunnel"),
        "{}",
        agent.log_text()
    );
    assert!(node(&a_data, "stray").is_none());
}

/// After a CA rotation an agent renews its identity by itself (no token), in the grace
/// period, and keeps working once the old CAs are gone, also across its own restart.
#[test]
fn an_agent_renews_its_identity_after_a_ca_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster-data");
    let proxy_port = free_port();
    let cluster = start_cluster(dir.path(), &data, proxy_port, "cluster.log");
    let (token, pin) = new_join_token(&data, &["--type", "node"]);
    let proxy = format!("127.0.0.1:{proxy_port}");
    let config = agent_config(dir.path(), "db-2", &proxy, Some(&token), &pin);
    let mut agent = start_daemon(
        &["-c", config.to_str().unwrap()],
        &dir.path().join("agent.log"),
    );
    assert!(wait_until(Duration::from_secs(20), || node(&data, "db-2")
        .is_some_and(|n| has_tunnel(&n))));

    let rotated = jctl_ok(
        &data,
        &["auth", "rotate", "--type", "all", "--grace-period", "8s"],
    );
    assert!(rotated.contains("Rotated"), "{rotated}");
    let new_pin = active_pin(&data);
    assert_ne!(new_pin, pin);
    let stored_ca = dir.path().join("db-2-data/host_identity/tls_ca.pem");
    let renewed = wait_until(Duration::from_secs(20), || holds_pin(&stored_ca, &new_pin));
    assert!(renewed, "the agent did not renew:\n{}", agent.log_text());
    assert!(
        wait_until(Duration::from_secs(5), || agent
            .log_text()
            .contains("renewed the host identity")),
        "{}",
        agent.log_text()
    );

    // The old CAs are gone after 8 s; the agent restarts with its renewed identity.
    std::thread::sleep(Duration::from_secs(9));
    assert!(agent.terminate());
    let tunnels_before = cluster.log_text().matches("reverse tunnel up").count();
    let config = agent_config(dir.path(), "db-2", &proxy, None, &pin);
    let agent = start_daemon(
        &["-c", config.to_str().unwrap()],
        &dir.path().join("agent-2.log"),
    );
    assert!(
        wait_until(Duration::from_secs(20), || cluster
            .log_text()
            .matches("reverse tunnel up")
            .count()
            > tunnels_before),
        "no tunnel with the renewed identity:\nagent:\n{}",
        agent.log_text()
    );
    let joins = audit_events(&data, "instance.join");
    assert_eq!(joins.len(), 1, "renewal must not need a join: {joins:#?}");
}

/// The node's own SSH listener (`ssh_service.listen_addr`) cannot be held by clients
/// that never log in: at most 100 unauthenticated connections at once (the rest are
/// closed at once, as OpenSSH's `MaxStartups`), and each is disconnected when the login
/// grace time (30 s) is over.
#[test]
fn the_nodes_ssh_listener_limits_and_times_out_unauthenticated_clients() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster-data");
    let proxy_port = free_port();
    let proxy = format!("127.0.0.1:{proxy_port}");
    let _cluster = start_cluster(dir.path(), &data, proxy_port, "cluster.log");
    let (token, pin) = new_join_token(&data, &["--type", "node", "--ttl", "1h"]);
    let ssh_port = free_port();
    let config = dir.path().join("direct.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: direct-1\n  proxy_server: {proxy}\n  auth_token: \"{token}\"\n  ca_pin: \"{pin}\"\nssh_service:\n  listen_addr: 127.0.0.1:{ssh_port}\n",
            dir.path().join("direct-data").display()
        ),
    )
    .unwrap();
    let agent = start_daemon(
        &["-c", config.to_str().unwrap()],
        &dir.path().join("direct.log"),
    );
    let listening = wait_until(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", ssh_port)).is_ok()
    });
    assert!(listening, "the node never listened:\n{}", agent.log_text());
    std::thread::sleep(Duration::from_millis(300));

    // 120 clients that say their version line and then nothing.
    let started = Instant::now();
    let mut banners = Vec::new();
    let mut closed_at_once = 0;
    for _ in 0..120 {
        let mut stream = TcpStream::connect(("127.0.0.1", ssh_port)).unwrap();
        stream.write_all(b"SSH-2.0-silent\r\n").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => closed_at_once += 1,
            Ok(_) => {
                assert!(line.starts_with("SSH-2.0-Jumpgate"), "{line:?}");
                banners.push(reader);
            }
        }
    }
    assert_eq!(
        banners.len(),
        100,
        "served beyond the unauthenticated limit"
    );
    assert_eq!(closed_at_once, 20);

    // Each is disconnected at the end of the login grace time.
    for (index, reader) in banners.iter_mut().enumerate() {
        let left = Duration::from_secs(40).saturating_sub(started.elapsed());
        reader
            .get_mut()
            .set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .unwrap();
        let mut rest = Vec::new();
        let ended = loop {
            let mut chunk = [0u8; 4096];
            match std::io::Read::read(reader.get_mut(), &mut chunk) {
                Ok(0) => break true,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break false;
                }
                Err(_) => break true,
            }
        };
        assert!(
            ended,
            "client {index} still connected after {:?}",
            started.elapsed()
        );
    }
    assert!(
        started.elapsed() >= Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );

    // Slots come back: a new client is served again.
    let mut stream = TcpStream::connect(("127.0.0.1", ssh_port)).unwrap();
    stream.write_all(b"SSH-2.0-late\r\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    assert!(line.starts_with("SSH-2.0-Jumpgate"), "{line:?}");
}

/// OpenSSH straight to a node's own listener (no proxy on the way), with a certificate
/// from `jctl auth sign`.
/// Established TCP connections from process `pid` to `127.0.0.1:port` (`ss -tnp`).
fn agent_connections_to(pid: u32, port: u16) -> usize {
    let out = Command::new("ss")
        .args(["-Htnp", "state", "established"])
        .arg(format!("dst 127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "ss: {}", text(&out.stderr));
    let owner = format!("pid={pid},");
    text(&out.stdout)
        .lines()
        .filter(|line| line.contains(&owner))
        .count()
}

fn direct_ssh(dir: &Path, key: &Path, port: u16, command: &str) -> std::process::Output {
    let cert = PathBuf::from(format!("{}-cert.pub", key.display()));
    let known_hosts = dir.join("known_hosts");
    openssh_to(
        port,
        "root",
        key,
        &cert,
        KnownHosts::AcceptAny(&known_hosts),
    )
    .arg(command)
    .output()
    .expect("OpenSSH's ssh (./test.sh installs it)")
}

/// A node dialled directly decides like the proxy and auth: a certificate grants only the
/// roles its user still holds. Taking the role from the user, or deleting the user, shuts
/// out a certificate issued before.
#[test]
fn a_node_dialled_directly_honours_only_roles_the_user_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster-data");
    let proxy_port = free_port();
    let proxy = format!("127.0.0.1:{proxy_port}");
    let cluster = start_cluster(dir.path(), &data, proxy_port, "cluster.log");
    let (token, pin) = new_join_token(&data, &["--type", "node", "--ttl", "1h"]);
    let ssh_port = free_port();
    let config = dir.path().join("direct.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: direct-2\n  proxy_server: {proxy}\n  auth_token: \"{token}\"\n  ca_pin: \"{pin}\"\nssh_service:\n  listen_addr: 127.0.0.1:{ssh_port}\n",
            dir.path().join("direct-data").display()
        ),
    )
    .unwrap();
    let agent = start_daemon(
        &["-c", config.to_str().unwrap()],
        &dir.path().join("direct.log"),
    );
    jctl_ok(
        &data,
        &[
            "users", "add", "bob", "--roles", "access", "--logins", "root",
        ],
    );
    let key = dir.path().join("bob");
    jctl_ok(
        &data,
        &[
            "auth",
            "sign",
            "--user",
            "bob",
            "--ttl",
            "1h",
            "--out",
            key.to_str().unwrap(),
        ],
    );
    let allowed = wait_until(Duration::from_secs(20), || {
        text(&direct_ssh(dir.path(), &key, ssh_port, "echo in").stdout) == "in\n"
    });
    assert!(allowed, "bob never got in:\n{}", agent.log_text());

    // The agent's caches (roles, users, locks), audit events and recording uploads share
    // one connection to the auth API: with the tunnel and the heartbeat, three sockets to
    // the proxy's port (a renewal check may briefly add one), not seven.
    let connections = agent_connections_to(agent.process.id(), proxy_port);
    assert!(
        (2..=4).contains(&connections),
        "the agent holds {connections} connections to the proxy:\n{}",
        agent.log_text()
    );

    // The role is taken from bob: the certificate still names it.
    let user = dir.path().join("bob.yaml");
    std::fs::write(
        &user,
        "kind: user\nversion: v2\nmetadata:\n  name: bob\nspec:\n  roles: [auditor]\n  traits:\n    logins: [root]\n",
    )
    .unwrap();
    jctl_ok(&data, &["create", "-f", user.to_str().unwrap()]);
    let refused = wait_until(Duration::from_secs(5), || {
        !direct_ssh(dir.path(), &key, ssh_port, "echo in")
            .status
            .success()
    });
    assert!(refused, "a role bob no longer holds still let him in");
    let out = direct_ssh(dir.path(), &key, ssh_port, "echo in");
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    assert!(
        agent
            .log_text()
            .contains("holds none of the certificate's roles"),
        "{}",
        agent.log_text()
    );

    // Given back, then bob deleted.
    std::fs::write(
        &user,
        "kind: user\nversion: v2\nmetadata:\n  name: bob\nspec:\n  roles: [access]\n  traits:\n    logins: [root]\n",
    )
    .unwrap();
    jctl_ok(&data, &["create", "-f", user.to_str().unwrap()]);
    let allowed = wait_until(Duration::from_secs(5), || {
        direct_ssh(dir.path(), &key, ssh_port, "true")
            .status
            .success()
    });
    assert!(allowed, "bob's role came back but he was still refused");
    // The cluster restarts: the node follows the new auth server's changes again.
    drop(cluster);
    let _cluster = start_cluster(dir.path(), &data, proxy_port, "cluster-2.log");
    jctl_ok(&data, &["users", "rm", "bob"]);
    let refused = wait_until(Duration::from_secs(15), || {
        !direct_ssh(dir.path(), &key, ssh_port, "true")
            .status
            .success()
    });
    assert!(refused, "a deleted user's certificate still got in");
}
