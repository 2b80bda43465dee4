//! The public port cannot be starved (issue: security hardening, part 2): clients that
//! complete TLS on the web route (open to anyone) and then send nothing are closed
//! within the handshake deadline, and do not delay anyone else meanwhile. A real
//! daemon; the silent clients are real TLS clients (rustls) that verify the proxy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use rustls::pki_types::ServerName;
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Cluster, start_daemon, start_dev_cluster, text, tls_client_trusting};

/// The proxy's handshake deadline (`RouterSettings::handshake_timeout`'s default).
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// A TLS client config trusting the cluster's CA, offering `alpn`.
fn client_config(data: &Path, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    tls_client_trusting(&std::fs::read(data.join("admin/ca.pem")).unwrap(), alpn)
}

/// Completes a TLS handshake with the proxy and then says nothing.
fn silent_tls_client(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    let mut tls =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp).unwrap();
    }
    rustls::StreamOwned::new(tls, tcp)
}

/// `curl /webapi/ping`: its HTTP status and how long it took.
fn ping(base: &str, data: &Path) -> (String, Duration) {
    let started = Instant::now();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--cacert")
        .arg(data.join("admin/ca.pem"))
        .arg(format!("{base}/webapi/ping"))
        .output()
        .expect("curl (./test.sh installs it)");
    (text(&out.stdout), started.elapsed())
}

#[test]
fn silent_clients_past_tls_on_the_web_route_are_closed_at_the_handshake_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let Cluster {
        daemon: _daemon,
        data,
        proxy,
        ..
    } = start_dev_cluster(dir.path());
    let base = format!("https://{proxy}");

    // Half speak HTTP/1.1, half HTTP/2 (hyper's auto builder waits for the preface).
    let started = Instant::now();
    let mut silent: Vec<_> = (0..60)
        .map(|i| {
            let alpn: &[u8] = if i % 2 == 0 { b"http/1.1" } else { b"h2" };
            silent_tls_client(&proxy, client_config(&data, alpn))
        })
        .collect();

    // Meanwhile everyone else is served at once.
    let (status, took) = ping(&base, &data);
    assert_eq!(status, "200", "ping while 60 silent clients wait");
    assert!(took < Duration::from_secs(3), "ping took {took:?}");

    // Every silent client is closed by the proxy within its handshake deadline (plus
    // scheduling slack), not held for ever.
    let limit = HANDSHAKE_DEADLINE + Duration::from_secs(5);
    for (index, stream) in silent.iter_mut().enumerate() {
        let left = limit
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(10));
        stream.sock.set_read_timeout(Some(left)).unwrap();
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => {}
            Ok(_) => panic!("client {index}: the proxy sent data to a client that asked nothing"),
            Err(err) => assert!(
                !matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "client {index} still open after {:?}: {err}",
                started.elapsed()
            ),
        }
    }
    assert!(started.elapsed() >= HANDSHAKE_DEADLINE - Duration::from_secs(1));
    let (status, _) = ping(&base, &data);
    assert_eq!(status, "200");
}

/// A TCP connection to `addr` from `source` (any port), as a std stream.
fn connect_from(source: &str, addr: &str) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
        stream.into_std().unwrap()
    })
}

/// Whether the peer has not closed the connection, looking without waiting.
fn is_open(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 256];
    let open = loop {
        match stream.read(&mut buf) {
            Ok(0) => break false,
            Ok(_) => {}
            Err(err) => break err.kind() == std::io::ErrorKind::WouldBlock,
        }
    };
    stream.set_nonblocking(false).unwrap();
    open
}

/// Reads until the peer closes; `Some(elapsed)` when it closed within `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some(started.elapsed()),
        }
    }
}

#[test]
fn a_flood_of_silent_and_half_open_connections_from_one_address_starves_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = support::start_dev_cluster(dir.path());
    let node = cluster.wait_for_dev_node();
    let otpauth = cluster.add_user("alice", "root");
    let home = dir.path().join("alice");
    cluster.login(&home, "alice", &otpauth);
    let base = format!("https://{}", cluster.proxy);

    // 300 silent TCP connections and 300 that stop in the middle of a ClientHello,
    // all from 127.0.0.3.
    let started = Instant::now();
    let mut flood: Vec<TcpStream> = Vec::new();
    for i in 0..600 {
        let mut stream = connect_from("127.0.0.3", &cluster.proxy);
        if i % 2 == 1 {
            // A TLS handshake record header and the start of a ClientHello.
            std::io::Write::write_all(&mut stream, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
                .unwrap();
        }
        flood.push(stream);
    }

    // Everyone else is served at once: the web API, and a user's SSH connection.
    let (status, took) = ping(&base, &cluster.data);
    assert_eq!(status, "200");
    assert!(
        took < Duration::from_secs(3),
        "ping took {took:?} during the flood"
    );
    let ssh_started = Instant::now();
    let out = support::jsh(
        &home,
        &["ssh", &format!("root@{node}"), "echo through"],
        None,
    );
    assert_eq!(text(&out.stdout).trim(), "through", "{}", text(&out.stderr));
    assert!(ssh_started.elapsed() < Duration::from_secs(5));

    // Beyond the per-address limit (256) connections are closed at once; the rest
    // within the handshake deadline.
    // (A few of the first may be closed early, freeing slots for later ones: what
    // matters is how many one address holds.)
    std::thread::sleep(Duration::from_millis(500));
    let mut still_open = 0;
    for stream in &mut flood {
        if is_open(stream) {
            still_open += 1;
        }
    }
    assert!(
        still_open <= 256,
        "{still_open} connections from one address are held (limit 256)"
    );
    assert!(
        still_open >= 200,
        "only {still_open} held: the flood did not reach the limit, the test proves nothing"
    );
    let limit = HANDSHAKE_DEADLINE + Duration::from_secs(5);
    for (index, stream) in flood.iter_mut().enumerate() {
        let left = limit
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(10));
        assert!(
            closed_within(stream, left).is_some(),
            "connection {index} still open after {:?}",
            started.elapsed()
        );
    }
}

