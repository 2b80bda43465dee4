//! Proxy peering over real TCP and mutual TLS: the real peer server
//! (`jumpgate_proxy::peer::PeerServer`) with the real agent code tunnelled to it, dialled by
//! the real peer client. Bytes reach the node through the peer; a peer without a tunnel
//! says so; and the rules that keep peering from being a way in: only a proxy of this
//! cluster may connect, the dialler checks it reached the very proxy it meant, and a peer
//! stream reaches only a node's SSH service.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_api::TlsCredentials;
use jumpgate_api::tunnel::{ALPN_REVERSE_TUNNEL, PROXY_SERVER_NAME};
use jumpgate_node::{HostIdentity, NodeState};
use jumpgate_pki::{IdentityKind, TlsCa, TlsIdentity};
use jumpgate_proxy::Tunnels;
use jumpgate_proxy::peer::{ALPN_PEER, HEADER_NODE, PeerClients, PeerError, PeerServer};
use jumpgate_test_support::issue_tls;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const CLUSTER: &str = "edge";

fn credentials(ca: &TlsCa, kind: IdentityKind, name: &str) -> TlsCredentials {
    let dns: &[&str] = if kind == IdentityKind::Proxy {
        &[PROXY_SERVER_NAME]
    } else {
        &[]
    };
    let (cert, key) = issue_tls(ca, CLUSTER, kind, name, dns);
    TlsCredentials::from_pem(&cert, &key, ca.cert_pem()).unwrap()
}

/// A proxy named `name`: a tunnel listener (for the agent) and a peer listener, both on
/// loopback. Returns (tunnel address, peer address, its tunnels).
async fn proxy(ca: &TlsCa, name: &str) -> (String, String, Arc<Tunnels>) {
    let (tunnel_addr, peer_addr, tunnels, _) = proxy_auditing(ca, name).await;
    (tunnel_addr, peer_addr, tunnels)
}

/// [`proxy`], also returning what its peer listener sends to be audited.
async fn proxy_auditing(
    ca: &TlsCa,
    name: &str,
) -> (
    String,
    String,
    Arc<Tunnels>,
    tokio::sync::mpsc::Receiver<jumpgate_proxy::Refusal>,
) {
    let creds = credentials(ca, IdentityKind::Proxy, name);
    let tunnels = Arc::new(Tunnels::default());

    let tunnel_tls = creds
        .server_config_requiring_clients(&[ALPN_REVERSE_TUNNEL])
        .unwrap();
    let tunnel_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tunnel_addr = tunnel_listener.local_addr().unwrap().to_string();
    let registry = tunnels.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tunnel_listener.accept().await.unwrap();
            let acceptor = TlsAcceptor::from(tunnel_tls.clone());
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
                    registry.serve(stream, node, remote).await;
                }
            });
        }
    });

    let peer_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer_listener.local_addr().unwrap().to_string();
    let (refusals_tx, refusals_rx) = tokio::sync::mpsc::channel(16);
    let server = PeerServer {
        tls: Arc::new(RwLock::new(
            creds.server_config_requiring_clients(&[ALPN_PEER]).unwrap(),
        )),
        cluster: CLUSTER.to_string(),
        tunnels: tunnels.clone(),
        refusals: Some(refusals_tx),
    };
    tokio::spawn(server.serve(peer_listener, std::future::pending()));
    (tunnel_addr, peer_addr, tunnels, refusals_rx)
}

/// The peer client of proxy `name`.
fn peer_clients(ca: &TlsCa, name: &str) -> PeerClients {
    let tls = credentials(ca, IdentityKind::Proxy, name)
        .client_config_for(IdentityKind::Proxy, &[ALPN_PEER])
        .unwrap();
    PeerClients::new(name.to_string(), tls)
}

