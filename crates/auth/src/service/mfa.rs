//! The WebAuthn RPCs (the `// --- WebAuthn ---` block of `auth.proto`): a user's own
//! keys (list, remove, register) and the logins with a key (the password then a key, or
//! a passkey alone). The rules and the stored state are [`crate::webauthn`]'s.
//!
//! - Registering needs the user's identity *and* the password again: a stolen web
//!   session (or a terminal left logged in) cannot add an attacker's key, and the
//!   password check counts towards the lockout like a login's. (An existing factor
//!   instead of the password would do too; the password works for every user, keys or
//!   not.) The ceremony is bound to the user who began it: another identity cannot
//!   finish it. At signup the signup token stands in for both (it names the user and is
//!   a secret only the invitee holds): `CompleteSignup` takes the key's answer and stores
//!   the key only in the step that spends the token.
//! - The login RPCs are for proxies only, which pass the client's address for the rate
//!   limit and the audit. A key login's begin checks the password under the login limit;
//!   a passwordless begin and a registration's begin come under the looser join limit; a
//!   finish needs the ceremony's secret ID and is not limited. A passwordless begin takes no user name, so it tells nothing
//!   about which users exist; every refused finish gets the same answer, and the reason
//!   goes to the audit log.
//! - The origins accepted are `https://` + each proxy's advertised `public_addr` under the
//!   RP ID (from the watch-fed cache of proxy heartbeats), never what a request says.

use super::caller::Caller;
use super::{AuthServer, ServiceError, unix};
use crate::users::{PasswordVerdict, Presented, millis};
use crate::webauthn::{
    CEREMONY_TTL, Ceremony, Device, DeviceError, base64url, ceremony_key, check_device_name,
    new_ceremony_id, origins, relying_party,
};
use jumpgate_api::proto;
use jumpgate_audit::{AuditEvent, EventType};
use jumpgate_backend::{BackendError, NewItem};
use jumpgate_pki::IdentityKind;
use jumpgate_types::ProxyPresence;
use std::time::SystemTime;
use webauthn_rs::prelude::{
    DiscoverableKey, PublicKeyCredential, RegisterPublicKeyCredential, Webauthn,
};

/// What a refused key login is told, whatever the reason (the audit log has it).
pub(crate) const KEY_REFUSED: &str = "the security key was not accepted: use a key registered to this \
                           account, on this site, and try again";

/// The WebAuthn part of the auth service's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebauthnSettings {
    /// `authentication.webauthn.rp_id`.
    pub rp_id: String,
    /// `authentication.passwordless`.
    pub passwordless: bool,
}

fn backend_error(err: BackendError) -> ServiceError {
    ServiceError::from(crate::AuthError::from(err))
}

/// How a key login went, for the audit event.
struct KeyLogin {
    method: &'static str,
    user: Option<String>,
    device: Option<String>,
}

impl AuthServer {
    fn webauthn_settings(&self) -> Result<&WebauthnSettings, ServiceError> {
        self.inner.webauthn.as_ref().ok_or_else(|| {
            ServiceError::invalid(format!(
                "security keys are off in this cluster (auth_service.authentication.\
                 second_factor is {}; webauthn, on or optional turn them on)",
                self.inner.second_factor
            ))
        })
    }

    /// webauthn-rs for this cluster now: the RP ID and the proxies' public origins.
    fn relying_party_now(&self) -> Result<Webauthn, ServiceError> {
        let settings = self.webauthn_settings()?;
        let public_addrs: Vec<String> = self
            .inner
            .cache
            .list("/presence/proxy/")
            .iter()
            .filter_map(|(_, value)| {
                let text = std::str::from_utf8(value).ok()?;
                ProxyPresence::from_json("auth:proxy", text).ok()
            })
            .flat_map(|proxy| proxy.public_addr)
            .collect();
        let origins = origins(&settings.rp_id, &public_addrs);
        relying_party(&settings.rp_id, &origins).map_err(|err| {
            tracing::warn!(%err, "WebAuthn cannot be offered");
            ServiceError::Unavailable(err.to_string())
        })
    }

