//! The validated configuration: plain structs with defaults applied. Everything here has already
//! passed [`Config::from_yaml`](super::Config::from_yaml)'s checks, so the daemon reads fields
//! without re-validating them. `docs/config.md` documents each field for operators.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{HostPort, Secret, ServerAddrs, keyword_enum};

/// Where data lives when the config does not say (`jumpgate.data_dir`).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/jumpgate";
/// The auth service's default port (DESIGN.md, "Services and ports").
pub const DEFAULT_AUTH_PORT: u16 = 3025;
/// The proxy's default public (web and TLS-routing) port.
pub const DEFAULT_PROXY_WEB_PORT: u16 = 3080;
/// The proxy-peering port.
pub const DEFAULT_PROXY_PEER_PORT: u16 = 3021;
/// The key prefix under which the etcd backend keeps cluster state.
pub const DEFAULT_ETCD_PREFIX: &str = "/jumpgate/";

/// The config file layout. Only v3 (Teleport's current layout) is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfigVersion {
    /// `version: v3`, also assumed when `version` is absent.
    #[default]
    V3,
}

impl ConfigVersion {
    /// The spelling in a config file.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::V3 => "v3",
        }
    }
}

impl std::str::FromStr for ConfigVersion {
    type Err = super::ValueError;

    fn from_str(s: &str) -> Result<Self, super::ValueError> {
        match s.to_ascii_lowercase().as_str() {
            "v3" => Ok(Self::V3),
            "v1" | "v2" => Err(super::ValueError::UnsupportedVersion(s.to_owned())),
            _ => Err(super::ValueError::UnknownVersion(s.to_owned())),
        }
    }
}

impl<'de> Deserialize<'de> for ConfigVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::values::from_str(d)
    }
}

/// Settings shared by every service on this host: the `jumpgate:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalConfig {
    /// The name this host registers under; `None` means the OS host name.
    pub nodename: Option<String>,
    /// Where this host keeps its own state (keys, certificates) and the embedded stores.
    pub data_dir: PathBuf,
    /// The auth service to join, dialled directly (port 3025): one address (an auth
    /// load balancer) or several auth servers, tried in turn.
    pub auth_server: Option<ServerAddrs>,
    /// The proxy to join through (its public TLS-routing port); agents use this. One
    /// address (a load balancer) or several proxies, tried in turn.
    pub proxy_server: Option<ServerAddrs>,
    /// A static join token (the short form of `join_params` with method `token`).
    pub auth_token: Option<Secret>,
    /// How this host proves it may join the cluster.
    pub join_params: Option<JoinParams>,
    /// Hashes of the cluster's CA public keys (`sha256:<64 hex>`) a joining host must see.
    pub ca_pin: Vec<String>,
    /// Where cluster state, audit events and recordings are stored (used by the auth service).
    pub storage: StorageConfig,
    /// The daemon's own log.
    pub log: LogConfig,
    /// Where to serve `/healthz`, `/readyz` and `/metrics`; `None` disables it.
    pub diag_addr: Option<HostPort>,
    /// The SSH algorithms this host's SSH service offers (Teleport's `kex_algos`,
    /// `ciphers`, `mac_algos`); `None`: Jumpgate's defaults ([`SshAlgorithms`]).
    pub ssh_algorithms: SshAlgorithms,
}

/// SSH algorithm lists, each `None` for the default. Names are OpenSSH's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshAlgorithms {
    pub kex: Option<Vec<String>>,
    pub ciphers: Option<Vec<String>>,
    pub macs: Option<Vec<String>>,
}

