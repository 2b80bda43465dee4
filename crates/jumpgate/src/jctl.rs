//! `jctl`: the admin tool. Finds the identity to use (the admin identity in the data
//! directory, or a `jsh login` profile), then runs each command as one or two calls of
//! [`AdminClient`] and prints the answer as text, JSON or YAML. What the calls send and
//! how answers are read and rendered is in `jumpgate_client::admin`; reading and writing
//! local files is here.

use crate::jctl_cli::{
    AuditCommand, AuthCommand, CaType, CertFormat, JctlCli, JctlCommand, LockArgs, NodesCommand,
    OutputFormat, RotateType, SessionsCommand, TokensCommand, UsersCommand,
};
use anyhow::{Context, Result, anyhow, bail};
use jumpgate_api::admin_identity;
use jumpgate_client::admin::{
    self, AdminClient, Document, EventQuery, NewJoinToken, NewLock, NewUser, ResourceDocument,
    RotateScope, text,
};
use jumpgate_client::{Home, Password};
use jumpgate_types::{Config, LockTarget};
use serde::Serialize;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default data directory when neither -c nor --data-dir is given (and no config exists).
const DEFAULT_DATA_DIR: &str = "/var/lib/jumpgate";

/// Prints `data` as JSON or YAML, or as `text` for people.
fn print_data(
    format: OutputFormat,
    data: &impl Serialize,
    text: impl FnOnce() -> String,
) -> Result<()> {
    // Through a JSON value, whose keys are sorted: the order jctl has always printed.
    let out = match format {
        OutputFormat::Text => text(),
        OutputFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::to_value(data)?)?
        ),
        OutputFormat::Yaml => serde_norway::to_string(&serde_json::to_value(data)?)?,
    };
    print!("{out}");
    Ok(())
}

/// The invite link's lines for a signup token (the web UI's signup page at a proxy's
/// public address), or nothing when no proxy is known.
async fn invite_line(admin: &mut AdminClient, token: &str) -> String {
    match admin.proxy_public_addr().await {
        Ok(Some(addr)) => format!(
            "Invite link (open it in a browser to sign up):\n  {}\n",
            admin::invite_link(&addr, token)
        ),
        _ => String::new(),
    }
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

async fn connect(cli: &JctlCli) -> Result<AdminClient> {
    let (data_dir, config_addr) = locate(cli)?;
    let admin_dir = admin_identity::dir(&data_dir);
    let explicit = cli.data_dir.is_some() || cli.config.is_some();
    if !explicit && !admin_dir.exists() {
        // Away from the auth host: a `jsh login` profile, through the proxy.
        if let Some(client) = connect_with_profile(cli).await? {
            return Ok(client);
        }
    }
    let files = admin_identity::read(&admin_dir)?;
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
    Ok(AdminClient::connect(&addr, tls).await?)
}

/// The auth API through the proxy with the user identity of a `jsh login` profile
/// (`JUMPGATE_HOME` or `~/.jumpgate`), as Teleport's `tctl` uses a `tsh` profile; `None`
/// when there is no profile. What the user may do is what their roles' rules allow.
async fn connect_with_profile(cli: &JctlCli) -> Result<Option<AdminClient>> {
    let Ok(home) = Home::from_env() else {
        return Ok(None);
    };
    if !home.file("profile.json").exists() {
        return Ok(None);
    }
    let profile = home.load()?;
    let client =
        AdminClient::connect_with_profile(&profile, cli.auth_server.as_deref(), SystemTime::now())
            .await?;
    Ok(Some(client))
}

/// Runs one jctl command.
pub async fn run(cli: JctlCli) -> Result<()> {
    let mut admin = connect(&cli).await?;
    match cli.command {
        JctlCommand::Status(format) => {
            let status = admin.status().await?;
            print_data(format.format, &status, || text::status_text(&status))
        }
        JctlCommand::Users(command) => users(&mut admin, command).await,
        JctlCommand::Tokens(command) => tokens(&mut admin, command).await,
        JctlCommand::Nodes(NodesCommand::Ls(format)) => {
            let nodes = admin.nodes().await?;
            let documents: Vec<&Document> = nodes.iter().map(|node| &node.document).collect();
            print_data(format.format, &documents, || text::nodes_table(&nodes))
        }
        JctlCommand::Sessions(SessionsCommand::Ls(format)) => {
            let sessions = admin.active_sessions().await?;
            print_data(format.format, &sessions, || {
                text::active_sessions_table(&sessions)
            })
        }
        JctlCommand::Get {
            target,
            with_secrets,
            format,
        } => get(&mut admin, &target, with_secrets, format.format).await,
        JctlCommand::Create { file, force } => create(&mut admin, &file, force).await,
        JctlCommand::Rm { target } => rm(&mut admin, &target).await,
        JctlCommand::Lock(args) => lock(&mut admin, args).await,
        JctlCommand::Auth(command) => auth(&mut admin, command).await,
        JctlCommand::Audit(command) => audit(&mut admin, command).await,
    }
}

fn read_password_stdin() -> Result<Password> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("--password-stdin: stdin held no password");
    }
    Ok(Password::new(password))
}

