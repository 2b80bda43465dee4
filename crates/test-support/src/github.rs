//! A **stand-in** for GitHub's OAuth web flow and the REST endpoints a GitHub SSO connector
//! reads, for the GitHub connector's tests (issue 18). It is not GitHub: github.com cannot be
//! reached from the machines the tests run on, and there is no GitHub server one could run
//! here. It is written from GitHub's documentation, behaviour by behaviour, each listed below
//! with the page it comes from, so a connector that passes against it speaks GitHub's
//! documented protocol. Where the documentation is silent, the choice made is marked
//! *(not documented)*.
//!
//! [`GithubStandIn::start`] serves plain HTTP (no TLS) on three free loopback ports, from an
//! in-process server on a thread of its own (usable from sync and async tests alike); dropping
//! it stops the server at once, open connections included. The three ports are the three
//! hosts a connector can be pointed at:
//!
//! | host | stands in for | serves | accessors |
//! |---|---|---|---|
//! | web | `github.com` | `/login/oauth/authorize`, `/login/oauth/access_token` | [`endpoint_url`](GithubStandIn::endpoint_url) |
//! | api | `api.github.com` | `/user`, `/user/teams`, `/user/orgs`, `/user/emails` at the root | [`api_endpoint_url`](GithubStandIn::api_endpoint_url) |
//! | enterprise | a GitHub Enterprise Server host | the web paths, and the API under `/api/v3` | [`enterprise_endpoint_url`](GithubStandIn::enterprise_endpoint_url), [`enterprise_api_endpoint_url`](GithubStandIn::enterprise_api_endpoint_url) |
//!
//! The web host serves no API path and the API host no web path, as on github.com, so a client
//! that sends an API call to `endpoint_url` (or the OAuth exchange to `api_endpoint_url`) gets
//! a 404. All three share one state: the registered OAuth apps ([`OauthApp`]) and the users
//! ([`GithubUser`], with organisations and teams), which a test changes at any time
//! ([`add_user`](GithubStandIn::add_user), [`set_teams`](GithubStandIn::set_teams),
//! [`remove_user`](GithubStandIn::remove_user), [`revoke_tokens`](GithubStandIn::revoke_tokens),
//! ...). [`requests`](GithubStandIn::requests) lists the requests served (host, method, path
//! and query, status), so a test can check that a client followed the pages or called the
//! host it was configured with.
//!
//! # What it mimics, and where each behaviour is documented
//! Pages are under `https://docs.github.com/en/`.
//!
//! From `apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps` ("Web application flow"):
//! - `GET /login/oauth/authorize` takes `client_id` (required), `redirect_uri`, `login`
//!   (suggests the account: it pre-fills the sign-in form), `scope` (space-delimited; commas,
//!   which older versions of the page used, are accepted too) and `state`. It answers an HTML
//!   page with a sign-in form and Authorize / Cancel buttons. The fields carry github.com's
//!   names (`#login_field`, `#password`, `button[name=authorize][value="1"]`, id
//!   `js-oauth-authorize-btn`), so a Playwright script reads the same as it would against
//!   GitHub. The page is one form (sign in and authorize in one step), where github.com shows
//!   two pages; *(not documented)* a wrong login or password re-renders the page with
//!   "Incorrect username or password." as github.com says it.
//! - On Authorize it redirects (302) to the redirect URL with `code` and `state`. A code
//!   expires after 10 minutes ([`GithubStandIn::advance_clock`] moves the stand-in's clock) and
//!   is good for one exchange *(single use: RFC 6749 §4.1.2, which GitHub follows)*.
//! - Without `scope` the token has no scopes. Scopes are normalised as
//!   `apps/oauth-apps/building-oauth-apps/scopes-for-oauth-apps` ("Normalized scopes") says:
//!   a scope implied by another requested one is dropped (`user,gist,user:email` → `user,gist`).
//! - `POST /login/oauth/access_token` takes `client_id`, `client_secret`, `code` and
//!   `redirect_uri`, as a form body, or *(not documented; accepted because OAuth clients send
//!   them)* a JSON body, query parameters, or the client credentials as HTTP Basic
//!   (RFC 6749 §2.3.1). The answer is form-encoded
//!   (`access_token=gho_...&scope=repo%2Cgist&token_type=bearer`) by default, JSON with
//!   `Accept: application/json`, XML with `Accept: application/xml`; tokens look like the
//!   documented `gho_` + 36 characters.
//! - "Redirect URLs": without `redirect_uri` the app's callback URL is used. With it, its host
//!   must be the callback's host or a subdomain of it, its port the callback's port, and its
//!   path the callback's path or below it (the page's GOOD/BAD examples are unit tests here).
//!   "Loopback redirect urls": when the callback's host is a loopback literal (`127.0.0.1`,
//!   `[::1]`; older versions of the page said `localhost`, also accepted), any port is allowed.
//!   *(not documented)* the scheme must be the callback's.
//! - PKCE parameters are ignored ("not supported at this time"); the device flow is not served.
//!
//! From `apps/oauth-apps/maintaining-oauth-apps/troubleshooting-authorization-request-errors`:
//! - a `redirect_uri` that does not match redirects to the **registered callback URL** with
//!   `error=redirect_uri_mismatch`, `error_description`, `error_uri` and `state`;
//! - Cancel redirects with `error=access_denied&error_description=The+user+has+denied+your+application+access.&error_uri=...&state=...`.
//!   The page says "to the registered callback URL"; *(a choice)* the stand-in uses the
//!   request's validated redirect URL (the callback URL when none was given): they differ only
//!   for a `redirect_uri` below the callback or on another loopback port, and a client waiting
//!   on its own loopback port must get the answer there;
//! - a suspended app ([`GithubStandIn::suspend_app`]) redirects with `error=application_suspended`.
//! - *(not documented)* an unknown or missing `client_id` gets a 404 HTML page (github.com shows
//!   its "Page not found").
//!
//! From `apps/oauth-apps/maintaining-oauth-apps/troubleshooting-oauth-app-access-token-request-errors`,
//! all with HTTP **200** and the body in the format `Accept` asks for:
//! - `incorrect_client_credentials` (unknown `client_id` or wrong `client_secret`);
//! - `redirect_uri_mismatch` (a `redirect_uri` that does not match the callback, or is not the
//!   one the code was issued for). At the exchange `redirect_uri` is "strongly recommended",
//!   not required (authorizing-oauth-apps, step 2): left out, it is not checked;
//! - `bad_verification_code` (unknown, expired, already used, or another app's code).
//!
//! From `rest/authentication/authenticating-to-the-rest-api` and
//! `rest/using-the-rest-api/troubleshooting-the-rest-api`:
//! - tokens in `Authorization: Bearer TOKEN` or `Authorization: token TOKEN`;
//! - no token: 401 `{"message":"Requires authentication",...}`; an unknown token, a Basic
//!   username and password, a revoked token ([`GithubStandIn::revoke_tokens`]) or the token of
//!   a user deleted since ([`GithubStandIn::remove_user`]): 401
//!   `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}`
//!   (the statuses are the pages'; the message texts are github.com's as clients report them);
//! - "User agent required": a request without `User-Agent` gets 403 *(text: github.com's, as
//!   reported)*;
//! - `X-GitHub-Api-Version` (from `rest/about-the-rest-api/api-versions`): `2022-11-28` and
//!   `2026-03-10` are accepted, another value gets 400 ("Not a supported version").
//!
//! From `apps/oauth-apps/building-oauth-apps/scopes-for-oauth-apps`: every API answer carries
//! `X-OAuth-Scopes` (the token's scopes, `", "`-separated) and `X-Accepted-OAuth-Scopes`.
//!
//! The endpoints, from the REST reference (`rest/users/users`, `rest/teams/teams`,
//! `rest/orgs/orgs`, `rest/users/emails`):
//! - `GET /user`: the private-user object (`login`, `id`, `node_id`, `type: "User"`, `name`,
//!   `email`, URLs, counters...); `email` is the public email, `null` without one;
//! - `GET /user/teams`: team objects (`id`, `node_id`, `slug`, `name`, `privacy`, ...,
//!   `organization: {login, id, ...}`); "requires `user`, `repo`, or `read:org` scope"; a token
//!   without any (nor `write:org`/`admin:org`, which imply `read:org`) gets **403**. The
//!   reference lists 403 among the endpoint's answers but does not say outright that a missing
//!   scope gives it (rather than an empty list); the stand-in gives 403 as `/user/orgs` does,
//!   where it is said *(the message text is the stand-in's)*;
//! - `GET /user/orgs`: "requires at least `user` or `read:org` scope ... insufficient scope will
//!   receive a `403 Forbidden`", with github.com's message "You need at least read:org scope or
//!   user scope to list your organizations." A user's organisations are the ones set on the
//!   user and the ones of their teams (a team member is an organisation member);
//! - `GET /user/emails` (needs `user:email` or `user`): the user's email as primary and
//!   verified; without the scope, 404, as the troubleshooting page says a token missing a
//!   scope may get.
//!
//! Paging, from `rest/using-the-rest-api/using-pagination-in-the-rest-api`: the list
//! endpoints take `per_page` (default 30, at most 100) and `page` (from 1), and a `Link`
//! header with `prev`, `next`, `last` and `first` URLs (those that apply, `per_page` repeated
//! when given), left out when everything fits on the first page. A client that ignores paging
//! sees only the first 30 teams.
//!
//! # What it leaves out
//! The device flow, GitHub Apps and fine-grained tokens, token expiry and refresh tokens, the
//! token-management endpoints (`/applications/...`), rate limits and their headers,
//! conditional requests (`ETag`/304), TLS, sign-in sessions (every authorization shows the
//! form; github.com skips it for a signed-in user who granted the scopes before, and then also
//! grants the union of earlier scopes), two-factor sign-in, `unverified_user_email`,
//! organisations' OAuth app access restrictions and SAML SSO (`X-GitHub-SSO`), private versus
//! public membership, nested teams, and every endpoint not listed above.

