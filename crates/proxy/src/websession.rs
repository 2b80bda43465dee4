//! The web UI's session API under `/webapi/web/` (issue 17), on the proxy's one port:
//!
//! - `POST /webapi/web/login` `{user, password, otp}`: auth checks them as for `jsh login`
//!   (limits, lockout, audit) and makes a web session ([`proto::WebSession`], kept in the
//!   cluster state so every proxy serves it); the answer sets the session cookie.
//! - `GET /webapi/web/session`: the current session (401 without one); `DELETE` logs out;
//!   `POST /webapi/web/sessions/logout-all` ends every web session of the user.
//! - `GET /webapi/web/nodes?search=&label=K%3DV&sort=hostname|-hostname&limit=&cursor=`: the
//!   nodes the user's roles allow, filtered, sorted and paged here, with the user's logins.
//!   Decided from this proxy's copies of nodes, roles and users (kept current by watch, as
//!   for SSH routing) by the rule auth's listing applies, so ten thousand nodes page
//!   without a round trip; while the copies load, auth is asked with the session's own
//!   identity.
//!
//! The cookie (`__Host-jumpgate_web`: `Secure`, `HttpOnly`, `SameSite=Strict`, `Path=/`)
//! holds only the session's secret id. Every state-changing request but the login carries
//! the session's CSRF token in `X-CSRF-Token`, and a request whose `Origin` is another site
//! is refused: `SameSite=Strict` already keeps the cookie off cross-site requests, these
//! are the second lock. The login itself takes JSON only, which a cross-site form cannot
//! send.
//!
//! A session is re-read from auth at most every [`RECHECK`] per proxy, so a logout or a
//! lock through another proxy ends it here within that time.

use crate::web::{ApiError, ClientAddr, WebState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jumpgate_api::{AuthClient, JsonObject, PemIdentity, proto};
use jumpgate_types::NodePresence;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The session cookie's name; `__Host-` makes browsers require `Secure`, `Path=/` and no
/// `Domain`, so no other host can set or read it.
pub const COOKIE: &str = "__Host-jumpgate_web";
/// The header state-changing requests carry the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a proxy serves a session from memory before asking auth again.
const RECHECK: Duration = Duration::from_secs(5);
/// Sessions kept in a proxy's memory at most (least recently checked go first).
const MAX_CACHED: usize = 10_000;
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// The web sessions this proxy has seen lately, with their user-identity auth clients.
#[derive(Default)]
pub(crate) struct Sessions {
    cached: Mutex<HashMap<String, Cached>>,
}

#[derive(Clone)]
pub(crate) struct Cached {
    pub(crate) session: Arc<proto::WebSession>,
    checked: Instant,
    /// The auth API as the session's user, made on first need.
    user_client: Option<AuthClient>,
}

pub(crate) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/webapi/web/login", post(login))
        .route("/webapi/web/session", get(current).delete(logout))
        .route("/webapi/web/sessions/logout-all", post(logout_all))
        .route("/webapi/web/nodes", get(nodes))
}

/// What the page gets about its session.
#[derive(Debug, Serialize)]
struct SessionView {
    user: String,
    roles: Vec<String>,
    logins: Vec<String>,
    csrf_token: String,
    idle_timeout_seconds: i64,
    expires_unix: i64,
    /// The pages the user's roles allow (auth decides, see `WebSession.can`).
    can: Capabilities,
}

/// Which pages of the web UI the user's roles allow. Hiding a page is a convenience: the
/// calls behind it run as the user, and auth refuses what the roles do not allow.
#[derive(Debug, Serialize)]
struct Capabilities {
    users: bool,
    roles: bool,
    tokens: bool,
    locks: bool,
    events: bool,
    recordings: bool,
}

impl Capabilities {
    fn of(can: &[String]) -> Capabilities {
        let has = |page: &str| can.iter().any(|allowed| allowed == page);
        Capabilities {
            users: has("users"),
            roles: has("roles"),
            tokens: has("tokens"),
            locks: has("locks"),
            events: has("events"),
            recordings: has("recordings"),
        }
    }
}

impl SessionView {
    fn of(session: &proto::WebSession) -> SessionView {
        SessionView {
            user: session.user.clone(),
            roles: session.roles.clone(),
            logins: session.principals.clone(),
            csrf_token: session.csrf_token.clone(),
            idle_timeout_seconds: session.idle_timeout_seconds,
            expires_unix: session.expires_unix,
            can: Capabilities::of(&session.can),
        }
    }
}

/// The body of `POST /webapi/web/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    user: String,
    password: String,
    #[serde(default)]
    otp: String,
}

