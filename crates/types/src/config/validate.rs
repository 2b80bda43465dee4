//! From the file as written ([`raw`](super::raw)) to the typed [`Config`]: defaults, the forms
//! serde cannot check alone, and cross-field rules. Every error names the field by its path in
//! the file. Rules here refuse only what is certainly wrong; a config that is merely incomplete
//! for this host (a proxy with nowhere to find auth, say) is left for the daemon to report at
//! start, so that partial snippets such as those in the seed documents still parse.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Config;
use super::error::{Invalid, join};
use super::raw::{
    RawAuth, RawAuthentication, RawConfig, RawGlobal, RawLog, RawProxy, RawSsh, RawStorage,
    RawTunnelStrategy,
};
use super::sections::{
    AuthServiceConfig, AuthType, Authentication, CommandLabel, DEFAULT_DYNAMO_CAPACITY_UNITS,
    DEFAULT_ETCD_PREFIX, DynamoBillingMode, DynamoConfig, EtcdConfig, GlobalConfig, JoinParams,
    JoinRole, LOG_EXTRA_FIELDS, LogConfig, LogOutput, PostgresConfig, ProxyServiceConfig,
    SshAlgorithms, SshServiceConfig, StaticToken, StorageBackend, StorageConfig, TunnelStrategy,
    Webauthn,
};
use super::values::{OneOrMany, Secret, ValueError, WordOrMap, parse_duration};

impl RawConfig {
    pub(super) fn validate(self) -> Result<Config, Invalid> {
        let mut global = self.jumpgate.unwrap_or_default();
        let (auth, auth_path) = pick(
            "auth_service",
            self.auth_service,
            global.auth_service.take(),
        )?;
        let (proxy, _) = pick(
            "proxy_service",
            self.proxy_service,
            global.proxy_service.take(),
        )?;
        let (ssh, ssh_path) = pick("ssh_service", self.ssh_service, global.ssh_service.take())?;

        let config = Config {
            version: self.version.unwrap_or_default(),
            jumpgate: validate_global(global)?,
            auth_service: match auth {
                Some(raw) => validate_auth(raw, &auth_path)?,
                None => AuthServiceConfig::default(),
            },
            proxy_service: match proxy {
                Some(raw) => validate_proxy(raw)?,
                None => ProxyServiceConfig::default(),
            },
            ssh_service: match ssh {
                Some(raw) => validate_ssh(raw, &ssh_path)?,
                None => SshServiceConfig::default(),
            },
        };
        check_joining(&config)?;
        let mut config = config;
        decide_rp_id(&mut config, &auth_path)?;
        Ok(config)
    }
}

/// A WebAuthn relying party ID: a domain name (browsers refuse IP addresses), lower case.
fn valid_rp_id(text: &str) -> Result<String, String> {
    let rp_id = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if rp_id.is_empty() || rp_id.len() > 253 || !rp_id.split('.').all(label_ok) {
        return Err(format!(
            "expected a domain name such as jumpgate.example.com (the host users type), got {text:?}"
        ));
    }
    if rp_id.parse::<std::net::IpAddr>().is_ok()
        || rp_id
            .split('.')
            .all(|label| label.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "{text:?} is an IP address; browsers accept only a domain name as a WebAuthn \
             relying party ID (give the proxy a DNS name, or use localhost on one machine)"
        ));
    }
    Ok(rp_id)
}

/// With a second factor that allows security keys, the relying party ID must be known:
/// the configured one, else the host of this config's proxy `public_addr`.
fn decide_rp_id(config: &mut Config, auth_path: &str) -> Result<(), Invalid> {
    let auth = &mut config.auth_service;
    if !auth.enabled || !auth.authentication.second_factor.allows_webauthn() {
        auth.authentication.webauthn = None;
        return Ok(());
    }
    if auth.authentication.webauthn.is_some() {
        return Ok(());
    }
    let field = join(
        &join(&join(auth_path, "authentication"), "webauthn"),
        "rp_id",
    );
    let proxy = &config.proxy_service;
    let Some(public) = proxy.public_addr.first().filter(|_| proxy.enabled) else {
        return Err(Invalid::new(
            field,
            format!(
                "second_factor: {} uses security keys, which are registered for a domain: set \
                 webauthn.rp_id to the proxy's public host name (or run the proxy in this \
                 config with a public_addr)",
                auth.authentication.second_factor
            ),
        ));
    };
    let rp_id = valid_rp_id(&public.host).map_err(|reason| {
        Invalid::new(
            field,
            format!("the default, proxy_service.public_addr's host, is not usable: {reason}"),
        )
    })?;
    auth.authentication.webauthn = Some(Webauthn { rp_id });
    Ok(())
}

