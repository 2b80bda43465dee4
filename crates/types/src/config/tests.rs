//! Parsing rules that need the whole pipeline. Error tables, seed fixtures, the sample and the
//! dev config are tested from `crates/types/tests/`.

use super::*;

fn parse(yaml: &str) -> Config {
    Config::from_yaml("test.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
}

/// An agent needs somewhere to join; tests of other fields add this.
const JOIN: &str = "jumpgate:\n  proxy_server: p.example.com:443\n";

#[test]
fn present_sections_are_enabled_absent_ones_are_not() {
    let c = parse("auth_service: {}\n");
    assert!(c.auth_service.enabled);
    assert!(!c.proxy_service.enabled);
    assert!(!c.ssh_service.enabled);

    // A key with no value is still present.
    let c = parse(&format!("{JOIN}ssh_service:\n"));
    assert!(c.ssh_service.enabled);

    let c = parse("auth_service:\n  enabled: no\nproxy_service:\n  enabled: \"yes\"\n");
    assert!(!c.auth_service.enabled);
    assert!(c.proxy_service.enabled);
}

#[test]
fn booleans_in_every_spelling() {
    for (word, value) in [
        ("true", true),
        ("false", false),
        ("yes", true),
        ("no", false),
        ("on", true),
        ("off", false),
        ("\"yes\"", true),
        ("\"Off\"", false),
        ("YES", true),
    ] {
        let c = parse(&format!("proxy_service:\n  proxy_protocol: {word}\n"));
        assert_eq!(c.proxy_service.proxy_protocol, value, "{word}");
    }
}

#[test]
fn sections_nested_under_jumpgate_count_as_top_level() {
    let c = parse(
        "jumpgate:\n  auth_service:\n    cluster_name: nested\n  proxy_service:\n    \
         enabled: off\n",
    );
    assert!(c.auth_service.enabled);
    assert_eq!(c.auth_service.cluster_name.as_deref(), Some("nested"));
    assert!(!c.proxy_service.enabled);
}

#[test]
fn errors_in_nested_sections_name_the_nested_path() {
    let err = Config::from_yaml(
        "f",
        "jumpgate:\n  auth_service:\n    tunnel_strategy: {agent_connection_count: 3}\n",
    )
    .unwrap_err();
    assert_eq!(
        err.field_path(),
        Some("jumpgate.auth_service.tunnel_strategy.agent_connection_count")
    );
    let err = Config::from_yaml("f", "jumpgate:\n  ssh_service:\n    lables: {}\n").unwrap_err();
    assert_eq!(err.field_path(), Some("jumpgate.ssh_service.lables"));
    assert!(err.to_string().contains("did you mean `labels`?"), "{err}");
}

#[test]
fn an_empty_key_is_named_in_the_path() {
    // Found by the `config` fuzz target: an empty key at the top level gave an empty path,
    // so the message named no field ("f: : unknown key ``").
    let err = Config::from_yaml("f", "\u{feff}# :\n!!1nt\t:").unwrap_err();
    assert_eq!(err.field_path(), Some("\"\""));
    assert!(
        err.to_string().starts_with("f: \"\": unknown key ``"),
        "{err}"
    );
    let err = Config::from_yaml("f", "\"\": 1\n").unwrap_err();
    assert_eq!(err.field_path(), Some("\"\""));
    let err = Config::from_yaml("f", "jumpgate:\n  \"\": 1\n").unwrap_err();
    assert_eq!(err.field_path(), Some("jumpgate.\"\""));
}

#[test]
fn a_key_given_twice_is_named_in_the_path() {
    // Found by the `config` fuzz target (minimized): YAML sees a tagged key and a plain one
    // as two keys, serde as the same field twice; the error had an empty path.
    let err = Config::from_yaml("f", "jumpgate: {}\n! jumpgate: {}\n").unwrap_err();
    assert_eq!(err.field_path(), Some("jumpgate"));
    assert_eq!(err.to_string(), "f: jumpgate: is given twice; keep one");
    let err =
        Config::from_yaml("f", "auth_service:\n  enabled: yes\n  ! enabled: no\n").unwrap_err();
    assert_eq!(err.field_path(), Some("auth_service.enabled"));
}

#[test]
fn defaults_apply_when_fields_are_absent() {
    let c = parse("auth_service: {}\nproxy_service: {}\n");
    assert_eq!(c.version, ConfigVersion::V3);
    assert_eq!(
        c.jumpgate.data_dir,
        std::path::PathBuf::from("/var/lib/jumpgate")
    );
    assert_eq!(
        c.jumpgate.storage.backend,
        StorageBackend::Sqlite { path: None }
    );
    assert_eq!(c.jumpgate.log, LogConfig::default());
    assert_eq!(c.jumpgate.diag_addr, None);
    assert_eq!(c.auth_service.listen_addr, HostPort::new("0.0.0.0", 3025));
    assert_eq!(c.auth_service.authentication.kind, AuthType::Local);
    assert_eq!(
        c.auth_service.authentication.second_factor,
        SecondFactor::Otp
    );
    assert_eq!(c.auth_service.session_recording, SessionRecording::Node);
    assert_eq!(
        c.auth_service.proxy_listener_mode,
        ProxyListenerMode::Multiplex
    );
    assert_eq!(c.auth_service.tunnel_strategy, TunnelStrategy::AgentMesh);
    assert_eq!(
        c.proxy_service.web_listen_addr,
        HostPort::new("0.0.0.0", 3080)
    );
    assert_eq!(
        c.proxy_service.peer_listen_addr,
        HostPort::new("0.0.0.0", 3021)
    );
    assert!(!c.proxy_service.proxy_protocol);
}

#[test]
fn proxy_peering_count_defaults_to_one() {
    let c = parse("auth_service:\n  tunnel_strategy:\n    type: proxy_peering\n");
    assert_eq!(
        c.auth_service.tunnel_strategy,
        TunnelStrategy::ProxyPeering {
            agent_connection_count: 1
        }
    );
}

#[test]
fn log_format_as_word_or_mapping() {
    let c = parse("jumpgate:\n  log: {format: JSON}\n");
    assert_eq!(c.jumpgate.log.format, LogFormat::Json);
    assert!(c.jumpgate.log.extra_fields.is_empty());
    let c =
        parse("jumpgate:\n  log:\n    format:\n      output: json\n      extra_fields: [caller]\n");
    assert_eq!(c.jumpgate.log.format, LogFormat::Json);
    assert_eq!(c.jumpgate.log.extra_fields, ["caller"]);
    let c = parse("jumpgate:\n  log:\n    format: {extra_fields: [level]}\n");
    assert_eq!(c.jumpgate.log.format, LogFormat::Text);

    let err =
        Config::from_yaml("f", "jumpgate:\n  log:\n    format: {outptu: json}\n").unwrap_err();
    assert_eq!(err.field_path(), Some("jumpgate.log.format.outptu"));
    assert!(err.to_string().contains("did you mean `output`?"), "{err}");
}

#[test]
fn log_outputs_and_severities() {
    for (word, output) in [
        ("stderr", LogOutput::Stderr),
        ("STDOUT", LogOutput::Stdout),
        ("/var/log/jg.log", LogOutput::File("/var/log/jg.log".into())),
    ] {
        let c = parse(&format!("jumpgate:\n  log: {{output: \"{word}\"}}\n"));
        assert_eq!(c.jumpgate.log.output, output);
    }
    for (word, severity) in [
        ("ERROR", LogSeverity::Error),
        ("err", LogSeverity::Error),
        ("WARNING", LogSeverity::Warn),
        ("warn", LogSeverity::Warn),
        ("Info", LogSeverity::Info),
        ("DEBUG", LogSeverity::Debug),
        ("trace", LogSeverity::Trace),
    ] {
        let c = parse(&format!("jumpgate:\n  log: {{severity: {word}}}\n"));
        assert_eq!(c.jumpgate.log.severity, severity, "{word}");
    }
}

#[test]
fn storage_types() {
    let c = parse("jumpgate:\n  storage: {type: dir}\n");
    assert_eq!(
        c.jumpgate.storage.backend,
        StorageBackend::Sqlite { path: None }
    );
    let c = parse("jumpgate:\n  storage: {type: memory}\n");
    assert_eq!(c.jumpgate.storage.backend, StorageBackend::Memory);
    let c = parse("jumpgate:\n  storage: {audit_events_uri: \"file:///a\"}\n");
    assert_eq!(c.jumpgate.storage.audit_events_uri, ["file:///a"]);

    let err =
        Config::from_yaml("f", "jumpgate:\n  storage: {type: memory, path: /x}\n").unwrap_err();
    assert_eq!(err.field_path(), Some("jumpgate.storage.path"));
    // Without `type`, an etcd key says how to switch.
    let err = Config::from_yaml("f", "jumpgate:\n  storage: {prefix: /x/}\n").unwrap_err();
    assert_eq!(err.field_path(), Some("jumpgate.storage.prefix"));
    assert!(err.to_string().contains("add `type: etcd`"), "{err}");
}

#[test]
fn strings_or_lists() {
    let c = parse("proxy_service:\n  public_addr: a.example.com:443\n");
    assert_eq!(
        c.proxy_service.public_addr,
        [HostPort::new("a.example.com", 443)]
    );
    let c = parse("proxy_service:\n  public_addr: [a.example.com:443, \"[::1]:443\"]\n");
    assert_eq!(c.proxy_service.public_addr[1], HostPort::new("::1", 443));
    let pin = format!("sha256:{}", "AB".repeat(32));
    let c = parse(&format!("jumpgate:\n  ca_pin: [\"{pin}\", \"{pin}\"]\n"));
    assert_eq!(c.jumpgate.ca_pin.len(), 2);
}

#[test]
fn empty_strings_mean_unset_where_teleport_writes_them() {
    let c = parse("jumpgate:\n  ca_pin: \"\"\n  diag_addr: \"\"\nauth_service: {}\n");
    assert!(c.jumpgate.ca_pin.is_empty());
    assert_eq!(c.jumpgate.diag_addr, None);
}

#[test]
fn labels_accept_scalar_values() {
    let c = parse(&format!(
        "{JOIN}ssh_service:\n  labels: {{rack: 12, gpu: true, env: prod}}\n"
    ));
    let labels: Vec<(&str, &str)> = c
        .ssh_service
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(labels, [("env", "prod"), ("gpu", "true"), ("rack", "12")]);
}

#[test]
fn static_tokens_keep_their_roles() {
    let c = parse("auth_service:\n  tokens: [\"proxy,node:abc\", \"auth:def\"]\n");
    let roles: Vec<&[JoinRole]> = c.auth_service.tokens.iter().map(|t| &t.roles[..]).collect();
    assert_eq!(
        roles,
        [
            &[JoinRole::Proxy, JoinRole::Node][..],
            &[JoinRole::Auth][..]
        ]
    );
    assert!(!format!("{c:?}").contains("abc"), "Debug leaks a token");
}

#[test]
fn yaml_anchors_and_merge_keys_work() {
    let c = parse(
        "proxy_service:\n  public_addr: &public a.example.com:443\n\
         auth_service:\n  public_addr: *public\n\
         jumpgate:\n  log:\n    <<: {severity: debug, output: stdout}\n    output: stderr\n",
    );
    assert_eq!(c.auth_service.public_addr, c.proxy_service.public_addr);
    assert_eq!(c.jumpgate.log.severity, LogSeverity::Debug);
    assert_eq!(
        c.jumpgate.log.output,
        LogOutput::Stderr,
        "explicit keys win over merged ones"
    );
}

#[test]
fn join_params_method_defaults_to_token() {
    let c = parse(
        "jumpgate:\n  auth_server: a.example.com:3025\n  join_params: {token_name: t}\nssh_service: {}\n",
    );
    let params = c.jumpgate.join_params.unwrap();
    assert_eq!(params.method, JoinMethod::Token);
    assert_eq!(params.token_name.expose(), "t");
}

#[test]
fn type_errors_do_not_name_internal_types() {
    for yaml in [
        "jumpgate: x\n",
        "auth_service: [a]\n",
        "proxy_service:\n  https_keypairs: [x]\n",
    ] {
        let err = Config::from_yaml("f", yaml).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("expected a mapping"), "{shown}");
        assert!(!shown.contains("Raw"), "{shown}");
    }
}

