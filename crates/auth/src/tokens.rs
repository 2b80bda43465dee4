//! Join tokens (`jctl tokens add --type node`) and signup tokens (the invite a user gets
//! from `jctl users add` without a password).
//!
//! A token is a secret: 32 random bytes as 64 hex characters, shown once to whoever made
//! it. The backend keeps only its SHA-256 (`/tokens/HASH`, `/signup_tokens/HASH`), so
//! reading the cluster state (or a backup) gives nobody a way to join. Everything that is
//! shown, logged or audited names a token by its **id**, the first 16 hex characters of
//! that hash (`static:` + 8 hex characters for the static tokens of the config).
//!
//! Rules:
//! - Join tokens made with [`Tokens::create`] are multi-use until they expire, as
//!   Teleport's are; [`Tokens::create_single_use`] makes tokens that one join consumes
//!   (what `jctl tokens add` makes unless `--reusable`). Signup tokens are single-use.
//!   A single-use token is consumed by a compare-and-delete on its revision, so of two
//!   concurrent uses exactly one wins, and a reused one is refused like an unknown one.
//! - A joining host is told only "invalid or expired" or "not allowed for this role":
//!   never whether a token exists.
//! - Input that cannot be a token (empty, too long, not hex) is refused before the backend
//!   is asked.
//! - Every join attempt, token creation and deletion is audited, and refused if the audit
//!   log cannot take the event.

use crate::AuthError;
use crate::users::{millis, timestamp};
use jumpgate_audit::{AuditEvent, AuditLog, EventType, Timestamp};
use jumpgate_backend::{Backend, BackendError, Item, Key, KeyRange, NewItem};
use jumpgate_types::config::{JoinRole, StaticToken};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const JOIN_PREFIX: &str = "/tokens/";
const SIGNUP_PREFIX: &str = "/signup_tokens/";
/// Hex characters of a token value we issue (32 bytes).
const TOKEN_HEX_LEN: usize = 64;
/// Hex characters of a dynamic token's id.
const ID_HEX_LEN: usize = 16;
/// Hex characters of the hash in a static token's id.
const STATIC_ID_HEX_LEN: usize = 8;
const STATIC_ID_PREFIX: &str = "static:";
/// Longest input treated as a possible token (static tokens of the config have any
/// length); anything longer is refused without hashing it.
const MAX_TOKEN_INPUT: usize = 4096;
/// How much of a joining host's self-declared name goes into the audit log.
const MAX_HOST_IN_AUDIT: usize = 253;

/// What a joining host is told. Deliberately does not say whether a token exists.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "the join token is invalid or has expired; make a new one with `jctl tokens add --type node`"
    )]
    InvalidToken,
    #[error(
        "this join token does not allow joining as {0}; make one with `jctl tokens add --type {0}`"
    )]
    RoleNotAllowed(String),
    #[error(transparent)]
    Internal(#[from] AuthError),
}

/// Why a signup token was not accepted. The same answer for unknown, used and expired.
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error("the signup token is invalid, already used or expired; ask an admin for a new invite")]
    InvalidToken,
    #[error(transparent)]
    Internal(#[from] AuthError),
}

/// A join token just made: the only time its value is available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The secret, to hand to the joining host once.
    pub token: String,
    /// What `jctl tokens ls` shows and `jctl tokens rm` accepts.
    pub id: String,
    pub roles: Vec<JoinRole>,
    pub expires: SystemTime,
}

/// A join token as listed: no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    /// `"node"`, `"proxy"`, `"auth"`.
    pub roles: Vec<String>,
    /// `None` for static tokens, which never expire.
    pub expires: Option<SystemTime>,
    /// `"dynamic"` (made with `jctl tokens add`) or `"static"` (from the config).
    pub kind: &'static str,
    /// Consumed by the first join.
    pub single_use: bool,
}

/// A single-use invite for a user to set a password. `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct SignupToken {
    /// The secret, shown once (in the invite link).
    pub token: String,
    /// Names the token in the audit log.
    pub id: String,
    pub user: String,
    pub expires: SystemTime,
}

impl fmt::Debug for SignupToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignupToken")
            .field("token", &"[redacted]")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("expires", &self.expires)
            .finish()
    }
}

