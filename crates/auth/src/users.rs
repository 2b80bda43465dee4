//! Local users: creating them, and checking a password (and TOTP code) at login.
//!
//! Storage: the user itself (`/users/NAME`: roles and traits, safe to show) is kept
//! apart from its credentials (`/credentials/NAME`: the argon2id password hash, the TOTP
//! secret, and the lockout state), so listing users never touches a secret.
//!
//! Login rules:
//! - An unknown user and a wrong password give the same answer, after the same work
//!   (a dummy argon2id verification), so names cannot be probed.
//! - 5 consecutive failures lock the user for 30 minutes; a locked user is refused
//!   without checking the password. Every success, failure and lock is audited.
//! - The second factor asked for is [`crate::webauthn::required_factor`]'s: a TOTP code,
//!   a security key (whose ceremony is [`crate::webauthn`]'s), either, or none. A code is
//!   accepted once (the last used time step is stored), so a code seen over a shoulder
//!   cannot be replayed.

use crate::AuthError;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use jumpgate_audit::{AuditEvent, AuditLog, EventType, Timestamp};
use jumpgate_backend::{Backend, BackendError, Key, NewItem};
use jumpgate_types::Traits;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Consecutive failed logins that lock a user.
pub const MAX_FAILED_LOGINS: u32 = 5;
/// How long a lock lasts.
pub const LOCKOUT: Duration = Duration::from_secs(30 * 60);
/// Shortest password accepted (NIST SP 800-63B asks for at least 8; we ask for more).
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password accepted: argon2id's cost must not be the caller's to choose.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// The configured second-factor policy (`auth_service.authentication.second_factor`),
/// enforced as [`crate::webauthn::required_factor`] says.
pub use jumpgate_types::config::SecondFactor;

/// Why a login was refused. Deliberately vague towards the client.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("invalid user name, password or one-time code")]
    InvalidCredentials,
    #[error(
        "this user is locked after {MAX_FAILED_LOGINS} failed logins until {until}; an admin can unlock it with `jctl users unlock`"
    )]
    Locked { until: String },
    /// The right password without a code. It says exactly what a wrong password says:
    /// telling them apart would confirm a guessed password without the second factor
    /// (clients ask for the code up front when `/webapi/ping` says the cluster needs
    /// one). Unlike a wrong guess, it does not count towards the lockout.
    #[error("invalid user name, password or one-time code")]
    SecondFactorRequired,
    /// The right password of a user who must present a security key (and has no code
    /// that would do). Said plainly, since the user must go elsewhere (the web UI, or the
    /// key step of the login): this confirms the password to whoever typed it, as a key
    /// prompt after the password does in any WebAuthn login. It does not count towards
    /// the lockout, and wrong passwords still do.
    #[error(
        "this user's second factor is a security key: log in with it in the web UI (jsh \
         cannot use security keys yet)"
    )]
    WebauthnRequired,
    /// The right password of a user who has no key under a policy that takes only keys
    /// (`second_factor: webauthn`): nothing this user has can log in. Registering a key
    /// at signup is not built yet (docs/web.md).
    #[error(
        "this user has no security key, and this cluster (second_factor: webauthn) accepts \
         nothing else: an admin can allow second_factor: on for a while, for the user to \
         register a key on the web UI's Security keys page"
    )]
    NoSecurityKey,
    #[error(transparent)]
    Internal(#[from] AuthError),
}

/// A user as stored (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub roles: Vec<String>,
    /// OS logins, the `{{internal.logins}}` trait.
    pub logins: Vec<String>,
    /// Further traits, for role templates: an SSO user's claims (`{{external.groups}}`).
    #[serde(default, skip_serializing_if = "Traits::is_empty")]
    pub traits: Traits,
    /// Set for a user single sign-on made: which connector, and until when the user
    /// exists (its record expires then, and every certificate with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso: Option<SsoOrigin>,
}

