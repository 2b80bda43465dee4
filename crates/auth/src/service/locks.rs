//! Locks (`kind: lock`): stored under `/locks/NAME` with the lock's expiry as the
//! backend's, read from the watch-fed cache, and checked on every call this auth server
//! answers. Proxies and nodes read them through `GetResources` and enforce them on their
//! own connection paths (and end live sessions).

use super::AuthServer;
use super::Settled;
use super::caller::Caller;
use super::errors::ServiceError;
use jumpgate_api::proto;
use jumpgate_audit::{AuditEvent, EventType};
use jumpgate_backend::{BackendError, Key, NewItem};
use jumpgate_pki::{IdentityKind, TlsIdentity};
use jumpgate_types::role::kinds;
use jumpgate_types::{Lock, LockSubject, Resource, find_lock};
use std::time::SystemTime;

/// Where locks live in the backend.
pub(crate) const LOCKS_PREFIX: &str = "/locks/";

fn lock_key(name: &str) -> Result<Key, ServiceError> {
    Key::new(format!("{LOCKS_PREFIX}{name}")).map_err(|err| ServiceError::invalid(err.to_string()))
}

/// What a certificate's holder is, as locks see it: a user (and the roles its
/// certificate carries) or a node by UUID. Admin and auth identities are not lockable:
/// the admin is how a lock is removed again.
pub(crate) fn subject_of(identity: &TlsIdentity) -> Option<LockSubject<'_>> {
    match identity.kind {
        IdentityKind::User => Some(LockSubject {
            user: Some(identity.name.as_str()),
            roles: &identity.roles,
            ..LockSubject::default()
        }),
        IdentityKind::Node => Some(LockSubject {
            node: Some(identity.name.as_str()),
            ..LockSubject::default()
        }),
        // A proxy shares its host's UUID with the node agent there: a node lock must not
        // take the proxy (and everyone's access through it) down with it.
        IdentityKind::Proxy | IdentityKind::Admin | IdentityKind::Auth => None,
    }
}

impl AuthServer {
    /// Every lock in the cache (expired ones included; [`find_lock`] skips them).
    pub(crate) fn cached_locks(&self) -> Vec<Lock> {
        self.inner
            .cache
            .list(LOCKS_PREFIX)
            .into_iter()
            .filter_map(|(key, value)| {
                let text = String::from_utf8_lossy(&value);
                match Lock::from_json(&key, &text) {
                    Ok(lock) => Some(lock),
                    Err(err) => {
                        tracing::warn!(%key, %err, "an unreadable lock is ignored");
                        None
                    }
                }
            })
            .collect()
    }

    /// The message of the lock that applies to `subject` now, if any.
    pub(crate) fn lock_refusal(&self, subject: &LockSubject<'_>) -> Option<String> {
        let locks = self.cached_locks();
        find_lock(&locks, subject, SystemTime::now()).map(|lock| lock.spec.refusal())
    }

    /// Refuses a caller whose identity is locked (audited).
    pub(crate) fn check_caller_not_locked(&self, caller: &Caller) -> Result<(), ServiceError> {
        let Some(identity) = &caller.identity else {
            return Ok(());
        };
        let Some(subject) = subject_of(identity) else {
            return Ok(());
        };
        let Some(refusal) = self.lock_refusal(&subject) else {
            return Ok(());
        };
        // The audit write must not hold up the answer; a refusal is audited like every
        // other (DESIGN.md "Invariants").
        let mut event = AuditEvent::failure(EventType::Auth, refusal.clone())
            .user(caller.audit_name())
            .field("method", "locked");
        if let Some(addr) = caller.addr {
            event = event.remote_addr(addr);
        }
        let server = self.clone();
        tokio::spawn(async move {
            if let Err(err) = server.audit(event).await {
                tracing::error!(%err, "cannot audit a locked caller's refusal");
            }
        });
        Err(ServiceError::PermissionDenied(format!(
            "access denied: {refusal}"
        )))
    }