async fn login(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Json<JsonObject<LoginRequest>>, JsonRejection>,
) -> Result<Response, ApiError> {
    refuse_other_origins(&headers, authority(&uri))?;
    let Json(JsonObject(request)) = body?;
    let session = state
        .auth()
        .create_web_session(proto::CreateWebSessionRequest {
            user: request.user,
            password: request.password,
            otp: request.otp,
            client_addr: client.to_string(),
        })
        .await?
        .into_inner();
    Ok(logged_in(&state, session).await)
}

/// The answer to a successful login (by password or by key): the session cookie and what
/// the page gets about its session.
pub(crate) async fn logged_in(state: &WebState, session: proto::WebSession) -> Response {
    let cookie = session_cookie(&session.id, session.expires_unix);
    let view = SessionView::of(&session);
    let _ = state.sessions.remember(session).await;
    ([(header::SET_COOKIE, cookie)], Json(view)).into_response()
}

async fn current(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
) -> Result<Json<SessionView>, ApiError> {
    let cached = session_of(&state, &headers).await?;
    Ok(Json(SessionView::of(&cached.session)))
}

async fn logout(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    end(&state, &headers, authority(&uri), client, false).await
}

async fn logout_all(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    end(&state, &headers, authority(&uri), client, true).await
}

async fn end(
    state: &WebState,
    headers: &HeaderMap,
    authority: Option<&str>,
    client: std::net::SocketAddr,
    all_of_user: bool,
) -> Result<Response, ApiError> {
    let cached = session_of(state, headers).await?;
    check_csrf(headers, authority, &cached.session)?;
    state
        .auth()
        .delete_web_session(proto::DeleteWebSessionRequest {
            id: cached.session.id.clone(),
            all_of_user,
            client_addr: client.to_string(),
        })
        .await?;
    state.sessions.forget(&cached.session.id).await;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, expired_cookie())],
    )
        .into_response())
}

/// The query of `GET /webapi/web/nodes` (`label` may repeat).
#[derive(Debug, Default)]
struct NodeQuery {
    search: String,
    labels: Vec<(String, String)>,
    descending: bool,
    limit: usize,
    offset: usize,
}

impl NodeQuery {
    fn parse(pairs: Vec<(String, String)>) -> Result<NodeQuery, ApiError> {
        let mut query = NodeQuery {
            limit: DEFAULT_LIMIT,
            ..NodeQuery::default()
        };
        for (key, value) in pairs {
            match key.as_str() {
                "search" => query.search = value.to_lowercase(),
                "label" => {
                    let (name, wanted) = value.split_once('=').ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "label {value:?}: write it as NAME=VALUE, such as env=prod"
                        ))
                    })?;
                    query.labels.push((name.to_string(), wanted.to_string()));
                }
                "sort" => {
                    query.descending = match value.as_str() {
                        "hostname" | "" => false,
                        "-hostname" => true,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "sort {other:?}: hostname or -hostname"
                            )));
                        }
                    }
                }
                "limit" => {
                    query.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "limit {value:?}: a number from 1 to {MAX_LIMIT}"
                            ))
                        })?;
                }
                "cursor" => {
                    query.offset = value.parse().map_err(|_| {
                        ApiError::bad_request(format!(
                            "cursor {value:?}: use the next_cursor of the page before"
                        ))
                    })?;
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown parameter {other:?}; use search, label, sort, limit, cursor"
                    )));
                }
            }
        }
        Ok(query)
    }

    fn matches(&self, node: &NodePresence) -> bool {
        let labels_match = self
            .labels
            .iter()
            .all(|(name, wanted)| node.labels.get(name) == Some(wanted));
        let search_matches = self.search.is_empty()
            || node.hostname.to_lowercase().contains(&self.search)
            || node.uuid.contains(&self.search)
            || node.labels.iter().any(|(name, value)| {
                name.to_lowercase().contains(&self.search)
                    || value.to_lowercase().contains(&self.search)
            });
        labels_match && search_matches
    }
}