/// Chooses between a top-level service section and one nested under `jumpgate:`, returning it
/// with the path it was found at.
fn pick<T>(name: &str, top: Option<T>, nested: Option<T>) -> Result<(Option<T>, String), Invalid> {
    match (top, nested) {
        (Some(_), Some(_)) => Err(Invalid::new(
            join("jumpgate", name),
            format!(
                "`{name}` is given both at the top level and nested under `jumpgate:`; \
                 keep only the top-level one"
            ),
        )),
        (Some(top), None) => Ok((Some(top), name.to_owned())),
        (None, nested) => Ok((nested, join("jumpgate", name))),
    }
}

/// A host that runs an agent but no auth service must know where to join.
fn check_joining(config: &Config) -> Result<(), Invalid> {
    let global = &config.jumpgate;
    if config.ssh_service.enabled
        && !config.auth_service.enabled
        && global.auth_server.is_none()
        && global.proxy_server.is_none()
    {
        return Err(Invalid::new(
            "jumpgate.proxy_server",
            "an ssh_service without a local auth_service needs proxy_server or auth_server",
        ));
    }
    Ok(())
}

/// The path of item `index` of a list that may have been written as a single string.
fn item_path(base: &str, index: usize, total: usize) -> String {
    if total == 1 {
        base.to_owned()
    } else {
        format!("{base}[{index}]")
    }
}

fn non_empty(path: &str, value: &str) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        Err(Invalid::new(path, "must not be empty"))
    } else {
        Ok(())
    }
}

fn validate_global(raw: RawGlobal) -> Result<GlobalConfig, Invalid> {
    const P: &str = "jumpgate";
    let defaults = GlobalConfig::default();
    if let Some(name) = &raw.nodename {
        non_empty(&join(P, "nodename"), name)?;
    }
    let data_dir = raw.data_dir.unwrap_or(defaults.data_dir);
    if data_dir.as_os_str().is_empty() {
        return Err(Invalid::new(join(P, "data_dir"), "must not be empty"));
    }
    if raw.auth_server.is_some() && raw.proxy_server.is_some() {
        return Err(Invalid::new(
            join(P, "proxy_server"),
            "set either auth_server or proxy_server, not both \
             (agents usually join through proxy_server)",
        ));
    }
    if raw.auth_token.is_some() && raw.join_params.is_some() {
        return Err(Invalid::new(
            join(P, "join_params"),
            "set either auth_token or join_params, not both",
        ));
    }
    let join_params = raw.join_params.map(|p| JoinParams {
        method: p.method.unwrap_or_default(),
        token_name: p.token_name,
    });

    let pins = raw.ca_pin.map(|p| p.0).unwrap_or_default();
    // `teleport configure` writes `ca_pin: ""` for "no pin".
    let pins: Vec<String> = pins.into_iter().filter(|p| !p.trim().is_empty()).collect();
    for (i, pin) in pins.iter().enumerate() {
        check_ca_pin(pin)
            .map_err(|r| Invalid::new(item_path(&join(P, "ca_pin"), i, pins.len()), r))?;
    }

    Ok(GlobalConfig {
        nodename: raw.nodename,
        data_dir,
        auth_server: raw.auth_server,
        proxy_server: raw.proxy_server,
        auth_token: raw.auth_token,
        join_params,
        ca_pin: pins,
        storage: match raw.storage {
            Some(s) => validate_storage(s, &join(P, "storage"))?,
            None => StorageConfig::default(),
        },
        log: match raw.log {
            Some(l) => validate_log(l, &join(P, "log"))?,
            None => LogConfig::default(),
        },
        diag_addr: raw.diag_addr,
        ssh_algorithms: SshAlgorithms {
            kex: algorithms(
                raw.kex_algos,
                &join(P, "kex_algos"),
                SshAlgorithms::SUPPORTED_KEX,
            )?,
            ciphers: algorithms(
                raw.ciphers,
                &join(P, "ciphers"),
                SshAlgorithms::SUPPORTED_CIPHERS,
            )?,
            macs: algorithms(
                raw.mac_algos,
                &join(P, "mac_algos"),
                SshAlgorithms::SUPPORTED_MACS,
            )?,
        },
    })
}