    /// Stores a ceremony's state; its ID and expiry.
    async fn put_ceremony(&self, ceremony: &Ceremony) -> Result<(String, i64), ServiceError> {
        let (id, key) = new_ceremony_id().map_err(ServiceError::from)?;
        let expires = SystemTime::now() + CEREMONY_TTL;
        let value = serde_json::to_vec(ceremony)
            .map_err(|err| ServiceError::internal_in("ceremony", err))?;
        self.inner
            .backend
            .create(NewItem::new(key, value).expiring(expires))
            .await
            .map_err(backend_error)?;
        Ok((id, unix(expires)))
    }

    /// Takes ceremony `id` out of the backend: whoever deletes it first has it, so an
    /// answer is checked at most once.
    async fn take_ceremony(&self, id: &str) -> Result<Ceremony, ServiceError> {
        let gone = || {
            ServiceError::Unauthenticated(
                "this security key request expired or was already used; start again".to_string(),
            )
        };
        let key = ceremony_key(id).ok_or_else(gone)?;
        let item = match self.inner.backend.get(&key).await {
            Ok(item) => item,
            Err(BackendError::NotFound { .. }) => return Err(gone()),
            Err(err) => return Err(backend_error(err)),
        };
        match self
            .inner
            .backend
            .conditional_delete(&key, item.revision)
            .await
        {
            Ok(()) => {}
            Err(BackendError::NotFound { .. } | BackendError::CompareFailed { .. }) => {
                return Err(gone());
            }
            Err(err) => return Err(backend_error(err)),
        }
        serde_json::from_slice(&item.value)
            .map_err(|err| ServiceError::internal_in("ceremony record", err))
    }

    /// The calling user's name (a user identity only: a user's own keys).
    async fn calling_user(&self, caller: &Caller, method: &str) -> Result<String, ServiceError> {
        self.require_kind(caller, method, &[IdentityKind::User])
            .await?;
        self.check_caller_not_locked(caller)?;
        match &caller.identity {
            Some(identity) if identity.kind == IdentityKind::User => Ok(identity.name.clone()),
            _ => Err(ServiceError::PermissionDenied(format!(
                "{method} acts on the caller's own security keys: call it as a user"
            ))),
        }
    }

    pub(super) async fn audit_device(
        &self,
        event: EventType,
        user: &str,
        device: &str,
        outcome: Result<(), String>,
        remote: Option<&str>,
    ) -> Result<(), ServiceError> {
        let mut audit = match outcome {
            Ok(()) => AuditEvent::success(event),
            Err(reason) => AuditEvent::failure(event, reason),
        }
        .user(user)
        .field("mfa_device_name", device)
        .field("mfa_device_type", "WebAuthn");
        if let Some(addr) = remote {
            audit = audit.remote_addr(addr);
        }
        self.audit(audit).await
    }

    pub(crate) async fn list_webauthn_devices_for(
        &self,
        caller: &Caller,
    ) -> Result<proto::ListWebauthnDevicesResponse, ServiceError> {
        let name = self.calling_user(caller, "ListWebauthnDevices").await?;
        let authorities = self.authorities();
        let keys = self
            .users(&authorities)
            .webauthn_keys(&name)
            .await
            .map_err(ServiceError::from)?;
        Ok(proto::ListWebauthnDevicesResponse {
            devices: keys.devices.iter().map(device_info).collect(),
            second_factor: self.inner.second_factor.to_string(),
            webauthn_enabled: self.inner.webauthn.is_some(),
            passwordless_enabled: self.inner.webauthn.as_ref().is_some_and(|w| w.passwordless),
            has_otp: keys.has_otp,
        })
    }

