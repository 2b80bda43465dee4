//! The web API under `/webapi/` (JSON over HTTPS, HTTP/1.1 or HTTP/2), described in
//! `docs/webapi.yaml` (OpenAPI 3):
//!
//! - `GET /webapi/ping`: what a client needs before logging in: cluster name, the
//!   second factor asked for, the proxy's public addresses, the CA pins.
//! - `POST /webapi/login`: password (+ one-time code) → certificates for the client's
//!   own public keys.
//! - `POST /webapi/signup`: a signup token sets a new user's password; the answer has
//!   the `otpauth://` URI to enrol TOTP.
//! - `POST /webapi/host/join`: a join token and a host's public keys → host certificates.
//!
//! The proxy calls the auth API with its own identity and passes the client's address
//! (from the connection, or the load balancer's PROXY header), so auth's per-address
//! rate limits and audit events see the real client. Requests are small; bodies over
//! 64 KiB are refused, and unknown JSON fields are errors naming the field.

use crate::idle::Watched;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use jumpgate_api::proto;
use jumpgate_api::{AuthClient, JsonObject};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;
use tracing::debug;

const MAX_BODY: usize = 64 * 1024;
/// How long `ping` answers from its copy of the auth status (CA pins change on rotation).
const STATUS_TTL: Duration = Duration::from_secs(10);
/// A client that sends no request headers within this is disconnected.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The web API; cheap to clone.
#[derive(Clone)]
pub struct WebApi {
    router: Router,
    state: Arc<WebState>,
}

impl std::fmt::Debug for WebApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebApi").finish_non_exhaustive()
    }
}

pub(crate) struct WebState {
    /// Replaced when the proxy's identity is renewed (after a CA rotation).
    auth: std::sync::RwLock<AuthClient>,
    /// The auth service's address(es), for clients with a web session's own identity.
    pub(crate) auth_addr: String,
    pub(crate) public_addrs: Vec<String>,
    status: Mutex<Option<(Instant, proto::StatusResponse)>>,
    /// Web UI sessions seen lately ([`crate::websession`]).
    pub(crate) sessions: crate::websession::Sessions,
    /// SSH routing, for the web terminal; set once the proxy has it.
    pub(crate) ssh: std::sync::OnceLock<crate::SshRouting>,
    /// Counts auth clients put in service after the first.
    renewals: tokio::sync::watch::Sender<u64>,
}

impl WebState {
    pub(crate) fn auth(&self) -> AuthClient {
        self.auth
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The client's address, per connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) SocketAddr);

impl WebApi {
    /// `auth` carries the proxy's identity (to `auth_addr`); `public_addrs` are what
    /// clients are told.
    pub fn new(auth: AuthClient, auth_addr: String, public_addrs: Vec<String>) -> WebApi {
        let state = Arc::new(WebState {
            auth: std::sync::RwLock::new(auth),
            auth_addr,
            sessions: crate::websession::Sessions::default(),
            ssh: std::sync::OnceLock::new(),
            public_addrs,
            status: Mutex::new(None),
            renewals: tokio::sync::watch::Sender::new(0),
        });
        let router = Router::new()
            .route("/webapi/ping", get(ping))
            .route("/webapi/login", post(login))
            .route("/webapi/signup", post(signup))
            .route("/webapi/host/join", post(join))
            .merge(crate::websession::routes())
            .merge(crate::terminal::routes())
            .merge(crate::webviews::routes())
            .merge(crate::webadmin::routes())
            .merge(crate::websso::routes())
            .merge(crate::webmfa::routes())
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(state.clone());
        WebApi { router, state }
    }

    /// Serves the web UI (`/`, `/web`, `/web/*`: [`crate::web_ui`]) next to the API on the
    /// same connections.
    pub fn with_ui(mut self, ui: crate::web_ui::WebUi) -> WebApi {
        self.router = ui.router().merge(self.router);
        self
    }

    /// The auth client the web API uses now (the proxy's current identity).
    pub fn auth_client(&self) -> AuthClient {
        self.state.auth()
    }

    /// Gives the web terminal the proxy's SSH routing (once; later calls are ignored).
    pub fn set_ssh_routing(&self, routing: crate::SshRouting) {
        let _ = self.state.ssh.set(routing);
    }

    /// Uses `auth` for the calls from now on.
    pub fn set_auth_client(&self, auth: AuthClient) {
        *self
            .state
            .auth
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = auth;
        self.state.renewals.send_modify(|count| *count += 1);
    }

    /// Changes each time [`WebApi::set_auth_client`] puts a new client in service: the
    /// proxy's watches start over with it.
    pub fn auth_renewals(&self) -> tokio::sync::watch::Receiver<u64> {
        self.state.renewals.subscribe()
    }

    /// Serves HTTP on one TLS connection until the client goes.
    ///
    /// The first request must start within `first_request` (what is left of the
    /// handshake deadline), and a connection on which nothing moves for `idle` is
    /// closed: hyper's auto builder alone would wait for a silent client's first byte
    /// forever.
    pub async fn serve_connection<S>(
        &self,
        stream: S,
        client: SocketAddr,
        first_request: Duration,
        idle: Duration,
    ) where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let service =
            TowerToHyperService::new(self.router.clone().layer(Extension(ClientAddr(client))));
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT);
        let (stream, activity) = Watched::new(stream);
        // With upgrades: the web terminal's WebSocket.
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::select! {
            served = connection => {
                if let Err(err) = served {
                    debug!(%client, %err, "web API connection ended");
                }
            }
            why = activity.expired(first_request, idle) => {
                debug!(%client, why, "closed a web API connection");
            }
        }
    }
}

