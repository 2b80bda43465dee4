//! Runs the agent (`jumpgate_node`) on a host with `ssh_service` and without the auth
//! service: join once (token + `ca_pin`) through `proxy_server` (or `auth_server`),
//! then heartbeats, command labels, and the reverse tunnel (through a proxy only).

use crate::diag::Readiness;
use anyhow::anyhow;
use jumpgate_node::join::JoinParams;
use jumpgate_node::{AgentConfig, AgentError, HostIdentity};
use jumpgate_types::Config;
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::warn;

fn agent_config(config: &Config, host_uuid: &str) -> Result<AgentConfig, String> {
    let global = &config.jumpgate;
    let (server, tunnel) = match (&global.proxy_server, &global.auth_server) {
        (Some(proxy), _) => (proxy.to_string(), true),
        (None, Some(auth)) => (auth.to_string(), false),
        (None, None) => {
            return Err(
                "ssh_service needs jumpgate.proxy_server (the proxy's public address) or \
                 jumpgate.auth_server to join a cluster"
                    .to_string(),
            );
        }
    };
    Ok(agent_settings(config, host_uuid, server, tunnel))
}

/// The agent's settings, joining and heartbeating through `server` (the proxy's public
/// port when `tunnel`, else an auth server).
fn agent_settings(config: &Config, host_uuid: &str, server: String, tunnel: bool) -> AgentConfig {
    let global = &config.jumpgate;
    let token = configured_join_token(config);
    let host_name = global.nodename.clone().unwrap_or_else(|| {
        let os_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_string())
            .unwrap_or_default();
        // Auth refuses loopback names in host certificates (any host could answer for
        // them): a host that calls itself localhost (an unset name) joins by its UUID.
        if os_name.is_empty() || os_name.eq_ignore_ascii_case("localhost") {
            if !os_name.is_empty() {
                tracing::warn!(
                    "this host is named localhost; it joins as {host_uuid}: set jumpgate.nodename for a better name"
                );
            }
            host_uuid.to_string()
        } else {
            os_name
        }
    });
    AgentConfig {
        data_dir: global.data_dir.clone(),
        server,
        tunnel,
        token,
        ca_pins: global.ca_pin.clone(),
        host_uuid: host_uuid.to_string(),
        host_name,
        labels: config.ssh_service.labels.clone(),
        commands: config.ssh_service.commands.clone(),
        ssh_algorithms: global.ssh_algorithms.clone(),
        listen_addr: config
            .ssh_service
            .listen_addr
            .as_ref()
            .map(ToString::to_string),
    }
}

/// The join token of the config: `auth_token`, or `join_params.token_name`.
pub(crate) fn configured_join_token(config: &Config) -> Option<String> {
    let global = &config.jumpgate;
    global
        .auth_token
        .as_ref()
        .map(|token| token.expose().to_string())
        .or_else(|| {
            global
                .join_params
                .as_ref()
                .map(|params| params.token_name.expose().to_string())
        })
}

/// How an agent or a remote proxy gets its identity at start.
pub(crate) struct JoinRun<'a> {
    /// The readiness component (`agent`, `proxy`).
    pub component: &'static str,
    pub readiness: &'a Readiness,
    pub shutdown: &'a mut watch::Receiver<bool>,
    pub fatal: &'a mpsc::Sender<anyhow::Error>,
}

/// The identity stored in `data_dir`, or a new one from joining, retrying with backoff
/// while the cluster is unreachable. `None` when shutdown came first, or when the join
/// failed for good (a refused token, an unusable config), which is then sent to `fatal`:
/// waiting will not fix it.
pub(crate) async fn load_or_join_retrying(
    data_dir: &Path,
    token: Option<&str>,
    params: JoinParams<'_>,
    run: JoinRun<'_>,
) -> Option<HostIdentity> {
    let mut backoff = jumpgate_node::tunnel::Backoff::default();
    loop {
        match jumpgate_node::load_or_join(data_dir, token, params.clone()).await {
            Ok(identity) => return Some(identity),
            Err(AgentError::Unreachable(err)) => {
                run.readiness
                    .not_ready(run.component, format!("joining: {err}"));
                warn!(%err, component = run.component, "cannot reach the cluster to join; retrying");
            }
            Err(err) => {
                let _ = run
                    .fatal
                    .send(anyhow!(err).context(format!("{}: joining the cluster", run.component)))
                    .await;
                return None;
            }
        }
        tokio::select! {
            _ = run.shutdown.wait_for(|stopping| *stopping) => return None,
            () = tokio::time::sleep(backoff.next_delay().max(Duration::from_millis(200))) => {}
        }
    }
}

