//! Runs the auth service: the audit log, the built-in roles, the watch-fed cache, the
//! auth server's own TLS identity, the admin identity for `jctl`, and the gRPC API on
//! `auth_service.listen_addr`.

use crate::diag::Readiness;
use crate::identity::{self, IdentityFiles, LocalIdentity};
use anyhow::{Context, Result};
use jumpgate_api::{AUTH_SERVER_NAME, TlsCredentials};
use jumpgate_auth::service::{AuthServer, AuthServerConfig};
use jumpgate_auth::{ClusterAuthorities, SecondFactor, StateCache};
use jumpgate_backend::{Backend, BackendError, Key, NewItem};
use jumpgate_pki::IdentityKind;
use jumpgate_types::{Config, Role};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// How long the first load of the cache may take before the daemon gives up.
const CACHE_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything the auth service needs from the daemon.
#[derive(Debug)]
pub struct AuthServiceParams {
    pub config: Config,
    pub backend: Arc<dyn Backend>,
    pub authorities: ClusterAuthorities,
    pub host_uuid: String,
    pub readiness: Readiness,
    pub shutdown: watch::Receiver<bool>,
}

/// A dialable form of a listening address: `0.0.0.0` → `127.0.0.1`, `::` → `::1`.
fn dialable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// Creates the built-in roles (`access`, `editor`, `auditor`) unless they exist: an
/// admin may have edited them, and that edit stands.
async fn seed_builtin_roles(backend: &dyn Backend) -> Result<()> {
    for role in Role::builtins() {
        let key = Key::new(format!("/roles/{}", role.name()))?;
        let document = role.to_json()?;
        match backend.create(NewItem::new(key, document)).await {
            Ok(_) | Err(BackendError::AlreadyExists { .. }) => {}
            Err(err) => return Err(err).context("creating the built-in roles"),
        }
    }
    Ok(())
}

fn second_factor(config: &Config) -> SecondFactor {
    config.auth_service.authentication.second_factor.into()
}

/// The auth server's TLS config under the current CAs: it trusts every CA still in its
/// grace period.
fn server_tls(
    server: &LocalIdentity,
    authorities: &ClusterAuthorities,
) -> Result<Arc<jumpgate_api::ServerConfig>> {
    let trusted = authorities.tls.trusted_cert_pems().concat();
    Ok(
        TlsCredentials::from_pem(&server.issue(authorities)?, &server.key_pem, &trusted)?
            .server_config()?,
    )
}

/// Writes the admin identity `jctl` uses, under the current CAs.
fn write_admin_identity(
    admin: &LocalIdentity,
    authorities: &ClusterAuthorities,
    dir: &std::path::Path,
    auth_addr: SocketAddr,
) -> Result<()> {
    identity::write(
        dir,
        &IdentityFiles {
            cert_pem: admin.issue(authorities)?,
            key_pem: admin.key_pem.clone(),
            ca_pem: authorities.tls.trusted_cert_pems().concat(),
            auth_addr: Some(dialable(auth_addr).to_string()),
        },
    )
}

