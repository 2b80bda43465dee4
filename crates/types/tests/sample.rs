//! The sample printed by `jumpgate configure`, the `--dev` config, and the docs stay true to
//! the schema.

// Test code: a panic is how a test reports failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::time::Duration;

use jumpgate_types::config::{
    HostPort, LogFormat, LogOutput, LogSeverity, SecondFactor, StorageBackend, TunnelStrategy,
};
use jumpgate_types::{Config, sample_config};

/// Every key of the schema, by section. A new field must be added here, and then to the sample
/// and to docs/config.md, or these tests fail.
const KEYS: &[&str] = &[
    "version",
    // jumpgate
    "nodename",
    "data_dir",
    "auth_server",
    "proxy_server",
    "auth_token",
    "join_params",
    "method",
    "token_name",
    "ca_pin",
    "storage",
    "log",
    "diag_addr",
    "kex_algos",
    "ciphers",
    "mac_algos",
    // storage
    "type",
    "path",
    "peers",
    "prefix",
    "tls_cert_file",
    "tls_key_file",
    "tls_ca_file",
    "username",
    "password_file",
    "insecure",
    "audit_events_uri",
    "audit_sessions_uri",
    // log
    "output",
    "severity",
    "format",
    "extra_fields",
    // auth_service
    "auth_service",
    "enabled",
    "cluster_name",
    "listen_addr",
    "public_addr",
    "tokens",
    "authentication",
    "second_factor",
    "session_recording",
    "proxy_listener_mode",
    "tunnel_strategy",
    "agent_connection_count",
    // proxy_service
    "proxy_service",
    "web_listen_addr",
    "peer_listen_addr",
    "peer_public_addr",
    "https_keypairs",
    "key_file",
    "cert_file",
    "proxy_protocol",
    "proxy_protocol_trusted_cidrs",
    "max_unauthenticated_per_source",
    // ssh_service
    "ssh_service",
    "labels",
    "commands",
    "name",
    "command",
    "period",
];

#[test]
fn sample_config_parses_and_runs_all_three_services() {
    let c = Config::from_yaml("sample", sample_config()).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.auth_service.enabled && c.proxy_service.enabled && c.ssh_service.enabled);
    assert_eq!(c.jumpgate.nodename.as_deref(), Some("jumpgate-1"));
    assert_eq!(
        c.jumpgate.storage.backend,
        StorageBackend::Sqlite {
            path: Some(PathBuf::from("/var/lib/jumpgate/backend"))
        }
    );
    assert_eq!(c.jumpgate.log.severity, LogSeverity::Info);
    assert_eq!(c.jumpgate.log.format, LogFormat::Text);
    assert_eq!(c.jumpgate.log.extra_fields.len(), 4);
    assert_eq!(
        c.auth_service.tunnel_strategy,
        TunnelStrategy::ProxyPeering {
            agent_connection_count: 2
        }
    );
    assert!(!c.proxy_service.proxy_protocol);
    assert_eq!(
        c.proxy_service.public_addr,
        [HostPort::new("jumpgate.example.com", 443)]
    );
    assert_eq!(
        c.ssh_service.labels.get("env").map(String::as_str),
        Some("production")
    );
    assert_eq!(c.ssh_service.commands[0].period, Duration::from_secs(3600));
}

#[test]
fn sample_config_shows_every_key() {
    let sample = sample_config();
    let missing: Vec<_> = KEYS
        .iter()
        .filter(|k| !sample.contains(&format!("{k}:")))
        .collect();
    assert!(missing.is_empty(), "not in the sample: {missing:?}");
}

#[test]
fn docs_describe_every_key() {
    let docs = include_str!("../../../docs/config.md");
    let missing: Vec<_> = KEYS
        .iter()
        .filter(|k| !docs.contains(&format!("`{k}`")) && !docs.contains(&format!(".{k}`")))
        .collect();
    assert!(missing.is_empty(), "not in docs/config.md: {missing:?}");
}