/// Where an SSO user came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoOrigin {
    /// `oidc`, `saml` or `github`.
    pub kind: String,
    /// The connector's name.
    pub connector: String,
    /// When the user (and their last certificates) expire, in Unix seconds.
    pub expires_unix: i64,
}

impl User {
    /// A local user: roles and logins, no other traits.
    pub fn local(name: impl Into<String>, roles: Vec<String>, logins: Vec<String>) -> User {
        User {
            name: name.into(),
            roles,
            logins,
            traits: Traits::new(),
            sso: None,
        }
    }
}

/// A user's secrets and lockout state.
#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    pub(crate) password_hash: Option<String>,
    pub(crate) totp_secret: Option<String>,
    /// The TOTP time step last accepted (replay protection).
    pub(crate) last_totp_step: Option<u64>,
    pub(crate) failed_logins: u32,
    pub(crate) locked_until_ms: Option<u64>,
    /// The user's WebAuthn user handle, made at the first key's registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) webauthn_handle: Option<uuid::Uuid>,
    /// Registered security keys ([`crate::webauthn`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) webauthn_devices: Vec<crate::webauthn::Device>,
}

/// What a login presents besides the password.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Presented<'a> {
    /// A TOTP code, or none.
    Otp(Option<&'a str>),
    /// The begin of a security-key login: the key's ceremony follows.
    KeyPending,
}

/// A right password, and what happens next.
#[derive(Debug)]
pub(crate) enum PasswordVerdict {
    /// Logged in (with a TOTP code if the policy asked for one).
    LoggedIn(User),
    /// A key login may begin: the user's keys.
    KeyNext(User, Vec<crate::webauthn::Device>),
    /// The user has no key this policy accepts: log in with the code (or nothing).
    NoKey,
}

/// What a new user needs to finish enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// `otpauth://totp/...` to scan into an authenticator app (when OTP is on).
    pub otpauth_uri: Option<String>,
}

/// Local users of one cluster.
#[derive(Debug)]
pub struct Users<'a> {
    pub backend: &'a dyn Backend,
    pub audit: &'a dyn AuditLog,
    pub cluster: &'a str,
    pub second_factor: SecondFactor,
}

pub(crate) fn user_key(name: &str) -> Result<Key, AuthError> {
    Ok(Key::new(format!("/users/{name}"))?)
}

pub(crate) fn credentials_key(name: &str) -> Result<Key, AuthError> {
    Ok(Key::new(format!("/credentials/{name}"))?)
}

/// Milliseconds since the epoch (0 before it), as stored records keep times.
pub(crate) fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// An audit timestamp for a time the caller passed in (so tests control the clock).
pub(crate) fn timestamp(time: SystemTime) -> Timestamp {
    Timestamp::from_unix_millis(i64::try_from(millis(time)).unwrap_or(i64::MAX))
        .unwrap_or_else(|_| Timestamp::now())
}

/// User names: plain names that may hold an `@` (e-mail style).
pub(crate) fn valid_name(name: &str) -> bool {
    crate::names::is_plain_name(name, &['@'])
}

pub(crate) fn corrupt(key: &str, detail: impl std::fmt::Display) -> AuthError {
    AuthError::CorruptRecord {
        key: key.to_string(),
        detail: detail.to_string(),
    }
}

/// A hash to verify against when the user does not exist, so that answer takes as
/// long as a wrong password.
pub(crate) fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            Argon2::default()
                .hash_password(b"jumpgate-dummy-password")
                .ok()
                .map(|hash| hash.to_string())
        })
        .as_deref()
}

