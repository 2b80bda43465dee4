//! The proxy service's lifecycle in a daemon: bind the public port, put an identity in
//! service, serve until the daemon's [`CancellationToken`] is cancelled.
//!
//! - [`bind`] binds `proxy_service.web_listen_addr` first, so the daemon learns the bound
//!   address (port 0 in tests) before the certificates that name it are issued.
//! - [`ProxyIdentity`]: one TLS identity for everything (the auth API client, agents'
//!   tunnels and, without `https_keypairs`, the public certificate). Next to the auth
//!   service it is issued in process and followed through CA rotations
//!   ([`ProxyIdentity::Issued`]); on its own host the proxy joins once with a `proxy`
//!   token ([`join`]) and renews that identity through the auth API.
//! - [`BoundProxy::start`] serves the public port, passes the auth API through, writes
//!   the proxy's presence record every [`HEARTBEAT_EVERY`] and tells agents which
//!   proxies exist, from auth's watch of presence records.

use crate::peer::{ALPN_PEER, PeerClients, PeerServer, Peering};
use crate::{
    KeypairFiles, PublicCerts, Router, RouterSettings, SshRouting, TunnelEndpoint, Tunnels,
    WEB_ALPN, WebApi, WebUi, ssh, watch_keypairs,
};
use jumpgate_api::forwarded::{ForwardSigner, SharedForwardSigner};
use jumpgate_api::mirror::{Connect, Mirror};
use jumpgate_api::ssh_route::ALPN_SSH;
use jumpgate_api::tunnel::{ALPN_REVERSE_TUNNEL, Discovery, PROXY_SERVER_NAME};
use jumpgate_api::{ApiError, AuthClient, ClientConfig, PemIdentity, ServerConfig, proto};
use jumpgate_node::join::JoinSpec;
use jumpgate_node::{AgentError, HostIdentity};
use jumpgate_telemetry::Readiness;
use jumpgate_types::config::{ProxyServiceConfig, TunnelStrategy};
use jumpgate_types::{Config, ProxyPresence};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the proxy writes its presence record, and how long the record lives: a dead
/// proxy leaves every proxy's discovery (so agents stop looking for it) within 5 s of its
/// last beat (4 s, plus the backend's expiry sweep of 0.5 s), while three beats in a row
/// may fail before a live proxy drops out. One small write a second per proxy.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const HEARTBEAT_TTL: Duration = Duration::from_secs(4);
/// How often a joined proxy checks whether its identity needs renewing, and re-reads the
/// cluster's tunnel strategy.
const RENEW_CHECK_EVERY: Duration = Duration::from_secs(5);
/// How often `https_keypairs` files are checked for a renewal.
const KEYPAIR_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Why the proxy cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyServiceError {
    #[error(
        "proxy_service.peer_listen_addr: cannot listen on {addr} for proxy peering (the \
         cluster's tunnel_strategy is proxy_peering): {source}"
    )]
    PeerListen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the proxy cannot read the cluster's tunnel strategy from auth: {0}")]
    Strategy(String),
    #[error("proxy_service.web_listen_addr: cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The identity's certificate or key cannot be used.
    #[error("the proxy's identity: {0}")]
    Identity(#[source] ApiError),
    #[error("the proxy cannot reach the auth API: {0}")]
    AuthUnreachable(#[source] ApiError),
    #[error("proxy_service.https_keypairs: {0}")]
    Keypairs(#[source] crate::KeypairError),
    #[error("proxy TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// A standalone proxy cannot join: a refused token, missing settings.
    #[error("proxy: joining the cluster: {0}")]
    Join(#[source] AgentError),
    #[error(
        "jumpgate.auth_server: a proxy on a host without the auth service must know where \
         the auth API is (e.g. auth.example.com:3025)"
    )]
    NoAuthServer,
}

/// Where the proxy's identity comes from.
#[derive(Debug)]
pub enum ProxyIdentity {
    /// Next to the auth service: issued in process; a new value after every CA rotation
    /// and before the certificate runs out.
    Issued(watch::Receiver<Arc<PemIdentity>>),
    /// Joined with a token (see [`join`]); renewed through the auth API when the
    /// cluster's active CA is not one it holds, and saved in `data_dir`.
    Joined(Box<JoinedProxy>),
}

/// A proxy's joined identity and what renewing it takes.
#[derive(Debug)]
pub struct JoinedProxy {
    pub identity: HostIdentity,
    /// Where the identity is stored (apart from an agent's identity on the same host).
    pub data_dir: PathBuf,
    pub host_name: String,
    /// The names and addresses its certificate carries ([`join_addresses`]).
    pub addresses: Vec<String>,
}

/// What the proxy needs besides its identity.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub config: ProxyServiceConfig,
    /// The auth API (`host:port`): for the web API's calls and the passthrough.
    pub auth_addr: String,
    /// This proxy's UUID, as in its certificate.
    pub host_uuid: String,
    pub readiness: Readiness,
}