    pub(crate) async fn delete_webauthn_device_for(
        &self,
        caller: &Caller,
        request: proto::DeleteWebauthnDeviceRequest,
    ) -> Result<(), ServiceError> {
        let name = self.calling_user(caller, "DeleteWebauthnDevice").await?;
        let authorities = self.authorities();
        let outcome = self
            .users(&authorities)
            .remove_webauthn_device(&name, &request.name)
            .await;
        let remote = caller.addr.map(|addr| addr.to_string());
        let (device, audited) = match &outcome {
            Ok(device) => (device.name.clone(), Ok(())),
            Err(err) => (request.name.clone(), Err(err.to_string())),
        };
        self.audit_device(
            EventType::MfaDeviceDelete,
            &name,
            &device,
            audited,
            remote.as_deref(),
        )
        .await?;
        outcome.map(|_| ()).map_err(ServiceError::from)
    }

    pub(crate) async fn begin_webauthn_registration_for(
        &self,
        caller: &Caller,
        request: proto::BeginWebauthnRegistrationRequest,
    ) -> Result<proto::WebauthnChallenge, ServiceError> {
        let name = self
            .calling_user(caller, "BeginWebauthnRegistration")
            .await?;
        let ip = Self::client_ip(caller, &request.client_addr);
        // The user is authenticated already and a wrong password counts towards the user's
        // lockout; the address limit is the looser one of joins (the address is the
        // proxy's, shared by every web session it serves).
        self.rate_limit(
            &self.inner.join_limit,
            caller,
            ip,
            "BeginWebauthnRegistration",
        )
        .await?;
        let remote = Self::client_addr_text(caller, &request.client_addr);
        let outcome = self.begin_registration(&name, &request).await;
        if let Err(err) = &outcome {
            self.audit_device(
                EventType::MfaDeviceAdd,
                &name,
                &request.name,
                Err(err.to_string()),
                remote.as_deref(),
            )
            .await?;
        }
        outcome
    }

    async fn begin_registration(
        &self,
        name: &str,
        request: &proto::BeginWebauthnRegistrationRequest,
    ) -> Result<proto::WebauthnChallenge, ServiceError> {
        self.check_new_key(&request.name, request.passwordless)?;
        let authorities = self.authorities();
        let users = self.users(&authorities);
        // The password again (counted towards the lockout if wrong). A wrong one is a
        // refusal of this request, not the end of the caller's session: 403, not 401.
        users
            .check_login(
                name,
                &request.password,
                Presented::KeyPending,
                SystemTime::now(),
            )
            .await
            .map_err(|err| match ServiceError::from(err) {
                ServiceError::Unauthenticated(message) => ServiceError::PermissionDenied(message),
                other => other,
            })?;
        self.start_registration(name, &request.name, request.passwordless, None)
            .await
    }

    /// The checks of a new key's request that need no user: keys on, passkeys on if one
    /// is asked for, a usable name.
    fn check_new_key(&self, device_name: &str, passwordless: bool) -> Result<(), ServiceError> {
        let settings = self.webauthn_settings()?;
        if passwordless && !settings.passwordless {
            return Err(ServiceError::invalid(
                "passwordless login is off in this cluster (authentication.passwordless: \
                 false): register the key as a second factor",
            ));
        }
        check_device_name(device_name).map_err(ServiceError::from)
    }

