//! Single sign-on on the proxy's port (docs/sso.md). Auth does the work; the proxy moves
//! the browser between the user, the identity provider and auth. Paths are Teleport's, so
//! connectors written for it (`redirect_url: https://PROXY/v1/webapi/oidc/callback`) work:
//!
//! - `GET /webapi/KIND/login/web?connector_id=NAME&redirect_url=/web/...`: a web login. The
//!   answer sends the browser to the provider and sets `__Host-jumpgate_sso` to the login's
//!   state (`SameSite=Lax`, so the provider's redirect back carries it); the login finishes
//!   only with that cookie.
//! - `POST /webapi/KIND/login/console` `{connector_id, redirect_url, ssh_public_key,
//!   tls_public_key_pem, ttl_seconds, client_secret_sha256}`: `jsh login --auth`; answers
//!   `{redirect_url}` for jsh to open.
//! - `GET /v1/webapi/KIND/callback` (also without `/v1`): the provider's answer. A web login
//!   gets its session cookie and goes to its page; a jsh login goes to jsh's loopback
//!   listener with the result's id.
//! - `POST /webapi/sso/result` `{result_id, client_secret}`: jsh collects its certificates.
//!
//! A refused login shows a plain-text page with auth's reason (never HTML built from it).

use crate::web::{ApiError, ClientAddr, WebState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jumpgate_api::{JsonObject, proto};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// The cookie binding a web login to the browser that started it.
pub(crate) const STATE_COOKIE: &str = "__Host-jumpgate_sso";

pub(crate) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/webapi/{kind}/login/web", get(login_web))
        .route("/v1/webapi/{kind}/login/web", get(login_web))
        .route("/webapi/{kind}/login/console", post(login_console))
        .route("/v1/webapi/{kind}/login/console", post(login_console))
        .route("/webapi/{kind}/callback", get(callback))
        .route("/v1/webapi/{kind}/callback", get(callback))
        .route("/webapi/sso/result", post(result))
        .merge(crate::websso_saml::routes())
}

fn connector_kind(kind: &str) -> Result<&'static str, ApiError> {
    jumpgate_types::ConnectorKind::parse(kind)
        .map(|kind| kind.as_str())
        .ok_or_else(|| ApiError::not_found("no such endpoint; SSO kinds are oidc, saml and github"))
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginWebQuery {
    #[serde(default)]
    connector_id: String,
    #[serde(default)]
    redirect_url: String,
}

pub(crate) async fn login_web(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    Path(kind): Path<String>,
    Query(query): Query<LoginWebQuery>,
) -> Response {
    let started = async {
        let kind = connector_kind(&kind)?;
        Ok::<_, ApiError>(
            state
                .auth()
                .create_sso_login(proto::CreateSsoLoginRequest {
                    kind: kind.to_owned(),
                    connector: query.connector_id,
                    web_redirect_path: query.redirect_url,
                    client_addr: client.to_string(),
                    ..Default::default()
                })
                .await?
                .into_inner(),
        )
    }
    .await;
    match started {
        Ok(started) => {
            let cookie = HeaderValue::from_str(&format!(
                "{STATE_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600",
                started.state
            ));
            let location = HeaderValue::from_str(&started.redirect_url);
            match (cookie, location) {
                (Ok(cookie), Ok(location)) => (
                    StatusCode::FOUND,
                    [(header::SET_COOKIE, cookie), (header::LOCATION, location)],
                )
                    .into_response(),
                _ => failure_page(
                    StatusCode::BAD_GATEWAY,
                    "the provider's login URL is unusable",
                ),
            }
        }
        Err(err) => failure_page(err.status(), err.message()),
    }
}

/// The body of `POST /webapi/KIND/login/console`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleLoginRequest {
    #[serde(default)]
    connector_id: String,
    redirect_url: String,
    #[serde(default)]
    ssh_public_key: String,
    #[serde(default)]
    tls_public_key_pem: String,
    #[serde(default)]
    ttl_seconds: i64,
    client_secret_sha256: String,
}

