//! Every configuration snippet in the seed documents parses and means what it says
//! (DESIGN.md: "their configuration snippets must work as written").

// Test code: a panic is how a test reports failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::time::Duration;

use jumpgate_types::Config;
use jumpgate_types::config::{
    AuthType, HostPort, JoinRole, LogFormat, LogOutput, LogSeverity, SecondFactor,
    SessionRecording, StorageBackend, TunnelStrategy,
};

fn load(name: &str) -> Config {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    Config::from_yaml(&path, &text).unwrap_or_else(|e| panic!("{e}"))
}

fn hp(s: &str) -> HostPort {
    s.parse().unwrap()
}

#[test]
fn seed004_agent_runs_only_ssh_through_the_proxy() {
    let c = load("seed004_agent.yaml");
    assert_eq!(c.jumpgate.nodename.as_deref(), Some("ssh-node"));
    assert_eq!(
        c.jumpgate.proxy_server,
        Some(HostPort::new("teleport.example.com", 443).into())
    );
    assert!(c.ssh_service.enabled);
    assert_eq!(c.ssh_service.listen_addr, None, "reverse tunnel only");
    assert!(!c.auth_service.enabled);
    assert!(!c.proxy_service.enabled);
}

#[test]
fn seed004_auth_uses_proxy_peering_with_two_connections() {
    let c = load("seed004_auth_tunnel_strategy.yaml");
    assert!(c.auth_service.enabled);
    assert_eq!(
        c.auth_service.tunnel_strategy,
        TunnelStrategy::ProxyPeering {
            agent_connection_count: 2
        }
    );
    assert_eq!(c.auth_service.listen_addr, hp("0.0.0.0:3025"));
    assert!(!c.proxy_service.enabled);
    assert!(!c.ssh_service.enabled);
}

#[test]
fn seed004_proxy_advertises_its_peer_address() {
    let c = load("seed004_proxy_peer_public_addr.yaml");
    assert!(c.proxy_service.enabled);
    let peer = c.proxy_service.peer_public_addr.as_ref().unwrap();
    assert_eq!(peer.host, "teleport-proxy-eu-west-1-host1.example.com");
    assert_eq!(peer.port, 3021);
    assert_eq!(c.proxy_service.peer_listen_addr, hp("0.0.0.0:3021"));
    assert_eq!(c.proxy_service.web_listen_addr, hp("0.0.0.0:3080"));
    assert!(!c.auth_service.enabled);
    assert!(!c.ssh_service.enabled);
}

#[test]
fn seed000_ha_auth_on_etcd_behind_a_load_balancer() {
    let c = load("seed000_ha.yaml");
    let StorageBackend::Etcd(etcd) = &c.jumpgate.storage.backend else {
        panic!("expected etcd, got {:?}", c.jumpgate.storage.backend);
    };
    assert_eq!(etcd.peers.len(), 3);
    assert_eq!(etcd.peers[0], "https://etcd-1.example.com:2379");
    assert_eq!(etcd.prefix, "/jumpgate/");
    assert_eq!(
        etcd.tls_cert_file,
        Some(PathBuf::from("/etc/jumpgate/etcd/client.pem"))
    );
    assert_eq!(
        etcd.tls_key_file,
        Some(PathBuf::from("/etc/jumpgate/etcd/client-key.pem"))
    );
    assert_eq!(
        etcd.tls_ca_file,
        Some(PathBuf::from("/etc/jumpgate/etcd/ca.pem"))
    );
    assert!(!etcd.insecure);
    assert_eq!(
        c.jumpgate.storage.audit_events_uri,
        ["file:///var/lib/jumpgate/log"]
    );
    assert_eq!(
        c.jumpgate
            .storage
            .audit_sessions_uri
            .as_ref()
            .map(|uri| uri.as_str()),
        Some("file:///var/lib/jumpgate/log/records")
    );
    assert_eq!(c.jumpgate.log.format, LogFormat::Json);
    assert_eq!(c.jumpgate.log.severity, LogSeverity::Info);
    assert_eq!(
        c.jumpgate.log.extra_fields,
        ["level", "timestamp", "component", "caller"]
    );
    assert_eq!(c.jumpgate.diag_addr, Some(hp("0.0.0.0:3000")));

    let auth = &c.auth_service;
    assert!(auth.enabled);
    assert_eq!(auth.cluster_name.as_deref(), Some("teleport.example.com"));
    assert_eq!(auth.public_addr, [hp("auth.example.com:3025")]);
    assert_eq!(auth.tokens.len(), 1);
    assert_eq!(auth.tokens[0].roles, [JoinRole::Proxy]);
    assert_eq!(auth.tokens[0].token.expose(), "4f7a2c1e9b8d");
    assert_eq!(auth.authentication.kind, AuthType::Local);
    assert_eq!(auth.authentication.second_factor, SecondFactor::Otp);
    assert_eq!(auth.session_recording, SessionRecording::Node);
    assert_eq!(auth.tunnel_strategy, TunnelStrategy::AgentMesh);

    let proxy = &c.proxy_service;
    assert!(proxy.enabled);
    assert!(proxy.proxy_protocol);
    assert_eq!(proxy.public_addr, [hp("teleport.example.com:443")]);
    assert_eq!(proxy.https_keypairs.len(), 1);
    assert_eq!(
        proxy.https_keypairs[0].cert_file,
        PathBuf::from("/etc/jumpgate/tls/fullchain.pem")
    );
    assert!(
        !c.ssh_service.enabled,
        "enabled: \"no\" turns a present section off"
    );
}

#[test]
fn seed000_active_passive_on_local_sqlite() {
    let c = load("seed000_active_passive.yaml");
    assert_eq!(
        c.jumpgate.storage.backend,
        StorageBackend::Sqlite {
            path: Some(PathBuf::from("/var/lib/jumpgate/backend"))
        }
    );
    assert_eq!(
        c.jumpgate.log.output,
        LogOutput::File(PathBuf::from("/var/log/jumpgate.log"))
    );
    assert_eq!(c.jumpgate.log.severity, LogSeverity::Warn);
    assert_eq!(c.jumpgate.log.format, LogFormat::Text);
    assert!(c.auth_service.enabled && c.proxy_service.enabled);
    assert!(!c.ssh_service.enabled);
    assert_eq!(c.proxy_service.web_listen_addr, hp("0.0.0.0:443"));
}

/// Durations in the forms Teleport writes them.
#[test]
fn command_label_periods() {
    let c = Config::from_yaml(
        "t.yaml",
        "jumpgate: {proxy_server: p.example.com:443}\n\
         ssh_service:\n  commands:\n    - {name: a, command: [hostname], period: 1m0s}\n    \
         - {name: b, command: [uptime], period: 1h30m}\n",
    )
    .unwrap();
    let periods: Vec<Duration> = c.ssh_service.commands.iter().map(|c| c.period).collect();
    assert_eq!(
        periods,
        [Duration::from_secs(60), Duration::from_secs(5400)]
    );
}