/// An SSH algorithm list: not empty, every name one Jumpgate supports (with a "did you
/// mean" for a near miss).
fn algorithms(
    raw: Option<OneOrMany<String>>,
    path: &str,
    supported: &[&str],
) -> Result<Option<Vec<String>>, Invalid> {
    let Some(OneOrMany(names)) = raw else {
        return Ok(None);
    };
    if names.is_empty() {
        return Err(Invalid::new(
            path,
            format!(
                "must name at least one algorithm, e.g. {}",
                supported.join(", ")
            ),
        ));
    }
    for (i, name) in names.iter().enumerate() {
        if !supported.contains(&name.as_str()) {
            let near = supported
                .iter()
                .find(|known| strsim::jaro_winkler(known, name) > 0.85)
                .map(|known| format!(" (did you mean {known}?)"))
                .unwrap_or_default();
            return Err(Invalid::new(
                item_path(path, i, names.len()),
                format!(
                    "{name:?} is not an algorithm Jumpgate offers{near}; supported: {}",
                    supported.join(", ")
                ),
            ));
        }
    }
    Ok(Some(names))
}

fn check_ca_pin(pin: &str) -> Result<(), String> {
    let ok = pin
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a CA pin of the form sha256:<64 hex digits>, got {pin:?}"
        ))
    }
}

/// The storage types we support, by every name we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StorageKind {
    Sqlite,
    Etcd,
    Postgres,
    Dynamo,
    Memory,
}

impl StorageKind {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Etcd => "etcd",
            Self::Postgres => "postgresql",
            Self::Dynamo => "dynamodb",
            Self::Memory => "memory",
        }
    }
}

/// Parses `storage.type`. Also used before deserializing, so that a Teleport config for an
/// unsupported backend is told so, rather than about that backend's unknown keys.
pub(super) fn storage_kind(s: &str) -> Result<StorageKind, String> {
    match s.to_ascii_lowercase().as_str() {
        // `dir` is Teleport's name for its embedded SQLite store.
        "sqlite" | "dir" => Ok(StorageKind::Sqlite),
        "etcd" => Ok(StorageKind::Etcd),
        // `postgresql` is Teleport's name; `postgres` is what people type.
        "postgresql" | "postgres" => Ok(StorageKind::Postgres),
        "dynamodb" => Ok(StorageKind::Dynamo),
        "memory" => Ok(StorageKind::Memory),
        _ => Err(format!(
            "{s:?} is not supported; use one of sqlite, etcd, postgresql, dynamodb, memory"
        )),
    }
}

fn validate_storage(raw: RawStorage, path: &str) -> Result<StorageConfig, Invalid> {
    let explicit = raw.kind.is_some();
    let kind = match &raw.kind {
        Some(k) => storage_kind(k).map_err(|r| Invalid::new(join(path, "type"), r))?,
        None => StorageKind::Sqlite,
    };

    // Keys that belong to some storage types only.
    use StorageKind::{Dynamo, Etcd, Postgres, Sqlite};
    let owned: [(&str, bool, &[StorageKind]); 16] = [
        ("path", raw.path.is_some(), &[Sqlite]),
        ("peers", raw.peers.is_some(), &[Etcd]),
        ("prefix", raw.prefix.is_some(), &[Etcd]),
        (
            "tls_cert_file",
            raw.tls_cert_file.is_some(),
            &[Etcd, Postgres],
        ),
        (
            "tls_key_file",
            raw.tls_key_file.is_some(),
            &[Etcd, Postgres],
        ),
        ("tls_ca_file", raw.tls_ca_file.is_some(), &[Etcd, Postgres]),
        ("username", raw.username.is_some(), &[Etcd]),
        (
            "password_file",
            raw.password_file.is_some(),
            &[Etcd, Postgres],
        ),
        ("insecure", raw.insecure.is_some(), &[Etcd]),
        ("conn_string", raw.conn_string.is_some(), &[Postgres]),
        ("region", raw.region.is_some(), &[Dynamo]),
        ("table_name", raw.table_name.is_some(), &[Dynamo]),
        ("endpoint", raw.endpoint.is_some(), &[Dynamo]),
        ("billing_mode", raw.billing_mode.is_some(), &[Dynamo]),
        (
            "read_capacity_units",
            raw.read_capacity_units.is_some(),
            &[Dynamo],
        ),
        (
            "write_capacity_units",
            raw.write_capacity_units.is_some(),
            &[Dynamo],
        ),
    ];
    for (key, given, owners) in owned {
        if given && !owners.contains(&kind) {
            let names: Vec<&str> = owners.iter().map(|owner| owner.name()).collect();
            let hint = match (explicit, owners.first()) {
                (false, Some(owner)) => format!(" (the default; add `type: {}`)", owner.name()),
                _ => String::new(),
            };
            return Err(Invalid::new(
                join(path, key),
                format!(
                    "`{key}` is for storage type {}, not {}{hint}",
                    names.join(" or "),
                    kind.name()
                ),
            ));
        }
    }

    let backend = match kind {
        StorageKind::Sqlite => StorageBackend::Sqlite { path: raw.path },
        StorageKind::Memory => StorageBackend::Memory,
        StorageKind::Etcd => StorageBackend::Etcd(validate_etcd(&raw, path)?),
        StorageKind::Postgres => StorageBackend::Postgres(validate_postgres(&raw, path)?),
        StorageKind::Dynamo => StorageBackend::Dynamo(validate_dynamo(&raw, path)?),
    };

    let events = raw.audit_events_uri.map(|u| u.0).unwrap_or_default();
    for (i, uri) in events.iter().enumerate() {
        check_uri(uri).map_err(|r| {
            Invalid::new(
                item_path(&join(path, "audit_events_uri"), i, events.len()),
                r,
            )
        })?;
    }
    let audit_sessions_uri = raw
        .audit_sessions_uri
        .as_deref()
        .map(super::SessionsUri::parse)
        .transpose()
        .map_err(|r| Invalid::new(join(path, "audit_sessions_uri"), r))?;
    Ok(StorageConfig {
        backend,
        audit_events_uri: events,
        audit_sessions_uri,
    })
}