/// Errors as `{"error": {"code": ..., "message": ...}}` with a matching HTTP status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Where in the request's document (a role's YAML) the error is: line, column.
    location: Option<(usize, usize)>,
}

impl ApiError {
    /// The HTTP status it answers with.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// What it says.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_argument",
            message: message.into(),
            location: None,
        }
    }

    /// A refused document, with where in it the error is (1-based line and column).
    pub(crate) fn invalid_at(message: impl Into<String>, line: usize, column: usize) -> ApiError {
        ApiError {
            location: Some((line, column)),
            ..ApiError::bad_request(message)
        }
    }

    pub(crate) fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
            message: message.into(),
            location: None,
        }
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "permission_denied",
            message: message.into(),
            location: None,
        }
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: message.into(),
            location: None,
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            location: None,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: message.into(),
            location: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let (Some((line, column)), Some(fields)) = (self.location, error.as_object_mut()) {
            fields.insert("line".to_string(), line.into());
            fields.insert("column".to_string(), column.into());
        }
        let body = serde_json::json!({ "error": error });
        (self.status, Json(body)).into_response()
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> ApiError {
        use tonic::Code;
        let (http, code) = match status.code() {
            Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
            Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Code::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
            Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Code::Unavailable | Code::DeadlineExceeded => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        // Auth marks an unavailability it explains to the user (an identity provider not
        // answering); any other is worded here, without transport or backend details.
        let explained = status
            .metadata()
            .contains_key(jumpgate_api::UNAVAILABLE_EXPLAINED);
        let message = match status.code() {
            Code::Unavailable | Code::DeadlineExceeded if !explained => {
                "the auth service is unreachable from the proxy; try again".to_string()
            }
            _ => status.message().to_string(),
        };
        ApiError {
            status: http,
            code,
            message,
            location: None,
        }
    }
}