/// Starts the real agent code for node `name` tunnelled to `addr`, serving no SSH: its
/// `/ssh` target answers 501, which is enough to tell a relayed stream from a refusal.
fn start_agent(ca: &TlsCa, addr: &str, name: &str) -> tokio::sync::oneshot::Sender<()> {
    let (cert, key) = issue_tls(ca, CLUSTER, IdentityKind::Node, name, &[]);
    let identity = HostIdentity {
        cluster: CLUSTER.to_string(),
        host_uuid: name.to_string(),
        tls_cert_pem: cert,
        tls_key_pem: key,
        tls_ca_pem: ca.cert_pem().to_string(),
        ssh_host_key: String::new(),
        ssh_host_cert: String::new(),
        user_ca_keys: String::new(),
        host_ca_known_hosts: String::new(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(jumpgate_node::tunnel::run(
        addr.to_string(),
        tokio::sync::watch::channel(identity).1,
        Arc::new(Mutex::new(NodeState::default())),
        None,
        async move {
            let _ = stop_rx.await;
        },
    ));
    stop_tx
}

async fn wait_for_tunnel(tunnels: &Tunnels, node: &str) {
    for _ in 0..200 {
        if tunnels.list().iter().any(|t| t.node == node) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no tunnel from {node}");
}

fn user_addr() -> SocketAddr {
    "192.0.2.7:50000".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_reaches_the_node_tunnelled_to_it_and_says_when_it_has_no_tunnel() {
    let ca = TlsCa::generate(CLUSTER, SystemTime::now()).unwrap();
    let (tunnel_addr, peer_addr, tunnels) = proxy(&ca, "proxy-b").await;
    let _agent = start_agent(&ca, &tunnel_addr, "node-1");
    wait_for_tunnel(&tunnels, "node-1").await;

    let clients = peer_clients(&ca, "proxy-a");
    // The node is reached: the peer relays to the node, which answers its `/ssh` target
    // itself (501 here, since this agent serves no SSH) — not a refusal by the peer.
    let relayed = clients
        .dial("proxy-b", &peer_addr, "node-1", user_addr())
        .await
        .unwrap_err();
    match &relayed {
        PeerError::Refused { status, reason, .. } => {
            assert_eq!(*status, 502, "{relayed}");
            assert!(reason.contains("501"), "{relayed}");
        }
        other => panic!("expected the node's own answer through the peer, got {other}"),
    }
    assert_eq!(clients.connected(), ["proxy-b"]);

    // A node with no tunnel there: a clear refusal naming the peer and the node.
    let missing = clients
        .dial("proxy-b", &peer_addr, "node-9", user_addr())
        .await
        .unwrap_err();
    assert!(
        matches!(missing, PeerError::NoTunnel { .. }),
        "expected NoTunnel, got {missing}"
    );
    let said = missing.to_string();
    assert!(
        said.contains("proxy-b") && said.contains("node-9"),
        "{said}"
    );
}

/// The dialler checks the UUID in the peer's certificate: an address that leads to another
/// proxy (a stale record, a reused address, or an impostor proxy) is not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_address_that_leads_to_another_proxy_is_refused() {
    let ca = TlsCa::generate(CLUSTER, SystemTime::now()).unwrap();
    let (_, peer_addr, _) = proxy(&ca, "proxy-c").await;
    let clients = peer_clients(&ca, "proxy-a");
    let err = clients
        .dial("proxy-b", &peer_addr, "node-1", user_addr())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PeerError::WrongPeer { found, .. } if found == "proxy-c"),
        "{err}"
    );
    assert!(clients.connected().is_empty());
}

/// Dials `addr` with `creds` and tries one peer stream; says whether the peer answered
/// (any HTTP status).
async fn peer_answers(creds: &TlsCredentials, addr: &str, path: &str) -> Option<u16> {
    // Any server role is accepted here: the point is what the *server* lets in.
    let tls = creds
        .client_config_for(IdentityKind::Proxy, &[ALPN_PEER])
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(PROXY_SERVER_NAME).unwrap();
    let stream = TlsConnector::from(tls).connect(name, tcp).await.ok()?;
    let attempt = async {
        let (send, connection) = h2::client::handshake(stream).await.ok()?;
        tokio::spawn(connection);
        let mut send = send.ready().await.ok()?;
        let request = http::Request::post(format!("https://{PROXY_SERVER_NAME}{path}"))
            .header(HEADER_NODE, "node-1")
            .body(())
            .unwrap();
        let (response, _) = send.send_request(request, true).ok()?;
        Some(response.await.ok()?.status().as_u16())
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

/// Only proxies may peer: a node's or a user's certificate of the same cluster, and a
/// proxy certificate of another cluster, get no stream, and each refusal goes to the audit
/// log. A proxy may open only `/ssh`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_proxies_of_the_cluster_may_peer_and_only_to_ssh() {
    let ca = TlsCa::generate(CLUSTER, SystemTime::now()).unwrap();
    let (tunnel_addr, peer_addr, tunnels, mut refusals) = proxy_auditing(&ca, "proxy-b").await;
    let _agent = start_agent(&ca, &tunnel_addr, "node-1");
    wait_for_tunnel(&tunnels, "node-1").await;

    // The control: a proxy of the cluster is answered (the node's own 501, relayed as 502).
    let proxy_creds = credentials(&ca, IdentityKind::Proxy, "proxy-a");
    assert_eq!(
        peer_answers(&proxy_creds, &peer_addr, "/ssh").await,
        Some(502)
    );

    for kind in [IdentityKind::Node, IdentityKind::User] {
        let creds = credentials(&ca, kind, "node-1");
        assert_eq!(
            peer_answers(&creds, &peer_addr, "/ssh").await,
            None,
            "a {kind} certificate was let in to proxy peering"
        );
        let audited = tokio::time::timeout(Duration::from_secs(5), refusals.recv())
            .await
            .expect("the refusal was not sent to the audit log")
            .unwrap();
        assert_eq!(audited.protocol, "jumpgate-peer");
        assert!(
            audited
                .identity
                .as_deref()
                .is_some_and(|id| id.contains("node-1")),
            "{audited:?}"
        );
        assert!(audited.reason.contains("only proxies"), "{audited:?}");
    }
    let other_ca = TlsCa::generate("other", SystemTime::now()).unwrap();
    let (cert, key) = issue_tls(
        &other_ca,
        "other",
        IdentityKind::Proxy,
        "proxy-x",
        &[PROXY_SERVER_NAME],
    );
    // It trusts our CA (so it could verify us), but presents a certificate of its own CA.
    let foreign = TlsCredentials::from_pem(&cert, &key, ca.cert_pem()).unwrap();
    assert_eq!(peer_answers(&foreign, &peer_addr, "/ssh").await, None);

    // A proxy cannot use peering to reach an agent's other targets.
    for path in ["/ping", "/discovery", "/ssh/../discovery"] {
        assert_eq!(
            peer_answers(&proxy_creds, &peer_addr, path).await,
            Some(403),
            "{path}"
        );
    }
}

/// A peer that dies is noticed within 5 s (HTTP/2 PINGs), and its connection forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peer_is_noticed_within_five_seconds() {
    let ca = TlsCa::generate(CLUSTER, SystemTime::now()).unwrap();
    // A peer that completes the handshakes and then goes silent, as a crashed host's
    // connections do (no FIN, no RST): a forwarder that stops forwarding.
    let (_, peer_addr, _) = proxy(&ca, "proxy-b").await;
    let cut = jumpgate_test_support::NetCut::start(&peer_addr).await;
    let clients = peer_clients(&ca, "proxy-a");
    let via = cut.addr().to_string();
    let _ = clients
        .dial("proxy-b", &via, "node-9", user_addr())
        .await
        .unwrap_err();
    assert_eq!(clients.connected(), ["proxy-b"]);
    cut.cut();
    let started = tokio::time::Instant::now();
    while !clients.connected().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "a silent peer was still held after 8 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // At most 2 s to the next PING and 3 s for its answer, plus scheduling on a busy machine.
    assert!(
        started.elapsed() <= Duration::from_secs(6),
        "noticed after {:?}",
        started.elapsed()
    );
}
