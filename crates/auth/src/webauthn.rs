//! WebAuthn: security keys and passkeys, as a second factor after the password and alone
//! (passwordless), with `webauthn-rs` doing every check of the ceremonies (challenge,
//! origin, RP ID hash, signature, user verification, signature counter).
//!
//! **Policy.** [`required_factor`] is the one rule for what a login must present besides
//! the password, from `second_factor` and what the user has registered.
//!
//! **Keys.** Every key is registered as a webauthn-rs `Passkey`: user verification (PIN
//! or biometrics on the key) is required at registration and at every use, so a stolen
//! key alone does not log in. A key registered for passwordless use is also asked to be
//! discoverable (a resident credential: the key names the account). Keys live in the
//! user's credentials record (`/credentials/NAME`, [`crate::users`]) beside the password
//! hash, so they go with a reset or a deleted user, and every change is one
//! compare-and-swap of that record (a counter update cannot lose a concurrent removal).
//! `/webauthn/handles/HANDLE` maps a user's WebAuthn user handle (a random UUID, the
//! only account identifier a discoverable key returns) to the user name.
//!
//! **Ceremony state.** Auth runs highly available behind a load balancer: the begin and
//! the finish of one ceremony may land on different auth servers. So the state between
//! them (webauthn-rs's `PasskeyRegistration`, `PasskeyAuthentication`,
//! `DiscoverableAuthentication`: the challenge and what the answer must match) is stored
//! in the backend under `/webauthn/challenges/SHA256(ID)` with a TTL of
//! [`CEREMONY_TTL`], and taken exactly once (a conditional delete at its revision) before
//! the answer is checked: a replayed answer, or a second finish of the same ceremony,
//! finds nothing. The ID is a 256-bit random secret only the client holds; the state
//! itself never leaves auth. Serialising the state needs webauthn-rs's feature
//! `danger-allow-state-serialisation`, whose warning is about keeping the state on the
//! server and single-use, which is exactly what this does.

use crate::AuthError;
use crate::users::{Users, corrupt, credentials_key, decode_credentials};
use jumpgate_backend::{Action, BackendError, Condition, Key, NewItem};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use webauthn_rs::prelude::{
    AuthenticationResult, DiscoverableAuthentication, Passkey, PasskeyAuthentication,
    PasskeyRegistration, Url, Webauthn, WebauthnBuilder,
};

pub use jumpgate_types::config::SecondFactor as Policy;

/// How long a ceremony may take, from its begin to its finish (finding the key, touching
/// it, entering its PIN); the browser is told the same.
pub const CEREMONY_TTL: Duration = Duration::from_secs(120);
/// Backend prefix of ceremony states.
pub(crate) const CHALLENGES_PREFIX: &str = "/webauthn/challenges/";
/// Backend prefix of the user handle → user name map.
pub(crate) const HANDLES_PREFIX: &str = "/webauthn/handles/";
/// Keys a user may register at most.
pub const MAX_DEVICES: usize = 16;
/// Longest device name.
pub const MAX_DEVICE_NAME: usize = 64;
/// The ceremony ID's length in bytes (hex on the wire).
const CEREMONY_ID_BYTES: usize = 32;

/// What a login must present besides the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequiredFactor {
    /// Nothing: the password alone.
    Nothing,
    /// A TOTP code.
    Otp,
    /// A security key.
    Webauthn,
    /// A TOTP code or a security key.
    OtpOrWebauthn,
}

impl RequiredFactor {
    pub fn accepts_otp(self) -> bool {
        matches!(self, Self::Otp | Self::OtpOrWebauthn)
    }

    pub fn accepts_webauthn(self) -> bool {
        matches!(self, Self::Webauthn | Self::OtpOrWebauthn)
    }
}