/// Join tokens and signup tokens of one cluster.
#[derive(Debug)]
pub struct Tokens<'a> {
    pub backend: &'a dyn Backend,
    pub audit: &'a dyn AuditLog,
    /// `auth_service.tokens` from the config: they never expire and are never stored.
    pub static_tokens: &'a [StaticToken],
}

/// The stored resource, in Teleport's shape (`kind`, `version`, `metadata`, `spec`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resource<S> {
    kind: String,
    version: String,
    metadata: Metadata,
    spec: S,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    /// The token's id, never its value.
    name: String,
    /// RFC 3339.
    expires: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinSpec {
    roles: Vec<String>,
    join_method: String,
    /// Consumed by the first join (absent in tokens stored by earlier builds: reusable).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    single_use: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupSpec {
    user: String,
    usage: String,
    /// The TOTP secret (base32) the user enrols with this invite: bound to the token, so
    /// the code that confirms the enrolment is checked against the secret the user was
    /// shown. Absent in invites made by earlier builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    totp_secret: Option<String>,
}

const JOIN_KIND: &str = "token";
const JOIN_VERSION: &str = "v2";
const SIGNUP_KIND: &str = "user_token";
const SIGNUP_VERSION: &str = "v3";

/// A join token read back and checked.
struct StoredJoin {
    id: String,
    roles: Vec<JoinRole>,
    expires: SystemTime,
    single_use: bool,
}

/// A signup token read back and checked.
struct StoredSignup {
    id: String,
    user: String,
    expires: SystemTime,
    totp_secret: Option<String>,
}

/// A live signup token, read without spending it ([`Tokens::peek_signup`]) or just
/// redeemed ([`Tokens::consume_signup`]). `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingSignup {
    pub user: String,
    pub expires: SystemTime,
    /// The TOTP secret (base32) bound to the invite; `None` for invites made before
    /// secrets were bound to them.
    pub totp_secret: Option<String>,
}

