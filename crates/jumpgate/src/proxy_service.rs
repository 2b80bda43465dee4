//! Runs the proxy.
//!
//! - Next to the auth service in one process (`--dev`, or a config that enables both):
//!   its certificates come straight from the cluster's CA, and are re-issued after a CA
//!   rotation.
//! - On its own (`proxy_service` without `auth_service`, as in multi-region
//!   deployments): it joins once with a `proxy` token through `jumpgate.auth_server` and
//!   the `ca_pin`, keeps that identity in the data directory, and uses it for the auth
//!   API, for agents' tunnels, and as its public certificate when no `https_keypairs`
//!   are configured.
//!
//! Either way it serves the public port, passes the auth API through to the auth
//! server, and heartbeats its `proxy` presence record.

use crate::diag::Readiness;
use crate::identity::LocalIdentity;
use anyhow::{Context, Result, anyhow};
use jumpgate_api::forwarded::{ForwardSigner, SharedForwardSigner};
use jumpgate_api::mirror::{Connect, Mirror};
use jumpgate_api::ssh_route::ALPN_SSH;
use jumpgate_api::tunnel::{ALPN_REVERSE_TUNNEL, Discovery, PROXY_SERVER_NAME};
use jumpgate_api::{AuthClient, ClientConfig, ServerConfig, TlsCredentials, proto};
use jumpgate_auth::ClusterAuthorities;
use jumpgate_node::HostIdentity;
use jumpgate_pki::IdentityKind;
use jumpgate_proxy::{
    KeypairFiles, PublicCerts, Router, RouterSettings, SshRouting, TunnelEndpoint, Tunnels,
    WEB_ALPN, WebApi, ssh, watch_keypairs,
};
use jumpgate_types::config::TunnelStrategy;
use jumpgate_types::{Config, ProxyPresence};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

/// How often the proxy writes its presence record, and how long the record lives.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
const HEARTBEAT_TTL: Duration = Duration::from_secs(15);
/// How often `https_keypairs` files are checked for a renewal.
const KEYPAIR_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Where the proxy's certificates come from.
#[derive(Debug)]
pub enum ProxyCredentials {
    /// Next to the auth service: issued from its CAs, followed through rotations.
    Local(watch::Receiver<Arc<ClusterAuthorities>>),
    /// A proxy that joined with a token; renews that identity (in `data_dir`) after CA
    /// rotations.
    Joined {
        identity: Box<HostIdentity>,
        data_dir: std::path::PathBuf,
        host_name: String,
        addresses: Vec<String>,
    },
}

/// How the proxy's certificates follow CA rotations.
enum Renewal {
    /// Re-issued here when the local auth service's CAs change.
    Local(LocalIdentities, watch::Receiver<Arc<ClusterAuthorities>>),
    /// Renewed through the auth API when the cluster's active CA is not one it holds.
    Joined {
        identity: HostIdentity,
        data_dir: std::path::PathBuf,
        host_name: String,
        addresses: Vec<String>,
    },
}

/// Puts renewed material in service: the auth client, the tunnel config, and (when no
/// `https_keypairs` are configured) the public certificate.
struct InService {
    auth_addr: String,
    web: WebApi,
    tunnel_config: Arc<std::sync::RwLock<Arc<ServerConfig>>>,
    forward_signer: SharedForwardSigner,
    certs: Arc<PublicCerts>,
    keep_fallback_cert: bool,
}

impl InService {
    async fn apply(&self, auth: &mut AuthClient, renewed: Material) {
        match auth_client(&self.auth_addr, renewed.auth_tls.clone()).await {
            Ok(client) => {
                *auth = client.clone();
                self.web.set_auth_client(client);
            }
            Err(err) => warn!(%err, "cannot renew the proxy's auth client"),
        }
        *self
            .tunnel_config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = renewed.tunnel_tls;
        *self
            .forward_signer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = renewed.forward_signer;
        if self.keep_fallback_cert
            && let Err(err) = self
                .certs
                .replace_pem(&renewed.fallback_cert_pem, &renewed.fallback_key_pem)
        {
            warn!(%err, "cannot renew the proxy's certificate");
        }
        info!("the proxy follows the rotated certificate authorities");
    }
}