/// The public port, bound and not yet served.
#[derive(Debug)]
pub struct BoundProxy {
    listener: TcpListener,
    addr: SocketAddr,
}

/// A proxy serving until its shutdown token is cancelled.
#[derive(Debug)]
pub struct RunningProxy {
    /// The bound public address (a port 0 in the config is resolved here).
    pub addr: SocketAddr,
    /// Ends once the proxy has stopped serving.
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds `proxy_service.web_listen_addr`.
pub async fn bind(config: &ProxyServiceConfig) -> Result<BoundProxy, ProxyServiceError> {
    let listen = &config.web_listen_addr;
    let failed = |source| ProxyServiceError::Listen {
        addr: listen.to_string(),
        source,
    };
    let listener = TcpListener::bind((listen.host.as_str(), listen.port))
        .await
        .map_err(failed)?;
    let addr = listener.local_addr().map_err(failed)?;
    Ok(BoundProxy { listener, addr })
}

/// The names a proxy's certificate carries: the cluster-internal name agents check, and
/// the host names and addresses clients reach it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl BoundProxy {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The names for an identity issued in process ([`ProxyIdentity::Issued`]).
    pub fn certificate_names(&self, config: &ProxyServiceConfig) -> CertificateNames {
        let mut dns = vec![PROXY_SERVER_NAME.to_string(), "localhost".to_string()];
        let mut ips = vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        if !self.addr.ip().is_unspecified() && !ips.contains(&self.addr.ip()) {
            ips.push(self.addr.ip());
        }
        for addr in &config.public_addr {
            match addr.host.parse::<IpAddr>() {
                Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                Ok(_) => {}
                Err(_) if !dns.contains(&addr.host) => dns.push(addr.host.clone()),
                Err(_) => {}
            }
        }
        CertificateNames { dns, ips }
    }

    /// Puts `identity` in service and serves until `shutdown`. Errors (an unusable
    /// identity or keypair, auth unreachable at start) are fatal to the daemon.
    pub async fn start(
        self,
        settings: ProxySettings,
        identity: ProxyIdentity,
        shutdown: CancellationToken,
    ) -> Result<RunningProxy, ProxyServiceError> {
        start(self, settings, identity, shutdown).await
    }
}

/// The names and addresses a joining proxy asks to have in its certificate.
pub fn join_addresses(config: &ProxyServiceConfig) -> Vec<String> {
    let mut addresses = vec![PROXY_SERVER_NAME.to_string(), "localhost".to_string()];
    for addr in &config.public_addr {
        if !addresses.contains(&addr.host) {
            addresses.push(addr.host.clone());
        }
    }
    addresses.push("127.0.0.1".to_string());
    addresses
}