impl SshAlgorithms {
    /// Key exchanges the SSH service can offer.
    pub const SUPPORTED_KEX: &[&str] = &[
        "mlkem768x25519-sha256",
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "diffie-hellman-group-exchange-sha256",
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group17-sha512",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group15-sha512",
        "diffie-hellman-group14-sha256",
    ];
    /// The default: the post-quantum hybrid first, then X25519 for OpenSSH before 9.9
    /// (ssh-audit warns that X25519 alone is not post-quantum; `kex_algos:
    /// [mlkem768x25519-sha256]` silences it and needs OpenSSH 9.9+). No finite-field
    /// Diffie-Hellman: group14's 2048-bit modulus is weak, and the others cost a lot of
    /// CPU per connection for no gain over X25519.
    pub const DEFAULT_KEX: &[&str] = &["mlkem768x25519-sha256", "curve25519-sha256"];
    /// Ciphers the SSH service can offer.
    pub const SUPPORTED_CIPHERS: &[&str] = &[
        "chacha20-poly1305@openssh.com",
        "aes256-gcm@openssh.com",
        "aes256-ctr",
        "aes192-ctr",
        "aes128-ctr",
    ];
    /// Every supported cipher is a default (the CTR modes only with ETM MACs).
    pub const DEFAULT_CIPHERS: &[&str] = Self::SUPPORTED_CIPHERS;
    /// MACs the SSH service can offer.
    pub const SUPPORTED_MACS: &[&str] = &[
        "hmac-sha2-512-etm@openssh.com",
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512",
        "hmac-sha2-256",
    ];
    /// Encrypt-then-MAC only: the plain variants MAC the plaintext (ssh-audit warns).
    pub const DEFAULT_MACS: &[&str] = &[
        "hmac-sha2-512-etm@openssh.com",
        "hmac-sha2-256-etm@openssh.com",
    ];

    /// The key exchanges to offer, configured or default.
    pub fn kex_or_default(&self) -> Vec<String> {
        Self::or_default(self.kex.as_ref(), Self::DEFAULT_KEX)
    }

    pub fn ciphers_or_default(&self) -> Vec<String> {
        Self::or_default(self.ciphers.as_ref(), Self::DEFAULT_CIPHERS)
    }

    pub fn macs_or_default(&self) -> Vec<String> {
        Self::or_default(self.macs.as_ref(), Self::DEFAULT_MACS)
    }

    fn or_default(configured: Option<&Vec<String>>, default: &[&str]) -> Vec<String> {
        configured
            .cloned()
            .unwrap_or_else(|| default.iter().map(ToString::to_string).collect())
    }
}

impl Default for GlobalConfig {
    fn default() -> Self {
        Self {
            nodename: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            auth_server: None,
            proxy_server: None,
            auth_token: None,
            join_params: None,
            ca_pin: Vec::new(),
            storage: StorageConfig::default(),
            log: LogConfig::default(),
            diag_addr: None,
            ssh_algorithms: SshAlgorithms::default(),
        }
    }
}

/// `jumpgate.join_params`: how this host proves itself when it joins. One input of a join;
/// the whole request is `jumpgate_node::join::JoinSpec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinParams {
    /// How the host proves itself.
    pub method: JoinMethod,
    /// The join token's name (for method `token`, the token itself).
    pub token_name: Secret,
}

/// A way of joining a cluster. Teleport's cloud-identity methods (ec2, iam, ...) are refused with
/// a clear error until Jumpgate implements them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum JoinMethod {
    /// A join token made with `jctl tokens add`.
    #[default]
    Token,
}

keyword_enum!(JoinMethod, "join method", { Token => ["token"] },
    unsupported: ["ec2", "iam", "github", "gitlab", "kubernetes", "azure", "gcp", "circleci",
        "spacelift", "tpm", "oracle", "bitbucket", "terraform_cloud", "azure_devops",
        "bound_keypair"]);

/// `jumpgate.storage`: the cluster-state backend and the audit stores.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageConfig {
    /// The cluster-state backend.
    pub backend: StorageBackend,
    /// Where audit events go, as URIs; empty means the default store in `data_dir`.
    pub audit_events_uri: Vec<String>,
    /// Where session recordings go (`file://DIR` or `s3://BUCKET/PREFIX?...`); `None` means
    /// files in `DATA_DIR/log/sessions`.
    pub audit_sessions_uri: Option<super::SessionsUri>,
}

