//! Topology B (issue 16; seed 004) whole, across real network delay: two regions 40 ms
//! apart one way (`jumpgate_test_support::Regions`). In `us`: two auth servers on the
//! DynamoDB emulator (moto) behind an internal HAProxy on 3025 (seed 004's internal NLB),
//! recordings on an S3 server (s3s-fs), two proxies behind the region's HAProxy. In `eu`:
//! one proxy behind its own HAProxy. `proxy_peering` with `agent_connection_count: 2` and
//! `peer_public_addr`; the load balancers send PROXY v2 (`proxy_protocol: on`). Agents and
//! users in both regions know one name, `jumpgate.example.test:443`, which each region's
//! "DNS" (its hosts' `/etc/hosts`) answers with the region's own load balancer, as seed
//! 004's latency-based routing does.
//!
//! A user in each region uses every path (exec, terminal, scp, OpenSSH, playback) to the
//! node in each region: the far one through peering. Then a proxy and an auth server are
//! killed (SIGKILL) and the users carry on; the killed proxy comes back and rejoins. No
//! session is missing from the audit log or counted twice, and every terminal session's
//! recording plays back from S3.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use jumpgate_test_support::{
    Bins, Cluster, Daemon, DynamoEmulator, EMULATOR_REGION, Haproxy, Host, Regions, S3_ACCESS_KEY,
    S3_BUCKET, S3_SECRET_KEY, S3Server, start_haproxy_in,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{text, wait_until};

const ONE_WAY: Duration = Duration::from_millis(40);
/// The name agents and users know; each region resolves it to its own load balancer.
const PUBLIC_NAME: &str = "jumpgate.example.test";
/// The auth servers' internal load balancer, for the proxies.
const AUTH_NAME: &str = "auth.internal.test";

/// The credentials the auth servers find in the standard AWS chain: the S3 server checks
/// them; the DynamoDB emulator takes any.
const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

fn write(path: &Path, contents: String) -> PathBuf {
    std::fs::write(path, contents).unwrap();
    path.to_path_buf()
}

fn host_uuid(data: &Path) -> String {
    std::fs::read_to_string(data.join("host_uuid"))
        .unwrap()
        .trim()
        .to_string()
}

/// Seed 004's auth server config on `host`: cluster state and audit events in DynamoDB,
/// recordings in S3.
fn start_auth(dir: &Path, host: &Host, name: &str, dynamo: &str, s3: &str) -> (Daemon, PathBuf) {
    let data = dir.join(format!("{name}-data"));
    let addr = host.addr(3025).to_string();
    let config = write(
        &dir.join(format!("{name}.yaml")),
        format!(
            "version: v3\njumpgate:\n  data_dir: {data}\n  storage:\n    type: dynamodb\n    region: {EMULATOR_REGION}\n    table_name: jumpgate-state\n    endpoint: {dynamo}\n    audit_events_uri: [\"dynamodb://jumpgate-events?region={EMULATOR_REGION}&endpoint={dynamo}\"]\n    audit_sessions_uri: \"s3://{S3_BUCKET}/sessions?region={EMULATOR_REGION}&endpoint={s3}\"\nauth_service:\n  cluster_name: seed-004\n  listen_addr: {addr}\n  tunnel_strategy:\n    type: proxy_peering\n    agent_connection_count: 2\nproxy_service:\n  enabled: false\nssh_service:\n  enabled: false\n",
            data = data.display()
        ),
    );
    let daemon = Daemon::start_in_with_env(
        host,
        support::bins(),
        &["-c", config.to_str().unwrap(), "--auth-addr", &addr],
        &AWS_ENV,
        &dir.join(format!("{name}.log")),
    );
    daemon.wait_ready(&["auth"], &[&data.join("admin/auth_addr")]);
    (daemon, data)
}

/// A proxy on `host` as seed 004 configures it: behind its region's load balancer
/// (PROXY v2), its peer address named, auth reached through the internal load balancer.
fn proxy_config(dir: &Path, host: &Host, name: &str, token: &str, pin: &str) -> PathBuf {
    let addr = host.addr(3080);
    write(
        &dir.join(format!("{name}.yaml")),
        format!(
            "version: v3\njumpgate:\n  data_dir: {data}\n  nodename: {name}\n  auth_server: {AUTH_NAME}:3025\n  auth_token: \"{token}\"\n  ca_pin: \"{pin}\"\nauth_service:\n  enabled: false\nproxy_service:\n  web_listen_addr: {addr}\n  public_addr: {PUBLIC_NAME}:443\n  peer_public_addr: {peer}\n  proxy_protocol: on\nssh_service:\n  enabled: false\n",
            data = dir.join(format!("{name}-data")).display(),
            peer = host.addr(3021),
        ),
    )
}

