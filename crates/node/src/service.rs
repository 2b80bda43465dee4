//! The agent's lifecycle in a daemon: the settings it takes from the config, joining
//! (once, retrying while the cluster is unreachable), then [`crate::run`] until the
//! daemon's [`CancellationToken`] is cancelled. A standalone proxy joins the same way
//! ([`load_or_join_retrying`] with the `proxy` role).

use crate::join::JoinSpec;
use crate::{AgentConfig, AgentError, HostIdentity};
use jumpgate_telemetry::Readiness;
use jumpgate_types::Config;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The agent's settings from the config: it joins, heartbeats and tunnels through
/// `jumpgate.proxy_server`, or (without a tunnel) reaches `jumpgate.auth_server`.
pub fn agent_config(config: &Config, host_uuid: &str) -> Result<AgentConfig, AgentError> {
    let global = &config.jumpgate;
    let (server, tunnel) = match (&global.proxy_server, &global.auth_server) {
        (Some(proxy), _) => (proxy.to_string(), true),
        (None, Some(auth)) => (auth.to_string(), false),
        (None, None) => {
            return Err(AgentError::Config(
                "ssh_service needs jumpgate.proxy_server (the proxy's public address) or \
                 jumpgate.auth_server to join a cluster"
                    .to_string(),
            ));
        }
    };
    Ok(agent_settings(config, host_uuid, server, tunnel))
}

/// The agent's settings, joining and heartbeating through `server` (the proxy's public
/// port when `tunnel`, else an auth server).
pub fn agent_settings(
    config: &Config,
    host_uuid: &str,
    server: String,
    tunnel: bool,
) -> AgentConfig {
    let global = &config.jumpgate;
    let host_name = global.nodename.clone().unwrap_or_else(|| {
        let os_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_string())
            .unwrap_or_default();
        // Auth refuses loopback names in host certificates (any host could answer for
        // them): a host that calls itself localhost (an unset name) joins by its UUID.
        if os_name.is_empty() || os_name.eq_ignore_ascii_case("localhost") {
            if !os_name.is_empty() {
                warn!(
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
        token: configured_join_token(config),
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
        dial: jumpgate_api::DialOptions::default(),
    }
}

/// The join token of the config: `auth_token`, or `join_params.token_name`.
pub fn configured_join_token(config: &Config) -> Option<String> {
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

/// The identity stored in `data_dir`, or a new one from joining, retrying with backoff
/// while the cluster is unreachable (reported as `component` not ready). `Ok(None)` when
/// `shutdown` came first; an error when the join failed for good (a refused token, an
/// unusable config): waiting will not fix it.
pub async fn load_or_join_retrying(
    data_dir: &Path,
    token: Option<&str>,
    params: JoinSpec<'_>,
    component: &'static str,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<Option<HostIdentity>, AgentError> {
    let mut backoff = crate::tunnel::Backoff::default();
    loop {
        match crate::load_or_join(data_dir, token, params.clone()).await {
            Ok(identity) => return Ok(Some(identity)),
            Err(AgentError::Unreachable(err)) => {
                readiness.not_ready(component, format!("joining: {err}"));
                warn!(%err, component, "cannot reach the cluster to join; retrying");
            }
            Err(err) => return Err(err),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(backoff.next_delay().max(Duration::from_millis(200))) => {}
        }
    }
}

/// Joins (retrying while the cluster is unreachable) with `agent.token`, then runs the
/// agent until `shutdown`. A refused join or an unusable config is an error: waiting will
/// not fix it.
pub async fn join_and_run(
    agent: AgentConfig,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let identity = load_or_join_retrying(
        &agent.data_dir,
        agent.token.as_deref(),
        agent.join_spec(),
        "agent",
        &readiness,
        &shutdown,
    )
    .await?;
    let Some(identity) = identity else {
        return Ok(());
    };
    readiness.ready("agent");
    crate::run(agent, identity, shutdown).await;
    Ok(())
}