/// The commented-out alternatives in the sample are valid too, once uncommented in a
/// consistent combination (an agent joining through the proxy, an etcd-backed auth server).
#[test]
fn sample_alternatives_parse() {
    let pin = format!("sha256:{}", "0f".repeat(32));
    let agent = format!(
        "jumpgate:\n  proxy_server: jumpgate.example.com:443\n  join_params:\n    method: token\n    \
         token_name: \"abc\"\n  ca_pin: \"{pin}\"\nssh_service:\n  listen_addr: 0.0.0.0:3022\n"
    );
    let c = Config::from_yaml("agent", &agent).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.jumpgate.ca_pin, [pin]);
    assert_eq!(
        c.ssh_service.listen_addr,
        Some(HostPort::new("0.0.0.0", 3022))
    );
    assert_eq!(c.jumpgate.join_params.unwrap().token_name.expose(), "abc");

    let etcd = "jumpgate:\n  storage:\n    type: etcd\n    \
                peers: [\"https://etcd1.example.com:2379\", \"https://etcd2.example.com:2379\"]\n    \
                username: jumpgate\n    password_file: /etc/jumpgate/etcd-password\n    \
                insecure: no\nauth_service:\n  tokens:\n    - \"node,proxy:abc\"\n";
    let c = Config::from_yaml("etcd", etcd).unwrap_or_else(|e| panic!("{e}"));
    let StorageBackend::Etcd(e) = &c.jumpgate.storage.backend else {
        panic!("not etcd")
    };
    assert_eq!(e.prefix, "/jumpgate/");
    assert_eq!(e.username.as_deref(), Some("jumpgate"));
}

#[test]
fn dev_config_is_what_the_equivalent_yaml_says() {
    let dir = PathBuf::from("/tmp/jumpgate-dev");
    let dev = Config::dev(dir.clone());
    let yaml = "version: v3\n\
                jumpgate:\n  data_dir: /tmp/jumpgate-dev\n  storage: {type: sqlite}\n  \
                log: {output: stderr, severity: info, format: text}\n  diag_addr: 127.0.0.1:3000\n\
                auth_service:\n  cluster_name: dev\n  listen_addr: 127.0.0.1:3025\n  \
                authentication: {type: local, second_factor: otp}\n\
                proxy_service:\n  web_listen_addr: 127.0.0.1:3080\n  peer_listen_addr: 127.0.0.1:3021\n\
                ssh_service: {}\n";
    let parsed = Config::from_yaml("dev.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed, dev);

    assert!(dev.auth_service.enabled && dev.proxy_service.enabled && dev.ssh_service.enabled);
    assert_eq!(dev.ssh_service.listen_addr, None);
    assert_eq!(dev.jumpgate.log.output, LogOutput::Stderr);
    assert_eq!(
        dev.auth_service.authentication.second_factor,
        SecondFactor::Otp
    );
    assert_eq!(
        dev.jumpgate.storage.sqlite_dir(&dev.jumpgate.data_dir),
        Some(dir.join("backend"))
    );
    for addr in [
        &dev.auth_service.listen_addr,
        &dev.proxy_service.web_listen_addr,
        &dev.proxy_service.peer_listen_addr,
    ] {
        assert_eq!(addr.host, "127.0.0.1");
    }
}

/// The examples in docs/config.md parse.
#[test]
fn docs_examples_parse() {
    let docs = include_str!("../../../docs/config.md");
    let blocks: Vec<&str> = docs
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .collect();
    assert!(blocks.len() >= 3, "found {} yaml blocks", blocks.len());
    for block in blocks {
        Config::from_yaml("docs/config.md", block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
}

/// Every configuration in docs/high-availability.md (the three tested topologies) parses
/// and validates as written: operators copy them.
#[test]
fn high_availability_configs_parse() {
    let docs = include_str!("../../../docs/high-availability.md");
    let blocks: Vec<&str> = docs
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert!(blocks.len() >= 6, "found {} YAML blocks", blocks.len());
    for (index, block) in blocks.iter().enumerate() {
        let name = format!("docs/high-availability.md block {}", index + 1);
        Config::from_yaml(&name, block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
}
