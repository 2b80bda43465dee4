//! Who is calling, and what they may do. Deny by default: every call names the
//! permission it needs, and only admins, the listed service identities, and users
//! whose roles grant a rule get through. Every refusal is audited.

use super::AuthServer;
use super::errors::ServiceError;
use crate::users::User;
use jumpgate_api::PeerInfo;
use jumpgate_api::forwarded::Forwarded;
use jumpgate_audit::{AuditEvent, EventType};
use jumpgate_pki::{IdentityKind, TlsIdentity};
use jumpgate_types::rbac::ResourceFacts;
use jumpgate_types::role::kinds;
use jumpgate_types::role::verbs;
use jumpgate_types::{AccessChecker, AccessDenied, Role, Traits, UserView, held_roles};
use std::net::SocketAddr;
use std::time::SystemTime;

/// The caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub addr: Option<SocketAddr>,
    /// `None` for an anonymous caller (no client certificate).
    pub identity: Option<TlsIdentity>,
}

impl Caller {
    /// How the caller appears in logs, audit events and `jctl status`.
    pub fn describe(&self) -> String {
        match &self.identity {
            Some(identity) => format!("{} {}", identity.kind, identity.name),
            None => "anonymous".to_string(),
        }
    }

    /// The name audit events carry as `user`.
    pub fn audit_name(&self) -> String {
        match &self.identity {
            Some(identity) if identity.kind == IdentityKind::User => identity.name.clone(),
            Some(identity) => format!("{}:{}", identity.kind, identity.name),
            None => "anonymous".to_string(),
        }
    }

    pub fn kind(&self) -> Option<IdentityKind> {
        self.identity.as_ref().map(|identity| identity.kind)
    }

    pub fn is_admin(&self) -> bool {
        self.kind() == Some(IdentityKind::Admin)
    }
}

/// Which resources of a kind a caller may list or read: what
/// [`AuthServer::require_rule_scoped`] found.
#[derive(Debug)]
pub(crate) enum RuleScope {
    /// Every one: an admin or service identity, or a user whose rules allow the action
    /// whatever the resource.
    All,
    /// Those the user's rules allow one by one (rules with `where` conditions on the
    /// resource, such as the `access` role's own sessions).
    Each(Box<AccessChecker>),
}

impl RuleScope {
    /// Whether `verb` on this resource of kind `resource`, described by `facts`, is allowed.
    pub(crate) fn check(
        &self,
        resource: &str,
        verb: &str,
        facts: ResourceFacts<'_>,
    ) -> Result<(), AccessDenied> {
        match self {
            RuleScope::All => Ok(()),
            RuleScope::Each(checker) => checker.check_rule_on(resource, verb, facts),
        }
    }
}

/// Service identities' fixed permissions: what proxies and nodes need to do their job.
fn service_may(kind: IdentityKind, resource: &str, verb: &str) -> bool {
    let reading = verb == verbs::LIST || verb == verbs::READ;
    match kind {
        IdentityKind::Admin => true,
        IdentityKind::Auth => reading,
        IdentityKind::Proxy => {
            reading
                && [
                    kinds::NODE,
                    kinds::PROXY,
                    kinds::AUTH_SERVER,
                    kinds::CERT_AUTHORITY,
                    kinds::ROLE,
                    kinds::USER,
                    kinds::LOCK,
                ]
                .contains(&resource)
        }
        // Nodes re-check every SSH login against the roles, the users' current roles
        // (user documents carry no secrets) and the locks themselves.
        IdentityKind::Node => {
            reading
                && [kinds::CERT_AUTHORITY, kinds::ROLE, kinds::USER, kinds::LOCK]
                    .contains(&resource)
        }
        IdentityKind::User => false,
    }
}