/// The cluster-state backend (`storage.type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageBackend {
    /// The embedded SQLite store (`type: sqlite`, or Teleport's name `dir`).
    Sqlite {
        /// The directory holding the database (Teleport's meaning of `path`); `None` means
        /// `<data_dir>/backend`, see [`StorageConfig::sqlite_dir`].
        path: Option<PathBuf>,
    },
    /// In memory only: everything is lost on restart. For tests and demos.
    Memory,
    /// An etcd cluster, for highly available auth servers.
    Etcd(EtcdConfig),
    /// A PostgreSQL database, for highly available auth servers (`type: postgresql`).
    Postgres(PostgresConfig),
    /// A DynamoDB table, for highly available auth servers on AWS (`type: dynamodb`).
    Dynamo(DynamoConfig),
}

impl Default for StorageBackend {
    fn default() -> Self {
        Self::Sqlite { path: None }
    }
}

impl StorageConfig {
    /// The directory of the SQLite store, with the default applied; `None` for other backends.
    pub fn sqlite_dir(&self, data_dir: &std::path::Path) -> Option<PathBuf> {
        match &self.backend {
            StorageBackend::Sqlite { path: Some(path) } => Some(path.clone()),
            StorageBackend::Sqlite { path: None } => Some(data_dir.join("backend")),
            StorageBackend::Memory
            | StorageBackend::Etcd(_)
            | StorageBackend::Postgres(_)
            | StorageBackend::Dynamo(_) => None,
        }
    }
}

/// `storage` with `type: etcd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// The etcd members, as `http(s)://host:port` URLs; never empty.
    pub peers: Vec<String>,
    /// Key prefix for all of Jumpgate's keys.
    pub prefix: String,
    /// Client certificate for mutual TLS (given together with `tls_key_file`).
    pub tls_cert_file: Option<PathBuf>,
    /// Client private key for mutual TLS.
    pub tls_key_file: Option<PathBuf>,
    /// CA bundle that signed the etcd servers' certificates; `None` means the system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// User for etcd's password authentication (given together with `password_file`).
    pub username: Option<String>,
    /// File holding that user's password, so the password is not in the config.
    pub password_file: Option<PathBuf>,
    /// Skip verification of the etcd servers' certificates. Dangerous; for tests only.
    pub insecure: bool,
}

/// `storage` with `type: postgresql`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// A libpq connection string (URL or `key=value` form), passed to the driver as is:
    /// several hosts with `target_session_attrs=read-write` find the primary after a
    /// failover. Never empty; may hold a password, but `password_file` keeps it out of
    /// the config.
    pub conn_string: String,
    /// File holding the password of the connection string's user.
    pub password_file: Option<PathBuf>,
}

/// `storage` with `type: dynamodb` (Teleport's field names). Credentials are not here: they
/// come from the standard AWS chain (environment, profile, instance or task role).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoConfig {
    /// The AWS region of the table, e.g. `us-east-1`.
    pub region: String,
    /// The table holding the cluster state; created if missing.
    pub table_name: String,
    /// Another endpoint than AWS's (a local emulator or a VPC endpoint), as an
    /// `http(s)://` URL.
    pub endpoint: Option<String>,
    /// How a table Jumpgate creates is billed.
    pub billing: DynamoBillingMode,
}

/// `storage.billing_mode` (with `read_capacity_units`/`write_capacity_units`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DynamoBillingMode {
    /// On-demand capacity (`pay_per_request`, the default).
    #[default]
    PayPerRequest,
    /// Fixed capacity (`provisioned`); both default to 10 units.
    Provisioned {
        read_capacity_units: i64,
        write_capacity_units: i64,
    },
}

/// Capacity units a provisioned table gets unless the config says (Teleport's default).
pub const DEFAULT_DYNAMO_CAPACITY_UNITS: i64 = 10;

/// `jumpgate.log`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogConfig {
    /// Where log lines go.
    pub output: LogOutput,
    /// The least severe level written.
    pub severity: LogSeverity,
    /// Line format.
    pub format: LogFormat,
    /// Which extra fields a line carries (from Teleport's `format.extra_fields`:
    /// level, timestamp, component, caller); empty means the logger's choice.
    pub extra_fields: Vec<String>,
}