fn check_uri(uri: &str) -> Result<(), String> {
    let ok = uri.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            && !rest.is_empty()
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a URI such as file:///var/lib/jumpgate/log, got {uri:?}"
        ))
    }
}

fn validate_etcd(raw: &RawStorage, path: &str) -> Result<EtcdConfig, Invalid> {
    let peers = raw.peers.clone().map(|p| p.0).unwrap_or_default();
    if peers.is_empty() {
        return Err(Invalid::new(
            join(path, "peers"),
            "is required for storage type etcd: list the etcd members, e.g. \
             [\"https://etcd1.example.com:2379\"]",
        ));
    }
    for (i, peer) in peers.iter().enumerate() {
        check_etcd_peer(peer)
            .map_err(|r| Invalid::new(item_path(&join(path, "peers"), i, peers.len()), r))?;
    }
    pair(
        path,
        ("tls_cert_file", raw.tls_cert_file.is_some()),
        ("tls_key_file", raw.tls_key_file.is_some()),
    )?;
    pair(
        path,
        ("username", raw.username.is_some()),
        ("password_file", raw.password_file.is_some()),
    )?;
    if let Some(user) = &raw.username {
        non_empty(&join(path, "username"), user)?;
    }
    Ok(EtcdConfig {
        peers,
        prefix: raw
            .prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_ETCD_PREFIX.to_owned()),
        tls_cert_file: raw.tls_cert_file.clone(),
        tls_key_file: raw.tls_key_file.clone(),
        tls_ca_file: raw.tls_ca_file.clone(),
        username: raw.username.clone(),
        password_file: raw.password_file.clone(),
        insecure: raw.insecure.is_some_and(|b| b.0),
    })
}

fn validate_postgres(raw: &RawStorage, path: &str) -> Result<PostgresConfig, Invalid> {
    let conn_path = join(path, "conn_string");
    let Some(conn_string) = raw.conn_string.clone() else {
        return Err(Invalid::new(
            conn_path,
            "is required for storage type postgresql, e.g. \
             \"postgresql://jumpgate@db1:5432,db2:5432/jumpgate?target_session_attrs=read-write\"",
        ));
    };
    check_pg_conn_string(&conn_string).map_err(|r| Invalid::new(&conn_path, r))?;
    for (key, given) in [
        ("tls_ca_file", raw.tls_ca_file.is_some()),
        ("tls_cert_file", raw.tls_cert_file.is_some()),
        ("tls_key_file", raw.tls_key_file.is_some()),
    ] {
        if given {
            return Err(Invalid::new(
                join(path, key),
                "is for storage type etcd; for postgresql, put libpq's TLS parameters in \
                 conn_string: sslmode=verify-full&sslrootcert=FILE (and sslcert=FILE&sslkey=FILE \
                 for a client certificate)",
            ));
        }
    }
    Ok(PostgresConfig {
        conn_string,
        password_file: raw.password_file.clone(),
    })
}