    /// A registration ceremony for `name`'s new key `device_name`: the options for
    /// `navigator.credentials.create`, the state kept in the cluster state.
    async fn start_registration(
        &self,
        name: &str,
        device_name: &str,
        passwordless: bool,
        signup: Option<String>,
    ) -> Result<proto::WebauthnChallenge, ServiceError> {
        let relying_party = self.relying_party_now()?;
        let authorities = self.authorities();
        let keys = self
            .users(&authorities)
            .webauthn_keys(name)
            .await
            .map_err(ServiceError::from)?;
        if keys.devices.iter().any(|device| device.name == device_name) {
            return Err(ServiceError::AlreadyExists(format!(
                "you already have a security key named {device_name:?}; choose another name"
            )));
        }
        let handle = keys.handle.unwrap_or_else(uuid::Uuid::new_v4);
        let exclude = keys
            .devices
            .iter()
            .map(|device| device.passkey.cred_id().clone())
            .collect();
        let (options, state) = relying_party
            .start_passkey_registration(handle, name, name, Some(exclude))
            .map_err(|err| ServiceError::internal_in("starting a WebAuthn registration", err))?;
        let mut options = serde_json::to_value(&options)
            .map_err(|err| ServiceError::internal_in("WebAuthn options", err))?;
        if passwordless
            && let Some(selection) = options
                .pointer_mut("/publicKey/authenticatorSelection")
                .and_then(serde_json::Value::as_object_mut)
        {
            // A discoverable credential: the key itself names the account at login.
            // (webauthn-rs's passkey registration discourages one; the state does not
            // depend on it.)
            selection.insert("residentKey".into(), "required".into());
            selection.insert("requireResidentKey".into(), true.into());
        }
        let options_json = options.to_string();
        let (ceremony_id, expires_unix) = self
            .put_ceremony(&Ceremony::Register {
                user: name.to_string(),
                name: device_name.to_string(),
                passwordless,
                handle,
                state,
                signup,
            })
            .await?;
        Ok(proto::WebauthnChallenge {
            ceremony_id,
            options_json,
            expires_unix,
        })
    }

    /// The invite page's key (`second_factor` webauthn, on or optional): a registration
    /// for the user the signup token names, which the token alone authorises (it is read,
    /// not spent). `CompleteSignup` checks the key's answer and stores the key with the
    /// password, in the step that spends the token.
    pub(crate) async fn begin_signup_key_registration_for(
        &self,
        caller: &Caller,
        request: proto::BeginSignupKeyRegistrationRequest,
    ) -> Result<proto::WebauthnChallenge, ServiceError> {
        let pending = self
            .peek_signup_limited(
                caller,
                &request.client_addr,
                &request.token,
                "BeginSignupKeyRegistration",
            )
            .await?;
        let authorities = self.authorities();
        let policy = self.users(&authorities).second_factor;
        if !policy.allows_webauthn() {
            return Err(ServiceError::invalid(format!(
                "this cluster does not use security keys (authentication.second_factor: \
                 {policy}); sign up with the form's other fields"
            )));
        }
        self.check_new_key(&request.name, request.passwordless)?;
        self.start_registration(
            &pending.user,
            &request.name,
            request.passwordless,
            Some(signup_token_digest(&request.token)),
        )
        .await
    }

    pub(crate) async fn finish_webauthn_registration_for(
        &self,
        caller: &Caller,
        request: proto::FinishWebauthnRegistrationRequest,
    ) -> Result<proto::WebauthnDeviceInfo, ServiceError> {
        let name = self
            .calling_user(caller, "FinishWebauthnRegistration")
            .await?;
        let remote = Self::client_addr_text(caller, &request.client_addr);
        let mut device_name = String::new();
        let outcome = self
            .finish_registration(&name, &request, &mut device_name)
            .await;
        let audited = outcome.as_ref().map(|_| ()).map_err(ToString::to_string);
        self.audit_device(
            EventType::MfaDeviceAdd,
            &name,
            &device_name,
            audited,
            remote.as_deref(),
        )
        .await?;
        outcome
    }

    async fn finish_registration(
        &self,
        name: &str,
        request: &proto::FinishWebauthnRegistrationRequest,
        device_name: &mut String,
    ) -> Result<proto::WebauthnDeviceInfo, ServiceError> {
        let (handle, device) = self
            .registered_key(
                name,
                &request.ceremony_id,
                &request.credential_json,
                None,
                device_name,
            )
            .await?;
        let info = device_info(&device);
        let authorities = self.authorities();
        self.users(&authorities)
            .add_webauthn_device(name, handle, device)
            .await
            .map_err(ServiceError::from)?;
        Ok(info)
    }

