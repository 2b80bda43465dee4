//! The `jumpgate` daemon's configuration file (`/etc/jumpgate.yaml`).
//!
//! The layout is Teleport's v3 file with `teleport:` renamed `jumpgate:`, so that the configs in
//! the seed documents work as written. [`Config::from_yaml`] parses and validates in one step;
//! its result is plain typed structs with defaults applied. `docs/config.md` is the reference.
//!
//! One rule differs from Teleport on purpose: **a service section that is present is enabled**
//! unless it says `enabled: no`, and an absent section is disabled (Teleport runs every service
//! unless told not to). So an agent's config that mentions only `ssh_service` runs only the
//! agent, as the seed's agent snippet means.
//!
//! Parsing happens in three steps, each with its own kind of error:
//! 1. YAML text to a [`serde_norway::Value`]: syntax errors, with line and column; an empty or
//!    non-mapping document; checks that need the raw document (`teleport:`, `storage.type`).
//! 2. That value to the `raw` structs via `serde_path_to_error`: unknown keys (with a "did
//!    you mean" hint), wrong types and malformed scalars, each with the field's path.
//! 3. `validate`: defaults and cross-field rules, into [`Config`].

pub(crate) mod error;
mod raw;
mod sample;
mod sections;
mod sessions_uri;
mod validate;
pub(crate) mod values;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use serde_norway::Value;

use error::Invalid;
pub use error::{ConfigError, Location};
pub use sample::sample_config;
pub use sections::*;
pub use sessions_uri::{S3_PARAMETERS, S3Sessions, SessionsStore, SessionsUri};
pub use values::{HostPort, Secret, ServerAddrs, ValueError, parse_duration};

/// A validated `jumpgate` configuration: what this host runs and how.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// The file layout version.
    pub version: ConfigVersion,
    /// Settings shared by all services on this host (`jumpgate:`).
    pub jumpgate: GlobalConfig,
    /// The auth service (CA and cluster state).
    pub auth_service: AuthServiceConfig,
    /// The proxy service (the public endpoint).
    pub proxy_service: ProxyServiceConfig,
    /// The SSH agent.
    pub ssh_service: SshServiceConfig,
}

impl Config {
    /// Parses and fully validates a YAML config. `source_name` is the file path used in error
    /// messages; the text is read by the caller (this crate does no I/O).
    pub fn from_yaml(source_name: &str, text: &str) -> Result<Config, ConfigError> {
        let value = parse_document(source_name, text)?;
        precheck(&value).map_err(|e| e.into_error(source_name))?;
        let raw: raw::RawConfig = serde_path_to_error::deserialize(value)
            .map_err(|e| error::from_serde(e).into_error(source_name))?;
        raw.validate().map_err(|e| e.into_error(source_name))
    }

    /// The config `jumpgate start --dev --data-dir DIR` runs: auth, proxy and ssh on localhost
    /// with default ports, the agent reachable only through its reverse tunnel, SQLite storage
    /// in `data_dir`, text logs at info to stderr, diagnostics on 127.0.0.1:3000, cluster `dev`,
    /// TOTP as second factor.
    pub fn dev(data_dir: PathBuf) -> Config {
        let local = |port| HostPort::new("127.0.0.1", port);
        Config {
            version: ConfigVersion::V3,
            jumpgate: GlobalConfig {
                data_dir,
                storage: StorageConfig {
                    backend: StorageBackend::Sqlite { path: None },
                    ..StorageConfig::default()
                },
                log: LogConfig {
                    output: LogOutput::Stderr,
                    severity: LogSeverity::Info,
                    format: LogFormat::Text,
                    extra_fields: Vec::new(),
                },
                diag_addr: Some(local(3000)),
                ..GlobalConfig::default()
            },
            auth_service: AuthServiceConfig {
                enabled: true,
                cluster_name: Some("dev".to_owned()),
                listen_addr: local(DEFAULT_AUTH_PORT),
                authentication: Authentication {
                    kind: AuthType::Local,
                    second_factor: SecondFactor::Otp,
                    ..Authentication::default()
                },
                ..AuthServiceConfig::default()
            },
            proxy_service: ProxyServiceConfig {
                enabled: true,
                web_listen_addr: local(DEFAULT_PROXY_WEB_PORT),
                peer_listen_addr: local(DEFAULT_PROXY_PEER_PORT),
                ..ProxyServiceConfig::default()
            },
            ssh_service: SshServiceConfig {
                enabled: true,
                listen_addr: None,
                ..SshServiceConfig::default()
            },
        }
    }
}

/// Step 1: YAML syntax, and a document that is a non-empty mapping.
fn parse_document(source_name: &str, text: &str) -> Result<Value, ConfigError> {
    let document = |reason: &str| ConfigError::Document {
        source_name: source_name.to_owned(),
        reason: reason.to_owned(),
    };
    let syntax = |e: serde_norway::Error| {
        let (location, reason) = error::yaml_syntax(&e);
        ConfigError::Syntax {
            source_name: source_name.to_owned(),
            location,
            reason,
        }
    };
    const EMPTY: &str = "the config is empty; it needs at least one of the sections \
                         jumpgate, auth_service, proxy_service, ssh_service \
                         (`jumpgate configure` prints a sample)";
    let mut value: Value = serde_norway::from_str(text).map_err(syntax)?;
    // `<<: *anchor` merge keys, so configs may share blocks with YAML anchors.
    value.apply_merge().map_err(syntax)?;
    match &value {
        Value::Null => Err(document(EMPTY)),
        Value::Mapping(m) if m.is_empty() => Err(document(EMPTY)),
        Value::Mapping(_) => Ok(value),
        _ => Err(document(
            "expected a mapping of sections (version, jumpgate, auth_service, proxy_service, \
             ssh_service) at the top level",
        )),
    }
}

/// Checks that need the document before it is typed.
fn precheck(value: &Value) -> Result<(), Invalid> {
    if value.get("teleport").is_some() {
        return Err(Invalid::new(
            "teleport",
            "unknown key `teleport`; did you mean `jumpgate`? \
             (Jumpgate reads Teleport's v3 layout with this one section renamed)",
        ));
    }
    // An unsupported storage type must be reported as such, before its own keys (firestore's
    // `project_id`, say) would be reported as unknown.
    let kind = value
        .get("jumpgate")
        .and_then(|g| g.get("storage"))
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str);
    if let Some(kind) = kind {
        validate::storage_kind(kind).map_err(|r| Invalid::new("jumpgate.storage.type", r))?;
    }
    Ok(())
}
