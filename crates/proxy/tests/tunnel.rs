//! Reverse tunnels between the real agent code (`jumpgate_node::tunnel`) and the
//! proxy's registry over real TCP and mutual TLS: streams echo, a stalled stream does
//! not stall the others, an agent of another cluster is refused, and an unknown target
//! is refused by the agent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_api::TlsCredentials;
use jumpgate_api::tunnel::{ALPN_REVERSE_TUNNEL, EarlyBytes, PROXY_SERVER_NAME, TARGET_PING};
use jumpgate_node::{HostIdentity, NodeState};
use jumpgate_pki::{IdentityKind, TlsCa, TlsIdentity};
use jumpgate_proxy::tunnel::STREAM_OPEN_TIMEOUT;
use jumpgate_proxy::{DialError, Tunnels};
use jumpgate_test_support::issue_tls;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A proxy end that takes tunnels on a loopback port, trusting `ca`.
async fn proxy_end(ca: &TlsCa) -> (String, Arc<Tunnels>) {
    let (cert, key) = issue_tls(
        ca,
        "edge",
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
            let acceptor = TlsAcceptor::from(tls.clone());
            let registry = registry.clone();
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(tcp).await {
                    let node = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|leaf| TlsIdentity::from_cert_der(leaf.as_ref()).unwrap().name)
                        .unwrap();
                    registry.serve(stream, node, peer).await;
                }
            });
        }
    });
    (addr, tunnels)
}

fn agent_identity(ca: &TlsCa, trusted: &TlsCa, name: &str) -> HostIdentity {
    let (cert, key) = issue_tls(ca, "edge", IdentityKind::Node, name, &[]);
    HostIdentity {
        cluster: "edge".to_string(),
        host_uuid: name.to_string(),
        tls_cert_pem: cert,
        tls_key_pem: key,
        tls_ca_pem: trusted.cert_pem().to_string(),
        ssh_host_key: String::new(),
        ssh_host_cert: String::new(),
        user_ca_keys: String::new(),
        host_ca_known_hosts: String::new(),
    }
}

fn start_agent(addr: &str, identity: HostIdentity) -> tokio::sync::oneshot::Sender<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let state = Arc::new(Mutex::new(NodeState::default()));
    tokio::spawn(jumpgate_node::tunnel::run(
        addr.to_string(),
        tokio::sync::watch::channel(identity).1,
        state,
        None,
        async move {
            let _ = stop_rx.await;
        },
    ));
    stop_tx
}