/// The in-memory view SSH routing decides from, refreshed through the proxy's auth
/// client of the moment.
fn ssh_routing(
    web: &WebApi,
    tunnels: Arc<Tunnels>,
    shutdown: &watch::Receiver<bool>,
) -> SshRouting {
    let connect: Connect = {
        let web = web.clone();
        Arc::new(move || {
            let client = web.auth_client();
            Box::pin(async move { Ok(client) })
        })
    };
    let stop = || {
        let mut shutdown = shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        }
    };
    let routing = SshRouting {
        nodes: Mirror::spawn("node", connect.clone(), ssh::parse_node, stop()),
        roles: Mirror::spawn("role", connect.clone(), ssh::parse_role, stop()),
        users: Mirror::spawn("user", connect.clone(), ssh::parse_user, stop()),
        locks: Mirror::spawn("lock", connect, ssh::parse_lock, stop()),
        tunnels,
        live: Arc::default(),
    };
    tokio::spawn(routing.clone().enforce_locks(stop()));
    routing
}

/// What the proxy needs from the daemon.
#[derive(Debug)]
pub struct ProxyServiceParams {
    pub config: Config,
    /// The auth API (`host:port`): for the web API's calls and the passthrough.
    pub auth_addr: String,
    pub credentials: ProxyCredentials,
    pub host_uuid: String,
    pub readiness: Readiness,
    pub shutdown: watch::Receiver<bool>,
}

/// The TLS material the proxy runs with.
struct Material {
    cluster: String,
    /// Client config for the auth API.
    auth_tls: Arc<ClientConfig>,
    /// Signs the real client's address on passed-through auth API connections.
    forward_signer: Arc<ForwardSigner>,
    /// Server config reverse tunnels end in (node certificates required).
    tunnel_tls: Arc<ServerConfig>,
    /// The public certificate when no `https_keypairs` are configured.
    fallback_cert_pem: String,
    fallback_key_pem: String,
}

/// The three identities of a proxy next to the auth service (one key each, kept
/// across rotations).
struct LocalIdentities {
    api: LocalIdentity,
    tunnel: LocalIdentity,
    public: LocalIdentity,
}

impl LocalIdentities {
    fn new(host_uuid: &str, dns: Vec<String>, ips: Vec<IpAddr>) -> Result<LocalIdentities> {
        Ok(LocalIdentities {
            api: LocalIdentity::new(IdentityKind::Proxy, host_uuid, Vec::new(), Vec::new())?,
            tunnel: LocalIdentity::new(
                IdentityKind::Proxy,
                host_uuid,
                vec![PROXY_SERVER_NAME.to_string()],
                Vec::new(),
            )?,
            public: LocalIdentity::new(IdentityKind::Proxy, host_uuid, dns, ips)?,
        })
    }

    fn material(&self, authorities: &ClusterAuthorities) -> Result<Material> {
        let trusted = authorities.tls.trusted_cert_pems().concat();
        let api =
            TlsCredentials::from_pem(&self.api.issue(authorities)?, &self.api.key_pem, &trusted)?;
        Ok(Material {
            cluster: authorities.cluster.clone(),
            auth_tls: api.client_config()?,
            forward_signer: Arc::new(ForwardSigner::new(&api)?),
            tunnel_tls: TlsCredentials::from_pem(
                &self.tunnel.issue(authorities)?,
                &self.tunnel.key_pem,
                &trusted,
            )?
            .server_config_requiring_clients(&[ALPN_REVERSE_TUNNEL, ALPN_SSH])?,
            fallback_cert_pem: self.public.issue(authorities)?,
            fallback_key_pem: self.public.key_pem.clone(),
        })
    }
}