async fn users(admin: &mut AdminClient, command: UsersCommand) -> Result<()> {
    match command {
        UsersCommand::Add {
            name,
            roles,
            logins,
            password_stdin,
        } => {
            let password = if password_stdin {
                Some(read_password_stdin()?)
            } else {
                None
            };
            let enrollment = admin
                .create_user(NewUser {
                    name: name.clone(),
                    roles,
                    logins,
                    password,
                })
                .await?;
            println!("User {name:?} has been created.");
            if let Some(signup) = &enrollment.signup {
                let link = invite_line(admin, &signup.token).await;
                println!(
                    "Signup token (valid until {}, one use):\n  {}\n{link}Share it with the user; \
                     they set a password (and enrol a one-time-code app) when signing up.",
                    text::time_text(signup.expires),
                    signup.token
                );
            }
            if let Some(uri) = &enrollment.otpauth_uri {
                println!(
                    "Enrol this in the user's authenticator app (a QR code of it, or the URI):\n  {uri}"
                );
            }
            Ok(())
        }
        UsersCommand::Ls(format) => {
            let users = admin.users().await?;
            let documents: Vec<&Document> = users.iter().map(|user| &user.document).collect();
            print_data(format.format, &documents, || text::users_table(&users))
        }
        UsersCommand::Rm { name } => {
            admin.delete_user(&name).await?;
            println!("User {name:?} has been deleted.");
            Ok(())
        }
        UsersCommand::Reset { name } => {
            let signup = admin.reset_user(&name).await?;
            let link = invite_line(admin, &signup.token).await;
            print!(
                "User {name:?}'s password and one-time-code app have been reset.\nSignup token \
                 (valid until {}, one use):\n  {}\n{link}",
                text::time_text(signup.expires),
                signup.token
            );
            Ok(())
        }
        UsersCommand::Unlock { name } => {
            admin.unlock_user(&name).await?;
            println!("User {name:?} has been unlocked.");
            Ok(())
        }
    }
}

async fn tokens(admin: &mut AdminClient, command: TokensCommand) -> Result<()> {
    match command {
        TokensCommand::Add {
            roles,
            ttl,
            reusable,
            format,
        } => {
            let token = admin
                .create_join_token(NewJoinToken {
                    roles,
                    ttl,
                    reusable,
                })
                .await?;
            print_data(format.format, &token, || text::join_token_text(&token))
        }
        TokensCommand::Ls(format) => {
            let tokens = admin.join_tokens().await?;
            print_data(format.format, &tokens, || text::join_tokens_table(&tokens))
        }
        TokensCommand::Rm { token } => {
            admin.delete_join_token(&token).await?;
            println!("The join token has been deleted.");
            Ok(())
        }
    }
}

/// `KIND/NAME`, or `KIND` alone (an empty name).
fn split_target(target: &str) -> (&str, &str) {
    target.split_once('/').unwrap_or((target, ""))
}

async fn get(
    admin: &mut AdminClient,
    target: &str,
    with_secrets: bool,
    format: OutputFormat,
) -> Result<()> {
    let (kind, name) = split_target(target);
    let name = Some(name).filter(|name| !name.is_empty());
    let documents = if with_secrets {
        admin.resources_with_secrets(kind, name).await?
    } else {
        admin.resources(kind, name).await?
    };
    match format {
        OutputFormat::Json => print_data(format, &documents, String::new),
        // YAML and text: documents separated by `---`, ready for `jctl create`.
        OutputFormat::Yaml | OutputFormat::Text => {
            let mut out = String::new();
            for (i, document) in documents.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&serde_norway::to_string(document)?);
            }
            print!("{out}");
            Ok(())
        }
    }
}