    pub(crate) fn lock_documents(&self, name: &str) -> Vec<(String, String)> {
        self.inner
            .cache
            .list(LOCKS_PREFIX)
            .into_iter()
            .filter_map(|(key, value)| {
                let lock_name = key.strip_prefix(LOCKS_PREFIX)?.to_string();
                (name.is_empty() || lock_name == name)
                    .then(|| (lock_name, String::from_utf8_lossy(&value).into_owned()))
            })
            .collect()
    }

    /// Creates (or with `force`, replaces) a lock. The creator and time are auth's; an
    /// expiry in the past is refused (it would lock nobody and confuse everyone).
    pub(crate) async fn upsert_lock(
        &self,
        caller: &Caller,
        source: &str,
        request: &proto::UpsertResourceRequest,
    ) -> Result<proto::UpsertResourceResponse, ServiceError> {
        let mut lock: Lock = match Resource::from_yaml(source, &request.document) {
            Ok(lock) => lock,
            Err(err) => {
                return Err(self
                    .refuse_malformed(caller, EventType::LockCreated, &err.to_string())
                    .await);
            }
        };
        let now = SystemTime::now();
        if lock.spec.expires.is_some_and(|expires| expires <= now) {
            return Err(ServiceError::invalid(
                "spec.expires is in the past: the lock would lock nobody; give a later time \
                 or a --ttl",
            ));
        }
        lock.spec.created_by = caller.audit_name();
        lock.spec.created_at = Some(now);
        let name = lock.name().to_string();
        let document = lock.to_json().map_err(ServiceError::internal)?;
        let mut item = NewItem::new(lock_key(&name)?, document.clone());
        if let Some(expires) = lock.spec.expires {
            item = item.expiring(expires);
        }
        let outcome = if request.force {
            self.inner.backend.put(item).await.map(|_| ())
        } else {
            self.inner.backend.create(item).await.map(|_| ())
        };
        if outcome.is_ok() {
            self.settle(
                &format!("{LOCKS_PREFIX}{name}"),
                Settled::Value(document.as_bytes()),
            )
            .await;
        }
        let existed = matches!(outcome, Err(BackendError::AlreadyExists { .. }));
        let event = match &outcome {
            Ok(()) => AuditEvent::success(EventType::LockCreated),
            Err(err) => AuditEvent::failure(EventType::LockCreated, err.to_string()),
        }
        .user(caller.audit_name())
        .field("name", name.as_str())
        .field("target", lock.spec.target.describe())
        .field("message", lock.spec.message.as_str());
        self.audit(event).await?;
        match outcome {
            Ok(()) => Ok(proto::UpsertResourceResponse {
                kind: kinds::LOCK.to_string(),
                name,
                created: !request.force,
                warnings: Vec::new(),
            }),
            Err(_) if existed => Err(ServiceError::AlreadyExists(format!(
                "lock {name:?} already exists; use --force to overwrite it"
            ))),
            Err(err) => Err(crate::AuthError::from(err).into()),
        }
    }

    /// Removes a lock (audited).
    pub(crate) async fn delete_lock(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<(), ServiceError> {
        let outcome = self.inner.backend.delete(&lock_key(name)?).await;
        let event = match &outcome {
            Ok(()) => AuditEvent::success(EventType::LockDeleted),
            Err(err) => AuditEvent::failure(EventType::LockDeleted, err.to_string()),
        }
        .user(caller.audit_name())
        .field("name", name);
        self.audit(event).await?;
        match outcome {
            Ok(()) => {
                self.settle(&format!("{LOCKS_PREFIX}{name}"), Settled::Absent)
                    .await;
                Ok(())
            }
            Err(BackendError::NotFound { .. }) => Err(ServiceError::NotFound(format!(
                "lock {name:?} does not exist; `jctl get locks` lists them"
            ))),
            Err(err) => Err(crate::AuthError::from(err).into()),
        }
    }
}
