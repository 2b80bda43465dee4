//! The auth service's lifecycle in a daemon: the audit log, the built-in roles, the
//! watch-fed cache, the auth server's own TLS identity, the admin identity `jctl` uses,
//! and the gRPC API on `auth_service.listen_addr`, served until the daemon's
//! [`CancellationToken`] is cancelled.
//!
//! [`start`] returns once the API serves, with a [`RunningAuth`] the daemon composes the
//! other services from: the CAs to issue a local proxy's identity from, and a join token
//! for the host's own SSH service.

use crate::service::{AuthServer, AuthServerConfig};
use crate::{CacheError, ClusterAuthorities, LocalIdentity, StateCache};
use jumpgate_api::{AUTH_SERVER_NAME, ApiError, PemIdentity, proto};
use jumpgate_audit::{AuditLog, RecordingStore};
use jumpgate_backend::{Backend, BackendError, Key, NewItem};
use jumpgate_pki::{IdentityKind, PkiError, TlsCa};
use jumpgate_telemetry::Readiness;
use jumpgate_types::config::{SessionsStore, SessionsUri};
use jumpgate_types::{Config, Role};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long the first load of the cache may take before the daemon gives up.
const CACHE_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the join token for the host's own SSH service lives (it is used at once).
const LOCAL_JOIN_TOKEN_TTL: Duration = Duration::from_secs(300);