/// The fields allowed in `log.format.extra_fields`.
pub const LOG_EXTRA_FIELDS: [&str; 4] = ["level", "timestamp", "component", "caller"];

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LogOutput {
    /// Standard error (the default).
    #[default]
    Stderr,
    /// Standard output.
    Stdout,
    /// Appended to a file.
    File(PathBuf),
}

/// Log levels, least verbose first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogSeverity {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// The default.
    #[default]
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

keyword_enum!(LogSeverity, "log severity", {
    Error => ["error", "err"],
    Warn => ["warn", "warning"],
    Info => ["info"],
    Debug => ["debug"],
    Trace => ["trace"],
});

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable text (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

keyword_enum!(LogFormat, "log format", { Text => ["text"], Json => ["json"] });

/// `auth_service`: the certificate authority and cluster state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthServiceConfig {
    /// Whether this host runs the auth service (present section = enabled).
    pub enabled: bool,
    /// The cluster's name, fixed when the cluster is first created; `None` means the host name.
    pub cluster_name: Option<String>,
    /// Where the auth API listens.
    pub listen_addr: HostPort,
    /// Addresses clients reach this auth service at (e.g. a load balancer), also put in its
    /// certificate.
    pub public_addr: Vec<HostPort>,
    /// Static join tokens. Prefer dynamic ones from `jctl tokens add`: these never expire.
    pub tokens: Vec<StaticToken>,
    /// How users log in.
    pub authentication: Authentication,
    /// Where sessions are recorded.
    pub session_recording: SessionRecording,
    /// Whether the proxy serves everything on one port.
    pub proxy_listener_mode: ProxyListenerMode,
    /// How agents spread their reverse tunnels over proxies.
    pub tunnel_strategy: TunnelStrategy,
    /// A web UI session unused for this long ends (Teleport's `web_idle_timeout`).
    pub web_idle_timeout: std::time::Duration,
}

/// The default of `auth_service.web_idle_timeout`, as Teleport's.
pub const DEFAULT_WEB_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

impl Default for AuthServiceConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cluster_name: None,
            listen_addr: HostPort::new("0.0.0.0", DEFAULT_AUTH_PORT),
            public_addr: Vec::new(),
            tokens: Vec::new(),
            authentication: Authentication::default(),
            session_recording: SessionRecording::default(),
            proxy_listener_mode: ProxyListenerMode::default(),
            tunnel_strategy: TunnelStrategy::default(),
            web_idle_timeout: DEFAULT_WEB_IDLE_TIMEOUT,
        }
    }
}

/// A static join token: `"proxy,node:TOKENVALUE"` in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticToken {
    /// What a host that presents the token may join as; never empty.
    pub roles: Vec<JoinRole>,
    /// The token value.
    pub token: Secret,
}

/// What a joining host may become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum JoinRole {
    /// An auth server.
    Auth,
    /// A proxy.
    Proxy,
    /// An SSH agent.
    Node,
}

keyword_enum!(JoinRole, "join role", {
    Auth => ["auth"],
    Proxy => ["proxy"],
    Node => ["node"],
}, unsupported: ["app", "db", "kube", "windowsdesktop", "discovery", "bot", "okta", "instance"]);

/// `auth_service.authentication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// The login method the login page and `jsh login` offer first.
    pub kind: AuthType,
    /// With an SSO `type`: the connector (`kind: oidc|saml|github` resource) used when a
    /// login names none; default the first of that kind.
    pub connector_name: Option<String>,
    /// Whether local users (passwords) may log in besides SSO; default yes. Off, only
    /// connectors log people in (admins keep `jctl` on the auth server).
    pub local_auth: bool,
    /// The second factor local users must present.
    pub second_factor: SecondFactor,
    /// `webauthn`: set exactly when `second_factor` lets users use security keys
    /// ([`SecondFactor::allows_webauthn`]), with the relying party ID decided.
    pub webauthn: Option<Webauthn>,
    /// `passwordless`: whether a passkey alone may log in (when WebAuthn is on). Default true.
    pub passwordless: bool,
}

impl Default for Authentication {
    fn default() -> Self {
        Self {
            kind: AuthType::default(),
            connector_name: None,
            local_auth: true,
            second_factor: SecondFactor::default(),
            webauthn: None,
            passwordless: true,
        }
    }
}

