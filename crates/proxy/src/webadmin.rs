//! The web UI's admin API under `/webapi/web/` (issue 17) and the invite link's signup:
//!
//! - users: list, add (→ an invite link), reset (→ a new invite link), lock and unlock
//!   (a `kind: lock` on the user; unlocking also lifts a lockout after failed logins),
//!   delete;
//! - roles: list, one as YAML, create or replace from YAML (a refusal says the line and
//!   column of the field or syntax error), delete;
//! - join tokens: list, create for node or proxy (with the config to paste on the new
//!   server: the proxy's public address and the cluster's CA pins), revoke;
//! - `POST /webapi/web/invite` and `/webapi/web/invite/complete`: the signup page reads
//!   what an invite is for (the user, the TOTP secret bound to it) and completes it with
//!   a password and a code from the user's app.
//!
//! Every admin call runs as the session's own user identity, so auth's RBAC decides it
//! (the pages only hide what the session's `can` says the roles do not allow). Every
//! state-changing request carries the session's CSRF token and comes from our own origin.
//! Invite tokens travel in JSON bodies only, never in a URL the server sees: the invite
//! link carries the token in its fragment (`/web/invite#TOKEN`), which browsers never
//! send, so it reaches no access log and no `Referer`.

use crate::web::{ApiError, ClientAddr, WebState};
use crate::websession::{Cached, authority, check_csrf, refuse_other_origins, session_of};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use jumpgate_api::{JsonObject, proto};
use jumpgate_client::admin::{
    AdminClient, NewJoinToken, NewLock, NewUser, ResourceDocument, SignupToken, invite_link,
};
use jumpgate_types::{LockTarget, ResourceError, Role, locate_field};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The TTL of a join token made here when none is asked for (as `jctl tokens add`).
const DEFAULT_TOKEN_TTL: u64 = 30 * 60;
/// What the role editor sends at most (the auth service's own limit is larger).
const MAX_ROLE_YAML: usize = 32 * 1024;

pub(crate) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/webapi/web/users", get(list_users).post(add_user))
        .route("/webapi/web/users/{name}", delete(delete_user))
        .route("/webapi/web/users/{name}/reset", post(reset_user))
        .route("/webapi/web/users/{name}/lock", post(lock_user))
        .route("/webapi/web/users/{name}/unlock", post(unlock_user))
        .route("/webapi/web/roles", get(list_roles).post(save_role))
        .route(
            "/webapi/web/roles/{name}",
            get(get_role).delete(delete_role),
        )
        .route("/webapi/web/tokens", get(list_tokens).post(add_token))
        .route("/webapi/web/tokens/{id}", delete(delete_token))
        .route("/webapi/web/invite", post(invite))
        .route("/webapi/web/invite/key", post(invite_key))
        .route("/webapi/web/invite/complete", post(complete_invite))
}

/// The auth API as the session's user, for reads.
async fn reader(state: &WebState, headers: &HeaderMap) -> Result<AdminClient, ApiError> {
    let cached = session_of(state, headers).await?;
    as_user(state, &cached).await
}

/// The auth API as the session's user, for a state-changing request: our own origin and
/// the session's CSRF token first.
async fn writer(state: &WebState, headers: &HeaderMap, uri: &Uri) -> Result<AdminClient, ApiError> {
    refuse_other_origins(headers, authority(uri))?;
    let cached = session_of(state, headers).await?;
    check_csrf(headers, authority(uri), &cached.session)?;
    as_user(state, &cached).await
}

async fn as_user(state: &WebState, cached: &Cached) -> Result<AdminClient, ApiError> {
    Ok(AdminClient::new(
        state.sessions.user_client(state, cached).await?,
    ))
}

fn unix(time: Option<SystemTime>) -> Option<i64> {
    time.and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .and_then(|since| i64::try_from(since.as_secs()).ok())
}

/// Where users reach this proxy: its first public address, else the host the request
/// was sent to.
fn public_addr(state: &WebState, headers: &HeaderMap, uri: &Uri) -> String {
    state
        .public_addrs
        .first()
        .cloned()
        .or_else(|| authority(uri).map(str::to_string))
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "PROXY_ADDRESS".to_string())
}

#[derive(Debug, Serialize)]
struct Invite {
    user: String,
    invite_url: String,
    expires_unix: Option<i64>,
}

impl Invite {
    fn of(user: String, signup: &SignupToken, public_addr: &str) -> Invite {
        Invite {
            user,
            invite_url: invite_link(public_addr, &signup.token),
            expires_unix: unix(signup.expires),
        }
    }
}

// ---- users ----