#[derive(Debug, Serialize)]
struct ConsoleLoginResponse {
    redirect_url: String,
}

async fn login_console(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    Path(kind): Path<String>,
    body: Result<Json<JsonObject<ConsoleLoginRequest>>, JsonRejection>,
) -> Result<Json<ConsoleLoginResponse>, ApiError> {
    let kind = connector_kind(&kind)?;
    let Json(JsonObject(request)) = body?;
    if request.redirect_url.is_empty() {
        return Err(ApiError::bad_request(
            "redirect_url: jsh's loopback listener (http://127.0.0.1:PORT/callback)",
        ));
    }
    let started = state
        .auth()
        .create_sso_login(proto::CreateSsoLoginRequest {
            kind: kind.to_owned(),
            connector: request.connector_id,
            client_redirect_url: request.redirect_url,
            ssh_public_key: request.ssh_public_key,
            tls_public_key_pem: request.tls_public_key_pem,
            ttl_seconds: request.ttl_seconds,
            client_secret_sha256: request.client_secret_sha256,
            client_addr: client.to_string(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(Json(ConsoleLoginResponse {
        redirect_url: started.redirect_url,
    }))
}

async fn callback(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    Path(kind): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let kind = match connector_kind(&kind) {
        Ok(kind) => kind,
        Err(err) => return failure_page(err.status(), err.message()),
    };
    finish(
        &state,
        proto::FinishSsoLoginRequest {
            kind: kind.to_owned(),
            params: params
                .into_iter()
                .filter(|(name, _)| name.len() < 64)
                .collect(),
            client_addr: client.to_string(),
            connector: String::new(),
            browser_state: crate::websession::cookie_value(&headers, STATE_COOKIE)
                .unwrap_or_default(),
        },
    )
    .await
}

/// Has auth finish a login, and answers the browser: a web login gets its session cookie
/// and goes to its page; a jsh login goes to jsh's loopback listener.
pub(crate) async fn finish(
    state: &Arc<WebState>,
    request: proto::FinishSsoLoginRequest,
) -> Response {
    let finished = state.auth().finish_sso_login(request).await;
    let finished = match finished {
        Ok(finished) => finished.into_inner(),
        Err(status) => {
            let err = ApiError::from(status);
            return failure_page(err.status(), err.message());
        }
    };
    let clear_state = HeaderValue::from_static(
        "__Host-jumpgate_sso=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
    );
    if let Some(session) = finished.web_session {
        let cookie = crate::websession::session_cookie(&session.id, session.expires_unix);
        let _ = state.sessions.remember(session).await;
        let Ok(location) = HeaderValue::from_str(&finished.web_redirect_path) else {
            return failure_page(
                StatusCode::BAD_GATEWAY,
                "auth sent an unusable page to go to",
            );
        };
        let mut response = (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
        response.headers_mut().append(header::SET_COOKIE, cookie);
        response
            .headers_mut()
            .append(header::SET_COOKIE, clear_state);
        return response;
    }
    match HeaderValue::from_str(&finished.client_redirect_url) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => failure_page(StatusCode::BAD_GATEWAY, "auth sent an unusable URL for jsh"),
    }
}

/// The body of `POST /webapi/sso/result`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultRequest {
    result_id: String,
    client_secret: String,
}

async fn result(
    State(state): State<Arc<WebState>>,
    body: Result<Json<JsonObject<ResultRequest>>, JsonRejection>,
) -> Result<Json<crate::web::LoginResponse>, ApiError> {
    let Json(JsonObject(request)) = body?;
    let issued = state
        .auth()
        .get_sso_login_result(proto::GetSsoLoginResultRequest {
            result_id: request.result_id,
            client_secret: request.client_secret,
        })
        .await?
        .into_inner();
    Ok(Json(crate::web::LoginResponse::from(issued)))
}

/// What a browser shows when a login is refused: text, never markup built from a message.
pub(crate) fn failure_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "Single sign-on failed.\n\n{message}\n\nGo back to the login page (/web/login) to try \
         again.\n"
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
