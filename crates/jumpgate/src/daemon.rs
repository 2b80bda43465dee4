//! `jumpgate start`: runs the services the config enables until SIGTERM/SIGINT (SIGHUP
//! is logged and ignored, except by `--dev`).
//!
//! The order matters: everything that can be checked (config, files it names, the data
//! directory lock, the listening addresses) is checked before the daemon reports itself
//! started, so a bad deployment fails at once with a clear message instead of later.

use crate::datadir;
use crate::diag::{self, Readiness};
use crate::storage::StoragePlan;
use anyhow::{Context, Result};
use jumpgate_auth::lifecycle::{AuthSettings, RunningAuth, dialable};
use jumpgate_auth::{AuthError, ClusterAuthorities, LocalIdentity};
use jumpgate_backend::{Backend, BackendError, Key, MeteredBackend};
use jumpgate_node::HostIdentity;
use jumpgate_pki::IdentityKind;
use jumpgate_proxy::service::{ProxyIdentity, ProxySettings, RunningProxy};
use jumpgate_types::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Fatal errors of a component: the daemon stops and exits non-zero.
type Fatal = mpsc::Sender<anyhow::Error>;

/// The addresses the services bound (a port 0 in the config means "any"), for the banner.
#[derive(Debug, Clone, Copy)]
struct Bound {
    auth: SocketAddr,
    proxy: Option<SocketAddr>,
}