fn start_proxy(dir: &Path, host: &Host, name: &str, log: &str) -> Daemon {
    let config = dir.join(format!("{name}.yaml"));
    let daemon = Daemon::start_in(
        host,
        support::bins(),
        &[
            "-c",
            config.to_str().unwrap(),
            "--proxy-addr",
            &host.addr(3080).to_string(),
        ],
        &dir.join(log),
    );
    daemon.wait_ready(&["proxy"], &[]);
    daemon
}

/// HAProxy on `host` (TCP mode) forwarding `port` round robin to `servers`, with health
/// checks every 500 ms (two failures take a server out), PROXY v2 when `send_proxy`.
fn load_balancer(
    dir: &Path,
    host: &Host,
    port: u16,
    servers: &[&Host],
    server_port: u16,
    send_proxy: bool,
) -> Haproxy {
    let dir = dir.join(format!("lb-{}", host.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let proxy_v2 = if send_proxy { " send-proxy-v2" } else { "" };
    let lines: String = servers
        .iter()
        .enumerate()
        .map(|(i, server)| {
            format!(
                "  server s{i} {}{proxy_v2} check inter 500ms fall 2 rise 1\n",
                server.addr(server_port)
            )
        })
        .collect();
    start_haproxy_in(
        host,
        &dir,
        &format!(
            "frontend in\n  bind 0.0.0.0:{port}\n  default_backend out\n\
             backend out\n  balance roundrobin\n  option redispatch\n  retries 2\n{lines}"
        ),
        &[port],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_004_two_regions_dynamodb_s3_peering_survives_losing_a_proxy_and_an_auth_server() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let regions = Regions::new(&["us", "eu"], ONE_WAY);
    let store = regions.add_host("us");
    let auth_hosts = [regions.add_host("us"), regions.add_host("us")];
    let auth_lb = regions.add_host("us");
    let proxy_us = [regions.add_host("us"), regions.add_host("us")];
    let lb_us = regions.add_host("us");
    let node_us = regions.add_host("us");
    let user_us = regions.add_host("us");
    let proxy_eu = regions.add_host("eu");
    let lb_eu = regions.add_host("eu");
    let node_eu = regions.add_host("eu");
    let user_eu = regions.add_host("eu");
    // The same eu user, on a host whose DNS answers with the us load balancer: the path
    // without peering, where the user travels to the node's region.
    let user_eu_far = regions.add_host("eu");
    // Each region's "DNS": the public name is its own load balancer.
    for host in [&store, &auth_lb, &lb_us, &node_us, &user_us]
        .into_iter()
        .chain(&auth_hosts)
        .chain(&proxy_us)
    {
        host.set_hosts(&[(PUBLIC_NAME, lb_us.ip()), (AUTH_NAME, auth_lb.ip())]);
    }
    for host in [&proxy_eu, &lb_eu, &node_eu, &user_eu] {
        host.set_hosts(&[(PUBLIC_NAME, lb_eu.ip()), (AUTH_NAME, auth_lb.ip())]);
    }
    user_eu_far.set_hosts(&[(PUBLIC_NAME, lb_us.ip())]);

    let dynamo = DynamoEmulator::start_in(&store).await;
    let s3 = S3Server::start_in(&store).await;
    let (auth_1, data_1) = start_auth(
        dir,
        &auth_hosts[0],
        "auth-1",
        &dynamo.endpoint(),
        &s3.endpoint(),
    );
    let (auth_2, data_2) = start_auth(
        dir,
        &auth_hosts[1],
        "auth-2",
        &dynamo.endpoint(),
        &s3.endpoint(),
    );
    let _auth_balancer = load_balancer(
        dir,
        &auth_lb,
        3025,
        &[&auth_hosts[0], &auth_hosts[1]],
        3025,
        false,
    );
    let admin_1 = support::bins().in_host(&auth_hosts[0]);
    let admin_2 = support::bins().in_host(&auth_hosts[1]);
    let (token, pin) = admin_1.new_join_token(&data_1, &["--type", "proxy,node", "--reusable"]);

    for (host, name) in [
        (&proxy_us[0], "proxy-us-1"),
        (&proxy_us[1], "proxy-us-2"),
        (&proxy_eu, "proxy-eu"),
    ] {
        proxy_config(dir, host, name, &token, &pin);
    }
    let mut us_1 = Some(start_proxy(
        dir,
        &proxy_us[0],
        "proxy-us-1",
        "proxy-us-1.log",
    ));
    let _us_2 = start_proxy(dir, &proxy_us[1], "proxy-us-2", "proxy-us-2.log");
    let eu = start_proxy(dir, &proxy_eu, "proxy-eu", "proxy-eu.log");
    let uuid = |name: &str| host_uuid(&dir.join(format!("{name}-data")));
    let (us_1_id, us_2_id, eu_id) = (uuid("proxy-us-1"), uuid("proxy-us-2"), uuid("proxy-eu"));
    let _lb_us = load_balancer(dir, &lb_us, 443, &[&proxy_us[0], &proxy_us[1]], 3080, true);
    let _lb_eu = load_balancer(dir, &lb_eu, 443, &[&proxy_eu], 3080, true);

    let public = format!("{PUBLIC_NAME}:443");
    let agent = |host: &Host, name: &str| {
        let config = support::agent_config(dir, name, &public, Some(&token), &pin);
        Daemon::start_in(
            host,
            support::bins(),
            &["-c", config.to_str().unwrap()],
            &dir.join(format!("{name}.log")),
        )
    };
    let agent_us = agent(&node_us, "node-us");
    let agent_eu = agent(&node_eu, "node-eu");
    let holders = |name: &str| {
        let mut holders = support::tunnel_holders(&admin_2, &data_2, name);
        holders.sort();
        holders
    };
    let mut both_us = vec![us_1_id.clone(), us_2_id.clone()];
    both_us.sort();
    // Through its region's load balancer the us node reaches both us proxies: two tunnels.
    // The eu node reaches the one eu proxy only, and keeps that one tunnel.
    assert!(
        wait_until(Duration::from_secs(40), || holders("node-us") == both_us),
        "node-us: {:?}\n{}",
        holders("node-us"),
        agent_us.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(40), || holders("node-eu")
            == [eu_id.clone()]),
        "node-eu: {:?}\n{}",
        holders("node-eu"),
        agent_eu.log_text()
    );

    let login = jumpgate_test_support::current_user();
    // Timings use a login of their own, whose shell starts as the system's does.
    let timing = jumpgate_test_support::ensure_timing_login();
    let logins = format!("{login},{timing}");
    let ca = data_1.join("admin/ca.pem");
    let ann = support::bins().in_host(&user_us);
    let eve = support::bins().in_host(&user_eu);
    let log_in = |bins: &Bins, admin: &Bins, data: &Path, user: &str| {
        let otp = admin.add_user(data, user, "access", &logins);
        let home = dir.join(format!("{user}-home"));
        let out = bins.login(&home, &public, &ca, user, &otp);
        assert!(out.status.success(), "login {user}: {}", text(&out.stderr));
        home
    };
    let ann_home = log_in(&ann, &admin_1, &data_1, "ann");
    let eve_home = log_in(&eve, &admin_1, &data_1, "eve");
    let mut sessions = 0;
    for (bins, home, user) in [(&ann, &ann_home, "ann"), (&eve, &eve_home, "eve")] {
        for node in ["node-us", "node-eu"] {
            sessions +=
                support::use_every_path(bins, home, dir, &login, node, &format!("{user}-{node}"));
        }
    }
    // The far node is reached through the near proxy's peer, and audited once.
    assert!(
        eu.log_text()
            .contains("SSH connection to a node through a peer proxy"),
        "{}",
        eu.log_text()
    );
    support::assert_sessions_audited(&admin_1, &data_1, &["ann", "eve"], sessions);

    // Latency. Inside one region, nothing added against a single dev cluster on this
    // machine; across regions, peering adds at most one inter-region round trip over going
    // to the node's region.
    let dev_dir = dir.join("dev");
    std::fs::create_dir_all(&dev_dir).unwrap();
    // On a host of its own in `us`, so that its `jsh` starts through `ip netns exec` as
    // the topology's users' do (about 2 ms here that a user never pays).
    let dev_host = regions.add_host("us");
    let dev_cluster = Cluster::start_in(&dev_host, support::bins(), &dev_dir);
    let uri = dev_cluster.add_user("dev-user", timing);
    let dev_home = dev_dir.join("home");
    dev_cluster.login(&dev_home, "dev-user", &uri);
    let dev_target = format!("{timing}@{}", dev_cluster.wait_for_dev_node());
    let eve_far = support::bins().in_host(&user_eu_far);
    let (at_us, at_eu) = (format!("{timing}@node-us"), format!("{timing}@node-eu"));
    let samples = support::timing_samples();
    // The emulator stands in for a DynamoDB that runs elsewhere; the dev cluster has none.
    let emulator_lowered = dynamo.lower_priority();
    let medians = support::ssh_medians(
        &[
            (&dev_cluster.bins, &dev_home, &dev_target),
            (&ann, &ann_home, &at_us),
            (&eve, &eve_home, &at_eu),
            (&eve, &eve_home, &at_us),
            (&eve_far, &eve_home, &at_us),
        ],
        samples,
    );
    let [dev, near_us, near_eu, far, far_without_peering] = medians[..] else {
        unreachable!()
    };
    drop((dev_cluster, emulator_lowered));
    sessions += 4 * (samples + 1);
    let round_trip = ONE_WAY * 2;
    let cable = far.saturating_sub(near_eu);
    println!(
        "jsh ssh NODE true, medians of {samples}: topology B within us {near_us:?}, within eu \
         {near_eu:?}, dev cluster {dev:?} ({:.2}× and {:.2}×)",
        near_us.as_secs_f64() / dev.as_secs_f64(),
        near_eu.as_secs_f64() / dev.as_secs_f64(),
    );
    println!(
        "eu user to the us node (one round trip {round_trip:?}): through the eu proxy and \
         peering {far:?}, through the us load balancer {far_without_peering:?} ({:.2}×); \
         the cable costs {cable:?} over the eu node ({:.1} round trips: SSH's own exchanges \
         end to end, plus the peer stream)",
        far.as_secs_f64() / far_without_peering.as_secs_f64(),
        cable.as_secs_f64() / round_trip.as_secs_f64(),
    );
    // Across the cable, SSH's own exchanges end to end are seven round trips (versions
    // and key exchange offers, the key exchange, the service, russh's key probe, the
    // signed login, the channel, the command). The dial adds none: jsh starts SSH without
    // waiting for the proxy's answer, and the proxies pass its first flight on as the
    // node's stream opens. Waiting for the answer made it eight.
    assert!(
        cable <= round_trip.mul_f64(7.7),
        "the cable cost {cable:?} over the eu node: {:.1} round trips, more than SSH's seven",
        cable.as_secs_f64() / round_trip.as_secs_f64()
    );
    // Bounds with room for a loaded 2-core machine; bench/HISTORY.md keeps the figures.
    assert!(
        near_us <= dev.mul_f64(1.3) + Duration::from_millis(30),
        "topology B within a region took {near_us:?} against {dev:?} for the dev cluster"
    );
    assert!(
        far <= far_without_peering + round_trip + Duration::from_millis(60),
        "peering cost {:?} over going to the node's region (one round trip is {round_trip:?})",
        far.saturating_sub(far_without_peering)
    );

    // A us proxy killed: within 5 s both users reach both nodes again, and node-us holds its
    // tunnel to the survivor alone (its load balancer reaches no other proxy).
    drop(us_1.take()); // SIGKILL
    let killed = Instant::now();
    for (bins, home) in [(&ann, &ann_home), (&eve, &eve_home)] {
        for node in ["node-us", "node-eu"] {
            let target = format!("{login}@{node}");
            let out = bins.jsh_until(home, &["ssh", &target, "echo", "after"], |out| {
                text(&out.stdout).contains("after") || killed.elapsed() > Duration::from_secs(5)
            });
            assert!(
                text(&out.stdout).contains("after"),
                "{target} {:?} after the kill: {}",
                killed.elapsed(),
                text(&out.stderr)
            );
            sessions += 1;
        }
    }
    assert!(
        wait_until(Duration::from_secs(6), || holders("node-us")
            == [us_2_id.clone()]),
        "node-us after the kill: {:?}",
        holders("node-us")
    );
    println!(
        "after proxy-us-1 was killed: every node reached, node-us on the survivor, {:?}",
        killed.elapsed()
    );

    // auth-1 killed: logins (a new user), sessions and their audit go on through auth-2.
    drop(auth_1);
    std::thread::sleep(Duration::from_secs(1));
    let ivy = support::bins().in_host(&user_eu);
    let ivy_home = log_in(&ivy, &admin_2, &data_2, "ivy");
    sessions += support::use_every_path(&ivy, &ivy_home, dir, &login, "node-us", "ivy-node-us");

    // The killed proxy comes back with its identity and takes its tunnel back.
    us_1 = Some(start_proxy(
        dir,
        &proxy_us[0],
        "proxy-us-1",
        "proxy-us-1-again.log",
    ));
    assert!(
        wait_until(Duration::from_secs(20), || holders("node-us") == both_us),
        "node-us after proxy-us-1 came back: {:?}\n{}",
        holders("node-us"),
        agent_us.log_text()
    );
    support::assert_sessions_audited(&admin_2, &data_2, &["ann", "eve", "ivy"], sessions);
    drop((us_1, auth_2, agent_us, agent_eu));
}