async fn create(admin: &mut AdminClient, file: &Path, force: bool) -> Result<()> {
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
    for document in ResourceDocument::split(&source, &text)? {
        let upserted = admin.upsert_document(document, force).await?;
        for warning in &upserted.warnings {
            eprintln!("warning: {} {:?}: {warning}", upserted.kind, upserted.name);
        }
        let verb = if upserted.created {
            "created"
        } else {
            "updated"
        };
        println!("{} {:?} has been {verb}.", upserted.kind, upserted.name);
    }
    Ok(())
}

/// `jctl lock`: a `kind: lock` resource named by a fresh UUID, as Teleport's `tctl lock`.
async fn lock(admin: &mut AdminClient, args: LockArgs) -> Result<()> {
    let (expires, until) = match (args.ttl, &args.expires) {
        (Some(ttl), _) => {
            let expires = NewLock::expires_after(SystemTime::now(), ttl).ok_or_else(|| {
                anyhow!(
                    "--ttl {}: the lock would end too far in the future",
                    humantime::format_duration(ttl)
                )
            })?;
            (
                Some(expires),
                format!("until {}", text::time_text(Some(expires))),
            )
        }
        (None, Some(time)) => (Some(NewLock::parse_expires(time)?), format!("until {time}")),
        (None, None) => (None, "until removed".to_string()),
    };
    let lock = admin
        .create_lock(NewLock {
            target: LockTarget {
                user: args.user,
                role: args.role,
                login: args.login,
                node: args.node,
            },
            message: args.message,
            expires,
        })
        .await?;
    let name = lock.name();
    println!("Created lock {name} ({until}); remove it with: jctl rm lock/{name}");
    Ok(())
}

