//! Bad configs are refused with the field's path and a reason that says what to fix
//! (DESIGN.md: "a malformed config ... gets a clear error naming what is wrong").

// Test code: a panic is how a test reports failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_types::{Config, ConfigError};

/// (name, YAML, expected field path, fragment of the reason)
const FIELD_ERRORS: &[(&str, &str, &str, &str)] = &[
    (
        "bad host:port",
        "proxy_service:\n  peer_public_addr: nope\n",
        "proxy_service.peer_public_addr",
        "expected host:port, got \"nope\"",
    ),
    (
        "port out of range",
        "auth_service:\n  listen_addr: 0.0.0.0:99999\n",
        "auth_service.listen_addr",
        "up to 65535",
    ),
    (
        "bad address in a public_addr list",
        "proxy_service:\n  public_addr: [a.example.com:443, b.example.com]\n",
        "proxy_service.public_addr[1]",
        "expected host:port, got \"b.example.com\"",
    ),
    (
        "bad duration",
        "auth_service: {}\nssh_service:\n  commands:\n    - name: arch\n      command: [uname, -m]\n      period: often\n",
        "ssh_service.commands[0].period",
        "expected a duration such as 30s or 12h, got \"often\"",
    ),
    (
        "zero period",
        "auth_service: {}\nssh_service:\n  commands: [{name: a, command: [x], period: 0s}]\n",
        "ssh_service.commands[0].period",
        "longer than zero",
    ),
    (
        "unknown key with hint",
        "proxy_service:\n  peer_public_adr: a.example.com:3021\n",
        "proxy_service.peer_public_adr",
        "unknown key `peer_public_adr`; did you mean `peer_public_addr`?",
    ),
    (
        "unknown top-level key with hint",
        "ssh_servce:\n  enabled: yes\n",
        "ssh_servce",
        "did you mean `ssh_service`?",
    ),
    (
        "unknown key without a close match lists the known ones",
        "auth_service:\n  frobnicate: 1\n",
        "auth_service.frobnicate",
        "expected one of enabled, cluster_name",
    ),
    (
        "unknown key nested deeper",
        "jumpgate:\n  log:\n    severty: info\n",
        "jumpgate.log.severty",
        "did you mean `severity`?",
    ),
    (
        "unknown storage type",
        "jumpgate:\n  storage:\n    type: firestore\n    project_id: p\n    collection_name: jumpgate\nauth_service: {}\n",
        "jumpgate.storage.type",
        "\"firestore\" is not supported; use one of sqlite, etcd, postgresql, dynamodb, memory",
    ),
    (
        "key of another storage type",
        "jumpgate:\n  storage:\n    type: sqlite\n    peers: [\"https://e:2379\"]\n",
        "jumpgate.storage.peers",
        "`peers` is for storage type etcd, not sqlite",
    ),
    (
        "a misspelt key exchange",
        "jumpgate:\n  kex_algos: [mlkem768x25519-sha256, curve25519-sha265]\n",
        "jumpgate.kex_algos[1]",
        "did you mean curve25519-sha256?",
    ),
    (
        "an empty MAC list",
        "jumpgate:\n  mac_algos: []\n",
        "jumpgate.mac_algos",
        "must name at least one algorithm",
    ),
    (
        "a trusted load balancer network that is not one",
        "proxy_service:\n  proxy_protocol: on\n  proxy_protocol_trusted_cidrs: [10.0.0.0/8, 10.1.2.300]\n",
        "proxy_service.proxy_protocol_trusted_cidrs[1]",
        "expected a network such as 10.0.0.0/8",
    ),
    (
        "trusted load balancers without the PROXY protocol",
        "proxy_service:\n  proxy_protocol_trusted_cidrs: 10.0.0.0/8\n",
        "proxy_service.proxy_protocol_trusted_cidrs",
        "is only used with `proxy_protocol: on`",
    ),
    (
        "no unauthenticated connection at all per client",
        "proxy_service:\n  max_unauthenticated_per_source: 0\n",
        "proxy_service.max_unauthenticated_per_source",
        "must be between 1 and 100000 (default 256), got 0",
    ),
    (
        "etcd without peers",
        "jumpgate:\n  storage:\n    type: etcd\n",
        "jumpgate.storage.peers",
        "is required for storage type etcd",
    ),
    (
        "etcd peer without scheme",
        "jumpgate:\n  storage:\n    type: etcd\n    peers: [\"etcd1:2379\"]\n",
        "jumpgate.storage.peers",
        "expected an http:// or https:// URL",
    ),
    (
        "etcd cert without key",
        "jumpgate:\n  storage:\n    type: etcd\n    peers: [\"https://e:2379\"]\n    tls_cert_file: /c.pem\n",
        "jumpgate.storage.tls_key_file",
        "is required when tls_cert_file is set",
    ),
    (
        "etcd password file without username",
        "jumpgate:\n  storage:\n    type: etcd\n    peers: [\"https://e:2379\"]\n    password_file: /p\n",
        "jumpgate.storage.username",
        "is required when password_file is set",
    ),
    (
        "version v2",
        "version: v2\nauth_service: {}\n",
        "version",
        "only v3 is",
    ),
    (
        "bad severity",
        "jumpgate:\n  log:\n    severity: loud\n",
        "jumpgate.log.severity",
        "expected one of error, warn, info, debug, trace, got \"loud\"",
    ),
    (
        "bad extra field",
        "jumpgate:\n  log:\n    format: {output: json, extra_fields: [level, mood]}\n",
        "jumpgate.log.format.extra_fields[1]",
        "got \"mood\"",
    ),
    (
        "syslog output",
        "jumpgate:\n  log:\n    output: syslog\n",
        "jumpgate.log.output",
        "syslog is not supported",
    ),
    (
        "token without roles",
        "auth_service:\n  tokens: [\"s3cr3t-value\"]\n",
        "auth_service.tokens[0]",
        "missing roles",
    ),
    (
        "token with an unknown role",
        "auth_service:\n  tokens: [\"node,nodes:s3cr3t-value\"]\n",
        "auth_service.tokens[0]",
        "got \"nodes\"",
    ),
    (
        "teleport top-level key",
        "version: v3\nteleport:\n  nodename: x\n",
        "teleport",
        "did you mean `jumpgate`?",
    ),
    (
        "section both nested and top-level",
        "jumpgate:\n  proxy_server: p.example.com:443\n  ssh_service:\n    enabled: yes\nssh_service:\n  enabled: yes\n",
        "jumpgate.ssh_service",
        "both at the top level and nested",
    ),
    (
        "agent with nowhere to join",
        "ssh_service: {}\n",
        "jumpgate.proxy_server",
        "an ssh_service without a local auth_service needs proxy_server or auth_server",
    ),
    (
        "agent with nowhere to join, nested",
        "jumpgate:\n  auth_token: abc\n  ssh_service: {}\n",
        "jumpgate.proxy_server",
        "needs proxy_server or auth_server",
    ),
    (
        "auth_server and proxy_server",
        "jumpgate:\n  auth_server: a.example.com:3025\n  proxy_server: p.example.com:443\n",
        "jumpgate.proxy_server",
        "not both",
    ),
    (
        "auth_token and join_params",
        "jumpgate:\n  auth_token: a\n  join_params: {method: token, token_name: b}\n",
        "jumpgate.join_params",
        "not both",
    ),
    (
        "unsupported join method",
        "jumpgate:\n  join_params: {method: iam, token_name: b}\n",
        "jumpgate.join_params.method",
        "join method \"iam\" is not supported yet; use token",
    ),
    (
        "join_params without token_name",
        "jumpgate:\n  join_params: {method: token}\n",
        "jumpgate.join_params.token_name",
        "is required",
    ),
    (
        "agent_connection_count with agent_mesh",
        "auth_service:\n  tunnel_strategy: {type: agent_mesh, agent_connection_count: 2}\n",
        "auth_service.tunnel_strategy.agent_connection_count",
        "only applies to `type: proxy_peering`",
    ),
    (
        "agent_connection_count zero",
        "auth_service:\n  tunnel_strategy: {type: proxy_peering, agent_connection_count: 0}\n",
        "auth_service.tunnel_strategy.agent_connection_count",
        "at least 1",
    ),
    (
        "unknown tunnel strategy",
        "auth_service:\n  tunnel_strategy: {type: mesh}\n",
        "auth_service.tunnel_strategy.type",
        "expected one of agent_mesh, proxy_peering",
    ),
    (
        "a connector name with local logins",
        "auth_service:\n  authentication: {type: local, connector_name: okta}\n",
        "auth_service.authentication.connector_name",
        "type` must be oidc, saml or github",
    ),
    (
        "nobody could log in",
        "auth_service:\n  authentication: {local_auth: false}\n",
        "auth_service.authentication.local_auth",
        "nobody could log in",
    ),
    (
        "unknown authentication type",
        "auth_service:\n  authentication: {type: ldap}\n",
        "auth_service.authentication.type",
        "expected one of local, oidc, saml, github",
    ),
    (
        "bad second factor",
        "auth_service:\n  authentication: {second_factor: sms}\n",
        "auth_service.authentication.second_factor",
        "expected one of off, otp, on, webauthn, optional",
    ),
    (
        "bad session recording",
        "auth_service:\n  session_recording: always\n",
        "auth_service.session_recording",
        "node-sync",
    ),
    (
        "bad boolean",
        "proxy_service:\n  proxy_protocol: maybe\n",
        "proxy_service.proxy_protocol",
        "expected yes/no, on/off or true/false, got \"maybe\"",
    ),
    (
        "bad label key",
        "auth_service: {}\nssh_service:\n  labels: {\"bad key\": x}\n",
        "ssh_service.labels.bad key",
        "label keys may use only",
    ),
    (
        "command label without a program",
        "auth_service: {}\nssh_service:\n  commands: [{name: a, command: [], period: 1m}]\n",
        "ssh_service.commands[0].command",
        "must name a program",
    ),
    (
        "command label clashing with a static label",
        "auth_service: {}\nssh_service:\n  labels: {a: x}\n  commands: [{name: a, command: [x], period: 1m}]\n",
        "ssh_service.commands[0].name",
        "defined twice",
    ),
    (
        "bad ca_pin",
        "jumpgate:\n  ca_pin: sha256:1234\n",
        "jumpgate.ca_pin",
        "sha256:<64 hex digits>",
    ),
    (
        "bad audit uri",
        "jumpgate:\n  storage:\n    audit_events_uri: [\"file:///ok\", \"/var/log\"]\n",
        "jumpgate.storage.audit_events_uri[1]",
        "expected a URI",
    ),
    (
        "keypair missing its cert",
        "proxy_service:\n  https_keypairs: [{key_file: /k.pem}]\n",
        "proxy_service.https_keypairs[0].cert_file",
        "is required",
    ),
    (
        "wrong type",
        "auth_service:\n  listen_addr: [a, b]\n",
        "auth_service.listen_addr",
        "expected a string",
    ),
];

