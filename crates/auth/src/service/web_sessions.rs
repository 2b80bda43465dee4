//! Web UI sessions (issue 17): what a proxy's session cookie stands for, kept in the cluster
//! state so that any proxy of the cluster serves it (a user's requests may land on any of
//! them behind a load balancer).
//!
//! A web login is a login: the same password and one-time code checks, rate limits,
//! lockout and `user.login` audit as `Login`. Auth then makes the session's own keys
//! (Ed25519 for SSH, P-256 for TLS; the browser never holds a key) and certificates for
//! them, exactly as for `jsh login`, so the proxy acts as the user with them: the same RBAC,
//! locks and audit on every request the page makes.
//!
//! Stored under `/web/sessions/SHA256(id)`: the id is a 256-bit bearer secret that only the
//! cookie holds, so a reader of the backend cannot recover a cookie from the keys. The
//! record expires (backend TTL) at the earlier of the certificates' expiry and the idle
//! timeout after its last use; a use pushes the idle expiry on, written at most once a
//! tenth of the timeout so that a busy page does not write on every request.

use super::{AuthServer, ServiceError, unix};
use crate::ClusterAuthorities;
use crate::users::User;
use jumpgate_api::proto;
use jumpgate_backend::{BackendError, Key, KeyRange, NewItem};
use jumpgate_types::role::{kinds, verbs};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PREFIX: &str = "/web/sessions/";

/// The cookie secret's length in bytes (hex on the wire).
pub(super) const ID_BYTES: usize = 32;

/// What is stored per session (never the id itself).
#[derive(Debug, Serialize, Deserialize)]
struct StoredSession {
    user: String,
    roles: Vec<String>,
    principals: Vec<String>,
    csrf_token: String,
    ssh_private_key: String,
    ssh_certificate: String,
    tls_private_key_pem: String,
    tls_certificate_pem: String,
    expires_unix: i64,
    last_used_unix: i64,
}

pub(super) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

pub(super) fn backend_error(err: BackendError) -> ServiceError {
    ServiceError::from(crate::AuthError::from(err))
}

/// Whether `id` could be one of the random ids auth makes ([`random_hex`] of
/// [`ID_BYTES`]): checked before an id from a request goes into a backend key.
pub(super) fn is_random_id(id: &str) -> bool {
    id.len() == ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The backend key of the session `id`, refusing what is not an id auth made.
fn key_of(id: &str) -> Result<Key, ServiceError> {
    if !is_random_id(id) {
        return Err(ServiceError::Unauthenticated(
            "no such web session; log in again".to_string(),
        ));
    }
    Key::new(format!(
        "{PREFIX}{}",
        hex::encode(Sha256::digest(id.to_ascii_lowercase().as_bytes()))
    ))
    .map_err(ServiceError::internal)
}

fn expired() -> ServiceError {
    ServiceError::Unauthenticated("the web session expired or ended; log in again".to_string())
}

fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0))
}

impl AuthServer {
    /// Logs `user` in for the web and stores the new session (see the module docs).
    pub(crate) async fn create_web_session(
        &self,
        caller: &super::caller::Caller,
        request: proto::CreateWebSessionRequest,
        remote: Option<&str>,
    ) -> Result<proto::WebSession, ServiceError> {
        let now = SystemTime::now();
        let authorities = self.authorities();
        let otp = Some(request.otp.as_str()).filter(|otp| !otp.is_empty());
        let user = self
            .users(&authorities)
            .authenticate(&request.user, &request.password, otp, remote, now)
            .await
            .map_err(ServiceError::from);
        let result = if user.is_ok() { "success" } else { "failure" };
        jumpgate_telemetry::count(|m| &m.user_logins, &[result]);
        let user = user?;
        self.open_web_session(&user, caller, remote).await
    }

    /// Makes a web session for `user`, who has just proved who they are (a password and
    /// second factor, or single sign-on).
    pub(crate) async fn open_web_session(
        &self,
        user: &User,
        caller: &super::caller::Caller,
        remote: Option<&str>,
    ) -> Result<proto::WebSession, ServiceError> {
        let now = SystemTime::now();
        let authorities = self.authorities();
        let ssh_key = jumpgate_pki::generate_ssh_key(&format!("{}@web", user.name))
            .map_err(ServiceError::internal)?;
        let (tls_private_key_pem, tls_public_key_pem) =
            jumpgate_pki::generate_tls_key().map_err(ServiceError::internal)?;
        let issued = self
            .issue_user_certs(
                user,
                &ssh_key.public_openssh,
                &tls_public_key_pem,
                None,
                caller,
                remote,
            )
            .await?;
        let stored = StoredSession {
            user: user.name.clone(),
            roles: user.roles.clone(),
            principals: issued.principals,
            csrf_token: random_hex(ID_BYTES),
            ssh_private_key: ssh_key.private_openssh.clone(),
            ssh_certificate: issued.ssh_certificate,
            tls_private_key_pem,
            tls_certificate_pem: issued.tls_certificate_pem,
            expires_unix: unix(issued.expires),
            last_used_unix: unix(now),
        };
        let id = random_hex(ID_BYTES);
        self.put_web_session(&key_of(&id)?, &stored).await?;
        self.web_session_reply(id, stored, &authorities)
    }