/// The material of a proxy that joined: one identity for everything (its certificate
/// names the addresses it joined with, `proxy.jumpgate.cluster.local` among them).
fn joined_material(identity: &HostIdentity) -> Result<Material> {
    let credentials = TlsCredentials::from_pem(
        &identity.tls_cert_pem,
        &identity.tls_key_pem,
        &identity.tls_ca_pem,
    )
    .context("the stored proxy identity")?;
    Ok(Material {
        cluster: identity.cluster.clone(),
        auth_tls: credentials.client_config()?,
        forward_signer: Arc::new(ForwardSigner::new(&credentials)?),
        tunnel_tls: credentials
            .server_config_requiring_clients(&[ALPN_REVERSE_TUNNEL, ALPN_SSH])?,
        fallback_cert_pem: identity.tls_cert_pem.clone(),
        fallback_key_pem: identity.tls_key_pem.clone(),
    })
}

/// The addresses a joining proxy asks to have in its certificate.
pub fn join_addresses(config: &Config) -> Vec<String> {
    let mut addresses = vec![PROXY_SERVER_NAME.to_string(), "localhost".to_string()];
    for addr in &config.proxy_service.public_addr {
        if !addresses.contains(&addr.host) {
            addresses.push(addr.host.clone());
        }
    }
    addresses.push("127.0.0.1".to_string());
    addresses
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

async fn auth_client(auth_addr: &str, tls: Arc<ClientConfig>) -> Result<AuthClient> {
    Ok(jumpgate_api::connect(auth_addr, tls).await?)
}

/// What agents are told: the live proxies (from their presence records) and the
/// cluster's tunnel strategy. This proxy is always among them.
async fn discovery(auth: &mut AuthClient, host_uuid: &str) -> Result<Discovery, tonic::Status> {
    let status = auth.status(proto::StatusRequest {}).await?.into_inner();
    let documents = auth
        .get_resources(proto::GetResourcesRequest {
            kind: "proxy".to_string(),
            name: String::new(),
        })
        .await?
        .into_inner()
        .documents;
    let mut proxies: Vec<String> = documents
        .iter()
        .filter_map(|doc| ProxyPresence::from_json("auth:proxy", doc).ok())
        .map(|proxy| proxy.uuid)
        .collect();
    if !proxies.iter().any(|name| name == host_uuid) {
        proxies.push(host_uuid.to_string());
    }
    proxies.sort();
    Ok(Discovery::new(
        proxies,
        TunnelStrategy::from_wire(&status.tunnel_strategy, status.agent_connection_count),
    ))
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
    ProxyPresence {
        uuid: host_uuid.to_string(),
        hostname,
        addr: bound.to_string(),
        public_addr,
        peer_addr: config
            .proxy_service
            .peer_public_addr
            .as_ref()
            .map(ToString::to_string),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
    .to_json()
}

/// Sets the proxy up (listener, identity, certificates; errors here are fatal to the
/// daemon) and returns the task that serves it until shutdown.
pub async fn start(params: ProxyServiceParams) -> Result<tokio::task::JoinHandle<()>> {
    let ProxyServiceParams {
        config,
        auth_addr,
        credentials,
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

    let (material, mut renewal) = match credentials {
        ProxyCredentials::Local(mut authorities) => {
            let (dns, ips) = public_names(&config, bound);
            let identities = LocalIdentities::new(&host_uuid, dns, ips)?;
            let current = authorities.borrow_and_update().clone();
            (
                identities.material(&current)?,
                Renewal::Local(identities, authorities),
            )
        }
        ProxyCredentials::Joined {
            identity,
            data_dir,
            host_name,
            addresses,
        } => (
            joined_material(&identity)?,
            Renewal::Joined {
                identity: *identity,
                data_dir,
                host_name,
                addresses,
            },
        ),
    };
    let auth = auth_client(&auth_addr, material.auth_tls.clone())
        .await
        .context("the proxy cannot reach the auth API")?;
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

    // The public certificate: configured files (watched for renewal), else the
    // cluster-issued fallback.
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
        PublicCerts::from_pem(&material.fallback_cert_pem, &material.fallback_key_pem)?
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
        .map_err(|err| anyhow!("proxy TLS: {err}"))?;

    let tunnel_config = Arc::new(std::sync::RwLock::new(material.tunnel_tls.clone()));
    let forward_signer = Arc::new(std::sync::RwLock::new(material.forward_signer.clone()));
    let tunnels = Arc::new(Tunnels::default());
    let (refusals_tx, mut refusals_rx) = tokio::sync::mpsc::channel(256);
    tunnels.set_discovery(Discovery::new(
        vec![host_uuid.clone()],
        TunnelStrategy::AgentMesh,
    ));
    let router = Router::new(
        RouterSettings {
            proxy_protocol: settings.proxy_protocol,
            proxy_protocol_trusted: settings.proxy_protocol_trusted_cidrs.clone(),
            auth_addrs: vec![auth_addr.clone()],
            forward_signer: Some(forward_signer.clone()),
            max_unauthenticated_per_source: usize::try_from(
                settings.max_unauthenticated_per_source,
            )
            .unwrap_or(usize::MAX),
            ..RouterSettings::default()
        },
        web_tls,
        web.clone(),
        Some(TunnelEndpoint {
            tls: tunnel_config.clone(),
            tunnels: tunnels.clone(),
            cluster: material.cluster.clone(),
            refusals: Some(refusals_tx),
            ssh: Some(ssh_routing(&web, tunnels.clone(), &shutdown)),
        }),
    );
    // Refused tunnels go to the audit log through the auth API.
    let reporter = {
        let web = web.clone();
        tokio::spawn(async move {
            while let Some(refusal) = refusals_rx.recv().await {
                let reported = web
                    .auth_client()
                    .report_refusal(proto::ReportRefusalRequest {
                        remote_addr: refusal.remote.to_string(),
                        protocol: refusal.protocol.to_string(),
                        reason: refusal.reason,
                        identity: refusal.identity.unwrap_or_default(),
                    })
                    .await;
                if let Err(status) = reported {
                    warn!(error = %status.message(), "cannot audit a refused connection");
                }
            }
        })
    };
    let addr_file = config.jumpgate.data_dir.join("proxy_addr");
    std::fs::write(&addr_file, format!("{bound}\n"))
        .with_context(|| format!("cannot write {}", addr_file.display()))?;

    // Heartbeats, and (next to the auth service) new certificates after CA rotations.
    let follower = {
        let mut auth = auth;
        let mut shutdown = shutdown.clone();
        let document = presence_document(&config, &host_uuid, bound);
        let in_service = InService {
            auth_addr: auth_addr.clone(),
            web: web.clone(),
            tunnel_config: tunnel_config.clone(),
            forward_signer,
            certs: certs.clone(),
            keep_fallback_cert: keypairs.is_empty(),
        };
        let auth_addr = auth_addr.clone();
        let host_uuid = host_uuid.clone();
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
            let stopping = async move {
                let _ = shutdown.wait_for(|stopping| *stopping).await;
            };
            tokio::pin!(stopping);
            let mut renew_local_at =
                tokio::time::Instant::now() + crate::identity::SERVICE_CERT_RENEW_EVERY;
            loop {
                // Next to auth: after a CA rotation, and before the certificates
                // (short-lived, as the auth server's own) run out.
                let rotated = async {
                    match &mut renewal {
                        Renewal::Local(_, authorities) => tokio::select! {
                            changed = authorities.changed() => changed.is_ok(),
                            () = tokio::time::sleep_until(renew_local_at) => true,
                        },
                        Renewal::Joined { .. } => std::future::pending().await,
                    }
                };
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
                        match discovery(&mut auth, &host_uuid).await {
                            Ok(found) => tunnels.set_discovery(found),
                            Err(status) => warn!(error = %status.message(), "cannot list the cluster's proxies"),
                        }
                        if let Renewal::Joined { identity, data_dir, host_name, addresses } = &mut renewal {
                            match jumpgate_node::renew::check_and_renew(&auth_addr, identity, host_name, addresses).await {
                                Ok(Some(renewed)) => {
                                    let stored = renewed.save(data_dir).map_err(anyhow::Error::from);
                                    match stored.and_then(|()| joined_material(&renewed)) {
                                        Ok(material) => {
                                            *identity = renewed;
                                            in_service.apply(&mut auth, material).await;
                                        }
                                        Err(err) => warn!(%err, "cannot use the renewed proxy identity"),
                                    }
                                }
                                Ok(None) => {}
                                Err(err) => warn!(%err, "cannot check the cluster's CAs"),
                            }
                        }
                    }
                    open = rotated => {
                        if !open {
                            return;
                        }
                        let Renewal::Local(identities, authorities) = &mut renewal else {
                            continue;
                        };
                        renew_local_at = tokio::time::Instant::now()
                            + crate::identity::SERVICE_CERT_RENEW_EVERY;
                        let current = authorities.borrow_and_update().clone();
                        match identities.material(&current) {
                            Ok(renewed) => in_service.apply(&mut auth, renewed).await,
                            Err(err) => warn!(%err, "cannot renew the proxy's certificates"),
                        }
                    }
                }
            }
        })
    };

    info!(addr = %bound, proxy_protocol = settings.proxy_protocol, auth = %auth_addr, "proxy listening (TLS routing: web API, auth API passthrough, reverse tunnels)");
    readiness.ready("proxy");
    let mut stop = shutdown.clone();
    Ok(tokio::spawn(async move {
        router
            .serve(listener, async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            })
            .await;
        let _ = follower.await;
        reporter.abort();
    }))
}

