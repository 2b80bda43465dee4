//! The web UI's WebAuthn API under `/webapi/web/mfa/` (security keys and passkeys; the
//! rules are the auth service's, `crates/auth/src/webauthn.rs`):
//!
//! - `POST /webapi/web/mfa/login/begin` `{user, password}`: the password checked, the
//!   options for `navigator.credentials.get` with the user's keys (`options: null` when
//!   the user has no key the policy accepts: log in with the password and code);
//! - `POST /webapi/web/mfa/passwordless/begin` `{}`: options for a passkey alone;
//! - `POST /webapi/web/mfa/login/finish` `{ceremony_id, credential}`: the key's answer;
//!   a web session and its cookie, as `POST /webapi/web/login` answers;
//! - `GET /webapi/web/mfa/devices`: the session user's keys; `DELETE
//!   /webapi/web/mfa/devices/NAME` removes one;
//! - `POST /webapi/web/mfa/devices/register/begin` `{password, name, passwordless}` and
//!   `.../register/finish` `{ceremony_id, credential}`: register a key (the password is
//!   asked again: a session alone does not add a key).
//!
//! The logins need no session and, like `POST /webapi/web/login`, take JSON only from our
//! own origin. The device calls run as the session's own user identity, and every change
//! carries the session's CSRF token from our own origin (as the admin pages' do). The
//! ceremony's state stays in auth; the page holds only its ID.

use crate::web::{ApiError, ClientAddr, WebState};
use crate::websession::{authority, check_csrf, logged_in, refuse_other_origins, session_of};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use jumpgate_api::{AuthClient, JsonObject, proto};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/webapi/web/mfa/login/begin", post(login_begin))
        .route(
            "/webapi/web/mfa/passwordless/begin",
            post(passwordless_begin),
        )
        .route("/webapi/web/mfa/login/finish", post(login_finish))
        .route("/webapi/web/mfa/devices", get(list_devices))
        .route("/webapi/web/mfa/devices/{name}", delete(delete_device))
        .route(
            "/webapi/web/mfa/devices/register/begin",
            post(register_begin),
        )
        .route(
            "/webapi/web/mfa/devices/register/finish",
            post(register_finish),
        )
}

/// A ceremony begun, for the page: `options` is what `navigator.credentials.create` or
/// `get` takes (binary fields in base64url), `null` when there is nothing to do.
#[derive(Debug, Serialize)]
struct Challenge {
    ceremony_id: String,
    options: Option<serde_json::Value>,
    expires_unix: i64,
}