/// The SSH service next to the auth service in one process (`--dev`, or an all-in-one
/// config): the host joins its own cluster like any agent, through the local proxy
/// (or the auth API when no proxy runs), with a single-use token it makes with the
/// admin identity the first time; later starts reuse the stored identity.
pub async fn run_local(
    config: Config,
    host_uuid: String,
    server: String,
    tunnel: bool,
    readiness: Readiness,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut agent = agent_settings(&config, &host_uuid, server, tunnel);
    if !tunnel && agent.listen_addr.is_none() {
        warn!(
            "ssh_service runs next to the auth service without a proxy and without \
             ssh_service.listen_addr: nobody can reach it; enable proxy_service or set listen_addr"
        );
    }
    let admin = crate::identity::read(&crate::identity::admin_dir(&agent.data_dir))?;
    agent.ca_pins = admin_ca_pins(&admin.ca_pem)?;
    let token = if HostIdentity::load(&agent.data_dir)?.is_some() {
        None
    } else {
        let auth_addr = admin
            .auth_addr
            .clone()
            .ok_or_else(|| anyhow!("the admin identity does not say where the auth API is"))?;
        let mut client = jumpgate_api::connect(&auth_addr, admin.credentials()?.client_config()?)
            .await
            .map_err(|err| anyhow!("the local ssh service cannot reach the auth API: {err}"))?;
        let created = client
            .create_join_token(jumpgate_api::proto::CreateJoinTokenRequest {
                roles: vec!["node".to_string()],
                ttl_seconds: 300,
                reusable: false,
            })
            .await
            .map_err(|status| {
                anyhow!(
                    "cannot make a join token for this host: {}",
                    status.message()
                )
            })?
            .into_inner();
        Some(created.token)
    };
    let (fatal_tx, mut fatal_rx) = mpsc::channel(1);
    let identity = load_or_join_retrying(
        &agent.data_dir,
        token.as_deref(),
        agent.join_params(),
        JoinRun {
            component: "agent",
            readiness: &readiness,
            shutdown: &mut shutdown,
            fatal: &fatal_tx,
        },
    )
    .await;
    let Some(identity) = identity else {
        return match fatal_rx.try_recv() {
            Ok(err) => Err(err),
            Err(_) => Ok(()),
        };
    };
    readiness.ready("agent");
    jumpgate_node::run(agent, identity, shutdown).await;
    Ok(())
}

/// The pins of the CAs in a PEM bundle.
fn admin_ca_pins(ca_pem: &str) -> anyhow::Result<Vec<String>> {
    let mut pins = Vec::new();
    for block in ca_pem.split_inclusive("-----END CERTIFICATE-----") {
        if block.contains("BEGIN CERTIFICATE") {
            pins.push(jumpgate_pki::TlsCa::pin_of_cert_pem(block.trim())?);
        }
    }
    Ok(pins)
}

/// Joins (retrying while the cluster is unreachable), then runs until shutdown. A
/// refused join or an unusable config is fatal: waiting will not fix it.
pub async fn run(
    config: Config,
    host_uuid: String,
    readiness: Readiness,
    mut shutdown: watch::Receiver<bool>,
    fatal: mpsc::Sender<anyhow::Error>,
) {
    let agent = match agent_config(&config, &host_uuid) {
        Ok(agent) => agent,
        Err(err) => {
            let _ = fatal.send(anyhow!(err)).await;
            return;
        }
    };
    let Some(identity) = load_or_join_retrying(
        &agent.data_dir,
        agent.token.as_deref(),
        agent.join_params(),
        JoinRun {
            component: "agent",
            readiness: &readiness,
            shutdown: &mut shutdown,
            fatal: &fatal,
        },
    )
    .await
    else {
        return;
    };
    readiness.ready("agent");
    jumpgate_node::run(agent, identity, shutdown).await;
}