async fn wait_for_tunnel(tunnels: &Tunnels, node: &str) -> bool {
    for _ in 0..100 {
        if tunnels.list().iter().any(|t| t.node == node) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_echo_and_a_stalled_stream_does_not_stall_the_others() {
    let ca = TlsCa::generate("edge", SystemTime::now()).unwrap();
    let (addr, tunnels) = proxy_end(&ca).await;
    let _agent = start_agent(&addr, agent_identity(&ca, &ca, "node-1"));
    assert!(wait_for_tunnel(&tunnels, "node-1").await, "no tunnel");

    let mut stream = tunnels.dial("node-1", TARGET_PING).await.unwrap();
    stream.write_all(b"hello through the tunnel").await.unwrap();
    let mut echoed = [0u8; 24];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"hello through the tunnel");

    // Stream A: 8 MiB written while nobody reads the echo; its windows fill and it stops.
    let stalled = tunnels.dial("node-1", TARGET_PING).await.unwrap();
    let (mut stalled_read, mut stalled_write) = tokio::io::split(stalled);
    let payload: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let expected = payload.clone();
    let writer = tokio::spawn(async move {
        stalled_write.write_all(&payload).await.unwrap();
        stalled_write.shutdown().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !writer.is_finished(),
        "flow control did not hold the stalled stream back"
    );

    // Stream B still answers at once.
    let answered = tokio::time::timeout(Duration::from_secs(2), async {
        let mut other = tunnels.dial("node-1", TARGET_PING).await.unwrap();
        other.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        other.read_exact(&mut buf).await.unwrap();
        buf
    })
    .await
    .expect("a stalled stream stalled another one");
    assert_eq!(&answered, b"ping");

    // Reading A now drains it completely and intact.
    let mut received = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        stalled_read.read_to_end(&mut received),
    )
    .await
    .expect("the stalled stream did not resume")
    .unwrap();
    writer.await.unwrap();
    assert_eq!(received.len(), expected.len());
    assert!(received == expected, "the echoed bytes differ");

    // A target the agent does not serve is refused by the agent.
    match tunnels.dial("node-1", "/ssh").await {
        Err(DialError::Refused { status, .. }) => assert_eq!(status, 501),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    match tunnels.dial("node-2", TARGET_PING).await {
        Err(DialError::NoTunnel(node)) => assert_eq!(node, "node-2"),
        other => panic!("expected no tunnel, got {:?}", other.map(|_| ())),
    }
}

/// What a user sent before the node's stream opened goes with the opening, ahead of what
/// follows (`EarlyBytes`): the echo target sends it back first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_sent_while_the_stream_opens_arrive_first() {
    let ca = TlsCa::generate("edge", SystemTime::now()).unwrap();
    let (addr, tunnels) = proxy_end(&ca).await;
    let _agent = start_agent(&addr, agent_identity(&ca, &ca, "node-1"));
    assert!(wait_for_tunnel(&tunnels, "node-1").await, "no tunnel");

    // The user's side: its first flight already sent, the connection still open.
    let (mut user, mut user_far_end) = tokio::io::duplex(64 * 1024);
    user_far_end.write_all(b"first flight;").await.unwrap();
    let mut early = EarlyBytes::default();
    let mut stream = tunnels
        .dial_forwarding("node-1", TARGET_PING, None, &mut user, &mut early)
        .await
        .unwrap();
    stream.write_all(b"then the rest").await.unwrap();
    let mut echoed = [0u8; 26];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
        .await
        .expect("the early bytes never came back")
        .unwrap();
    assert_eq!(&echoed, b"first flight;then the rest");
}

/// An agent whose tunnel is up (its HTTP/2 answers PINGs) but that never answers a
/// stream: the dial fails by name after `STREAM_OPEN_TIMEOUT` instead of waiting for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_agent_never_answers_fails_in_bounded_time() {
    let ca = TlsCa::generate("edge", SystemTime::now()).unwrap();
    let (addr, tunnels) = proxy_end(&ca).await;
    let (cert, key) = issue_tls(&ca, "edge", IdentityKind::Node, "mute-node", &[]);
    let tls = TlsCredentials::from_pem(&cert, &key, ca.cert_pem())
        .unwrap()
        .client_config_for(IdentityKind::Proxy, &[ALPN_REVERSE_TUNNEL])
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(PROXY_SERVER_NAME).unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    let mut connection = h2::server::handshake(stream).await.unwrap();
    tokio::spawn(async move {
        // Takes every stream and answers none of them.
        let mut unanswered = Vec::new();
        while let Some(Ok(stream)) = connection.accept().await {
            unanswered.push(stream);
        }
    });
    assert!(wait_for_tunnel(&tunnels, "mute-node").await, "no tunnel");

    let started = std::time::Instant::now();
    let dialled = tokio::time::timeout(
        STREAM_OPEN_TIMEOUT + Duration::from_secs(5),
        tunnels.dial("mute-node", TARGET_PING),
    )
    .await
    .expect("the dial waited for ever");
    match dialled {
        Err(DialError::Tunnel { reason, .. }) => {
            assert!(reason.contains("no answer within"), "{reason}");
        }
        other => panic!("expected a tunnel error, got {:?}", other.map(|_| ())),
    }
    assert!(started.elapsed() >= STREAM_OPEN_TIMEOUT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_of_another_cluster_gets_no_tunnel_and_a_stopped_agent_is_dropped() {
    let ca = TlsCa::generate("edge", SystemTime::now()).unwrap();
    let other = TlsCa::generate("edge", SystemTime::now()).unwrap();
    let (addr, tunnels) = proxy_end(&ca).await;
    // Its certificate is from another CA (the proxy refuses it); it trusts our CA.
    let _foreign = start_agent(&addr, agent_identity(&other, &ca, "intruder"));
    assert!(
        !wait_for_tunnel(&tunnels, "intruder").await,
        "a foreign node got a tunnel"
    );

    let stop = start_agent(&addr, agent_identity(&ca, &ca, "node-3"));
    assert!(wait_for_tunnel(&tunnels, "node-3").await);
    drop(stop);
    let mut gone = false;
    for _ in 0..200 {
        if tunnels.list().is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the tunnel of a stopped agent stayed registered");
}