#[test]
fn field_errors_name_the_field_and_the_reason() {
    let mut failures = Vec::new();
    for &(name, yaml, path, fragment) in FIELD_ERRORS {
        match Config::from_yaml("/etc/jumpgate.yaml", yaml) {
            Ok(config) => failures.push(format!("{name}: accepted: {config:?}")),
            Err(err) => {
                let shown = err.to_string();
                let prefix = format!("/etc/jumpgate.yaml: {path}: ");
                if err.field_path() != Some(path)
                    || !shown.starts_with(&prefix)
                    || !shown.contains(fragment)
                {
                    failures.push(format!(
                        "{name}:\n   got: {shown}\n  path: {:?}\n  want: {prefix}...{fragment}...",
                        err.field_path()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_display_format_is_file_path_reason() {
    let err = Config::from_yaml(
        "/etc/jumpgate.yaml",
        "proxy_service:\n  peer_public_addr: nope\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/jumpgate.yaml: proxy_service.peer_public_addr: expected host:port, got \"nope\""
    );
}

#[test]
fn secrets_are_not_echoed_in_errors() {
    for yaml in [
        "auth_service:\n  tokens: [\"s3cr3t-value\"]\n",
        "auth_service:\n  tokens: [\"nodes:s3cr3t-value\"]\n",
    ] {
        let err = Config::from_yaml("f", yaml).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }
}

#[test]
fn empty_documents() {
    for text in ["", "   \n", "# only a comment\n", "---\n", "{}\n", "~\n"] {
        let err = Config::from_yaml("/etc/jumpgate.yaml", text).unwrap_err();
        assert!(
            matches!(err, ConfigError::Document { .. }),
            "{text:?}: {err:?}"
        );
        assert_eq!(err.field_path(), None);
        assert!(err.to_string().contains("the config is empty"), "{err}");
    }
}

#[test]
fn top_level_must_be_a_mapping() {
    for text in ["- a\n- b\n", "just a string\n", "42\n"] {
        let err = Config::from_yaml("f.yaml", text).unwrap_err();
        assert!(matches!(err, ConfigError::Document { .. }), "{err:?}");
        assert!(
            err.to_string().contains("expected a mapping of sections"),
            "{err}"
        );
    }
}

#[test]
fn yaml_syntax_errors_carry_line_and_column() {
    let text = "version: v3\nauth_service:\n  enabled: yes\n    listen_addr: x\n";
    let err = Config::from_yaml("/etc/jumpgate.yaml", text).unwrap_err();
    let ConfigError::Syntax { location, .. } = &err else {
        panic!("expected a syntax error, got {err:?}");
    };
    let location = location.expect("a location");
    assert_eq!(location.line, 4, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "/etc/jumpgate.yaml:4:{}: YAML syntax error: mapping values are not allowed in this context",
            location.column
        )
    );
}

#[test]
fn duplicate_keys_are_refused() {
    let err = Config::from_yaml("f.yaml", "auth_service: {}\nauth_service: {}\n").unwrap_err();
    assert!(err.to_string().contains("duplicate"), "{err}");
}

/// Bad input never panics (DESIGN.md invariants): every prefix of every valid config, and
/// every single-byte deletion of the sample, gives Ok or a ConfigError.
#[test]
fn truncated_and_mangled_configs_never_panic() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    // Config fixtures only: `fixtures/roles/` holds role files, tested in `roles.rs`.
    let mut texts: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    texts.push(jumpgate_types::sample_config().to_owned());
    for text in &texts {
        for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let _ = Config::from_yaml("f", &text[..end]);
        }
    }
    let sample = jumpgate_types::sample_config();
    for i in (0..sample.len()).filter(|&i| sample.is_char_boundary(i)) {
        let mut mangled = sample.to_owned();
        mangled.remove(i);
        let _ = Config::from_yaml("f", &mangled);
    }
}