    /// The key that `name`'s registration ceremony made, its answer checked (the ceremony
    /// is used up): the user's key handle and the device, not stored yet. `signup` is the
    /// signup token of a signup's registration (None for a signed-in user's): a ceremony
    /// is finished only the way it was begun. `device_name` gets the key's name as soon
    /// as the ceremony says it, for the audit event.
    pub(crate) async fn registered_key(
        &self,
        name: &str,
        ceremony_id: &str,
        credential_json: &str,
        signup: Option<&str>,
        device_name: &mut String,
    ) -> Result<(uuid::Uuid, Device), ServiceError> {
        let ceremony = self.take_ceremony(ceremony_id).await?;
        let Ceremony::Register {
            user,
            name: requested_name,
            passwordless,
            handle,
            state,
            signup: begun_by_signup,
        } = ceremony
        else {
            return Err(ServiceError::invalid(
                "this is not a registration: start the registration again",
            ));
        };
        *device_name = requested_name.clone();
        if user != name {
            return Err(ServiceError::PermissionDenied(
                "this registration was begun by another user".to_string(),
            ));
        }
        // A key begun with a signup token (no password) is stored only by the signup that
        // spends that token, and a signed-in user's (password re-entered) only by theirs.
        if begun_by_signup.as_deref() != signup.map(signup_token_digest).as_deref() {
            return Err(ServiceError::PermissionDenied(
                "this registration was begun for another signup, or outside one: start the \
                 registration again"
                    .to_string(),
            ));
        }
        let credential: RegisterPublicKeyCredential = serde_json::from_str(credential_json)
            .map_err(|err| {
                ServiceError::invalid(format!(
                    "credential_json is not a WebAuthn registration answer: {err}"
                ))
            })?;
        let passkey = self
            .relying_party_now()?
            .finish_passkey_registration(&credential, &state)
            .map_err(|err| {
                ServiceError::invalid(format!("the security key's answer was refused: {err}"))
            })?;
        let now = SystemTime::now();
        let device = Device {
            name: requested_name,
            id: base64url(passkey.cred_id().as_ref()),
            passkey,
            passwordless,
            added_unix_ms: millis(now),
            last_used_unix_ms: None,
            sign_count: 0,
        };
        Ok((handle, device))
    }

    pub(crate) async fn begin_webauthn_login_for(
        &self,
        caller: &Caller,
        request: proto::BeginWebauthnLoginRequest,
    ) -> Result<proto::WebauthnChallenge, ServiceError> {
        self.require_kind(caller, "BeginWebauthnLogin", &[IdentityKind::Proxy])
            .await?;
        self.require_local_auth()?;
        let ip = Self::client_ip(caller, &request.client_addr);
        self.rate_limit(&self.inner.login_limit, caller, ip, "BeginWebauthnLogin")
            .await?;
        let remote = Self::client_addr_text(caller, &request.client_addr);
        let relying_party = self.relying_party_now()?;
        let authorities = self.authorities();
        let verdict = self
            .users(&authorities)
            .check_login(
                &request.user,
                &request.password,
                Presented::KeyPending,
                SystemTime::now(),
            )
            .await;
        let (user, devices) = match verdict {
            Ok(PasswordVerdict::KeyNext(user, devices)) => (user, devices),
            Ok(PasswordVerdict::NoKey | PasswordVerdict::LoggedIn(_)) => {
                return Ok(proto::WebauthnChallenge::default());
            }
            Err(err) => {
                let mut event = AuditEvent::failure(EventType::UserLogin, err.to_string())
                    .user(request.user.as_str())
                    .field("method", "webauthn");
                if let Some(addr) = &remote {
                    event = event.remote_addr(addr.as_str());
                }
                self.audit(event).await?;
                jumpgate_telemetry::count(|m| &m.user_logins, &["failure"]);
                return Err(err.into());
            }
        };
        let passkeys: Vec<_> = devices.into_iter().map(|device| device.passkey).collect();
        let (options, state) = relying_party
            .start_passkey_authentication(&passkeys)
            .map_err(|err| ServiceError::internal_in("starting a WebAuthn login", err))?;
        let options_json = serde_json::to_string(&options)
            .map_err(|err| ServiceError::internal_in("WebAuthn options", err))?;
        let (ceremony_id, expires_unix) = self
            .put_ceremony(&Ceremony::Login {
                user: user.name,
                state,
            })
            .await?;
        Ok(proto::WebauthnChallenge {
            ceremony_id,
            options_json,
            expires_unix,
        })
    }