fn validate_dynamo(raw: &RawStorage, path: &str) -> Result<DynamoConfig, Invalid> {
    let region_path = join(path, "region");
    let Some(region) = raw.region.clone() else {
        return Err(Invalid::new(
            region_path,
            "is required for storage type dynamodb: the AWS region of the table, e.g. us-east-1",
        ));
    };
    let region_ok = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !region_ok {
        return Err(Invalid::new(
            region_path,
            format!("expected an AWS region such as us-east-1, got {region:?}"),
        ));
    }
    let table_path = join(path, "table_name");
    let Some(table_name) = raw.table_name.clone() else {
        return Err(Invalid::new(
            table_path,
            "is required for storage type dynamodb: the table for the cluster state, e.g. \
             jumpgate-backend (created if missing)",
        ));
    };
    // DynamoDB's own rule for table names.
    let table_ok = (3..=255).contains(&table_name.len())
        && table_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if !table_ok {
        return Err(Invalid::new(
            table_path,
            format!(
                "{table_name:?} is not a DynamoDB table name: 3 to 255 characters among \
                 a-z, A-Z, 0-9, '_', '-' and '.'"
            ),
        ));
    }
    if let Some(endpoint) = &raw.endpoint {
        let host = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"));
        if host.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
            return Err(Invalid::new(
                join(path, "endpoint"),
                format!(
                    "expected an http:// or https:// URL such as http://localhost:8000, got \
                     {endpoint:?}"
                ),
            ));
        }
    }
    let mode = raw.billing_mode.as_deref().map(str::to_ascii_lowercase);
    let billing = match mode.as_deref() {
        None | Some("pay_per_request") => {
            for (key, given) in [
                ("read_capacity_units", raw.read_capacity_units.is_some()),
                ("write_capacity_units", raw.write_capacity_units.is_some()),
            ] {
                if given {
                    return Err(Invalid::new(
                        join(path, key),
                        "only applies with billing_mode: provisioned",
                    ));
                }
            }
            DynamoBillingMode::PayPerRequest
        }
        Some("provisioned") => {
            let units = |key: &str, value: Option<i64>| match value {
                None => Ok(DEFAULT_DYNAMO_CAPACITY_UNITS),
                Some(n) if n >= 1 => Ok(n),
                Some(n) => Err(Invalid::new(
                    join(path, key),
                    format!("must be a whole number of capacity units, at least 1, got {n}"),
                )),
            };
            DynamoBillingMode::Provisioned {
                read_capacity_units: units("read_capacity_units", raw.read_capacity_units)?,
                write_capacity_units: units("write_capacity_units", raw.write_capacity_units)?,
            }
        }
        Some(_) => {
            return Err(Invalid::new(
                join(path, "billing_mode"),
                format!(
                    "{:?} is not a billing mode; use pay_per_request or provisioned",
                    raw.billing_mode.as_deref().unwrap_or_default()
                ),
            ));
        }
    };
    Ok(DynamoConfig {
        region,
        table_name,
        endpoint: raw.endpoint.clone(),
        billing,
    })
}

/// A libpq connection string in URL or `key=value` form. Only what is certainly wrong is
/// refused here; the driver parses the rest when the backend connects.
fn check_pg_conn_string(conn: &str) -> Result<(), String> {
    let lower = conn.trim().to_ascii_lowercase();
    let url = lower.starts_with("postgresql://") || lower.starts_with("postgres://");
    if !url && !lower.contains('=') {
        return Err("expected a PostgreSQL connection string, as a URL \
             (postgresql://user@host:5432/db?target_session_attrs=read-write) or as \
             key=value pairs (host=db1,db2 user=jumpgate dbname=jumpgate)"
            .to_owned());
    }
    Ok(())
}

/// Two settings that only make sense together; the error names the missing one.
fn pair(path: &str, a: (&str, bool), b: (&str, bool)) -> Result<(), Invalid> {
    let missing = match (a.1, b.1) {
        (true, false) => Some((b.0, a.0)),
        (false, true) => Some((a.0, b.0)),
        _ => None,
    };
    match missing {
        Some((missing, given)) => Err(Invalid::new(
            join(path, missing),
            format!("is required when {given} is set"),
        )),
        None => Ok(()),
    }
}

fn check_etcd_peer(peer: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "expected an http:// or https:// URL with host:port, such as \
             https://etcd1.example.com:2379, got {peer:?}"
        )
    };
    let lower = peer.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        peer.get("https://".len()..)
    } else if lower.starts_with("http://") {
        peer.get("http://".len()..)
    } else {
        None
    };
    let rest = rest.ok_or_else(bad)?;
    let host_port = rest.strip_suffix('/').unwrap_or(rest);
    host_port
        .parse::<super::values::HostPort>()
        .map(|_| ())
        .map_err(|_| bad())
}