/// `auth_service.authentication.webauthn` (Teleport's section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webauthn {
    /// The relying party ID: the domain security keys are registered for. Browsers accept
    /// it on pages of this domain and its subdomains; a key registered for one RP ID never
    /// signs for another, so changing it orphans every registered key. Default: the host
    /// name of the proxy's first `public_addr` in the same config.
    pub rp_id: String,
}

/// Login methods: local users, or single sign-on through a connector of that kind
/// (docs/sso.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthType {
    /// Local users with passwords.
    #[default]
    Local,
    /// OpenID Connect (`kind: oidc` connectors).
    Oidc,
    /// SAML 2.0 (`kind: saml` connectors).
    Saml,
    /// GitHub (`kind: github` connectors).
    Github,
}

keyword_enum!(AuthType, "authentication type", {
    Local => ["local"],
    Oidc => ["oidc"],
    Saml => ["saml"],
    Github => ["github"],
});

/// Second-factor policy for local users, as the config may say it (Teleport's keywords);
/// auth enforces it (`jumpgate_auth::webauthn::required_factor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecondFactor {
    /// Passwords only.
    Off,
    /// TOTP codes are required (the default).
    #[default]
    Otp,
    /// A second factor is required, of any enabled kind.
    On,
    /// WebAuthn (security keys) is required.
    Webauthn,
    /// A second factor is used when the user has registered one.
    Optional,
}

impl SecondFactor {
    /// Whether users may register and use security keys (WebAuthn) under this policy.
    pub fn allows_webauthn(self) -> bool {
        matches!(self, Self::Webauthn | Self::On | Self::Optional)
    }

    /// Whether users enrol and use TOTP codes under this policy.
    pub fn allows_otp(self) -> bool {
        matches!(self, Self::Otp | Self::On | Self::Optional)
    }
}

keyword_enum!(SecondFactor, "second factor", {
    Off => ["off"],
    Otp => ["otp"],
    On => ["on"],
    Webauthn => ["webauthn"],
    Optional => ["optional"],
});

/// Where interactive sessions are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionRecording {
    /// By the node, uploaded asynchronously (the default).
    #[default]
    Node,
    /// By the proxy, uploaded asynchronously.
    Proxy,
    /// Not recorded.
    Off,
    /// By the node, streamed synchronously: the session stops if the upload fails.
    NodeSync,
    /// By the proxy, streamed synchronously.
    ProxySync,
}

keyword_enum!(SessionRecording, "session recording mode", {
    Node => ["node"],
    Proxy => ["proxy"],
    Off => ["off"],
    NodeSync => ["node-sync"],
    ProxySync => ["proxy-sync"],
});

/// Whether the proxy multiplexes every protocol on its one public port (TLS routing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyListenerMode {
    /// One port, routed by ALPN (the default).
    #[default]
    Multiplex,
    /// Separate listeners per protocol (Teleport's legacy layout).
    Separate,
}

keyword_enum!(ProxyListenerMode, "proxy listener mode", {
    Multiplex => ["multiplex"],
    Separate => ["separate"],
});

/// How agents spread their reverse tunnels over proxies (DESIGN.md, "Tunnels").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TunnelStrategy {
    /// One tunnel to every proxy (the default).
    #[default]
    AgentMesh,
    /// Tunnels to a few proxies; proxies reach the others' agents by peering.
    ProxyPeering {
        /// How many distinct proxies each agent keeps a tunnel to; at least 1.
        agent_connection_count: u32,
    },
}

impl TunnelStrategy {
    /// The `type:` of [`TunnelStrategy::AgentMesh`].
    pub const AGENT_MESH: &'static str = "agent_mesh";
    /// The `type:` of [`TunnelStrategy::ProxyPeering`].
    pub const PROXY_PEERING: &'static str = "proxy_peering";