use crate::wait::free_port;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use url::Url;

/// The password a [`GithubUser`] gets unless [`GithubUser::password`] sets another.
pub const GITHUB_DEFAULT_PASSWORD: &str = "correct-horse-github";

/// How long an authorization code is good for ("The temporary code will expire after 10
/// minutes").
pub const CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// REST API versions the stand-in accepts in `X-GitHub-Api-Version`.
pub const SUPPORTED_API_VERSIONS: &[&str] = &["2022-11-28", "2026-03-10"];

const DOCS: &str = "https://docs.github.com";
/// Created/updated timestamps in every object: fixed, so answers are reproducible.
const TIMESTAMP: &str = "2020-01-01T00:00:00Z";

/// A registered OAuth app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OauthApp {
    pub client_id: String,
    pub client_secret: String,
    /// The "Authorization callback URL" of the app's settings.
    pub callback_url: String,
}

impl OauthApp {
    pub fn new(client_id: &str, client_secret: &str, callback_url: &str) -> OauthApp {
        OauthApp {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            callback_url: callback_url.to_string(),
        }
    }
}

/// A team membership: the organisation's login, the team's slug and its display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubTeam {
    pub org: String,
    pub slug: String,
    pub name: String,
}

impl GithubTeam {
    pub fn new(org: &str, slug: &str, name: &str) -> GithubTeam {
        GithubTeam {
            org: org.to_string(),
            slug: slug.to_string(),
            name: name.to_string(),
        }
    }
}

/// A GitHub user: what `GET /user` shows, the password the sign-in form checks, and the
/// organisations and teams the user belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubUser {
    pub login: String,
    pub id: u64,
    pub name: Option<String>,
    /// The public email (what `GET /user` shows), also listed by `GET /user/emails`.
    pub email: Option<String>,
    pub password: String,
    /// Organisations the user is a member of without being in one of their teams.
    pub orgs: Vec<String>,
    pub teams: Vec<GithubTeam>,
}

impl GithubUser {
    /// A user without name, email, organisations or teams, with [`GITHUB_DEFAULT_PASSWORD`].
    pub fn new(login: &str, id: u64) -> GithubUser {
        GithubUser {
            login: login.to_string(),
            id,
            name: None,
            email: None,
            password: GITHUB_DEFAULT_PASSWORD.to_string(),
            orgs: Vec::new(),
            teams: Vec::new(),
        }
    }

    pub fn name(mut self, name: &str) -> GithubUser {
        self.name = Some(name.to_string());
        self
    }

    pub fn email(mut self, email: &str) -> GithubUser {
        self.email = Some(email.to_string());
        self
    }

    pub fn password(mut self, password: &str) -> GithubUser {
        self.password = password.to_string();
        self
    }

    pub fn org(mut self, org: &str) -> GithubUser {
        self.orgs.push(org.to_string());
        self
    }

    pub fn team(mut self, org: &str, slug: &str, name: &str) -> GithubUser {
        self.teams.push(GithubTeam::new(org, slug, name));
        self
    }

    /// The organisations, in order, without repeats: the ones set, then the teams' ones.
    fn all_orgs(&self) -> Vec<String> {
        let mut orgs: Vec<String> = Vec::new();
        for org in self
            .orgs
            .iter()
            .chain(self.teams.iter().map(|team| &team.org))
        {
            if !orgs.iter().any(|known| known.eq_ignore_ascii_case(org)) {
                orgs.push(org.clone());
            }
        }
        orgs
    }
}

/// One request the stand-in answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubRequest {
    /// `"github.com"`, `"api.github.com"` or `"enterprise"`: which of the three hosts.
    pub host: &'static str,
    pub method: String,
    /// The path and query, e.g. `/user/teams?page=2`.
    pub target: String,
    pub status: u16,
}