#[test]
fn secrets_may_be_any_scalar_and_tokens_a_single_string() {
    let c = parse("jumpgate:\n  auth_token: 12345\n  proxy_server: p:443\nssh_service: {}\n");
    assert_eq!(c.jumpgate.auth_token.unwrap().expose(), "12345");
    let c = parse("auth_service:\n  tokens: \"node:abc\"\n");
    assert_eq!(c.auth_service.tokens.len(), 1);
    let err = Config::from_yaml("f", "jumpgate:\n  auth_token: \"\"\n").unwrap_err();
    assert_eq!(err.field_path(), Some("jumpgate.auth_token"));
}

#[test]
fn keywords_are_case_insensitive() {
    let c = parse(
        "version: V3\njumpgate:\n  storage: {type: SQLite}\nauth_service:\n  \
         tunnel_strategy: {type: Proxy_Peering}\n  session_recording: Node-Sync\n",
    );
    assert_eq!(c.auth_service.session_recording, SessionRecording::NodeSync);
    assert!(matches!(
        c.auth_service.tunnel_strategy,
        TunnelStrategy::ProxyPeering { .. }
    ));
}

#[test]
fn a_tunnel_strategy_goes_over_the_wire_as_its_name_and_count() {
    let peering = TunnelStrategy::ProxyPeering {
        agent_connection_count: 3,
    };
    for strategy in [TunnelStrategy::AgentMesh, peering] {
        let (name, count) = (strategy.as_str(), strategy.agent_connection_count());
        assert_eq!(TunnelStrategy::from_wire(name, count), strategy);
        assert_eq!(strategy.to_string(), name);
    }
    assert_eq!(
        (peering.as_str(), peering.agent_connection_count()),
        ("proxy_peering", 3)
    );
    assert_eq!(
        (
            TunnelStrategy::AgentMesh.as_str(),
            TunnelStrategy::AgentMesh.agent_connection_count()
        ),
        ("agent_mesh", 0)
    );
    // What this version does not know reads as a tunnel to every proxy; no count as one.
    assert_eq!(TunnelStrategy::from_wire("", 0), TunnelStrategy::AgentMesh);
    assert_eq!(
        TunnelStrategy::from_wire("proxy_mesh_v9", 2),
        TunnelStrategy::AgentMesh
    );
    assert_eq!(
        TunnelStrategy::from_wire("proxy_peering", 0),
        TunnelStrategy::ProxyPeering {
            agent_connection_count: 1
        }
    );
}