/// The policy's rule for a user with (or without) a TOTP secret and registered keys:
/// - `off`: nothing; `otp`: a code (a user without a TOTP secret cannot log in);
/// - `webauthn`: a key (a user without one cannot log in: register one first);
/// - `on`: a code or a key, whichever the user has (either when both);
/// - `optional`: as `on` when the user has a factor, else nothing.
pub fn required_factor(policy: Policy, has_otp: bool, has_key: bool) -> RequiredFactor {
    match policy {
        Policy::Off => RequiredFactor::Nothing,
        Policy::Otp => RequiredFactor::Otp,
        Policy::Webauthn => RequiredFactor::Webauthn,
        Policy::On | Policy::Optional => match (has_otp, has_key) {
            (true, true) => RequiredFactor::OtpOrWebauthn,
            (false, true) => RequiredFactor::Webauthn,
            (true, false) => RequiredFactor::Otp,
            (false, false) if policy == Policy::Optional => RequiredFactor::Nothing,
            // `on` with neither: the code is asked for, and nothing can match it.
            (false, false) => RequiredFactor::Otp,
        },
    }
}

/// Whether removing one of a user's keys is allowed: not when the policy requires a
/// second factor and it is the last one the user could log in with.
pub fn may_remove_key(policy: Policy, has_otp: bool, keys: usize) -> bool {
    let remaining_keys = keys.saturating_sub(1);
    match policy {
        Policy::Off | Policy::Otp | Policy::Optional => true,
        Policy::Webauthn => remaining_keys > 0,
        Policy::On => remaining_keys > 0 || has_otp,
    }
}

/// A registered key, as stored in the user's credentials.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// The name the user gave it (unique per user).
    pub name: String,
    /// The credential ID, base64url (what the key says in each assertion).
    pub id: String,
    /// webauthn-rs's credential: public key, algorithm, signature counter, flags.
    pub passkey: Passkey,
    /// Registered as a discoverable credential, for passwordless login.
    pub passwordless: bool,
    pub added_unix_ms: u64,
    #[serde(default)]
    pub last_used_unix_ms: Option<u64>,
    /// The highest signature counter the key has shown (0: it keeps none). Checked here
    /// against the stored record, under its compare-and-swap: webauthn-rs checks against
    /// the copy the ceremony began with, which a concurrent login may have moved past.
    #[serde(default)]
    pub sign_count: u32,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("passwordless", &self.passwordless)
            .finish_non_exhaustive()
    }
}

/// A ceremony between its begin and its finish (stored in the backend, never sent).
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Ceremony {
    /// Registering a key for `user`: who re-entered the password to begin, or, with
    /// `signup` set, whoever holds the signup token whose SHA-256 (hex) it is. A signup's
    /// ceremony is finished only by the `CompleteSignup` that spends that token.
    Register {
        user: String,
        name: String,
        passwordless: bool,
        handle: uuid::Uuid,
        state: PasskeyRegistration,
        #[serde(default)]
        signup: Option<String>,
    },
    /// The second factor of `user`, whose password was right.
    Login {
        user: String,
        state: PasskeyAuthentication,
    },
    /// A passkey alone: the key will say whose.
    Passwordless { state: DiscoverableAuthentication },
}

/// A random ceremony ID (hex) and its backend key.
pub(crate) fn new_ceremony_id() -> Result<(String, jumpgate_backend::Key), AuthError> {
    let mut bytes = [0u8; CEREMONY_ID_BYTES];
    rand::fill(&mut bytes[..]);
    let id = hex::encode(bytes);
    let key = ceremony_key(&id).ok_or_else(|| {
        AuthError::InvalidRequest("internal: a fresh ceremony ID did not parse".to_string())
    })?;
    Ok((id, key))
}

/// The backend key of ceremony `id`; `None` for what auth could not have made.
pub(crate) fn ceremony_key(id: &str) -> Option<jumpgate_backend::Key> {
    if id.len() != CEREMONY_ID_BYTES * 2 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let digest = hex::encode(Sha256::digest(id.to_ascii_lowercase().as_bytes()));
    jumpgate_backend::Key::new(format!("{CHALLENGES_PREFIX}{digest}")).ok()
}

