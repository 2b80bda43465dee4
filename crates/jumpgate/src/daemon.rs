//! `jumpgate start`: runs the services the config enables until SIGTERM/SIGINT.
//!
//! The order matters: everything that can be checked (config, files it names, the data
//! directory lock, the listening addresses) is checked before the daemon reports itself
//! started, so a bad deployment fails at once with a clear message instead of later.

use crate::auth_service::AuthServiceParams;
use crate::datadir;
use crate::diag::{self, Readiness};
use crate::metrics::{MeteredBackend, Metrics};
use crate::storage::StoragePlan;
use anyhow::{Context, Result};
use jumpgate_auth::{AuthError, ClusterAuthorities};
use jumpgate_backend::{Backend, BackendError, Key};
use jumpgate_types::Config;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// How often the cluster-state backend is probed for `/readyz`.
const BACKEND_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long in-flight work may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the daemon. `dev` adds the getting-started banner.
pub async fn run(config: Config, dev: bool) -> Result<()> {
    let lock = datadir::lock(&config.jumpgate.data_dir)?;
    let host_uuid = datadir::host_uuid(lock.dir())?;
    let storage = if config.auth_service.enabled {
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
    let metrics = Metrics::new().context("setting up metrics")?;
    let readiness = Readiness::default();
    let diag_listener = match &config.jumpgate.diag_addr {
        Some(addr) => Some(
            TcpListener::bind((addr.host.as_str(), addr.port))
                .await
                .with_context(|| format!("jumpgate.diag_addr: cannot listen on {addr}"))?,
        ),
        None => None,
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();

    info!(
        version = env!("CARGO_PKG_VERSION"),
        %host_uuid,
        data_dir = %lock.dir().display(),
        "jumpgate starting"
    );

    // A component that cannot go on (e.g. a corrupt database) reports here and the
    // daemon exits non-zero instead of limping along.
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<anyhow::Error>(1);
    if let Some(plan) = storage {
        readiness.register("backend", "connecting");
        readiness.register("auth", "waiting for the cluster state backend");
        tasks.spawn(run_backend(
            plan,
            config.clone(),
            host_uuid.to_string(),
            cluster_name(&config),
            metrics.clone(),
            readiness.clone(),
            shutdown_rx.clone(),
            fatal_tx.clone(),
        ));
    }
    if config.ssh_service.enabled && !config.auth_service.enabled {
        readiness.register("agent", "joining the cluster");
        tasks.spawn(crate::agent_service::run(
            config.clone(),
            host_uuid.to_string(),
            readiness.clone(),
            shutdown_rx.clone(),
            fatal_tx.clone(),
        ));
    }
    if config.proxy_service.enabled && !config.auth_service.enabled {
        readiness.register("proxy", "joining the cluster");
        tasks.spawn(crate::proxy_service::run_standalone(
            config.clone(),
            host_uuid.to_string(),
            readiness.clone(),
            shutdown_rx.clone(),
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
            let router = diag::router(readiness.clone(), metrics.clone());
            let mut stop = shutdown_rx.clone();
            tasks.spawn(async move {
                let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stopping| *stopping).await;
                });
                if let Err(err) = serve.await {
                    error!(%err, "diagnostics listener failed");
                }
            });
            Some(addr)
        }
        None => None,
    };

    if dev {
        // Printed once the proxy has bound its port (the banner shows it), 15 s at
        // most; meanwhile the daemon goes on (a fatal error must still stop it).
        let readiness = readiness.clone();
        let config = config.clone();
        let stopping = shutdown_rx.clone();
        tasks.spawn(async move {
            let waited = tokio::time::Instant::now();
            while waited.elapsed() < Duration::from_secs(15)
                && !*stopping.borrow()
                && readiness
                    .snapshot()
                    .get("proxy")
                    .is_none_or(Option::is_some)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if !*stopping.borrow() {
                print_dev_banner(&config, diag_addr);
            }
        });
    }
    info!("jumpgate started");

    let outcome = tokio::select! {
        signal = wait_for_shutdown_signal() => {
            info!(signal = signal?, "shutting down");
            Ok(())
        }
        Some(err) = fatal_rx.recv() => {
            error!(err = format!("{err:#}"), "shutting down after a fatal error");
            Err(err)
        }
    };
    let _ = shutdown_tx.send(true);
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

/// Opens the cluster-state backend (retrying while it is unreachable, so a daemon can
/// start before etcd does) and keeps probing it for `/readyz`.
#[allow(clippy::too_many_arguments)]
async fn run_backend(
    plan: StoragePlan,
    config: Config,
    host_uuid: String,
    cluster: String,
    metrics: Metrics,
    readiness: Readiness,
    mut shutdown: watch::Receiver<bool>,
    fatal: tokio::sync::mpsc::Sender<anyhow::Error>,
) {
    let description = plan.describe();
    let mut retry = Duration::from_millis(200);
    let backend: Arc<dyn Backend> = loop {
        match plan.open().await {
            Ok(backend) => break Arc::new(MeteredBackend::new(backend, metrics.clone())),
            Err(err) => {
                metrics.backend_up.set(0);
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
        if !backoff(&mut retry, &mut shutdown).await {
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
        if !backoff(&mut retry, &mut shutdown).await {
            return;
        }
    };
    let auth = tokio::spawn(crate::auth_service::run(AuthServiceParams {
        config,
        backend: backend.clone(),
        authorities,
        host_uuid,
        readiness: readiness.clone(),
        shutdown: shutdown.clone(),
    }));
    let fatal_auth = fatal.clone();
    let auth = tokio::spawn(async move {
        match auth.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                let _ = fatal_auth.send(err.context("auth service")).await;
            }
            Err(err) => {
                let _ = fatal_auth
                    .send(anyhow::anyhow!(
                        "the auth service stopped unexpectedly: {err}"
                    ))
                    .await;
            }
        }
    });
    // A key nobody writes: NotFound is the healthy answer.
    let probe_key = Key::root();
    loop {
        match backend.get(&probe_key).await {
            Ok(_) | Err(BackendError::NotFound { .. }) => {
                metrics.backend_up.set(1);
                readiness.ready("backend");
            }
            Err(err) => {
                metrics.backend_up.set(0);
                warn!(%err, "cluster state backend probe failed");
                readiness.not_ready("backend", format!("{description}: {err}"));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(BACKEND_PROBE_INTERVAL) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => break,
        }
    }
    // The auth API stops first (it drains its calls and closes the audit log), then
    // the backend it writes to.
    let _ = auth.await;
    // Close now (SQLite checkpoints its WAL), not whenever the last handle goes.
    if let Err(err) = backend.close().await {
        warn!(%err, "closing the cluster state backend failed");
    }
}

/// Waits `retry` (then doubles it, up to 10 s) unless the daemon is shutting down;
/// `false` means stop.
async fn backoff(retry: &mut Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(*retry) => {}
        _ = shutdown.wait_for(|stopping| *stopping) => return false,
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

fn print_dev_banner(config: &Config, diag_addr: Option<std::net::SocketAddr>) {
    let data_dir = config.jumpgate.data_dir.display();
    let state = crate::storage::sqlite_path(config)
        .map(|path| path.display().to_string())
        .unwrap_or_else(|| "(not sqlite)".to_string());
    let diag = diag_addr
        .map(|addr| format!("http://{addr}/readyz"))
        .unwrap_or_else(|| "off".to_string());
    // The bound addresses (a port 0 in the config means "any").
    let bound = |file: &str, configured: String| {
        std::fs::read_to_string(config.jumpgate.data_dir.join(file))
            .map(|addr| addr.trim().to_string())
            .unwrap_or(configured)
    };
    let auth_addr = bound(
        "admin/auth_addr",
        config.auth_service.listen_addr.to_string(),
    );
    let proxy_addr = bound(
        "proxy_addr",
        config.proxy_service.web_listen_addr.to_string(),
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

async fn wait_for_shutdown_signal() -> Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => {
                result.context("waiting for SIGINT")?;
                Ok("SIGINT")
            }
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        Ok("Ctrl-C")
    }
}
