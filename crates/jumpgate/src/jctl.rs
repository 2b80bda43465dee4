//! `jctl`: the admin tool. Each command is one or two calls to the auth API with the
//! admin identity from the data directory; this module turns answers into text, JSON
//! or YAML, and gRPC errors into messages that say what to do.

use crate::identity;
use crate::jctl_cli::{
    AuditCommand, AuthCommand, CaType, CertFormat, JctlCli, JctlCommand, LockArgs, NodesCommand,
    OutputFormat, RotateType, TokensCommand, UsersCommand,
};
use anyhow::{Context, Result, anyhow, bail};
use jumpgate_api::AuthClient;
use jumpgate_api::proto;
use jumpgate_types::Config;
use serde_json::{Value, json};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default data directory when neither -c nor --data-dir is given (and no config exists).
const DEFAULT_DATA_DIR: &str = "/var/lib/jumpgate";

/// Turns a gRPC status into an error that reads well after `jctl: error:`.
fn status_error(status: tonic::Status) -> anyhow::Error {
    let hint = match status.code() {
        tonic::Code::Unavailable => " (is the auth service running?)",
        _ => "",
    };
    anyhow!("{}{hint}", status.message())
}

fn print_data(format: OutputFormat, value: &Value, text: impl FnOnce() -> String) -> Result<()> {
    let out = match format {
        OutputFormat::Text => text(),
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(value)?),
        OutputFormat::Yaml => serde_norway::to_string(value)?,
    };
    print!("{out}");
    Ok(())
}

fn time_text(unix: i64) -> String {
    if unix <= 0 {
        return "never".to_string();
    }
    let time = UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs());
    humantime::format_rfc3339_seconds(time).to_string()
}

/// A simple aligned table.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (cell, width) in cells.iter().zip(&widths) {
            out.push_str(&format!("{cell:<width$}  "));
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// Where the admin identity and the auth address come from.
fn locate(cli: &JctlCli) -> Result<(PathBuf, Option<String>)> {
    if let Some(dir) = &cli.data_dir {
        return Ok((dir.clone(), None));
    }
    let config_path = cli.config.clone().or_else(|| {
        let default = PathBuf::from(crate::cli::DEFAULT_CONFIG_PATH);
        default.exists().then_some(default)
    });
    match config_path {
        Some(path) => {
            let config: Config = crate::config_file::load(&path)?;
            let listen = &config.auth_service.listen_addr;
            let host = match listen.host.as_str() {
                "0.0.0.0" | "" => "127.0.0.1".to_string(),
                "::" | "[::]" => "[::1]".to_string(),
                other => other.to_string(),
            };
            Ok((
                config.jumpgate.data_dir.clone(),
                Some(format!("{host}:{}", listen.port)),
            ))
        }
        None => Ok((PathBuf::from(DEFAULT_DATA_DIR), None)),
    }
}

async fn connect(cli: &JctlCli) -> Result<AuthClient> {
    let (data_dir, config_addr) = locate(cli)?;
    let admin_dir = identity::admin_dir(&data_dir);
    let explicit = cli.data_dir.is_some() || cli.config.is_some();
    if !explicit && !admin_dir.exists() {
        // Away from the auth host: a `jsh login` profile, through the proxy.
        if let Some(client) = connect_with_profile(cli).await? {
            return Ok(client);
        }
    }
    let files = identity::read(&admin_dir)?;
    let addr = cli
        .auth_server
        .clone()
        .or(files.auth_addr.clone())
        .or(config_addr)
        .ok_or_else(|| anyhow!("no auth address known: give --auth-server HOST:PORT"))?;
    let tls = files
        .credentials()
        .context("the admin identity is unusable; restart the auth service to renew it")?
        .client_config()?;
    Ok(jumpgate_api::connect(&addr, tls).await?)
}

