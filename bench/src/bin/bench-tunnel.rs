//! Reverse-tunnel throughput and stream-open latency, against what the tunnel is built
//! on: plain TCP and TLS over loopback, measured in the same run.
//!
//! Usage: `cargo run --release -p jumpgate-bench --bin bench-tunnel -- [MIB]` (default 256).
//!
//! Every case echoes: the client writes MIB mebibytes while it reads the echo back, and
//! the rate is the payload moved one way per second. Cases:
//! - one stream: raw TCP, TLS 1.3 (rustls), one HTTP/2 stream through a real reverse
//!   tunnel (the agent code of `jumpgate_node::tunnel`, the proxy's `Tunnels` registry,
//!   mutual TLS);
//! - eight concurrent streams: eight TCP connections vs eight streams on one tunnel;
//! - opening: TCP connect + 1-byte round trip, TLS connect + handshake + round trip, and a
//!   new tunnel stream + round trip (what each forwarded SSH connection will cost).
// A benchmark harness fails by panicking with the reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_api::TlsCredentials;
use jumpgate_api::tunnel::{ALPN_REVERSE_TUNNEL, PROXY_SERVER_NAME, TARGET_PING};
use jumpgate_node::{HostIdentity, NodeState};
use jumpgate_pki::{IdentityKind, TlsCa};
use jumpgate_proxy::Tunnels;
use jumpgate_test_support::issue_tls;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const CHUNK: usize = 64 * 1024;

/// Writes `bytes` in chunks while reading the echo; returns the elapsed time.
async fn echo_through<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    bytes: usize,
) -> Duration {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let started = Instant::now();
    let writing = tokio::spawn(async move {
        let chunk = vec![0x5au8; CHUNK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK);
            writer.write_all(&chunk[..n]).await.unwrap();
            left -= n;
        }
        writer.flush().await.unwrap();
        writer
    });
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0;
    while got < bytes {
        let n = reader.read(&mut buf).await.unwrap();
        assert!(n > 0, "the echo ended early");
        got += n;
    }
    let elapsed = started.elapsed();
    drop(writing.await.unwrap());
    elapsed
}

async fn tcp_echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn tls_echo_server(server: Arc<jumpgate_api::ServerConfig>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(server.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let (mut r, mut w) = tokio::io::split(tls);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
        }
    });
    addr
}

async fn tls_connect(
    addr: &str,
    client: Arc<jumpgate_api::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(PROXY_SERVER_NAME).unwrap();
    TlsConnector::from(client).connect(name, tcp).await.unwrap()
}

