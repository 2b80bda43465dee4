//! The auth service's gRPC API (`jumpgate_api::proto::auth_service_server::AuthService`).
//!
//! Each handler follows the same steps: read the caller from its TLS identity, check
//! the permission the call needs (deny by default; refusals audited), validate the
//! request, act through the backend-backed modules (`users`, `tokens`, `authorities`),
//! audit the outcome. Reads on the connection path (roles, users, CAs) come from the
//! watch-fed [`StateCache`] and from memory, never from a backend round trip.

mod caller;
mod certs;
mod errors;
mod hosts;
mod locks;
mod mfa;
mod resources;
mod sessions;
mod sso;
mod sso_saml;
mod watch_stream;
mod web_sessions;

pub use caller::Caller;
use caller::RuleScope;
pub use errors::{InternalError, ServiceError};
pub use mfa::WebauthnSettings;
pub use sso::{CONNECTORS_PREFIX, SsoSettings};

use crate::ClusterAuthorities;
use crate::authorities::AuthorityType;
use crate::cache::StateCache;
use crate::ratelimit::RateLimiter;
use crate::tokens::Tokens;
use crate::users::{SecondFactor, User, Users};
use futures::StreamExt;
use jumpgate_api::proto;
use jumpgate_api::proto::auth_service_server::AuthService;
use jumpgate_audit::recording::{RecordingInfo, SessionId, read_header};
use jumpgate_audit::{AuditLog, EventType, Order, RecordingStore, SearchQuery, Timestamp};
use jumpgate_backend::Backend;
use jumpgate_pki::IdentityKind;
use jumpgate_types::config::{JoinRole, StaticToken, TunnelStrategy};
use jumpgate_types::rbac::{EventFacts, ResourceFacts, SessionFacts};
use jumpgate_types::role::{kinds, verbs};
use jumpgate_types::{Resource, Role};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

/// Login attempts allowed from one address at once, then one per [`LOGIN_EVERY`].
const LOGIN_BURST: u32 = 10;
const LOGIN_EVERY: Duration = Duration::from_secs(6);
/// Join and signup attempts allowed from one address at once, then one per second.
/// SSO login legs (start, finish) allowed from one address at once, then one per
/// [`SSO_EVERY`]. Looser than passwords' limit: the provider checks the passwords; this
/// bounds the pending logins one address can store and the provider calls it can cause.
const SSO_BURST: u32 = 30;
const SSO_EVERY: Duration = Duration::from_secs(1);
const JOIN_BURST: u32 = 20;
const JOIN_EVERY: Duration = Duration::from_secs(1);
/// Most bytes of a recording one GetRecording call returns.
const MAX_RECORDING_READ: u64 = 4 * 1024 * 1024;

fn session_id(text: &str) -> Result<SessionId, ServiceError> {
    SessionId::new(text).map_err(|err| ServiceError::invalid(err.to_string()))
}

fn recording_error(err: jumpgate_audit::RecordingError) -> ServiceError {
    use jumpgate_audit::RecordingError as E;
    match err {
        // The store's own trouble: the detail (endpoint, bucket) is logged, not sent.
        E::StoreUnavailable { .. } => {
            tracing::warn!(error = %err, "the recording store is unavailable");
            ServiceError::Unavailable("the recording store is unavailable; try again".into())
        }
        E::Io { .. }
        | E::Store { .. }
        | E::Database { .. }
        | E::StoreDenied { .. }
        | E::StoreConfig { .. }
        | E::Corrupt { .. }
        | E::Task(_) => ServiceError::internal(err),
        other => ServiceError::invalid(other.to_string()),
    }
}

fn recording_info(info: &RecordingInfo) -> proto::RecordingInfo {
    proto::RecordingInfo {
        session_id: info.session_id.to_string(),
        size: info.size,
        completed: info.completed,
        modified_unix_millis: info
            .modified
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0),
    }
}

/// Most events one EmitEvents call may carry.
const MAX_EMITTED_EVENTS: usize = 1000;
/// What a node reports about the sessions it serves.
const NODE_EVENTS: [EventType; 7] = [
    EventType::SessionStart,
    EventType::SessionEnd,
    EventType::Exec,
    EventType::Scp,
    EventType::Sftp,
    EventType::Port,
    EventType::Auth,
];

/// What a write should look like in the cache once it has arrived there.
#[derive(Debug)]
pub(crate) enum Settled<'a> {
    Present,
    Absent,
    Value(&'a [u8]),
}

/// What the auth service runs on.
#[allow(missing_debug_implementations)]
pub struct AuthServerConfig {
    pub backend: Arc<dyn Backend>,
    pub audit: Arc<dyn AuditLog>,
    /// Where session recordings are kept.
    pub recordings: Arc<dyn RecordingStore>,
    pub authorities: ClusterAuthorities,
    /// Must watch `/roles/`, `/users/`, `/locks/` (see [`AuthServer::CACHED_PREFIXES`]).
    pub cache: StateCache,
    pub second_factor: SecondFactor,
    /// Set when `second_factor` allows security keys (`webauthn`, `on`, `optional`).
    pub webauthn: Option<WebauthnSettings>,
    pub static_tokens: Vec<StaticToken>,
    /// `auth_service.tunnel_strategy`, told to proxies (and through them to agents).
    pub tunnel_strategy: TunnelStrategy,
    /// `auth_service.web_idle_timeout`: a web session unused this long ends.
    pub web_idle_timeout: Duration,
    /// `auth_service.authentication`'s SSO part: default connector, local logins.
    pub sso: SsoSettings,
}

/// The auth service; cheap to clone (one shared state).
#[derive(Clone)]
pub struct AuthServer {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    audit: Arc<dyn AuditLog>,
    recordings: Arc<dyn RecordingStore>,
    /// Replaced as a whole on rotation, so a call sees one consistent set; subscribers
    /// (the daemon's TLS server config, the admin identity) follow the changes.
    authorities: watch::Sender<Arc<ClusterAuthorities>>,
    cache: StateCache,
    second_factor: SecondFactor,
    webauthn: Option<WebauthnSettings>,
    static_tokens: Vec<StaticToken>,
    tunnel_strategy: TunnelStrategy,
    web_idle_timeout: Duration,
    sso: SsoSettings,
    /// The client for identity providers (OIDC, GitHub), or why it could not be made.
    http: Result<crate::sso::http::HttpClient, String>,
    login_limit: RateLimiter,
    join_limit: RateLimiter,
    sso_limit: RateLimiter,
    upload_quota: sessions::UploadQuota,
    /// What each recording's header says of its session (user, login, node), for rules
    /// scoped by `where`: a header never changes once written, so it is read once per
    /// auth server, not once per listing.
    session_facts: std::sync::Mutex<HashMap<SessionId, SessionFacts>>,
}

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServer")
            .field("cluster", &self.authorities().cluster)
            .finish_non_exhaustive()
    }
}