/// The stand-in, serving until dropped. See the module docs.
#[derive(Debug)]
pub struct GithubStandIn {
    web: SocketAddr,
    api: SocketAddr,
    enterprise: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GithubStandIn {
    /// Binds three free loopback ports and serves them from a thread of its own. The ports
    /// accept connections when this returns.
    pub fn start() -> GithubStandIn {
        let state = Arc::new(Mutex::new(State::default()));
        let (web_listener, web) = bind();
        let (api_listener, api) = bind();
        let (enterprise_listener, enterprise) = bind();
        let hosts = [
            (web_listener, Host::web(web)),
            (api_listener, Host::api(web, api)),
            (enterprise_listener, Host::enterprise(enterprise)),
        ];
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("github-stand-in".to_string())
            .spawn(move || serve(hosts, shared, stopped))
            .expect("spawning the GitHub stand-in's thread");
        GithubStandIn {
            web,
            api,
            enterprise,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// github.com's place: the OAuth web flow (`/login/oauth/...`), e.g. `http://127.0.0.1:41234`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.web)
    }

    /// api.github.com's place: the REST API at the root (`/user`, ...).
    pub fn api_endpoint_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// A GitHub Enterprise Server host: the OAuth web flow at its root.
    pub fn enterprise_endpoint_url(&self) -> String {
        format!("http://{}", self.enterprise)
    }

    /// The same GitHub Enterprise Server host's REST API: `http://127.0.0.1:PORT/api/v3`.
    pub fn enterprise_api_endpoint_url(&self) -> String {
        format!("http://{}/api/v3", self.enterprise)
    }

    /// Registers an OAuth app, or replaces the one with the same client id.
    pub fn add_app(&self, app: OauthApp) {
        let mut state = self.lock();
        state.suspended.retain(|id| *id != app.client_id);
        state.apps.insert(app.client_id.clone(), app);
    }

    /// Deletes an OAuth app; its pending codes stop working.
    pub fn remove_app(&self, client_id: &str) {
        self.lock().apps.remove(client_id);
    }

    /// Suspends an app: authorizations are refused with `application_suspended`.
    pub fn suspend_app(&self, client_id: &str) {
        self.lock().suspended.push(client_id.to_string());
    }

    /// Adds a user, or replaces the one with the same login (then its tokens stay valid).
    pub fn add_user(&self, user: GithubUser) {
        let mut state = self.lock();
        state
            .users
            .retain(|known| !known.login.eq_ignore_ascii_case(&user.login));
        state.users.push(user);
    }

    /// Deletes a user: their codes and tokens get `bad_verification_code` and 401 from now on.
    /// Whether there was such a user.
    pub fn remove_user(&self, login: &str) -> bool {
        let mut state = self.lock();
        let before = state.users.len();
        state
            .users
            .retain(|known| !known.login.eq_ignore_ascii_case(login));
        before != state.users.len()
    }

    /// Changes a user in place (teams, organisations, name, password, ...). Panics if there is
    /// no such user.
    pub fn update_user(&self, login: &str, change: impl FnOnce(&mut GithubUser)) {
        let mut state = self.lock();
        let user = state
            .users
            .iter_mut()
            .find(|known| known.login.eq_ignore_ascii_case(login))
            .unwrap_or_else(|| panic!("the GitHub stand-in has no user {login}"));
        change(user);
    }

    /// Replaces a user's teams (moving them between teams). Panics if there is no such user.
    pub fn set_teams(&self, login: &str, teams: Vec<GithubTeam>) {
        self.update_user(login, |user| user.teams = teams);
    }

    /// A token for `login` with `scopes`, without the web flow (as a personal access token
    /// (classic) is made). Panics if there is no such user.
    pub fn issue_token(&self, login: &str, scopes: &[&str]) -> String {
        let mut state = self.lock();
        let user_id = state
            .user_by_login(login)
            .map(|user| user.id)
            .unwrap_or_else(|| panic!("the GitHub stand-in has no user {login}"));
        let token = new_token();
        state.tokens.insert(
            token.clone(),
            TokenGrant {
                user_id,
                scopes: normalize_scopes(&scopes.join(" ")),
            },
        );
        token
    }

    /// Revokes every token of `login` (the user revoked the app): they get 401 from now on.
    pub fn revoke_tokens(&self, login: &str) {
        let mut state = self.lock();
        let Some(user_id) = state.user_by_login(login).map(|user| user.id) else {
            return;
        };
        state.tokens.retain(|_, grant| grant.user_id != user_id);
    }

    /// The requests answered so far, oldest first.
    pub fn requests(&self) -> Vec<GithubRequest> {
        self.lock().requests.clone()
    }

    /// Moves the stand-in's clock forward (codes expire after [`CODE_LIFETIME`]).
    pub fn advance_clock(&self, by: Duration) {
        self.lock().clock_offset += by;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for GithubStandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bind() -> (TcpListener, SocketAddr) {
    let mut last_error = None;
    for _ in 0..20 {
        match TcpListener::bind(("127.0.0.1", free_port())) {
            Ok(listener) => {
                let addr = listener.local_addr().expect("the bound address");
                listener
                    .set_nonblocking(true)
                    .expect("a non-blocking listener");
                return (listener, addr);
            }
            Err(err) => last_error = Some(err),
        }
    }
    panic!("the GitHub stand-in found no free loopback port: {last_error:?}");
}

/// Runs the three hosts until `stopped`; dropping the runtime then ends every connection.
fn serve(
    hosts: [(TcpListener, Host); 3],
    state: Arc<Mutex<State>>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the GitHub stand-in's runtime");
    runtime.block_on(async move {
        for (listener, host) in hosts {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            let router = host.router(state.clone());
            tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            });
        }
        let _ = stopped.await;
    });
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Which of the three hosts a request came to: what it serves and the URLs it writes.
#[derive(Debug, Clone)]
struct Host {
    /// Which host this is, in [`GithubRequest::host`].
    name: &'static str,
    /// The web root its objects link to (`html_url`).
    web_base: String,
    /// The API root its objects and `Link` headers link to.
    api_base: String,
    serves_web: bool,
    /// Where the API is mounted, if this host serves it.
    api_prefix: Option<&'static str>,
}

impl Host {
    fn web(addr: SocketAddr) -> Host {
        Host {
            name: "github.com",
            web_base: format!("http://{addr}"),
            api_base: String::new(),
            serves_web: true,
            api_prefix: None,
        }
    }

    fn api(web: SocketAddr, addr: SocketAddr) -> Host {
        Host {
            name: "api.github.com",
            web_base: format!("http://{web}"),
            api_base: format!("http://{addr}"),
            serves_web: false,
            api_prefix: Some(""),
        }
    }

    fn enterprise(addr: SocketAddr) -> Host {
        Host {
            name: "enterprise",
            web_base: format!("http://{addr}"),
            api_base: format!("http://{addr}/api/v3"),
            serves_web: true,
            api_prefix: Some("/api/v3"),
        }
    }

    fn router(self, state: Arc<Mutex<State>>) -> Router {
        let ctx = Ctx {
            state,
            host: Arc::new(self.clone()),
        };
        let mut router = Router::new();
        if self.serves_web {
            router = router
                .route(
                    "/login/oauth/authorize",
                    get(authorize_page).post(authorize_submit),
                )
                .route("/login/oauth/access_token", post(access_token));
        }
        if let Some(prefix) = self.api_prefix {
            router = router
                .route(&format!("{prefix}/user"), get(api_user))
                .route(&format!("{prefix}/user/teams"), get(api_user_teams))
                .route(&format!("{prefix}/user/orgs"), get(api_user_orgs))
                .route(&format!("{prefix}/user/emails"), get(api_user_emails));
        }
        router
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(ctx.clone(), record))
            .with_state(ctx)
    }
}

/// Keeps every request in [`State::requests`].
async fn record(
    AxumState(ctx): AxumState<Ctx>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().to_string();
    let target = request
        .uri()
        .path_and_query()
        .map(|target| target.to_string())
        .unwrap_or_default();
    let response = next.run(request).await;
    lock(&ctx.state).requests.push(GithubRequest {
        host: ctx.host.name,
        method,
        target,
        status: response.status().as_u16(),
    });
    response
}

#[derive(Debug, Clone)]
struct Ctx {
    state: Arc<Mutex<State>>,
    host: Arc<Host>,
}

#[derive(Debug, Default)]
struct State {
    apps: BTreeMap<String, OauthApp>,
    suspended: Vec<String>,
    users: Vec<GithubUser>,
    codes: HashMap<String, CodeGrant>,
    tokens: HashMap<String, TokenGrant>,
    clock_offset: Duration,
    /// Organisation and team ids, handed out on first sight and kept (by lowercase name).
    org_ids: BTreeMap<String, u64>,
    team_ids: BTreeMap<(String, String), u64>,
    requests: Vec<GithubRequest>,
}

impl State {
    fn now(&self) -> Instant {
        Instant::now() + self.clock_offset
    }

    fn user_by_login(&self, login: &str) -> Option<&GithubUser> {
        self.users.iter().find(|user| {
            user.login.eq_ignore_ascii_case(login)
                || user
                    .email
                    .as_deref()
                    .is_some_and(|email| email.eq_ignore_ascii_case(login))
        })
    }

    fn user_by_id(&self, id: u64) -> Option<&GithubUser> {
        self.users.iter().find(|user| user.id == id)
    }

    fn org_id(&mut self, org: &str) -> u64 {
        let next = 1000 + self.org_ids.len() as u64;
        *self.org_ids.entry(org.to_ascii_lowercase()).or_insert(next)
    }

    fn team_id(&mut self, org: &str, slug: &str) -> u64 {
        let next = 5000 + self.team_ids.len() as u64;
        *self
            .team_ids
            .entry((org.to_ascii_lowercase(), slug.to_ascii_lowercase()))
            .or_insert(next)
    }
}

#[derive(Debug)]
struct CodeGrant {
    client_id: String,
    user_id: u64,
    scopes: Vec<String>,
    /// The `redirect_uri` of the authorization request, if it had one.
    redirect_uri: Option<String>,
    issued: Instant,
}

#[derive(Debug)]
struct TokenGrant {
    user_id: u64,
    scopes: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// The OAuth web flow
// ---------------------------------------------------------------------------------------

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        json!({"message": "Not Found", "documentation_url": format!("{DOCS}/rest"), "status": "404"})
            .to_string(),
    )
        .into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn redirect(location: &Url) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

/// The parameters of an authorization request (query of the GET, hidden fields of the POST).
#[derive(Debug)]
struct AuthorizeRequest {
    client_id: String,
    redirect_uri: Option<String>,
    scope: String,
    state: Option<String>,
    login: String,
}

impl AuthorizeRequest {
    fn from(params: &HashMap<String, String>) -> AuthorizeRequest {
        let get = |name: &str| params.get(name).cloned();
        AuthorizeRequest {
            client_id: get("client_id").unwrap_or_default(),
            redirect_uri: get("redirect_uri").filter(|uri| !uri.is_empty()),
            scope: get("scope").unwrap_or_default(),
            state: get("state"),
            login: get("login").unwrap_or_default(),
        }
    }
}

/// What an authorization request leads to before anyone signs in.
enum Checked {
    /// Show the form; the URL to send the user back to.
    Proceed(OauthApp, Url),
    /// Answer this (a 404 page or an error redirect).
    Refuse(Response),
}

fn check_authorize(state: &State, request: &AuthorizeRequest) -> Checked {
    let Some(app) = state.apps.get(&request.client_id).cloned() else {
        return Checked::Refuse(html(
            StatusCode::NOT_FOUND,
            page(
                "Page not found · GitHub (stand-in)",
                "<h1>404</h1><p>This is not the web page you are looking for.</p>",
            ),
        ));
    };
    let Ok(callback) = Url::parse(&app.callback_url) else {
        return Checked::Refuse(html(
            StatusCode::INTERNAL_SERVER_ERROR,
            page(
                "Error · GitHub (stand-in)",
                "<p>The app's callback URL is not a URL.</p>",
            ),
        ));
    };
    if state.suspended.contains(&app.client_id) {
        return Checked::Refuse(error_redirect(
            &callback,
            "application_suspended",
            "Your application has been suspended. Contact support@github.com.",
            "application-suspended",
            request.state.as_deref(),
        ));
    }
    let target = match &request.redirect_uri {
        None => callback,
        Some(given) => match Url::parse(given) {
            Ok(url) if redirect_allowed(&callback, &url) => url,
            _ => {
                return Checked::Refuse(error_redirect(
                    &callback,
                    "redirect_uri_mismatch",
                    "The redirect_uri MUST match the registered callback URL for this application.",
                    "redirect-uri-mismatch",
                    request.state.as_deref(),
                ));
            }
        },
    };
    Checked::Proceed(app, target)
}

fn error_redirect(
    to: &Url,
    error: &str,
    description: &str,
    anchor: &str,
    state: Option<&str>,
) -> Response {
    let mut url = to.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("error", error)
            .append_pair("error_description", description)
            .append_pair(
                "error_uri",
                &format!(
                    "{DOCS}/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#{anchor}"
                ),
            );
        if let Some(state) = state {
            query.append_pair("state", state);
        }
    }
    redirect(&url)
}

async fn authorize_page(AxumState(ctx): AxumState<Ctx>, uri: Uri) -> Response {
    let params = parse_form(uri.query().unwrap_or_default().as_bytes());
    let request = AuthorizeRequest::from(&params);
    let state = lock(&ctx.state);
    match check_authorize(&state, &request) {
        Checked::Refuse(response) => response,
        Checked::Proceed(app, _) => html(StatusCode::OK, sign_in_page(&app, &request, None)),
    }
}

async fn authorize_submit(AxumState(ctx): AxumState<Ctx>, body: Bytes) -> Response {
    let params = parse_form(&body);
    let request = AuthorizeRequest::from(&params);
    let mut state = lock(&ctx.state);
    let (app, target) = match check_authorize(&state, &request) {
        Checked::Refuse(response) => return response,
        Checked::Proceed(app, target) => (app, target),
    };
    if params.get("authorize").map(String::as_str) != Some("1") {
        return error_redirect(
            &target,
            "access_denied",
            "The user has denied your application access.",
            "access-denied",
            request.state.as_deref(),
        );
    }
    let password = params.get("password").cloned().unwrap_or_default();
    let user_id = match state.user_by_login(&request.login) {
        Some(user) if user.password == password => user.id,
        _ => {
            return html(
                StatusCode::OK,
                sign_in_page(&app, &request, Some("Incorrect username or password.")),
            );
        }
    };
    let code = new_code();
    let issued = state.now();
    state.codes.insert(
        code.clone(),
        CodeGrant {
            client_id: app.client_id.clone(),
            user_id,
            scopes: normalize_scopes(&request.scope),
            redirect_uri: request.redirect_uri.clone(),
            issued,
        },
    );
    let mut url = target;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("code", &code);
        if let Some(state) = &request.state {
            query.append_pair("state", state);
        }
    }
    redirect(&url)
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n\
         <p class=\"stand-in\">GitHub stand-in for Jumpgate's tests: not GitHub.</p>\n{body}\n</body></html>\n",
        escape(title)
    )
}