    pub(crate) async fn begin_passwordless_login_for(
        &self,
        caller: &Caller,
        request: proto::BeginPasswordlessLoginRequest,
    ) -> Result<proto::WebauthnChallenge, ServiceError> {
        self.require_kind(caller, "BeginPasswordlessLogin", &[IdentityKind::Proxy])
            .await?;
        self.require_local_auth()?;
        let ip = Self::client_ip(caller, &request.client_addr);
        // It checks no secret; the limit keeps a flood from filling the backend.
        self.rate_limit(&self.inner.join_limit, caller, ip, "BeginPasswordlessLogin")
            .await?;
        if !self.webauthn_settings()?.passwordless {
            return Err(ServiceError::invalid(
                "passwordless login is off in this cluster (authentication.passwordless: false)",
            ));
        }
        let (mut options, state) = self
            .relying_party_now()?
            .start_discoverable_authentication()
            .map_err(|err| ServiceError::internal_in("starting a passwordless login", err))?;
        // A button starts it, not the browser's autofill (conditional mediation).
        options.mediation = None;
        let options_json = serde_json::to_string(&options)
            .map_err(|err| ServiceError::internal_in("WebAuthn options", err))?;
        let (ceremony_id, expires_unix) =
            self.put_ceremony(&Ceremony::Passwordless { state }).await?;
        Ok(proto::WebauthnChallenge {
            ceremony_id,
            options_json,
            expires_unix,
        })
    }

    pub(crate) async fn finish_webauthn_login_for(
        &self,
        caller: &Caller,
        request: proto::FinishWebauthnLoginRequest,
    ) -> Result<proto::WebSession, ServiceError> {
        self.require_kind(caller, "FinishWebauthnLogin", &[IdentityKind::Proxy])
            .await?;
        self.require_local_auth()?;
        // Not rate limited: a finish needs a begun ceremony's 256-bit ID, and each begin
        // was limited.
        let remote = Self::client_addr_text(caller, &request.client_addr);
        let mut login = KeyLogin {
            method: "webauthn",
            user: None,
            device: None,
        };
        let outcome = self.finish_login(&request, &mut login).await;
        jumpgate_telemetry::count(
            |m| &m.user_logins,
            &[if outcome.is_ok() {
                "success"
            } else {
                "failure"
            }],
        );
        let mut event = match &outcome {
            Ok(_) => AuditEvent::success(EventType::UserLogin),
            Err(err) => AuditEvent::failure(EventType::UserLogin, err.to_string()),
        }
        .field("method", login.method)
        .field("mfa_device_type", "WebAuthn");
        if let Some(user) = &login.user {
            event = event.user(user.as_str());
        }
        if let Some(device) = &login.device {
            event = event.field("mfa_device_name", device.as_str());
        }
        if let Some(addr) = &remote {
            event = event.remote_addr(addr.as_str());
        }
        self.audit(event).await?;
        let user = outcome.map_err(|err| match err {
            // What went wrong is in the audit log; the client learns only that it did.
            KeyLoginError::Refused(_) => ServiceError::Unauthenticated(KEY_REFUSED.to_string()),
            KeyLoginError::Service(err) => err,
        })?;
        self.open_web_session(&user, caller, remote.as_deref())
            .await
    }