fn validate_log(raw: RawLog, path: &str) -> Result<LogConfig, Invalid> {
    let output = match raw.output.as_deref().map(str::trim) {
        None => LogOutput::Stderr,
        Some(o) if o.eq_ignore_ascii_case("stderr") => LogOutput::Stderr,
        Some(o) if o.eq_ignore_ascii_case("stdout") => LogOutput::Stdout,
        Some(o) if o.eq_ignore_ascii_case("syslog") => {
            return Err(Invalid::new(
                join(path, "output"),
                "syslog is not supported; use stderr, stdout or a file path",
            ));
        }
        Some("") => return Err(Invalid::new(join(path, "output"), "must not be empty")),
        Some(file) => LogOutput::File(PathBuf::from(file)),
    };
    let (format, extra_fields) = match raw.format {
        None => Default::default(),
        Some(WordOrMap::Word(format)) => (format, Vec::new()),
        Some(WordOrMap::Map(map)) => {
            let fields = map.extra_fields.unwrap_or_default();
            for (i, field) in fields.iter().enumerate() {
                if !LOG_EXTRA_FIELDS.contains(&field.as_str()) {
                    return Err(Invalid::new(
                        format!("{}[{i}]", join(path, "format.extra_fields")),
                        format!(
                            "expected one of {}, got {field:?}",
                            LOG_EXTRA_FIELDS.join(", ")
                        ),
                    ));
                }
            }
            (map.output.unwrap_or_default(), fields)
        }
    };
    Ok(LogConfig {
        output,
        severity: raw.severity.unwrap_or_default(),
        format,
        extra_fields,
    })
}

fn validate_auth(raw: RawAuth, path: &str) -> Result<AuthServiceConfig, Invalid> {
    let defaults = AuthServiceConfig::default();
    let cluster_name = raw.cluster_name.map(|n| n.0);
    if let Some(name) = &cluster_name {
        let ok = !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '/');
        if !ok {
            return Err(Invalid::new(
                join(path, "cluster_name"),
                format!(
                    "expected a name without spaces or slashes, such as example.com, got {name:?}"
                ),
            ));
        }
    }
    let tokens = raw.tokens.map(|t| t.0).unwrap_or_default();
    let tokens = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            parse_static_token(t)
                .map_err(|r| Invalid::new(format!("{}[{i}]", join(path, "tokens")), r))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let authentication = match raw.authentication {
        None => Authentication::default(),
        Some(a) => validate_authentication(a, &join(path, "authentication"))?,
    };
    let tunnel_strategy = match raw.tunnel_strategy {
        Some(t) => validate_tunnel_strategy(t, &join(path, "tunnel_strategy"))?,
        None => TunnelStrategy::default(),
    };
    let web_idle_timeout = match raw.web_idle_timeout {
        None => defaults.web_idle_timeout,
        Some(text) => {
            let field = join(path, "web_idle_timeout");
            let timeout = parse_duration(&text.0).map_err(|r| Invalid::new(field.clone(), r))?;
            if timeout.is_zero() || timeout > std::time::Duration::from_secs(24 * 3600) {
                return Err(Invalid::new(
                    field,
                    format!("between 1s and 24h (the default is 10m), got {:?}", text.0),
                ));
            }
            timeout
        }
    };
    Ok(AuthServiceConfig {
        enabled: raw.enabled.is_none_or(|b| b.0),
        cluster_name,
        listen_addr: raw.listen_addr.unwrap_or(defaults.listen_addr),
        public_addr: raw.public_addr.map(|a| a.0).unwrap_or_default(),
        tokens,
        authentication,
        session_recording: raw.session_recording.unwrap_or_default(),
        proxy_listener_mode: raw.proxy_listener_mode.unwrap_or_default(),
        tunnel_strategy,
        web_idle_timeout,
    })
}

/// Teleport's static token form, `"proxy,node:TOKENVALUE"`. Messages never echo the value:
/// it is a secret.
fn parse_static_token(text: &str) -> Result<StaticToken, String> {
    const FORM: &str = "write static tokens as \"<roles>:<token>\", e.g. \"node,proxy:<token>\"";
    let Some((roles, token)) = text.split_once(':') else {
        return Err(format!("missing roles; {FORM}"));
    };
    let mut parsed: Vec<JoinRole> = Vec::new();
    for role in roles.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let role: JoinRole = role.parse().map_err(|err: ValueError| err.to_string())?;
        if !parsed.contains(&role) {
            parsed.push(role);
        }
    }
    if parsed.is_empty() {
        return Err(format!("missing roles; {FORM}"));
    }
    if token.trim().is_empty() {
        return Err(format!("missing the token value after ':'; {FORM}"));
    }
    Ok(StaticToken {
        roles: parsed,
        token: Secret::new(token.trim()),
    })
}