#[derive(Debug, Serialize)]
struct NodeView {
    hostname: String,
    uuid: String,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct NodesPage {
    nodes: Vec<NodeView>,
    next_cursor: Option<String>,
    total: usize,
    logins: Vec<String>,
}

async fn nodes(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<NodesPage>, ApiError> {
    let query = NodeQuery::parse(pairs)?;
    let cached = session_of(&state, &headers).await?;
    // From this proxy's copies, deciding as auth's listing does, so that paging through
    // thousands of nodes costs no round trip; from auth while the copies load.
    let visible = state
        .ssh
        .get()
        .and_then(|routing| routing.visible_nodes(&cached.session.user, &cached.session.roles));
    let visible = match visible {
        Some(nodes) => nodes,
        None => {
            let mut client = state.sessions.user_client(&state, &cached).await?;
            client
                .get_resources(proto::GetResourcesRequest {
                    kind: "node".to_string(),
                    name: String::new(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .documents
                .iter()
                .filter_map(|document| NodePresence::from_json("auth:node", document).ok())
                .collect()
        }
    };
    let mut found: Vec<NodePresence> = visible
        .into_iter()
        .filter(|node| query.matches(node))
        .collect();
    found.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.uuid.cmp(&b.uuid)));
    if query.descending {
        found.reverse();
    }
    let total = found.len();
    let end = query.offset.saturating_add(query.limit).min(total);
    let nodes = found
        .into_iter()
        .skip(query.offset)
        .take(query.limit)
        .map(|node| NodeView {
            hostname: node.hostname,
            uuid: node.uuid,
            labels: node.labels,
        })
        .collect();
    Ok(Json(NodesPage {
        nodes,
        next_cursor: (end < total).then(|| end.to_string()),
        total,
        logins: cached.session.principals.clone(),
    }))
}

impl Sessions {
    /// Keeps `session` as checked now (with the user client made for it before, if any);
    /// returns the entry.
    pub(crate) async fn remember(&self, session: proto::WebSession) -> Cached {
        let mut cached = self.cached.lock().await;
        if cached.len() >= MAX_CACHED && !cached.contains_key(&session.id) {
            evict_oldest(&mut cached);
        }
        let session = Arc::new(session);
        let entry = cached.entry(session.id.clone()).or_insert_with(|| Cached {
            session: session.clone(),
            checked: Instant::now(),
            user_client: None,
        });
        entry.session = session;
        entry.checked = Instant::now();
        entry.clone()
    }

    async fn forget(&self, id: &str) {
        self.cached.lock().await.remove(id);
    }

    /// The auth API as the session's user (made once per session and proxy).
    pub(crate) async fn user_client(
        &self,
        state: &WebState,
        cached: &Cached,
    ) -> Result<AuthClient, ApiError> {
        if let Some(client) = &cached.user_client {
            return Ok(client.clone());
        }
        let session = &cached.session;
        let identity = PemIdentity {
            cluster: String::new(),
            cert_pem: session.tls_certificate_pem.clone(),
            key_pem: session.tls_private_key_pem.clone(),
            ca_pem: session.tls_ca_pems.join("\n"),
        };
        let tls = identity
            .credentials()
            .and_then(|credentials| credentials.client_config())
            .map_err(|err| ApiError::internal(format!("the web session's identity: {err}")))?;
        let client = jumpgate_api::connect(&state.auth_addr, tls)
            .await
            .map_err(|err| ApiError::unavailable(format!("the auth service: {err}")))?;
        if let Some(entry) = self.cached.lock().await.get_mut(&session.id) {
            entry.user_client = Some(client.clone());
        }
        Ok(client)
    }
}

fn evict_oldest(cached: &mut HashMap<String, Cached>) {
    if let Some(oldest) = cached
        .iter()
        .min_by_key(|(_, entry)| entry.checked)
        .map(|(id, _)| id.clone())
    {
        cached.remove(&oldest);
    }
}

/// The live session the request's cookie names, from memory if checked within
/// [`RECHECK`], else from auth.
pub(crate) async fn session_of(state: &WebState, headers: &HeaderMap) -> Result<Cached, ApiError> {
    let id = cookie_value(headers, COOKIE)
        .ok_or_else(|| ApiError::unauthenticated("not logged in: no web session; log in first"))?;
    if let Some(entry) = state.sessions.cached.lock().await.get(&id)
        && entry.checked.elapsed() < RECHECK
    {
        return Ok(entry.clone());
    }
    let fetched = state
        .auth()
        .get_web_session(proto::GetWebSessionRequest { id: id.clone() })
        .await;
    match fetched {
        Ok(session) => Ok(state.sessions.remember(session.into_inner()).await),
        Err(status) => {
            state.sessions.forget(&id).await;
            Err(status.into())
        }
    }
}

/// The value of the cookie `cookie` (the session id, an SSO login's state: both hex)
/// from the `Cookie` header(s), if well-formed.
pub(crate) fn cookie_value(headers: &HeaderMap, cookie: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == cookie)
        .map(|(_, value)| value.to_string())
        .filter(|value| value.len() <= 128 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(crate) fn session_cookie(id: &str, expires_unix: i64) -> HeaderValue {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0);
    let max_age = expires_unix.saturating_sub(now).max(0);
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| expired_cookie())
}

fn expired_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-jumpgate_web=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
    )
}

/// The host the request was sent to, as HTTP/2 says it (`:authority`); `None` for HTTP/1.1,
/// whose `Host` header [`refuse_other_origins`] reads instead.
pub(crate) fn authority(uri: &Uri) -> Option<&str> {
    uri.authority().map(|authority| authority.as_str())
}

