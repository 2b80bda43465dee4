//! Runs the proxy next to the auth service in one process (`--dev`, or a config that
//! enables both): its identity comes straight from the cluster's CA, it reaches the
//! local auth API for the web API's calls and for the auth passthrough, and it
//! heartbeats its `proxy` presence record.
//!
//! A proxy on a host without the auth service joins with a token first; that comes
//! with the agent's join code (issue 4's next step) and is refused at start until then.

use crate::diag::Readiness;
use crate::identity::LocalIdentity;
use anyhow::{Context, Result};
use jumpgate_api::tunnel::{ALPN_REVERSE_TUNNEL, PROXY_SERVER_NAME};
use jumpgate_api::{AuthClient, TlsCredentials, proto};
use jumpgate_auth::ClusterAuthorities;
use jumpgate_pki::IdentityKind;
use jumpgate_proxy::{
    KeypairFiles, PublicCerts, Router, RouterSettings, TunnelEndpoint, Tunnels, WEB_ALPN, WebApi,
    watch_keypairs,
};
use jumpgate_types::Config;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

/// How often the proxy writes its presence record, and how long the record lives.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);
const HEARTBEAT_TTL: Duration = Duration::from_secs(45);
/// How often `https_keypairs` files are checked for a renewal.
const KEYPAIR_CHECK_EVERY: Duration = Duration::from_secs(2);

/// What the proxy needs from the daemon.
#[derive(Debug)]
pub struct ProxyServiceParams {
    pub config: Config,
    /// The local auth API (dialable).
    pub auth_addr: SocketAddr,
    pub authorities: watch::Receiver<Arc<ClusterAuthorities>>,
    pub host_uuid: String,
    pub readiness: Readiness,
    pub shutdown: watch::Receiver<bool>,
}

/// The host names and addresses clients reach the proxy at, for its dev certificate.
fn public_names(config: &Config, bound: SocketAddr) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = vec!["localhost".to_string()];
    let mut ips = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    if !bound.ip().is_unspecified() && !ips.contains(&bound.ip()) {
        ips.push(bound.ip());
    }
    for addr in &config.proxy_service.public_addr {
        match addr.host.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) if !dns.contains(&addr.host) => dns.push(addr.host.clone()),
            Err(_) => {}
        }
    }
    (dns, ips)
}

/// The TLS config reverse tunnels end in: the proxy's certificate for
/// `PROXY_SERVER_NAME` from the cluster's CA, node certificates required.
fn tunnel_tls(
    identity: &LocalIdentity,
    authorities: &ClusterAuthorities,
) -> Result<Arc<jumpgate_api::ServerConfig>> {
    let trusted = authorities.tls.trusted_cert_pems().concat();
    Ok(
        TlsCredentials::from_pem(&identity.issue(authorities)?, &identity.key_pem, &trusted)?
            .server_config_requiring_clients(&[ALPN_REVERSE_TUNNEL])?,
    )
}

/// The proxy's client of the local auth API, under the current CAs.
async fn auth_client(
    identity: &LocalIdentity,
    authorities: &ClusterAuthorities,
    auth_addr: SocketAddr,
) -> Result<AuthClient> {
    let trusted = authorities.tls.trusted_cert_pems().concat();
    let tls = TlsCredentials::from_pem(&identity.issue(authorities)?, &identity.key_pem, &trusted)?
        .client_config()?;
    Ok(jumpgate_api::connect(&auth_addr.to_string(), tls).await?)
}

fn presence_document(config: &Config, host_uuid: &str, bound: SocketAddr) -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default();
    let public_addr: Vec<String> = config
        .proxy_service
        .public_addr
        .iter()
        .map(ToString::to_string)
        .collect();
    serde_json::json!({
        "kind": "proxy",
        "version": "v2",
        "metadata": { "name": host_uuid },
        "spec": {
            "hostname": hostname,
            "addr": bound.to_string(),
            "public_addr": public_addr,
            "peer_addr": config
                .proxy_service
                .peer_public_addr
                .as_ref()
                .map(ToString::to_string),
            "version": env!("CARGO_PKG_VERSION"),
        },
    })
    .to_string()
}