fn validate_authentication(raw: RawAuthentication, path: &str) -> Result<Authentication, Invalid> {
    let kind = raw.kind.unwrap_or_default();
    let connector_name = match raw.connector_name {
        None => None,
        Some(name) if name.trim().is_empty() => None,
        Some(name) => {
            let field = join(path, "connector_name");
            if kind == AuthType::Local {
                return Err(Invalid::new(
                    field,
                    "names an SSO connector, so `type` must be oidc, saml or github (it is local)",
                ));
            }
            crate::ResourceName::new(name.trim())
                .map_err(|err| Invalid::new(field, err.to_string()))?;
            Some(name.trim().to_owned())
        }
    };
    let local_auth = raw.local_auth.is_none_or(|b| b.0);
    let rp_id = match raw.webauthn.and_then(|w| w.rp_id) {
        Some(rp_id) => {
            let field = join(&join(path, "webauthn"), "rp_id");
            Some(valid_rp_id(&rp_id.0).map_err(|reason| Invalid::new(field, reason))?)
        }
        None => None,
    };
    if !local_auth && kind == AuthType::Local {
        return Err(Invalid::new(
            join(path, "local_auth"),
            "is false while `type` is local: nobody could log in; set `type` to an SSO kind",
        ));
    }
    Ok(Authentication {
        kind,
        connector_name,
        local_auth,
        second_factor: raw.second_factor.unwrap_or_default(),
        // The default RP ID needs the proxy's section: decided in `decide_rp_id`.
        webauthn: rp_id.map(|rp_id| Webauthn { rp_id }),
        passwordless: raw.passwordless.is_none_or(|b| b.0),
    })
}

fn validate_tunnel_strategy(raw: RawTunnelStrategy, path: &str) -> Result<TunnelStrategy, Invalid> {
    let kind = raw.kind.as_deref().map(str::to_ascii_lowercase);
    match kind.as_deref() {
        None | Some(TunnelStrategy::AGENT_MESH) => match raw.agent_connection_count {
            Some(_) => Err(Invalid::new(
                join(path, "agent_connection_count"),
                "only applies to `type: proxy_peering` (agent_mesh connects to every proxy)",
            )),
            None => Ok(TunnelStrategy::AgentMesh),
        },
        Some(TunnelStrategy::PROXY_PEERING) => match raw.agent_connection_count {
            Some(0) => Err(Invalid::new(
                join(path, "agent_connection_count"),
                "must be at least 1 (2 or more is recommended)",
            )),
            count => Ok(TunnelStrategy::ProxyPeering {
                agent_connection_count: count.unwrap_or(1),
            }),
        },
        Some(_) => Err(Invalid::new(
            join(path, "type"),
            format!(
                "expected one of agent_mesh, proxy_peering, got {:?}",
                raw.kind.as_deref().unwrap_or_default()
            ),
        )),
    }
}

fn validate_proxy(raw: RawProxy) -> Result<ProxyServiceConfig, Invalid> {
    const P: &str = "proxy_service";
    let defaults = ProxyServiceConfig::default();
    let proxy_protocol = raw.proxy_protocol.is_some_and(|b| b.0);
    let cidrs = raw
        .proxy_protocol_trusted_cidrs
        .map(|c| c.0)
        .unwrap_or_default();
    let mut trusted = Vec::with_capacity(cidrs.len());
    for (i, cidr) in cidrs.iter().enumerate() {
        let path = item_path(&join(P, "proxy_protocol_trusted_cidrs"), i, cidrs.len());
        // A bare address is a /32 (or /128).
        let parsed = cidr
            .parse::<ipnet::IpNet>()
            .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => trusted.push(net),
            Err(_) => {
                return Err(Invalid::new(
                    path,
                    format!("expected a network such as 10.0.0.0/8 or an address, got {cidr:?}"),
                ));
            }
        }
    }
    if !trusted.is_empty() && !proxy_protocol {
        return Err(Invalid::new(
            join(P, "proxy_protocol_trusted_cidrs"),
            "is only used with `proxy_protocol: on`; turn that on or remove the list",
        ));
    }
    let max_unauthenticated_per_source = match raw.max_unauthenticated_per_source {
        None => defaults.max_unauthenticated_per_source,
        Some(limit @ 1..=100_000) => limit,
        Some(limit) => {
            return Err(Invalid::new(
                join(P, "max_unauthenticated_per_source"),
                format!(
                    "must be between 1 and 100000 (default {}), got {limit}",
                    defaults.max_unauthenticated_per_source
                ),
            ));
        }
    };
    Ok(ProxyServiceConfig {
        proxy_protocol_trusted_cidrs: trusted,
        max_unauthenticated_per_source,
        enabled: raw.enabled.is_none_or(|b| b.0),
        web_listen_addr: raw.web_listen_addr.unwrap_or(defaults.web_listen_addr),
        public_addr: raw.public_addr.map(|a| a.0).unwrap_or_default(),
        peer_listen_addr: raw.peer_listen_addr.unwrap_or(defaults.peer_listen_addr),
        peer_public_addr: raw.peer_public_addr,
        https_keypairs: raw.https_keypairs.unwrap_or_default(),
        proxy_protocol: raw.proxy_protocol.is_some_and(|b| b.0),
    })
}