/// Why the auth service cannot start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AuthServiceError {
    #[error("opening the audit log: {0}")]
    Audit(#[source] jumpgate_audit::Error),
    #[error("session recordings in {location}: {source}")]
    Recordings {
        /// The directory or `s3://` URI.
        location: String,
        #[source]
        source: jumpgate_audit::RecordingError,
    },
    #[error("creating the built-in roles: {0}")]
    BuiltinRoles(String),
    #[error("the cluster state backend: {0}")]
    Backend(#[from] BackendError),
    #[error("loading the cluster state cache: {0}")]
    Cache(#[source] CacheError),
    #[error("auth_service.listen_addr: cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("issuing the auth service's own certificates: {0}")]
    Pki(#[from] PkiError),
    #[error("the auth service's own TLS identity: {0}")]
    Tls(#[from] ApiError),
    #[error("the admin identity for jctl: {0}")]
    AdminIdentity(#[from] jumpgate_api::admin_identity::AdminIdentityError),
    #[error("cannot make a join token for this host: {0}")]
    LocalJoinToken(String),
    #[error("the auth API server failed: {0}")]
    Serve(#[source] tonic::transport::Error),
    #[error("the auth API server stopped unexpectedly: {0}")]
    Crashed(String),
}

/// What the auth service needs from the daemon.
#[derive(Debug)]
pub struct AuthSettings {
    pub config: Config,
    pub backend: Arc<dyn Backend>,
    pub authorities: ClusterAuthorities,
    pub host_uuid: String,
    pub readiness: Readiness,
}

/// The auth service, serving.
#[derive(Debug)]
pub struct RunningAuth {
    /// The bound address (a port 0 in the config is resolved here).
    pub addr: SocketAddr,
    server: AuthServer,
    admin: watch::Receiver<Arc<PemIdentity>>,
    /// Ends once the API has stopped and the audit log is closed.
    pub task: tokio::task::JoinHandle<Result<(), AuthServiceError>>,
}

impl RunningAuth {
    /// An address of this auth API that services in this process can dial:
    /// `0.0.0.0` → `127.0.0.1`, `::` → `::1`.
    pub fn dial_addr(&self) -> SocketAddr {
        dialable(self.addr)
    }

    /// The cluster's CAs as they change (rotations, ends of grace periods).
    pub fn authorities(&self) -> watch::Receiver<Arc<ClusterAuthorities>> {
        self.server.subscribe_authorities()
    }

    /// The pins of every TLS CA now trusted, for a service of this process that joins.
    pub fn ca_pins(&self) -> Result<Vec<String>, PkiError> {
        let authorities = self.server.subscribe_authorities().borrow().clone();
        authorities
            .tls
            .trusted_cert_pems()
            .iter()
            .map(|pem| TlsCa::pin_of_cert_pem(pem))
            .collect()
    }

    /// A single-use `node` join token for this host's own SSH service, made through the
    /// API with the admin identity, so it is audited like any other. The future owns
    /// what it needs.
    pub fn local_join_token(
        &self,
    ) -> impl Future<Output = Result<String, AuthServiceError>> + Send + 'static {
        let admin = self.admin.borrow().clone();
        let addr = self.dial_addr().to_string();
        async move {
            let tls = admin.credentials()?.client_config()?;
            let mut client = jumpgate_api::connect(&addr, tls).await?;
            let created = client
                .create_join_token(proto::CreateJoinTokenRequest {
                    roles: vec!["node".to_string()],
                    ttl_seconds: i64::try_from(LOCAL_JOIN_TOKEN_TTL.as_secs()).unwrap_or(300),
                    reusable: false,
                })
                .await
                .map_err(|status| AuthServiceError::LocalJoinToken(status.message().to_string()))?;
            Ok(created.into_inner().token)
        }
    }
}

/// A dialable form of a listening address: `0.0.0.0` → `127.0.0.1`, `::` → `::1`.
pub fn dialable(addr: SocketAddr) -> SocketAddr {
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
async fn seed_builtin_roles(backend: &dyn Backend) -> Result<(), AuthServiceError> {
    for role in Role::builtins() {
        let key = Key::new(format!("/roles/{}", role.name()))?;
        let document = role
            .to_json()
            .map_err(|err| AuthServiceError::BuiltinRoles(err.to_string()))?;
        match backend.create(NewItem::new(key, document)).await {
            Ok(_) | Err(BackendError::AlreadyExists { .. }) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// The names the auth server's certificate carries: the fixed cluster-internal name
/// every client checks, plus the addresses people configure, for tools that check those.
fn server_names(config: &Config) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns_names = vec![AUTH_SERVER_NAME.to_string(), "localhost".to_string()];
    let mut ips = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let listen = &config.auth_service.listen_addr;
    for addr in std::iter::once(listen).chain(config.auth_service.public_addr.iter()) {
        match addr.host.parse::<IpAddr>() {
            Ok(ip) if !ip.is_unspecified() && !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) if !dns_names.contains(&addr.host) => dns_names.push(addr.host.clone()),
            Err(_) => {}
        }
    }
    (dns_names, ips)
}

/// Keeps the server's rustls config current with its identity.
fn server_tls(
    mut identities: watch::Receiver<Arc<PemIdentity>>,
    stop: CancellationToken,
) -> Result<watch::Receiver<Arc<jumpgate_api::ServerConfig>>, ApiError> {
    let first = identities
        .borrow_and_update()
        .credentials()?
        .server_config()?;
    let (tls_tx, tls_rx) = watch::channel(first);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                changed = identities.changed() => if changed.is_err() { return },
            }
            let renewed = identities.borrow_and_update().clone();
            match renewed
                .credentials()
                .and_then(|creds| creds.server_config())
            {
                Ok(config) => {
                    let _ = tls_tx.send(config);
                }
                Err(err) => warn!(%err, "cannot use the auth server's renewed certificate"),
            }
        }
    });
    Ok(tls_rx)
}

/// Writes the admin identity `jctl` uses into `dir` now and after every renewal.
fn keep_admin_identity_written(
    mut identities: watch::Receiver<Arc<PemIdentity>>,
    dir: PathBuf,
    auth_addr: SocketAddr,
    stop: CancellationToken,
) -> Result<(), AuthServiceError> {
    let write = move |identity: &PemIdentity| {
        jumpgate_api::admin_identity::write(
            &dir,
            &jumpgate_api::admin_identity::AdminIdentity {
                identity: identity.clone(),
                auth_addr: Some(auth_addr.to_string()),
            },
        )
    };
    write(&identities.borrow_and_update())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                changed = identities.changed() => if changed.is_err() { return },
            }
            let renewed = identities.borrow_and_update().clone();
            if let Err(err) = write(&renewed) {
                warn!(%err, "cannot write the renewed admin identity");
            }
        }
    });
    Ok(())
}

