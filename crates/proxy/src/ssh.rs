//! Users' SSH connections (ALPN `jumpgate-ssh`, protocol in `jumpgate_api::ssh_route`):
//! the proxy authenticates the user by their X.509 certificate, finds the node, checks
//! the user's roles allow the login there, and splices the connection into a stream
//! through the node's reverse tunnel. SSH runs end to end; the node checks everything
//! again.
//!
//! Everything a decision needs (nodes, roles, users) comes from memory
//! ([`jumpgate_api::mirror`]): nothing on this path waits for the auth service.

use crate::peer::Peering;
use crate::tunnel::{DialError, Tunnels};
use jumpgate_api::live::{Ended, LiveGuard, LiveSet};
use jumpgate_api::mirror::Mirror;
use jumpgate_api::ssh_route::{
    DialErrorCode, DialRequest, DialResponse, RELAY_BUFFER, TARGET_SSH, read_line, to_line,
};
use jumpgate_api::tunnel::{EarlyBytes, H2Stream};
use jumpgate_pki::TlsIdentity;
use jumpgate_types::{
    AccessChecker, Lock, LockSubject, NodePresence, ResourceError, Role, UserDocumentError,
    UserView, find_lock, held_roles,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{debug, info};

/// How long a client may take to send its request after the TLS handshake.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses a `node` presence record.
pub fn parse_node(document: &str) -> Result<NodePresence, ResourceError> {
    NodePresence::from_json("auth:node", document)
}

/// Parses a `user` document (as the auth API lists them, without secrets).
pub fn parse_user(document: &str) -> Result<UserView, UserDocumentError> {
    UserView::from_json(document)
}

/// Parses a `role` document.
pub fn parse_role(document: &str) -> Result<Role, ResourceError> {
    Role::from_json("auth:role", document)
}

/// Parses a `lock` document.
pub fn parse_lock(document: &str) -> Result<Lock, ResourceError> {
    Lock::from_json("auth:lock", document)
}

/// What locks may name about a relayed SSH connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSsh {
    pub user: String,
    /// The roles the user's certificate carries.
    pub roles: Vec<String>,
    pub login: String,
    /// The node's UUID.
    pub node: String,
}

impl LiveSsh {
    fn subject(&self) -> LockSubject<'_> {
        LockSubject {
            user: Some(&self.user),
            roles: &self.roles,
            login: Some(&self.login),
            node: Some(&self.node),
        }
    }
}

/// What the proxy knows to route SSH connections.
#[derive(Debug, Clone)]
pub struct SshRouting {
    pub nodes: Arc<Mirror<NodePresence>>,
    pub roles: Arc<Mirror<Role>>,
    pub users: Arc<Mirror<UserView>>,
    pub locks: Arc<Mirror<Lock>>,
    pub tunnels: Arc<Tunnels>,
    /// With `proxy_peering`: the other proxies, through which a node whose tunnels end
    /// elsewhere is reached.
    pub peering: Option<Arc<Peering>>,
    /// The connections being relayed now, so a new lock ends the ones it names.
    pub live: Arc<LiveSet<LiveSsh>>,
}

/// A web terminal's connection to a node ([`SshRouting::open_for_web`]).
pub(crate) struct WebDial {
    pub node: NodePresence,
    pub stream: H2Stream,
    /// Live while held: a lock that names the session ends it ([`WebDial::ended`]).
    pub live: LiveGuard<LiveSsh>,
    pub ended: Ended,
}

/// A refused dial, for the log and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshRefusal {
    pub code: DialErrorCode,
    /// What the user is told.
    pub reason: String,
    /// What the audit log says, when it knows more than the user may (a node the
    /// user's roles hide looks absent to them).
    pub detail: Option<String>,
}

impl SshRefusal {
    fn new(code: DialErrorCode, reason: String) -> SshRefusal {
        SshRefusal {
            code,
            reason,
            detail: None,
        }
    }

    /// The reason for the audit log.
    pub fn audit_reason(&self) -> &str {
        self.detail.as_deref().unwrap_or(&self.reason)
    }
}

/// Why `node` is not there, as a user who may not see it is told: the same words as for
/// a node that does not exist.
fn no_such_node(wanted: &str) -> String {
    format!("no node named {wanted:?} is online; `jsh ls` lists the nodes you can reach")
}