impl From<jumpgate_client::admin::AdminError> for ApiError {
    fn from(err: jumpgate_client::admin::AdminError) -> ApiError {
        use jumpgate_client::admin::AdminError;
        match err {
            AdminError::Refused { status } => status.into(),
            AdminError::Resource(_) | AdminError::Name(_) => ApiError::bad_request(err.to_string()),
            AdminError::Connect(_) => {
                ApiError::unavailable("the auth service is unreachable from the proxy; try again")
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let status = rejection.status();
        ApiError {
            status,
            code: if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "invalid_argument"
            },
            message: format!("request body: {}", rejection.body_text()),
            location: None,
        }
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "no such endpoint; see docs/webapi.yaml".to_string(),
        location: None,
    }
}

#[derive(Debug, Serialize)]
struct PingResponse {
    cluster_name: String,
    server_version: String,
    proxy: ProxyInfo,
    auth: AuthInfo,
    /// `sha256:<hex>` of every trusted TLS CA: what joining hosts pin.
    ca_pins: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ProxyInfo {
    public_addr: Vec<String>,
}

#[derive(Debug, Serialize)]
struct AuthInfo {
    /// The login offered first: `local`, `oidc`, `saml` or `github`.
    #[serde(rename = "type")]
    kind: String,
    second_factor: String,
    /// The default connector of an SSO `type`.
    connector_name: String,
    /// Whether passwords are accepted.
    local_auth: bool,
    /// Whether a passkey alone logs in (security keys on, `passwordless` not false).
    passwordless: bool,
    /// Every SSO connector: the login page's buttons, `jsh login --auth`'s choices.
    connectors: Vec<ConnectorInfo>,
}

#[derive(Debug, Serialize)]
struct ConnectorInfo {
    kind: String,
    name: String,
    display: String,
}

async fn ping(State(state): State<Arc<WebState>>) -> ApiResult<PingResponse> {
    let status = {
        let mut cached = state.status.lock().await;
        match cached.as_ref() {
            Some((at, status)) if at.elapsed() < STATUS_TTL => status.clone(),
            _ => {
                let status = state
                    .auth()
                    .status(proto::StatusRequest {})
                    .await?
                    .into_inner();
                *cached = Some((Instant::now(), status.clone()));
                status
            }
        }
    };
    Ok(Json(PingResponse {
        cluster_name: status.cluster_name,
        server_version: status.server_version,
        proxy: ProxyInfo {
            public_addr: state.public_addrs.clone(),
        },
        auth: AuthInfo {
            kind: if status.auth_type.is_empty() {
                "local".to_string()
            } else {
                status.auth_type
            },
            second_factor: status.second_factor,
            connector_name: status.connector_name,
            local_auth: status.local_auth,
            passwordless: status.passwordless,
            connectors: status
                .connectors
                .into_iter()
                .map(|connector| ConnectorInfo {
                    kind: connector.kind,
                    name: connector.name,
                    display: connector.display,
                })
                .collect(),
        },
        ca_pins: status.ca_pins,
    }))
}

/// The body of `POST /webapi/login`.
/// Read as a [`JsonObject`] (never from a JSON array). Public for fuzzing
/// (`fuzz/fuzz_targets/webapi_json.rs`); the fields stay private.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    user: String,
    password: String,
    #[serde(default)]
    otp: String,
    #[serde(default)]
    ssh_public_key: String,
    #[serde(default)]
    tls_public_key_pem: String,
    #[serde(default)]
    ttl_seconds: i64,
}

/// Certificates for the client's keys: the answer of `/webapi/login` and of an SSO login's
/// `/webapi/sso/result`.
#[derive(Debug, Serialize)]
pub(crate) struct LoginResponse {
    ssh_certificate: String,
    tls_certificate_pem: String,
    tls_ca_pems: Vec<String>,
    host_ca_known_hosts: String,
    expires_unix: i64,
    principals: Vec<String>,
    roles: Vec<String>,
}

async fn login(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    body: Result<Json<JsonObject<LoginRequest>>, JsonRejection>,
) -> ApiResult<LoginResponse> {
    let Json(JsonObject(request)) = body?;
    if request.ssh_public_key.is_empty() && request.tls_public_key_pem.is_empty() {
        return Err(ApiError::bad_request(
            "send ssh_public_key, tls_public_key_pem or both: the certificates are for your own keys",
        ));
    }
    let issued = state
        .auth()
        .login(proto::LoginRequest {
            user: request.user,
            password: request.password,
            otp: request.otp,
            ssh_public_key: request.ssh_public_key,
            tls_public_key_pem: request.tls_public_key_pem,
            ttl_seconds: request.ttl_seconds,
            client_addr: client.to_string(),
        })
        .await?
        .into_inner();
    Ok(Json(LoginResponse::from(issued)))
}

impl From<proto::LoginResponse> for LoginResponse {
    fn from(issued: proto::LoginResponse) -> LoginResponse {
        LoginResponse {
            ssh_certificate: issued.ssh_certificate,
            tls_certificate_pem: issued.tls_certificate_pem,
            tls_ca_pems: issued.tls_ca_pems,
            host_ca_known_hosts: issued.host_ca_known_hosts,
            expires_unix: issued.expires_unix,
            principals: issued.principals,
            roles: issued.roles,
        }
    }
}

/// The body of `POST /webapi/signup`.
/// Read as a [`JsonObject`] (never from a JSON array). Public for fuzzing
/// (`fuzz/fuzz_targets/webapi_json.rs`); the fields stay private.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    token: String,
    password: String,
    /// A current code of the invite's TOTP secret (`POST /webapi/signup/check`); required
    /// when the cluster's second factor is otp.
    #[serde(default)]
    otp: String,
}