/// A proxy on a host without the auth service: joins once through
/// `jumpgate.auth_server` (retrying while it is unreachable), then serves until
/// shutdown. A refused join or missing settings are fatal.
pub async fn run_standalone(
    config: Config,
    host_uuid: String,
    readiness: Readiness,
    mut shutdown: watch::Receiver<bool>,
    fatal: tokio::sync::mpsc::Sender<anyhow::Error>,
) {
    let Some(auth_server) = config
        .jumpgate
        .auth_server
        .as_ref()
        .map(ToString::to_string)
    else {
        let _ = fatal
            .send(anyhow!(
                "jumpgate.auth_server: a proxy on a host without the auth service must know \
                 where the auth API is (e.g. auth.example.com:3025)"
            ))
            .await;
        return;
    };
    let token = crate::agent_service::configured_join_token(&config);
    let host_name = config
        .jumpgate
        .nodename
        .clone()
        .unwrap_or_else(|| host_uuid.clone());
    let addresses = join_addresses(&config);
    // Apart from an agent's identity on the same host.
    let Some(identity) = crate::agent_service::load_or_join_retrying(
        &config.jumpgate.data_dir.join("proxy"),
        token.as_deref(),
        jumpgate_node::join::JoinParams {
            server: &auth_server,
            token: "",
            ca_pins: &config.jumpgate.ca_pin,
            host_uuid: &host_uuid,
            host_name: &host_name,
            role: "proxy",
            addresses: &addresses,
            local_ip: None,
        },
        crate::agent_service::JoinRun {
            component: "proxy",
            readiness: &readiness,
            shutdown: &mut shutdown,
            fatal: &fatal,
        },
    )
    .await
    else {
        return;
    };
    // Auth decided the UUID at join (the one asked for, unless another host held it).
    let host_uuid = identity.host_uuid.clone();
    let started = start(ProxyServiceParams {
        config: config.clone(),
        auth_addr: auth_server,
        credentials: ProxyCredentials::Joined {
            identity: Box::new(identity),
            data_dir: config.jumpgate.data_dir.join("proxy"),
            host_name,
            addresses,
        },
        host_uuid,
        readiness,
        shutdown,
    })
    .await;
    match started {
        Ok(task) => {
            let _ = task.await;
        }
        Err(err) => {
            let _ = fatal.send(err.context("proxy service")).await;
        }
    }
}