async fn rm(admin: &mut AdminClient, target: &str) -> Result<()> {
    let (kind, name) = split_target(target);
    if name.is_empty() {
        bail!("give KIND/NAME, e.g. `jctl rm role/dev`");
    }
    admin.delete_resource(kind, name).await?;
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

async fn auth(admin: &mut AdminClient, command: AuthCommand) -> Result<()> {
    match command {
        AuthCommand::Rotate {
            ca_type,
            grace_period,
            format,
        } => {
            let which = match ca_type {
                RotateType::User => RotateScope::One(admin::CaType::User),
                RotateType::Host => RotateScope::One(admin::CaType::Host),
                RotateType::Tls => RotateScope::One(admin::CaType::Tls),
                RotateType::All => RotateScope::All,
            };
            let rotation = admin.rotate_authorities(which, grace_period).await?;
            print_data(format.format, &rotation, || text::rotation_text(&rotation))
        }
        AuthCommand::Export { ca_type } => {
            let ca = match ca_type {
                CaType::User => admin::CaType::User,
                CaType::Host => admin::CaType::Host,
                CaType::Tls => admin::CaType::Tls,
            };
            print!("{}", admin.export_authority(ca).await?);
            Ok(())
        }
        AuthCommand::Sign {
            user: Some(user),
            out,
            ttl,
            format,
            overwrite,
            ..
        } => sign_user(admin, &user, &out, ttl, format, overwrite).await,
        AuthCommand::Sign {
            host: Some(host),
            out,
            ttl,
            principals,
            overwrite,
            ..
        } => sign_host(admin, &host, &out, ttl, principals, overwrite).await,
        AuthCommand::Sign { .. } => bail!("give --user NAME or --host NAME"),
    }
}

async fn sign_user(
    admin: &mut AdminClient,
    user: &str,
    out: &Path,
    ttl: Option<Duration>,
    format: CertFormat,
    overwrite: bool,
) -> Result<()> {
    match format {
        CertFormat::Openssh => {
            let signed = admin.sign_user_ssh(user, ttl).await?;
            let cert_path = write_ssh_identity(out, &signed.key, &signed.certificate, overwrite)?;
            println!(
                "Wrote {} (key) and {} (certificate for {}, logins {}, valid until {}).\n\
                 Use: ssh -i {} LOGIN@HOST",
                out.display(),
                cert_path.display(),
                user,
                signed.principals.join(","),
                text::time_text(signed.expires),
                out.display()
            );
            Ok(())
        }
        CertFormat::Tls => {
            let signed = admin.sign_user_tls(user, ttl).await?;
            write_file(&with_suffix(out, ".key"), &signed.key_pem, true, overwrite)?;
            write_file(
                &with_suffix(out, ".crt"),
                &signed.certificate_pem,
                false,
                overwrite,
            )?;
            write_file(
                &with_suffix(out, ".cas"),
                &signed.ca_pems.concat(),
                false,
                overwrite,
            )?;
            println!(
                "Wrote {0}.key, {0}.crt and {0}.cas (X.509 identity of {user}, valid until {1}).",
                out.display(),
                text::time_text(signed.expires)
            );
            Ok(())
        }
    }
}

async fn sign_host(
    admin: &mut AdminClient,
    host: &str,
    out: &Path,
    ttl: Option<Duration>,
    principals: Vec<String>,
    overwrite: bool,
) -> Result<()> {
    let signed = admin.sign_host(host, principals, ttl).await?;
    let cert_path = write_ssh_identity(out, &signed.key, &signed.certificate, overwrite)?;
    let ca_path = with_suffix(out, "-user-ca.pub");
    write_file(&ca_path, &signed.user_ca_keys, false, overwrite)?;
    println!(
        "Wrote the host key {}, its certificate {} (valid until {}) and the user CA {}.\n\
         In the server's sshd_config:\n  HostKey {}\n  HostCertificate {}\n  TrustedUserCAKeys {}",
        out.display(),
        cert_path.display(),
        text::time_text(signed.expires),
        ca_path.display(),
        out.display(),
        cert_path.display(),
        ca_path.display()
    );
    Ok(())
}

/// A point in time for `--{what}`: RFC 3339, or a duration meaning that long before `now`.
fn parse_time(what: &str, text: &str, now: SystemTime) -> Result<SystemTime> {
    let time = if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        time
    } else if let Ok(ago) = jumpgate_types::config::parse_duration(text) {
        now.checked_sub(ago)
            .ok_or_else(|| anyhow!("--{what} {text}: too long ago"))?
    } else {
        bail!(
            "--{what} {text:?}: give an RFC 3339 time (2026-11-22T10:00:00Z) or a duration ago (1h)"
        );
    };
    if time < UNIX_EPOCH {
        bail!("--{what} {text}: before 1970");
    }
    Ok(time)
}

async fn audit(admin: &mut AdminClient, command: AuditCommand) -> Result<()> {
    let AuditCommand::Search {
        from,
        to,
        types,
        user,
        session,
        limit,
        format,
    } = command;
    let now = SystemTime::now();
    let query = EventQuery {
        from: parse_time("from", &from, now)?,
        to: match &to {
            Some(to) => Some(parse_time("to", to, now)?),
            None => None,
        },
        types,
        user,
        session,
        limit,
    };
    let found = admin.search_events(query).await?;
    if found.more {
        // On stderr, so that JSON and YAML output stay whole.
        eprintln!(
            "showing the first {limit} matching events; more match: raise --limit or narrow the search (--from, --to, --type, --user, --session)"
        );
    }
    let events = found.events;
    print_data(format.format, &events, || text::events_table(&events))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn targets_split_into_kind_and_name() {
        assert_eq!(split_target("role/dev"), ("role", "dev"));
        assert_eq!(split_target("roles"), ("roles", ""));
        assert_eq!(split_target("role/"), ("role", ""));
        assert_eq!(split_target("lock/a/b"), ("lock", "a/b"));
    }

    #[test]
    fn search_times_are_rfc3339_or_a_duration_ago() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            parse_time("from", "2026-11-22T10:00:00Z", now).unwrap(),
            humantime::parse_rfc3339("2026-11-22T10:00:00Z").unwrap()
        );
        assert_eq!(
            parse_time("from", "1h", now).unwrap(),
            now - Duration::from_secs(3600)
        );
        let err = parse_time("to", "yesterday", now).unwrap_err().to_string();
        assert!(
            err.starts_with("--to \"yesterday\": give an RFC 3339 time"),
            "{err}"
        );
        let err = parse_time("from", "100y", now).unwrap_err().to_string();
        assert_eq!(err, "--from 100y: before 1970");
    }
}