    /// The live session `id` (see the RPC's docs), its idle expiry pushed on.
    pub(crate) async fn get_web_session(
        &self,
        id: &str,
    ) -> Result<proto::WebSession, ServiceError> {
        let key = key_of(id)?;
        let mut stored = self.read_web_session(&key).await?;
        let now = unix(SystemTime::now());
        let idle = self.idle_timeout_secs();
        if now >= stored.expires_unix || now >= stored.last_used_unix.saturating_add(idle) {
            let _ = self.inner.backend.delete(&key).await;
            return Err(expired());
        }
        // A user deleted since: their sessions end with them.
        if self.cached_user(&stored.user).is_none() {
            let _ = self.inner.backend.delete(&key).await;
            return Err(expired());
        }
        if let Some(refusal) = self.lock_refusal(&jumpgate_types::LockSubject {
            user: Some(stored.user.as_str()),
            roles: &stored.roles,
            ..jumpgate_types::LockSubject::default()
        }) {
            return Err(ServiceError::PermissionDenied(format!(
                "access denied: {refusal}"
            )));
        }
        if now - stored.last_used_unix >= (idle / 10).max(1) {
            stored.last_used_unix = now;
            self.put_web_session(&key, &stored).await?;
        }
        self.web_session_reply(id.to_string(), stored, &self.authorities())
    }

    /// Ends session `id`, or every web session of its user; says whose and how many ended.
    pub(crate) async fn delete_web_session(
        &self,
        id: &str,
        all_of_user: bool,
    ) -> Result<(String, u32), ServiceError> {
        let key = key_of(id)?;
        let stored = self.read_web_session(&key).await?;
        if !all_of_user {
            self.inner
                .backend
                .delete(&key)
                .await
                .map_err(backend_error)?;
            return Ok((stored.user, 1));
        }
        let sessions = self
            .inner
            .backend
            .get_range(&KeyRange::prefix(PREFIX).map_err(backend_error)?, None)
            .await
            .map_err(backend_error)?;
        let mut ended = 0;
        for item in sessions {
            let Ok(other) = serde_json::from_slice::<StoredSession>(&item.value) else {
                continue;
            };
            if other.user == stored.user {
                match self.inner.backend.delete(&item.key).await {
                    Ok(()) => ended += 1,
                    Err(BackendError::NotFound { .. }) => {}
                    Err(err) => return Err(backend_error(err)),
                }
            }
        }
        Ok((stored.user, ended))
    }

    fn idle_timeout_secs(&self) -> i64 {
        i64::try_from(self.inner.web_idle_timeout.as_secs()).unwrap_or(i64::MAX)
    }

    async fn read_web_session(&self, key: &Key) -> Result<StoredSession, ServiceError> {
        let item = match self.inner.backend.get(key).await {
            Ok(item) => item,
            Err(BackendError::NotFound { .. }) => return Err(expired()),
            Err(err) => return Err(backend_error(err)),
        };
        serde_json::from_slice(&item.value)
            .map_err(|err| ServiceError::internal_in("web session record", err))
    }

    async fn put_web_session(&self, key: &Key, stored: &StoredSession) -> Result<(), ServiceError> {
        let idle_end = stored
            .last_used_unix
            .saturating_add(self.idle_timeout_secs());
        let value = serde_json::to_vec(stored).map_err(ServiceError::internal)?;
        let item = NewItem::new(key.clone(), value).expiring(at(idle_end.min(stored.expires_unix)));
        self.inner.backend.put(item).await.map_err(backend_error)?;
        Ok(())
    }

    fn web_session_reply(
        &self,
        id: String,
        stored: StoredSession,
        authorities: &ClusterAuthorities,
    ) -> Result<proto::WebSession, ServiceError> {
        let (tls_ca_pems, host_ca_known_hosts) = super::trust_roots(authorities)?;
        let can = self.web_capabilities(&stored.user, &stored.roles);
        Ok(proto::WebSession {
            id,
            user: stored.user,
            roles: stored.roles,
            principals: stored.principals,
            csrf_token: stored.csrf_token,
            ssh_private_key: stored.ssh_private_key,
            ssh_certificate: stored.ssh_certificate,
            tls_private_key_pem: stored.tls_private_key_pem,
            tls_certificate_pem: stored.tls_certificate_pem,
            tls_ca_pems,
            host_ca_known_hosts,
            expires_unix: stored.expires_unix,
            idle_timeout_seconds: self.idle_timeout_secs(),
            can,
        })
    }

    /// The pages of the web UI the user's roles allow ([`WEB_PAGES`]), decided by the same
    /// RBAC checker as every call the pages make (a page shows when the user may list
    /// some resources of its kind). Showing a page grants nothing: each call is checked.
    fn web_capabilities(&self, user: &str, roles: &[String]) -> Vec<String> {
        let Ok(checker) = self.checker_for(user, roles) else {
            return Vec::new();
        };
        WEB_PAGES
            .iter()
            .filter(|(_, kind)| checker.check_rule_for_some(kind, verbs::LIST).is_ok())
            .map(|(page, _)| (*page).to_string())
            .collect()
    }
}

/// Each admin page of the web UI and the kind its list needs.
const WEB_PAGES: &[(&str, &str)] = &[
    ("users", kinds::USER),
    ("roles", kinds::ROLE),
    ("tokens", kinds::TOKEN),
    ("locks", kinds::LOCK),
    ("events", kinds::EVENT),
    ("recordings", kinds::SESSION),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_key_is_the_hash_of_an_id_auth_could_have_made() {
        let id = random_hex(ID_BYTES);
        let key = key_of(&id).unwrap();
        assert!(key.to_string().starts_with(PREFIX));
        assert!(
            !key.to_string().contains(&id),
            "the id itself is not stored"
        );
        assert_eq!(key, key_of(&id.to_uppercase()).unwrap());
        for bad in [
            "",
            "abc",
            "../../users/alice",
            &"g".repeat(64),
            &format!("{id}0"),
        ] {
            assert!(
                matches!(key_of(bad), Err(ServiceError::Unauthenticated(_))),
                "{bad:?}"
            );
        }
    }
}