fn sign_in_page(app: &OauthApp, request: &AuthorizeRequest, error: Option<&str>) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Sign in to GitHub</h1>\n<p>to continue to <strong>{}</strong></p>\n",
        escape(&app.client_id)
    );
    if let Some(error) = error {
        let _ = writeln!(
            body,
            "<div class=\"flash-error\" role=\"alert\">{error}</div>"
        );
    }
    body.push_str("<form action=\"/login/oauth/authorize\" method=\"post\">\n");
    let mut hidden = |name: &str, value: &str| {
        let _ = writeln!(
            body,
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        );
    };
    hidden("client_id", &request.client_id);
    if let Some(redirect_uri) = &request.redirect_uri {
        hidden("redirect_uri", redirect_uri);
    }
    if let Some(state) = &request.state {
        hidden("state", state);
    }
    hidden("scope", &request.scope);
    let scopes = normalize_scopes(&request.scope);
    let scopes = if scopes.is_empty() {
        "public information only".to_string()
    } else {
        scopes.join(", ")
    };
    let _ = write!(
        body,
        "<label for=\"login_field\">Username or email address</label>\n\
         <input type=\"text\" name=\"login\" id=\"login_field\" autocomplete=\"username\" value=\"{}\">\n\
         <label for=\"password\">Password</label>\n\
         <input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\">\n\
         <p>{} requests: {}</p>\n\
         <button type=\"submit\" name=\"authorize\" value=\"1\" id=\"js-oauth-authorize-btn\">Authorize {}</button>\n\
         <button type=\"submit\" name=\"authorize\" value=\"0\">Cancel</button>\n</form>",
        escape(&request.login),
        escape(&app.client_id),
        escape(&scopes),
        escape(&app.client_id),
    );
    page("Authorize application · GitHub (stand-in)", &body)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// GitHub's rule for a `redirect_uri` against the app's callback URL ("Redirect URLs" and