/// How often the cluster-state backend is probed for `/readyz`.
const BACKEND_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a probe may take before the backend counts as down: well under the backends'
/// own request timeouts, so a store that stopped answering (a network cut, not a refusal)
/// shows on `/readyz` within seconds.
const BACKEND_PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long in-flight work may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the daemon. `dev` adds the getting-started banner.
pub async fn run(config: Config, dev: bool) -> Result<()> {
    let lock = datadir::lock(&config.jumpgate.data_dir)?;
    let host_uuid = datadir::host_uuid(lock.dir())?;
    let storage = if config.auth_service.enabled {
        // Every store is checked now, before any socket is bound.
        jumpgate_audit::parse_uris(&config.jumpgate.storage.audit_events_uri)
            .context("jumpgate.storage.audit_events_uri")?;
        if let Some(uri) = &config.jumpgate.storage.audit_sessions_uri {
            jumpgate_auth::lifecycle::check_recordings_uri(uri)
                .context("jumpgate.storage.audit_sessions_uri")?;
        }
        Some(StoragePlan::from_config(&config)?)
    } else {
        None
    };
    // `storage.path` may put the SQLite file outside data_dir: lock its directory too,
    // so two daemons can never share one database.
    let _storage_lock = match crate::storage::sqlite_path(&config) {
        Some(db) if storage.is_some() => match db.parent() {
            Some(dir) if dir != lock.dir() => Some(datadir::lock(dir)?),
            _ => None,
        },
        _ => None,
    };
    // The services record into one registry; building it now dates the process start.
    if !jumpgate_telemetry::init() {
        warn!("the metrics could not be built; /metrics serves none");
    }
    let readiness = Readiness::default();
    let diag_listener = match &config.jumpgate.diag_addr {
        Some(addr) => Some(
            TcpListener::bind((addr.host.as_str(), addr.port))
                .await
                .with_context(|| format!("jumpgate.diag_addr: cannot listen on {addr}"))?,
        ),
        None => None,
    };

    let shutdown = CancellationToken::new();
    let (bound_tx, mut bound_rx) = watch::channel(None::<Bound>);
    let mut tasks = tokio::task::JoinSet::new();

    info!(
        version = env!("CARGO_PKG_VERSION"),
        %host_uuid,
        data_dir = %lock.dir().display(),
        "jumpgate starting"
    );

    // A component that cannot go on (e.g. a corrupt database) reports here and the
    // daemon exits non-zero instead of limping along.
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<anyhow::Error>(1);
    if let Some(plan) = storage {
        readiness.register("backend", "connecting");
        readiness.register("auth", "waiting for the cluster state backend");
        tasks.spawn(run_auth_host(
            plan,
            AuthHost {
                config: config.clone(),
                host_uuid: host_uuid.to_string(),
                cluster: cluster_name(&config),
                readiness: readiness.clone(),
                bound: bound_tx,
            },
            shutdown.clone(),
            fatal_tx.clone(),
        ));
    }
    if config.ssh_service.enabled && !config.auth_service.enabled {
        readiness.register("agent", "joining the cluster");
        tasks.spawn(run_joined_agent(
            config.clone(),
            host_uuid.to_string(),
            readiness.clone(),
            shutdown.clone(),
            fatal_tx.clone(),
        ));
    }
    if config.proxy_service.enabled && !config.auth_service.enabled {
        readiness.register("proxy", "joining the cluster");
        tasks.spawn(run_joined_proxy(
            config.clone(),
            host_uuid.to_string(),
            readiness.clone(),
            shutdown.clone(),
            fatal_tx.clone(),
        ));
    }
    drop(fatal_tx);

    let diag_addr = match diag_listener {
        Some(listener) => {
            let addr = listener
                .local_addr()
                .context("diagnostics listener address")?;
            info!(%addr, "diagnostics listening (/healthz, /readyz, /metrics)");
            let router = diag::router(readiness.clone());
            let stop = shutdown.clone().cancelled_owned();
            tasks.spawn(async move {
                let serve = axum::serve(listener, router).with_graceful_shutdown(stop);
                if let Err(err) = serve.await {
                    error!(%err, "diagnostics listener failed");
                }
            });
            Some(addr)
        }
        None => None,
    };

    if dev {
        // Printed once the services have bound their ports (the banner shows them), 15 s
        // at most; meanwhile the daemon goes on (a fatal error must still stop it).
        let config = config.clone();
        let stopping = shutdown.clone();
        tasks.spawn(async move {
            let waited = tokio::time::timeout(
                Duration::from_secs(15),
                bound_rx.wait_for(|bound| bound.is_some_and(|bound| bound.proxy.is_some())),
            );
            let stopped = tokio::select! {
                () = stopping.cancelled() => true,
                _ = waited => false,
            };
            if !stopped {
                print_dev_banner(&config, diag_addr, *bound_rx.borrow());
            }
        });
    }
    // Caught from now on: once "jumpgate started" is logged, a signal is handled here.
    let mut signals = Signals::install()?;
    info!("jumpgate started");

    let outcome = tokio::select! {
        signal = signals.shutdown(dev) => {
            info!(signal = signal?, "shutting down");
            Ok(())
        }
        Some(err) = fatal_rx.recv() => {
            error!(err = jumpgate_api::client::error_chain(err.as_ref()), "shutting down after a fatal error");
            Err(err)
        }
    };
    shutdown.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(grace = ?SHUTDOWN_GRACE, "some tasks did not stop in time; exiting anyway");
    }
    drop(lock);
    info!("jumpgate stopped");
    outcome
}

/// What the auth host's services need from the daemon.
struct AuthHost {
    config: Config,
    host_uuid: String,
    cluster: String,
    readiness: Readiness,
    /// Told the bound addresses once the services serve.
    bound: watch::Sender<Option<Bound>>,
}