    /// The name, as in the config's `type:` and on the wire (the auth API's status, the
    /// proxies' discovery message to agents).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AgentMesh => Self::AGENT_MESH,
            Self::ProxyPeering { .. } => Self::PROXY_PEERING,
        }
    }

    /// `agent_connection_count` as the wire carries it: 0 with agent_mesh.
    pub fn agent_connection_count(&self) -> u32 {
        match self {
            Self::AgentMesh => 0,
            Self::ProxyPeering {
                agent_connection_count,
            } => *agent_connection_count,
        }
    }

    /// The strategy from its wire form ([`TunnelStrategy::as_str`] and
    /// [`TunnelStrategy::agent_connection_count`]). A name this version does not know
    /// reads as agent_mesh: a tunnel to every proxy reaches every agent, whatever a newer
    /// cluster does, only with more connections. A proxy_peering count of 0 reads as 1.
    pub fn from_wire(name: &str, agent_connection_count: u32) -> TunnelStrategy {
        match name {
            Self::PROXY_PEERING => Self::ProxyPeering {
                agent_connection_count: agent_connection_count.max(1),
            },
            _ => Self::AgentMesh,
        }
    }
}

impl fmt::Display for TunnelStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default of `proxy_service.max_unauthenticated_per_source`.
pub const DEFAULT_MAX_UNAUTHENTICATED_PER_SOURCE: u32 = 256;

/// `proxy_service`: the public endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyServiceConfig {
    /// Whether this host runs a proxy (present section = enabled).
    pub enabled: bool,
    /// The one public port: web UI/API and every TLS-routed protocol.
    pub web_listen_addr: HostPort,
    /// Addresses users and agents reach this proxy at (DNS name / load balancer).
    pub public_addr: Vec<HostPort>,
    /// Where proxy peering listens.
    pub peer_listen_addr: HostPort,
    /// The address other proxies dial for peering; `None` means derived from the listen address.
    pub peer_public_addr: Option<HostPort>,
    /// TLS certificates for the public port; empty means self-signed (dev and tests only).
    pub https_keypairs: Vec<KeyPair>,
    /// Expect a PROXY protocol header from a layer-4 load balancer.
    pub proxy_protocol: bool,
    /// The load balancers' networks: with `proxy_protocol` on, a connection from any
    /// other address is refused (it bypassed the load balancer and could claim any
    /// client address). Empty: every source is trusted.
    pub proxy_protocol_trusted_cidrs: Vec<ipnet::IpNet>,
    /// Connections one client address may hold on the public port before they
    /// authenticate (TLS handshakes, the anonymous web API, auth API connections until
    /// auth answers). Raise it when many agents or users share one NAT address.
    pub max_unauthenticated_per_source: u32,
}

impl Default for ProxyServiceConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            web_listen_addr: HostPort::new("0.0.0.0", DEFAULT_PROXY_WEB_PORT),
            public_addr: Vec::new(),
            peer_listen_addr: HostPort::new("0.0.0.0", DEFAULT_PROXY_PEER_PORT),
            peer_public_addr: None,
            https_keypairs: Vec::new(),
            proxy_protocol: false,
            proxy_protocol_trusted_cidrs: Vec::new(),
            max_unauthenticated_per_source: DEFAULT_MAX_UNAUTHENTICATED_PER_SOURCE,
        }
    }
}

/// A certificate and its key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with key_file and cert_file"
)]
pub struct KeyPair {
    /// The private key.
    pub key_file: PathBuf,
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
}

/// `ssh_service`: the agent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SshServiceConfig {
    /// Whether this host runs the agent (present section = enabled).
    pub enabled: bool,
    /// A direct SSH listener; `None` means reachable only through its reverse tunnel.
    pub listen_addr: Option<HostPort>,
    /// Static labels, used by roles to select nodes.
    pub labels: BTreeMap<String, String>,
    /// Labels whose values are the output of a command, re-run periodically.
    pub commands: Vec<CommandLabel>,
}

/// A label whose value is a command's output (trimmed), re-run every `period`: the agent
/// runs these (`jumpgate_node::heartbeat`) and reports them in its presence record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLabel {
    /// The label key.
    pub name: String,
    /// The program and its arguments (not run through a shell); never empty.
    pub command: Vec<String>,
    /// How often to re-run it; more than zero.
    pub period: Duration,
}