/// The origins pages that use keys are served from: `https://` and each proxy's public
/// address (the port left out when it is 443, as browsers write origins), kept to those
/// under `rp_id`, since a browser refuses to use an RP ID outside its page's domain.
pub fn origins(rp_id: &str, public_addrs: &[String]) -> Vec<Url> {
    let mut origins: Vec<Url> = Vec::new();
    for addr in public_addrs {
        let text = match addr.strip_suffix(":443") {
            Some(host) => format!("https://{host}"),
            None => format!("https://{addr}"),
        };
        let Ok(url) = Url::parse(&text) else { continue };
        let under = url
            .domain()
            .map(|domain| domain.to_ascii_lowercase())
            .is_some_and(|domain| domain == rp_id || domain.ends_with(&format!(".{rp_id}")));
        if under && !origins.contains(&url) {
            origins.push(url);
        }
    }
    origins
}

/// webauthn-rs configured for `rp_id` and exactly these `origins` (no other port, no
/// subdomain: a page elsewhere under the RP ID, which browsers would let use the keys,
/// is not one of ours).
pub fn relying_party(rp_id: &str, origins: &[Url]) -> Result<Webauthn, WebauthnSetupError> {
    let Some((first, rest)) = origins.split_first() else {
        return Err(WebauthnSetupError::NoOrigin {
            rp_id: rp_id.to_string(),
        });
    };
    let mut builder = WebauthnBuilder::new(rp_id, first)
        .map_err(|_| WebauthnSetupError::NoOrigin {
            rp_id: rp_id.to_string(),
        })?
        .rp_name("Jumpgate")
        .timeout(CEREMONY_TTL)
        .allow_subdomains(false)
        .allow_any_port(false);
    for origin in rest {
        builder = builder.append_allowed_origin(origin);
    }
    builder.build().map_err(|err| WebauthnSetupError::Library {
        detail: err.to_string(),
    })
}

/// Why WebAuthn cannot be offered (an operator's fix).
#[derive(Debug, thiserror::Error)]
pub enum WebauthnSetupError {
    #[error(
        "no proxy of the cluster advertises a public_addr under the WebAuthn RP ID {rp_id:?}: \
         set proxy_service.public_addr to the name users type (or \
         auth_service.authentication.webauthn.rp_id to its domain)"
    )]
    NoOrigin { rp_id: String },
    #[error("the WebAuthn library refused the configuration: {detail}")]
    Library { detail: String },
}

/// Why a key could not be removed, or a use recorded.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("no security key named {0:?}; `jsh mfa ls` or the Security keys page lists them")]
    NotFound(String),
    #[error(
        "refused: {0:?} is your last second factor and second_factor: {1} requires one; \
         register another key first"
    )]
    LastFactor(String, Policy),
    /// The key is not (or no longer) registered to this user.
    #[error("the security key is not registered to this user")]
    NotRegistered,
    /// The key's signature counter went back: a cloned key, or a replayed answer.
    #[error(
        "the security key's signature counter went back ({seen} after {stored}): it may have \
         been cloned"
    )]
    CounterRegression { seen: u32, stored: u32 },
    #[error(transparent)]
    Internal(#[from] AuthError),
}

impl From<BackendError> for DeviceError {
    fn from(err: BackendError) -> Self {
        DeviceError::Internal(err.into())
    }
}

/// What a user has registered, read from their credentials.
#[derive(Debug, Default)]
pub(crate) struct UserKeys {
    pub(crate) handle: Option<uuid::Uuid>,
    pub(crate) devices: Vec<Device>,
    pub(crate) has_otp: bool,
}

pub(crate) fn handle_key(handle: uuid::Uuid) -> Result<Key, AuthError> {
    Ok(Key::new(format!("{HANDLES_PREFIX}{handle}"))?)
}