impl Users<'_> {
    /// Creates a user. With a password it can log in at once (and, when OTP is on, gets
    /// the `otpauth://` URI to enrol); without one it must be given a password later.
    pub async fn create(
        &self,
        user: &User,
        password: Option<&str>,
        now: SystemTime,
    ) -> Result<Enrollment, AuthError> {
        if !valid_name(&user.name) {
            return Err(AuthError::InvalidRequest(format!(
                "user name {:?} must be 1-253 characters of letters, digits, '-', '_', '.', '@'",
                user.name
            )));
        }
        let mut credentials = Credentials::default();
        let mut enrollment = Enrollment { otpauth_uri: None };
        if let Some(password) = password {
            credentials.password_hash = Some(hash_password(password)?);
            if self.second_factor.allows_otp() {
                let secret = totp_rs::Secret::generate();
                let totp = self.totp(&user.name, secret.clone())?;
                enrollment.otpauth_uri = Some(
                    totp.to_url()
                        .map_err(|err| AuthError::InvalidRequest(format!("TOTP: {err}")))?,
                );
                credentials.totp_secret = Some(secret.to_base32());
            }
        }
        let user_value = serde_json::to_vec(user).map_err(|err| corrupt("user", err))?;
        let credentials_value =
            serde_json::to_vec(&credentials).map_err(|err| corrupt("credentials", err))?;
        let result = self
            .backend
            .atomic_write(
                vec![
                    jumpgate_backend::Condition::NotExists(user_key(&user.name)?),
                    jumpgate_backend::Condition::NotExists(credentials_key(&user.name)?),
                ],
                vec![
                    jumpgate_backend::Action::Put(NewItem::new(user_key(&user.name)?, user_value)),
                    jumpgate_backend::Action::Put(NewItem::new(
                        credentials_key(&user.name)?,
                        credentials_value,
                    )),
                ],
            )
            .await;
        let event = match &result {
            Ok(_) => AuditEvent::success(EventType::UserCreate),
            Err(BackendError::ConditionFailed { .. }) => {
                AuditEvent::failure(EventType::UserCreate, "user already exists")
            }
            Err(err) => AuditEvent::failure(EventType::UserCreate, err.to_string()),
        };
        self.record(event.at(timestamp(now)).user(user.name.as_str()))
            .await?;
        match result {
            Ok(_) => Ok(enrollment),
            Err(BackendError::ConditionFailed { .. }) => Err(AuthError::InvalidRequest(format!(
                "user {:?} already exists",
                user.name
            ))),
            Err(err) => Err(err.into()),
        }
    }

    /// Checks a login attempt; audits the outcome. `otp` is the code from the user's
    /// authenticator app when OTP is on.
    pub async fn authenticate(
        &self,
        name: &str,
        password: &str,
        otp: Option<&str>,
        remote_addr: Option<&str>,
        now: SystemTime,
    ) -> Result<User, LoginError> {
        let outcome = self
            .check_login(name, password, Presented::Otp(otp), now)
            .await
            .and_then(|verdict| match verdict {
                PasswordVerdict::LoggedIn(user) => Ok(user),
                // A code login never asks for a key, so these cannot come; refuse anyway.
                PasswordVerdict::KeyNext(..) | PasswordVerdict::NoKey => {
                    Err(LoginError::WebauthnRequired)
                }
            });
        let mut event = match &outcome {
            Ok(_) => AuditEvent::success(EventType::UserLogin),
            Err(LoginError::Internal(err)) => {
                AuditEvent::failure(EventType::UserLogin, err.to_string())
            }
            // The operator may know what the user was not told.
            Err(LoginError::SecondFactorRequired) => AuditEvent::failure(
                EventType::UserLogin,
                "the password was right but no one-time code was given",
            ),
            Err(LoginError::WebauthnRequired) => AuditEvent::failure(
                EventType::UserLogin,
                "the password was right but this user must use a security key",
            ),
            Err(LoginError::NoSecurityKey) => AuditEvent::failure(
                EventType::UserLogin,
                "the password was right but this user has no security key, which the policy requires",
            ),
            Err(err) => AuditEvent::failure(EventType::UserLogin, err.to_string()),
        }
        .at(timestamp(now))
        .user(name)
        .field("method", "local");
        if let Some(addr) = remote_addr {
            event = event.remote_addr(addr);
        }
        self.record(event).await?;
        outcome
    }

    /// Lifts a lock and forgets past failures (`jctl users unlock`).
    pub async fn unlock(&self, name: &str) -> Result<(), AuthError> {
        let key = credentials_key(name)?;
        loop {
            let item = self.backend.get(&key).await?;
            let mut credentials = decode_credentials(&item.value, &key)?;
            credentials.failed_logins = 0;
            credentials.locked_until_ms = None;
            let value =
                serde_json::to_vec(&credentials).map_err(|err| corrupt("credentials", err))?;
            match self
                .backend
                .conditional_update(item.revision, NewItem::new(key.clone(), value))
                .await
            {
                Ok(_) => return Ok(()),
                Err(BackendError::CompareFailed { .. }) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Sets a user's password at signup and, when OTP is on, the TOTP secret the user
    /// enrolled (`totp`: the secret bound to the signup token and the time step of the
    /// code that confirmed it, from [`Users::check_enrolment_code`]), unless the user
    /// enrols a security key instead (`key`: the user's key handle and the registered
    /// key, stored in the same write as the password). Failures are counted afresh.
    pub async fn set_password(
        &self,
        name: &str,
        password: &str,
        totp: Option<(&str, u64)>,
        key: Option<(uuid::Uuid, crate::webauthn::Device)>,
        now: SystemTime,
    ) -> Result<Enrollment, AuthError> {
        let outcome = self.store_password(name, password, totp, key).await;
        let event = match &outcome {
            Ok(_) => AuditEvent::success(EventType::UserPasswordChange),
            Err(err) => AuditEvent::failure(EventType::UserPasswordChange, err.to_string()),
        };
        self.record(event.at(timestamp(now)).user(name)).await?;
        outcome
    }

    async fn store_password(
        &self,
        name: &str,
        password: &str,
        totp: Option<(&str, u64)>,
        key: Option<(uuid::Uuid, crate::webauthn::Device)>,
    ) -> Result<Enrollment, AuthError> {
        let mut enrollment = Enrollment { otpauth_uri: None };
        let mut credentials = Credentials::default();
        if let Some((handle, device)) = key {
            credentials.webauthn_handle = Some(handle);
            credentials.webauthn_devices.push(device);
        } else if self.second_factor.allows_otp() {
            let Some((secret, step)) = totp else {
                return Err(AuthError::InvalidRequest(
                    "a one-time code is required to enrol the authenticator app".to_string(),
                ));
            };
            enrollment.otpauth_uri = Some(self.otpauth_uri(name, secret)?);
            credentials.totp_secret = Some(secret.to_string());
            // The confirming code is spent: it does not also log in.
            credentials.last_totp_step = Some(step);
        }
        credentials.password_hash = Some(hash_password(password)?);
        self.replace_credentials(name, &credentials).await?;
        Ok(enrollment)
    }

    /// The `otpauth://` URI of a TOTP secret (base32) for user `name`.
    pub fn otpauth_uri(&self, name: &str, secret: &str) -> Result<String, AuthError> {
        let secret = totp_rs::Secret::try_from_base32(secret)
            .map_err(|err| corrupt("signup token", format!("TOTP secret: {err:?}")))?;
        self.totp(name, secret)?
            .to_url()
            .map_err(|err| AuthError::InvalidRequest(format!("TOTP: {err}")))
    }

    /// Checks that `code` is a current code of `secret` (base32), the secret a new user is
    /// enrolling; returns its time step. A wrong code is an [`AuthError::InvalidRequest`]
    /// saying what to do.
    pub fn check_enrolment_code(
        &self,
        name: &str,
        secret: &str,
        code: &str,
        now: SystemTime,
    ) -> Result<u64, AuthError> {
        let code = code.trim();
        if code.is_empty() {
            return Err(AuthError::InvalidRequest(
                "enter the 6-digit code your authenticator app shows for this account, to \
                 confirm it is enrolled"
                    .to_string(),
            ));
        }
        let parsed = totp_rs::Secret::try_from_base32(secret)
            .map_err(|err| corrupt("signup token", format!("TOTP secret: {err:?}")))?;
        self.totp(name, parsed)?
            .check(code, millis(now) / 1000)
            .ok_or_else(|| {
                AuthError::InvalidRequest(
                    "the one-time code does not match: enter the code your authenticator app \
                     shows now for this account (check that the device's clock is right)"
                        .to_string(),
                )
            })
    }

    /// Forgets a user's password and TOTP secret (`jctl users reset`): the user must
    /// sign up again with a new signup token.
    pub async fn reset(&self, name: &str, now: SystemTime) -> Result<(), AuthError> {
        let outcome = self
            .replace_credentials(name, &Credentials::default())
            .await;
        let event = match &outcome {
            Ok(()) => AuditEvent::success(EventType::UserUpdate),
            Err(err) => AuditEvent::failure(EventType::UserUpdate, err.to_string()),
        };
        self.record(
            event
                .at(timestamp(now))
                .user(name)
                .field("change", "credentials reset"),
        )
        .await?;
        outcome
    }

    /// Writes new credentials for an existing user (security keys go with the old ones).
    async fn replace_credentials(
        &self,
        name: &str,
        credentials: &Credentials,
    ) -> Result<(), AuthError> {
        let user = user_key(name)?;
        let value = serde_json::to_vec(credentials).map_err(|err| corrupt("credentials", err))?;
        let mut actions = vec![jumpgate_backend::Action::Put(NewItem::new(
            credentials_key(name)?,
            value,
        ))];
        // A key registered with the credentials: its handle names the user for passkeys.
        if let Some(handle) = credentials.webauthn_handle {
            actions.push(jumpgate_backend::Action::Put(NewItem::new(
                crate::webauthn::handle_key(handle)?,
                name.as_bytes().to_vec(),
            )));
        }
        match self
            .backend
            .atomic_write(vec![jumpgate_backend::Condition::Exists(user)], actions)
            .await
        {
            Ok(_) => Ok(()),
            Err(BackendError::ConditionFailed { .. }) => Err(AuthError::InvalidRequest(format!(
                "no user {name:?}; `jctl users ls` lists them"
            ))),
            Err(err) => Err(err.into()),
        }
    }

    /// Deletes a user and their credentials; audited.
    pub async fn delete(&self, name: &str, now: SystemTime) -> Result<(), AuthError> {
        let outcome = async {
            let user = user_key(name)?;
            match self.backend.get(&user).await {
                Ok(_) => {}
                Err(BackendError::NotFound { .. }) => {
                    return Err(AuthError::InvalidRequest(format!(
                        "no user {name:?}; `jctl users ls` lists them"
                    )));
                }
                Err(err) => return Err(err.into()),
            }
            self.backend
                .atomic_write(
                    Vec::new(),
                    vec![
                        jumpgate_backend::Action::Delete(user),
                        jumpgate_backend::Action::Delete(credentials_key(name)?),
                    ],
                )
                .await?;
            Ok(())
        }
        .await;
        let event = match &outcome {
            Ok(()) => AuditEvent::success(EventType::UserDelete),
            Err(err) => AuditEvent::failure(EventType::UserDelete, err.to_string()),
        };
        self.record(event.at(timestamp(now)).user(name)).await?;
        outcome
    }

    /// Whether a user is locked now, and until when (for `jctl users ls`).
    pub async fn locked_until(
        &self,
        name: &str,
        now: SystemTime,
    ) -> Result<Option<SystemTime>, AuthError> {
        let key = credentials_key(name)?;
        let item = match self.backend.get(&key).await {
            Ok(item) => item,
            Err(BackendError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let credentials = decode_credentials(&item.value, &key)?;
        Ok(credentials
            .locked_until_ms
            .map(|until| UNIX_EPOCH + Duration::from_millis(until))
            .filter(|until| *until > now))
    }

    /// Checks the password (and code), counting failures towards the lockout; says what
    /// comes next.
    pub(crate) async fn check_login(
        &self,
        name: &str,
        password: &str,
        presented: Presented<'_>,
        now: SystemTime,
    ) -> Result<PasswordVerdict, LoginError> {
        if password.len() > MAX_PASSWORD_LEN || !valid_name(name) {
            return Err(LoginError::InvalidCredentials);
        }
        let (user_key, credentials_key) = (user_key(name)?, credentials_key(name)?);
        // A few rounds, for concurrent logins of the same user updating the counters.
        for _ in 0..8 {
            let user = match self.backend.get(&user_key).await {
                Ok(item) => serde_json::from_slice::<User>(&item.value)
                    .map_err(|err| corrupt(user_key.as_str(), err))?,
                Err(BackendError::NotFound { .. }) => {
                    if let Some(dummy) = dummy_hash() {
                        let _ = Argon2::default().verify_password(password.as_bytes(), dummy);
                    }
                    return Err(LoginError::InvalidCredentials);
                }
                Err(err) => return Err(AuthError::from(err).into()),
            };
            let item = self
                .backend
                .get(&credentials_key)
                .await
                .map_err(AuthError::from)?;
            let mut credentials = decode_credentials(&item.value, &credentials_key)?;
            let now_ms = millis(now);
            if let Some(until) = credentials.locked_until_ms {
                if now_ms < until {
                    return Err(LoginError::Locked {
                        until: timestamp(UNIX_EPOCH + Duration::from_millis(until)).to_string(),
                    });
                }
                // The lock ran out: start counting afresh.
                credentials.locked_until_ms = None;
                credentials.failed_logins = 0;
            }
            let verdict = self.verify(&credentials, name, password, presented, now);
            let mut updated = credentials.clone();
            match &verdict {
                Ok(next) => {
                    updated.failed_logins = 0;
                    if let Next::Done(Some(step)) = next {
                        updated.last_totp_step = Some(*step);
                    }
                }
                Err(LoginError::InvalidCredentials) => {
                    updated.failed_logins = updated.failed_logins.saturating_add(1);
                    if updated.failed_logins >= MAX_FAILED_LOGINS {
                        updated.locked_until_ms = Some(now_ms.saturating_add(
                            u64::try_from(LOCKOUT.as_millis()).unwrap_or(u64::MAX),
                        ));
                    }
                }
                // A missing code is not a guess: it does not count against the user.
                Err(_) => {}
            }
            let value = serde_json::to_vec(&updated).map_err(|err| corrupt("credentials", err))?;
            match self
                .backend
                .conditional_update(item.revision, NewItem::new(credentials_key.clone(), value))
                .await
            {
                Ok(_) => {}
                Err(BackendError::CompareFailed { .. }) => continue,
                Err(err) => return Err(AuthError::from(err).into()),
            }
            if let (Err(LoginError::InvalidCredentials), Some(until)) =
                (&verdict, updated.locked_until_ms)
            {
                let until = timestamp(UNIX_EPOCH + Duration::from_millis(until));
                self.record(
                    AuditEvent::failure(
                        EventType::UserLogin,
                        "user locked after repeated failures",
                    )
                    .at(timestamp(now))
                    .user(name)
                    .field("locked_until", until.to_string()),
                )
                .await?;
            }
            return verdict.map(|next| match next {
                Next::Done(_) => PasswordVerdict::LoggedIn(user),
                Next::Key => PasswordVerdict::KeyNext(user, credentials.webauthn_devices),
                Next::NoKey => PasswordVerdict::NoKey,
            });
        }
        Err(AuthError::InvalidRequest(
            "too many concurrent logins for this user; try again".to_string(),
        )
        .into())
    }

    /// The password and second-factor check itself.
    fn verify(
        &self,
        credentials: &Credentials,
        name: &str,
        password: &str,
        presented: Presented<'_>,
        now: SystemTime,
    ) -> Result<Next, LoginError> {
        let Some(hash) = &credentials.password_hash else {
            // No password set yet: nothing can match.
            if let Some(dummy) = dummy_hash() {
                let _ = Argon2::default().verify_password(password.as_bytes(), dummy);
            }
            return Err(LoginError::InvalidCredentials);
        };
        if Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_err()
        {
            return Err(LoginError::InvalidCredentials);
        }
        let required = crate::webauthn::required_factor(
            self.second_factor,
            credentials.totp_secret.is_some(),
            !credentials.webauthn_devices.is_empty(),
        );
        let otp = match presented {
            Presented::KeyPending if required.accepts_webauthn() => return Ok(Next::Key),
            Presented::KeyPending => return Ok(Next::NoKey),
            Presented::Otp(otp) => otp.filter(|code| !code.is_empty()),
        };
        if required == crate::webauthn::RequiredFactor::Nothing {
            return Ok(Next::Done(None));
        }
        if !required.accepts_otp() {
            return Err(if credentials.webauthn_devices.is_empty() {
                LoginError::NoSecurityKey
            } else {
                LoginError::WebauthnRequired
            });
        }
        let Some(secret) = &credentials.totp_secret else {
            return Err(LoginError::InvalidCredentials);
        };
        let Some(code) = otp else {
            return Err(LoginError::SecondFactorRequired);
        };
        let secret = totp_rs::Secret::try_from_base32(secret).map_err(|err| {
            LoginError::Internal(corrupt("credentials", format!("TOTP secret: {err:?}")))
        })?;
        let totp = self.totp(name, secret)?;
        let seconds = millis(now) / 1000;
        let step = totp
            .check(code, seconds)
            .ok_or(LoginError::InvalidCredentials)?;
        if credentials.last_totp_step.is_some_and(|last| step <= last) {
            // Already used: a replay, or an older code after a newer one.
            return Err(LoginError::InvalidCredentials);
        }
        Ok(Next::Done(Some(step)))
    }

    fn totp(&self, name: &str, secret: totp_rs::Secret) -> Result<totp_rs::Totp, AuthError> {
        totp_rs::Builder::new()
            .with_secret(secret)
            .with_account_name(name)
            .with_issuer(Some(format!("Jumpgate {}", self.cluster)))
            .build()
            .map_err(|err| AuthError::InvalidRequest(format!("TOTP: {err}")))
    }

    pub(crate) async fn record(&self, event: AuditEvent) -> Result<(), AuthError> {
        self.audit.append(event).await.map_err(AuthError::Audit)
    }
}

/// After a right password: logged in (with the TOTP step used), or a key next, or no key.
#[derive(Debug)]
enum Next {
    Done(Option<u64>),
    Key,
    NoKey,
}

pub(crate) fn decode_credentials(value: &[u8], key: &Key) -> Result<Credentials, AuthError> {
    serde_json::from_slice(value).map_err(|err| corrupt(key.as_str(), err))
}

/// Checks a new password against the policy (length), before anything is spent on it.
pub fn check_password_policy(password: &str) -> Result<(), AuthError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AuthError::InvalidRequest(format!(
            "the password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AuthError::InvalidRequest(format!(
            "the password must be at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

fn hash_password(password: &str) -> Result<String, AuthError> {
    check_password_policy(password)?;
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| AuthError::InvalidRequest(format!("hashing the password: {err}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_totp_code_of_a_secret_checks_at_its_time_only() {
        let secret = totp_rs::Secret::generate();
        let totp = totp_rs::Builder::new()
            .with_secret(secret)
            .with_account_name("alice")
            .build()
            .unwrap();
        let code = totp.generate(1_800_000_000).to_string();
        assert!(totp.check(&code, 1_800_000_000).is_some());
        assert!(totp.check(&code, 1_800_000_000 + 3600).is_none());
    }
}