/// "Loopback redirect urls" on the authorizing-oauth-apps page).
pub(crate) fn redirect_allowed(callback: &Url, redirect: &Url) -> bool {
    if callback.scheme() != redirect.scheme() {
        return false;
    }
    let (Some(callback_host), Some(redirect_host)) = (callback.host(), redirect.host()) else {
        return false;
    };
    let loopback = is_loopback(&callback_host);
    let host_ok = match (&callback_host, &redirect_host) {
        (url::Host::Domain(want), url::Host::Domain(got)) => {
            let (want, got) = (want.to_ascii_lowercase(), got.to_ascii_lowercase());
            // Sub-domains of the callback's host are allowed, except for `localhost`.
            got == want || (!loopback && got.ends_with(&format!(".{want}")))
        }
        (want, got) => want == got,
    };
    let port_ok = loopback || callback.port_or_known_default() == redirect.port_or_known_default();
    let base = callback.path();
    let path = redirect.path();
    let path_ok = path == base
        || (base.ends_with('/') && path.starts_with(base))
        || path.starts_with(&format!("{base}/"));
    host_ok && port_ok && path_ok
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Which format the token endpoint answers in (`Accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Form,
    Json,
    Xml,
}

impl Format {
    fn of(headers: &HeaderMap) -> Format {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if accept.contains("application/json") {
            Format::Json
        } else if accept.contains("application/xml") {
            Format::Xml
        } else {
            Format::Form
        }
    }

    /// `fields` in this format; always HTTP 200, errors included, as GitHub answers.
    fn respond(self, fields: &[(&str, &str)]) -> Response {
        let (content_type, body) = match self {
            Format::Json => {
                let object: serde_json::Map<String, Value> = fields
                    .iter()
                    .map(|(key, value)| (key.to_string(), Value::from(*value)))
                    .collect();
                (
                    "application/json; charset=utf-8",
                    Value::Object(object).to_string(),
                )
            }
            Format::Xml => {
                let mut xml = String::from("<OAuth>");
                for (key, value) in fields {
                    let _ = write!(xml, "<{key}>{}</{key}>", escape(value));
                }
                xml.push_str("</OAuth>");
                ("application/xml; charset=utf-8", xml)
            }
            Format::Form => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                for (key, value) in fields {
                    form.append_pair(key, value);
                }
                (
                    "application/x-www-form-urlencoded; charset=utf-8",
                    form.finish(),
                )
            }
        };
        (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
    }

    fn error(self, error: &str, description: &str, uri: &str) -> Response {
        self.respond(&[
            ("error", error),
            ("error_description", description),
            ("error_uri", format!("{DOCS}{uri}").as_str()),
        ])
    }
}

const TOKEN_ERRORS: &str =
    "/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/";

async fn access_token(
    AxumState(ctx): AxumState<Ctx>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let format = Format::of(&headers);
    let mut params = parse_form(uri.query().unwrap_or_default().as_bytes());
    params.extend(parse_body(&headers, &body));
    if let Some((id, secret)) = basic_credentials(&headers) {
        params.entry("client_id".to_string()).or_insert(id);
        params.entry("client_secret".to_string()).or_insert(secret);
    }
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    let mut state = lock(&ctx.state);
    let app = match state.apps.get(&param("client_id")) {
        Some(app) if app.client_secret == param("client_secret") => app.clone(),
        _ => {
            return format.error(
                "incorrect_client_credentials",
                "The client_id and/or client_secret passed are incorrect.",
                &format!("{TOKEN_ERRORS}#incorrect-client-credentials"),
            );
        }
    };
    let bad_code = || {
        format.error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
            &format!("{TOKEN_ERRORS}#bad-verification-code"),
        )
    };
    let code = param("code");
    let now = state.now();
    let grant = match state.codes.get(&code) {
        Some(grant)
            if grant.client_id == app.client_id
                && now.saturating_duration_since(grant.issued) < CODE_LIFETIME =>
        {
            grant
        }
        _ => return bad_code(),
    };
    let redirect_uri = params.get("redirect_uri").filter(|uri| !uri.is_empty());
    if let Some(given) = redirect_uri {
        let matches_callback = match (Url::parse(&app.callback_url), Url::parse(given)) {
            (Ok(callback), Ok(given)) => redirect_allowed(&callback, &given),
            _ => false,
        };
        let matches_request = grant.redirect_uri.as_ref().is_none_or(|used| used == given);
        if !(matches_callback && matches_request) {
            return format.error(
                "redirect_uri_mismatch",
                "The redirect_uri MUST match the registered callback URL for this application.",
                "/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#redirect-uri-mismatch2",
            );
        }
    }
    let Some(grant) = state.codes.remove(&code) else {
        return bad_code();
    };
    if state.user_by_id(grant.user_id).is_none() {
        return bad_code();
    }
    let token = new_token();
    let scope = grant.scopes.join(",");
    state.tokens.insert(
        token.clone(),
        TokenGrant {
            user_id: grant.user_id,
            scopes: grant.scopes,
        },
    );
    format.respond(&[
        ("access_token", token.as_str()),
        ("scope", scope.as_str()),
        ("token_type", "bearer"),
    ])
}

fn parse_form(bytes: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

/// A token request's body: JSON when it says so (or looks so), form-encoded otherwise.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let looks_json = body
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'{');
    if content_type.contains("json") || looks_json {
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
            return HashMap::new();
        };
        return object
            .into_iter()
            .filter_map(|(key, value)| match value {
                Value::String(text) => Some((key, text)),
                Value::Number(number) => Some((key, number.to_string())),
                _ => None,
            })
            .collect();
    }
    parse_form(body)
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    // RFC 6749 §2.3.1: both parts are form-encoded before Basic encoding.
    let unescape = |text: &str| -> String {
        form_urlencoded::parse(format!("x={text}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

// ---------------------------------------------------------------------------------------
// The REST API
// ---------------------------------------------------------------------------------------

/// An API request that passed the checks every endpoint makes: the user and the token's scopes.
struct Caller {
    user: GithubUser,
    scopes: Vec<String>,
}

fn api_json(
    status: StatusCode,
    scopes: Option<&[String]>,
    accepted: &str,
    body: Value,
) -> Response {
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
            (
                header::HeaderName::from_static("x-github-media-type"),
                "github.v3; format=json",
            ),
        ],
        body.to_string(),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Some(scopes) = scopes {
        if let Ok(value) = scopes.join(", ").parse() {
            headers.insert("x-oauth-scopes", value);
        }
        if let Ok(value) = accepted.parse() {
            headers.insert("x-accepted-oauth-scopes", value);
        }
    }
    response
}

fn api_error(status: StatusCode, message: &str, documentation: &str) -> Response {
    api_json(
        status,
        None,
        "",
        json!({
            "message": message,
            "documentation_url": format!("{DOCS}{documentation}"),
            "status": status.as_u16().to_string(),
        }),
    )
}

/// The checks before any endpoint: `User-Agent`, `X-GitHub-Api-Version`, the token.
fn authenticate(
    ctx: &Ctx,
    headers: &HeaderMap,
    endpoint_docs: &str,
) -> Result<Caller, Box<Response>> {
    if headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .is_none_or(|agent| agent.trim().is_empty())
    {
        return Err(Box::new((
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "Request forbidden by administrative rules. Please make sure your request has a \
                 User-Agent header ({DOCS}/rest/using-the-rest-api/troubleshooting-the-rest-api#user-agent-required).\n"
            ),
        )
            .into_response()));
    }
    if let Some(version) = headers.get("x-github-api-version") {
        let version = version.to_str().unwrap_or_default();
        if !SUPPORTED_API_VERSIONS.contains(&version) {
            return Err(Box::new(api_error(
                StatusCode::BAD_REQUEST,
                &format!("API version {version} is not supported."),
                "/rest/about-the-rest-api/api-versions",
            )));
        }
    }
    let Some(authorization) = headers.get(header::AUTHORIZATION) else {
        return Err(Box::new(api_error(
            StatusCode::UNAUTHORIZED,
            "Requires authentication",
            endpoint_docs,
        )));
    };
    let bad_credentials = || {
        Box::new(api_error(
            StatusCode::UNAUTHORIZED,
            "Bad credentials",
            "/rest",
        ))
    };
    let token = authorization
        .to_str()
        .ok()
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| {
            scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")
        })
        .map(|(_, token)| token.trim().to_string())
        .ok_or_else(bad_credentials)?;
    let state = lock(&ctx.state);
    let grant = state.tokens.get(&token).ok_or_else(bad_credentials)?;
    let user = state
        .user_by_id(grant.user_id)
        .cloned()
        .ok_or_else(bad_credentials)?;
    Ok(Caller {
        user,
        scopes: grant.scopes.clone(),
    })
}

/// Whether `granted` covers any of `needed`, directly or through an implying scope.
fn covers(granted: &[String], needed: &[&'static str]) -> bool {
    granted.iter().any(|scope| {
        needed
            .iter()
            .any(|want| *scope == *want || implied_by(want).contains(&scope.as_str()))
    })
}

async fn api_user(AxumState(ctx): AxumState<Ctx>, headers: HeaderMap) -> Response {
    let caller = match authenticate(
        &ctx,
        &headers,
        "/rest/users/users#get-the-authenticated-user",
    ) {
        Ok(caller) => caller,
        Err(response) => return *response,
    };
    let body = user_json(&ctx.host, &caller.user);
    api_json(StatusCode::OK, Some(caller.scopes.as_slice()), "", body)
}

async fn api_user_teams(AxumState(ctx): AxumState<Ctx>, uri: Uri, headers: HeaderMap) -> Response {
    const DOC: &str = "/rest/teams/teams#list-teams-for-the-authenticated-user";
    const ACCEPTED: &str = "admin:org, read:org, repo, user, write:org";
    let caller = match authenticate(&ctx, &headers, DOC) {
        Ok(caller) => caller,
        Err(response) => return *response,
    };
    if !covers(&caller.scopes, &["read:org", "repo", "user"]) {
        let mut response = api_error(
            StatusCode::FORBIDDEN,
            "You need at least read:org scope, repo scope or user scope to list your teams.",
            DOC,
        );
        set_scope_headers(&mut response, &caller.scopes, ACCEPTED);
        return response;
    }
    let teams: Vec<Value> = {
        let mut state = lock(&ctx.state);
        let memberships = caller.user.teams.clone();
        memberships
            .iter()
            .map(|team| team_json(&ctx.host, &mut state, team))
            .collect()
    };
    paged(
        &ctx.host,
        &uri,
        "/user/teams",
        teams,
        &caller.scopes,
        ACCEPTED,
    )
}

async fn api_user_orgs(AxumState(ctx): AxumState<Ctx>, uri: Uri, headers: HeaderMap) -> Response {
    const DOC: &str = "/rest/orgs/orgs#list-organizations-for-the-authenticated-user";
    const ACCEPTED: &str = "admin:org, read:org, user, write:org";
    let caller = match authenticate(&ctx, &headers, DOC) {
        Ok(caller) => caller,
        Err(response) => return *response,
    };
    if !covers(&caller.scopes, &["read:org", "user"]) {
        let mut response = api_error(
            StatusCode::FORBIDDEN,
            "You need at least read:org scope or user scope to list your organizations.",
            DOC,
        );
        set_scope_headers(&mut response, &caller.scopes, ACCEPTED);
        return response;
    }
    let orgs: Vec<Value> = {
        let mut state = lock(&ctx.state);
        caller
            .user
            .all_orgs()
            .iter()
            .map(|org| org_json(&ctx.host, &mut state, org))
            .collect()
    };
    paged(
        &ctx.host,
        &uri,
        "/user/orgs",
        orgs,
        &caller.scopes,
        ACCEPTED,
    )
}

async fn api_user_emails(AxumState(ctx): AxumState<Ctx>, uri: Uri, headers: HeaderMap) -> Response {
    const DOC: &str = "/rest/users/emails#list-email-addresses-for-the-authenticated-user";
    const ACCEPTED: &str = "user, user:email";
    let caller = match authenticate(&ctx, &headers, DOC) {
        Ok(caller) => caller,
        Err(response) => return *response,
    };
    if !covers(&caller.scopes, &["user:email"]) {
        let mut response = api_error(StatusCode::NOT_FOUND, "Not Found", DOC);
        set_scope_headers(&mut response, &caller.scopes, ACCEPTED);
        return response;
    }
    let emails: Vec<Value> = caller
        .user
        .email
        .iter()
        .map(|email| json!({"email": email, "primary": true, "verified": true, "visibility": "public"}))
        .collect();
    paged(
        &ctx.host,
        &uri,
        "/user/emails",
        emails,
        &caller.scopes,
        ACCEPTED,
    )
}

fn set_scope_headers(response: &mut Response, scopes: &[String], accepted: &str) {
    let headers = response.headers_mut();
    if let Ok(value) = scopes.join(", ").parse() {
        headers.insert("x-oauth-scopes", value);
    }
    if let Ok(value) = accepted.parse() {
        headers.insert("x-accepted-oauth-scopes", value);
    }
}

/// One page of `items` with GitHub's `Link` header.
fn paged(
    host: &Host,
    uri: &Uri,
    path: &str,
    items: Vec<Value>,
    scopes: &[String],
    accepted: &str,
) -> Response {
    let query = parse_form(uri.query().unwrap_or_default().as_bytes());
    let per_page_given = query.contains_key("per_page");
    let per_page = query
        .get("per_page")
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|value| *value > 0)
        .map_or(30, |value| value.min(100));
    let page = query
        .get("page")
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|value| *value > 0)
        .unwrap_or(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let link_to = |target: usize| {
        if per_page_given {
            format!(
                "<{}{path}?per_page={per_page}&page={target}>",
                host.api_base
            )
        } else {
            format!("<{}{path}?page={target}>", host.api_base)
        }
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", link_to(page - 1)));
    }
    if page < last {
        links.push(format!("{}; rel=\"next\"", link_to(page + 1)));
        links.push(format!("{}; rel=\"last\"", link_to(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", link_to(1)));
    }
    let mut response = api_json(StatusCode::OK, Some(scopes), accepted, Value::Array(slice));
    if !links.is_empty()
        && let Ok(value) = links.join(", ").parse()
    {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

fn user_json(host: &Host, user: &GithubUser) -> Value {
    let api = &host.api_base;
    let login = &user.login;
    json!({
        "login": login,
        "id": user.id,
        "node_id": node_id("04:User", user.id),
        "avatar_url": format!("{}/avatars/u/{}?v=4", host.web_base, user.id),
        "gravatar_id": "",
        "url": format!("{api}/users/{login}"),
        "html_url": format!("{}/{login}", host.web_base),
        "followers_url": format!("{api}/users/{login}/followers"),
        "following_url": format!("{api}/users/{login}/following{{/other_user}}"),
        "gists_url": format!("{api}/users/{login}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/users/{login}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/users/{login}/subscriptions"),
        "organizations_url": format!("{api}/users/{login}/orgs"),
        "repos_url": format!("{api}/users/{login}/repos"),
        "events_url": format!("{api}/users/{login}/events{{/privacy}}"),
        "received_events_url": format!("{api}/users/{login}/received_events"),
        "type": "User",
        "user_view_type": "private",
        "site_admin": false,
        "name": user.name,
        "company": null,
        "blog": "",
        "location": null,
        "email": user.email,
        "notification_email": user.email,
        "hireable": null,
        "bio": null,
        "twitter_username": null,
        "public_repos": 0,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "private_gists": 0,
        "total_private_repos": 0,
        "owned_private_repos": 0,
        "disk_usage": 0,
        "collaborators": 0,
        "two_factor_authentication": true,
    })
}

fn org_json(host: &Host, state: &mut State, org: &str) -> Value {
    let api = &host.api_base;
    let id = state.org_id(org);
    json!({
        "login": org,
        "id": id,
        "node_id": node_id("012:Organization", id),
        "url": format!("{api}/orgs/{org}"),
        "repos_url": format!("{api}/orgs/{org}/repos"),
        "events_url": format!("{api}/orgs/{org}/events"),
        "hooks_url": format!("{api}/orgs/{org}/hooks"),
        "issues_url": format!("{api}/orgs/{org}/issues"),
        "members_url": format!("{api}/orgs/{org}/members{{/member}}"),
        "public_members_url": format!("{api}/orgs/{org}/public_members{{/member}}"),
        "avatar_url": format!("{}/avatars/u/{id}?v=4", host.web_base),
        "description": null,
    })
}

fn team_json(host: &Host, state: &mut State, team: &GithubTeam) -> Value {
    let api = &host.api_base;
    let id = state.team_id(&team.org, &team.slug);
    let org_id = state.org_id(&team.org);
    let members = state
        .users
        .iter()
        .filter(|user| {
            user.teams.iter().any(|other| {
                other.org.eq_ignore_ascii_case(&team.org)
                    && other.slug.eq_ignore_ascii_case(&team.slug)
            })
        })
        .count();
    let mut organization = org_json(host, state, &team.org);
    if let Value::Object(fields) = &mut organization {
        for (key, value) in [
            ("name", json!(team.org)),
            ("company", Value::Null),
            ("blog", Value::Null),
            ("location", Value::Null),
            ("email", Value::Null),
            ("is_verified", json!(false)),
            ("has_organization_projects", json!(true)),
            ("has_repository_projects", json!(true)),
            ("public_repos", json!(0)),
            ("public_gists", json!(0)),
            ("followers", json!(0)),
            ("following", json!(0)),
            ("html_url", json!(format!("{}/{}", host.web_base, team.org))),
            ("created_at", json!(TIMESTAMP)),
            ("updated_at", json!(TIMESTAMP)),
            ("type", json!("Organization")),
        ] {
            fields.insert(key.to_string(), value);
        }
    }
    json!({
        "id": id,
        "node_id": node_id("04:Team", id),
        "url": format!("{api}/organizations/{org_id}/team/{id}"),
        "html_url": format!("{}/orgs/{}/teams/{}", host.web_base, team.org, team.slug),
        "name": team.name,
        "slug": team.slug,
        "description": null,
        "privacy": "closed",
        "notification_setting": "notifications_enabled",
        "permission": "pull",
        "members_url": format!("{api}/organizations/{org_id}/team/{id}/members{{/member}}"),
        "repositories_url": format!("{api}/organizations/{org_id}/team/{id}/repos"),
        "parent": null,
        "members_count": members,
        "repos_count": 0,
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "organization": organization,
    })
}

/// GitHub's legacy global node id: base64 of `"04:User1"` and the like (`MDQ6VXNlcjE=`).
fn node_id(kind: &str, id: u64) -> String {
    base64_encode(format!("{kind}{id}").as_bytes())
}

// ---------------------------------------------------------------------------------------
// Scopes, codes, tokens, base64
// ---------------------------------------------------------------------------------------

/// Scope → the scopes that include it ("Available scopes").
fn implied_by(scope: &str) -> &'static [&'static str] {
    match scope {
        "repo:status" | "repo_deployment" | "public_repo" | "repo:invite" | "security_events" => {
            &["repo"]
        }
        "write:repo_hook" => &["admin:repo_hook"],
        "read:repo_hook" => &["write:repo_hook", "admin:repo_hook"],
        "write:org" => &["admin:org"],
        "read:org" => &["write:org", "admin:org"],
        "write:public_key" => &["admin:public_key"],
        "read:public_key" => &["write:public_key", "admin:public_key"],
        "write:gpg_key" => &["admin:gpg_key"],
        "read:gpg_key" => &["write:gpg_key", "admin:gpg_key"],
        "read:user" | "user:email" | "user:follow" => &["user"],
        "read:project" => &["project"],
        _ => &[],
    }
}

/// The requested scopes as GitHub saves them: split on spaces (or commas), repeats and scopes
/// implied by another requested one dropped, the order kept.
pub(crate) fn normalize_scopes(requested: &str) -> Vec<String> {
    let all: Vec<&str> = requested
        .split([' ', ','])
        .filter(|scope| !scope.is_empty())
        .collect();
    let mut kept: Vec<String> = Vec::new();
    for scope in &all {
        let implied = implied_by(scope).iter().any(|parent| all.contains(parent));
        if !implied && !kept.iter().any(|known| known == scope) {
            kept.push(scope.to_string());
        }
    }
    kept
}

fn random_hex(len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(len);
    out
}

/// A 20-character code, as GitHub's are.
fn new_code() -> String {
    random_hex(20)
}

/// `gho_` and 36 characters, the shape of GitHub's OAuth tokens.
fn new_token() -> String {
    format!("gho_{}", random_hex(36))
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut block = [0u8; 3];
        for (slot, byte) in block.iter_mut().zip(chunk) {
            *slot = *byte;
        }
        let [a, b, c] = block;
        let n = u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c);
        for position in 0..4u32 {
            let index = ((n >> (18 - 6 * position)) & 63) as usize;
            match BASE64.get(index) {
                Some(symbol) if position as usize <= chunk.len() => out.push(char::from(*symbol)),
                _ => out.push('='),
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = BASE64.iter().position(|known| *known == c)?;
        bits = bits << 6 | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(callback: &str, redirect: &str) -> bool {
        redirect_allowed(
            &Url::parse(callback).unwrap(),
            &Url::parse(redirect).unwrap(),
        )
    }

    /// The GOOD and BAD examples of "Redirect URLs" on the authorizing-oauth-apps page.
    #[test]
    fn redirect_urls_follow_githubs_examples() {
        let callback = "http://example.com/path";
        for good in [
            "http://example.com/path",
            "http://example.com/path/subdir/other",
            "http://oauth.example.com/path",
            "http://oauth.example.com/path/subdir/other",
        ] {
            assert!(allowed(callback, good), "{good} should be allowed");
        }
        for bad in [
            "http://example.com/bar",
            "http://example.com/",
            "http://example.com:8080/path",
            "http://oauth.example.com:8080/path",
            "http://example.org",
            // Not in GitHub's list: a sibling path sharing the prefix, another scheme.
            "http://example.com/pathology",
            "https://example.com/path",
            "http://evilexample.com/path",
        ] {
            assert!(!allowed(callback, bad), "{bad} should be refused");
        }
    }

    /// "Loopback redirect urls": any port on the callback's loopback host, same path rule.
    #[test]
    fn loopback_redirect_urls_may_use_any_port() {
        assert!(allowed(
            "http://127.0.0.1/path",
            "http://127.0.0.1:1234/path"
        ));
        assert!(allowed(
            "http://127.0.0.1:8080/path",
            "http://127.0.0.1:1234/path/x"
        ));
        assert!(allowed("http://[::1]/cb", "http://[::1]:4444/cb"));
        assert!(allowed("http://localhost/cb", "http://localhost:4444/cb"));
        assert!(!allowed(
            "http://127.0.0.1/path",
            "http://127.0.0.1:1234/other"
        ));
        assert!(!allowed(
            "http://127.0.0.1/path",
            "http://localhost:1234/path"
        ));
        assert!(!allowed(
            "http://localhost/cb",
            "http://evil.localhost:1234/cb"
        ));
    }

    /// "Normalized scopes": `user,gist,user:email` is saved as `user` and `gist`.
    #[test]
    fn scopes_are_normalized() {
        assert_eq!(normalize_scopes("user,gist,user:email"), ["user", "gist"]);
        assert_eq!(normalize_scopes("read:org admin:org"), ["admin:org"]);
        assert_eq!(normalize_scopes("read:org  read:org"), ["read:org"]);
        assert!(normalize_scopes("").is_empty());
        assert!(covers(&["admin:org".to_string()], &["read:org"]));
        assert!(!covers(&["user:email".to_string()], &["read:org", "user"]));
    }

    #[test]
    fn node_ids_are_githubs_legacy_ones() {
        // The node ids of GitHub's documented examples.
        assert_eq!(node_id("04:User", 1), "MDQ6VXNlcjE=");
        assert_eq!(node_id("04:Team", 1), "MDQ6VGVhbTE=");
        assert_eq!(node_id("012:Organization", 1), "MDEyOk9yZ2FuaXphdGlvbjE=");
        assert_eq!(
            base64_decode("Y2xpZW50OnNlY3JldA==").unwrap(),
            b"client:secret"
        );
    }
}