/// The auth API through the proxy with the user identity of a `jsh login` profile
/// (`JUMPGATE_HOME` or `~/.jumpgate`), as Teleport's `tctl` uses a `tsh` profile; `None`
/// when there is no profile. What the user may do is what their roles' rules allow.
async fn connect_with_profile(cli: &JctlCli) -> Result<Option<AuthClient>> {
    let Ok(home) = jumpgate_client::Home::from_env() else {
        return Ok(None);
    };
    if !home.file("profile.json").exists() {
        return Ok(None);
    }
    let profile = home.load()?;
    profile.check_valid(std::time::SystemTime::now())?;
    let addr = cli
        .auth_server
        .clone()
        .unwrap_or_else(|| profile.meta.proxy.clone());
    let tls = profile.tls_credentials()?.client_config()?;
    Ok(Some(jumpgate_api::connect(&addr, tls).await?))
}

/// Runs one jctl command.
pub async fn run(cli: JctlCli) -> Result<()> {
    let mut client = connect(&cli).await?;
    match cli.command {
        JctlCommand::Status(format) => status(&mut client, format.format).await,
        JctlCommand::Users(command) => users(&mut client, command).await,
        JctlCommand::Tokens(command) => tokens(&mut client, command).await,
        JctlCommand::Nodes(NodesCommand::Ls(format)) => nodes_ls(&mut client, format.format).await,
        JctlCommand::Get { target, format } => get(&mut client, &target, format.format).await,
        JctlCommand::Create { file, force } => create(&mut client, &file, force).await,
        JctlCommand::Rm { target } => rm(&mut client, &target).await,
        JctlCommand::Lock(args) => lock(&mut client, args).await,
        JctlCommand::Auth(command) => auth(&mut client, command).await,
        JctlCommand::Audit(command) => audit(&mut client, command).await,
    }
}