#[test]
fn postgresql_storage() {
    let c = parse(
        "jumpgate:\n  storage:\n    type: postgresql\n    conn_string: \
         \"postgresql://jumpgate@db1:5432,db2:5432/jumpgate?target_session_attrs=read-write\"\n    \
         password_file: /etc/jumpgate/pg-password\n",
    );
    assert_eq!(
        c.jumpgate.storage.backend,
        StorageBackend::Postgres(PostgresConfig {
            conn_string:
                "postgresql://jumpgate@db1:5432,db2:5432/jumpgate?target_session_attrs=read-write"
                    .to_owned(),
            password_file: Some("/etc/jumpgate/pg-password".into()),
        })
    );
    // The key=value form, and the short type name.
    let c =
        parse("jumpgate:\n  storage: {type: postgres, conn_string: \"host=db1,db2 user=jg\"}\n");
    assert!(matches!(
        c.jumpgate.storage.backend,
        StorageBackend::Postgres(_)
    ));

    let refused = |yaml: &str, field: &str, reason: &str| {
        let err = Config::from_yaml("f", yaml).unwrap_err();
        assert_eq!(err.field_path(), Some(field), "{err}");
        assert!(err.to_string().contains(reason), "{err}");
    };
    refused(
        "jumpgate:\n  storage: {type: postgresql}\n",
        "jumpgate.storage.conn_string",
        "is required for storage type postgresql",
    );
    refused(
        "jumpgate:\n  storage: {type: postgresql, conn_string: \"db1:5432\"}\n",
        "jumpgate.storage.conn_string",
        "expected a PostgreSQL connection string",
    );
    refused(
        "jumpgate:\n  storage: {type: postgresql, conn_string: \"host=db1\", tls_ca_file: /ca.pem}\n",
        "jumpgate.storage.tls_ca_file",
        "sslrootcert=FILE",
    );
    refused(
        "jumpgate:\n  storage: {type: postgresql, conn_string: \"host=db1\", peers: [\"http://e:2379\"]}\n",
        "jumpgate.storage.peers",
        "`peers` is for storage type etcd, not postgresql",
    );
    refused(
        "jumpgate:\n  storage: {type: etcd, peers: [\"http://e:2379\"], conn_string: \"host=db1\"}\n",
        "jumpgate.storage.conn_string",
        "`conn_string` is for storage type postgresql, not etcd",
    );
    // Without `type`, conn_string says how to switch.
    refused(
        "jumpgate:\n  storage: {conn_string: \"host=db1\"}\n",
        "jumpgate.storage.conn_string",
        "add `type: postgresql`",
    );
    refused(
        "jumpgate:\n  storage: {type: memory, password_file: /p}\n",
        "jumpgate.storage.password_file",
        "is for storage type etcd or postgresql, not memory",
    );
}