impl AuthServer {
    /// Reads the caller from the connection: a presented certificate must be one of this
    /// cluster's identities (rustls already checked the chain).
    pub(crate) fn caller<T>(&self, request: &tonic::Request<T>) -> Result<Caller, ServiceError> {
        let peer = request.extensions().get::<PeerInfo>();
        let addr = match peer.and_then(|peer| peer.forwarded.as_ref()) {
            Some(forwarded) => Some(self.forwarded_client(forwarded, peer)?),
            None => peer.map(|peer| peer.remote_addr),
        };
        let Some(cert) = peer.and_then(|peer| peer.client_cert.as_ref()) else {
            return Ok(Caller {
                addr,
                identity: None,
            });
        };
        let authorities = self.authorities();
        let identity = authorities
            .tls
            .verify(cert, SystemTime::now())
            .map_err(|err| ServiceError::Unauthenticated(format!("client certificate: {err}")))?;
        let caller = Caller {
            addr,
            identity: Some(identity),
        };
        // A locked identity gets nothing from any call, at once (not at its expiry).
        self.check_caller_not_locked(&caller)?;
        Ok(caller)
    }

    /// The client a proxy passed the connection through for, once the certificate that
    /// signed the header is a proxy identity of this cluster (the signature and its time
    /// were checked at accept). Anything else could claim any address.
    fn forwarded_client(
        &self,
        forwarded: &Forwarded,
        peer: Option<&PeerInfo>,
    ) -> Result<SocketAddr, ServiceError> {
        let refused = |reason: String| {
            tracing::debug!(
                peer = ?peer.map(|peer| peer.remote_addr),
                claimed = %forwarded.client,
                reason,
                "refused a client address not forwarded by a proxy"
            );
            ServiceError::Unauthenticated(format!(
                "the connection's PROXY header is not signed by a proxy of this cluster: \
                 {reason}"
            ))
        };
        let signer = self
            .authorities()
            .tls
            .verify(&forwarded.proxy_cert, SystemTime::now())
            .map_err(|err| refused(err.to_string()))?;
        if signer.kind != IdentityKind::Proxy {
            return Err(refused(format!(
                "it is signed by a {} identity",
                signer.kind
            )));
        }
        Ok(forwarded.client)
    }

    /// Refuses anonymous callers.
    pub(crate) async fn require_identity(
        &self,
        caller: &Caller,
        method: &str,
    ) -> Result<(), ServiceError> {
        if caller.identity.is_some() {
            return Ok(());
        }
        Err(self
            .refuse(
                caller,
                method,
                ServiceError::Unauthenticated(
                    "this call needs a cluster identity (a client certificate): use `jctl` on \
                     the auth host or log in first"
                        .to_string(),
                ),
            )
            .await)
    }

    /// Requires that the caller may `verb` resources of `resource` kind.
    pub(crate) async fn require_rule(
        &self,
        caller: &Caller,
        method: &str,
        resource: &str,
        verb: &str,
    ) -> Result<(), ServiceError> {
        self.require_identity(caller, method).await?;
        let Some(identity) = &caller.identity else {
            return Err(ServiceError::Unauthenticated("no identity".to_string()));
        };
        let verdict = match identity.kind {
            IdentityKind::User => self.user_checker(identity).and_then(|checker| {
                checker
                    .check_rule(resource, verb)
                    .map_err(|denied| ServiceError::PermissionDenied(denied.to_string()))
            }),
            kind if service_may(kind, resource, verb) => Ok(()),
            kind => Err(ServiceError::PermissionDenied(format!(
                "access denied: a {kind} identity may not `{verb}` `{resource}`"
            ))),
        };
        match verdict {
            Ok(()) => Ok(()),
            Err(err) => Err(self.refuse(caller, method, err).await),
        }
    }

    /// For calls that list or read resources one by one: requires that the caller may `verb`
    /// *some* resources of `resource` kind, and says which. A user whose rules allow it only
    /// where a `where` condition holds gets [`RuleScope::Each`]; the handler checks each
    /// resource (filtering a list, refusing a read).
    pub(crate) async fn require_rule_scoped(
        &self,
        caller: &Caller,
        method: &str,
        resource: &str,
        verb: &str,
    ) -> Result<RuleScope, ServiceError> {
        self.require_identity(caller, method).await?;
        let Some(identity) = &caller.identity else {
            return Err(ServiceError::Unauthenticated("no identity".to_string()));
        };
        let verdict = match identity.kind {
            IdentityKind::User => self.user_checker(identity).and_then(|checker| {
                if checker.check_rule(resource, verb).is_ok() {
                    return Ok(RuleScope::All);
                }
                checker
                    .check_rule_for_some(resource, verb)
                    .map(|()| RuleScope::Each(Box::new(checker)))
                    .map_err(|denied| ServiceError::PermissionDenied(denied.to_string()))
            }),
            kind if service_may(kind, resource, verb) => Ok(RuleScope::All),
            kind => Err(ServiceError::PermissionDenied(format!(
                "access denied: a {kind} identity may not `{verb}` `{resource}`"
            ))),
        };
        match verdict {
            Ok(scope) => Ok(scope),
            Err(err) => Err(self.refuse(caller, method, err).await),
        }
    }

