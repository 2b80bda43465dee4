//! A **rogue** OpenID Provider for the negative tests of Jumpgate's OIDC connector: it
//! serves what a provider serves (discovery, JWKS, authorize, token, userinfo), and its ID
//! tokens carry the defect a test chooses ([`Defect`]): a wrong audience, an expired token,
//! a signature by a key not in its JWKS, no nonce, a wrong nonce, a wrong issuer,
//! `alg: none`. [`Defect::None`] gives a well-formed token, so a test shows the same
//! provider's good token is accepted (and the refusals are the checks', not a broken setup).
//!
//! There is no login form: `/authorize` sends the browser straight back with a code, as a
//! provider does for a user already signed in. Tokens are ES256 (ECDSA P-256, SHA-256)
//! JWS, signed with aws-lc-rs (the crypto rustls uses here); only the JOSE framing
//! (base64url of JSON) is written here.
//!
//! It serves plain HTTP on a free loopback port from a thread of its own, until dropped.

use crate::wait::free_port;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// What is wrong with the ID tokens the provider issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// Nothing: a well-formed token.
    None,
    /// `aud` names another client.
    WrongAudience,
    /// `exp` an hour ago (and `iat` two hours ago).
    Expired,
    /// Signed by a key that is not in the provider's JWKS (under the JWKS key's `kid`).
    BadSignature,
    /// No `nonce` claim.
    MissingNonce,
    /// A `nonce`, but not the one the login sent.
    WrongNonce,
    /// `iss` is another provider.
    WrongIssuer,
    /// `alg: none`, no signature.
    AlgNone,
}

/// The user every login is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RogueUser {
    pub sub: String,
    pub email: String,
    pub groups: Vec<String>,
}

/// The provider, serving until dropped.
#[derive(Debug)]
pub struct RogueOidc {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct State {
    issuer: String,
    client_id: String,
    defect: Defect,
    user: RogueUser,
    key: EcdsaKeyPair,
    /// Signs [`Defect::BadSignature`]'s tokens: in no JWKS.
    other_key: EcdsaKeyPair,
    /// Code → the nonce its authorization request carried.
    codes: HashMap<String, Option<String>>,
    tokens_issued: usize,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("issuer", &self.issuer)
            .field("defect", &self.defect)
            .finish_non_exhaustive()
    }
}

const KID: &str = "rogue-1";