/// Seed 000's two-server setup without a load balancer: several proxies (or auth servers)
/// as a comma list or a YAML list, tried in turn by agents.
#[test]
fn servers_are_one_address_a_comma_list_or_a_list() {
    let c =
        parse("jumpgate:\n  proxy_server: a.example.com:443, b.example.com:443\nssh_service: {}\n");
    let proxies = c.jumpgate.proxy_server.unwrap();
    assert_eq!(proxies.to_string(), "a.example.com:443,b.example.com:443");
    assert_eq!(proxies.first(), &HostPort::new("a.example.com", 443));
    let c =
        parse("jumpgate:\n  auth_server: [\"10.0.0.1:3025\", \"[::1]:3025\"]\nssh_service: {}\n");
    assert_eq!(c.jumpgate.auth_server.unwrap().addrs().len(), 2);
    let c = parse("jumpgate:\n  proxy_server: p:443\nssh_service: {}\n");
    assert_eq!(c.jumpgate.proxy_server.unwrap().to_string(), "p:443");

    for (yaml, reason) in [
        ("a:443,,b:443", "empty entry"),
        ("a:443,a:443", "listed twice"),
        ("a:443,b", "expected host:port"),
        ("a:0", "port 0"),
    ] {
        let err = Config::from_yaml(
            "f",
            &format!("jumpgate:\n  proxy_server: \"{yaml}\"\nssh_service: {{}}\n"),
        )
        .unwrap_err();
        assert_eq!(err.field_path(), Some("jumpgate.proxy_server"), "{yaml}");
        assert!(err.to_string().contains(reason), "{yaml}: {err}");
    }
}