impl SshRouting {
    /// The node a user means: by UUID, else by host name (which must be unique).
    pub fn find_node(&self, wanted: &str) -> Result<NodePresence, SshRefusal> {
        let nodes = self.nodes.current();
        if let Some(node) = nodes.iter().find(|node| node.uuid == wanted) {
            return Ok(node.clone());
        }
        let named: Vec<&NodePresence> = nodes.iter().filter(|n| n.hostname == wanted).collect();
        match named.as_slice() {
            [node] => Ok((*node).clone()),
            [] => Err(SshRefusal::new(
                DialErrorCode::NotFound,
                no_such_node(wanted),
            )),
            several => Err(SshRefusal {
                code: DialErrorCode::NotFound,
                detail: None,
                reason: format!(
                    "{} nodes are named {wanted:?}; connect by UUID: {}",
                    several.len(),
                    several
                        .iter()
                        .map(|n| n.uuid.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// The lock that refuses `subject` now, as the refused party is told.
    pub fn lock_refusal(&self, subject: &LockSubject<'_>) -> Option<String> {
        let locks = self.locks.current();
        find_lock(locks.iter(), subject, SystemTime::now())
            .map(|lock| format!("access denied: {}", lock.spec.refusal()))
    }

    /// Ends every relayed connection a lock now names; returns how many.
    pub fn end_locked_sessions(&self) -> usize {
        let locks = self.locks.current();
        let now = SystemTime::now();
        self.live.end_matching(|session| {
            find_lock(locks.iter(), &session.subject(), now)
                .map(|lock| format!("session ended: {}", lock.spec.refusal()))
        })
    }

    /// Ends what locks now name: relayed SSH connections, and the tunnels of locked
    /// nodes. Returns (connections ended, tunnels cut).
    pub fn enforce_locks_now(&self) -> (usize, usize) {
        let sessions = self.end_locked_sessions();
        let mut cut = 0;
        for tunnel in self.tunnels.list() {
            let subject = LockSubject {
                node: Some(&tunnel.node),
                ..LockSubject::default()
            };
            if let Some(reason) = self.lock_refusal(&subject) {
                info!(node = %tunnel.node, %reason, "cut a locked node's tunnel");
                if self.tunnels.cut(&tunnel.node) {
                    cut += 1;
                }
            }
        }
        (sessions, cut)
    }

    /// Applies every change of the locks (as the mirror sees them) at once, until `stop`.
    pub async fn enforce_locks(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut changes = self.locks.changes();
        loop {
            let (sessions, tunnels) = self.enforce_locks_now();
            if sessions + tunnels > 0 {
                info!(sessions, tunnels, "a lock ended live connections");
            }
            tokio::select! {
                () = &mut stop => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    }

    /// The nodes `user` may see with the roles `certificate_roles` (those of its
    /// certificate that the user still holds): the ones those roles allow some login on,
    /// as auth's node listing decides, from this proxy's copies. `None` until every copy
    /// has its first snapshot (then the caller asks auth).
    pub fn visible_nodes(
        &self,
        user: &str,
        certificate_roles: &[String],
    ) -> Option<Vec<NodePresence>> {
        if !(self.nodes.is_loaded() && self.roles.is_loaded() && self.users.is_loaded()) {
            return None;
        }
        let users = self.users.current();
        let Some(user) = users.iter().find(|view| view.name == user) else {
            return Some(Vec::new());
        };
        let roles = self.roles.current();
        let held = held_roles(certificate_roles, user, roles.iter(), SystemTime::now());
        let checker = AccessChecker::new(held, &user.traits);
        Some(
            self.nodes
                .current()
                .iter()
                .filter(|node| !checker.allowed_logins(&node.labels).is_empty())
                .cloned()
                .collect(),
        )
    }

    /// Whether `identity` (a user certificate, chain already verified) may log in as
    /// `login` on `node`: the roles the certificate names that the user still holds. A
    /// node those roles do not let the user see at all is refused as if it did not exist.
    pub fn check_access(
        &self,
        identity: &TlsIdentity,
        node: &NodePresence,
        login: &str,
    ) -> Result<(), SshRefusal> {
        let denied = |reason: String| SshRefusal::new(DialErrorCode::AccessDenied, reason);
        let users = self.users.current();
        let user = users
            .iter()
            .find(|user| user.name == identity.name)
            .ok_or_else(|| {
                denied(format!(
                    "access denied: user {:?} does not exist",
                    identity.name
                ))
            })?;
        let roles = self.roles.current();
        let held = held_roles(&identity.roles, user, roles.iter(), SystemTime::now());
        let checker = AccessChecker::new(held, &user.traits);
        if checker.allowed_logins(&node.labels).is_empty() {
            return Err(SshRefusal {
                code: DialErrorCode::NotFound,
                reason: no_such_node(&node.hostname),
                detail: Some(format!(
                    "access denied: the roles of user {:?} do not let them reach node {} ({}); \
                     they were told it does not exist",
                    identity.name, node.hostname, node.uuid
                )),
            });
        }
        checker
            .check_ssh_access(&node.labels, login)
            .map_err(|err| denied(format!("{err} ({})", node.hostname)))
    }

    /// Serves one user connection (TLS done, identity checked to be a user of this
    /// cluster): reads the request, decides, and splices. A refusal is answered and
    /// returned for auditing.
    pub async fn serve<S>(
        &self,
        mut stream: S,
        identity: &TlsIdentity,
        client: SocketAddr,
    ) -> Result<(), SshRefusal>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let request: DialRequest =
            match tokio::time::timeout(REQUEST_TIMEOUT, read_line(&mut stream)).await {
                Ok(Ok(request)) => request,
                Ok(Err(err)) => {
                    let refusal =
                        SshRefusal::new(DialErrorCode::BadRequest, format!("bad request: {err}"));
                    return self.refuse(&mut stream, refusal).await;
                }
                Err(_) => {
                    let refusal = SshRefusal::new(
                        DialErrorCode::BadRequest,
                        "no request within 10 s".to_string(),
                    );
                    return self.refuse(&mut stream, refusal).await;
                }
            };
        let node = match self.decide(identity, &request) {
            Ok(node) => node,
            Err(refusal) => return self.refuse(&mut stream, refusal).await,
        };
        let session = LiveSsh {
            user: identity.name.clone(),
            roles: identity.roles.clone(),
            login: request.login.clone(),
            node: node.uuid.clone(),
        };
        if let Some(reason) = self.lock_refusal(&session.subject()) {
            let refusal = SshRefusal::new(DialErrorCode::AccessDenied, reason);
            return self.refuse(&mut stream, refusal).await;
        }
        let (mut upstream, peer) = match self.dial_node(&node, client, &mut stream).await {
            Ok(dialled) => dialled,
            Err(reason) => {
                let refusal = SshRefusal::new(DialErrorCode::Offline, reason);
                return self.refuse(&mut stream, refusal).await;
            }
        };
        let answer = to_line(&DialResponse::connected(&node.uuid, &node.hostname));
        if stream.write_all(&answer).await.is_err() {
            return Ok(());
        }
        match &peer {
            None => {
                info!(user = %identity.name, login = %request.login, node = %node.hostname, client = %client, "SSH connection to a node");
            }
            Some(peer) => {
                info!(user = %identity.name, login = %request.login, node = %node.hostname, client = %client, %peer, "SSH connection to a node through a peer proxy");
            }
        }
        // Live until it ends, so a lock created meanwhile ends it.
        let (_live, ended) = self.live.register(session);
        let relay = tokio::io::copy_bidirectional_with_sizes(
            &mut stream,
            &mut upstream,
            RELAY_BUFFER,
            RELAY_BUFFER,
        );
        tokio::select! {
            relayed = relay => match relayed {
                Ok((up, down)) => debug!(up, down, "SSH connection ended"),
                Err(err) => debug!(%err, "SSH connection ended with an error"),
            },
            Some(reason) = ended.wait() => {
                info!(user = %identity.name, node = %node.hostname, %reason, "ended an SSH connection");
                return Err(SshRefusal::new(DialErrorCode::AccessDenied, reason));
            }
        }
        Ok(())
    }

    /// A stream to `node`'s SSH service: through its tunnel to this proxy, else through a
    /// peer proxy its presence record says holds one (named in the answer). What `source`
    /// (the user's connection) sends meanwhile goes on as the stream opens
    /// ([`EarlyBytes`]). The error is what the user is told.
    async fn dial_node<R: AsyncRead + Unpin>(
        &self,
        node: &NodePresence,
        client: SocketAddr,
        source: &mut R,
    ) -> Result<(H2Stream, Option<String>), String> {
        let mut early = EarlyBytes::default();
        let local = match self
            .tunnels
            .dial_forwarding(&node.uuid, TARGET_SSH, Some(client), source, &mut early)
            .await
        {
            Ok(upstream) => return Ok((upstream, None)),
            Err(DialError::NoTunnel(_)) => None,
            Err(other) => Some(other),
        };
        let Some(peering) = &self.peering else {
            return Err(match local {
                None => format!(
                    "node {} ({}) has no tunnel to this proxy: it is offline or reconnecting",
                    node.hostname, node.uuid
                ),
                Some(err) => format!("node {} is unreachable: {err}", node.hostname),
            });
        };
        match peering.dial(node, client, source, &mut early).await {
            Ok((peer, upstream)) => Ok((upstream, Some(peer))),
            Err(failures) => {
                let mut reasons: Vec<String> = local.iter().map(ToString::to_string).collect();
                reasons.extend(failures.iter().map(ToString::to_string));
                if reasons.is_empty() {
                    Err(format!(
                        "node {} ({}) has no tunnel to any proxy: it is offline or reconnecting",
                        node.hostname, node.uuid
                    ))
                } else {
                    Err(format!(
                        "node {} ({}) is unreachable: {}",
                        node.hostname,
                        node.uuid,
                        reasons.join("; ")
                    ))
                }
            }
        }
    }

    /// Opens a connection to `node` as `login` for the web terminal, acting as the user
    /// `identity` names (a web session's certificate): decided and dialled as [`Self::serve`]
    /// does for `jsh`, logged, and registered live so that a lock ends it.
    pub(crate) async fn open_for_web(
        &self,
        identity: &TlsIdentity,
        node: &str,
        login: &str,
        client: SocketAddr,
    ) -> Result<WebDial, SshRefusal> {
        let request = DialRequest {
            node: node.to_string(),
            login: login.to_string(),
        };
        let node = self.decide(identity, &request)?;
        let session = LiveSsh {
            user: identity.name.clone(),
            roles: identity.roles.clone(),
            login: request.login.clone(),
            node: node.uuid.clone(),
        };
        if let Some(reason) = self.lock_refusal(&session.subject()) {
            return Err(SshRefusal::new(DialErrorCode::AccessDenied, reason));
        }
        // The web terminal's SSH client starts once this returns: nothing to send early.
        let (stream, peer) = self
            .dial_node(&node, client, &mut tokio::io::empty())
            .await
            .map_err(|reason| SshRefusal::new(DialErrorCode::Offline, reason))?;
        info!(user = %identity.name, login = %request.login, node = %node.hostname, client = %client, peer = ?peer, "web terminal to a node");
        let (live, ended) = self.live.register(session);
        Ok(WebDial {
            node,
            stream,
            live,
            ended,
        })
    }

    /// Finds the node and checks access, on the copies held (kept current by watches:
    /// no round trip on the connection path, also for refusals).
    fn decide(
        &self,
        identity: &TlsIdentity,
        request: &DialRequest,
    ) -> Result<NodePresence, SshRefusal> {
        let node = self.find_node(&request.node)?;
        self.check_access(identity, &node, &request.login)?;
        Ok(node)
    }

    async fn refuse<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        refusal: SshRefusal,
    ) -> Result<(), SshRefusal> {
        let answer = DialResponse::refused(refusal.code, refusal.reason.clone());
        let _ = stream.write_all(&to_line(&answer)).await;
        let _ = stream.shutdown().await;
        Err(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jumpgate_api::ssh_route::DialErrorCode;
    use jumpgate_pki::IdentityKind;

    fn node(uuid: &str, hostname: &str, env: &str) -> NodePresence {
        NodePresence {
            uuid: uuid.to_string(),
            hostname: hostname.to_string(),
            labels: [("env".to_string(), env.to_string())].into(),
            tunnels: Vec::new(),
            version: String::new(),
        }
    }

    fn routing(users: Vec<UserView>) -> SshRouting {
        let prod_only = parse_role(
            r#"{"kind":"role","version":"v7","metadata":{"name":"prod-root"},
                "spec":{"allow":{"logins":["root"],"node_labels":{"env":"prod"}}}}"#,
        )
        .unwrap();
        let no_staging = parse_role(
            r#"{"kind":"role","version":"v7","metadata":{"name":"no-staging"},
                "spec":{"deny":{"node_labels":{"env":"staging"}}}}"#,
        )
        .unwrap();
        SshRouting {
            nodes: Mirror::fixed(
                "node",
                vec![
                    node("u-1", "web-1", "prod"),
                    node("u-2", "twin", "prod"),
                    node("u-3", "twin", "prod"),
                    node("u-4", "stage-1", "staging"),
                ],
            ),
            roles: Mirror::fixed("role", vec![Role::builtin_access(), prod_only, no_staging]),
            users: Mirror::fixed("user", users),
            locks: Mirror::fixed("lock", Vec::new()),
            tunnels: Arc::new(Tunnels::default()),
            peering: None,
            live: Arc::default(),
        }
    }

    fn user(name: &str, roles: &[&str], logins: &[&str]) -> UserView {
        UserView {
            name: name.to_string(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            traits: [(
                "logins".to_string(),
                logins.iter().map(|l| l.to_string()).collect(),
            )]
            .into(),
        }
    }

    fn identity(name: &str, roles: &[&str]) -> TlsIdentity {
        TlsIdentity {
            cluster: "dev".to_string(),
            kind: IdentityKind::User,
            name: name.to_string(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn nodes_are_found_by_uuid_or_unique_host_name() {
        let routing = routing(Vec::new());
        assert_eq!(routing.find_node("u-1").unwrap().hostname, "web-1");
        assert_eq!(routing.find_node("web-1").unwrap().uuid, "u-1");
        assert_eq!(routing.find_node("u-3").unwrap().uuid, "u-3");
        let twins = routing.find_node("twin").unwrap_err();
        assert_eq!(twins.code, DialErrorCode::NotFound);
        assert!(
            twins.reason.contains("u-2") && twins.reason.contains("u-3"),
            "{}",
            twins.reason
        );
        let missing = routing.find_node("db-9").unwrap_err();
        assert!(
            missing.reason.contains("no node named"),
            "{}",
            missing.reason
        );
    }

    #[test]
    fn access_follows_the_roles_the_user_still_holds() {
        let routing = routing(vec![
            user("alice", &["access"], &["alice"]),
            user("bob", &["prod-root", "no-staging"], &[]),
            user("carol", &["access"], &["root"]),
        ]);
        let prod = routing.find_node("web-1").unwrap();
        let staging = routing.find_node("stage-1").unwrap();
        // Templated logins from the user's traits.
        assert!(
            routing
                .check_access(&identity("alice", &["access"]), &prod, "alice")
                .is_ok()
        );
        let denied = routing
            .check_access(&identity("alice", &["access"]), &prod, "root")
            .unwrap_err();
        assert_eq!(denied.code, DialErrorCode::AccessDenied);
        assert!(denied.reason.contains("root"), "{}", denied.reason);
        // A role named in the certificate but no longer held grants nothing.
        assert!(
            routing
                .check_access(&identity("alice", &["prod-root"]), &prod, "root")
                .is_err()
        );
        // Labels select nodes, and deny beats allow.
        assert!(
            routing
                .check_access(
                    &identity("bob", &["prod-root", "no-staging"]),
                    &prod,
                    "root"
                )
                .is_ok()
        );
        let staged = routing
            .check_access(
                &identity("bob", &["prod-root", "no-staging"]),
                &staging,
                "root",
            )
            .unwrap_err();
        // A node the roles hide looks exactly like one that does not exist; the audit
        // log (the detail) says why.
        assert_eq!(staged.code, DialErrorCode::NotFound);
        assert_eq!(
            staged.reason,
            routing
                .find_node("db-9")
                .unwrap_err()
                .reason
                .replace("db-9", "stage-1")
        );
        assert!(staged.audit_reason().contains("bob"), "{:?}", staged.detail);
        // Unknown users are refused, whatever their certificate says.
        assert!(
            routing
                .check_access(&identity("mallory", &["access"]), &prod, "root")
                .is_err()
        );
        assert!(
            routing
                .check_access(&identity("carol", &["access"]), &staging, "root")
                .is_ok()
        );
    }

    #[test]
    fn documents_parse_to_entries() {
        let node = parse_node(
            r#"{"kind":"node","metadata":{"name":"u-1","labels":{"env":"dev"}},"spec":{"hostname":"web-1"}}"#,
        )
        .unwrap();
        assert_eq!(node.uuid, "u-1");
        assert_eq!(node.hostname, "web-1");
        assert_eq!(node.labels.get("env").map(String::as_str), Some("dev"));
        let user = parse_user(
            r#"{"kind":"user","metadata":{"name":"alice"},"spec":{"roles":["access"],"traits":{"logins":["root"]}}}"#,
        )
        .unwrap();
        assert_eq!(user.roles, ["access"]);
        assert_eq!(user.traits.get("logins"), Some(&vec!["root".to_string()]));
        assert!(parse_node("{}").is_err());
    }
}