/// A proxy end taking tunnels, and one agent tunnelled to it.
async fn tunnel(ca: &TlsCa) -> Arc<Tunnels> {
    let (cert, key) = issue_tls(
        ca,
        "bench",
        IdentityKind::Proxy,
        "proxy-1",
        &[PROXY_SERVER_NAME],
    );
    let tls = TlsCredentials::from_pem(&cert, &key, ca.cert_pem())
        .unwrap()
        .server_config_requiring_clients(&[ALPN_REVERSE_TUNNEL])
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let tunnels = Arc::new(Tunnels::default());
    let registry = tunnels.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = listener.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            let registry = registry.clone();
            let acceptor = TlsAcceptor::from(tls.clone());
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(tcp).await {
                    registry.serve(stream, "node-1".to_string(), peer).await;
                }
            });
        }
    });
    let (node_cert, node_key) = issue_tls(ca, "bench", IdentityKind::Node, "node-1", &[]);
    let identity = HostIdentity {
        cluster: "bench".to_string(),
        host_uuid: "node-1".to_string(),
        tls_cert_pem: node_cert,
        tls_key_pem: node_key,
        tls_ca_pem: ca.cert_pem().to_string(),
        ssh_host_key: String::new(),
        ssh_host_cert: String::new(),
        user_ca_keys: String::new(),
        host_ca_known_hosts: String::new(),
    };
    let state = Arc::new(Mutex::new(NodeState::default()));
    tokio::spawn(jumpgate_node::tunnel::run(
        addr,
        tokio::sync::watch::channel(identity).1,
        state,
        None,
        std::future::pending::<()>(),
    ));
    for _ in 0..200 {
        if !tunnels.list().is_empty() {
            return tunnels;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the tunnel did not come up");
}

fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

fn micros(total: Duration, count: usize) -> f64 {
    total.as_secs_f64() * 1e6 / count as f64
}

async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    stream.write_all(b"x").await.unwrap();
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await.unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .map(|arg| arg.parse().expect("MIB must be a number"))
        .unwrap_or(256);
    let bytes = mib * 1024 * 1024;
    let ca = TlsCa::generate("bench", SystemTime::now()).unwrap();
    let (server_cert, server_key) = issue_tls(
        &ca,
        "bench",
        IdentityKind::Proxy,
        "echo",
        &[PROXY_SERVER_NAME],
    );
    let server_tls = TlsCredentials::from_pem(&server_cert, &server_key, ca.cert_pem())
        .unwrap()
        .server_config_requiring_clients(&[ALPN_REVERSE_TUNNEL])
        .unwrap();
    let (client_cert, client_key) = issue_tls(&ca, "bench", IdentityKind::Node, "client", &[]);
    let client_tls = TlsCredentials::from_pem(&client_cert, &client_key, ca.cert_pem())
        .unwrap()
        .client_config_for(IdentityKind::Proxy, &[ALPN_REVERSE_TUNNEL])
        .unwrap();
    let tcp_addr = tcp_echo_server().await;
    let tls_addr = tls_echo_server(server_tls).await;
    let tunnels = tunnel(&ca).await;

    println!("payload per case: {mib} MiB, echoed (rates are one-way payload)\n");

    // One stream.
    let tcp = TcpStream::connect(&tcp_addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tcp_rate = mib_per_s(bytes, echo_through(tcp, bytes).await);
    let tls = tls_connect(&tls_addr, client_tls.clone()).await;
    let tls_rate = mib_per_s(bytes, echo_through(tls, bytes).await);
    let stream = tunnels.dial("node-1", TARGET_PING).await.unwrap();
    let tunnel_rate = mib_per_s(bytes, echo_through(stream, bytes).await);
    println!(
        "one stream        | raw TCP {tcp_rate:8.0} MiB/s | TLS {tls_rate:8.0} MiB/s | tunnel stream {tunnel_rate:8.0} MiB/s"
    );
    println!(
        "                  | tunnel / TLS = {:.2}, tunnel / TCP = {:.2}\n",
        tunnel_rate / tls_rate,
        tunnel_rate / tcp_rate
    );

    // Eight at once.
    let per = bytes / 8;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let tcp = TcpStream::connect(&tcp_addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        tasks.push(tokio::spawn(echo_through(tcp, per)));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let tcp8 = mib_per_s(per * 8, started.elapsed());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let stream = tunnels.dial("node-1", TARGET_PING).await.unwrap();
        tasks.push(tokio::spawn(echo_through(stream, per)));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let tunnel8 = mib_per_s(per * 8, started.elapsed());
    println!(
        "8 streams (total) | 8 TCP connections {tcp8:8.0} MiB/s | 8 streams on one tunnel {tunnel8:8.0} MiB/s | ratio {:.2}\n",
        tunnel8 / tcp8
    );

    // Opening cost.
    let count = 300;
    let started = Instant::now();
    for _ in 0..count {
        let mut tcp = TcpStream::connect(&tcp_addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        round_trip(&mut tcp).await;
    }
    let tcp_open = micros(started.elapsed(), count);
    let started = Instant::now();
    for _ in 0..count {
        let mut tls = tls_connect(&tls_addr, client_tls.clone()).await;
        round_trip(&mut tls).await;
    }
    let tls_open = micros(started.elapsed(), count);
    let started = Instant::now();
    for _ in 0..count {
        let mut stream = tunnels.dial("node-1", TARGET_PING).await.unwrap();
        round_trip(&mut stream).await;
    }
    let stream_open = micros(started.elapsed(), count);
    println!(
        "open + 1-byte round trip | TCP {tcp_open:7.0} µs | TLS (mutual, ECDSA) {tls_open:7.0} µs | new tunnel stream {stream_open:7.0} µs"
    );
    println!(
        "                         | tunnel stream / TLS connection = {:.2}",
        stream_open / tls_open
    );
}