#[test]
fn dynamodb_storage() {
    // Seed 004's deployment keeps cluster state in DynamoDB; Teleport's field names.
    let c = parse(
        "jumpgate:\n  storage:\n    type: dynamodb\n    region: us-east-1\n    \
         table_name: jumpgate-backend\n    audit_sessions_uri: s3://recordings/jumpgate\n",
    );
    assert_eq!(
        c.jumpgate.storage.backend,
        StorageBackend::Dynamo(DynamoConfig {
            region: "us-east-1".to_owned(),
            table_name: "jumpgate-backend".to_owned(),
            endpoint: None,
            billing: DynamoBillingMode::PayPerRequest,
        })
    );
    let c = parse(
        "jumpgate:\n  storage:\n    type: DynamoDB\n    region: eu-central-1\n    \
         table_name: jg.state_1\n    endpoint: http://localhost:8000\n    \
         billing_mode: provisioned\n    write_capacity_units: 25\n",
    );
    assert_eq!(
        c.jumpgate.storage.backend,
        StorageBackend::Dynamo(DynamoConfig {
            region: "eu-central-1".to_owned(),
            table_name: "jg.state_1".to_owned(),
            endpoint: Some("http://localhost:8000".to_owned()),
            billing: DynamoBillingMode::Provisioned {
                read_capacity_units: 10,
                write_capacity_units: 25,
            },
        })
    );

    let refused = |yaml: &str, field: &str, reason: &str| {
        let err = Config::from_yaml("f", yaml).unwrap_err();
        assert_eq!(err.field_path(), Some(field), "{err}");
        assert!(err.to_string().contains(reason), "{err}");
    };
    refused(
        "jumpgate:\n  storage: {type: dynamodb, table_name: t-1}\n",
        "jumpgate.storage.region",
        "is required for storage type dynamodb",
    );
    refused(
        "jumpgate:\n  storage: {type: dynamodb, region: US East, table_name: t-1}\n",
        "jumpgate.storage.region",
        "expected an AWS region",
    );
    refused(
        "jumpgate:\n  storage: {type: dynamodb, region: us-east-1}\n",
        "jumpgate.storage.table_name",
        "is required for storage type dynamodb",
    );
    refused(
        "jumpgate:\n  storage: {type: dynamodb, region: us-east-1, table_name: \"a/b\"}\n",
        "jumpgate.storage.table_name",
        "is not a DynamoDB table name",
    );
    refused(
        "jumpgate:\n  storage: {type: dynamodb, region: us-east-1, table_name: t-1, endpoint: \"localhost:8000\"}\n",
        "jumpgate.storage.endpoint",
        "expected an http:// or https:// URL",
    );
    refused(
        "jumpgate:\n  storage: {type: dynamodb, region: us-east-1, table_name: t-1, billing_mode: on_demand}\n",
        "jumpgate.storage.billing_mode",
        "use pay_per_request or provisioned",
    );
    refused(
        "jumpgate:\n  storage: {type: dynamodb, region: us-east-1, table_name: t-1, read_capacity_units: 5}\n",
        "jumpgate.storage.read_capacity_units",
        "only applies with billing_mode: provisioned",
    );
    refused(
        "jumpgate:\n  storage: {type: dynamodb, region: us-east-1, table_name: t-1, billing_mode: provisioned, write_capacity_units: 0}\n",
        "jumpgate.storage.write_capacity_units",
        "at least 1",
    );
    refused(
        "jumpgate:\n  storage: {type: etcd, peers: [\"http://e:2379\"], table_name: t-1}\n",
        "jumpgate.storage.table_name",
        "`table_name` is for storage type dynamodb, not etcd",
    );
    refused(
        "jumpgate:\n  storage: {type: dynamodb, region: us-east-1, table_name: t-1, conn_string: \"host=db\"}\n",
        "jumpgate.storage.conn_string",
        "`conn_string` is for storage type postgresql, not dynamodb",
    );
    // Without `type`, a DynamoDB key says how to switch.
    refused(
        "jumpgate:\n  storage: {region: us-east-1}\n",
        "jumpgate.storage.region",
        "add `type: dynamodb`",
    );
    // Teleport's keys we do not support are named, not silently ignored.
    let err = Config::from_yaml(
        "f",
        "jumpgate:\n  storage: {type: dynamodb, region: us-east-1, table_name: t-1, continuous_backups: true}\n",
    )
    .unwrap_err();
    assert_eq!(
        err.field_path(),
        Some("jumpgate.storage.continuous_backups"),
        "{err}"
    );
}