/// Starts the auth service; returns once its API serves. Errors are fatal to the daemon.
pub async fn start(
    settings: AuthSettings,
    shutdown: CancellationToken,
) -> Result<RunningAuth, AuthServiceError> {
    let AuthSettings {
        config,
        backend,
        authorities,
        host_uuid,
        readiness,
    } = settings;
    let data_dir = config.jumpgate.data_dir.clone();
    let audit =
        jumpgate_audit::open_configured(&data_dir, &config.jumpgate.storage.audit_events_uri)
            .await
            .map_err(AuthServiceError::Audit)?;
    // From here on the audit log is closed on every way out.
    let started = start_with_audit(
        config,
        backend,
        authorities,
        host_uuid,
        readiness,
        audit.clone(),
        shutdown,
    )
    .await;
    if started.is_err()
        && let Err(err) = audit.close().await
    {
        warn!(%err, "closing the audit log failed");
    }
    started
}

async fn start_with_audit(
    config: Config,
    backend: Arc<dyn Backend>,
    authorities: ClusterAuthorities,
    host_uuid: String,
    readiness: Readiness,
    audit: Arc<dyn AuditLog>,
    shutdown: CancellationToken,
) -> Result<RunningAuth, AuthServiceError> {
    let data_dir = config.jumpgate.data_dir.clone();
    seed_builtin_roles(backend.as_ref()).await?;
    let prefixes = AuthServer::CACHED_PREFIXES
        .iter()
        .map(|prefix| Key::new(*prefix))
        .collect::<Result<Vec<_>, _>>()?;
    let cache = StateCache::start(backend.clone(), prefixes);
    readiness.not_ready("auth", "loading the cluster state cache".to_string());
    if let Err(err) = cache.wait_ready(CACHE_READY_TIMEOUT).await {
        cache.close();
        return Err(AuthServiceError::Cache(err));
    }

    let listen = &config.auth_service.listen_addr;
    let listen_failed = |source| AuthServiceError::Listen {
        addr: listen.to_string(),
        source,
    };
    let listener = TcpListener::bind((listen.host.as_str(), listen.port))
        .await
        .map_err(listen_failed)?;
    let bound = listener.local_addr().map_err(listen_failed)?;

    let recordings = open_recordings(
        &data_dir,
        config.jumpgate.storage.audit_sessions_uri.as_ref(),
    )
    .await?;
    let server = AuthServer::new(AuthServerConfig {
        backend,
        audit: audit.clone(),
        recordings,
        authorities,
        cache: cache.clone(),
        second_factor: config.auth_service.authentication.second_factor,
        webauthn: config
            .auth_service
            .authentication
            .webauthn
            .as_ref()
            .map(|webauthn| crate::service::WebauthnSettings {
                rp_id: webauthn.rp_id.clone(),
                passwordless: config.auth_service.authentication.passwordless,
            }),
        static_tokens: config.auth_service.tokens.clone(),
        tunnel_strategy: config.auth_service.tunnel_strategy,
        web_idle_timeout: config.auth_service.web_idle_timeout,
        sso: crate::service::SsoSettings {
            kind: config.auth_service.authentication.kind,
            connector_name: config.auth_service.authentication.connector_name.clone(),
            local_auth: config.auth_service.authentication.local_auth,
        },
    });

    // The server's and the admin's certificates follow CA rotations (here or on another
    // auth server) and are renewed before they run out.
    let stop = {
        let shutdown = shutdown.clone();
        move || shutdown.clone().cancelled_owned()
    };
    let (dns_names, ips) = server_names(&config);
    let server_identity = LocalIdentity::new(IdentityKind::Auth, &host_uuid, dns_names, ips)?
        .follow(server.subscribe_authorities(), stop())?;
    let tls = server_tls(server_identity, shutdown.clone())?;
    let admin = LocalIdentity::new(IdentityKind::Admin, "admin", Vec::new(), Vec::new())?
        .follow(server.subscribe_authorities(), stop())?;
    let admin_dir = jumpgate_api::admin_identity::dir(&data_dir);
    keep_admin_identity_written(
        admin.clone(),
        admin_dir.clone(),
        dialable(bound),
        shutdown.clone(),
    )?;
    let follower = {
        let server = server.clone();
        let stopped = stop();
        tokio::spawn(async move { server.follow_authorities(stopped).await })
    };

    info!(addr = %bound, admin_identity = %admin_dir.display(), "auth API listening (gRPC, mutual TLS)");
    let serving = tokio::spawn(jumpgate_api::serve(listener, tls, server.clone(), stop()));
    readiness.ready("auth");
    let task = tokio::spawn(async move {
        let served = serving.await;
        cache.close();
        let _ = follower.await;
        // Every event appended has been answered only after it was stored; closing
        // flushes the stores' handles cleanly.
        if let Err(err) = audit.close().await {
            warn!(%err, "closing the audit log failed");
        }
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(AuthServiceError::Serve(err)),
            Err(err) => Err(AuthServiceError::Crashed(err.to_string())),
        }
    });
    Ok(RunningAuth {
        addr: bound,
        server,
        admin,
        task,
    })
}

