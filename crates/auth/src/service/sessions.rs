//! Nodes can only write what is theirs: a session belongs to the node whose
//! `session.start` event named it first (kept under `/sessions/SID`), and only that node
//! may emit the session's other events and append to or complete its recording. Each
//! node's recording uploads also draw on a byte quota, so a compromised node cannot fill
//! the auth server's disk at network speed.

use super::AuthServer;
use super::errors::ServiceError;
use jumpgate_backend::{BackendError, Key, NewItem};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// How long auth remembers which node a session belongs to: long enough for a node that
/// was offline to upload its recordings later.
const OWNER_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Recording bytes a node may upload at once, and how fast its allowance refills.
const UPLOAD_BURST_BYTES: f64 = 256.0 * 1024.0 * 1024.0;
const UPLOAD_BYTES_PER_SECOND: f64 = 4.0 * 1024.0 * 1024.0;
/// Nodes remembered at most by the quota; beyond it the ones with full allowances go.
const MAX_TRACKED_NODES: usize = 100_000;

#[derive(Debug, Serialize, Deserialize)]
struct SessionOwner {
    node: String,
}

fn owner_key(session: &str) -> Result<Key, ServiceError> {
    Key::new(format!("/sessions/{session}")).map_err(|err| ServiceError::invalid(err.to_string()))
}

fn backend_error(err: BackendError) -> ServiceError {
    ServiceError::from(crate::AuthError::from(err))
}

/// Per-node byte allowances for recording uploads (a token bucket each).
#[derive(Debug, Default)]
pub(crate) struct UploadQuota {
    nodes: Mutex<HashMap<String, (f64, Instant)>>,
}

impl UploadQuota {
    /// Takes `bytes` from `node`'s allowance; `Err(wait)` when it has too little now.
    pub(crate) fn take(&self, node: &str, bytes: usize, now: Instant) -> Result<(), Duration> {
        let mut nodes = self
            .nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let refilled = |(tokens, at): (f64, Instant)| {
            (tokens + now.saturating_duration_since(at).as_secs_f64() * UPLOAD_BYTES_PER_SECOND)
                .min(UPLOAD_BURST_BYTES)
        };
        if nodes.len() >= MAX_TRACKED_NODES && !nodes.contains_key(node) {
            nodes.retain(|_, bucket| refilled(*bucket) < UPLOAD_BURST_BYTES);
        }
        let bucket = nodes
            .entry(node.to_string())
            .or_insert((UPLOAD_BURST_BYTES, now));
        let tokens = refilled(*bucket);
        #[allow(clippy::cast_precision_loss)]
        let wanted = bytes as f64;
        if tokens >= wanted {
            *bucket = (tokens - wanted, now);
            Ok(())
        } else {
            *bucket = (tokens, now);
            Err(Duration::from_secs_f64(
                (wanted - tokens) / UPLOAD_BYTES_PER_SECOND,
            ))
        }
    }
}

impl AuthServer {
    /// Records that `session` belongs to `node` (its `session.start`); refuses a session
    /// another node started.
    pub(crate) async fn claim_session(
        &self,
        node: &str,
        session: &str,
    ) -> Result<(), ServiceError> {
        let key = owner_key(session)?;
        let value = serde_json::to_vec(&SessionOwner {
            node: node.to_string(),
        })
        .map_err(ServiceError::internal)?;
        let item = NewItem::new(key, value).expiring(SystemTime::now() + OWNER_TTL);
        match self.inner.backend.create(item).await {
            Ok(_) => Ok(()),
            Err(BackendError::AlreadyExists { .. }) => {
                self.check_session_owner(node, session).await
            }
            Err(err) => Err(backend_error(err)),
        }
    }

    /// Refuses `node` access to a session it did not start. A session auth has not heard
    /// of yet is "try again": the node's events and uploads travel separately.
    pub(crate) async fn check_session_owner(
        &self,
        node: &str,
        session: &str,
    ) -> Result<(), ServiceError> {
        let item = match self.inner.backend.get(&owner_key(session)?).await {
            Ok(item) => item,
            Err(BackendError::NotFound { .. }) => {
                return Err(ServiceError::Unavailable(format!(
                    "session {session} has no session.start from this node yet; send its \
                     events first, then try again"
                )));
            }
            Err(err) => return Err(backend_error(err)),
        };
        let owner: SessionOwner = serde_json::from_slice(&item.value)
            .map_err(|err| ServiceError::internal_in("session owner record", err))?;
        if owner.node == node {
            Ok(())
        } else {
            Err(ServiceError::PermissionDenied(format!(
                "access denied: session {session} belongs to another node"
            )))
        }
    }
}

/// How long a live session stays listed after its node last named it: nodes name their
/// live sessions in every heartbeat (5 s), so a node that died takes its sessions off the
/// list within this, while a late beat or two does not.
const ACTIVE_TTL: Duration = Duration::from_secs(20);

/// Most live sessions one heartbeat may name (more are ignored, with a warning).
pub(crate) const MAX_LIVE_SESSIONS_PER_BEAT: usize = 10_000;