impl RogueOidc {
    /// Starts the provider for the OIDC client `client_id`; every login is `user`'s.
    pub fn start(client_id: &str, user: RogueUser) -> RogueOidc {
        let listener = TcpListener::bind(("127.0.0.1", free_port()))
            .expect("the rogue OIDC provider binds a loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the bound address");
        let generate = || {
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("a P-256 key from aws-lc-rs")
        };
        let state = Arc::new(Mutex::new(State {
            issuer: format!("http://{addr}"),
            client_id: client_id.to_string(),
            defect: Defect::None,
            user,
            key: generate(),
            other_key: generate(),
            codes: HashMap::new(),
            tokens_issued: 0,
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("rogue-oidc".to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the rogue OIDC provider's runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    let router = router(shared);
                    tokio::spawn(async move {
                        let _ = axum::serve(listener, router).await;
                    });
                    let _ = stopped.await;
                });
            })
            .expect("spawning the rogue OIDC provider's thread");
        RogueOidc {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Its issuer (and discovery) URL, `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the next ID tokens get wrong.
    pub fn set_defect(&self, defect: Defect) {
        self.lock().defect = defect;
    }

    /// How many ID tokens it has issued (a test checks its login reached the token).
    pub fn tokens_issued(&self) -> usize {
        self.lock().tokens_issued
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for RogueOidc {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

type Shared = Arc<Mutex<State>>;

fn router(state: Shared) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .with_state(state)
}

async fn discovery(AxumState(state): AxumState<Shared>) -> Response {
    let issuer = lock(&state).issuer.clone();
    json_answer(
        StatusCode::OK,
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "groups"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email", "groups"],
        }),
    )
}

fn public_jwk(key: &EcdsaKeyPair) -> Value {
    // An uncompressed P-256 point: 0x04, then X and Y, 32 bytes each.
    let point = key.public_key().as_ref();
    let coordinate = |range: std::ops::Range<usize>| {
        URL_SAFE_NO_PAD.encode(point.get(range).expect("a 65-byte P-256 point"))
    };
    json!({
        "kty": "EC",
        "crv": "P-256",
        "x": coordinate(1..33),
        "y": coordinate(33..65),
        "kid": KID,
        "alg": "ES256",
        "use": "sig",
    })
}

async fn jwks(AxumState(state): AxumState<Shared>) -> Response {
    let state = lock(&state);
    json_answer(StatusCode::OK, json!({ "keys": [public_jwk(&state.key)] }))
}

async fn authorize(
    AxumState(state): AxumState<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (Some(redirect), Some(state_param)) = (query.get("redirect_uri"), query.get("state"))
    else {
        return (
            StatusCode::BAD_REQUEST,
            "redirect_uri and state are required",
        )
            .into_response();
    };
    let Ok(mut url) = url::Url::parse(redirect) else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is not a URL").into_response();
    };
    let code = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
    lock(&state)
        .codes
        .insert(code.clone(), query.get("nonce").cloned());
    url.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", state_param);
    (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
}

fn json_answer(status: StatusCode, value: Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        value.to_string(),
    )
        .into_response()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

fn sign(key: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("aws-lc-rs signs");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

async fn token(AxumState(state): AxumState<Shared>, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let mut state = lock(&state);
    let Some(nonce) = form.get("code").and_then(|code| state.codes.remove(code)) else {
        return json_answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": "unknown code"}),
        );
    };
    let now = now();
    let mut claims: serde_json::Map<String, Value> = serde_json::Map::new();
    let standard = json!({
        "iss": state.issuer,
        "sub": state.user.sub,
        "aud": state.client_id,
        "exp": now + 300,
        "iat": now,
        "email": state.user.email,
        "email_verified": true,
        "groups": state.user.groups,
    });
    if let Value::Object(standard) = standard {
        claims = standard;
    }
    if let Some(nonce) = nonce {
        claims.insert("nonce".to_string(), json!(nonce));
    }
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": KID});
    let id_token = match state.defect {
        Defect::None => sign(&state.key, &header, &Value::Object(claims)),
        Defect::WrongAudience => {
            claims.insert("aud".to_string(), json!("another-client"));
            sign(&state.key, &header, &Value::Object(claims))
        }
        Defect::Expired => {
            claims.insert("exp".to_string(), json!(now - 3600));
            claims.insert("iat".to_string(), json!(now - 7200));
            sign(&state.key, &header, &Value::Object(claims))
        }
        Defect::BadSignature => sign(&state.other_key, &header, &Value::Object(claims)),
        Defect::MissingNonce => {
            claims.remove("nonce");
            sign(&state.key, &header, &Value::Object(claims))
        }
        Defect::WrongNonce => {
            claims.insert("nonce".to_string(), json!("not-the-nonce-of-this-login"));
            sign(&state.key, &header, &Value::Object(claims))
        }
        Defect::WrongIssuer => {
            claims.insert("iss".to_string(), json!("https://rogue.example.com"));
            sign(&state.key, &header, &Value::Object(claims))
        }
        Defect::AlgNone => format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
        ),
    };
    state.tokens_issued += 1;
    json_answer(
        StatusCode::OK,
        json!({
            "access_token": format!("rogue-access-{}", uuid::Uuid::new_v4()),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }),
    )
}

async fn userinfo(AxumState(state): AxumState<Shared>, headers: HeaderMap) -> Response {
    if headers.get(header::AUTHORIZATION).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let state = lock(&state);
    json_answer(
        StatusCode::OK,
        json!({
            "sub": state.user.sub,
            "email": state.user.email,
            "email_verified": true,
            "groups": state.user.groups,
        }),
    )
}
