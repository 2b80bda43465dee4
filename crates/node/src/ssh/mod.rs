//! The node's SSH service (DESIGN.md "Services": ssh), on russh: serves the SSH
//! connections the proxy forwards through the reverse tunnel.
//!
//! - It presents the node's host certificate and accepts only user certificates. russh
//!   checks a certificate's signature and validity window only; everything else is
//!   checked here with `jumpgate_pki::verify_user_cert`: the cluster's user CA, the
//!   certificate type, the requested login among the principals, `source-address`
//!   against the user's real address (from the proxy), the issuing cluster.
//! - Then it checks the user's roles (named in the certificate, definitions mirrored
//!   from the auth service) against this node's labels and the login, deny beating
//!   allow, so a stale or forged routing decision in the proxy cannot grant access.
//! - Every session with a PTY is recorded as asciicast v2 ([`recording`]), spooled on
//!   disk and uploaded to the auth service.
//! - Every refusal is an `auth` audit event with the reason; every session has
//!   `session.start`, `exec` and `session.end` events ([`events`]).
//! - Sessions run as the OS user ([`process`]): shell or command, with or without a PTY;
//!   `sftp` and `scp` only when the roles allow file copy; `direct-tcpip` port forwarding
//!   only when they allow port forwarding.

mod agent;
pub mod events;
mod killable;
pub mod process;
pub mod recording;
mod session;

use crate::HostIdentity;
use events::EventSink;
use jumpgate_api::live::LiveSet;
use jumpgate_api::mirror::Mirror;
use jumpgate_audit::{AuditEvent, EventType};
use jumpgate_pki::{UserCertCheck, VerifiedUser, verify_user_cert};
use jumpgate_types::{
    AccessChecker, Lock, LockSubject, Role, SessionOptions, UserView, find_lock, held_roles,
};
use russh::keys::{Certificate, HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Pty, Sig};
use session::{Input, PtyRequest, SessionChannel};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How long a client may take to exchange SSH version lines.
const AUTH_DEADLINE: Duration = Duration::from_secs(30);
/// How long a client may take from connecting to a successful authentication
/// (OpenSSH's `LoginGraceTime`, 120 s there; certificates need no typing).
pub const LOGIN_GRACE: Duration = Duration::from_secs(30);
/// Connections not yet authenticated at once (OpenSSH's `MaxStartups`); more are
/// closed at once, so a flood cannot crowd out users.
pub const MAX_UNAUTHENTICATED: usize = 100;
/// Refused logins audited one by one, per second (and at once); beyond that they are
/// counted and audited as one summary event, so a stream of bad certificates can neither
/// flood the audit log nor push other events out of the node's queue.
pub const REFUSALS_PER_SECOND: f64 = 20.0;
const REFUSAL_BURST: f64 = 100.0;

/// The token bucket behind [`REFUSALS_PER_SECOND`], and what it held back.
#[derive(Debug)]
pub struct RefusalBudget {
    tokens: f64,
    updated: tokio::time::Instant,
    suppressed: u64,
}

impl Default for RefusalBudget {
    fn default() -> Self {
        RefusalBudget {
            tokens: REFUSAL_BURST,
            updated: tokio::time::Instant::now(),
            suppressed: 0,
        }
    }
}