impl fmt::Debug for PendingSignup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingSignup")
            .field("user", &self.user)
            .field("expires", &self.expires)
            .field(
                "totp_secret",
                &self.totp_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl From<StoredSignup> for PendingSignup {
    fn from(stored: StoredSignup) -> PendingSignup {
        PendingSignup {
            user: stored.user,
            expires: stored.expires,
            totp_secret: stored.totp_secret,
        }
    }
}

impl Tokens<'_> {
    /// TTL of `jctl tokens add` when none is given.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 60);
    /// Longest TTL of a join or signup token; longer-lived join tokens belong in
    /// `auth_service.tokens`, where they are visible in the config.
    pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
    /// Shortest TTL: expiries are stored to the millisecond, and a token that is expired
    /// before anyone can use it is a mistake.
    pub const MIN_TTL: Duration = Duration::from_secs(1);
    /// TTL of a signup invite when none is given.
    pub const SIGNUP_TTL: Duration = Duration::from_secs(3600);

    /// Makes a join token for `roles`, valid (and reusable) for `ttl` from `now`.
    pub async fn create(
        &self,
        roles: &[JoinRole],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<IssuedToken, AuthError> {
        self.create_token(roles, ttl, false, now).await
    }

    /// Makes a join token for `roles` that the first successful join consumes.
    pub async fn create_single_use(
        &self,
        roles: &[JoinRole],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<IssuedToken, AuthError> {
        self.create_token(roles, ttl, true, now).await
    }

    async fn create_token(
        &self,
        roles: &[JoinRole],
        ttl: Duration,
        single_use: bool,
        now: SystemTime,
    ) -> Result<IssuedToken, AuthError> {
        let mut unique: Vec<JoinRole> = Vec::new();
        for role in roles {
            if !unique.contains(role) {
                unique.push(*role);
            }
        }
        let checked = if unique.is_empty() {
            Err(AuthError::InvalidRequest(
                "a join token needs at least one role: node, proxy or auth".to_string(),
            ))
        } else {
            expiry(now, ttl)
        };
        let expires = match checked {
            Ok(expires) => expires,
            Err(err) => {
                let event = AuditEvent::failure(EventType::JoinTokenCreate, err.to_string())
                    .at(timestamp(now))
                    .field("roles", role_names(&unique));
                self.record(event).await?;
                return Err(err);
            }
        };
        let (token, hash) = new_token();
        let id = join_id(&hash);
        let record = Resource {
            kind: JOIN_KIND.to_string(),
            version: JOIN_VERSION.to_string(),
            metadata: Metadata {
                name: id.clone(),
                expires: rfc3339(expires)?,
            },
            spec: JoinSpec {
                roles: role_names(&unique),
                join_method: "token".to_string(),
                single_use,
            },
        };
        let key = join_key(&hash)?;
        let value = serde_json::to_vec(&record).map_err(|err| corrupt_at(JOIN_PREFIX, &id, err))?;
        let written = self
            .backend
            .create(NewItem::new(key.clone(), value).expiring(expires))
            .await;
        let event = match &written {
            Ok(_) => AuditEvent::success(EventType::JoinTokenCreate),
            Err(err) => AuditEvent::failure(EventType::JoinTokenCreate, err.to_string()),
        }
        .at(timestamp(now))
        .field("token_id", id.as_str())
        .field("roles", role_names(&unique))
        .field("single_use", single_use)
        .field("expires", rfc3339(expires)?);
        if let Err(err) = self.record(event).await {
            if written.is_ok() {
                // Nothing may exist unaudited: take the token back. If that fails too, it
                // expires on its own and the audit error is still what the caller sees.
                let _ = self.backend.delete(&key).await;
            }
            return Err(err);
        }
        written?;
        Ok(IssuedToken {
            token,
            id,
            roles: unique,
            expires,
        })
    }

    /// The join tokens that are valid at `now` (made with `create`), then the static ones
    /// of the config. No token values.
    pub async fn list(&self, now: SystemTime) -> Result<Vec<TokenInfo>, AuthError> {
        let items = self
            .backend
            .get_range(&KeyRange::prefix(JOIN_PREFIX)?, None)
            .await?;
        let mut dynamic = Vec::new();
        for item in items {
            let stored = decode_join(&item.key, &item.value)?;
            if stored.expires > now {
                dynamic.push(TokenInfo {
                    id: stored.id,
                    roles: role_names(&stored.roles),
                    expires: Some(stored.expires),
                    kind: "dynamic",
                    single_use: stored.single_use,
                });
            }
        }
        dynamic.sort_by(|a, b| a.expires.cmp(&b.expires).then_with(|| a.id.cmp(&b.id)));
        let statics = self.static_tokens.iter().map(|t| TokenInfo {
            id: static_id(&sha256(t.token.expose().as_bytes())),
            roles: role_names(&t.roles),
            expires: None,
            kind: "static",
            single_use: false,
        });
        Ok(dynamic.into_iter().chain(statics).collect())
    }

    /// Deletes a join token given its value or its id (as `list` shows it). Static tokens
    /// cannot be deleted here: they live in the config.
    pub async fn delete(&self, token_or_id: &str, now: SystemTime) -> Result<(), AuthError> {
        let (id, deleted, outcome) = self.delete_inner(token_or_id).await;
        let mut event = match &outcome {
            Ok(()) => AuditEvent::success(EventType::JoinTokenDelete),
            Err(err) => AuditEvent::failure(EventType::JoinTokenDelete, err.to_string()),
        }
        .at(timestamp(now));
        if let Some(id) = &id {
            event = event.field("token_id", id.as_str());
        }
        if let Err(err) = self.record(event).await {
            self.restore(deleted).await;
            return Err(err);
        }
        outcome
    }

    /// Checks a joining host's token for `role`; audits the attempt (`instance.join`) with
    /// the host's name, the role, the token id when known and the client address.
    pub async fn check_join(
        &self,
        token: &str,
        role: JoinRole,
        host: &str,
        remote_addr: Option<&str>,
        now: SystemTime,
    ) -> Result<(), JoinError> {
        let (id, outcome) = self.check_join_inner(token, role, now).await;
        let mut event = match &outcome {
            Ok(()) => AuditEvent::success(EventType::InstanceJoin),
            Err(err) => AuditEvent::failure(EventType::InstanceJoin, err.to_string()),
        }
        .at(timestamp(now))
        .field("node_name", at_most(host, MAX_HOST_IN_AUDIT))
        .field("role", role.as_str())
        .field("method", "token");
        if let Some(id) = &id {
            event = event.field("token_id", id.as_str());
        }
        if let Some(addr) = remote_addr {
            event = event.remote_addr(addr);
        }
        self.record(event).await?;
        outcome
    }

    /// Makes a single-use signup token for `user` (who must then set a password with it),
    /// valid for `ttl` (use [`Tokens::SIGNUP_TTL`] by default). Earlier signup tokens of
    /// the user are deleted: only the newest invite works. Audited as `user.update`.
    pub async fn create_signup(
        &self,
        user: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<SignupToken, AuthError> {
        let outcome = self.create_signup_inner(user, ttl, now).await;
        let mut event = match &outcome {
            Ok(_) => AuditEvent::success(EventType::UserUpdate),
            Err(err) => AuditEvent::failure(EventType::UserUpdate, err.to_string()),
        }
        .at(timestamp(now))
        .user(at_most(user, MAX_HOST_IN_AUDIT))
        .field("action", "signup_token.create");
        if let Ok(signup) = &outcome {
            event = event
                .field("token_id", signup.id.as_str())
                .field("expires", rfc3339(signup.expires)?);
        }
        if let Err(err) = self.record(event).await {
            if let Ok(signup) = &outcome {
                // Take the invite back: nothing may exist unaudited.
                let hash = sha256(signup.token.as_bytes());
                if let Ok(key) = signup_key(&hash) {
                    let _ = self.backend.delete(&key).await;
                }
            }
            return Err(err);
        }
        outcome
    }

    /// Redeems a signup token: deletes it and returns its user. A second use, an unknown
    /// or an expired token all get [`SignupError::InvalidToken`]. Audited as
    /// `user.password_change` (`method: signup_token`).
    ///
    /// The token is gone once this returns `Ok`: check the new password (and the code of
    /// its TOTP secret, from [`Tokens::peek_signup`]) before calling it.
    pub async fn consume_signup(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<PendingSignup, SignupError> {
        let (found, consumed, outcome) = self.consume_signup_inner(token, now).await;
        let mut event = match &outcome {
            Ok(_) => AuditEvent::success(EventType::UserPasswordChange),
            Err(err) => AuditEvent::failure(EventType::UserPasswordChange, err.to_string()),
        }
        .at(timestamp(now))
        .field("method", "signup_token");
        if let Some(found) = &found {
            event = event
                .user(found.user.as_str())
                .field("token_id", found.id.as_str());
        }
        if let Err(err) = self.record(event).await {
            self.restore(consumed).await;
            return Err(err.into());
        }
        outcome
    }

    /// The live signup token `token`, without spending it: what the signup page shows
    /// (the user, the TOTP secret to enrol). Unknown, used and expired tokens all get
    /// [`SignupError::InvalidToken`].
    pub async fn peek_signup(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<PendingSignup, SignupError> {
        let hash = dynamic_hash(token).ok_or(SignupError::InvalidToken)?;
        let key = signup_key(&hash)?;
        let item = match self.backend.get(&key).await {
            Ok(item) => item,
            Err(BackendError::NotFound { .. }) => return Err(SignupError::InvalidToken),
            Err(err) => return Err(AuthError::from(err).into()),
        };
        let stored = decode_signup(&item.key, &item.value)?;
        if stored.expires <= now {
            return Err(SignupError::InvalidToken);
        }
        Ok(stored.into())
    }

    /// Deletes every signup token of `user` (when the user is removed, or gets a new
    /// invite); returns how many there were.
    pub async fn delete_signups_for(&self, user: &str) -> Result<u64, AuthError> {
        let items = self
            .backend
            .get_range(&KeyRange::prefix(SIGNUP_PREFIX)?, None)
            .await?;
        let mut deleted = 0u64;
        for item in items {
            let stored = decode_signup(&item.key, &item.value)?;
            if stored.user != user {
                continue;
            }
            match self.backend.delete(&item.key).await {
                Ok(()) => deleted = deleted.saturating_add(1),
                // Used or expired meanwhile: gone either way.
                Err(BackendError::NotFound { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(deleted)
    }

    /// The token's id when known, the item deleted (to put back if the audit log refuses
    /// the event), and the outcome.
    async fn delete_inner(
        &self,
        token_or_id: &str,
    ) -> (Option<String>, Option<Item>, Result<(), AuthError>) {
        let unknown = || {
            AuthError::InvalidRequest(
                "no join token has this value or id; `jctl tokens ls` lists them".to_string(),
            )
        };
        if token_or_id.len() > MAX_TOKEN_INPUT || token_or_id.is_empty() {
            return (None, None, Err(unknown()));
        }
        let hash = sha256(token_or_id.as_bytes());
        let static_match = self.static_tokens.iter().fold(false, |found, t| {
            found | same_digest(&hash, &sha256(t.token.expose().as_bytes()))
        });
        let static_ids: Vec<String> = self
            .static_tokens
            .iter()
            .map(|t| static_id(&sha256(t.token.expose().as_bytes())))
            .collect();
        if static_match || static_ids.iter().any(|id| id == token_or_id) {
            let id = if static_match {
                static_id(&hash)
            } else {
                token_or_id.to_string()
            };
            return (
                Some(id),
                None,
                Err(AuthError::InvalidRequest(
                    "this is a static token from the config: remove it from \
                     auth_service.tokens in the config file and restart the auth service"
                        .to_string(),
                )),
            );
        }
        // The value of a token we issued, or its id (a prefix of the stored hash). An id
        // is not secret, so an unknown one is named in the audit event; a value never is.
        let mut requested_id = None;
        let range = if let Some(hash) = dynamic_hash(token_or_id) {
            match join_key(&hash) {
                Ok(key) => KeyRange::Prefix(key),
                Err(err) => return (None, None, Err(err)),
            }
        } else if token_or_id.len() == ID_HEX_LEN && is_hex(token_or_id) {
            requested_id = Some(token_or_id.to_ascii_lowercase());
            match KeyRange::prefix(&format!(
                "{JOIN_PREFIX}{}",
                token_or_id.to_ascii_lowercase()
            )) {
                Ok(range) => range,
                Err(err) => return (requested_id, None, Err(err.into())),
            }
        } else {
            return (None, None, Err(unknown()));
        };
        let items = match self.backend.get_range(&range, Some(2)).await {
            Ok(items) => items,
            Err(err) => return (requested_id, None, Err(err.into())),
        };
        let item = match items.as_slice() {
            [item] => item,
            [] => return (requested_id, None, Err(unknown())),
            // Two tokens whose hashes share 64 bits: never in practice; name the value.
            _ => {
                return (
                    requested_id,
                    None,
                    Err(AuthError::InvalidRequest(
                        "more than one join token has this id; delete it by its value".to_string(),
                    )),
                );
            }
        };
        let id = key_id(&item.key, JOIN_PREFIX);
        match self
            .backend
            .conditional_delete(&item.key, item.revision)
            .await
        {
            Ok(()) => (Some(id), Some(item.clone()), Ok(())),
            Err(BackendError::NotFound { .. } | BackendError::CompareFailed { .. }) => {
                (Some(id), None, Err(unknown()))
            }
            Err(err) => (Some(id), None, Err(err.into())),
        }
    }

    async fn check_join_inner(
        &self,
        token: &str,
        role: JoinRole,
        now: SystemTime,
    ) -> (Option<String>, Result<(), JoinError>) {
        if token.is_empty() || token.len() > MAX_TOKEN_INPUT {
            return (None, Err(JoinError::InvalidToken));
        }
        let hash = sha256(token.as_bytes());
        // Every static token is compared, in constant time, whatever matched before.
        let mut static_roles: Option<&[JoinRole]> = None;
        for static_token in self.static_tokens {
            let matched = same_digest(&hash, &sha256(static_token.token.expose().as_bytes()));
            if matched && static_roles.is_none() {
                static_roles = Some(&static_token.roles);
            }
        }
        if let Some(roles) = static_roles {
            let id = static_id(&hash);
            return if roles.contains(&role) {
                (Some(id), Ok(()))
            } else {
                (
                    Some(id),
                    Err(JoinError::RoleNotAllowed(role.as_str().to_string())),
                )
            };
        }
        let Some(hash) = dynamic_hash(token) else {
            return (None, Err(JoinError::InvalidToken));
        };
        let key = match join_key(&hash) {
            Ok(key) => key,
            Err(err) => return (None, Err(err.into())),
        };
        let item = match self.backend.get(&key).await {
            Ok(item) => item,
            Err(BackendError::NotFound { .. }) => return (None, Err(JoinError::InvalidToken)),
            Err(err) => return (None, Err(AuthError::from(err).into())),
        };
        let stored = match decode_join(&item.key, &item.value) {
            Ok(stored) => stored,
            Err(err) => return (None, Err(err.into())),
        };
        let id = Some(stored.id);
        if stored.expires <= now {
            (id, Err(JoinError::InvalidToken))
        } else if !stored.roles.contains(&role) {
            (
                id,
                Err(JoinError::RoleNotAllowed(role.as_str().to_string())),
            )
        } else if stored.single_use {
            // Consume it: only the use that deletes this revision joins.
            let consumed = self
                .backend
                .atomic_write(
                    vec![jumpgate_backend::Condition::Revision(
                        key.clone(),
                        item.revision,
                    )],
                    vec![jumpgate_backend::Action::Delete(key)],
                )
                .await;
            match consumed {
                Ok(_) => (id, Ok(())),
                Err(BackendError::ConditionFailed { .. } | BackendError::NotFound { .. }) => {
                    (id, Err(JoinError::InvalidToken))
                }
                Err(err) => (id, Err(AuthError::from(err).into())),
            }
        } else {
            (id, Ok(()))
        }
    }

    async fn create_signup_inner(
        &self,
        user: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<SignupToken, AuthError> {
        if !crate::users::valid_name(user) {
            return Err(AuthError::InvalidRequest(
                "a user name must be 1-253 characters of letters, digits, '-', '_', '.', '@'"
                    .to_string(),
            ));
        }
        let expires = expiry(now, ttl)?;
        self.delete_signups_for(user).await?;
        let (token, hash) = new_token();
        let id = join_id(&hash);
        let record = Resource {
            kind: SIGNUP_KIND.to_string(),
            version: SIGNUP_VERSION.to_string(),
            metadata: Metadata {
                name: id.clone(),
                expires: rfc3339(expires)?,
            },
            spec: SignupSpec {
                user: user.to_string(),
                usage: "invite".to_string(),
                totp_secret: Some(totp_rs::Secret::generate().to_base32()),
            },
        };
        let value =
            serde_json::to_vec(&record).map_err(|err| corrupt_at(SIGNUP_PREFIX, &id, err))?;
        self.backend
            .create(NewItem::new(signup_key(&hash)?, value).expiring(expires))
            .await?;
        Ok(SignupToken {
            token,
            id,
            user: user.to_string(),
            expires,
        })
    }

    async fn consume_signup_inner(
        &self,
        token: &str,
        now: SystemTime,
    ) -> (
        Option<StoredSignup>,
        Option<Item>,
        Result<PendingSignup, SignupError>,
    ) {
        let Some(hash) = dynamic_hash(token) else {
            return (None, None, Err(SignupError::InvalidToken));
        };
        let key = match signup_key(&hash) {
            Ok(key) => key,
            Err(err) => return (None, None, Err(err.into())),
        };
        let item = match self.backend.get(&key).await {
            Ok(item) => item,
            Err(BackendError::NotFound { .. }) => {
                return (None, None, Err(SignupError::InvalidToken));
            }
            Err(err) => return (None, None, Err(AuthError::from(err).into())),
        };
        let stored = match decode_signup(&item.key, &item.value) {
            Ok(stored) => stored,
            Err(err) => return (None, None, Err(err.into())),
        };
        if stored.expires <= now {
            // Useless from now on; the store would drop it at expiry anyway.
            let _ = self.backend.conditional_delete(&key, item.revision).await;
            return (Some(stored), None, Err(SignupError::InvalidToken));
        }
        // Whoever deletes this revision first redeems the token; everyone else lost.
        match self.backend.conditional_delete(&key, item.revision).await {
            Ok(()) => {
                let pending = PendingSignup {
                    user: stored.user.clone(),
                    expires: stored.expires,
                    totp_secret: stored.totp_secret.clone(),
                };
                (Some(stored), Some(item), Ok(pending))
            }
            Err(BackendError::NotFound { .. } | BackendError::CompareFailed { .. }) => {
                (Some(stored), None, Err(SignupError::InvalidToken))
            }
            Err(err) => (Some(stored), None, Err(AuthError::from(err).into())),
        }
    }

    /// Puts back an item deleted by an action whose audit event was refused, so the
    /// action did not happen. Best effort: if this fails too, the caller still gets the
    /// audit error and the item stays deleted (the safe side for a token).
    async fn restore(&self, deleted: Option<Item>) {
        if let Some(item) = deleted {
            let mut restored = NewItem::new(item.key, item.value);
            restored.expires = item.expires;
            let _ = self.backend.create(restored).await;
        }
    }

    async fn record(&self, event: AuditEvent) -> Result<(), AuthError> {
        self.audit.append(event).await.map_err(AuthError::Audit)
    }
}

/// A fresh token value and its hash.
fn new_token() -> (String, [u8; 32]) {
    let token = hex::encode(rand::random::<[u8; 32]>());
    let hash = sha256(token.as_bytes());
    (token, hash)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The hash under which a token we issued is stored, or `None` when the input cannot be
/// one (wrong length, not hex). Upper-case hex is accepted: it is the same token.
fn dynamic_hash(token: &str) -> Option<[u8; 32]> {
    (token.len() == TOKEN_HEX_LEN && is_hex(token))
        .then(|| sha256(token.to_ascii_lowercase().as_bytes()))
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Compares two digests without stopping at the first difference. Digests of a guess
/// reveal nothing useful about a token even through timing, so this is belt and braces
/// rather than the only defence.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    diff == 0
}

fn join_key(hash: &[u8; 32]) -> Result<Key, AuthError> {
    Ok(Key::new(format!("{JOIN_PREFIX}{}", hex::encode(hash)))?)
}

fn signup_key(hash: &[u8; 32]) -> Result<Key, AuthError> {
    Ok(Key::new(format!("{SIGNUP_PREFIX}{}", hex::encode(hash)))?)
}

/// A dynamic token's id: the start of its hash.
fn join_id(hash: &[u8; 32]) -> String {
    hex_prefix(hash, ID_HEX_LEN)
}

fn static_id(hash: &[u8; 32]) -> String {
    format!("{STATIC_ID_PREFIX}{}", hex_prefix(hash, STATIC_ID_HEX_LEN))
}

fn hex_prefix(hash: &[u8; 32], chars: usize) -> String {
    hex::encode(hash).chars().take(chars).collect()
}

/// The id of the token stored at `key` (the start of the hash in the key).
fn key_id(key: &Key, prefix: &str) -> String {
    key.as_str()
        .strip_prefix(prefix)
        .unwrap_or_default()
        .chars()
        .take(ID_HEX_LEN)
        .collect()
}

fn decode_join(key: &Key, value: &[u8]) -> Result<StoredJoin, AuthError> {
    let id = key_id(key, JOIN_PREFIX);
    let record: Resource<JoinSpec> =
        serde_json::from_slice(value).map_err(|err| corrupt_at(JOIN_PREFIX, &id, err))?;
    if record.kind != JOIN_KIND || record.version != JOIN_VERSION || record.metadata.name != id {
        return Err(corrupt_at(
            JOIN_PREFIX,
            &id,
            format!(
                "expected a {JOIN_KIND} {JOIN_VERSION} named {id}, found a {} {} named {}",
                record.kind, record.version, record.metadata.name
            ),
        ));
    }
    let mut roles = Vec::new();
    for name in &record.spec.roles {
        roles.push(
            name.parse::<JoinRole>()
                .map_err(|err| corrupt_at(JOIN_PREFIX, &id, err))?,
        );
    }
    let expires =
        parse_rfc3339(&record.metadata.expires).map_err(|err| corrupt_at(JOIN_PREFIX, &id, err))?;
    Ok(StoredJoin {
        id,
        roles,
        expires,
        single_use: record.spec.single_use,
    })
}

fn decode_signup(key: &Key, value: &[u8]) -> Result<StoredSignup, AuthError> {
    let id = key_id(key, SIGNUP_PREFIX);
    let record: Resource<SignupSpec> =
        serde_json::from_slice(value).map_err(|err| corrupt_at(SIGNUP_PREFIX, &id, err))?;
    if record.kind != SIGNUP_KIND || record.version != SIGNUP_VERSION || record.metadata.name != id
    {
        return Err(corrupt_at(
            SIGNUP_PREFIX,
            &id,
            format!(
                "expected a {SIGNUP_KIND} {SIGNUP_VERSION} named {id}, found a {} {} named {}",
                record.kind, record.version, record.metadata.name
            ),
        ));
    }
    let expires = parse_rfc3339(&record.metadata.expires)
        .map_err(|err| corrupt_at(SIGNUP_PREFIX, &id, err))?;
    Ok(StoredSignup {
        id,
        user: record.spec.user,
        expires,
        totp_secret: record.spec.totp_secret,
    })
}

/// `now + ttl`, to the millisecond (the precision stored), after checking the TTL.
fn expiry(now: SystemTime, ttl: Duration) -> Result<SystemTime, AuthError> {
    let max_hours = Tokens::MAX_TTL.as_secs() / 3600;
    if ttl < Tokens::MIN_TTL {
        return Err(AuthError::InvalidRequest(
            "the token TTL must be at least 1s".to_string(),
        ));
    }
    if ttl > Tokens::MAX_TTL {
        return Err(AuthError::InvalidRequest(format!(
            "the token TTL must be at most {max_hours}h (7 days); for a join token that \
             never expires, put a static token in auth_service.tokens"
        )));
    }
    let expires = now.checked_add(ttl).ok_or_else(|| {
        AuthError::InvalidRequest("the token would expire after the year 9999".to_string())
    })?;
    Ok(UNIX_EPOCH + Duration::from_millis(millis(expires)))
}

fn rfc3339(time: SystemTime) -> Result<String, AuthError> {
    let millis = i64::try_from(millis(time)).unwrap_or(i64::MAX);
    Timestamp::from_unix_millis(millis)
        .map(|t| t.to_string())
        .map_err(|_| {
            AuthError::InvalidRequest("the token would expire after the year 9999".to_string())
        })
}

fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    let parsed = Timestamp::parse_rfc3339(text).map_err(|err| err.to_string())?;
    let millis = u64::try_from(parsed.unix_millis())
        .map_err(|_| format!("expiry {text:?} is before 1970"))?;
    Ok(UNIX_EPOCH + Duration::from_millis(millis))
}

/// At most `max` characters of untrusted text (no mark: an audit field keeps its limit).
fn at_most(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

fn role_names(roles: &[JoinRole]) -> Vec<String> {
    roles.iter().map(|r| r.as_str().to_string()).collect()
}

/// A record that cannot be read, named by id (never by the full hash or the value).
fn corrupt_at(prefix: &str, id: &str, detail: impl fmt::Display) -> AuthError {
    AuthError::CorruptRecord {
        key: format!("{prefix}{id}…"),
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_64_hex_characters_can_be_a_dynamic_token() {
        let token = "a".repeat(64);
        assert!(dynamic_hash(&token).is_some());
        assert_eq!(dynamic_hash(&token), dynamic_hash(&"A".repeat(64)));
        assert!(dynamic_hash(&"a".repeat(63)).is_none());
        assert!(dynamic_hash(&"g".repeat(64)).is_none());
        // 64 bytes but not 64 ASCII characters.
        assert!(dynamic_hash(&format!("{}é", "a".repeat(62))).is_none());
    }

    #[test]
    fn digests_compare_equal_only_when_equal() {
        let a = sha256(b"one");
        let mut b = a;
        assert!(same_digest(&a, &b));
        b[31] ^= 1;
        assert!(!same_digest(&a, &b));
    }

    #[test]
    fn ids_are_prefixes_of_the_hash() {
        let hash = sha256(b"x");
        let hex = hex::encode(hash);
        assert_eq!(join_id(&hash), hex[..16]);
        assert_eq!(static_id(&hash), format!("static:{}", &hex[..8]));
    }
}