/// With `proxy_protocol: on` and `proxy_protocol_trusted_cidrs`, only the load balancers'
/// addresses may send the header that names the client: a client that reaches the proxy
/// directly cannot claim an address of its choosing. The daemon's own agent (all-in-one)
/// reaches its proxy with a `LOCAL` header, which claims nothing, and joins; a process on
/// the server that claims an address is refused like anyone else.
///
/// Three hosts on one network (namespaces, `support::Regions`): the server, the load
/// balancer (trusted) and a stranger.
#[test]
fn a_proxy_header_is_taken_only_from_the_trusted_load_balancers() {
    let dir = tempfile::tempdir().unwrap();
    let regions = support::Regions::new(&["lan"], Duration::ZERO);
    let server = regions.add_host("lan");
    let balancer = regions.add_host("lan");
    let stranger = regions.add_host("lan");
    let config = dir.path().join("cluster.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\nauth_service:\n  cluster_name: edge\nproxy_service:\n  web_listen_addr: 0.0.0.0:3080\n  proxy_protocol: on\n  proxy_protocol_trusted_cidrs: [{}/32]\nssh_service:\n  enabled: yes\n",
            dir.path().join("data").display(),
            balancer.ip(),
        ),
    )
    .unwrap();
    let daemon = support::Daemon::start_in(
        &server,
        support::bins(),
        &[
            "-c",
            config.to_str().unwrap(),
            "--proxy-addr",
            "0.0.0.0:3080",
        ],
        &dir.path().join("daemon.log"),
    );
    // The agent next to the proxy joins and holds its tunnel through the proxy: without
    // its LOCAL header, a proxy with proxy_protocol on refuses it for ever.
    daemon.wait_ready(&["auth", "proxy", "agent"], &[]);

    let ping = |from: &support::Host, target: &str, header: bool| {
        let mut curl = from.command("curl");
        curl.args(["-sS", "-k", "--max-time", "5", "-o", "/dev/null"])
            .args(["-w", "%{http_code}"]);
        if header {
            curl.arg("--haproxy-protocol");
        }
        let out = curl
            .arg(format!("https://{target}/webapi/ping"))
            .output()
            .expect("curl (./test.sh installs it)");
        text(&out.stdout)
    };
    let public = server.addr(3080).to_string();
    assert_eq!(
        ping(&balancer, &public, true),
        "200",
        "{}",
        daemon.log_text()
    );
    assert_ne!(
        ping(&stranger, &public, true),
        "200",
        "an untrusted source was served"
    );
    assert!(
        daemon
            .log_text()
            .contains("does not come from a trusted load balancer"),
        "{}",
        daemon.log_text()
    );
    // On the server itself: a header that claims an address is refused, and so is a
    // connection without a header.
    assert_ne!(ping(&server, "127.0.0.1:3080", true), "200");
    assert!(
        daemon
            .log_text()
            .contains("claiming a client address from this host"),
        "{}",
        daemon.log_text()
    );
    assert_ne!(ping(&server, "127.0.0.1:3080", false), "200");
    assert!(
        daemon
            .log_text()
            .contains("bad or missing PROXY protocol header"),
        "{}",
        daemon.log_text()
    );
}

/// `proxy_service.max_unauthenticated_per_source` sets how many connections one client
/// address may hold before authenticating; more are closed at once.
#[test]
fn the_per_source_limit_is_the_configured_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = dir.path().join("cluster.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\nauth_service:\n  cluster_name: edge\nproxy_service:\n  web_listen_addr: 127.0.0.1:{port}\n  max_unauthenticated_per_source: 3\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let daemon = start_daemon(
        &["-c", config.to_str().unwrap(), "--proxy-addr", &addr],
        &dir.path().join("daemon.log"),
    );
    daemon.wait_ready(&["proxy"], &[]);
    let mut held: Vec<TcpStream> = (0..8).map(|_| connect_from("127.0.0.5", &addr)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut open = 0;
    for stream in &mut held {
        if is_open(stream) {
            open += 1;
        }
    }
    assert_eq!(open, 3, "{open} silent connections from one address held");
    // Another address is not affected.
    let mut other = connect_from("127.0.0.6", &addr);
    std::thread::sleep(Duration::from_millis(200));
    assert!(is_open(&mut other));
}