/// Sets the proxy up (listener, identity, certificates; errors here are fatal to the
/// daemon) and returns the task that serves it until shutdown.
pub async fn start(params: ProxyServiceParams) -> Result<tokio::task::JoinHandle<()>> {
    let ProxyServiceParams {
        config,
        auth_addr,
        mut authorities,
        host_uuid,
        readiness,
        shutdown,
    } = params;
    readiness.not_ready("proxy", "starting".to_string());
    let settings = &config.proxy_service;
    let listen = &settings.web_listen_addr;
    let listener = TcpListener::bind((listen.host.as_str(), listen.port))
        .await
        .with_context(|| format!("proxy_service.web_listen_addr: cannot listen on {listen}"))?;
    let bound = listener.local_addr().context("proxy listener address")?;
    let current = authorities.borrow_and_update().clone();

    let identity = LocalIdentity::new(IdentityKind::Proxy, &host_uuid, Vec::new(), Vec::new())?;
    let auth = auth_client(&identity, &current, auth_addr)
        .await
        .context("the proxy cannot reach the local auth API")?;
    let public_addrs: Vec<String> = if settings.public_addr.is_empty() {
        vec![bound.to_string()]
    } else {
        settings
            .public_addr
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let web = WebApi::new(auth.clone(), public_addrs);

    // The public certificate: configured files (watched for renewal), else one from the
    // cluster's CA for the names clients use locally.
    let (dns, ips) = public_names(&config, bound);
    let dev_identity = LocalIdentity::new(IdentityKind::Proxy, &host_uuid, dns, ips)?;
    let keypairs: Vec<KeypairFiles> = settings
        .https_keypairs
        .iter()
        .map(|pair| KeypairFiles {
            cert_file: pair.cert_file.clone(),
            key_file: pair.key_file.clone(),
        })
        .collect();
    let certs = if keypairs.is_empty() {
        warn!(
            "proxy_service.https_keypairs is empty: the proxy serves a certificate from the \
             cluster's own CA, which browsers do not trust; configure a public certificate for \
             production"
        );
        PublicCerts::from_pem(&dev_identity.issue(&current)?, &dev_identity.key_pem)?
    } else {
        let certs = PublicCerts::load(&keypairs).context("proxy_service.https_keypairs")?;
        let watched = certs.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(watch_keypairs(
            watched,
            keypairs.clone(),
            KEYPAIR_CHECK_EVERY,
            async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            },
        ));
        certs
    };
    let web_tls = certs
        .server_config(&WEB_ALPN)
        .map_err(|err| anyhow::anyhow!("proxy TLS: {err}"))?;

    let tunnel_identity = LocalIdentity::new(
        IdentityKind::Proxy,
        &host_uuid,
        vec![PROXY_SERVER_NAME.to_string()],
        Vec::new(),
    )?;
    let tunnel_config = Arc::new(std::sync::RwLock::new(tunnel_tls(
        &tunnel_identity,
        &current,
    )?));
    let tunnels = Arc::new(Tunnels::default());
    let router = Router::new(
        RouterSettings {
            proxy_protocol: settings.proxy_protocol,
            auth_addrs: vec![auth_addr.to_string()],
            ..RouterSettings::default()
        },
        web_tls,
        web.clone(),
        Some(TunnelEndpoint {
            tls: tunnel_config.clone(),
            tunnels: tunnels.clone(),
            cluster: current.cluster.clone(),
        }),
    );
    let addr_file = config.jumpgate.data_dir.join("proxy_addr");
    std::fs::write(&addr_file, format!("{bound}\n"))
        .with_context(|| format!("cannot write {}", addr_file.display()))?;

    // Heartbeats, and a new identity (and dev certificate) after CA rotations.
    let follower = {
        let mut auth = auth;
        let mut shutdown = shutdown.clone();
        let document = presence_document(&config, &host_uuid, bound);
        let keep_dev_cert = keypairs.is_empty();
        let certs = certs.clone();
        let web = web.clone();
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
            let stopping = async move {
                let _ = shutdown.wait_for(|stopping| *stopping).await;
            };
            tokio::pin!(stopping);
            loop {
                tokio::select! {
                    () = &mut stopping => return,
                    _ = beat.tick() => {
                        let sent = auth
                            .heartbeat(proto::HeartbeatRequest {
                                document: document.clone(),
                                ttl_seconds: i64::try_from(HEARTBEAT_TTL.as_secs()).unwrap_or(45),
                            })
                            .await;
                        if let Err(status) = sent {
                            warn!(error = %status.message(), "proxy heartbeat failed");
                        }
                    }
                    changed = authorities.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let current = authorities.borrow_and_update().clone();
                        match auth_client(&identity, &current, auth_addr).await {
                            Ok(client) => {
                                auth = client.clone();
                                web.set_auth_client(client);
                            }
                            Err(err) => warn!(%err, "cannot renew the proxy's identity"),
                        }
                        match tunnel_tls(&tunnel_identity, &current) {
                            Ok(config) => {
                                *tunnel_config
                                    .write()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
                            }
                            Err(err) => warn!(%err, "cannot renew the proxy's tunnel certificate"),
                        }
                        if keep_dev_cert {
                            let renewed = dev_identity.issue(&current).and_then(|cert| {
                                Ok(certs.replace_pem(&cert, &dev_identity.key_pem)?)
                            });
                            if let Err(err) = renewed {
                                warn!(%err, "cannot renew the proxy's certificate");
                            }
                        }
                        info!("the proxy follows the rotated certificate authorities");
                    }
                }
            }
        })
    };

    info!(addr = %bound, proxy_protocol = settings.proxy_protocol, "proxy listening (TLS routing: web API, auth API passthrough, reverse tunnels)");
    readiness.ready("proxy");
    let mut stop = shutdown.clone();
    Ok(tokio::spawn(async move {
        router
            .serve(listener, async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            })
            .await;
        let _ = follower.await;
    }))
}