/// A request from a page of another site is refused (browsers send `Origin` on every
/// POST and DELETE); its host must be the one the request was sent to.
pub(crate) fn refuse_other_origins(
    headers: &HeaderMap,
    authority: Option<&str>,
) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    // HTTP/2 carries the host in `:authority` (the URI), HTTP/1.1 in `Host`.
    let host = authority
        .map(str::to_string)
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let same = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.strip_prefix("https://"))
        .is_some_and(|origin_host| !host.is_empty() && origin_host == host);
    if same {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "refused: the request came from a page of another site",
        ))
    }
}

/// State-changing requests carry the session's CSRF token and come from our own pages.
pub(crate) fn check_csrf(
    headers: &HeaderMap,
    authority: Option<&str>,
    session: &proto::WebSession,
) -> Result<(), ApiError> {
    refuse_other_origins(headers, authority)?;
    let sent = headers
        .get(CSRF_HEADER)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    let expected = session.csrf_token.as_bytes();
    let same = sent.len() == expected.len()
        && sent
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0;
    if same && !expected.is_empty() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "refused: the request lacks this session's X-CSRF-Token; reload the page",
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_cookie_is_read_among_others_and_refused_when_malformed() {
        let id = "ab".repeat(32);
        let found = cookie_value(
            &headers(&[("cookie", &format!("theme=dark; {COOKIE}={id}; other=1"))]),
            COOKIE,
        );
        assert_eq!(found.as_deref(), Some(id.as_str()));
        assert_eq!(
            cookie_value(&headers(&[("cookie", "jumpgate_web=ab")]), COOKIE),
            None
        );
        assert_eq!(
            cookie_value(
                &headers(&[("cookie", &format!("{COOKIE}=../../x"))]),
                COOKIE
            ),
            None
        );
    }

    #[test]
    fn the_cookie_has_the_flags_that_keep_it_to_this_site() {
        let cookie = session_cookie(&"ab".repeat(32), i64::MAX);
        let text = cookie.to_str().unwrap();
        for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(text.contains(flag), "{text}");
        }
        assert!(!text.contains("Domain"), "{text}");
    }

    #[test]
    fn csrf_needs_the_token_and_our_own_origin() {
        let session = proto::WebSession {
            csrf_token: "t0ken".to_string(),
            ..proto::WebSession::default()
        };
        let ok = headers(&[
            ("x-csrf-token", "t0ken"),
            ("host", "proxy.example:3080"),
            ("origin", "https://proxy.example:3080"),
        ]);
        assert!(check_csrf(&ok, None, &session).is_ok());
        let missing = headers(&[("host", "proxy.example:3080")]);
        assert!(check_csrf(&missing, None, &session).is_err());
        let wrong = headers(&[("x-csrf-token", "t0kem")]);
        assert!(check_csrf(&wrong, None, &session).is_err());
        let cross_site = headers(&[
            ("x-csrf-token", "t0ken"),
            ("host", "proxy.example:3080"),
            ("origin", "https://evil.example"),
        ]);
        assert!(check_csrf(&cross_site, None, &session).is_err());
        // HTTP/2: no Host header, the host is the request's authority.
        let h2 = headers(&[
            ("x-csrf-token", "t0ken"),
            ("origin", "https://proxy.example:3080"),
        ]);
        assert!(check_csrf(&h2, Some("proxy.example:3080"), &session).is_ok());
        assert!(check_csrf(&h2, Some("other.example:3080"), &session).is_err());
        let empty = proto::WebSession::default();
        assert!(check_csrf(&headers(&[("x-csrf-token", "")]), None, &empty).is_err());
    }

    #[test]
    fn node_queries_filter_sort_and_page() {
        let query = NodeQuery::parse(vec![
            ("search".into(), "WEB".into()),
            ("label".into(), "env=prod".into()),
        ])
        .unwrap();
        let node = |name: &str, env: &str| NodePresence {
            uuid: "00000000-0000-4000-8000-000000000001".to_string(),
            hostname: name.to_string(),
            labels: BTreeMap::from([("env".to_string(), env.to_string())]),
            tunnels: Vec::new(),
            version: String::new(),
        };
        assert!(query.matches(&node("web-1", "prod")));
        assert!(!query.matches(&node("web-1", "staging")));
        assert!(!query.matches(&node("db-1", "prod")));
        for bad in [
            ("label", "env"),
            ("sort", "uuid"),
            ("limit", "0"),
            ("limit", "501"),
            ("cursor", "-1"),
            ("page", "2"),
        ] {
            assert!(
                NodeQuery::parse(vec![(bad.0.into(), bad.1.into())]).is_err(),
                "{bad:?}"
            );
        }
    }
}