#[derive(Debug, Serialize)]
struct UserView {
    name: String,
    roles: Vec<String>,
    logins: Vec<String>,
    /// Set while failed logins keep the user out.
    locked_out_until_unix: Option<i64>,
    /// The locks naming the user.
    locks: Vec<LockView>,
}

#[derive(Debug, Serialize)]
struct LockView {
    name: String,
    message: String,
    /// RFC 3339; empty: until removed.
    expires: String,
}

#[derive(Debug, Serialize)]
struct UsersPage {
    users: Vec<UserView>,
    /// False when the user's roles do not let them list locks (then `locks` are empty).
    locks_listed: bool,
}

/// The locks on users, by user name (locks on roles, logins and nodes are not listed here).
async fn user_locks(admin: &mut AdminClient) -> Result<Vec<(String, LockView)>, ApiError> {
    let locks = admin.resources("lock", None).await?;
    Ok(locks
        .into_iter()
        .filter(|lock| !lock.text_at("/spec/target/user").is_empty())
        .map(|lock| {
            (
                lock.text_at("/spec/target/user").to_string(),
                LockView {
                    name: lock.text_at("/metadata/name").to_string(),
                    message: lock.text_at("/spec/message").to_string(),
                    expires: lock.text_at("/spec/expires").to_string(),
                },
            )
        })
        .collect())
}