impl RefusalBudget {
    /// `Some(held back so far)` when one more may be audited now (and resets the count).
    fn take(&mut self, now: tokio::time::Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * REFUSALS_PER_SECOND).min(REFUSAL_BURST);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// The node's labels of the moment (static plus command labels).
pub type Labels = Arc<dyn Fn() -> BTreeMap<String, String> + Send + Sync>;

/// What the SSH service needs; one per node, shared by every connection.
pub struct SshService {
    pub host_name: String,
    pub identity: watch::Receiver<HostIdentity>,
    pub labels: Labels,
    pub roles: Arc<Mirror<Role>>,
    /// Users' current roles and traits: a certificate grants only the roles its user
    /// still holds ([`jumpgate_types::held_roles`]).
    pub users: Arc<Mirror<UserView>>,
    /// Locks: a login they name is refused, and a live connection they name ends.
    pub locks: Arc<Mirror<Lock>>,
    /// The logged-in connections, so a new lock ends the ones it names.
    pub live: Arc<LiveSet<LiveLogin>>,
    /// The IDs of the sessions in progress, which heartbeats name (auth's list of active
    /// sessions keeps them while they are named).
    pub sessions: Arc<LiveSet<String>>,
    pub events: EventSink,
    pub recordings: recording::Recordings,
    /// Slots for connections that have not authenticated yet ([`MAX_UNAUTHENTICATED`]).
    pub unauthenticated: Arc<tokio::sync::Semaphore>,
    /// How many refused logins may still be audited one by one ([`REFUSALS_PER_SECOND`]).
    pub refusal_budget: std::sync::Mutex<RefusalBudget>,
    /// The algorithms offered ([`preferred_algorithms`]).
    pub preferred: russh::Preferred,
}

/// russh's preferences from the configured (or default) algorithm lists, plus the
/// extension markers every server offers (RFC 8308 `ext-info-s`, and the strict key
/// exchange that defeats the Terrapin attack). Names the config validated; one russh
/// does not know is skipped with a warning.
pub fn preferred_algorithms(
    algorithms: &jumpgate_types::config::SshAlgorithms,
) -> russh::Preferred {
    fn names<N: for<'a> TryFrom<&'a str>>(wanted: &[String], what: &str) -> Vec<N> {
        wanted
            .iter()
            .filter_map(|name| {
                let parsed = N::try_from(name.as_str()).ok();
                if parsed.is_none() {
                    warn!(%name, what, "an SSH algorithm this build does not support is skipped");
                }
                parsed
            })
            .collect()
    }
    let mut kex: Vec<russh::kex::Name> = names(&algorithms.kex_or_default(), "kex");
    kex.push(russh::kex::EXTENSION_SUPPORT_AS_SERVER);
    kex.push(russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER);
    russh::Preferred {
        kex: kex.into(),
        cipher: names::<russh::cipher::Name>(&algorithms.ciphers_or_default(), "cipher").into(),
        mac: names::<russh::mac::Name>(&algorithms.macs_or_default(), "mac").into(),
        ..russh::Preferred::DEFAULT
    }
}

/// What locks may name about a logged-in SSH connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveLogin {
    pub user: String,
    /// The roles the user's certificate carries.
    pub roles: Vec<String>,
    pub login: String,
}

impl std::fmt::Debug for SshService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshService")
            .field("host_name", &self.host_name)
            .finish_non_exhaustive()
    }
}