#[derive(Debug, Serialize)]
struct SignupResponse {
    user: String,
    /// Scan into an authenticator app; empty when the cluster asks for no second factor.
    otpauth_uri: String,
}

async fn signup(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    body: Result<Json<JsonObject<SignupRequest>>, JsonRejection>,
) -> ApiResult<SignupResponse> {
    let Json(JsonObject(request)) = body?;
    let done = state
        .auth()
        .complete_signup(proto::CompleteSignupRequest {
            token: request.token,
            password: request.password,
            otp: request.otp,
            client_addr: client.to_string(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(Json(SignupResponse {
        user: done.user,
        otpauth_uri: done.otpauth_uri,
    }))
}

/// The body of `POST /webapi/host/join`.
/// Read as a [`JsonObject`] (never from a JSON array). Public for fuzzing
/// (`fuzz/fuzz_targets/webapi_json.rs`); the fields stay private.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    token: String,
    /// `node` or `proxy`.
    role: String,
    host_name: String,
    host_uuid: String,
    ssh_public_key: String,
    tls_public_key_pem: String,
    #[serde(default)]
    addresses: Vec<String>,
}

#[derive(Debug, Serialize)]
struct JoinResponse {
    cluster_name: String,
    ssh_host_certificate: String,
    tls_certificate_pem: String,
    tls_ca_pems: Vec<String>,
    user_ca_keys: String,
    host_ca_known_hosts: String,
    /// The UUID auth decided: the one asked for unless another host holds it.
    host_uuid: String,
}

async fn join(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    body: Result<Json<JsonObject<JoinRequest>>, JsonRejection>,
) -> ApiResult<JoinResponse> {
    let Json(JsonObject(request)) = body?;
    let joined = state
        .auth()
        .join(proto::JoinRequest {
            token: request.token,
            role: request.role,
            host_name: request.host_name,
            host_uuid: request.host_uuid,
            ssh_public_key: request.ssh_public_key,
            tls_public_key_pem: request.tls_public_key_pem,
            addresses: request.addresses,
            client_addr: client.to_string(),
        })
        .await?
        .into_inner();
    Ok(Json(JoinResponse {
        cluster_name: joined.cluster_name,
        ssh_host_certificate: joined.ssh_host_certificate,
        tls_certificate_pem: joined.tls_certificate_pem,
        tls_ca_pems: joined.tls_ca_pems,
        user_ca_keys: joined.user_ca_keys,
        host_ca_known_hosts: joined.host_ca_known_hosts,
        host_uuid: joined.host_uuid,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailability_auth_explains_is_shown_and_others_are_worded_here() {
        let mut explained = tonic::Status::unavailable("the identity provider did not answer");
        explained.metadata_mut().insert(
            jumpgate_api::UNAVAILABLE_EXPLAINED,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        let shown = ApiError::from(explained);
        assert_eq!(shown.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shown.message, "the identity provider did not answer");
        let transport = ApiError::from(tonic::Status::unavailable("tcp connect error: 10.0.0.5"));
        assert_eq!(transport.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            transport.message.contains("auth service is unreachable"),
            "{}",
            transport.message
        );
    }

    /// What the handlers' extractor does with a body, as the fuzz target calls it.
    fn login(body: &str) -> Result<LoginRequest, JsonRejection> {
        Json::<JsonObject<LoginRequest>>::from_bytes(body.as_bytes())
            .map(|Json(JsonObject(request))| request)
    }

    #[test]
    fn bodies_are_json_objects_only() {
        let request = login(r#"{"user":"alice","password":"pw","ssh_public_key":"k"}"#).unwrap();
        assert_eq!(request.user, "alice");
        assert_eq!(request.ttl_seconds, 0);
        // serde alone would read these by position (found by the webapi_json fuzz target).
        for body in [r#"["alice","pw"]"#, r#"["alice","pw","","k","",0]"#] {
            let refused = login(body).unwrap_err();
            assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert!(
                refused.body_text().contains("expected a JSON object"),
                "{body}"
            );
        }
        let unknown = login(r#"{"user":"a","password":"b","admin":true}"#).unwrap_err();
        assert!(
            unknown.body_text().contains("admin"),
            "{}",
            unknown.body_text()
        );
    }
}
