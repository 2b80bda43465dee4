//! Every mutual-TLS client checks the role of the peer it meant to reach, not only the
//! name in its certificate (DESIGN.md "Identity"): a proxy whose certificate names the
//! auth service cannot pose as auth, an auth server cannot take an agent's tunnel, over
//! a real TLS handshake. (Node certificates carry no names at all: the CA refuses.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_api::tls::IdentityKind;
use jumpgate_api::tunnel::PROXY_SERVER_NAME;
use jumpgate_api::{AUTH_SERVER_NAME, TlsCredentials};
use jumpgate_pki::{TlsCa, TlsCertParams, TlsIdentity, generate_tls_key};
use jumpgate_test_support::issue_tls;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn credentials(ca: &TlsCa, kind: IdentityKind, name: &str, dns: &[&str]) -> TlsCredentials {
    let (cert, key) = issue_tls(ca, "edge", kind, name, dns);
    TlsCredentials::from_pem(&cert, &key, ca.cert_pem()).unwrap()
}

/// A TLS server presenting `server` that answers one byte; returns its address.
async fn serve(server: &TlsCredentials, alpn: &[u8]) -> String {
    let tls = server.server_config_requiring_clients(&[alpn]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = TlsAcceptor::from(tls.clone());
            tokio::spawn(async move {
                if let Ok(mut stream) = acceptor.accept(tcp).await {
                    let _ = stream.write_all(b"!").await;
                    let _ = stream.flush().await;
                }
            });
        }
    });
    addr
}

/// Connects with `config` as `name`; Ok when the handshake and one byte went through.
async fn dial(addr: &str, config: Arc<rustls::ClientConfig>, name: &str) -> Result<(), String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut stream = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|err| err.to_string())?;
    let mut byte = [0u8; 1];
    stream
        .read_exact(&mut byte)
        .await
        .map_err(|err| err.to_string())?;
    Ok(())
}

#[tokio::test]
async fn a_certificate_naming_the_auth_service_is_not_enough_to_be_auth() {
    let ca = TlsCa::generate("edge", SystemTime::now()).unwrap();
    let client = credentials(&ca, IdentityKind::Proxy, "proxy-1", &[]);
    let impostor = credentials(&ca, IdentityKind::Proxy, "evil", &[AUTH_SERVER_NAME]);
    let real = credentials(&ca, IdentityKind::Auth, "auth-1", &[AUTH_SERVER_NAME]);

    let impostor_addr = serve(&impostor, b"h2").await;
    let err = dial(
        &impostor_addr,
        client.client_config().unwrap(),
        AUTH_SERVER_NAME,
    )
    .await
    .unwrap_err();
    assert!(err.contains("not the auth"), "{err}");

    let real_addr = serve(&real, b"h2").await;
    dial(
        &real_addr,
        client.client_config().unwrap(),
        AUTH_SERVER_NAME,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_certificate_naming_the_proxies_is_not_enough_to_be_a_proxy() {
    let ca = TlsCa::generate("edge", SystemTime::now()).unwrap();
    let agent = credentials(&ca, IdentityKind::Node, "node-1", &[]);
    let auth = credentials(&ca, IdentityKind::Auth, "auth-1", &[PROXY_SERVER_NAME]);
    let real = credentials(&ca, IdentityKind::Proxy, "proxy-1", &[PROXY_SERVER_NAME]);
    let config = agent
        .client_config_for(IdentityKind::Proxy, &[b"jumpgate-reversetunnel"])
        .unwrap();

    let addr = serve(&auth, b"jumpgate-reversetunnel").await;
    let err = dial(&addr, config.clone(), PROXY_SERVER_NAME)
        .await
        .unwrap_err();
    assert!(err.contains("not the proxy"), "{err}");
    let addr = serve(&real, b"jumpgate-reversetunnel").await;
    dial(&addr, config, PROXY_SERVER_NAME).await.unwrap();
}

#[tokio::test]
async fn a_joining_host_sends_its_token_only_to_an_auth_server() {
    let ca = TlsCa::generate("edge", SystemTime::now()).unwrap();
    let impostor = credentials(&ca, IdentityKind::Proxy, "evil", &[AUTH_SERVER_NAME]);
    let real = credentials(&ca, IdentityKind::Auth, "auth-1", &[AUTH_SERVER_NAME]);
    let pin = TlsCa::pin_of_cert_pem(ca.cert_pem()).unwrap();
    let pinned = jumpgate_api::tls::pinned_client_config(&[pin]).unwrap();

    // The pinned verifier finds the CA in the chain the server sends (as auth does).
    let serve_with_ca = |creds: TlsCredentials| async move {
        let tls = creds.server_config().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = TlsAcceptor::from(tls.clone());
                tokio::spawn(async move {
                    if let Ok(mut stream) = acceptor.accept(tcp).await {
                        let _ = stream.write_all(b"!").await;
                        let _ = stream.flush().await;
                    }
                });
            }
        });
        addr
    };
    let addr = serve_with_ca(impostor).await;
    let err = dial(&addr, pinned.clone(), AUTH_SERVER_NAME)
        .await
        .unwrap_err();
    assert!(err.contains("not the auth"), "{err}");
    let addr = serve_with_ca(real).await;
    dial(&addr, pinned, AUTH_SERVER_NAME).await.unwrap();
}

#[test]
fn the_ca_puts_no_names_in_a_node_certificate() {
    let ca = TlsCa::generate("edge", SystemTime::now()).unwrap();
    let (_, public) = generate_tls_key().unwrap();
    let err = ca
        .issue(
            &TlsCertParams {
                identity: TlsIdentity {
                    cluster: "edge".to_string(),
                    kind: IdentityKind::Node,
                    name: "evil".to_string(),
                    roles: vec![],
                },
                public_key_pem: public,
                dns_names: vec![AUTH_SERVER_NAME.to_string()],
                ip_addresses: vec![],
                ttl: Duration::from_secs(3600),
            },
            SystemTime::now(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("cannot carry DNS names"), "{err}");
}