/// The services of a host with `auth_service`: opens the cluster-state backend (retrying
/// while it is unreachable, so a daemon can start before etcd does), loads or creates the
/// cluster's CAs, starts the auth service, then the proxy and the SSH service next to it
/// when enabled, and keeps probing the backend for `/readyz`.
async fn run_auth_host(
    plan: StoragePlan,
    host: AuthHost,
    shutdown: CancellationToken,
    fatal: Fatal,
) {
    let AuthHost {
        config,
        host_uuid,
        cluster,
        readiness,
        bound,
    } = host;
    let description = plan.describe();
    let mut retry = Duration::from_millis(200);
    let backend: Arc<dyn Backend> = loop {
        match plan.open().await {
            Ok(backend) => break Arc::new(MeteredBackend::new(backend)),
            Err(err) => {
                jumpgate_telemetry::set(|m| &m.backend_up, 0);
                readiness.not_ready("backend", format!("{description}: {err}"));
                if !err.is_retryable() {
                    // Corrupt file, newer schema, bad settings: waiting will not fix it.
                    let _ = fatal
                        .send(anyhow::Error::new(err).context(format!(
                            "cannot open the cluster state backend ({description})"
                        )))
                        .await;
                    return;
                }
                warn!(%err, retry_in = ?retry, "cluster state backend unreachable");
            }
        }
        if !backoff(&mut retry, &shutdown).await {
            return;
        }
    };
    info!(backend = %description, "cluster state backend open");
    if matches!(plan, StoragePlan::Memory) {
        warn!("storage type memory: the cluster state is lost when jumpgate exits");
    }
    // The cluster's identity: created on its first start, loaded on every later one.
    let mut retry = Duration::from_millis(200);
    let authorities = loop {
        match ClusterAuthorities::load_or_create(backend.as_ref(), &cluster, SystemTime::now())
            .await
        {
            Ok(authorities) => {
                info!(
                    cluster = %authorities.cluster,
                    user_ca = %authorities.user.fingerprint(),
                    host_ca = %authorities.host.fingerprint(),
                    ca_pin = %authorities.tls.ca_pin(),
                    "cluster certificate authorities ready"
                );
                break authorities;
            }
            Err(AuthError::Backend(err)) if err.is_retryable() => {
                readiness.not_ready(
                    "auth",
                    format!("loading the certificate authorities: {err}"),
                );
                warn!(%err, retry_in = ?retry, "cannot load the certificate authorities yet");
            }
            Err(err) => {
                let _ = fatal.send(anyhow::Error::new(err)).await;
                return;
            }
        }
        if !backoff(&mut retry, &shutdown).await {
            return;
        }
    };
    let services = start_auth_host_services(
        &config,
        backend.clone(),
        authorities,
        &host_uuid,
        &readiness,
        &shutdown,
    )
    .await;
    let (auth, proxy, agent) = match services {
        Ok(services) => services,
        Err(err) => {
            let _ = fatal.send(err).await;
            // What did start stops with the daemon; the backend is closed after it.
            shutdown.cancelled().await;
            close_backend(backend.as_ref()).await;
            return;
        }
    };
    bound.send_replace(Some(Bound {
        auth: auth.addr,
        proxy: proxy.as_ref().map(|proxy| proxy.addr),
    }));
    let fatal_auth = fatal.clone();
    let auth_stopped = tokio::spawn(async move {
        let outcome = match auth.task.await {
            Ok(outcome) => outcome.map_err(|err| anyhow::Error::new(err).context("auth service")),
            Err(err) => Err(anyhow::anyhow!(
                "the auth service stopped unexpectedly: {err}"
            )),
        };
        if let Err(err) = outcome {
            let _ = fatal_auth.send(err).await;
        }
    });
    // A key nobody writes: NotFound is the healthy answer.
    let probe_key = Key::root();
    loop {
        let probe = tokio::time::timeout(BACKEND_PROBE_TIMEOUT, backend.get(&probe_key)).await;
        let failure = match probe {
            Ok(Ok(_) | Err(BackendError::NotFound { .. })) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(_) => Some(format!("no answer within {BACKEND_PROBE_TIMEOUT:?}")),
        };
        match failure {
            None => {
                jumpgate_telemetry::set(|m| &m.backend_up, 1);
                readiness.ready("backend");
            }
            Some(err) => {
                jumpgate_telemetry::set(|m| &m.backend_up, 0);
                warn!(%err, "cluster state backend probe failed");
                readiness.not_ready("backend", format!("{description}: {err}"));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(BACKEND_PROBE_INTERVAL) => {}
            () = shutdown.cancelled() => break,
        }
    }
    // The services stop first (the auth API drains its calls and closes the audit log),
    // then the backend they write to.
    if let Some(agent) = agent {
        let _ = agent.await;
    }
    if let Some(proxy) = proxy {
        let _ = proxy.task.await;
    }
    let _ = auth_stopped.await;
    close_backend(backend.as_ref()).await;
}

/// Closes now (SQLite checkpoints its WAL), not whenever the last handle goes.
async fn close_backend(backend: &dyn Backend) {
    if let Err(err) = backend.close().await {
        warn!(%err, "closing the cluster state backend failed");
    }
}

/// The auth service, then (a local proxy reaches its API, so once it serves) the proxy
/// with an identity issued here, then this host's SSH service, which joins its own cluster
/// like any agent: through the local proxy (or the auth API when no proxy runs), with a
/// single-use token the first time; later starts reuse the stored identity.
async fn start_auth_host_services(
    config: &Config,
    backend: Arc<dyn Backend>,
    authorities: ClusterAuthorities,
    host_uuid: &str,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<(
    RunningAuth,
    Option<RunningProxy>,
    Option<tokio::task::JoinHandle<()>>,
)> {
    let auth = jumpgate_auth::lifecycle::start(
        AuthSettings {
            config: config.clone(),
            backend,
            authorities,
            host_uuid: host_uuid.to_string(),
            readiness: readiness.clone(),
        },
        shutdown.clone(),
    )
    .await
    .context("auth service")?;
    let proxy = if config.proxy_service.enabled {
        Some(
            start_local_proxy(config, &auth, host_uuid, readiness, shutdown)
                .await
                .context("proxy service")?,
        )
    } else {
        None
    };
    let agent = if config.ssh_service.enabled {
        readiness.register("agent", "joining the cluster");
        let local = start_local_agent(
            config,
            &auth,
            proxy.as_ref(),
            host_uuid,
            readiness,
            shutdown,
        );
        let readiness = readiness.clone();
        Some(tokio::spawn(async move {
            // This host's SSH service failing does not stop the cluster's services.
            if let Err(err) = local.await {
                let reason = jumpgate_api::client::error_chain(err.as_ref());
                error!(err = %reason, "the local ssh service cannot run");
                readiness.not_ready("agent", reason);
            }
        }))
    } else {
        None
    };
    Ok((auth, proxy, agent))
}

async fn start_local_proxy(
    config: &Config,
    auth: &RunningAuth,
    host_uuid: &str,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<RunningProxy> {
    let settings = &config.proxy_service;
    let bound = jumpgate_proxy::service::bind(settings).await?;
    let names = bound.certificate_names(settings);
    let identity = LocalIdentity::new(IdentityKind::Proxy, host_uuid, names.dns, names.ips)?
        .follow(auth.authorities(), shutdown.clone().cancelled_owned())?;
    let proxy = bound
        .start(
            ProxySettings {
                config: settings.clone(),
                auth_addr: auth.dial_addr().to_string(),
                host_uuid: host_uuid.to_string(),
                readiness: readiness.clone(),
            },
            ProxyIdentity::Issued(identity),
            shutdown.clone(),
        )
        .await?;
    write_proxy_addr(config, proxy.addr)?;
    Ok(proxy)
}

/// Tells tools where the proxy listens (`DATA_DIR/proxy_addr`; see docs/proxy.md).
fn write_proxy_addr(config: &Config, addr: SocketAddr) -> Result<()> {
    let file = config.jumpgate.data_dir.join("proxy_addr");
    std::fs::write(&file, format!("{addr}\n"))
        .with_context(|| format!("cannot write {}", file.display()))
}

/// Where an agent next to a proxy tunnels: that proxy first, then every other proxy
/// `jumpgate.proxy_server` lists. Seed 000's pair of all-in-one servers lists both, so
/// each server's agent holds a tunnel to each proxy and a user on either server reaches
/// either node; with no list, only the local proxy.
fn local_agent_proxies(config: &Config, local: SocketAddr) -> String {
    let mut proxies = vec![local.to_string()];
    for addr in config
        .jumpgate
        .proxy_server
        .iter()
        .flat_map(|listed| listed.addrs())
    {
        let addr = addr.to_string();
        if !proxies.contains(&addr) {
            proxies.push(addr);
        }
    }
    proxies.join(",")
}

fn start_local_agent(
    config: &Config,
    auth: &RunningAuth,
    proxy: Option<&RunningProxy>,
    host_uuid: &str,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
    let (server, tunnel) = match proxy {
        Some(proxy) => (local_agent_proxies(config, dialable(proxy.addr)), true),
        None => (auth.dial_addr().to_string(), false),
    };
    let mut agent = jumpgate_node::service::agent_settings(config, host_uuid, server, tunnel);
    if let Some(proxy) = proxy
        && config.proxy_service.proxy_protocol
    {
        // The proxy then refuses a connection without a PROXY header; its own agent
        // sends a LOCAL one, which claims no address (DialOptions::local_header_to).
        agent.dial.local_header_to = Some(dialable(proxy.addr));
    }
    if !tunnel && agent.listen_addr.is_none() {
        warn!(
            "ssh_service runs next to the auth service without a proxy and without \
             ssh_service.listen_addr: nobody can reach it; enable proxy_service or set listen_addr"
        );
    }
    let pins = auth.ca_pins();
    let joined = HostIdentity::load(&agent.data_dir);
    let make_token = auth.local_join_token();
    let readiness = readiness.clone();
    let shutdown = shutdown.clone();
    async move {
        agent.ca_pins = pins?;
        agent.token = if joined?.is_some() {
            None
        } else {
            Some(make_token.await?)
        };
        jumpgate_node::service::join_and_run(agent, readiness, shutdown).await?;
        Ok(())
    }
}

/// The SSH service on a host without the auth service: joins through
/// `jumpgate.proxy_server` (or `auth_server`), then runs until shutdown. A refused join or
/// an unusable config is fatal: waiting will not fix it.
async fn run_joined_agent(
    config: Config,
    host_uuid: String,
    readiness: Readiness,
    shutdown: CancellationToken,
    fatal: Fatal,
) {
    let ran = match jumpgate_node::service::agent_config(&config, &host_uuid) {
        Ok(agent) => jumpgate_node::service::join_and_run(agent, readiness, shutdown).await,
        Err(err) => Err(err),
    };
    if let Err(err) = ran {
        let _ = fatal
            .send(anyhow::Error::new(err).context("agent: joining the cluster"))
            .await;
    }
}

/// A proxy on a host without the auth service: joins once through
/// `jumpgate.auth_server` (retrying while it is unreachable), then serves until shutdown.
/// A refused join or missing settings are fatal.
async fn run_joined_proxy(
    config: Config,
    host_uuid: String,
    readiness: Readiness,
    shutdown: CancellationToken,
    fatal: Fatal,
) {
    let served = async {
        let joined =
            jumpgate_proxy::service::join(&config, &host_uuid, &readiness, &shutdown).await?;
        let Some((auth_addr, joined)) = joined else {
            return Ok(());
        };
        let bound = jumpgate_proxy::service::bind(&config.proxy_service).await?;
        // Auth decided the UUID at join (the one asked for, unless another host held it).
        let host_uuid = joined.identity.host_uuid.clone();
        let proxy = bound
            .start(
                ProxySettings {
                    config: config.proxy_service.clone(),
                    auth_addr,
                    host_uuid,
                    readiness: readiness.clone(),
                },
                ProxyIdentity::Joined(Box::new(joined)),
                shutdown.clone(),
            )
            .await?;
        write_proxy_addr(&config, proxy.addr)?;
        let _ = proxy.task.await;
        anyhow::Ok(())
    };
    if let Err(err) = served.await {
        let _ = fatal.send(err.context("proxy service")).await;
    }
}

/// Waits `retry` (then doubles it, up to 10 s) unless the daemon is shutting down;
/// `false` means stop.
async fn backoff(retry: &mut Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(*retry) => {}
        () = shutdown.cancelled() => return false,
    }
    *retry = (*retry * 2).min(Duration::from_secs(10));
    true
}

/// The cluster's name: `auth_service.cluster_name`, else this host's name (as Teleport).
fn cluster_name(config: &Config) -> String {
    if let Some(name) = &config.auth_service.cluster_name {
        return name.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .or_else(|| config.jumpgate.nodename.clone())
        .unwrap_or_else(|| "jumpgate".to_string())
}

fn print_dev_banner(config: &Config, diag_addr: Option<SocketAddr>, bound: Option<Bound>) {
    let data_dir = config.jumpgate.data_dir.display();
    let state = crate::storage::sqlite_path(config)
        .map(|path| path.display().to_string())
        .unwrap_or_else(|| "(not sqlite)".to_string());
    let diag = diag_addr
        .map(|addr| format!("http://{addr}/readyz"))
        .unwrap_or_else(|| "off".to_string());
    // The bound addresses (a port 0 in the config means "any").
    let auth_addr = bound.map_or_else(
        || config.auth_service.listen_addr.to_string(),
        |bound| dialable(bound.auth).to_string(),
    );
    let proxy_addr = bound.and_then(|bound| bound.proxy).map_or_else(
        || config.proxy_service.web_listen_addr.to_string(),
        |proxy| dialable(proxy).to_string(),
    );
    // The OS account the SSH service can start sessions as: any when run as root.
    let login = std::env::var("USER")
        .ok()
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| "root".to_string());
    let node = config.jumpgate.nodename.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string())
    });
    println!(
        "Jumpgate dev cluster is running: auth, proxy and this host's SSH service.\n\
         \x20 data directory:  {data_dir}\n\
         \x20 cluster state:   {state}\n\
         \x20 diagnostics:     {diag}\n\
         \x20 auth API:        {auth_addr} (gRPC, mutual TLS)\n\
         \x20 proxy:           https://{proxy_addr}/webapi/ping (TLS routing: web, SSH, tunnels, auth API)\n\
         \x20 web UI:          https://{proxy_addr}/web (a certificate of the cluster's own CA: {data_dir}/admin/ca.pem)\n\
         \x20 back up state:   jumpgate backup create jumpgate-backup.db --data-dir {data_dir}\n\
         Next, in another terminal:\n\
         \x20 1. create a user (prints an otpauth:// URI for your authenticator app):\n\
         \x20      jctl --data-dir {data_dir} users add alice --roles access,auditor --logins {login} --password-stdin\n\
         \x20 2. log in (password, then the app's code):\n\
         \x20      jsh login --proxy {proxy_addr} --user alice --ca-cert {data_dir}/admin/ca.pem\n\
         \x20 3. connect to this host, list its recordings:\n\
         \x20      jsh ls\n\
         \x20      jsh ssh {login}@{node}\n\
         \x20      jsh recordings ls\n\
         Stop with Ctrl-C."
    );
}