    /// Requires one of the given identity kinds (admin always passes).
    pub(crate) async fn require_kind(
        &self,
        caller: &Caller,
        method: &str,
        allowed: &[IdentityKind],
    ) -> Result<(), ServiceError> {
        self.require_identity(caller, method).await?;
        if caller.is_admin() || caller.kind().is_some_and(|kind| allowed.contains(&kind)) {
            return Ok(());
        }
        let names: Vec<&str> = allowed.iter().map(|kind| kind.as_str()).collect();
        Err(self
            .refuse(
                caller,
                method,
                ServiceError::PermissionDenied(format!(
                    "access denied: only {} identities may call {method}",
                    names.join(" or ")
                )),
            )
            .await)
    }

    /// A user identity's permissions: the roles its certificate names that the user
    /// still holds, as currently defined, with the user's current traits. So taking a
    /// role from a user (or deleting the user) takes effect on certificates already
    /// issued, not only when they expire.
    pub(crate) fn user_checker(
        &self,
        identity: &TlsIdentity,
    ) -> Result<AccessChecker, ServiceError> {
        self.checker_for(&identity.name, &identity.roles)
    }

    /// The RBAC checker of user `name` holding `roles` (as their certificate says).
    pub(crate) fn checker_for(
        &self,
        name: &str,
        roles: &[String],
    ) -> Result<AccessChecker, ServiceError> {
        let user = self.cached_user(name).ok_or_else(|| {
            ServiceError::PermissionDenied(format!("access denied: user {name:?} no longer exists"))
        })?;
        let view = UserView {
            name: user.name.clone(),
            roles: user.roles.clone(),
            traits: traits_of(&user),
        };
        let defined: Vec<Role> = roles
            .iter()
            .filter_map(|name| self.cached_role(name))
            .collect();
        let held = held_roles(roles, &view, &defined, SystemTime::now());
        Ok(AccessChecker::new(held, &view.traits).with_user(name))
    }

    /// Audits a refusal (an `auth` event) and passes the error on.
    pub(crate) async fn refuse(
        &self,
        caller: &Caller,
        method: &str,
        err: ServiceError,
    ) -> ServiceError {
        let reason = match &err {
            ServiceError::Unauthenticated(message) | ServiceError::PermissionDenied(message) => {
                message.clone()
            }
            other => other.to_string(),
        };
        let mut event = AuditEvent::failure(EventType::Auth, reason)
            .user(caller.audit_name())
            .field("method", method);
        if let Some(addr) = caller.addr {
            event = event.remote_addr(addr);
        }
        if let Err(audit_err) = self.inner.audit.append(event).await {
            return ServiceError::internal_in("cannot audit a refusal", audit_err);
        }
        err
    }

    /// Roles by name from the cache; a missing role is an error naming it.
    pub(crate) fn cached_roles(&self, names: &[String]) -> Result<Vec<Role>, ServiceError> {
        names
            .iter()
            .map(|name| {
                self.cached_role(name).ok_or_else(|| {
                    ServiceError::PermissionDenied(format!(
                        "role {name:?} does not exist; `jctl get roles` lists them"
                    ))
                })
            })
            .collect()
    }
}

/// A user's traits, for role templates (`{{internal.logins}}`).
pub fn traits_of(user: &User) -> Traits {
    let mut traits = user.traits.clone();
    let logins = traits.entry("logins".to_string()).or_default();
    for login in &user.logins {
        if !logins.contains(login) {
            logins.push(login.clone());
        }
    }
    traits
}