/// Runs until shutdown. Errors are fatal to the daemon.
pub async fn run(params: AuthServiceParams) -> Result<()> {
    let AuthServiceParams {
        config,
        backend,
        authorities,
        host_uuid,
        readiness,
        shutdown,
    } = params;
    let data_dir = config.jumpgate.data_dir.clone();
    let audit =
        crate::audit_store::open(&data_dir, &config.jumpgate.storage.audit_events_uri).await?;
    seed_builtin_roles(backend.as_ref()).await?;
    let prefixes = AuthServer::CACHED_PREFIXES
        .iter()
        .map(|prefix| Key::new(*prefix))
        .collect::<Result<Vec<_>, _>>()?;
    let cache = StateCache::start(backend.clone(), prefixes);
    readiness.not_ready("auth", "loading the cluster state cache".to_string());
    cache
        .wait_ready(CACHE_READY_TIMEOUT)
        .await
        .context("loading the cluster state cache")?;

    let listen = &config.auth_service.listen_addr;
    let listener = TcpListener::bind((listen.host.as_str(), listen.port))
        .await
        .with_context(|| format!("auth_service.listen_addr: cannot listen on {listen}"))?;
    let bound = listener.local_addr().context("auth listener address")?;

    // The server's certificate names the fixed cluster-internal name every client
    // checks, plus the addresses people configure, for tools that check those.
    let mut dns_names = vec![AUTH_SERVER_NAME.to_string(), "localhost".to_string()];
    let mut ips = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    for addr in std::iter::once(listen).chain(config.auth_service.public_addr.iter()) {
        match addr.host.parse::<IpAddr>() {
            Ok(ip) if !ip.is_unspecified() && !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) if !dns_names.contains(&addr.host) => dns_names.push(addr.host.clone()),
            Err(_) => {}
        }
    }
    let server_identity = LocalIdentity::new(IdentityKind::Auth, &host_uuid, dns_names, ips)?;
    let admin_identity = LocalIdentity::new(IdentityKind::Admin, "admin", Vec::new(), Vec::new())?;
    let (tls_tx, tls_rx) = watch::channel(server_tls(&server_identity, &authorities)?);
    let admin_dir = identity::admin_dir(&data_dir);
    write_admin_identity(&admin_identity, &authorities, &admin_dir, bound)?;

    let recordings_dir = data_dir.join("log").join("sessions");
    let recordings = jumpgate_audit::FileRecordingStore::open(&recordings_dir)
        .await
        .with_context(|| format!("session recordings in {}", recordings_dir.display()))?;
    let server = AuthServer::new(AuthServerConfig {
        backend,
        audit: audit.clone(),
        recordings: Arc::new(recordings),
        authorities,
        cache: cache.clone(),
        second_factor: second_factor(&config),
        static_tokens: config.auth_service.tokens.clone(),
        tunnel_strategy: config.auth_service.tunnel_strategy,
    });

    // CA rotations (here or on another auth server) and ends of grace periods: new
    // connections get a certificate of the active CA, and jctl a new admin identity.
    let follower = {
        let server = server.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            server
                .follow_authorities(async move {
                    let _ = stop.wait_for(|stopping| *stopping).await;
                })
                .await;
        })
    };
    let reissuer = {
        let mut changes = server.subscribe_authorities();
        let admin_dir = admin_dir.clone();
        tokio::spawn(async move {
            let every = identity::SERVICE_CERT_RENEW_EVERY;
            let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { break },
                    _ = renew.tick() => {}
                }
                let authorities = changes.borrow_and_update().clone();
                match server_tls(&server_identity, &authorities) {
                    Ok(config) => {
                        let _ = tls_tx.send(config);
                    }
                    Err(err) => warn!(%err, "cannot re-issue the auth server certificate"),
                }
                if let Err(err) =
                    write_admin_identity(&admin_identity, &authorities, &admin_dir, bound)
                {
                    warn!(%err, "cannot re-issue the admin identity");
                }
                info!("re-issued the auth server and admin certificates");
            }
        })
    };

    info!(addr = %bound, admin_identity = %admin_dir.display(), "auth API listening (gRPC, mutual TLS)");
    let subscription = server.subscribe_authorities();
    let stop = {
        let mut shutdown = shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        }
    };
    let serving = tokio::spawn(jumpgate_api::serve(listener, tls_rx, server, stop));
    readiness.ready("auth");
    // A local proxy reaches this auth API, so it starts once the API serves.
    let proxy = if config.proxy_service.enabled {
        let started = crate::proxy_service::start(crate::proxy_service::ProxyServiceParams {
            config: config.clone(),
            auth_addr: dialable(bound).to_string(),
            credentials: crate::proxy_service::ProxyCredentials::Local(subscription),
            host_uuid: host_uuid.clone(),
            readiness: readiness.clone(),
            shutdown: shutdown.clone(),
        })
        .await;
        match started {
            Ok(proxy) => Some(proxy),
            Err(err) => {
                serving.abort();
                follower.abort();
                reissuer.abort();
                cache.close();
                if let Err(err) = audit.close().await {
                    warn!(%err, "closing the audit log failed");
                }
                return Err(err.context("proxy service"));
            }
        }
    } else {
        None
    };
    // The SSH service of this host joins its own cluster, through the local proxy.
    let agent = if config.ssh_service.enabled {
        let (server, tunnel) = if proxy.is_some() {
            let addr_file = config.jumpgate.data_dir.join("proxy_addr");
            let proxy_addr = std::fs::read_to_string(&addr_file)
                .ok()
                .and_then(|text| text.trim().parse::<SocketAddr>().ok())
                .map(dialable)
                .with_context(|| {
                    format!(
                        "cannot read the proxy's address from {}",
                        addr_file.display()
                    )
                })?;
            (proxy_addr.to_string(), true)
        } else {
            (dialable(bound).to_string(), false)
        };
        readiness.register("agent", "joining the cluster");
        let local = crate::agent_service::run_local(
            config.clone(),
            host_uuid.clone(),
            server,
            tunnel,
            readiness.clone(),
            shutdown.clone(),
        );
        let readiness = readiness.clone();
        Some(tokio::spawn(async move {
            if let Err(err) = local.await {
                let reason = format!("{err:#}");
                error!(err = %reason, "the local ssh service cannot run");
                readiness.not_ready("agent", reason);
            }
        }))
    } else {
        None
    };
    let served = serving.await;
    if let Some(agent) = agent {
        let _ = agent.await;
    }
    if let Some(proxy) = proxy {
        let _ = proxy.await;
    }
    cache.close();
    let _ = follower.await;
    reissuer.abort();
    // Every event appended has been answered only after it was stored; closing flushes
    // the stores' handles cleanly.
    if let Err(err) = audit.close().await {
        warn!(%err, "closing the audit log failed");
    }
    served
        .map_err(|err| anyhow::anyhow!("the auth API server stopped unexpectedly: {err}"))?
        .context("auth API server")?;
    Ok(())
}