/// Why a login was refused: the message is audited and logged as is. The certificate
/// check and the role decision keep their own errors, so a caller can tell which refused.
#[derive(Debug, thiserror::Error)]
enum LoginRefused {
    /// The certificate does not verify (CA, expiry, principal, source address).
    #[error(transparent)]
    Certificate(#[from] jumpgate_pki::CertError),
    /// A lock names the user, one of their roles, the login or this node.
    #[error("{0}")]
    Locked(String),
    /// The certificate names a user the cluster no longer has.
    #[error("access denied: user {0:?} does not exist")]
    UnknownUser(String),
    /// The user no longer holds any role the certificate names.
    #[error("access denied: user {user:?} holds none of the certificate's roles {roles:?} now")]
    NoRoles { user: String, roles: Vec<String> },
    /// The roles do not allow this login on this node.
    #[error(transparent)]
    Denied(#[from] jumpgate_types::AccessDenied),
}

/// Why a connection could not be served at all.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("the node's host identity is unusable: {0}")]
    Identity(String),
    #[error("ssh: {0}")]
    Ssh(#[from] russh::Error),
}

impl SshService {
    fn server_config(&self) -> Result<Arc<russh::server::Config>, SshError> {
        let identity = self.identity.borrow().clone();
        let key = PrivateKey::from_openssh(&identity.ssh_host_key)
            .map_err(|err| SshError::Identity(format!("host key: {err}")))?;
        let cert = Certificate::from_openssh(identity.ssh_host_cert.trim())
            .map_err(|err| SshError::Identity(format!("host certificate: {err}")))?;
        Ok(Arc::new(russh::server::Config {
            server_id: russh::SshId::Standard(
                format!("SSH-2.0-Jumpgate_{}", env!("CARGO_PKG_VERSION")).into(),
            ),
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            auth_rejection_time: Duration::from_millis(200),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![key],
            certificates: vec![cert],
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 3,
            nodelay: true,
            preferred: self.preferred.clone(),
            ..Default::default()
        }))
    }

    /// Serves one SSH connection (a tunnel stream) until it ends. `client` is the
    /// user's address as the proxy saw it.
    pub async fn serve<S>(self: Arc<Self>, stream: S, client: Option<SocketAddr>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = match self.server_config() {
            Ok(config) => config,
            Err(err) => {
                warn!(%err, "cannot serve SSH");
                return;
            }
        };
        let Ok(startup) = self.unauthenticated.clone().try_acquire_owned() else {
            info!(client = ?client, limit = MAX_UNAUTHENTICATED, "closed an SSH connection: too many connections are still authenticating");
            return;
        };
        let (authenticated_tx, authenticated) = tokio::sync::oneshot::channel();
        let (stream, kill) = killable::Killable::new(stream);
        let handler = Connection {
            startup: Some(startup),
            authenticated: Some(authenticated_tx),
            service: self.clone(),
            client,
            authorized: None,
            channels: HashMap::new(),
            refused: false,
            tried_login: None,
            last_input: Arc::new(std::sync::Mutex::new(tokio::time::Instant::now())),
            watchdog_started: false,
            live: None,
            span: tracing::info_span!(
                "ssh_connection",
                client = ?client,
                user = tracing::field::Empty,
                login = tracing::field::Empty,
            ),
            logged_in: None,
        };
        let running = match tokio::time::timeout(
            AUTH_DEADLINE,
            russh::server::run_stream(config, stream, handler),
        )
        .await
        {
            Ok(Ok(running)) => running,
            Ok(Err(err)) => {
                debug!(client = ?client, %err, "SSH handshake failed");
                return;
            }
            Err(_) => {
                debug!(client = ?client, "SSH handshake timed out");
                return;
            }
        };
        // Login grace: a client that has not authenticated in time is cut off (russh
        // cannot disconnect a session before its key exchange, so the stream ends).
        tokio::spawn(async move {
            if tokio::time::timeout(LOGIN_GRACE, authenticated)
                .await
                .is_err()
            {
                debug!(client = ?client, "SSH login grace time over; closing the connection");
                kill.kill();
            }
        });
        if let Err(err) = running.await {
            debug!(client = ?client, %err, "SSH connection ended with an error");
        }
    }

    /// The lock that refuses `login` for `user` (holding `roles`) on this node now.
    fn lock_refusal(&self, user: &str, roles: &[String], login: &str) -> Option<String> {
        let node = self.identity.borrow().host_uuid.clone();
        let locks = self.locks.current();
        let subject = LockSubject {
            user: Some(user),
            roles,
            login: Some(login),
            node: Some(&node),
        };
        find_lock(locks.iter(), &subject, SystemTime::now())
            .map(|lock| format!("access denied: {}", lock.spec.refusal()))
    }

    /// Ends every logged-in connection a lock now names; returns how many.
    pub fn end_locked_sessions(&self) -> usize {
        self.live.end_matching(|live| {
            self.lock_refusal(&live.user, &live.roles, &live.login)
                .map(|reason| reason.replacen("access denied", "session ended", 1))
        })
    }

    /// Applies every change of the locks (as the mirror sees them) at once, until `stop`.
    pub async fn enforce_locks(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut changes = self.locks.changes();
        loop {
            let ended = self.end_locked_sessions();
            if ended > 0 {
                info!(ended, "a lock ended live SSH connections");
            }
            tokio::select! {
                () = &mut stop => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Audits a refused login within [`REFUSALS_PER_SECOND`]; beyond it, counts it and
    /// says how many were held back with the next one audited.
    fn emit_login_refusal(&self, event: AuditEvent) {
        let allowed = self
            .refusal_budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take(tokio::time::Instant::now());
        match allowed {
            Some(0) => self.events.emit(event),
            Some(held_back) => {
                self.events
                    .emit(event.field("refusals_not_audited_before", held_back));
            }
            None => debug!("a refused SSH login was counted, not audited (rate limit)"),
        }
    }

    fn trusted_user_cas(&self) -> Vec<russh::keys::ssh_key::Fingerprint> {
        self.identity
            .borrow()
            .user_ca_keys
            .lines()
            .filter_map(|line| PublicKey::from_openssh(line.trim()).ok())
            .map(|key| key.fingerprint(HashAlg::Sha256))
            .collect()
    }

    /// The whole access decision for `login` with `cert` from `client`.
    fn authorize(
        &self,
        login: &str,
        cert: &Certificate,
        client: Option<SocketAddr>,
    ) -> Result<Authorized, LoginRefused> {
        let trusted = self.trusted_user_cas();
        let cluster = self.identity.borrow().cluster.clone();
        let verified = verify_user_cert(
            cert,
            &UserCertCheck {
                trusted: &trusted,
                cluster: &cluster,
                login,
                client_addr: client.map(|addr| addr.ip()),
                now: SystemTime::now(),
            },
        )?;
        if let Some(refusal) = self.lock_refusal(&verified.user, &verified.roles, login) {
            return Err(LoginRefused::Locked(refusal));
        }
        let users = self.users.current();
        let Some(user) = users.iter().find(|user| user.name == verified.user) else {
            return Err(LoginRefused::UnknownUser(verified.user));
        };
        let known = self.roles.current();
        let roles = held_roles(&verified.roles, user, known.iter(), SystemTime::now());
        if roles.is_empty() {
            return Err(LoginRefused::NoRoles {
                user: verified.user,
                roles: verified.roles,
            });
        }
        let checker = AccessChecker::new(roles, &user.traits);
        let labels = (self.labels)();
        checker.check_ssh_access(&labels, login)?;
        Ok(Authorized {
            login: login.to_string(),
            options: *checker.options(),
            verified,
        })
    }

    fn event(&self, kind: EventType, client: Option<SocketAddr>) -> AuditEvent {
        let mut event = AuditEvent::success(kind)
            .server_id(self.identity.borrow().host_uuid.clone())
            .field("server_hostname", self.host_name.clone());
        if let Some(client) = client {
            event = event.remote_addr(client);
        }
        event
    }

    fn refusal(&self, reason: &str, client: Option<SocketAddr>) -> AuditEvent {
        let mut event = AuditEvent::failure(EventType::Auth, reason)
            .server_id(self.identity.borrow().host_uuid.clone())
            .field("server_hostname", self.host_name.clone())
            .field("method", "ssh");
        if let Some(client) = client {
            event = event.remote_addr(client);
        }
        event
    }
}

/// Serves SSH on `addr` (`ssh_service.listen_addr`) for clients that dial the node
/// directly, until `stop` resolves.
pub async fn listen(
    service: Arc<SshService>,
    addr: String,
    stop: impl std::future::Future<Output = ()>,
) {
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(err) => {
            warn!(%addr, %err, "cannot listen for SSH connections");
            return;
        }
    };
    info!(%addr, "SSH service listening");
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(service.clone().serve(tcp, Some(peer)));
                }
                Err(err) => {
                    debug!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// A user who passed every check, with what their roles allow.
#[derive(Debug, Clone)]
struct Authorized {
    login: String,
    verified: VerifiedUser,
    options: SessionOptions,
}

/// One SSH connection's state.
struct Connection {
    service: Arc<SshService>,
    client: Option<SocketAddr>,
    authorized: Option<Arc<Authorized>>,
    channels: HashMap<ChannelId, SessionChannel>,
    /// A refusal was audited already (clients try again; one event is enough).
    refused: bool,
    /// The login the client last asked for (method `none` or a key offer), for the
    /// `Drop` impl.
    tried_login: Option<String>,
    /// When the client last sent data (for `client_idle_timeout`).
    last_input: Arc<std::sync::Mutex<tokio::time::Instant>>,
    watchdog_started: bool,
    /// In the service's live set while logged in.
    live: Option<jumpgate_api::live::LiveGuard<LiveLogin>>,
    /// One of the service's unauthenticated slots, until the login succeeds.
    startup: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Told when the login succeeds (ends the login grace timer).
    authenticated: Option<tokio::sync::oneshot::Sender<()>>,
    /// The connection's span: the client, then the user and login; its sessions log
    /// their ids in it. (russh runs the handler on a task of its own, so it is entered
    /// explicitly.)
    span: tracing::Span,
    /// Counted in `jumpgate_node_ssh_sessions_active` while logged in.
    logged_in: Option<jumpgate_telemetry::Active>,
}

/// russh refuses an expired or not yet valid certificate, or one with a bad signature,
/// before `auth_openssh_certificate` sees it, so such refusals would go unaudited. A
/// connection that asked to log in and ends with neither a login nor an audited
/// refusal is audited here, when the connection is over.
impl Drop for Connection {
    fn drop(&mut self) {
        if self.authorized.is_some() || self.refused {
            return;
        }
        let Some(login) = self.tried_login.take() else {
            return;
        };
        let reason = "access denied: the client offered no certificate the node accepts \
            (an expired or not yet valid certificate, a bad signature, or a plain key); \
            log in again with `jsh login`";
        info!(login, client = ?self.client, reason, "SSH login refused");
        let event = self.service.refusal(reason, self.client).login(login);
        self.service.emit_login_refusal(event);
    }
}

impl Connection {
    /// Ends the connection when the certificate expires (`disconnect_expired_cert`) or
    /// the client sends nothing for `client_idle_timeout`, as the roles say.
    fn start_watchdog(&mut self, session: &Session) {
        let Some(user) = self.authorized.clone() else {
            return;
        };
        if self.watchdog_started {
            return;
        }
        self.watchdog_started = true;
        let expires = user.options.disconnect_expired_cert.then(|| {
            let valid_before =
                std::time::UNIX_EPOCH + Duration::from_secs(user.verified.valid_before);
            let left = valid_before
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::time::Instant::now() + left
        });
        let idle = user.options.client_idle_timeout;
        if expires.is_none() && idle.is_none() {
            return;
        }
        let handle = session.handle();
        let last_input = self.last_input.clone();
        tokio::spawn(async move {
            let reason = loop {
                let last = *last_input
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let idle_deadline = idle.map(|timeout| last + timeout);
                let next = [expires, idle_deadline].into_iter().flatten().min();
                let Some(next) = next else { return };
                tokio::time::sleep_until(next).await;
                let now = tokio::time::Instant::now();
                if expires.is_some_and(|at| now >= at) {
                    break "your certificate expired; log in again";
                }
                let last = *last_input
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if idle.is_some_and(|timeout| now >= last + timeout) {
                    break "the session was idle for longer than the roles allow";
                }
            };
            info!(reason, "ending an SSH connection");
            let _ = handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    reason.to_string(),
                    String::new(),
                )
                .await;
        });
    }

    fn refuse_request(&self, reason: &str) {
        info!(client = ?self.client, %reason, "refused an SSH request");
        let mut event = self.service.refusal(reason, self.client);
        if let Some(user) = &self.authorized {
            event = event
                .user(user.verified.user.clone())
                .login(user.login.clone());
        }
        self.service.events.emit(event);
    }

    /// Starts the channel's program, or says why not.
    fn start(
        &mut self,
        channel: ChannelId,
        program: process::Program,
        session: &mut Session,
    ) -> Result<(), String> {
        let Some(user) = self.authorized.clone() else {
            return Err("not authenticated".to_string());
        };
        let file_copy = match &program {
            process::Program::Sftp => Some("sftp"),
            process::Program::Command(line) => session::file_copy_program(line),
            _ => None,
        };
        if let Some(what) = file_copy
            && !user.options.ssh_file_copy
        {
            return Err(format!(
                "access denied: file copy ({what}) is not allowed by the roles of user {}",
                user.verified.user
            ));
        }
        let state = self
            .channels
            .get_mut(&channel)
            .ok_or_else(|| "no such channel".to_string())?;
        if state.started() {
            return Err("the channel already runs a program".to_string());
        }
        let login_user = process::LoginUser::lookup(&user.login).map_err(|err| err.to_string())?;
        let start = session::Start {
            handle: session.handle(),
            channel,
            program,
            user: login_user,
            authorized_user: user.verified.user.clone(),
            client: self.client,
            service: self.service.clone(),
        };
        self.span
            .in_scope(|| state.start(start))
            .map_err(|err| err.to_string())
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    // Plain keys are never enough, only cluster-signed certificates: `auth_none`
    // refuses, and `auth_publickey` keeps russh's default, which refuses. `auth_none`
    // and `auth_publickey_offered` note the login, for the audit event of a connection
    // that never logs in (the `Drop` impl).

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        self.tried_login = Some(user.to_string());
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        _offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        self.tried_login = Some(user.to_string());
        // Certificates pass here too, before their signature is checked: the decision
        // is in `auth_openssh_certificate`.
        Ok(Auth::Accept)
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &Certificate,
    ) -> Result<Auth, Self::Error> {
        match self.service.authorize(user, certificate, self.client) {
            Ok(authorized) => {
                self.span
                    .record("user", authorized.verified.user.as_str())
                    .record("login", user);
                self.span.in_scope(|| {
                    info!(user = %authorized.verified.user, login = user, client = ?self.client, "SSH login accepted");
                });
                self.authorized = Some(Arc::new(authorized));
                Ok(Auth::Accept)
            }
            Err(reason) => {
                self.span.in_scope(|| {
                    info!(login = user, client = ?self.client, %reason, "SSH login refused");
                });
                if !self.refused {
                    self.refused = true;
                    jumpgate_telemetry::count(|m| &m.node_ssh_logins, &["refused"]);
                    let event = self
                        .service
                        .refusal(&reason.to_string(), self.client)
                        .user(certificate.key_id().to_string())
                        .login(user.to_string());
                    self.service.emit_login_refusal(event);
                }
                Ok(Auth::reject())
            }
        }
    }

    /// A logged-in connection joins the live set until it ends, so a lock ends it.
    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let Some(user) = self.authorized.clone() else {
            return Ok(());
        };
        self.startup = None;
        if let Some(authenticated) = self.authenticated.take() {
            let _ = authenticated.send(());
        }
        jumpgate_telemetry::count(|m| &m.node_ssh_logins, &["accepted"]);
        self.logged_in = Some(jumpgate_telemetry::Active::new(|m| &m.node_ssh_sessions));
        let (guard, ended) = self.service.live.register(LiveLogin {
            user: user.verified.user.clone(),
            roles: user.verified.roles.clone(),
            login: user.login.clone(),
        });
        self.live = Some(guard);
        let handle = session.handle();
        let service = self.service.clone();
        let client = self.client;
        tokio::spawn(async move {
            if let Some(reason) = ended.wait().await {
                info!(user = %user.verified.user, client = ?client, %reason, "ending an SSH connection");
                let event = service
                    .refusal(&reason, client)
                    .user(user.verified.user.clone())
                    .login(user.login.clone());
                service.events.emit(event);
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, reason, String::new())
                    .await;
            }
        });
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.authorized.is_none() {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.start_watchdog(session);
        // The channel's requests and data arrive through the callbacks below; the
        // `Channel` object itself is not read.
        self.channels
            .insert(channel.id(), SessionChannel::default());
        drop(channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(user) = self.authorized.clone() else {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let target = format!("{host_to_connect}:{port_to_connect}");
        if !(user.options.port_forwarding && user.verified.permissions.port_forwarding) {
            let reason = format!(
                "access denied: port forwarding to {target} is not allowed by the roles of user {}",
                user.verified.user
            );
            self.refuse_request(&reason);
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        // A port above 65535 is refused, not truncated to another port (65536+22 is
        // not port 22).
        let Some(port) = valid_forward_port(port_to_connect) else {
            let reason = format!("port forwarding to {target}: the port must be 1-65535");
            self.refuse_request(&reason);
            reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        };
        let connected = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect((host_to_connect, port)),
        )
        .await;
        let event = self
            .service
            .event(EventType::Port, self.client)
            .user(user.verified.user.clone())
            .login(user.login.clone())
            .field("addr.local", target.clone());
        match connected {
            Ok(Ok(mut tcp)) => {
                self.service.events.emit(event);
                reply.accept().await;
                tokio::spawn(async move {
                    let mut stream = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
                });
            }
            result => {
                let reason = match result {
                    Ok(Err(err)) => err.to_string(),
                    _ => "no answer in 10 s".to_string(),
                };
                debug!(%target, %reason, "port forwarding: cannot connect");
                reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
            }
        }
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let permitted = self
            .authorized
            .as_ref()
            .is_some_and(|user| user.verified.permissions.pty);
        match self.channels.get_mut(&channel) {
            Some(state) if permitted && !state.started() => {
                state.pty = Some(PtyRequest {
                    term: term.to_string(),
                    cols: col_width,
                    rows: row_height,
                });
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(state) if process::accepted_env(variable_name) && !state.started() => {
                state
                    .env
                    .insert(variable_name.to_string(), variable_value.to_string());
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.reply_start(channel, process::Program::Shell, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let line = String::from_utf8_lossy(data).into_owned();
        self.reply_start(channel, process::Program::Command(line), session)
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(user) = self.authorized.clone() else {
            return Ok(false);
        };
        if !(user.options.forward_agent && user.verified.permissions.agent_forwarding) {
            self.refuse_request(&format!(
                "access denied: agent forwarding is not allowed by the roles of user {}",
                user.verified.user
            ));
            return Ok(false);
        }
        match self.channels.get_mut(&channel) {
            Some(state) if !state.started() => {
                state.agent = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp" {
            return self.reply_start(channel, process::Program::Sftp, session);
        }
        debug!(subsystem = name, "refused an unknown subsystem");
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        *self
            .last_input
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tokio::time::Instant::now();
        if let Some(state) = self.channels.get(&channel) {
            state.send(Input::Data(data.to_vec())).await;
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(state) = self.channels.get(&channel) {
            state.send(Input::Eof).await;
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(state) = self.channels.get(&channel) {
            state
                .send(Input::Resize {
                    cols: col_width,
                    rows: row_height,
                })
                .await;
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(state) = self.channels.get(&channel) {
            state.signal(&signal);
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Dropping the state closes the program's input; a program still running is
        // ended when the session task sees the channel gone.
        if let Some(state) = self.channels.remove(&channel) {
            state.hang_up();
        }
        Ok(())
    }
}

impl Connection {
    fn reply_start(
        &mut self,
        channel: ChannelId,
        program: process::Program,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        match self.start(channel, program, session) {
            Ok(()) => session.channel_success(channel)?,
            Err(reason) => {
                self.refuse_request(&reason);
                // Tell the user why, as OpenSSH's sshd does on stderr, then fail.
                let _ = session.extended_data(channel, 1, format!("jumpgate: {reason}\r\n"));
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }
}

/// A `direct-tcpip` target port as a TCP port: 1-65535 (the SSH message carries 32 bits).
fn valid_forward_port(port: u32) -> Option<u16> {
    u16::try_from(port).ok().filter(|port| *port != 0)
}

#[cfg(test)]
mod tests {
    use super::valid_forward_port;

    #[test]
    fn forward_ports_beyond_16_bits_are_refused_not_truncated() {
        assert_eq!(valid_forward_port(22), Some(22));
        assert_eq!(valid_forward_port(65535), Some(65535));
        assert_eq!(valid_forward_port(65536 + 22), None);
        assert_eq!(valid_forward_port(u32::MAX), None);
        assert_eq!(valid_forward_port(0), None);
    }
}

#[cfg(test)]
mod refusal_budget_tests {
    use super::{REFUSAL_BURST, RefusalBudget};
    use std::time::Duration;

    #[test]
    fn refusals_beyond_the_budget_are_counted_and_reported_with_the_next() {
        let mut budget = RefusalBudget::default();
        let now = tokio::time::Instant::now();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let burst = REFUSAL_BURST as usize;
        for _ in 0..burst {
            assert_eq!(budget.take(now), Some(0));
        }
        assert_eq!(budget.take(now), None);
        assert_eq!(budget.take(now), None);
        // A second later there is room again, and the two held back are reported.
        assert_eq!(budget.take(now + Duration::from_secs(1)), Some(2));
        assert_eq!(budget.take(now + Duration::from_secs(1)), Some(0));
    }
}