impl Users<'_> {
    /// The user's WebAuthn handle, keys and whether they have a TOTP secret; empty for a
    /// user without credentials.
    pub(crate) async fn webauthn_keys(&self, name: &str) -> Result<UserKeys, AuthError> {
        let key = credentials_key(name)?;
        let item = match self.backend.get(&key).await {
            Ok(item) => item,
            Err(BackendError::NotFound { .. }) => return Ok(UserKeys::default()),
            Err(err) => return Err(err.into()),
        };
        let credentials = decode_credentials(&item.value, &key)?;
        Ok(UserKeys {
            handle: credentials.webauthn_handle,
            devices: credentials.webauthn_devices,
            has_otp: credentials.totp_secret.is_some(),
        })
    }

    /// The user whose WebAuthn handle this is, if any.
    pub(crate) async fn user_of_handle(
        &self,
        handle: uuid::Uuid,
    ) -> Result<Option<String>, AuthError> {
        match self.backend.get(&handle_key(handle)?).await {
            Ok(item) => Ok(String::from_utf8(item.value.to_vec()).ok()),
            Err(BackendError::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Adds a key to user `name`, whose handle the registration used.
    pub(crate) async fn add_webauthn_device(
        &self,
        name: &str,
        handle: uuid::Uuid,
        device: Device,
    ) -> Result<(), AuthError> {
        let key = credentials_key(name)?;
        for _ in 0..8 {
            let item = self.backend.get(&key).await?;
            let mut credentials = decode_credentials(&item.value, &key)?;
            let new_handle = match credentials.webauthn_handle {
                Some(existing) if existing != handle => {
                    return Err(AuthError::InvalidRequest(
                        "your security keys changed during the registration; register again"
                            .to_string(),
                    ));
                }
                Some(_) => false,
                None => true,
            };
            if credentials
                .webauthn_devices
                .iter()
                .any(|d| d.name == device.name)
            {
                return Err(AuthError::InvalidRequest(format!(
                    "you already have a security key named {:?}; choose another name",
                    device.name
                )));
            }
            if credentials
                .webauthn_devices
                .iter()
                .any(|d| d.id == device.id)
            {
                return Err(AuthError::InvalidRequest(
                    "this security key is already registered".to_string(),
                ));
            }
            if credentials.webauthn_devices.len() >= MAX_DEVICES {
                return Err(AuthError::InvalidRequest(format!(
                    "at most {MAX_DEVICES} security keys a user; remove one first"
                )));
            }
            credentials.webauthn_handle = Some(handle);
            credentials.webauthn_devices.push(device.clone());
            let value =
                serde_json::to_vec(&credentials).map_err(|err| corrupt("credentials", err))?;
            let mut actions = vec![Action::Put(NewItem::new(key.clone(), value))];
            if new_handle {
                actions.push(Action::Put(NewItem::new(
                    handle_key(handle)?,
                    name.as_bytes().to_vec(),
                )));
            }
            match self
                .backend
                .atomic_write(
                    vec![Condition::Revision(key.clone(), item.revision)],
                    actions,
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(BackendError::ConditionFailed { .. }) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(AuthError::InvalidRequest(
            "the user's credentials kept changing; try again".to_string(),
        ))
    }

    /// Removes the key named `which` (or with that credential ID) from user `name`,
    /// unless it is the last second factor the policy needs.
    pub(crate) async fn remove_webauthn_device(
        &self,
        name: &str,
        which: &str,
    ) -> Result<Device, DeviceError> {
        let key = credentials_key(name)?;
        for _ in 0..8 {
            let item = match self.backend.get(&key).await {
                Ok(item) => item,
                Err(BackendError::NotFound { .. }) => {
                    return Err(DeviceError::NotFound(which.to_string()));
                }
                Err(err) => return Err(err.into()),
            };
            let mut credentials = decode_credentials(&item.value, &key)?;
            let Some(index) = credentials
                .webauthn_devices
                .iter()
                .position(|d| d.name == which || d.id == which)
            else {
                return Err(DeviceError::NotFound(which.to_string()));
            };
            if !may_remove_key(
                self.second_factor,
                credentials.totp_secret.is_some(),
                credentials.webauthn_devices.len(),
            ) {
                return Err(DeviceError::LastFactor(
                    which.to_string(),
                    self.second_factor,
                ));
            }
            let removed = credentials.webauthn_devices.remove(index);
            let value =
                serde_json::to_vec(&credentials).map_err(|err| corrupt("credentials", err))?;
            match self
                .backend
                .conditional_update(item.revision, NewItem::new(key.clone(), value))
                .await
            {
                Ok(_) => return Ok(removed),
                Err(BackendError::CompareFailed { .. }) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(AuthError::InvalidRequest(
            "the user's credentials kept changing; try again".to_string(),
        )
        .into())
    }

    /// After webauthn-rs accepted an assertion: the key must still be the user's, and its
    /// counter must have moved on from the stored one; stores the new counter and the
    /// time of use. Returns the key's name.
    pub(crate) async fn record_webauthn_use(
        &self,
        name: &str,
        result: &AuthenticationResult,
        now_ms: u64,
    ) -> Result<String, DeviceError> {
        let key = credentials_key(name)?;
        let id = base64url(result.cred_id().as_ref());
        for _ in 0..8 {
            let item = match self.backend.get(&key).await {
                Ok(item) => item,
                Err(BackendError::NotFound { .. }) => return Err(DeviceError::NotRegistered),
                Err(err) => return Err(err.into()),
            };
            let mut credentials = decode_credentials(&item.value, &key)?;
            let Some(device) = credentials
                .webauthn_devices
                .iter_mut()
                .find(|device| device.id == id)
            else {
                return Err(DeviceError::NotRegistered);
            };
            check_counter(device.sign_count, result.counter())?;
            device.sign_count = device.sign_count.max(result.counter());
            device.passkey.update_credential(result);
            device.last_used_unix_ms = Some(now_ms);
            let device_name = device.name.clone();
            let value =
                serde_json::to_vec(&credentials).map_err(|err| corrupt("credentials", err))?;
            match self
                .backend
                .conditional_update(item.revision, NewItem::new(key.clone(), value))
                .await
            {
                Ok(_) => return Ok(device_name),
                Err(BackendError::CompareFailed { .. }) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(AuthError::InvalidRequest(
            "the user's credentials kept changing; try again".to_string(),
        )
        .into())
    }
}

/// The WebAuthn rule for signature counters: when either the stored or the presented
/// counter is non-zero, the presented one must be greater.
pub fn check_counter(stored: u32, seen: u32) -> Result<(), DeviceError> {
    if (stored > 0 || seen > 0) && seen <= stored {
        return Err(DeviceError::CounterRegression { seen, stored });
    }
    Ok(())
}

/// Base64url without padding (how credential IDs are named on the wire).
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = chunk.len() + 1;
        for i in 0..sextets {
            let index = ((n >> (18 - 6 * i)) & 0x3f) as usize;
            if let Some(c) = ALPHABET.get(index) {
                out.push(char::from(*c));
            }
        }
    }
    out
}

/// Checks a key's name: 1 to [`MAX_DEVICE_NAME`] printable characters.
pub fn check_device_name(name: &str) -> Result<(), AuthError> {
    let name_ok = !name.trim().is_empty()
        && name.chars().count() <= MAX_DEVICE_NAME
        && !name.chars().any(char::is_control);
    if name_ok {
        Ok(())
    } else {
        Err(AuthError::InvalidRequest(format!(
            "a security key's name is 1 to {MAX_DEVICE_NAME} printable characters, such as \
             \"yubikey-blue\""
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_policy_asks_for_the_factor_the_user_can_present() {
        use RequiredFactor as R;
        let cases = [
            (Policy::Off, true, true, R::Nothing),
            (Policy::Otp, false, true, R::Otp),
            (Policy::Otp, true, false, R::Otp),
            (Policy::Webauthn, true, false, R::Webauthn),
            (Policy::Webauthn, false, false, R::Webauthn),
            (Policy::On, true, true, R::OtpOrWebauthn),
            (Policy::On, true, false, R::Otp),
            (Policy::On, false, true, R::Webauthn),
            (Policy::On, false, false, R::Otp),
            (Policy::Optional, false, false, R::Nothing),
            (Policy::Optional, false, true, R::Webauthn),
            (Policy::Optional, true, false, R::Otp),
            (Policy::Optional, true, true, R::OtpOrWebauthn),
        ];
        for (policy, otp, key, expected) in cases {
            assert_eq!(
                required_factor(policy, otp, key),
                expected,
                "{policy} otp={otp} key={key}"
            );
        }
        // `webauthn` never takes a code, `otp` never a key.
        assert!(!required_factor(Policy::Webauthn, true, true).accepts_otp());
        assert!(!required_factor(Policy::Otp, true, true).accepts_webauthn());
    }

    #[test]
    fn the_last_second_factor_stays_when_the_policy_requires_one() {
        assert!(!may_remove_key(Policy::Webauthn, true, 1));
        assert!(may_remove_key(Policy::Webauthn, false, 2));
        assert!(!may_remove_key(Policy::On, false, 1));
        assert!(may_remove_key(Policy::On, true, 1));
        assert!(may_remove_key(Policy::On, false, 2));
        assert!(may_remove_key(Policy::Optional, false, 1));
        assert!(may_remove_key(Policy::Off, false, 1));
    }

    #[test]
    fn origins_are_the_proxies_public_addresses_under_the_rp_id() {
        let found = origins(
            "example.com",
            &[
                "jumpgate.example.com:443".to_string(),
                "jumpgate.example.com:3080".to_string(),
                "example.com:443".to_string(),
                "example.com.evil.net:443".to_string(),
                "notexample.com:443".to_string(),
                "10.0.0.1:443".to_string(),
                "jumpgate.example.com:443".to_string(),
            ],
        );
        let found: Vec<String> = found
            .iter()
            .map(|url| url.origin().ascii_serialization())
            .collect();
        assert_eq!(
            found,
            [
                "https://jumpgate.example.com",
                "https://jumpgate.example.com:3080",
                "https://example.com"
            ]
        );
        assert!(matches!(
            relying_party("example.com", &[]),
            Err(WebauthnSetupError::NoOrigin { .. })
        ));
        let origins = origins("example.com", &["jumpgate.example.com:443".to_string()]);
        assert!(relying_party("example.com", &origins).is_ok());
    }

    #[test]
    fn ceremony_ids_are_secrets_auth_made() {
        let (id, key) = new_ceremony_id().unwrap();
        assert!(!key.to_string().contains(&id));
        assert_eq!(ceremony_key(&id.to_uppercase()), Some(key));
        for bad in ["", "abc", "../../credentials/alice", &"g".repeat(64)] {
            assert!(ceremony_key(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_counter_that_does_not_move_on_is_refused() {
        assert!(check_counter(0, 0).is_ok(), "keys without counters");
        assert!(check_counter(0, 1).is_ok());
        assert!(check_counter(5, 6).is_ok());
        assert!(matches!(
            check_counter(5, 5),
            Err(DeviceError::CounterRegression { seen: 5, stored: 5 })
        ));
        assert!(check_counter(5, 0).is_err(), "a counter reset");
        assert!(check_counter(5, 3).is_err());
    }

    #[test]
    fn credential_ids_are_base64url_without_padding() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff, 0xfe]), "-__-");
    }

    #[test]
    fn device_names_are_short_printable_text() {
        assert!(check_device_name("yubikey-blue").is_ok());
        assert!(check_device_name("Clé de Zoë").is_ok());
        for bad in ["", "   ", "a\nb", &"x".repeat(MAX_DEVICE_NAME + 1)] {
            assert!(check_device_name(bad).is_err(), "{bad:?}");
        }
    }
}