async fn status(client: &mut AuthClient, format: OutputFormat) -> Result<()> {
    let status = client
        .status(proto::StatusRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    let authorities: Vec<Value> = status
        .authorities
        .iter()
        .map(|ca| {
            json!({
                "type": ca.r#type,
                "active": ca.active,
                "last_rotated": time_text(ca.last_rotated_unix),
                "previous": ca.previous.iter().map(|key| json!({
                    "key": key.key,
                    "trusted_until": time_text(key.trusted_until_unix),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let value = json!({
        "cluster_name": status.cluster_name,
        "server_version": status.server_version,
        "user_ca_fingerprints": status.user_ca_fingerprints,
        "host_ca_fingerprints": status.host_ca_fingerprints,
        "ca_pins": status.ca_pins,
        "caller": status.caller,
        "authorities": authorities,
    });
    print_data(format, &value, || {
        let mut text = format!(
            "Cluster:        {}\nVersion:        {}\nYou are:        {}\n",
            status.cluster_name, status.server_version, status.caller,
        );
        for ca in &status.authorities {
            let label = match ca.r#type.as_str() {
                "user" => "User CA:",
                "host" => "Host CA:",
                _ => "CA pin:",
            };
            text.push_str(&format!("{label:<16}{}", ca.active));
            if ca.last_rotated_unix > 0 {
                text.push_str(&format!(" (rotated {})", time_text(ca.last_rotated_unix)));
            }
            text.push('\n');
            for key in &ca.previous {
                text.push_str(&format!(
                    "{:<16}{} (old, trusted until {})\n",
                    "",
                    key.key,
                    time_text(key.trusted_until_unix)
                ));
            }
        }
        text
    })
}

fn read_password_stdin() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("--password-stdin: stdin held no password");
    }
    Ok(password)
}

async fn users(client: &mut AuthClient, command: UsersCommand) -> Result<()> {
    match command {
        UsersCommand::Add {
            name,
            roles,
            logins,
            password_stdin,
        } => {
            let password = if password_stdin {
                read_password_stdin()?
            } else {
                String::new()
            };
            let response = client
                .create_user(proto::CreateUserRequest {
                    name: name.clone(),
                    roles,
                    logins,
                    password,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("User {name:?} has been created.");
            if !response.signup_token.is_empty() {
                println!(
                    "Signup token (valid until {}, one use):\n  {}\nShare it with the user; \
                     they set a password (and enrol a one-time-code app) when signing up.",
                    time_text(response.signup_expires_unix),
                    response.signup_token
                );
            }
            if !response.otpauth_uri.is_empty() {
                println!(
                    "Enrol this in the user's authenticator app (a QR code of it, or the URI):\n  {}",
                    response.otpauth_uri
                );
            }
            Ok(())
        }
        UsersCommand::Ls(format) => {
            let documents = get_documents(client, "user", "").await?;
            let rows: Vec<Vec<String>> = documents
                .iter()
                .map(|doc| {
                    let list = |pointer: &str| {
                        doc.pointer(pointer)
                            .and_then(Value::as_array)
                            .map(|items| {
                                items
                                    .iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default()
                    };
                    let locked = doc
                        .pointer("/status/locked_until")
                        .and_then(Value::as_i64)
                        .map(|until| format!("locked until {}", time_text(until)))
                        .unwrap_or_default();
                    vec![
                        doc.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        list("/spec/roles"),
                        list("/spec/traits/logins"),
                        locked,
                    ]
                })
                .collect();
            print_data(format.format, &Value::Array(documents), || {
                table(&["User", "Roles", "Logins", "Status"], &rows)
            })
        }
        UsersCommand::Rm { name } => {
            client
                .delete_resource(proto::DeleteResourceRequest {
                    kind: "user".to_string(),
                    name: name.clone(),
                })
                .await
                .map_err(status_error)?;
            println!("User {name:?} has been deleted.");
            Ok(())
        }
        UsersCommand::Reset { name } => {
            let response = client
                .reset_user(proto::ResetUserRequest { name: name.clone() })
                .await
                .map_err(status_error)?
                .into_inner();
            println!(
                "User {name:?}'s password and one-time-code app have been reset.\nSignup token \
                 (valid until {}, one use):\n  {}",
                time_text(response.signup_expires_unix),
                response.signup_token
            );
            Ok(())
        }
        UsersCommand::Unlock { name } => {
            client
                .unlock_user(proto::UnlockUserRequest { name: name.clone() })
                .await
                .map_err(status_error)?;
            println!("User {name:?} has been unlocked.");
            Ok(())
        }
    }
}

/// A string field of a JSON document, or "" when absent.
fn text_at(document: &Value, pointer: &str) -> String {
    document
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

async fn nodes_ls(client: &mut AuthClient, format: OutputFormat) -> Result<()> {
    let documents = client
        .get_resources(proto::GetResourcesRequest {
            kind: "node".to_string(),
            name: String::new(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .documents;
    let nodes: Vec<Value> = documents
        .iter()
        .map(|doc| serde_json::from_str(doc))
        .collect::<Result<_, _>>()
        .context("a node record from the auth service is not JSON")?;
    let value = Value::Array(nodes.clone());
    print_data(format, &value, || {
        let rows: Vec<Vec<String>> = nodes
            .iter()
            .map(|node| {
                let labels = node
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .map(|labels| {
                        labels
                            .iter()
                            .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                let tunnels = node
                    .pointer("/spec/tunnels")
                    .and_then(Value::as_array)
                    .map(|tunnels| {
                        tunnels
                            .iter()
                            .filter_map(|t| t.get("proxy").and_then(Value::as_str))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                vec![
                    text_at(node, "/spec/hostname"),
                    text_at(node, "/metadata/name"),
                    labels,
                    if tunnels.is_empty() {
                        "none".to_string()
                    } else {
                        format!("up via {tunnels}")
                    },
                ]
            })
            .collect();
        if rows.is_empty() {
            return "No nodes have joined (or none sent a heartbeat in the last 15 s).\n"
                .to_string();
        }
        table(&["Host", "UUID", "Labels", "Tunnel"], &rows)
    })
}

async fn tokens(client: &mut AuthClient, command: TokensCommand) -> Result<()> {
    match command {
        TokensCommand::Add {
            roles,
            ttl,
            reusable,
            format,
        } => {
            let ttl_seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
            let response = client
                .create_join_token(proto::CreateJoinTokenRequest {
                    roles: roles.clone(),
                    ttl_seconds,
                    reusable,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let value = json!({
                "token": response.token,
                "id": response.id,
                "roles": roles,
                "expires": time_text(response.expires_unix),
                "ca_pins": response.ca_pins,
                "single_use": !reusable,
            });
            print_data(format.format, &value, || {
                format!(
                    "The join token {} (id {}) lets {} join as {} until {}.\n\n\
                     On the host, put this in /etc/jumpgate.yaml:\n\
                     \x20 jumpgate:\n\
                     \x20   join_params:\n\
                     \x20     method: token\n\
                     \x20     token_name: {}\n\
                     \x20   ca_pin: \"{}\"\n\
                     \x20   proxy_server: <the proxy's public address>   # or auth_server: <this auth server>\n\n\
                     The token is shown once; jctl tokens rm {} revokes it.\n",
                    response.token,
                    response.id,
                    if reusable {
                        "any number of hosts"
                    } else {
                        "one host (once)"
                    },
                    roles.join(","),
                    time_text(response.expires_unix),
                    response.token,
                    response.ca_pins.join(","),
                    response.id,
                )
            })
        }
        TokensCommand::Ls(format) => {
            let tokens = client
                .list_join_tokens(proto::ListJoinTokensRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .tokens;
            let value = Value::Array(
                tokens
                    .iter()
                    .map(|token| {
                        json!({
                            "id": token.id,
                            "roles": token.roles,
                            "expires": time_text(token.expires_unix),
                            "kind": token.kind,
                            "single_use": token.single_use,
                        })
                    })
                    .collect(),
            );
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|token| {
                    vec![
                        token.id.clone(),
                        token.roles.join(","),
                        time_text(token.expires_unix),
                        if token.single_use {
                            "once"
                        } else {
                            "until expiry"
                        }
                        .to_string(),
                        token.kind.clone(),
                    ]
                })
                .collect();
            print_data(format.format, &value, || {
                table(&["Id", "Type", "Expires", "Use", "Source"], &rows)
            })
        }
        TokensCommand::Rm { token } => {
            client
                .delete_join_token(proto::DeleteJoinTokenRequest { token })
                .await
                .map_err(status_error)?;
            println!("The join token has been deleted.");
            Ok(())
        }
    }
}

async fn get_documents(client: &mut AuthClient, kind: &str, name: &str) -> Result<Vec<Value>> {
    let documents = client
        .get_resources(proto::GetResourcesRequest {
            kind: kind.to_string(),
            name: name.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .documents;
    documents
        .iter()
        .map(|doc| serde_json::from_str(doc).context("the auth service sent malformed JSON"))
        .collect()
}

fn split_target(target: &str) -> (&str, &str) {
    target.split_once('/').unwrap_or((target, ""))
}

async fn get(client: &mut AuthClient, target: &str, format: OutputFormat) -> Result<()> {
    let (kind, name) = split_target(target);
    let documents = get_documents(client, kind, name).await?;
    match format {
        OutputFormat::Json => print_data(format, &Value::Array(documents), String::new),
        // YAML and text: documents separated by `---`, ready for `jctl create`.
        OutputFormat::Yaml | OutputFormat::Text => {
            let mut out = String::new();
            for (i, doc) in documents.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&serde_norway::to_string(doc)?);
            }
            print!("{out}");
            Ok(())
        }
    }
}

/// Splits a multi-document YAML text at `---` lines.
fn split_documents(text: &str) -> Vec<String> {
    let mut documents = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            documents.push(String::new());
            continue;
        }
        if let Some(current) = documents.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents
        .into_iter()
        .filter(|doc| {
            doc.lines()
                .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        })
        .collect()
}

async fn create(client: &mut AuthClient, file: &Path, force: bool) -> Result<()> {
    let (source, text) = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        ("stdin".to_string(), text)
    } else {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        (file.display().to_string(), text)
    };
    let documents = split_documents(&text);
    if documents.is_empty() {
        bail!("{source}: holds no resource");
    }
    let many = documents.len() > 1;
    for (i, document) in documents.into_iter().enumerate() {
        let source_name = if many {
            format!("{source} (document {})", i + 1)
        } else {
            source.clone()
        };
        // Said here, not as the transport's "h2 protocol error" when the client refuses
        // to send it.
        if document.len() > jumpgate_api::server::MAX_MESSAGE_SIZE - 4096 {
            bail!(
                "{source_name}: the document is {} KiB; the auth API takes resources of at most {} KiB",
                document.len() / 1024,
                jumpgate_api::server::MAX_MESSAGE_SIZE / 1024 - 4
            );
        }
        let response = client
            .upsert_resource(proto::UpsertResourceRequest {
                document,
                source_name,
                force,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        for warning in &response.warnings {
            eprintln!("warning: {} {:?}: {warning}", response.kind, response.name);
        }
        let verb = if response.created {
            "created"
        } else {
            "updated"
        };
        println!("{} {:?} has been {verb}.", response.kind, response.name);
    }
    Ok(())
}

/// `jctl lock`: a `kind: lock` resource named by a fresh UUID, as Teleport's `tctl lock`.
async fn lock(client: &mut AuthClient, args: LockArgs) -> Result<()> {
    let mut target = serde_json::Map::new();
    for (kind, value) in [
        ("user", &args.user),
        ("role", &args.role),
        ("login", &args.login),
        ("node", &args.node),
    ] {
        if let Some(value) = value {
            target.insert(kind.to_string(), json!(value));
        }
    }
    let expires = match (&args.ttl, &args.expires) {
        (Some(ttl), _) => {
            Some(humantime::format_rfc3339_seconds(SystemTime::now() + *ttl).to_string())
        }
        (None, Some(time)) => Some(time.clone()),
        (None, None) => None,
    };
    let mut spec = serde_json::Map::new();
    spec.insert("target".to_string(), Value::Object(target));
    spec.insert("message".to_string(), json!(args.message));
    if let Some(expires) = &expires {
        spec.insert("expires".to_string(), json!(expires));
    }
    let name = uuid::Uuid::new_v4().to_string();
    let document = json!({
        "kind": "lock",
        "version": "v2",
        "metadata": { "name": name },
        "spec": spec,
    });
    client
        .upsert_resource(proto::UpsertResourceRequest {
            document: document.to_string(),
            source_name: "jctl lock".to_string(),
            force: false,
        })
        .await
        .map_err(status_error)?;
    let until = expires.map_or_else(|| "until removed".to_string(), |t| format!("until {t}"));
    println!("Created lock {name} ({until}); remove it with: jctl rm lock/{name}");
    Ok(())
}

async fn rm(client: &mut AuthClient, target: &str) -> Result<()> {
    let (kind, name) = split_target(target);
    if name.is_empty() {
        bail!("give KIND/NAME, e.g. `jctl rm role/dev`");
    }
    client
        .delete_resource(proto::DeleteResourceRequest {
            kind: kind.to_string(),
            name: name.to_string(),
        })
        .await
        .map_err(status_error)?;
    println!("{kind} {name:?} has been deleted.");
    Ok(())
}

/// Writes a file; private ones 0600. Refuses to overwrite unless asked.
fn write_file(path: &Path, contents: &str, private: bool, overwrite: bool) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow!("{} exists; use --overwrite to replace it", path.display())
        } else {
            anyhow!("cannot write {}: {err}", path.display())
        }
    })?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut text = path.as_os_str().to_owned();
    text.push(suffix);
    PathBuf::from(text)
}

/// Writes a key the way `ssh -i PATH` finds it: `PATH` (private, 0600), `PATH.pub` and
/// `PATH-cert.pub`; returns the certificate's path.
fn write_ssh_identity(
    out: &Path,
    key: &jumpgate_pki::SshKeyPair,
    certificate: &str,
    overwrite: bool,
) -> Result<PathBuf> {
    let cert_path = with_suffix(out, "-cert.pub");
    write_file(out, &key.private_openssh, true, overwrite)?;
    write_file(
        &with_suffix(out, ".pub"),
        &key.public_openssh,
        false,
        overwrite,
    )?;
    write_file(&cert_path, certificate, false, overwrite)?;
    Ok(cert_path)
}

fn ttl_seconds(ttl: Option<Duration>) -> i64 {
    ttl.map(|ttl| i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn auth(client: &mut AuthClient, command: AuthCommand) -> Result<()> {
    match command {
        AuthCommand::Rotate {
            ca_type,
            grace_period,
            format,
        } => {
            let r#type = match ca_type {
                RotateType::User => "user",
                RotateType::Host => "host",
                RotateType::Tls => "tls",
                RotateType::All => "all",
            };
            let rotated = client
                .rotate_authority(proto::RotateAuthorityRequest {
                    r#type: r#type.to_string(),
                    grace_period_seconds: ttl_seconds(Some(grace_period)),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let grace_ends = time_text(rotated.grace_period_ends_unix);
            let value = json!({
                "rotated": rotated.rotated,
                "grace_period_ends": grace_ends,
            });
            print_data(format.format, &value, || {
                let mut text = format!(
                    "Rotated the {} CA{}. New certificates are signed by the new keys.\n",
                    rotated.rotated.join(", "),
                    if rotated.rotated.len() > 1 { "s" } else { "" },
                );
                if grace_period.is_zero() {
                    text.push_str("The old keys were retired at once: nothing they signed is trusted any more.\n");
                } else {
                    text.push_str(&format!("The old keys stay trusted until {grace_ends}.\n"));
                }
                if rotated.rotated.iter().any(|t| t == "user") {
                    text.push_str("OpenSSH servers: install `jctl auth export --type user` as TrustedUserCAKeys again.\n");
                }
                if rotated.rotated.iter().any(|t| t == "host") {
                    text.push_str("Clients: replace the @cert-authority lines with `jctl auth export --type host`, and re-sign OpenSSH host certificates (`jctl auth sign --host`).\n");
                }
                text
            })
        }
        AuthCommand::Export { ca_type } => {
            let r#type = match ca_type {
                CaType::User => "user",
                CaType::Host => "host",
                CaType::Tls => "tls",
            };
            let text = client
                .export_authority(proto::ExportAuthorityRequest {
                    r#type: r#type.to_string(),
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .text;
            print!("{text}");
            Ok(())
        }
        AuthCommand::Sign {
            user: Some(user),
            out,
            ttl,
            format,
            overwrite,
            ..
        } => sign_user(client, &user, &out, ttl, format, overwrite).await,
        AuthCommand::Sign {
            host: Some(host),
            out,
            ttl,
            principals,
            overwrite,
            ..
        } => sign_host(client, &host, &out, ttl, principals, overwrite).await,
        AuthCommand::Sign { .. } => bail!("give --user NAME or --host NAME"),
    }
}

async fn sign_user(
    client: &mut AuthClient,
    user: &str,
    out: &Path,
    ttl: Option<Duration>,
    format: CertFormat,
    overwrite: bool,
) -> Result<()> {
    match format {
        CertFormat::Openssh => {
            let key = jumpgate_pki::generate_ssh_key(&format!("{user} (jctl auth sign)"))?;
            let response = client
                .sign_user(proto::SignUserRequest {
                    user: user.to_string(),
                    ssh_public_key: key.public_openssh.clone(),
                    tls_public_key_pem: String::new(),
                    ttl_seconds: ttl_seconds(ttl),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let cert_path = write_ssh_identity(out, &key, &response.ssh_certificate, overwrite)?;
            println!(
                "Wrote {} (key) and {} (certificate for {}, logins {}, valid until {}).\n\
                 Use: ssh -i {} LOGIN@HOST",
                out.display(),
                cert_path.display(),
                user,
                response.principals.join(","),
                time_text(response.expires_unix),
                out.display()
            );
            Ok(())
        }
        CertFormat::Tls => {
            let (key_pem, public_key_pem) = jumpgate_pki::generate_tls_key()?;
            let response = client
                .sign_user(proto::SignUserRequest {
                    user: user.to_string(),
                    ssh_public_key: String::new(),
                    tls_public_key_pem: public_key_pem,
                    ttl_seconds: ttl_seconds(ttl),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            write_file(&with_suffix(out, ".key"), &key_pem, true, overwrite)?;
            write_file(
                &with_suffix(out, ".crt"),
                &response.tls_certificate_pem,
                false,
                overwrite,
            )?;
            write_file(
                &with_suffix(out, ".cas"),
                &response.tls_ca_pems.concat(),
                false,
                overwrite,
            )?;
            println!(
                "Wrote {0}.key, {0}.crt and {0}.cas (X.509 identity of {user}, valid until {1}).",
                out.display(),
                time_text(response.expires_unix)
            );
            Ok(())
        }
    }
}

async fn sign_host(
    client: &mut AuthClient,
    host: &str,
    out: &Path,
    ttl: Option<Duration>,
    principals: Vec<String>,
    overwrite: bool,
) -> Result<()> {
    let key = jumpgate_pki::generate_ssh_key(host)?;
    let response = client
        .sign_host(proto::SignHostRequest {
            host: host.to_string(),
            ssh_public_key: key.public_openssh.clone(),
            principals,
            ttl_seconds: ttl_seconds(ttl),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let cert_path = write_ssh_identity(out, &key, &response.ssh_certificate, overwrite)?;
    let ca_path = with_suffix(out, "-user-ca.pub");
    write_file(&ca_path, &response.user_ca_keys, false, overwrite)?;
    println!(
        "Wrote the host key {}, its certificate {} (valid until {}) and the user CA {}.\n\
         In the server's sshd_config:\n  HostKey {}\n  HostCertificate {}\n  TrustedUserCAKeys {}",
        out.display(),
        cert_path.display(),
        time_text(response.expires_unix),
        ca_path.display(),
        out.display(),
        cert_path.display(),
        ca_path.display()
    );
    Ok(())
}

/// A point in time: RFC 3339, or a duration meaning that long ago.
fn parse_time(what: &str, text: &str) -> Result<i64> {
    let time = if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        time
    } else if let Ok(ago) = humantime::parse_duration(text) {
        SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| anyhow!("--{what} {text}: too long ago"))?
    } else {
        bail!(
            "--{what} {text:?}: give an RFC 3339 time (2026-11-22T10:00:00Z) or a duration ago (1h)"
        );
    };
    let millis = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| anyhow!("--{what} {text}: before 1970"))?
        .as_millis();
    Ok(i64::try_from(millis).unwrap_or(i64::MAX))
}

async fn audit(client: &mut AuthClient, command: AuditCommand) -> Result<()> {
    let AuditCommand::Search {
        from,
        to,
        types,
        user,
        session,
        limit,
        format,
    } = command;
    let response = client
        .search_events(proto::SearchEventsRequest {
            from_unix_millis: parse_time("from", &from)?,
            to_unix_millis: match &to {
                Some(to) => parse_time("to", to)?,
                None => 0,
            },
            types,
            user: user.unwrap_or_default(),
            session_id: session.unwrap_or_default(),
            limit,
            cursor: String::new(),
            descending: false,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let events: Vec<Value> = response
        .events
        .iter()
        .map(|event| serde_json::from_str(event).context("malformed event from the auth service"))
        .collect::<Result<_>>()?;
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|event| {
            let field = |name: &str| {
                event
                    .get(name)
                    .map(|value| match value {
                        Value::String(text) => text.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    })
                    .unwrap_or_default()
            };
            let outcome = if event.get("success").and_then(Value::as_bool) == Some(false) {
                format!("refused: {}", field("error"))
            } else {
                "ok".to_string()
            };
            vec![
                field("time"),
                field("event"),
                field("code"),
                field("user"),
                field("addr.remote"),
                outcome,
            ]
        })
        .collect();
    print_data(format.format, &Value::Array(events), || {
        table(
            &["Time", "Event", "Code", "User", "Address", "Outcome"],
            &rows,
        )
    })
}