/// Checks what the config's own validation cannot (it does no I/O): a `postgresql://`
/// URI's parameters and the TLS files they name. Called before any socket is bound.
pub fn check_recordings_uri(uri: &SessionsUri) -> Result<(), AuthServiceError> {
    match uri.store() {
        SessionsStore::Postgres => jumpgate_audit::PostgresRecordingStore::check_uri(uri.as_str())
            .map_err(|source| AuthServiceError::Recordings {
                location: uri.to_string(),
                source,
            }),
        _ => Ok(()),
    }
}

/// Opens the recording store `jumpgate.storage.audit_sessions_uri` names: files in its
/// directory, an S3 bucket (credentials from the standard AWS chain), or a PostgreSQL
/// database (tables created if missing); without it, files in `DATA_DIR/log/sessions`.
pub async fn open_recordings(
    data_dir: &std::path::Path,
    uri: Option<&SessionsUri>,
) -> Result<Arc<dyn RecordingStore>, AuthServiceError> {
    let failed = |location: String| move |source| AuthServiceError::Recordings { location, source };
    let Some(uri) = uri else {
        return open_recording_files(data_dir.join("log").join("sessions")).await;
    };
    // `uri.to_string()` leaves a password out; `as_str` is the whole connection string.
    match uri.store() {
        SessionsStore::File { dir } => open_recording_files(dir.clone()).await,
        SessionsStore::S3(s3) => {
            let mut options = jumpgate_audit::S3Options::new(&s3.bucket);
            options.prefix = s3.prefix.clone();
            options.region = s3.region.clone();
            options.endpoint = s3.endpoint.clone();
            options.path_style = s3.path_style;
            options.use_fips = s3.use_fips_endpoint;
            options.sse = s3.sse.clone();
            options.sse_kms_key = s3.sse_kms_key.clone();
            options.acl = s3.acl.clone();
            let store = jumpgate_audit::S3RecordingStore::open(options)
                .await
                .map_err(failed(uri.to_string()))?;
            Ok(Arc::new(store))
        }
        SessionsStore::Postgres => {
            let store = jumpgate_audit::PostgresRecordingStore::open(uri.as_str())
                .await
                .map_err(failed(uri.to_string()))?;
            Ok(Arc::new(store))
        }
        other => Err(AuthServiceError::Recordings {
            location: format!("{other:?}"),
            source: jumpgate_audit::RecordingError::StoreConfig {
                reason: "this kind of recording store is not supported by this build".into(),
            },
        }),
    }
}

async fn open_recording_files(
    dir: std::path::PathBuf,
) -> Result<Arc<dyn RecordingStore>, AuthServiceError> {
    let store = jumpgate_audit::FileRecordingStore::open(&dir)
        .await
        .map_err(|source| AuthServiceError::Recordings {
            location: dir.display().to_string(),
            source,
        })?;
    info!(dir = %dir.display(), "session recordings are stored in files");
    Ok(Arc::new(store))
}