impl Challenge {
    fn of(challenge: proto::WebauthnChallenge) -> Result<Challenge, ApiError> {
        let options = if challenge.options_json.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str(&challenge.options_json)
                    .map_err(|err| ApiError::internal(format!("WebAuthn options: {err}")))?,
            )
        };
        Ok(Challenge {
            ceremony_id: challenge.ceremony_id,
            options,
            expires_unix: challenge.expires_unix,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBegin {
    user: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// The browser's answer: the `PublicKeyCredential` as JSON (binary fields in base64url).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Finish {
    ceremony_id: String,
    credential: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBegin {
    password: String,
    name: String,
    #[serde(default)]
    passwordless: bool,
}

async fn login_begin(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Json<JsonObject<LoginBegin>>, JsonRejection>,
) -> Result<Json<Challenge>, ApiError> {
    refuse_other_origins(&headers, authority(&uri))?;
    let Json(JsonObject(request)) = body?;
    let challenge = state
        .auth()
        .begin_webauthn_login(proto::BeginWebauthnLoginRequest {
            user: request.user,
            password: request.password,
            client_addr: client.to_string(),
        })
        .await?
        .into_inner();
    Ok(Json(Challenge::of(challenge)?))
}

async fn passwordless_begin(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Json<JsonObject<Empty>>, JsonRejection>,
) -> Result<Json<Challenge>, ApiError> {
    refuse_other_origins(&headers, authority(&uri))?;
    let _ = body?;
    let challenge = state
        .auth()
        .begin_passwordless_login(proto::BeginPasswordlessLoginRequest {
            client_addr: client.to_string(),
        })
        .await?
        .into_inner();
    Ok(Json(Challenge::of(challenge)?))
}

async fn login_finish(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Json<JsonObject<Finish>>, JsonRejection>,
) -> Result<Response, ApiError> {
    refuse_other_origins(&headers, authority(&uri))?;
    let Json(JsonObject(request)) = body?;
    let session = state
        .auth()
        .finish_webauthn_login(proto::FinishWebauthnLoginRequest {
            ceremony_id: request.ceremony_id,
            credential_json: request.credential.to_string(),
            client_addr: client.to_string(),
        })
        .await?
        .into_inner();
    Ok(logged_in(&state, session).await)
}

/// The auth API as the session's user; for a change, our own origin and the session's
/// CSRF token first.
async fn as_user(
    state: &WebState,
    headers: &HeaderMap,
    uri: &Uri,
    change: bool,
) -> Result<AuthClient, ApiError> {
    if change {
        refuse_other_origins(headers, authority(uri))?;
    }
    let cached = session_of(state, headers).await?;
    if change {
        check_csrf(headers, authority(uri), &cached.session)?;
    }
    state.sessions.user_client(state, &cached).await
}

#[derive(Debug, Serialize)]
struct Devices {
    devices: Vec<Device>,
    second_factor: String,
    webauthn_enabled: bool,
    passwordless_enabled: bool,
    has_otp: bool,
}

#[derive(Debug, Serialize)]
struct Device {
    name: String,
    id: String,
    passwordless: bool,
    added_unix: i64,
    last_used_unix: Option<i64>,
}

impl Device {
    fn of(device: proto::WebauthnDeviceInfo) -> Device {
        Device {
            name: device.name,
            id: device.id,
            passwordless: device.passwordless,
            added_unix: device.added_unix,
            last_used_unix: Some(device.last_used_unix).filter(|at| *at > 0),
        }
    }
}

async fn list_devices(
    State(state): State<Arc<WebState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Devices>, ApiError> {
    let mut auth = as_user(&state, &headers, &uri, false).await?;
    let list = auth
        .list_webauthn_devices(proto::ListWebauthnDevicesRequest {})
        .await?
        .into_inner();
    Ok(Json(Devices {
        devices: list.devices.into_iter().map(Device::of).collect(),
        second_factor: list.second_factor,
        webauthn_enabled: list.webauthn_enabled,
        passwordless_enabled: list.passwordless_enabled,
        has_otp: list.has_otp,
    }))
}

async fn delete_device(
    State(state): State<Arc<WebState>>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut auth = as_user(&state, &headers, &uri, true).await?;
    auth.delete_webauthn_device(proto::DeleteWebauthnDeviceRequest { name })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn register_begin(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Json<JsonObject<RegisterBegin>>, JsonRejection>,
) -> Result<Json<Challenge>, ApiError> {
    let mut auth = as_user(&state, &headers, &uri, true).await?;
    let Json(JsonObject(request)) = body?;
    let challenge = auth
        .begin_webauthn_registration(proto::BeginWebauthnRegistrationRequest {
            password: request.password,
            name: request.name,
            passwordless: request.passwordless,
            client_addr: client.to_string(),
        })
        .await?
        .into_inner();
    Ok(Json(Challenge::of(challenge)?))
}

async fn register_finish(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Json<JsonObject<Finish>>, JsonRejection>,
) -> Result<Json<Device>, ApiError> {
    let mut auth = as_user(&state, &headers, &uri, true).await?;
    let Json(JsonObject(request)) = body?;
    let device = auth
        .finish_webauthn_registration(proto::FinishWebauthnRegistrationRequest {
            ceremony_id: request.ceremony_id,
            credential_json: request.credential.to_string(),
            client_addr: client.to_string(),
        })
        .await?
        .into_inner();
    Ok(Json(Device::of(device)))
}