/// A proxy on a host without the auth service: its stored identity, or a new one from
/// joining with a `proxy` token through `jumpgate.auth_server` (retrying while it is
/// unreachable). `Ok(None)` when `shutdown` came first. Returns the auth address too.
pub async fn join(
    config: &Config,
    host_uuid: &str,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<Option<(String, JoinedProxy)>, ProxyServiceError> {
    let auth_server = config
        .jumpgate
        .auth_server
        .as_ref()
        .map(ToString::to_string)
        .ok_or(ProxyServiceError::NoAuthServer)?;
    let token = jumpgate_node::service::configured_join_token(config);
    let host_name = config
        .jumpgate
        .nodename
        .clone()
        .unwrap_or_else(|| host_uuid.to_string());
    let addresses = join_addresses(&config.proxy_service);
    let data_dir = config.jumpgate.data_dir.join("proxy");
    let identity = jumpgate_node::service::load_or_join_retrying(
        &data_dir,
        token.as_deref(),
        JoinSpec {
            server: &auth_server,
            token: "",
            ca_pins: &config.jumpgate.ca_pin,
            host_uuid,
            host_name: &host_name,
            role: "proxy",
            addresses: &addresses,
            dial: jumpgate_api::DialOptions::default(),
        },
        "proxy",
        readiness,
        shutdown,
    )
    .await
    .map_err(ProxyServiceError::Join)?;
    Ok(identity.map(|identity| {
        (
            auth_server,
            JoinedProxy {
                identity,
                data_dir,
                host_name,
                addresses,
            },
        )
    }))
}

/// The TLS material the proxy runs with, all from one identity.
struct Material {
    cluster: String,
    /// Client config for the auth API.
    auth_tls: Arc<ClientConfig>,
    /// Signs the real client's address on passed-through auth API connections.
    forward_signer: Arc<ForwardSigner>,
    /// Server config reverse tunnels end in (node certificates required).
    tunnel_tls: Arc<ServerConfig>,
    /// Server config of the peer listener, and client config for dialling peers (both
    /// want a proxy at the other end).
    peer_server_tls: Arc<ServerConfig>,
    peer_client_tls: Arc<ClientConfig>,
    /// The public certificate when no `https_keypairs` are configured.
    fallback_cert_pem: String,
    fallback_key_pem: String,
}

impl Material {
    fn from_identity(identity: &PemIdentity) -> Result<Material, ApiError> {
        let credentials = identity.credentials()?;
        Ok(Material {
            cluster: identity.cluster.clone(),
            auth_tls: credentials.client_config()?,
            forward_signer: Arc::new(ForwardSigner::new(&credentials)?),
            tunnel_tls: credentials
                .server_config_requiring_clients(&[ALPN_REVERSE_TUNNEL, ALPN_SSH])?,
            peer_server_tls: credentials.server_config_requiring_clients(&[ALPN_PEER])?,
            peer_client_tls: credentials
                .client_config_for(jumpgate_pki::IdentityKind::Proxy, &[ALPN_PEER])?,
            fallback_cert_pem: identity.cert_pem.clone(),
            fallback_key_pem: identity.key_pem.clone(),
        })
    }
}

fn pem_of(identity: &HostIdentity) -> PemIdentity {
    PemIdentity {
        cluster: identity.cluster.clone(),
        cert_pem: identity.tls_cert_pem.clone(),
        key_pem: identity.tls_key_pem.clone(),
        ca_pem: identity.tls_ca_pem.clone(),
    }
}

/// Puts renewed material in service: the auth client, the tunnel config, the signer of
/// forwarded connections and (when no `https_keypairs` are configured) the public
/// certificate.
struct InService {
    auth_addr: String,
    web: WebApi,
    tunnel_config: Arc<RwLock<Arc<ServerConfig>>>,
    peer_config: Arc<RwLock<Arc<ServerConfig>>>,
    peer_clients: Option<Arc<PeerClients>>,
    forward_signer: SharedForwardSigner,
    certs: Arc<PublicCerts>,
    keep_fallback_cert: bool,
}

impl InService {
    async fn apply(&self, renewed: Material) {
        match jumpgate_api::connect(&self.auth_addr, renewed.auth_tls.clone()).await {
            Ok(client) => self.web.set_auth_client(client),
            Err(err) => warn!(%err, "cannot renew the proxy's auth client"),
        }
        *self
            .tunnel_config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = renewed.tunnel_tls;
        *self
            .peer_config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = renewed.peer_server_tls;
        if let Some(clients) = &self.peer_clients {
            clients.set_tls(renewed.peer_client_tls);
        }
        *self
            .forward_signer
            .write()
            .unwrap_or_else(PoisonError::into_inner) = renewed.forward_signer;
        if self.keep_fallback_cert
            && let Err(err) = self
                .certs
                .replace_pem(&renewed.fallback_cert_pem, &renewed.fallback_key_pem)
        {
            warn!(%err, "cannot renew the proxy's certificate");
        }
        info!(
            "the proxy follows the rotated certificate authorities (or renewed its certificates)"
        );
    }
}

/// Connects to the auth API with the proxy's client of the moment.
fn connector(web: &WebApi) -> Connect {
    let web = web.clone();
    Arc::new(move || {
        let client = web.auth_client();
        Box::pin(async move { Ok(client) })
    })
}

/// The in-memory view SSH routing decides from, kept current by auth's watch.
fn ssh_routing(
    web: &WebApi,
    tunnels: Arc<Tunnels>,
    peering: Option<Arc<Peering>>,
    shutdown: &CancellationToken,
) -> SshRouting {
    let connect = connector(web);
    let stop = || shutdown.clone().cancelled_owned();
    let routing = SshRouting {
        nodes: Mirror::spawn(
            "node",
            connect.clone(),
            ssh::parse_node,
            web.auth_renewals(),
            stop(),
        ),
        roles: Mirror::spawn(
            "role",
            connect.clone(),
            ssh::parse_role,
            web.auth_renewals(),
            stop(),
        ),
        users: Mirror::spawn(
            "user",
            connect.clone(),
            ssh::parse_user,
            web.auth_renewals(),
            stop(),
        ),
        locks: Mirror::spawn(
            "lock",
            connect,
            ssh::parse_lock,
            web.auth_renewals(),
            stop(),
        ),
        tunnels,
        peering,
        live: Arc::default(),
    };
    tokio::spawn(routing.clone().enforce_locks(stop()));
    routing
}

/// The cluster's tunnel strategy, as auth's status says.
async fn read_strategy(
    auth: &mut AuthClient,
    within: Duration,
) -> Result<TunnelStrategy, ProxyServiceError> {
    let asked = tokio::time::timeout(within, auth.status(proto::StatusRequest {}));
    match asked.await {
        Ok(Ok(status)) => {
            let status = status.into_inner();
            Ok(TunnelStrategy::from_wire(
                &status.tunnel_strategy,
                status.agent_connection_count,
            ))
        }
        Ok(Err(status)) => Err(ProxyServiceError::Strategy(status.message().to_string())),
        Err(_) => Err(ProxyServiceError::Strategy(format!(
            "no answer within {within:?}"
        ))),
    }
}

/// Where other proxies reach this one for peering: `peer_public_addr`, else the bound peer
/// address; when that is a wildcard (`0.0.0.0`), the address this host reaches the auth
/// service from, which the other proxies (that reach auth too) can most likely reach.
async fn peer_public_addr(
    config: &ProxyServiceConfig,
    bound: SocketAddr,
    auth_addr: &str,
) -> String {
    if let Some(addr) = &config.peer_public_addr {
        return addr.to_string();
    }
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let first_auth = auth_addr.split(',').next().unwrap_or(auth_addr).trim();
    // Connecting a UDP socket sends nothing: it only asks the kernel for the route.
    let guessed = async {
        let socket = tokio::net::UdpSocket::bind((bound.ip(), 0)).await?;
        socket.connect(first_auth).await?;
        socket.local_addr()
    };
    let guessed = guessed.await.map(|local| local.ip());
    match guessed {
        Ok(ip) => SocketAddr::new(ip, bound.port()).to_string(),
        Err(err) => {
            warn!(%err, "cannot tell which address peers reach this proxy at; set proxy_service.peer_public_addr");
            bound.to_string()
        }
    }
}

fn parse_proxy(document: &str) -> Result<ProxyPresence, jumpgate_types::ResourceError> {
    ProxyPresence::from_json("auth:proxy", document)
}

/// What agents are told: the live proxies (from their presence records) and the
/// cluster's tunnel strategy. This proxy is always among them.
fn discovery(proxies: &[ProxyPresence], host_uuid: &str, strategy: TunnelStrategy) -> Discovery {
    let mut uuids: Vec<String> = proxies.iter().map(|proxy| proxy.uuid.clone()).collect();
    if !uuids.iter().any(|uuid| uuid == host_uuid) {
        uuids.push(host_uuid.to_string());
    }
    uuids.sort();
    uuids.dedup();
    Discovery::new(uuids, strategy)
}

fn presence_document(
    settings: &ProxySettings,
    bound: SocketAddr,
    peer_addr: Option<String>,
) -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default();
    let config = &settings.config;
    ProxyPresence {
        uuid: settings.host_uuid.clone(),
        hostname,
        addr: bound.to_string(),
        public_addr: config.public_addr.iter().map(ToString::to_string).collect(),
        peer_addr,
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
    .to_json()
}

/// Renews a joined identity through the auth API (checked every [`RENEW_CHECK_EVERY`]), saves it,
/// and publishes it for the proxy to put in service.
async fn renew_joined(
    auth_addr: String,
    mut joined: JoinedProxy,
    renewed: watch::Sender<Arc<PemIdentity>>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(RENEW_CHECK_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let checked = jumpgate_node::renew::check_and_renew(
            &auth_addr,
            jumpgate_api::DialOptions::default(),
            &joined.identity,
            &joined.host_name,
            &joined.addresses,
        )
        .await;
        match checked {
            Ok(Some(identity)) => match identity.save(&joined.data_dir) {
                Ok(()) => {
                    let _ = renewed.send(Arc::new(pem_of(&identity)));
                    joined.identity = identity;
                }
                Err(err) => warn!(%err, "cannot store the renewed proxy identity"),
            },
            Ok(None) => {}
            Err(err) => warn!(%err, "cannot check the cluster's CAs"),
        }
    }
}

async fn start(
    bound: BoundProxy,
    settings: ProxySettings,
    identity: ProxyIdentity,
    shutdown: CancellationToken,
) -> Result<RunningProxy, ProxyServiceError> {
    let BoundProxy { listener, addr } = bound;
    let readiness = settings.readiness.clone();
    readiness.not_ready("proxy", "starting".to_string());
    let config = &settings.config;
    let auth_addr = settings.auth_addr.clone();
    let mut identities = match identity {
        ProxyIdentity::Issued(receiver) => receiver,
        ProxyIdentity::Joined(joined) => {
            let (sender, receiver) = watch::channel(Arc::new(pem_of(&joined.identity)));
            tokio::spawn(renew_joined(
                auth_addr.clone(),
                *joined,
                sender,
                shutdown.clone(),
            ));
            receiver
        }
    };
    let material = Material::from_identity(&identities.borrow_and_update())
        .map_err(ProxyServiceError::Identity)?;
    let mut auth = jumpgate_api::connect(&auth_addr, material.auth_tls.clone())
        .await
        .map_err(ProxyServiceError::AuthUnreachable)?;
    // Read at start: it decides whether this proxy listens for peers. After changing the
    // auth service's tunnel_strategy, restart the proxies.
    let strategy = read_strategy(&mut auth, Duration::from_secs(10)).await?;
    let public_addrs: Vec<String> = if config.public_addr.is_empty() {
        vec![addr.to_string()]
    } else {
        config.public_addr.iter().map(ToString::to_string).collect()
    };
    // HSTS only with a certificate browsers trust (docs/web.md).
    let web = WebApi::new(auth, auth_addr.clone(), public_addrs)
        .with_ui(WebUi::new(!config.https_keypairs.is_empty()));

    // The public certificate: configured files (watched for renewal), else the
    // cluster-issued one.
    let keypairs: Vec<KeypairFiles> = config
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
        PublicCerts::from_pem(&material.fallback_cert_pem, &material.fallback_key_pem)
            .map_err(ProxyServiceError::Keypairs)?
    } else {
        let certs = PublicCerts::load(&keypairs).map_err(ProxyServiceError::Keypairs)?;
        tokio::spawn(watch_keypairs(
            certs.clone(),
            keypairs.clone(),
            KEYPAIR_CHECK_EVERY,
            shutdown.clone().cancelled_owned(),
        ));
        certs
    };
    let web_tls = certs
        .server_config(&WEB_ALPN)
        .map_err(ProxyServiceError::Tls)?;

    let tunnel_config = Arc::new(RwLock::new(material.tunnel_tls.clone()));
    let forward_signer = Arc::new(RwLock::new(material.forward_signer.clone()));
    let tunnels = Arc::new(Tunnels::default());
    // The proxies agents are told about and peers are dialled at, from auth's watch of
    // presence records: a proxy that stops heartbeating leaves them when its record expires.
    let proxies = Mirror::spawn(
        "proxy",
        connector(&web),
        parse_proxy,
        web.auth_renewals(),
        shutdown.clone().cancelled_owned(),
    );
    let peer_config = Arc::new(RwLock::new(material.peer_server_tls.clone()));
    let (refusals_tx, mut refusals_rx) = tokio::sync::mpsc::channel(256);
    let peer_clients = if matches!(strategy, TunnelStrategy::ProxyPeering { .. }) {
        let listen = &config.peer_listen_addr;
        let failed = |source| ProxyServiceError::PeerListen {
            addr: listen.to_string(),
            source,
        };
        let listener = TcpListener::bind((listen.host.as_str(), listen.port))
            .await
            .map_err(failed)?;
        let bound_peer = listener.local_addr().map_err(failed)?;
        let server = PeerServer {
            tls: peer_config.clone(),
            cluster: material.cluster.clone(),
            tunnels: tunnels.clone(),
            refusals: Some(refusals_tx.clone()),
        };
        tokio::spawn(server.serve(listener, shutdown.clone().cancelled_owned()));
        let advertised = peer_public_addr(config, bound_peer, &auth_addr).await;
        info!(listen = %bound_peer, public = %advertised, "proxy peering listening");
        let clients = Arc::new(PeerClients::new(
            settings.host_uuid.clone(),
            material.peer_client_tls.clone(),
        ));
        tokio::spawn(
            clients
                .clone()
                .keep_connected(proxies.clone(), shutdown.clone().cancelled_owned()),
        );
        Some((clients, advertised))
    } else {
        None
    };
    let peering = peer_clients.as_ref().map(|(clients, _)| {
        Arc::new(Peering {
            clients: clients.clone(),
            proxies: proxies.clone(),
        })
    });
    tunnels.set_discovery(Discovery::new(
        vec![settings.host_uuid.clone()],
        TunnelStrategy::AgentMesh,
    ));
    let routing = ssh_routing(&web, tunnels.clone(), peering, &shutdown);
    web.set_ssh_routing(routing.clone());
    let router = Router::new(
        RouterSettings {
            proxy_protocol: config.proxy_protocol,
            proxy_protocol_trusted: config.proxy_protocol_trusted_cidrs.clone(),
            // `auth_server` may list several auth servers: each is tried in turn.
            auth_addrs: auth_addr
                .split(',')
                .map(str::trim)
                .filter(|addr| !addr.is_empty())
                .map(str::to_string)
                .collect(),
            forward_signer: Some(forward_signer.clone()),
            max_unauthenticated_per_source: usize::try_from(config.max_unauthenticated_per_source)
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
            ssh: Some(routing),
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

    let in_service = InService {
        auth_addr: auth_addr.clone(),
        web: web.clone(),
        tunnel_config,
        peer_config,
        peer_clients: peer_clients.as_ref().map(|(clients, _)| clients.clone()),
        forward_signer,
        certs,
        keep_fallback_cert: keypairs.is_empty(),
    };
    let heartbeats = {
        let document = presence_document(
            &settings,
            addr,
            peer_clients.map(|(_, advertised)| advertised),
        );
        let host_uuid = settings.host_uuid.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut proxy_changes = proxies.changes();
            let mut strategy = strategy;
            let mut last_strategy_check = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = beat.tick() => {
                        let mut auth = web.auth_client();
                        let request = proto::HeartbeatRequest {
                            document: document.clone(),
                            ttl_seconds: i64::try_from(HEARTBEAT_TTL.as_secs()).unwrap_or(4),
                            live_sessions: Vec::new(),
                        };
                        // Bounded: a hung call must not hold back the beats after it.
                        match tokio::time::timeout(HEARTBEAT_TTL / 2, auth.heartbeat(request)).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(status)) => warn!(error = %status.message(), "proxy heartbeat failed"),
                            Err(_) => warn!("proxy heartbeat: no answer from auth within 2 s"),
                        }
                        if last_strategy_check.elapsed() >= RENEW_CHECK_EVERY {
                            last_strategy_check = tokio::time::Instant::now();
                            match read_strategy(&mut auth, HEARTBEAT_TTL / 2).await {
                                Ok(read) => strategy = read,
                                Err(err) => warn!(%err, "cannot read the cluster's tunnel strategy"),
                            }
                        }
                    }
                    changed = proxy_changes.changed() => if changed.is_err() { return },
                    changed = identities.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let renewed = identities.borrow_and_update().clone();
                        match Material::from_identity(&renewed) {
                            Ok(material) => in_service.apply(material).await,
                            Err(err) => warn!(%err, "cannot use the proxy's renewed identity"),
                        }
                        continue;
                    }
                }
                if proxies.is_loaded() {
                    tunnels.set_discovery(discovery(&proxies.current(), &host_uuid, strategy));
                }
            }
        })
    };

    info!(%addr, proxy_protocol = config.proxy_protocol, auth = %auth_addr, "proxy listening (TLS routing: web API, auth API passthrough, reverse tunnels)");
    readiness.ready("proxy");
    let task = tokio::spawn(async move {
        router.serve(listener, shutdown.cancelled_owned()).await;
        let _ = heartbeats.await;
        reporter.abort();
    });
    Ok(RunningProxy { addr, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(uuid: &str) -> ProxyPresence {
        ProxyPresence {
            uuid: uuid.to_string(),
            hostname: String::new(),
            addr: String::new(),
            public_addr: Vec::new(),
            peer_addr: None,
            version: String::new(),
        }
    }

    #[test]
    fn agents_are_told_every_live_proxy_once_and_this_one_always() {
        let found = discovery(
            &[presence("b"), presence("a"), presence("b")],
            "c",
            TunnelStrategy::AgentMesh,
        );
        assert_eq!(
            found,
            Discovery::new(
                vec!["a".to_string(), "b".to_string(), "c".to_string()],
                TunnelStrategy::AgentMesh
            )
        );
        let alone = discovery(&[], "c", TunnelStrategy::AgentMesh);
        assert_eq!(
            alone,
            Discovery::new(vec!["c".to_string()], TunnelStrategy::AgentMesh)
        );
    }
}