/// The signals the daemon handles. SIGTERM and SIGINT stop it. SIGHUP means a reload
/// to most daemons (and to Teleport's), and its default action would end the process:
/// under systemd's `Restart=on-failure` for good, as a clean stop. A server reloads
/// nothing, so it says so and goes on; `--dev` runs in a terminal, where SIGHUP means
/// the terminal went away, and stops.
#[cfg(unix)]
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing a SIGINT handler")?,
            hangup: signal(SignalKind::hangup()).context("installing a SIGHUP handler")?,
        })
    }

    /// Waits for a signal that stops the daemon; returns its name.
    async fn shutdown(&mut self, dev: bool) -> Result<&'static str> {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return Ok("SIGINT"),
                _ = self.terminate.recv() => return Ok("SIGTERM"),
                _ = self.hangup.recv() => {
                    if dev {
                        return Ok("SIGHUP");
                    }
                    warn!(
                        "SIGHUP: jumpgate does not reload its config and goes on unchanged; \
                         to apply a change, check it (jumpgate config check -c FILE) and restart \
                         (systemctl restart jumpgate). Renewed https_keypairs files are picked \
                         up without a signal"
                    );
                }
            }
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Result<Signals> {
        Ok(Signals)
    }

    async fn shutdown(&mut self, _dev: bool) -> Result<&'static str> {
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        Ok("Ctrl-C")
    }
}