/// Label keys: what roles match on, so keep them to a safe, unambiguous alphabet.
fn check_label_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "label keys may use only letters, digits and / . _ -, got {key:?}"
        ))
    }
}

fn validate_ssh(raw: RawSsh, path: &str) -> Result<SshServiceConfig, Invalid> {
    let mut labels = BTreeMap::new();
    for (key, value) in raw.labels.unwrap_or_default() {
        check_label_key(&key).map_err(|r| Invalid::new(join(&join(path, "labels"), &key), r))?;
        labels.insert(key, value.0);
    }
    let mut commands: Vec<CommandLabel> = Vec::new();
    for (i, cmd) in raw.commands.unwrap_or_default().into_iter().enumerate() {
        let at = format!("{}[{i}]", join(path, "commands"));
        check_label_key(&cmd.name).map_err(|r| Invalid::new(join(&at, "name"), r))?;
        if labels.contains_key(&cmd.name) || commands.iter().any(|c| c.name == cmd.name) {
            return Err(Invalid::new(
                join(&at, "name"),
                format!("label `{}` is defined twice", cmd.name),
            ));
        }
        if cmd
            .command
            .first()
            .is_none_or(|program| program.trim().is_empty())
        {
            return Err(Invalid::new(
                join(&at, "command"),
                "must name a program, e.g. [uname, -r]",
            ));
        }
        if cmd.period.is_zero() {
            return Err(Invalid::new(
                join(&at, "period"),
                "must be longer than zero",
            ));
        }
        commands.push(CommandLabel {
            name: cmd.name,
            command: cmd.command,
            period: cmd.period,
        });
    }
    Ok(SshServiceConfig {
        enabled: raw.enabled.is_none_or(|b| b.0),
        listen_addr: raw.listen_addr,
        labels,
        commands,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_tokens() {
        let t = parse_static_token("proxy,node:abc").unwrap();
        assert_eq!(t.roles, [JoinRole::Proxy, JoinRole::Node]);
        assert_eq!(t.token.expose(), "abc");
        let t = parse_static_token("Node, node :x:y").unwrap();
        assert_eq!(t.roles, [JoinRole::Node]);
        assert_eq!(t.token.expose(), "x:y");
        for (bad, fragment) in [
            ("abc", "missing roles"),
            (":abc", "missing roles"),
            ("node:", "missing the token value"),
            ("nod:abc", "expected one of auth, proxy, node, got \"nod\""),
            ("db:abc", "not supported yet"),
        ] {
            let err = parse_static_token(bad).unwrap_err();
            assert!(err.contains(fragment), "{bad}: {err}");
            assert!(!err.contains("abc"), "echoed the secret: {err}");
        }
    }

    #[test]
    fn ca_pins() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert!(check_ca_pin(&good).is_ok());
        for bad in [
            "sha256:abc",
            "md5:00",
            &format!("sha256:{}", "zz".repeat(32)),
        ] {
            assert!(check_ca_pin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn etcd_peers() {
        for good in [
            "https://etcd1:2379",
            "http://10.0.0.1:2379/",
            "HTTPS://[::1]:2379",
        ] {
            assert!(check_etcd_peer(good).is_ok(), "{good}");
        }
        for bad in ["etcd1:2379", "https://etcd1", "unix:///tmp/x", "https://"] {
            assert!(check_etcd_peer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn storage_kinds() {
        assert_eq!(storage_kind("dir"), Ok(StorageKind::Sqlite));
        assert_eq!(storage_kind("SQLite"), Ok(StorageKind::Sqlite));
        assert_eq!(storage_kind("DynamoDB"), Ok(StorageKind::Dynamo));
        assert_eq!(
            storage_kind("firestore"),
            Err(
                "\"firestore\" is not supported; use one of sqlite, etcd, postgresql, dynamodb, \
                 memory"
                    .to_owned()
            )
        );
    }

    #[test]
    fn label_keys() {
        assert!(check_label_key("env").is_ok());
        assert!(check_label_key("jumpgate.dev/team-a_1").is_ok());
        for bad in ["", "a b", "x:y", "é"] {
            assert!(check_label_key(bad).is_err(), "{bad}");
        }
    }
}