    async fn finish_login(
        &self,
        request: &proto::FinishWebauthnLoginRequest,
        login: &mut KeyLogin,
    ) -> Result<crate::users::User, KeyLoginError> {
        let ceremony = self.take_ceremony(&request.ceremony_id).await?;
        let credential: PublicKeyCredential = serde_json::from_str(&request.credential_json)
            .map_err(|err| {
                KeyLoginError::Refused(format!("credential_json is not a WebAuthn answer: {err}"))
            })?;
        let relying_party = self.relying_party_now()?;
        let authorities = self.authorities();
        let users = self.users(&authorities);
        let now = SystemTime::now();
        let (name, result) = match ceremony {
            Ceremony::Login { user, state } => {
                login.user = Some(user.clone());
                let result = relying_party
                    .finish_passkey_authentication(&credential, &state)
                    .map_err(|err| KeyLoginError::Refused(format!("WebAuthn: {err}")))?;
                (user, result)
            }
            Ceremony::Passwordless { state } => {
                login.method = "passwordless";
                let (handle, _) = relying_party
                    .identify_discoverable_authentication(&credential)
                    .map_err(|err| KeyLoginError::Refused(format!("WebAuthn: {err}")))?;
                let name = users
                    .user_of_handle(handle)
                    .await
                    .map_err(ServiceError::from)?
                    .ok_or_else(|| {
                        KeyLoginError::Refused("the key names no user of this cluster".into())
                    })?;
                login.user = Some(name.clone());
                let keys = users
                    .webauthn_keys(&name)
                    .await
                    .map_err(ServiceError::from)?;
                if keys.handle != Some(handle) {
                    return Err(KeyLoginError::Refused(
                        "the key's user handle is not this user's (deleted and made again?)".into(),
                    ));
                }
                let discoverable: Vec<_> = keys
                    .devices
                    .iter()
                    .filter(|device| device.passwordless)
                    .map(|device| DiscoverableKey::from(&device.passkey))
                    .collect();
                let result = relying_party
                    .finish_discoverable_authentication(&credential, state, &discoverable)
                    .map_err(|err| KeyLoginError::Refused(format!("WebAuthn: {err}")))?;
                (name, result)
            }
            Ceremony::Register { .. } => {
                return Err(KeyLoginError::Refused(
                    "a registration's ID was sent to finish a login".into(),
                ));
            }
        };
        let device = users
            .record_webauthn_use(&name, &result, millis(now))
            .await
            .map_err(|err| match err {
                DeviceError::Internal(err) => KeyLoginError::Service(err.into()),
                other => KeyLoginError::Refused(other.to_string()),
            })?;
        login.device = Some(device);
        if let Some(until) = users
            .locked_until(&name, now)
            .await
            .map_err(ServiceError::from)?
        {
            let until = crate::users::timestamp(until);
            return Err(KeyLoginError::Service(ServiceError::Unauthenticated(
                format!(
                    "this user is locked after {} failed logins until {until}; an admin can \
                     unlock it with `jctl users unlock`",
                    crate::users::MAX_FAILED_LOGINS
                ),
            )));
        }
        let user = self
            .cached_user(&name)
            .ok_or_else(|| KeyLoginError::Refused(format!("user {name:?} no longer exists")))?;
        Ok(user)
    }
}

/// A key login refused (the reason is for the audit log only), or a service error.
#[derive(Debug, thiserror::Error)]
enum KeyLoginError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

fn device_info(device: &Device) -> proto::WebauthnDeviceInfo {
    let seconds = |ms: u64| i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    proto::WebauthnDeviceInfo {
        name: device.name.clone(),
        id: device.id.clone(),
        passwordless: device.passwordless,
        added_unix: seconds(device.added_unix_ms),
        last_used_unix: device.last_used_unix_ms.map(seconds).unwrap_or(0),
    }
}

/// How a signup's registration ceremony names its signup token: SHA-256, hex (the
/// ceremony is stored in the cluster state; the token itself never is).
fn signup_token_digest(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.trim().to_ascii_lowercase().as_bytes()))
}
