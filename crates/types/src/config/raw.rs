//! The file as written: serde structs that mirror the YAML one to one, with every field optional
//! and unknown keys refused (`deny_unknown_fields`). `validate.rs` turns them into the typed
//! [`Config`](super::Config), applying defaults and cross-field checks. Keeping the two apart
//! lets the typed config have no `Option` where a default exists, and lets the file accept
//! Teleport's alternative spellings without leaking them into the daemon.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::sections::{
    AuthType, ConfigVersion, JoinMethod, KeyPair, LogFormat, LogSeverity, ProxyListenerMode,
    SecondFactor, SessionRecording,
};
use super::values::{
    FlexBool, HostPort, OneOrMany, ScalarString, Secret, ServerAddrs, WordOrMap, duration,
    empty_as_none, present, servers_or_none,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawConfig {
    pub version: Option<ConfigVersion>,
    pub jumpgate: Option<RawGlobal>,
    #[serde(default, deserialize_with = "present")]
    pub auth_service: Option<RawAuth>,
    #[serde(default, deserialize_with = "present")]
    pub proxy_service: Option<RawProxy>,
    #[serde(default, deserialize_with = "present")]
    pub ssh_service: Option<RawSsh>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawGlobal {
    pub nodename: Option<String>,
    pub data_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "servers_or_none")]
    pub auth_server: Option<ServerAddrs>,
    #[serde(default, deserialize_with = "servers_or_none")]
    pub proxy_server: Option<ServerAddrs>,
    pub auth_token: Option<Secret>,
    pub join_params: Option<RawJoinParams>,
    pub ca_pin: Option<OneOrMany<String>>,
    pub storage: Option<RawStorage>,
    pub log: Option<RawLog>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub diag_addr: Option<HostPort>,
    pub kex_algos: Option<OneOrMany<String>>,
    pub ciphers: Option<OneOrMany<String>>,
    pub mac_algos: Option<OneOrMany<String>>,
    // Service sections indented under `jumpgate:` by mistake, as in seed 004's agent snippet;
    // read as if they were at the top level.
    #[serde(default, deserialize_with = "present")]
    pub auth_service: Option<RawAuth>,
    #[serde(default, deserialize_with = "present")]
    pub proxy_service: Option<RawProxy>,
    #[serde(default, deserialize_with = "present")]
    pub ssh_service: Option<RawSsh>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawJoinParams {
    pub method: Option<JoinMethod>,
    pub token_name: Secret,
}

/// One flat struct for every storage type, because that is how the YAML looks
/// (`type` beside the type's own keys); `validate.rs` refuses keys of another type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawStorage {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    // sqlite
    pub path: Option<PathBuf>,
    // etcd
    pub peers: Option<OneOrMany<String>>,
    pub prefix: Option<String>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub insecure: Option<FlexBool>,
    // postgresql (also password_file and the tls_* files above)
    pub conn_string: Option<String>,
    // dynamodb (Teleport's names)
    pub region: Option<String>,
    pub table_name: Option<String>,
    pub endpoint: Option<String>,
    pub billing_mode: Option<String>,
    pub read_capacity_units: Option<i64>,
    pub write_capacity_units: Option<i64>,
    // any type
    pub audit_events_uri: Option<OneOrMany<String>>,
    pub audit_sessions_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawLog {
    pub output: Option<String>,
    pub severity: Option<LogSeverity>,
    pub format: Option<WordOrMap<LogFormat, RawLogFormat>>,
}

/// Teleport's mapping form: `format: {output: json, extra_fields: [level, timestamp]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawLogFormat {
    pub output: Option<LogFormat>,
    pub extra_fields: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawAuth {
    pub enabled: Option<FlexBool>,
    pub cluster_name: Option<ScalarString>,
    pub listen_addr: Option<HostPort>,
    pub public_addr: Option<OneOrMany<HostPort>>,
    pub tokens: Option<OneOrMany<String>>,
    pub authentication: Option<RawAuthentication>,
    pub session_recording: Option<SessionRecording>,
    pub proxy_listener_mode: Option<ProxyListenerMode>,
    pub tunnel_strategy: Option<RawTunnelStrategy>,
    pub web_idle_timeout: Option<ScalarString>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawAuthentication {
    #[serde(rename = "type")]
    pub kind: Option<AuthType>,
    pub connector_name: Option<String>,
    pub local_auth: Option<FlexBool>,
    pub second_factor: Option<SecondFactor>,
    pub webauthn: Option<RawWebauthn>,
    pub passwordless: Option<FlexBool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawWebauthn {
    pub rp_id: Option<ScalarString>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawTunnelStrategy {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub agent_connection_count: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawProxy {
    pub enabled: Option<FlexBool>,
    pub web_listen_addr: Option<HostPort>,
    pub public_addr: Option<OneOrMany<HostPort>>,
    pub peer_listen_addr: Option<HostPort>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub peer_public_addr: Option<HostPort>,
    pub https_keypairs: Option<Vec<KeyPair>>,
    pub proxy_protocol: Option<FlexBool>,
    pub proxy_protocol_trusted_cidrs: Option<OneOrMany<String>>,
    pub max_unauthenticated_per_source: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawSsh {
    pub enabled: Option<FlexBool>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub listen_addr: Option<HostPort>,
    pub labels: Option<BTreeMap<String, ScalarString>>,
    pub commands: Option<Vec<RawCommand>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping")]
pub(super) struct RawCommand {
    pub name: String,
    pub command: Vec<String>,
    #[serde(deserialize_with = "duration")]
    pub period: Duration,
}