#[test]
fn web_idle_timeout_defaults_to_ten_minutes_and_refuses_nonsense() {
    let config = parse("auth_service:\n  enabled: true\n");
    assert_eq!(
        config.auth_service.web_idle_timeout,
        std::time::Duration::from_secs(600)
    );
    let config = parse("auth_service:\n  web_idle_timeout: 30m\n");
    assert_eq!(
        config.auth_service.web_idle_timeout,
        std::time::Duration::from_secs(1800)
    );
    for bad in ["0s", "2d", "soon"] {
        let err = Config::from_yaml("f", &format!("auth_service:\n  web_idle_timeout: {bad}\n"))
            .unwrap_err();
        assert_eq!(
            err.field_path(),
            Some("auth_service.web_idle_timeout"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn webauthn_needs_an_rp_id_which_defaults_to_the_proxy_public_host() {
    // OTP (the default): no WebAuthn, whatever the proxy says.
    let c = parse("auth_service: {}\nproxy_service: {public_addr: jumpgate.example.com:443}\n");
    assert_eq!(c.auth_service.authentication.webauthn, None);
    assert!(c.auth_service.authentication.passwordless);
    for policy in ["webauthn", "on", "optional"] {
        let c = parse(&format!(
            "auth_service: {{authentication: {{second_factor: {policy}}}}}\n\
             proxy_service: {{public_addr: [Jumpgate.Example.com:443, other.example.com:443]}}\n"
        ));
        assert_eq!(
            c.auth_service.authentication.webauthn,
            Some(Webauthn {
                rp_id: "jumpgate.example.com".to_string()
            }),
            "{policy}"
        );
    }
    let c = parse(
        "auth_service:\n  authentication:\n    second_factor: on\n    passwordless: false\n    \
         webauthn: {rp_id: example.com}\n",
    );
    assert_eq!(
        c.auth_service.authentication.webauthn,
        Some(Webauthn {
            rp_id: "example.com".to_string()
        })
    );
    assert!(!c.auth_service.authentication.passwordless);
    // Auth alone, or a proxy without a public address: say which field to set.
    for yaml in [
        "auth_service: {authentication: {second_factor: webauthn}}\n",
        "auth_service: {authentication: {second_factor: on}}\nproxy_service: {}\n",
        "auth_service: {authentication: {second_factor: on, webauthn: {rp_id: 10.0.0.1}}}\n",
        "auth_service: {authentication: {second_factor: on, webauthn: {rp_id: 'a b'}}}\n",
        "auth_service: {authentication: {second_factor: on}}\nproxy_service: {public_addr: 127.0.0.1:443}\n",
    ] {
        let err = Config::from_yaml("t.yaml", yaml).unwrap_err();
        assert!(
            err.to_string()
                .contains("auth_service.authentication.webauthn.rp_id"),
            "{yaml}: {err}"
        );
    }
    let err = Config::from_yaml(
        "t.yaml",
        "auth_service: {authentication: {webauthn: {rp_id: a.example, attestation_allowed_cas: []}}}\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("attestation_allowed_cas"), "{err}");
}

#[test]
fn second_factor_keywords_say_which_factors_they_allow() {
    use SecondFactor::*;
    let allows = |f: SecondFactor| (f.allows_otp(), f.allows_webauthn());
    assert_eq!(allows(Off), (false, false));
    assert_eq!(allows(Otp), (true, false));
    assert_eq!(allows(Webauthn), (false, true));
    assert_eq!(allows(On), (true, true));
    assert_eq!(allows(Optional), (true, true));
}