fn unix(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A TTL from a request: 0 means the default; negative is an error.
fn requested_ttl(seconds: i64, what: &str) -> Result<Option<Duration>, ServiceError> {
    match seconds {
        0 => Ok(None),
        s if s < 0 => Err(ServiceError::invalid(format!(
            "{what} must be positive, not {s} seconds"
        ))),
        s => Ok(Some(Duration::from_secs(s.unsigned_abs()))),
    }
}

/// Recording headers read at once when a scoped listing meets ones it has not seen.
const HEADER_READS_AT_ONCE: usize = 16;
/// Sessions whose header facts an auth server keeps in memory (about 200 bytes each).
const MAX_KNOWN_SESSION_FACTS: usize = 100_000;

impl AuthServer {
    /// The backend prefixes the auth service reads through its cache.
    pub const CACHED_PREFIXES: [&'static str; 6] = [
        sso::CONNECTORS_PREFIX,
        "/roles/",
        "/users/",
        locks::LOCKS_PREFIX,
        "/presence/node/",
        "/presence/proxy/",
    ];

    pub fn new(config: AuthServerConfig) -> AuthServer {
        AuthServer {
            inner: Arc::new(Inner {
                backend: config.backend,
                audit: config.audit,
                recordings: config.recordings,
                authorities: watch::Sender::new(Arc::new(config.authorities)),
                cache: config.cache,
                second_factor: config.second_factor,
                webauthn: config
                    .webauthn
                    .filter(|_| config.second_factor.allows_webauthn()),
                static_tokens: config.static_tokens,
                tunnel_strategy: config.tunnel_strategy,
                web_idle_timeout: config.web_idle_timeout,
                sso: config.sso,
                http: crate::sso::http::HttpClient::new().map_err(|err| err.to_string()),
                login_limit: RateLimiter::new(LOGIN_BURST, LOGIN_EVERY),
                join_limit: RateLimiter::new(JOIN_BURST, JOIN_EVERY),
                sso_limit: RateLimiter::new(SSO_BURST, SSO_EVERY),
                upload_quota: sessions::UploadQuota::default(),
                session_facts: std::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The cluster's current CAs.
    pub fn authorities(&self) -> Arc<ClusterAuthorities> {
        self.inner.authorities.borrow().clone()
    }

    /// Follows the cluster's CAs: changed after a rotation (here or on another auth
    /// server) and when a grace period ends.
    pub fn subscribe_authorities(&self) -> watch::Receiver<Arc<ClusterAuthorities>> {
        self.inner.authorities.subscribe()
    }

    /// Reads the CAs from the backend again, as trusted at `now`, and publishes them if
    /// they differ from the ones in use.
    pub async fn reload_authorities(&self, now: SystemTime) -> Result<(), crate::AuthError> {
        let cluster = self.authorities().cluster.clone();
        let loaded = ClusterAuthorities::load(self.inner.backend.as_ref(), &cluster, now).await?;
        self.publish_authorities(loaded);
        Ok(())
    }

    fn publish_authorities(&self, loaded: ClusterAuthorities) {
        self.inner.authorities.send_if_modified(|current| {
            if current.same_trust(&loaded) {
                return false;
            }
            info!(
                user_ca = %loaded.user.fingerprint(),
                host_ca = %loaded.host.fingerprint(),
                ca_pin = %loaded.tls.ca_pin(),
                "certificate authorities changed"
            );
            *current = Arc::new(loaded);
            true
        });
    }

    /// Keeps the CAs in use current until `shutdown` resolves: reloads them on every
    /// change under `/authorities/` (a rotation on any auth server of the cluster) and
    /// when the earliest grace period ends. Backend errors are retried with a pause; the
    /// CAs in use stay meanwhile.
    pub async fn follow_authorities(&self, shutdown: impl std::future::Future<Output = ()>) {
        const RETRY: Duration = Duration::from_secs(2);
        tokio::pin!(shutdown);
        loop {
            let prefix = match jumpgate_backend::Key::new("/authorities/") {
                Ok(prefix) => prefix,
                Err(err) => {
                    warn!(%err, "cannot follow the certificate authorities");
                    return;
                }
            };
            let mut watch = match self.inner.backend.watch(vec![prefix]).await {
                Ok(watch) => watch,
                Err(err) => {
                    warn!(%err, "cannot watch the certificate authorities; retrying");
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(RETRY) => continue,
                    }
                }
            };
            // Anything written before the watch started is read now.
            if let Err(err) = self.reload_authorities(SystemTime::now()).await {
                warn!(%err, "cannot reload the certificate authorities; retrying");
            }
            loop {
                let grace_end = self
                    .authorities()
                    .next_trust_change()
                    .and_then(|at| at.duration_since(SystemTime::now()).ok())
                    .map(|wait| wait + Duration::from_secs(1));
                let wake = async {
                    match grace_end {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = &mut shutdown => return,
                    () = wake => {}
                    event = watch.next() => match event {
                        Some(Ok(_)) => {}
                        Some(Err(err)) => {
                            warn!(%err, "the certificate authority watch failed; restarting it");
                            tokio::select! {
                                () = &mut shutdown => return,
                                () = tokio::time::sleep(RETRY) => break,
                            }
                        }
                        None => {
                            warn!("the certificate authority watch ended; restarting it");
                            tokio::select! {
                                () = &mut shutdown => return,
                                () = tokio::time::sleep(RETRY) => break,
                            }
                        }
                    },
                }
                if let Err(err) = self.reload_authorities(SystemTime::now()).await {
                    warn!(%err, "cannot reload the certificate authorities; retrying");
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
    }

    /// Local users; the cluster name (for TOTP labels) is borrowed from the CAs.
    fn users<'a>(&'a self, authorities: &'a ClusterAuthorities) -> Users<'a> {
        Users {
            backend: self.inner.backend.as_ref(),
            audit: self.inner.audit.as_ref(),
            cluster: authorities.cluster.as_str(),
            second_factor: self.inner.second_factor,
        }
    }

    /// Read-your-writes on this auth server: after a write to `key`, waits briefly until
    /// the watch-fed cache shows `expected`, so the caller's next call (e.g. `jctl users
    /// add` then `jctl auth sign`) sees its own change. Gives up quietly after 2 s.
    pub(crate) async fn settle(&self, key: &str, expected: Settled<'_>) {
        let settled = self
            .inner
            .cache
            .wait_until(Duration::from_secs(2), |cache| {
                let held = cache.get(key);
                match &expected {
                    Settled::Present => held.is_some(),
                    Settled::Absent => held.is_none(),
                    Settled::Value(value) => held.is_some_and(|held| &held[..] == *value),
                }
            })
            .await;
        if !settled {
            warn!(
                key,
                "the cache did not show a write within 2 s; the next read may be stale"
            );
        }
    }

    /// Appends an audit event; the call fails if it cannot be audited.
    pub(crate) async fn audit(
        &self,
        event: jumpgate_audit::AuditEvent,
    ) -> Result<(), ServiceError> {
        self.inner
            .audit
            .append(event)
            .await
            .map_err(|err| ServiceError::internal_in("cannot write the audit log", err))
    }

    fn tokens(&self) -> Tokens<'_> {
        Tokens {
            backend: self.inner.backend.as_ref(),
            audit: self.inner.audit.as_ref(),
            static_tokens: &self.inner.static_tokens,
        }
    }

    /// Refuses local users' logins (password, security key, passkey) when
    /// `authentication.local_auth` is off.
    fn require_local_auth(&self) -> Result<(), ServiceError> {
        if self.inner.sso.local_auth {
            return Ok(());
        }
        Err(ServiceError::PermissionDenied(format!(
            "this cluster logs people in through single sign-on only (local_auth: false): \
             use jsh login --auth {} or the web UI's single sign-on button",
            self.inner
                .sso
                .connector_name
                .clone()
                .unwrap_or_else(|| "CONNECTOR".to_string())
        )))
    }

    pub(crate) fn cached_user(&self, name: &str) -> Option<User> {
        let value = self.inner.cache.get(&format!("/users/{name}"))?;
        serde_json::from_slice(&value).ok()
    }

    pub(crate) fn cached_role(&self, name: &str) -> Option<Role> {
        let value = self.inner.cache.get(&format!("/roles/{name}"))?;
        let source = format!("backend:/roles/{name}");
        let parsed = std::str::from_utf8(&value)
            .map_err(|err| err.to_string())
            .and_then(|text| Resource::from_json(&source, text).map_err(|err| err.to_string()));
        match parsed {
            Ok(role) => Some(role),
            Err(err) => {
                // A role stored by an older version (say, with a `where` that did not parse
                // then either) grants nothing now: say so, or its holders lose access
                // without a trace.
                warn!(role = name, %err, "a stored role cannot be read and grants nothing; fix it with `jctl create -f`");
                None
            }
        }
    }

    /// The address a rate limit and the audit log use: what a proxy says its client
    /// is, else the connection's own address.
    fn client_ip(caller: &Caller, claimed: &str) -> Option<IpAddr> {
        if caller.kind() == Some(IdentityKind::Proxy) && !claimed.is_empty() {
            if let Ok(addr) = claimed.parse::<std::net::SocketAddr>() {
                return Some(addr.ip());
            }
            if let Ok(ip) = claimed.parse::<IpAddr>() {
                return Some(ip);
            }
        }
        caller.addr.map(|addr| addr.ip())
    }

    pub(crate) fn client_addr_text(caller: &Caller, claimed: &str) -> Option<String> {
        if caller.kind() == Some(IdentityKind::Proxy) && !claimed.is_empty() {
            return Some(claimed.to_string());
        }
        caller.addr.map(|addr| addr.to_string())
    }

    async fn rate_limit(
        &self,
        limiter: &RateLimiter,
        caller: &Caller,
        ip: Option<IpAddr>,
        method: &str,
    ) -> Result<(), ServiceError> {
        let Some(ip) = ip else { return Ok(()) };
        match limiter.check(ip, Instant::now()) {
            Ok(()) => Ok(()),
            Err(wait) => Err(self
                .refuse(
                    caller,
                    method,
                    ServiceError::RateLimited(format!(
                        "too many attempts from {ip}; try again in {} s",
                        wait.as_secs().max(1)
                    )),
                )
                .await),
        }
    }

    fn check_roles_exist(&self, roles: &[String]) -> Result<(), ServiceError> {
        for role in roles {
            if self.cached_role(role).is_none() {
                return Err(ServiceError::invalid(format!(
                    "role {role:?} does not exist; `jctl get roles` lists them"
                )));
            }
        }
        Ok(())
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// An invite made before TOTP secrets were bound to invites: it cannot confirm an
/// enrolment.
fn stale_invite() -> ServiceError {
    ServiceError::invalid(
        "this invite predates confirmed enrolment; ask an admin for a new one \
         (`jctl users reset NAME`)",
    )
}

impl AuthServer {
    /// The second factor a signup enrols, checked before the token is spent: a TOTP step
    /// (`otp`; `on` and `optional` without a key) or a registered key (`webauthn`; `on`
    /// and `optional` when one is given), as the cluster's policy asks.
    async fn signup_second_factor(
        &self,
        users: &crate::users::Users<'_>,
        pending: &crate::PendingSignup,
        request: &proto::CompleteSignupRequest,
        now: SystemTime,
    ) -> Result<(Option<u64>, Option<(uuid::Uuid, crate::webauthn::Device)>), ServiceError> {
        let policy = users.second_factor;
        if request.webauthn_ceremony_id.is_empty() {
            if policy == jumpgate_types::config::SecondFactor::Webauthn {
                return Err(ServiceError::invalid(
                    "this cluster's second factor is a security key \
                     (authentication.second_factor: webauthn): register one on the invite \
                     page to sign up",
                ));
            }
            return self
                .signup_code_step(users, pending, &request.otp, now)
                .map(|step| (step, None));
        }
        if !policy.allows_webauthn() {
            return Err(ServiceError::invalid(format!(
                "this cluster does not use security keys (authentication.second_factor: \
                 {policy}); sign up without one"
            )));
        }
        let mut device_name = String::new();
        let key = self
            .registered_key(
                &pending.user,
                &request.webauthn_ceremony_id,
                &request.webauthn_credential_json,
                Some(&request.token),
                &mut device_name,
            )
            .await?;
        Ok((None, Some(key)))
    }

    /// The signup `token` names, read without spending it, under the per-address limit of
    /// the anonymous signup calls (`what` names the call for the limit's refusal).
    async fn peek_signup_limited(
        &self,
        caller: &Caller,
        client_addr: &str,
        token: &str,
        what: &str,
    ) -> Result<crate::PendingSignup, ServiceError> {
        let ip = Self::client_ip(caller, client_addr);
        self.rate_limit(&self.inner.join_limit, caller, ip, what)
            .await?;
        self.tokens()
            .peek_signup(token, SystemTime::now())
            .await
            .map_err(ServiceError::from)
    }

    /// With OTP on: the time step of `otp`, a current code of the invite's TOTP secret.
    fn signup_code_step(
        &self,
        users: &crate::users::Users<'_>,
        pending: &crate::PendingSignup,
        otp: &str,
        now: SystemTime,
    ) -> Result<Option<u64>, ServiceError> {
        if !users.second_factor.allows_otp() {
            return Ok(None);
        }
        let secret = pending.totp_secret.as_deref().ok_or_else(stale_invite)?;
        users
            .check_enrolment_code(&pending.user, secret, otp, now)
            .map(Some)
            .map_err(ServiceError::from)
    }
}

#[tonic::async_trait]
impl AuthService for AuthServer {
    async fn status(&self, request: Request<proto::StatusRequest>) -> Reply<proto::StatusResponse> {
        let caller = self.caller(&request)?;
        self.require_identity(&caller, "Status").await?;
        let authorities = self.authorities();
        Ok(Response::new(proto::StatusResponse {
            cluster_name: authorities.cluster.clone(),
            server_version: env!("CARGO_PKG_VERSION").to_string(),
            user_ca_fingerprints: authorities
                .user
                .trusted_fingerprints()
                .iter()
                .map(ToString::to_string)
                .collect(),
            host_ca_fingerprints: authorities
                .host
                .trusted_fingerprints()
                .iter()
                .map(ToString::to_string)
                .collect(),
            ca_pins: authorities.tls.trusted_pins(),
            caller: caller.describe(),
            second_factor: self.inner.second_factor.as_str().to_string(),
            tunnel_strategy: self.inner.tunnel_strategy.as_str().to_string(),
            agent_connection_count: self.inner.tunnel_strategy.agent_connection_count(),
            auth_type: sso::auth_type_name(self.inner.sso.kind).to_string(),
            connector_name: self.inner.sso.connector_name.clone().unwrap_or_default(),
            local_auth: self.inner.sso.local_auth,
            passwordless: self
                .inner
                .webauthn
                .as_ref()
                .is_some_and(|settings| settings.passwordless),
            connectors: self
                .connector_summaries()
                .into_iter()
                .map(|summary| proto::ConnectorSummary {
                    kind: summary.kind,
                    name: summary.name,
                    display: summary.display,
                })
                .collect(),
            authorities: authorities
                .rotations
                .iter()
                .map(|rotation| proto::AuthorityStatus {
                    r#type: rotation.authority.as_str().to_string(),
                    active: match rotation.authority {
                        AuthorityType::User => authorities.user.fingerprint().to_string(),
                        AuthorityType::Host => authorities.host.fingerprint().to_string(),
                        AuthorityType::Tls => authorities.tls.ca_pin(),
                    },
                    last_rotated_unix: rotation.last_rotated.map(unix).unwrap_or(0),
                    previous: rotation
                        .previous
                        .iter()
                        .map(|(key, until)| proto::PreviousAuthorityKey {
                            key: key.clone(),
                            trusted_until_unix: unix(*until),
                        })
                        .collect(),
                })
                .collect(),
        }))
    }

    type WatchStream = watch_stream::WatchStream;

    async fn watch(&self, request: Request<proto::WatchRequest>) -> Reply<Self::WatchStream> {
        let caller = self.caller(&request)?;
        let client_cert = request
            .extensions()
            .get::<jumpgate_api::PeerInfo>()
            .and_then(|peer| peer.client_cert.clone());
        let request = request.into_inner();
        Ok(Response::new(
            self.watch_for(&caller, client_cert, &request.kind).await?,
        ))
    }

    async fn get_resources(
        &self,
        request: Request<proto::GetResourcesRequest>,
    ) -> Reply<proto::GetResourcesResponse> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let documents = self
            .get_resources_for(&caller, &request.kind, &request.name, request.with_secrets)
            .await?;
        Ok(Response::new(proto::GetResourcesResponse { documents }))
    }

    async fn upsert_resource(
        &self,
        request: Request<proto::UpsertResourceRequest>,
    ) -> Reply<proto::UpsertResourceResponse> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        Ok(Response::new(
            self.upsert_resource_for(&caller, request).await?,
        ))
    }

    async fn delete_resource(
        &self,
        request: Request<proto::DeleteResourceRequest>,
    ) -> Reply<proto::DeleteResourceResponse> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        self.delete_resource_for(&caller, &request.kind, &request.name)
            .await?;
        Ok(Response::new(proto::DeleteResourceResponse {}))
    }

    async fn create_user(
        &self,
        request: Request<proto::CreateUserRequest>,
    ) -> Reply<proto::CreateUserResponse> {
        let caller = self.caller(&request)?;
        self.require_rule(&caller, "CreateUser", kinds::USER, verbs::CREATE)
            .await?;
        let request = request.into_inner();
        if request.roles.is_empty() {
            return Err(ServiceError::invalid(
                "a user needs at least one role (--roles access,editor,...)",
            )
            .into());
        }
        self.check_roles_exist(&request.roles)?;
        resources::check_logins(&request.logins)?;
        let user = User::local(request.name.clone(), request.roles, request.logins);
        let now = SystemTime::now();
        let authorities = self.authorities();
        let password = Some(request.password.as_str()).filter(|p| !p.is_empty());
        let enrollment = self
            .users(&authorities)
            .create(&user, password, now)
            .await
            .map_err(ServiceError::from)?;
        self.settle(&format!("/users/{}", request.name), Settled::Present)
            .await;
        let mut response = proto::CreateUserResponse {
            otpauth_uri: enrollment.otpauth_uri.unwrap_or_default(),
            ..Default::default()
        };
        if password.is_none() {
            let signup = self
                .tokens()
                .create_signup(&request.name, Tokens::SIGNUP_TTL, now)
                .await
                .map_err(ServiceError::from)?;
            response.signup_token = signup.token.clone();
            response.signup_expires_unix = unix(signup.expires);
        }
        Ok(Response::new(response))
    }

    async fn reset_user(
        &self,
        request: Request<proto::ResetUserRequest>,
    ) -> Reply<proto::ResetUserResponse> {
        let caller = self.caller(&request)?;
        self.require_rule(&caller, "ResetUser", kinds::USER, verbs::UPDATE)
            .await?;
        let name = request.into_inner().name;
        let now = SystemTime::now();
        let authorities = self.authorities();
        self.users(&authorities)
            .reset(&name, now)
            .await
            .map_err(ServiceError::from)?;
        let tokens = self.tokens();
        tokens
            .delete_signups_for(&name)
            .await
            .map_err(ServiceError::from)?;
        let signup = tokens
            .create_signup(&name, Tokens::SIGNUP_TTL, now)
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(proto::ResetUserResponse {
            signup_token: signup.token.clone(),
            signup_expires_unix: unix(signup.expires),
        }))
    }

    async fn unlock_user(
        &self,
        request: Request<proto::UnlockUserRequest>,
    ) -> Reply<proto::UnlockUserResponse> {
        let caller = self.caller(&request)?;
        self.require_rule(&caller, "UnlockUser", kinds::USER, verbs::UPDATE)
            .await?;
        let name = request.into_inner().name;
        let authorities = self.authorities();
        let outcome = self.users(&authorities).unlock(&name).await;
        let event = match &outcome {
            Ok(()) => jumpgate_audit::AuditEvent::success(EventType::UserUpdate),
            Err(err) => jumpgate_audit::AuditEvent::failure(EventType::UserUpdate, err.to_string()),
        }
        .user(name.as_str())
        .field("change", "unlocked")
        .field("by", caller.audit_name());
        self.audit(event).await?;
        outcome.map_err(|err| match err {
            crate::AuthError::Backend(jumpgate_backend::BackendError::NotFound { .. }) => {
                ServiceError::NotFound(format!("no user {name:?}; `jctl users ls` lists them"))
            }
            other => other.into(),
        })?;
        Ok(Response::new(proto::UnlockUserResponse {}))
    }

    async fn complete_signup(
        &self,
        request: Request<proto::CompleteSignupRequest>,
    ) -> Reply<proto::CompleteSignupResponse> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let ip = Self::client_ip(&caller, &request.client_addr);
        self.rate_limit(&self.inner.join_limit, &caller, ip, "CompleteSignup")
            .await?;
        let now = SystemTime::now();
        // Check the password before spending the single-use token on it.
        if let Err(err) = crate::users::check_password_policy(&request.password) {
            let mut event =
                jumpgate_audit::AuditEvent::failure(EventType::UserPasswordChange, err.to_string())
                    .field("method", "signup_token");
            if let Some(addr) = Self::client_addr_text(&caller, &request.client_addr) {
                event = event.remote_addr(addr);
            }
            self.audit(event).await?;
            return Err(ServiceError::from(err).into());
        }
        let authorities = self.authorities();
        let users = self.users(&authorities);
        // The code of the secret bound to the token, checked before the token is spent:
        // a mistyped code can be tried again with the same invite.
        let pending = self
            .tokens()
            .peek_signup(&request.token, now)
            .await
            .map_err(ServiceError::from);
        let factor = match pending {
            Ok(pending) => {
                self.signup_second_factor(&users, &pending, &request, now)
                    .await
            }
            Err(err) => Err(err),
        };
        let (step, key) = match factor {
            Ok(factor) => factor,
            Err(err) => {
                let mut event = jumpgate_audit::AuditEvent::failure(
                    EventType::UserPasswordChange,
                    err.to_string(),
                )
                .field("method", "signup_token");
                if let Some(addr) = Self::client_addr_text(&caller, &request.client_addr) {
                    event = event.remote_addr(addr);
                }
                self.audit(event).await?;
                return Err(err.into());
            }
        };
        let redeemed = self
            .tokens()
            .consume_signup(&request.token, now)
            .await
            .map_err(ServiceError::from)?;
        let totp = match (step, &redeemed.totp_secret) {
            (Some(step), Some(secret)) => Some((secret.as_str(), step)),
            _ => None,
        };
        // The key, if any, is stored in the same write as the password.
        let key_name = key.as_ref().map(|(_, device)| device.name.clone());
        let enrollment = users
            .set_password(&redeemed.user, &request.password, totp, key, now)
            .await
            .map_err(ServiceError::from)?;
        if let Some(device) = key_name {
            let remote = Self::client_addr_text(&caller, &request.client_addr);
            self.audit_device(
                EventType::MfaDeviceAdd,
                &redeemed.user,
                &device,
                Ok(()),
                remote.as_deref(),
            )
            .await?;
        }
        Ok(Response::new(proto::CompleteSignupResponse {
            user: redeemed.user,
            otpauth_uri: enrollment.otpauth_uri.unwrap_or_default(),
        }))
    }

    async fn get_signup(
        &self,
        request: Request<proto::GetSignupRequest>,
    ) -> Reply<proto::GetSignupResponse> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let pending = self
            .peek_signup_limited(&caller, &request.client_addr, &request.token, "GetSignup")
            .await?;
        let authorities = self.authorities();
        let users = self.users(&authorities);
        let otpauth_uri = match (&pending.totp_secret, users.second_factor) {
            (_, policy) if !policy.allows_otp() => String::new(),
            (Some(secret), _) => users
                .otpauth_uri(&pending.user, secret)
                .map_err(ServiceError::from)?,
            (None, _) => return Err(stale_invite().into()),
        };
        Ok(Response::new(proto::GetSignupResponse {
            user: pending.user,
            otpauth_uri,
            expires_unix: unix(pending.expires),
            second_factor: users.second_factor.to_string(),
        }))
    }

    async fn create_join_token(
        &self,
        request: Request<proto::CreateJoinTokenRequest>,
    ) -> Reply<proto::CreateJoinTokenResponse> {
        let caller = self.caller(&request)?;
        self.require_rule(&caller, "CreateJoinToken", kinds::TOKEN, verbs::CREATE)
            .await?;
        let request = request.into_inner();
        let roles = parse_join_roles(&request.roles)?;
        let ttl =
            requested_ttl(request.ttl_seconds, "the token TTL")?.unwrap_or(Tokens::DEFAULT_TTL);
        let tokens = self.tokens();
        let now = SystemTime::now();
        let issued = if request.reusable {
            tokens.create(&roles, ttl, now).await
        } else {
            tokens.create_single_use(&roles, ttl, now).await
        }
        .map_err(ServiceError::from)?;
        Ok(Response::new(proto::CreateJoinTokenResponse {
            token: issued.token.clone(),
            id: issued.id.clone(),
            expires_unix: unix(issued.expires),
            ca_pins: self.authorities().tls.trusted_pins(),
        }))
    }

    async fn list_join_tokens(
        &self,
        request: Request<proto::ListJoinTokensRequest>,
    ) -> Reply<proto::ListJoinTokensResponse> {
        let caller = self.caller(&request)?;
        self.require_rule(&caller, "ListJoinTokens", kinds::TOKEN, verbs::LIST)
            .await?;
        let tokens = self
            .tokens()
            .list(SystemTime::now())
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(proto::ListJoinTokensResponse {
            tokens: tokens
                .into_iter()
                .map(|token| proto::JoinTokenInfo {
                    id: token.id,
                    roles: token.roles,
                    expires_unix: token.expires.map(unix).unwrap_or(0),
                    kind: token.kind.to_string(),
                    single_use: token.single_use,
                })
                .collect(),
        }))
    }

    async fn delete_join_token(
        &self,
        request: Request<proto::DeleteJoinTokenRequest>,
    ) -> Reply<proto::DeleteJoinTokenResponse> {
        let caller = self.caller(&request)?;
        self.require_rule(&caller, "DeleteJoinToken", kinds::TOKEN, verbs::DELETE)
            .await?;
        self.tokens()
            .delete(&request.into_inner().token, SystemTime::now())
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(proto::DeleteJoinTokenResponse {}))
    }

    async fn export_authority(
        &self,
        request: Request<proto::ExportAuthorityRequest>,
    ) -> Reply<proto::ExportAuthorityResponse> {
        let caller = self.caller(&request)?;
        self.require_identity(&caller, "ExportAuthority").await?;
        let authorities = self.authorities();
        let text = match request.into_inner().r#type.as_str() {
            "user" => authorities.user.export_openssh(),
            "host" => authorities.host.export_openssh(),
            "tls" => Ok(authorities.tls.trusted_cert_pems().concat()),
            other => {
                return Err(ServiceError::invalid(format!(
                    "unknown CA type {other:?}: use user, host or tls"
                ))
                .into());
            }
        }
        .map_err(ServiceError::internal)?;
        Ok(Response::new(proto::ExportAuthorityResponse { text }))
    }

    async fn rotate_authority(
        &self,
        request: Request<proto::RotateAuthorityRequest>,
    ) -> Reply<proto::RotateAuthorityResponse> {
        let caller = self.caller(&request)?;
        self.require_rule(
            &caller,
            "RotateAuthority",
            kinds::CERT_AUTHORITY,
            verbs::UPDATE,
        )
        .await?;
        let request = request.into_inner();
        let which = crate::authorities::AuthorityType::parse_list(&request.r#type)
            .map_err(ServiceError::from)?;
        let grace = match request.grace_period_seconds {
            s if s < 0 => {
                return Err(ServiceError::invalid(format!(
                    "the grace period must be 0 (retire the old keys now) or more, not {s} seconds"
                ))
                .into());
            }
            s => Duration::from_secs(s.unsigned_abs()),
        };
        let now = SystemTime::now();
        let cluster = self.authorities().cluster.clone();
        let outcome =
            ClusterAuthorities::rotate(self.inner.backend.as_ref(), &cluster, &which, grace, now)
                .await;
        let names: Vec<String> = which.iter().map(|a| a.as_str().to_string()).collect();
        let mut event = match &outcome {
            Ok(_) => jumpgate_audit::AuditEvent::success(EventType::CertAuthorityRotate),
            Err(err) => {
                jumpgate_audit::AuditEvent::failure(EventType::CertAuthorityRotate, err.to_string())
            }
        }
        .user(caller.audit_name())
        .field("types", names.join(","))
        .field("grace_period_seconds", grace.as_secs());
        if let Some(addr) = caller.addr {
            event = event.remote_addr(addr);
        }
        self.audit(event).await?;
        let rotated = match outcome {
            Ok(rotated) => rotated,
            Err(crate::AuthError::Backend(jumpgate_backend::BackendError::ConditionFailed {
                ..
            })) => {
                return Err(ServiceError::Unavailable(
                    "another rotation changed these CAs at the same moment; nothing was \
                     changed by this one: check `jctl status`, then run it again if needed"
                        .to_string(),
                )
                .into());
            }
            Err(err) => return Err(ServiceError::from(err).into()),
        };
        self.publish_authorities(rotated);
        Ok(Response::new(proto::RotateAuthorityResponse {
            rotated: names,
            grace_period_ends_unix: unix(now + grace),
        }))
    }

    async fn sign_user(
        &self,
        request: Request<proto::SignUserRequest>,
    ) -> Reply<proto::SignUserResponse> {
        let caller = self.caller(&request)?;
        self.require_rule(&caller, "SignUser", kinds::CERT_AUTHORITY, verbs::CREATE)
            .await?;
        let request = request.into_inner();
        let user = self.cached_user(&request.user).ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no user {:?}; `jctl users ls` lists them",
                request.user
            ))
        })?;
        let ttl = requested_ttl(request.ttl_seconds, "the certificate TTL")?;
        let issued = self
            .issue_user_certs(
                &user,
                &request.ssh_public_key,
                &request.tls_public_key_pem,
                ttl,
                &caller,
                None,
            )
            .await?;
        let (tls_ca_pems, host_ca_known_hosts) = trust_roots(&self.authorities())?;
        Ok(Response::new(proto::SignUserResponse {
            ssh_certificate: issued.ssh_certificate,
            tls_certificate_pem: issued.tls_certificate_pem,
            tls_ca_pems,
            host_ca_known_hosts,
            expires_unix: unix(issued.expires),
            principals: issued.principals,
        }))
    }

    async fn sign_host(
        &self,
        request: Request<proto::SignHostRequest>,
    ) -> Reply<proto::SignHostResponse> {
        let caller = self.caller(&request)?;
        self.require_rule(&caller, "SignHost", kinds::CERT_AUTHORITY, verbs::CREATE)
            .await?;
        let request = request.into_inner();
        let ttl = requested_ttl(request.ttl_seconds, "the certificate TTL")?;
        let issued = self
            .issue_host_ssh_cert(
                &request.host,
                &request.host,
                &request.principals,
                &request.ssh_public_key,
                ttl,
                &caller,
            )
            .await?;
        Ok(Response::new(proto::SignHostResponse {
            ssh_certificate: issued.0,
            user_ca_keys: self
                .authorities()
                .user
                .export_openssh()
                .map_err(ServiceError::internal)?,
            expires_unix: unix(issued.1),
        }))
    }

    async fn login(&self, request: Request<proto::LoginRequest>) -> Reply<proto::LoginResponse> {
        let caller = self.caller(&request)?;
        self.require_kind(&caller, "Login", &[IdentityKind::Proxy])
            .await?;
        let request = request.into_inner();
        let ip = Self::client_ip(&caller, &request.client_addr);
        self.rate_limit(&self.inner.login_limit, &caller, ip, "Login")
            .await?;
        self.require_local_auth()?;
        let remote = Self::client_addr_text(&caller, &request.client_addr);
        let now = SystemTime::now();
        let authorities = self.authorities();
        let otp = Some(request.otp.as_str()).filter(|otp| !otp.is_empty());
        let user = self
            .users(&authorities)
            .authenticate(
                &request.user,
                &request.password,
                otp,
                remote.as_deref(),
                now,
            )
            .await
            .map_err(ServiceError::from);
        let result = if user.is_ok() { "success" } else { "failure" };
        jumpgate_telemetry::count(|m| &m.user_logins, &[result]);
        let user = user?;
        let ttl = requested_ttl(request.ttl_seconds, "the certificate TTL")?;
        let issued = self
            .issue_user_certs(
                &user,
                &request.ssh_public_key,
                &request.tls_public_key_pem,
                ttl,
                &caller,
                remote.as_deref(),
            )
            .await?;
        let (tls_ca_pems, host_ca_known_hosts) = trust_roots(&authorities)?;
        Ok(Response::new(proto::LoginResponse {
            ssh_certificate: issued.ssh_certificate,
            tls_certificate_pem: issued.tls_certificate_pem,
            tls_ca_pems,
            host_ca_known_hosts,
            expires_unix: unix(issued.expires),
            principals: issued.principals,
            roles: user.roles,
        }))
    }

    async fn create_web_session(
        &self,
        request: Request<proto::CreateWebSessionRequest>,
    ) -> Reply<proto::WebSession> {
        let caller = self.caller(&request)?;
        self.require_kind(&caller, "CreateWebSession", &[IdentityKind::Proxy])
            .await?;
        let request = request.into_inner();
        let ip = Self::client_ip(&caller, &request.client_addr);
        self.rate_limit(&self.inner.login_limit, &caller, ip, "CreateWebSession")
            .await?;
        self.require_local_auth()?;
        let remote = Self::client_addr_text(&caller, &request.client_addr);
        Ok(Response::new(
            self.create_web_session(&caller, request, remote.as_deref())
                .await?,
        ))
    }

    async fn create_sso_login(
        &self,
        request: Request<proto::CreateSsoLoginRequest>,
    ) -> Reply<proto::CreateSsoLoginResponse> {
        let caller = self.caller(&request)?;
        self.require_kind(&caller, "CreateSsoLogin", &[IdentityKind::Proxy])
            .await?;
        let request = request.into_inner();
        let ip = Self::client_ip(&caller, &request.client_addr);
        self.rate_limit(&self.inner.sso_limit, &caller, ip, "CreateSsoLogin")
            .await?;
        Ok(Response::new(self.create_sso_login(request).await?))
    }

    async fn finish_sso_login(
        &self,
        request: Request<proto::FinishSsoLoginRequest>,
    ) -> Reply<proto::FinishSsoLoginResponse> {
        let caller = self.caller(&request)?;
        self.require_kind(&caller, "FinishSsoLogin", &[IdentityKind::Proxy])
            .await?;
        let request = request.into_inner();
        let ip = Self::client_ip(&caller, &request.client_addr);
        self.rate_limit(&self.inner.sso_limit, &caller, ip, "FinishSsoLogin")
            .await?;
        Ok(Response::new(
            self.finish_sso_login(&caller, request).await?,
        ))
    }

    async fn get_sso_login_result(
        &self,
        request: Request<proto::GetSsoLoginResultRequest>,
    ) -> Reply<proto::LoginResponse> {
        let caller = self.caller(&request)?;
        self.require_kind(&caller, "GetSsoLoginResult", &[IdentityKind::Proxy])
            .await?;
        Ok(Response::new(
            self.sso_login_result(request.into_inner()).await?,
        ))
    }

    async fn get_saml_metadata(
        &self,
        request: Request<proto::GetSamlMetadataRequest>,
    ) -> Reply<proto::GetSamlMetadataResponse> {
        let caller = self.caller(&request)?;
        self.require_kind(&caller, "GetSamlMetadata", &[IdentityKind::Proxy])
            .await?;
        Ok(Response::new(
            self.saml_metadata(&request.into_inner().connector)?,
        ))
    }

    async fn get_web_session(
        &self,
        request: Request<proto::GetWebSessionRequest>,
    ) -> Reply<proto::WebSession> {
        let caller = self.caller(&request)?;
        self.require_kind(&caller, "GetWebSession", &[IdentityKind::Proxy])
            .await?;
        Ok(Response::new(
            self.get_web_session(&request.into_inner().id).await?,
        ))
    }

    async fn delete_web_session(
        &self,
        request: Request<proto::DeleteWebSessionRequest>,
    ) -> Reply<proto::DeleteWebSessionResponse> {
        let caller = self.caller(&request)?;
        self.require_kind(&caller, "DeleteWebSession", &[IdentityKind::Proxy])
            .await?;
        let request = request.into_inner();
        let (user, ended) = self
            .delete_web_session(&request.id, request.all_of_user)
            .await?;
        let mut event = jumpgate_audit::AuditEvent::success(EventType::UserLogout)
            .user(user)
            .field("method", "web")
            .field("everywhere", request.all_of_user)
            .field("sessions_ended", ended);
        if let Some(addr) = Self::client_addr_text(&caller, &request.client_addr) {
            event = event.remote_addr(addr);
        }
        self.audit(event).await?;
        Ok(Response::new(proto::DeleteWebSessionResponse { ended }))
    }

    async fn join(&self, request: Request<proto::JoinRequest>) -> Reply<proto::JoinResponse> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        // Through the proxy's web API, the host's own address (for limits and audit).
        let ip = Self::client_ip(&caller, &request.client_addr);
        self.rate_limit(&self.inner.join_limit, &caller, ip, "Join")
            .await?;
        Ok(Response::new(self.join_host(&caller, request).await?))
    }

    async fn renew_host(
        &self,
        request: Request<proto::RenewHostRequest>,
    ) -> Reply<proto::JoinResponse> {
        let caller = self.caller(&request)?;
        self.require_kind(
            &caller,
            "RenewHost",
            &[IdentityKind::Node, IdentityKind::Proxy],
        )
        .await?;
        let request = request.into_inner();
        Ok(Response::new(
            self.renew_host_identity(&caller, request).await?,
        ))
    }

    async fn heartbeat(
        &self,
        request: Request<proto::HeartbeatRequest>,
    ) -> Reply<proto::HeartbeatResponse> {
        let caller = self.caller(&request)?;
        self.require_identity(&caller, "Heartbeat").await?;
        let request = request.into_inner();
        self.store_heartbeat(&caller, &request.document, request.ttl_seconds)
            .await?;
        if !request.live_sessions.is_empty()
            && let Some(identity) = caller
                .identity
                .as_ref()
                .filter(|identity| identity.kind == IdentityKind::Node)
        {
            if request.live_sessions.len() > sessions::MAX_LIVE_SESSIONS_PER_BEAT {
                warn!(
                    node = %identity.name,
                    named = request.live_sessions.len(),
                    "a heartbeat named more live sessions than are kept listed"
                );
            }
            self.keep_sessions_alive(&identity.name, &request.live_sessions)
                .await;
        }
        Ok(Response::new(proto::HeartbeatResponse {}))
    }

    async fn report_refusal(
        &self,
        request: Request<proto::ReportRefusalRequest>,
    ) -> Reply<proto::ReportRefusalResponse> {
        let caller = self.caller(&request)?;
        self.require_kind(&caller, "ReportRefusal", &[IdentityKind::Proxy])
            .await?;
        let request = request.into_inner();
        let limit = |text: &str| text.chars().take(512).collect::<String>();
        let reporter = caller
            .identity
            .as_ref()
            .map(|identity| identity.name.clone())
            .unwrap_or_default();
        let mut event =
            jumpgate_audit::AuditEvent::failure(EventType::Auth, limit(&request.reason))
                .server_id(reporter)
                .field("method", format!("proxy:{}", limit(&request.protocol)));
        if !request.identity.is_empty() {
            event = event.user(limit(&request.identity));
        }
        if let Ok(addr) = request.remote_addr.parse::<std::net::SocketAddr>() {
            event = event.remote_addr(addr);
        }
        self.audit(event).await?;
        Ok(Response::new(proto::ReportRefusalResponse {}))
    }

    async fn emit_events(
        &self,
        request: Request<proto::EmitEventsRequest>,
    ) -> Reply<proto::EmitEventsResponse> {
        let caller = self.caller(&request)?;
        self.require_kind(&caller, "EmitEvents", &[IdentityKind::Node])
            .await?;
        let node = caller
            .identity
            .as_ref()
            .map(|identity| identity.name.clone())
            .unwrap_or_default();
        let request = request.into_inner();
        if request.events.len() > MAX_EMITTED_EVENTS {
            return Err(ServiceError::invalid(format!(
                "at most {MAX_EMITTED_EVENTS} events per call; send the rest in another"
            ))
            .into());
        }
        // Check every event before writing any, so a bad batch changes nothing.
        let mut events = Vec::with_capacity(request.events.len());
        for (index, text) in request.events.iter().enumerate() {
            let event: jumpgate_audit::AuditEvent = serde_json::from_str(text).map_err(|err| {
                ServiceError::invalid(format!("event {index} is not an audit event: {err}"))
            })?;
            if !NODE_EVENTS.contains(&event.event_type()) {
                return Err(ServiceError::PermissionDenied(format!(
                    "a node may not emit {} events",
                    event.event_type().name()
                ))
                .into());
            }
            events.push(event.server_id(node.clone()));
        }
        // A node names only its own sessions: the first session.start claims one.
        if !caller.is_admin() {
            for event in &events {
                let Some(session) = event.sid() else { continue };
                let owned = if event.event_type() == EventType::SessionStart {
                    self.claim_session(&node, session).await
                } else {
                    self.check_session_owner(&node, session).await
                };
                if let Err(err) = owned {
                    return Err(match err {
                        ServiceError::PermissionDenied(_) => {
                            self.refuse(&caller, "EmitEvents", err).await
                        }
                        other => other,
                    }
                    .into());
                }
            }
        }
        for event in events {
            self.audit(event.clone()).await?;
            let tracked = match (event.event_type(), event.sid()) {
                (EventType::SessionStart, Some(_)) => self.track_session_start(&node, &event).await,
                (EventType::SessionEnd, Some(session)) => {
                    self.track_session_end(&node, session).await
                }
                _ => Ok(()),
            };
            if let Err(err) = tracked {
                // The audit log has the event; the live list catches up at the next beat
                // or expires the entry.
                warn!(%err, "cannot update the list of live sessions");
            }
        }
        Ok(Response::new(proto::EmitEventsResponse {}))
    }

    async fn upload_recording(
        &self,
        request: Request<proto::UploadRecordingRequest>,
    ) -> Reply<proto::UploadRecordingResponse> {
        let caller = self.caller(&request)?;
        self.require_kind(&caller, "UploadRecording", &[IdentityKind::Node])
            .await?;
        let request = request.into_inner();
        let session = session_id(&request.session_id)?;
        if let Some(node) = caller
            .identity
            .as_ref()
            .filter(|identity| identity.kind == IdentityKind::Node)
        {
            // Only the node that started the session writes its recording, within its
            // upload quota.
            if let Err(err) = self
                .check_session_owner(&node.name, &request.session_id)
                .await
            {
                return Err(match err {
                    ServiceError::PermissionDenied(_) => {
                        self.refuse(&caller, "UploadRecording", err).await
                    }
                    other => other,
                }
                .into());
            }
            if let Err(wait) =
                self.inner
                    .upload_quota
                    .take(&node.name, request.data.len(), Instant::now())
            {
                return Err(ServiceError::RateLimited(format!(
                    "this node's recording upload quota is used up; try again in {} s",
                    wait.as_secs().max(1)
                ))
                .into());
            }
        }
        let recordings = &self.inner.recordings;
        let mut stored = if request.data.is_empty() {
            recordings
                .stat(&session)
                .await
                .map_err(recording_error)?
                .map_or(0, |info| info.size)
        } else {
            recordings
                .append_part(&session, request.offset, request.data)
                .await
                .map_err(recording_error)?
        };
        if request.complete {
            stored = recordings
                .complete(&session)
                .await
                .map_err(recording_error)?
                .size;
        }
        Ok(Response::new(proto::UploadRecordingResponse { stored }))
    }

    async fn list_recordings(
        &self,
        request: Request<proto::ListRecordingsRequest>,
    ) -> Reply<proto::ListRecordingsResponse> {
        let caller = self.caller(&request)?;
        let scope = self
            .require_rule_scoped(&caller, "ListRecordings", kinds::SESSION, verbs::LIST)
            .await?;
        let stored = self
            .inner
            .recordings
            .list()
            .await
            .map_err(recording_error)?;
        let mut recordings = Vec::with_capacity(stored.len());
        if let RuleScope::Each(_) = scope {
            // Headers not yet known are read a few at a time: one by one, a user's list in
            // a cluster of thousands of recordings on S3 took longer than the client waits.
            let ids: Vec<SessionId> = stored.iter().map(|info| info.session_id.clone()).collect();
            let facts: Vec<Option<SessionFacts>> = futures::stream::iter(ids)
                .map(|id| async move { self.session_facts(&id).await })
                .buffered(HEADER_READS_AT_ONCE)
                .collect()
                .await;
            for (info, facts) in stored.iter().zip(facts) {
                let facts = facts
                    .as_ref()
                    .map_or(ResourceFacts::Unknown, ResourceFacts::Session);
                if scope.check(kinds::SESSION, verbs::LIST, facts).is_ok() {
                    recordings.push(recording_info(info));
                }
            }
        } else {
            recordings.extend(stored.iter().map(recording_info));
        }
        Ok(Response::new(proto::ListRecordingsResponse { recordings }))
    }

    async fn list_active_sessions(
        &self,
        request: Request<proto::ListActiveSessionsRequest>,
    ) -> Reply<proto::ListActiveSessionsResponse> {
        let caller = self.caller(&request)?;
        let scope = self
            .require_rule_scoped(&caller, "ListActiveSessions", kinds::SESSION, verbs::LIST)
            .await?;
        let cluster_name = self.authorities().cluster.clone();
        let mut sessions: Vec<proto::ActiveSession> = self
            .active_sessions()
            .await?
            .into_iter()
            .filter(|active| match &scope {
                RuleScope::Each(_) => {
                    let facts = SessionFacts {
                        sid: active.session_id.clone(),
                        participants: vec![active.user.clone()],
                        user: active.user.clone(),
                        login: active.login.clone(),
                        server_id: active.node_uuid.clone(),
                        server_hostname: active.node_hostname.clone(),
                        cluster_name: cluster_name.clone(),
                    };
                    scope
                        .check(kinds::SESSION, verbs::LIST, ResourceFacts::Session(&facts))
                        .is_ok()
                }
                _ => true,
            })
            .map(|active| proto::ActiveSession {
                session_id: active.session_id,
                user: active.user,
                login: active.login,
                node_uuid: active.node_uuid,
                node_hostname: active.node_hostname,
                client_addr: active.client_addr,
                interactive: active.interactive,
                started_unix_millis: active.started_unix_millis,
            })
            .collect();
        sessions.sort_by_key(|active| std::cmp::Reverse(active.started_unix_millis));
        Ok(Response::new(proto::ListActiveSessionsResponse {
            sessions,
        }))
    }

    async fn get_recording(
        &self,
        request: Request<proto::GetRecordingRequest>,
    ) -> Reply<proto::GetRecordingResponse> {
        let caller = self.caller(&request)?;
        let scope = self
            .require_rule_scoped(&caller, "GetRecording", kinds::SESSION, verbs::READ)
            .await?;
        let request = request.into_inner();
        let session = session_id(&request.session_id)?;
        // Checked before looking the recording up, so that a caller who may read only some
        // recordings cannot tell another's from one that does not exist.
        if let RuleScope::Each(_) = scope {
            let facts = self.session_facts(&session).await;
            let facts = facts
                .as_ref()
                .map_or(ResourceFacts::Unknown, ResourceFacts::Session);
            if let Err(denied) = scope.check(kinds::SESSION, verbs::READ, facts) {
                let err = ServiceError::PermissionDenied(format!("{denied} (session {session})"));
                return Err(self.refuse(&caller, "GetRecording", err).await.into());
            }
        }
        let info = self
            .inner
            .recordings
            .stat(&session)
            .await
            .map_err(recording_error)?
            .ok_or_else(|| {
                ServiceError::NotFound(format!(
                    "no recording of session {session}; `jsh recordings ls` lists them"
                ))
            })?;
        let max_len = match request.max_len {
            0 => MAX_RECORDING_READ,
            n => n.min(MAX_RECORDING_READ),
        };
        // One page, read from the store as a range: a recording is never loaded whole.
        let data = self
            .inner
            .recordings
            .read_range(&session, request.offset, max_len)
            .await
            .map_err(recording_error)?;
        Ok(Response::new(proto::GetRecordingResponse {
            data,
            info: Some(recording_info(&info)),
        }))
    }

    async fn list_webauthn_devices(
        &self,
        request: Request<proto::ListWebauthnDevicesRequest>,
    ) -> Reply<proto::ListWebauthnDevicesResponse> {
        let caller = self.caller(&request)?;
        Ok(Response::new(
            self.list_webauthn_devices_for(&caller).await?,
        ))
    }

    async fn delete_webauthn_device(
        &self,
        request: Request<proto::DeleteWebauthnDeviceRequest>,
    ) -> Reply<proto::DeleteWebauthnDeviceResponse> {
        let caller = self.caller(&request)?;
        self.delete_webauthn_device_for(&caller, request.into_inner())
            .await?;
        Ok(Response::new(proto::DeleteWebauthnDeviceResponse {}))
    }

    async fn begin_webauthn_registration(
        &self,
        request: Request<proto::BeginWebauthnRegistrationRequest>,
    ) -> Reply<proto::WebauthnChallenge> {
        let caller = self.caller(&request)?;
        Ok(Response::new(
            self.begin_webauthn_registration_for(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn begin_signup_key_registration(
        &self,
        request: Request<proto::BeginSignupKeyRegistrationRequest>,
    ) -> Reply<proto::WebauthnChallenge> {
        let caller = self.caller(&request)?;
        Ok(Response::new(
            self.begin_signup_key_registration_for(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn finish_webauthn_registration(
        &self,
        request: Request<proto::FinishWebauthnRegistrationRequest>,
    ) -> Reply<proto::WebauthnDeviceInfo> {
        let caller = self.caller(&request)?;
        Ok(Response::new(
            self.finish_webauthn_registration_for(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn begin_webauthn_login(
        &self,
        request: Request<proto::BeginWebauthnLoginRequest>,
    ) -> Reply<proto::WebauthnChallenge> {
        let caller = self.caller(&request)?;
        Ok(Response::new(
            self.begin_webauthn_login_for(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn begin_passwordless_login(
        &self,
        request: Request<proto::BeginPasswordlessLoginRequest>,
    ) -> Reply<proto::WebauthnChallenge> {
        let caller = self.caller(&request)?;
        Ok(Response::new(
            self.begin_passwordless_login_for(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn finish_webauthn_login(
        &self,
        request: Request<proto::FinishWebauthnLoginRequest>,
    ) -> Reply<proto::WebSession> {
        let caller = self.caller(&request)?;
        Ok(Response::new(
            self.finish_webauthn_login_for(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn search_events(
        &self,
        request: Request<proto::SearchEventsRequest>,
    ) -> Reply<proto::SearchEventsResponse> {
        let caller = self.caller(&request)?;
        let scope = self
            .require_rule_scoped(&caller, "SearchEvents", kinds::EVENT, verbs::LIST)
            .await?;
        let request = request.into_inner();
        let timestamp = |millis: i64, what: &str| {
            Timestamp::from_unix_millis(millis)
                .map_err(|err| ServiceError::invalid(format!("{what}: {err}")))
        };
        // No end given: up to now, including events of this very millisecond (the end is
        // exclusive, and an event written just before this call may carry it).
        let to = if request.to_unix_millis == 0 {
            Timestamp::now().saturating_add_millis(1)
        } else {
            timestamp(request.to_unix_millis, "to")?
        };
        let mut query = SearchQuery::new(timestamp(request.from_unix_millis, "from")?, to);
        if !request.types.is_empty() {
            let mut types = Vec::new();
            for name in &request.types {
                types.push(EventType::from_name(name).ok_or_else(|| {
                    let known: Vec<&str> = EventType::all().map(EventType::name).collect();
                    ServiceError::invalid(format!(
                        "unknown event type {name:?}; known types: {}",
                        known.join(", ")
                    ))
                })?);
            }
            query = query.event_types(types);
        }
        if !request.user.is_empty() {
            query = query.user(request.user);
        }
        if !request.session_id.is_empty() {
            query = query.session_id(request.session_id);
        }
        if request.limit > 0 {
            query = query.limit(request.limit);
        }
        if !request.cursor.is_empty() {
            query = query.cursor(request.cursor);
        }
        if request.descending {
            query = query.order(Order::Descending);
        }
        let page = self
            .inner
            .audit
            .search(query)
            .await
            .map_err(|err| ServiceError::invalid(err.to_string()))?;
        let mut events = Vec::with_capacity(page.events.len());
        for event in &page.events {
            // A page the caller may see only part of comes back shorter, with the same cursor
            // to the next one.
            if let RuleScope::Each(_) = scope {
                let facts = event_facts(event);
                if scope
                    .check(kinds::EVENT, verbs::LIST, ResourceFacts::Event(&facts))
                    .is_err()
                {
                    continue;
                }
            }
            events.push(event.to_json().map_err(ServiceError::internal)?);
        }
        Ok(Response::new(proto::SearchEventsResponse {
            events,
            next_cursor: page.next_cursor.unwrap_or_default(),
        }))
    }
}

/// What a rule's `where` reads of an audit event (`event.*`).
fn event_facts(event: &jumpgate_audit::AuditEvent) -> EventFacts {
    let text = |value: Option<&str>| value.unwrap_or_default().to_string();
    EventFacts {
        event_type: event.event_type().name().to_string(),
        code: event.code().to_string(),
        user: text(event.user_name()),
        login: text(event.login_name()),
        sid: text(event.sid()),
        server_id: text(event.server()),
    }
}

impl AuthServer {
    /// What a rule's `where` reads of a recorded session (`session.*`), from the header the
    /// node wrote: its user, who is the one participant. `None` when the recording does not
    /// exist or its header does not say (still uploading, malformed, or written for another
    /// session id); rules then fail closed.
    async fn session_facts(&self, session: &SessionId) -> Option<SessionFacts> {
        if let Some(known) = self.known_session_facts(session) {
            return Some(known);
        }
        let facts = self.read_session_facts(session).await?;
        if let Ok(mut known) = self.inner.session_facts.lock() {
            if known.len() >= MAX_KNOWN_SESSION_FACTS {
                // Rarely reached; starting over costs one read per recording, once.
                known.clear();
            }
            known.insert(session.clone(), facts.clone());
        }
        Some(facts)
    }

    fn known_session_facts(&self, session: &SessionId) -> Option<SessionFacts> {
        self.inner.session_facts.lock().ok()?.get(session).cloned()
    }

    async fn read_session_facts(&self, session: &SessionId) -> Option<SessionFacts> {
        let header = match read_header(self.inner.recordings.as_ref(), session).await {
            Ok(header) => header,
            Err(err) => {
                debug!(%session, %err, "recording header unreadable; its session is unknown to rules");
                return None;
            }
        };
        let Some(meta) = header.jumpgate else {
            debug!(%session, "recording header names no user; its session is unknown to rules");
            return None;
        };
        if meta.session_id != *session {
            warn!(%session, claimed = %meta.session_id, "recording header names another session; its session is unknown to rules");
            return None;
        }
        Some(SessionFacts {
            sid: session.to_string(),
            participants: vec![meta.user.clone()],
            user: meta.user,
            login: meta.login,
            server_id: meta.node_uuid,
            server_hostname: meta.node,
            cluster_name: meta.cluster,
        })
    }
}

/// What a certificate holder needs to trust the cluster's servers: the TLS CA
/// certificates and the host CA as `@cert-authority` known_hosts lines.
fn trust_roots(authorities: &ClusterAuthorities) -> Result<(Vec<String>, String), ServiceError> {
    let known_hosts = authorities
        .host
        .export_openssh()
        .map_err(ServiceError::internal)?;
    Ok((authorities.tls.trusted_cert_pems(), known_hosts))
}

fn parse_join_roles(names: &[String]) -> Result<Vec<JoinRole>, ServiceError> {
    if names.is_empty() {
        return Err(ServiceError::invalid(
            "a join token needs a type: --type node, proxy or node,proxy",
        ));
    }
    let mut roles = Vec::new();
    for name in names {
        let role: JoinRole = name
            .parse()
            .map_err(|err| ServiceError::invalid(format!("token type: {err}")))?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(roles)
}