async fn list_users(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
) -> Result<Json<UsersPage>, ApiError> {
    let mut admin = reader(&state, &headers).await?;
    let users = admin.users().await?;
    let (mut locks, locks_listed) = match user_locks(&mut admin).await {
        Ok(locks) => (locks, true),
        Err(_) => (Vec::new(), false),
    };
    let mut views: Vec<UserView> = users
        .into_iter()
        .map(|user| {
            let (mine, others): (Vec<_>, Vec<_>) =
                locks.drain(..).partition(|(name, _)| *name == user.name);
            locks = others;
            UserView {
                locked_out_until_unix: unix(user.locked_until),
                name: user.name,
                roles: user.roles,
                logins: user.logins,
                locks: mine.into_iter().map(|(_, lock)| lock).collect(),
            }
        })
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(UsersPage {
        users: views,
        locks_listed,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    name: String,
    roles: Vec<String>,
    #[serde(default)]
    logins: Vec<String>,
}

async fn add_user(
    State(state): State<Arc<WebState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Json<JsonObject<NewUserBody>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let mut admin = writer(&state, &headers, &uri).await?;
    let Json(JsonObject(body)) = body?;
    let name = body.name.trim().to_string();
    let enrollment = admin
        .create_user(NewUser {
            name: name.clone(),
            roles: body.roles,
            logins: body.logins,
            password: None,
        })
        .await?;
    let signup = enrollment
        .signup
        .ok_or_else(|| ApiError::internal("the auth service made no invite for the new user"))?;
    let invite = Invite::of(name, &signup, &public_addr(&state, &headers, &uri));
    Ok((StatusCode::CREATED, Json(invite)).into_response())
}

async fn reset_user(
    State(state): State<Arc<WebState>>,
    uri: Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Invite>, ApiError> {
    let mut admin = writer(&state, &headers, &uri).await?;
    let signup = admin.reset_user(&name).await?;
    Ok(Json(Invite::of(
        name,
        &signup,
        &public_addr(&state, &headers, &uri),
    )))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockBody {
    /// Shown to the user when refused.
    #[serde(default)]
    message: String,
    /// None or 0: until unlocked.
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

async fn lock_user(
    State(state): State<Arc<WebState>>,
    uri: Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<JsonObject<LockBody>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let mut admin = writer(&state, &headers, &uri).await?;
    let Json(JsonObject(body)) = body?;
    let expires = match body.ttl_seconds.filter(|ttl| *ttl > 0) {
        Some(ttl) => Some(
            NewLock::expires_after(SystemTime::now(), Duration::from_secs(ttl))
                .ok_or_else(|| ApiError::bad_request("ttl_seconds is too large"))?,
        ),
        None => None,
    };
    let lock = admin
        .create_lock(NewLock {
            target: LockTarget {
                user: Some(name),
                role: None,
                login: None,
                node: None,
            },
            message: body.message,
            expires,
        })
        .await?;
    let view = LockView {
        name: lock.name().to_string(),
        message: lock.spec.message.clone(),
        expires: String::new(),
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn unlock_user(
    State(state): State<Arc<WebState>>,
    uri: Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut admin = writer(&state, &headers, &uri).await?;
    // The locks first: lifting only the lockout of a locked user would look done.
    for (user, lock) in user_locks(&mut admin).await? {
        if user == name {
            admin.delete_resource("lock", &lock.name).await?;
        }
    }
    admin.unlock_user(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_user(
    State(state): State<Arc<WebState>>,
    uri: Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut admin = writer(&state, &headers, &uri).await?;
    admin.delete_user(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- roles ----

#[derive(Debug, Serialize)]
struct RolesPage {
    roles: Vec<RoleSummary>,
}

#[derive(Debug, Serialize)]
struct RoleSummary {
    name: String,
    description: String,
}

async fn list_roles(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
) -> Result<Json<RolesPage>, ApiError> {
    let mut admin = reader(&state, &headers).await?;
    let mut roles: Vec<RoleSummary> = admin
        .resources("role", None)
        .await?
        .into_iter()
        .map(|role| RoleSummary {
            name: role.text_at("/metadata/name").to_string(),
            description: role.text_at("/metadata/description").to_string(),
        })
        .collect();
    roles.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(RolesPage { roles }))
}

#[derive(Debug, Serialize)]
struct RoleYaml {
    name: String,
    yaml: String,
}

async fn get_role(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<RoleYaml>, ApiError> {
    let mut admin = reader(&state, &headers).await?;
    let found = admin.resources("role", Some(&name)).await?;
    let document = found
        .first()
        .ok_or_else(|| ApiError::not_found(format!("no role {name:?}")))?;
    let json = serde_json::to_string(document.value())
        .map_err(|err| ApiError::internal(format!("role {name:?}: {err}")))?;
    let role = Role::from_json(&format!("auth:role/{name}"), &json)
        .map_err(|err| ApiError::internal(err.to_string()))?;
    let yaml = role
        .to_yaml()
        .map_err(|err| ApiError::internal(err.to_string()))?;
    Ok(Json(RoleYaml { name, yaml }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveRoleBody {
    yaml: String,
    /// Replace a role of the same name (editing); false: create only.
    #[serde(default)]
    overwrite: bool,
}

#[derive(Debug, Serialize)]
struct SavedRole {
    name: String,
    created: bool,
    /// Fields accepted but not enforced.
    warnings: Vec<String>,
}

/// Where in the YAML a parse or validation error is, when it can be told.
fn error_location(yaml: &str, err: &ResourceError) -> Option<(usize, usize)> {
    match err {
        ResourceError::Syntax { location, .. } => location.as_ref().map(|at| (at.line, at.column)),
        ResourceError::Field { path, .. } => {
            locate_field(yaml, path).map(|at| (at.line, at.column))
        }
        _ => None,
    }
}

async fn save_role(
    State(state): State<Arc<WebState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Json<JsonObject<SaveRoleBody>>, JsonRejection>,
) -> Result<Json<SavedRole>, ApiError> {
    let mut admin = writer(&state, &headers, &uri).await?;
    let Json(JsonObject(body)) = body?;
    if body.yaml.len() > MAX_ROLE_YAML {
        return Err(ApiError::bad_request(format!(
            "the role is {} bytes; at most {MAX_ROLE_YAML} are accepted",
            body.yaml.len()
        )));
    }
    // Checked here with the parser auth stores it with, for the error's position, and
    // so that this editor writes roles only (auth checks it again, and decides whether
    // the user may write roles at all).
    const SOURCE: &str = "role.yaml";
    if let Err(err) = Role::from_yaml(SOURCE, &body.yaml) {
        let message = err.to_string();
        return Err(match error_location(&body.yaml, &err) {
            Some((line, column)) => ApiError::invalid_at(message, line, column),
            None => ApiError::bad_request(message),
        });
    }
    let saved = admin
        .upsert_document(
            ResourceDocument {
                source_name: SOURCE.to_string(),
                text: body.yaml,
            },
            body.overwrite,
        )
        .await?;
    Ok(Json(SavedRole {
        name: saved.name,
        created: saved.created,
        warnings: saved.warnings,
    }))
}

async fn delete_role(
    State(state): State<Arc<WebState>>,
    uri: Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut admin = writer(&state, &headers, &uri).await?;
    admin.delete_resource("role", &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- join tokens ----

#[derive(Debug, Serialize)]
struct TokenView {
    id: String,
    roles: Vec<String>,
    /// None: never (a static token from the config).
    expires_unix: Option<i64>,
    kind: String,
    single_use: bool,
}

#[derive(Debug, Serialize)]
struct TokensPage {
    tokens: Vec<TokenView>,
}

async fn list_tokens(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
) -> Result<Json<TokensPage>, ApiError> {
    let mut admin = reader(&state, &headers).await?;
    let tokens = admin
        .join_tokens()
        .await?
        .into_iter()
        .map(|token| TokenView {
            expires_unix: unix(token.expires),
            id: token.id,
            roles: token.roles,
            kind: token.kind,
            single_use: token.single_use,
        })
        .collect();
    Ok(Json(TokensPage { tokens }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTokenBody {
    /// `node` or `proxy`.
    role: String,
    #[serde(default)]
    ttl_seconds: Option<u64>,
    #[serde(default)]
    reusable: bool,
}

#[derive(Debug, Serialize)]
struct NewToken {
    token: String,
    id: String,
    role: String,
    expires_unix: Option<i64>,
    ca_pins: Vec<String>,
    /// The config file to write on the new server (`/etc/jumpgate.yaml`).
    config: String,
    /// The command that starts it there.
    command: String,
}

/// The `ca_pin` line's value: one pin as a string, several (during a CA rotation) as a list.
fn pin_value(pins: &[String]) -> String {
    match pins {
        [one] => format!("\"{one}\""),
        many => format!(
            "[{}]",
            many.iter()
                .map(|pin| format!("\"{pin}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The config a new server of `role` joins with: `jumpgate start -c` of it is all it needs.
pub fn join_config(
    role: &str,
    token: &str,
    pins: &[String],
    proxy_addr: &str,
    auth_addr: &str,
) -> String {
    let pin = pin_value(pins);
    match role {
        "proxy" => format!(
            "version: v3\njumpgate:\n  data_dir: /var/lib/jumpgate\n  \
             # The auth service's API (port 3025), reachable from the new proxy.\n  \
             auth_server: {auth_addr}\n  auth_token: \"{token}\"\n  ca_pin: {pin}\n\
             proxy_service:\n  enabled: yes\n  web_listen_addr: 0.0.0.0:3080\n  \
             # The address users and agents reach this proxy at.\n  \
             public_addr: {proxy_addr}\n"
        ),
        _ => format!(
            "version: v3\njumpgate:\n  data_dir: /var/lib/jumpgate\n  \
             proxy_server: {proxy_addr}\n  auth_token: \"{token}\"\n  ca_pin: {pin}\n\
             ssh_service:\n  enabled: yes\n"
        ),
    }
}

async fn add_token(
    State(state): State<Arc<WebState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Json<JsonObject<NewTokenBody>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let mut admin = writer(&state, &headers, &uri).await?;
    let Json(JsonObject(body)) = body?;
    if !matches!(body.role.as_str(), "node" | "proxy") {
        return Err(ApiError::bad_request(format!(
            "role {:?}: a join token made here is for a node or a proxy",
            body.role
        )));
    }
    let ttl = body.ttl_seconds.unwrap_or(DEFAULT_TOKEN_TTL);
    let made = admin
        .create_join_token(NewJoinToken {
            roles: vec![body.role.clone()],
            ttl: Duration::from_secs(ttl),
            reusable: body.reusable,
        })
        .await?;
    let config = join_config(
        &body.role,
        &made.token,
        &made.ca_pins,
        &public_addr(&state, &headers, &uri),
        &state.auth_addr,
    );
    let view = NewToken {
        expires_unix: unix(made.expires),
        token: made.token,
        id: made.id,
        role: body.role,
        ca_pins: made.ca_pins,
        config,
        command: "sudo jumpgate start -c /etc/jumpgate.yaml".to_string(),
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn delete_token(
    State(state): State<Arc<WebState>>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut admin = writer(&state, &headers, &uri).await?;
    admin.delete_join_token(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- the invite link ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    token: String,
}

#[derive(Debug, Serialize)]
struct InviteView {
    user: String,
    /// Empty when the cluster asks for no second factor.
    otpauth_uri: String,
    expires_unix: i64,
    /// `authentication.second_factor`: `webauthn` asks for a security key, `on` and
    /// `optional` take a key or the app's code, `otp` the code, `off` neither.
    second_factor: String,
}

async fn invite(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Json<JsonObject<InviteBody>>, JsonRejection>,
) -> Result<Json<InviteView>, ApiError> {
    refuse_other_origins(&headers, authority(&uri))?;
    let Json(JsonObject(body)) = body?;
    let found = state
        .auth()
        .get_signup(proto::GetSignupRequest {
            token: body.token,
            client_addr: client.to_string(),
        })
        .await?
        .into_inner();
    Ok(Json(InviteView {
        user: found.user,
        otpauth_uri: found.otpauth_uri,
        expires_unix: found.expires_unix,
        second_factor: found.second_factor,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteKeyBody {
    token: String,
    name: String,
    #[serde(default)]
    passwordless: bool,
}

/// A ceremony begun for the invite page: `options` is what `navigator.credentials.create`
/// takes (binary fields in base64url).
#[derive(Debug, Serialize)]
struct InviteKeyChallenge {
    ceremony_id: String,
    options: serde_json::Value,
    expires_unix: i64,
}

/// `POST /webapi/web/invite/key` `{token, name, passwordless}`: a security key's
/// registration for the invite's user, which `complete` then carries.
async fn invite_key(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Json<JsonObject<InviteKeyBody>>, JsonRejection>,
) -> Result<Json<InviteKeyChallenge>, ApiError> {
    refuse_other_origins(&headers, authority(&uri))?;
    let Json(JsonObject(body)) = body?;
    let challenge = state
        .auth()
        .begin_signup_key_registration(proto::BeginSignupKeyRegistrationRequest {
            token: body.token,
            name: body.name,
            passwordless: body.passwordless,
            client_addr: client.to_string(),
        })
        .await?
        .into_inner();
    let options = serde_json::from_str(&challenge.options_json)
        .map_err(|err| ApiError::internal(format!("WebAuthn options: {err}")))?;
    Ok(Json(InviteKeyChallenge {
        ceremony_id: challenge.ceremony_id,
        options,
        expires_unix: challenge.expires_unix,
    }))
}

/// A security key registered on the invite page: its ceremony and the browser's answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteKey {
    ceremony_id: String,
    credential: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    token: String,
    password: String,
    #[serde(default)]
    otp: String,
    /// Instead of `otp` (required under `second_factor: webauthn`).
    #[serde(default)]
    key: Option<InviteKey>,
}

#[derive(Debug, Serialize)]
struct Completed {
    user: String,
}

async fn complete_invite(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Json<JsonObject<CompleteBody>>, JsonRejection>,
) -> Result<Json<Completed>, ApiError> {
    refuse_other_origins(&headers, authority(&uri))?;
    let Json(JsonObject(body)) = body?;
    let done = state
        .auth()
        .complete_signup(proto::CompleteSignupRequest {
            token: body.token,
            password: body.password,
            otp: body.otp,
            client_addr: client.to_string(),
            webauthn_ceremony_id: body
                .key
                .as_ref()
                .map(|key| key.ceremony_id.clone())
                .unwrap_or_default(),
            webauthn_credential_json: body
                .key
                .map(|key| key.credential.to_string())
                .unwrap_or_default(),
        })
        .await?
        .into_inner();
    Ok(Json(Completed { user: done.user }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_invite_link_keeps_the_token_in_the_fragment() {
        let link = invite_link("proxy.example:443", "ab12");
        assert_eq!(link, "https://proxy.example:443/web/invite#ab12");
        let (before, token) = link.split_once('#').unwrap();
        assert!(!before.contains("ab12"));
        assert_eq!(token, "ab12");
    }

    #[test]
    fn the_join_configs_are_valid_and_name_the_proxy_token_and_pins() {
        let pin = format!("sha256:{}", "ab".repeat(32));
        let token = "cd".repeat(32);
        for role in ["node", "proxy"] {
            let config = join_config(
                role,
                &token,
                std::slice::from_ref(&pin),
                "proxy.example:3080",
                "auth.example:3025",
            );
            let parsed = jumpgate_types::Config::from_yaml("join.yaml", &config);
            assert!(parsed.is_ok(), "{config}\n{parsed:?}");
            assert!(
                config.contains(&format!("auth_token: \"{token}\"")),
                "{config}"
            );
            assert!(config.contains(&format!("ca_pin: \"{pin}\"")), "{config}");
        }
        let node = join_config("node", &token, &[pin], "proxy.example:3080", "a:3025");
        assert!(node.contains("proxy_server: proxy.example:3080"), "{node}");
        let two = pin_value(&["sha256:aa".to_string(), "sha256:bb".to_string()]);
        assert_eq!(two, "[\"sha256:aa\", \"sha256:bb\"]");
    }

    #[test]
    fn role_errors_have_their_position() {
        let yaml = "kind: role\nversion: v7\nmetadata:\n  name: x\nspec:\n  allow:\n    logins: [a]\n    rules:\n      - resources: [user]\n        verbz: [list]\n";
        let err = Role::from_yaml("role.yaml", yaml).unwrap_err();
        assert_eq!(error_location(yaml, &err), Some((10, 9)), "{err}");
        let broken = "kind: role\nversion: v7\nmetadata:\n  name: [x\n";
        let err = Role::from_yaml("role.yaml", broken).unwrap_err();
        assert!(error_location(broken, &err).is_some(), "{err}");
    }
}