/// Where a live session is listed: under its node, so a node can only keep its own alive.
const ACTIVE_PREFIX: &str = "/active_sessions/";

/// A session in progress, as `ListActiveSessions` shows it: what its `session.start` said.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ActiveSession {
    pub(crate) session_id: String,
    pub(crate) user: String,
    pub(crate) login: String,
    pub(crate) node_uuid: String,
    pub(crate) node_hostname: String,
    pub(crate) client_addr: String,
    pub(crate) interactive: bool,
    pub(crate) started_unix_millis: i64,
}

fn active_key(node: &str, session: &str) -> Result<Key, ServiceError> {
    Key::new(format!("{ACTIVE_PREFIX}{node}/{session}"))
        .map_err(|err| ServiceError::invalid(err.to_string()))
}

impl AuthServer {
    /// Lists `event`'s session (a `session.start` from `node`, already checked to be the
    /// node's own) as live, until its `session.end` or until `node` stops naming it.
    pub(crate) async fn track_session_start(
        &self,
        node: &str,
        event: &jumpgate_audit::AuditEvent,
    ) -> Result<(), ServiceError> {
        let Some(session) = event.sid() else {
            return Ok(());
        };
        let field = |name: &str| {
            event
                .fields()
                .get(name)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let active = ActiveSession {
            session_id: session.to_string(),
            user: event.user_name().unwrap_or_default().to_string(),
            login: event.login_name().unwrap_or_default().to_string(),
            node_uuid: node.to_string(),
            node_hostname: field("server_hostname"),
            client_addr: event.addr_remote().unwrap_or_default().to_string(),
            interactive: event
                .fields()
                .get("interactive")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            started_unix_millis: event.time().unix_millis(),
        };
        let value = serde_json::to_vec(&active).map_err(ServiceError::internal)?;
        let item = NewItem::new(active_key(node, session)?, value)
            .expiring(SystemTime::now() + ACTIVE_TTL);
        self.inner
            .backend
            .put(item)
            .await
            .map(|_| ())
            .map_err(backend_error)
    }

    /// Takes `session` of `node` off the live list (its `session.end`).
    pub(crate) async fn track_session_end(
        &self,
        node: &str,
        session: &str,
    ) -> Result<(), ServiceError> {
        match self.inner.backend.delete(&active_key(node, session)?).await {
            Ok(()) | Err(BackendError::NotFound { .. }) => Ok(()),
            Err(err) => Err(backend_error(err)),
        }
    }

    /// Keeps the live sessions `node` names in its heartbeat listed. Only the node's own
    /// entries are read (the key holds the node), and only those that exist are renewed:
    /// one range read per beat, then one renewal per session both listed and named, so
    /// names that were never started cost the backend nothing.
    pub(crate) async fn keep_sessions_alive(&self, node: &str, sessions: &[String]) {
        let named: std::collections::HashSet<&str> = sessions
            .iter()
            .take(MAX_LIVE_SESSIONS_PER_BEAT)
            .map(String::as_str)
            .collect();
        let Ok(range) = jumpgate_backend::KeyRange::prefix(&format!("{ACTIVE_PREFIX}{node}/"))
        else {
            return;
        };
        let listed = match self.inner.backend.get_range(&range, None).await {
            Ok(items) => items,
            Err(err) => {
                tracing::debug!(%err, node, "cannot read a node's live sessions");
                return;
            }
        };
        let expires = SystemTime::now() + ACTIVE_TTL;
        for item in listed {
            let Some(session) = item.key.as_str().rsplit('/').next() else {
                continue;
            };
            if !named.contains(session) {
                continue;
            }
            match self.inner.backend.keep_alive(&item.key, expires).await {
                Ok(_) | Err(BackendError::NotFound { .. }) => {}
                Err(err) => {
                    tracing::debug!(%err, node, "cannot keep a live session listed");
                }
            }
        }
    }

    /// Every session listed as live now.
    pub(crate) async fn active_sessions(&self) -> Result<Vec<ActiveSession>, ServiceError> {
        let range = jumpgate_backend::KeyRange::prefix(ACTIVE_PREFIX).map_err(backend_error)?;
        let items = self
            .inner
            .backend
            .get_range(&range, None)
            .await
            .map_err(backend_error)?;
        Ok(items
            .iter()
            .filter_map(|item| serde_json::from_slice(&item.value).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_upload_quota_refills_and_nodes_are_apart() {
        let quota = UploadQuota::default();
        let now = Instant::now();
        let mib = 1024 * 1024;
        assert!(quota.take("a", 200 * mib, now).is_ok());
        let wait = quota.take("a", 100 * mib, now).unwrap_err();
        assert!(wait > Duration::from_secs(10), "{wait:?}");
        assert!(quota.take("b", 100 * mib, now).is_ok(), "another node");
        assert!(
            quota
                .take("a", 100 * mib, now + wait + Duration::from_millis(1))
                .is_ok()
        );
    }
}
