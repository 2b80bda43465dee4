//! SAML's endpoints on the proxy's port (docs/sso.md), beside [`crate::websso`]'s, which
//! start SAML logins as any other (`/webapi/saml/login/web`, `/webapi/saml/login/console`).
//! Paths are Teleport's, so its connectors (`acs: https://PROXY/v1/webapi/saml/acs/NAME`)
//! work as written:
//!
//! - `POST /v1/webapi/saml/acs/NAME` (also `/v1/webapi/saml/acs`, and both without `/v1`):
//!   the assertion consumer service, where the IdP has the browser post `SAMLResponse` and
//!   `RelayState` (HTTP-POST binding). It answers a small page of our own origin that posts
//!   the same fields on to `POST /webapi/saml/finish`, which has auth finish the login.
//! - `GET /v1/webapi/saml/metadata/NAME` (also without `/v1`): the connector's SP metadata
//!   (entity ID, ACS URL), to give the IdP.
//! - `GET /webapi/saml/sso?connector_id=NAME&redirect_url=/web/...`: Teleport's name for
//!   starting a web login.
//!
//! # Why the ACS answers a page that posts again
//!
//! A web login finishes only in the browser that started it (no login CSRF): auth compares
//! the state cookie `__Host-jumpgate_sso` with the answer's `RelayState`. That cookie is
//! `SameSite=Lax`, which browsers do not send with the IdP's cross-site POST to the ACS.
//! So the ACS checks nothing itself: it hands the fields back to the browser in a page of
//! our origin whose form posts them to `/webapi/saml/finish`. That POST is same-site, so it
//! carries the cookie, and auth decides with it. A cross-site POST straight to the finish
//! endpoint carries no cookie and is refused. The bounce gives an attacker nothing: it only
//! makes the browser send its own cookie with fields the attacker could already send, and
//! the cookie matches only the `RelayState` of a login this browser started.
//!
//! The alternative, a second cookie with `SameSite=None` for SAML alone, would be sent
//! with every cross-site request to the proxy, and depends on browsers keeping
//! `SameSite=None` cookies on cross-site top-level POSTs, which tracking protections are
//! narrowing. The page needs script to continue by itself (served from our origin, under a
//! strict CSP); without script it shows a Continue button.

use crate::web::{ClientAddr, WebState};
use crate::websso::{LoginWebQuery, STATE_COOKIE, failure_page, finish, login_web};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jumpgate_api::proto;
use std::collections::HashMap;
use std::sync::Arc;

/// The largest post to the ACS: a response of [`jumpgate_saml::MAX_RESPONSE_LEN`] base64
/// characters, form-encoded, and the rest of the form.
const MAX_POST: usize = jumpgate_saml::MAX_RESPONSE_LEN * 3 / 2 + 4096;

/// Where the page of the ACS posts the fields on to.
const FINISH_PATH: &str = "/webapi/saml/finish";
const CONTINUE_SCRIPT_PATH: &str = "/webapi/saml/continue.js";

pub(crate) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/v1/webapi/saml/acs", post(acs))
        .route("/webapi/saml/acs", post(acs))
        .route("/v1/webapi/saml/acs/{connector}", post(acs_named))
        .route("/webapi/saml/acs/{connector}", post(acs_named))
        .route(FINISH_PATH, post(finish_post))
        .layer(DefaultBodyLimit::max(MAX_POST))
        .route(CONTINUE_SCRIPT_PATH, get(continue_script))
        .route("/v1/webapi/saml/metadata/{connector}", get(metadata))
        .route("/webapi/saml/metadata/{connector}", get(metadata))
        .route("/webapi/saml/sso", get(sso))
        .route("/v1/webapi/saml/sso", get(sso))
}

/// The fields of a post to the ACS (or to the finish endpoint).
#[derive(Debug, Default)]
struct Posted {
    saml_response: String,
    relay_state: String,
    connector: String,
}

impl Posted {
    /// Reads a form body; refuses what no IdP (or our page) sends, so nothing else is
    /// ever put in a page or sent to auth.
    fn parse(body: &[u8], connector: Option<String>) -> Result<Posted, &'static str> {
        let mut posted = Posted {
            connector: connector.unwrap_or_default(),
            ..Posted::default()
        };
        for (name, value) in url::form_urlencoded::parse(body) {
            match name.as_ref() {
                "SAMLResponse" => posted.saml_response = value.into_owned(),
                "RelayState" => posted.relay_state = value.into_owned(),
                "connector" if posted.connector.is_empty() => posted.connector = value.into_owned(),
                _ => {}
            }
        }
        if posted.saml_response.is_empty() {
            return Err(
                "the post has no SAMLResponse; the IdP must post the response to \
                        this address (HTTP-POST binding)",
            );
        }
        let base64 = |c: char| c.is_ascii_alphanumeric() || "+/=\r\n ".contains(c);
        if !posted.saml_response.chars().all(base64) {
            return Err("the SAMLResponse is not base64");
        }
        let token = |text: &str, max: usize| {
            text.len() <= max
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !token(&posted.relay_state, jumpgate_saml::MAX_RELAY_STATE) {
            return Err(
                "the RelayState is not one of Jumpgate's; start the login from \
                        Jumpgate's login page (IdP-initiated logins are refused)",
            );
        }
        if !token(&posted.connector, 128) {
            return Err("no such connector");
        }
        Ok(posted)
    }
}

async fn acs(body: Bytes) -> Response {
    acs_page(&body, None)
}

async fn acs_named(Path(connector): Path<String>, body: Bytes) -> Response {
    acs_page(&body, Some(connector))
}

/// The page of our origin that posts the IdP's fields on to [`FINISH_PATH`].
fn acs_page(body: &[u8], connector: Option<String>) -> Response {
    let posted = match Posted::parse(body, connector) {
        Ok(posted) => posted,
        Err(reason) => return failure_page(StatusCode::BAD_REQUEST, reason),
    };
    let field = |name: &str, value: &str| {
        format!(
            r#"<input type="hidden" name="{name}" value="{}">"#,
            html_escape(value)
        )
    };
    let page = format!(
        concat!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Signing in</title>",
            "<script src=\"{script}\" defer></script></head><body>",
            "<form method=\"post\" action=\"{action}\">{fields}",
            "<p>Signing in to Jumpgate…</p><noscript><p>Script is off: press Continue to ",
            "finish signing in.</p></noscript><button type=\"submit\">Continue</button>",
            "</form></body></html>\n"
        ),
        script = CONTINUE_SCRIPT_PATH,
        action = FINISH_PATH,
        fields = [
            field("SAMLResponse", &posted.saml_response),
            field("RelayState", &posted.relay_state),
            field("connector", &posted.connector),
        ]
        .concat(),
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // No `form-action`: Chromium applies it to the redirects after the post too,
            // and a jsh login ends at jsh's loopback listener. The page's one form is ours,
            // with a fixed action and checked, escaped values.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; base-uri 'none'; \
                 frame-ancestors 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        page,
    )
        .into_response()
}

async fn continue_script() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        "document.forms[0].submit();\n",
    )
        .into_response()
}

/// The post from the ACS's page (same-site, so with the state cookie): auth finishes.
async fn finish_post(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let posted = match Posted::parse(&body, None) {
        Ok(posted) => posted,
        Err(reason) => return failure_page(StatusCode::BAD_REQUEST, reason),
    };
    let params: HashMap<String, String> = [
        ("SAMLResponse".to_owned(), posted.saml_response),
        ("RelayState".to_owned(), posted.relay_state),
    ]
    .into();
    finish(
        &state,
        proto::FinishSsoLoginRequest {
            kind: "saml".to_owned(),
            params,
            client_addr: client.to_string(),
            connector: posted.connector,
            browser_state: crate::websession::cookie_value(&headers, STATE_COOKIE)
                .unwrap_or_default(),
        },
    )
    .await
}

async fn metadata(State(state): State<Arc<WebState>>, Path(connector): Path<String>) -> Response {
    match state
        .auth()
        .get_saml_metadata(proto::GetSamlMetadataRequest { connector })
        .await
    {
        Ok(answer) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/samlmetadata+xml"),
            )],
            answer.into_inner().xml,
        )
            .into_response(),
        Err(status) => {
            let err = crate::web::ApiError::from(status);
            (
                err.status(),
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{}\n", err.message()),
            )
                .into_response()
        }
    }
}

/// Teleport's `GET /webapi/saml/sso`: a web login through a saml connector.
async fn sso(
    state: State<Arc<WebState>>,
    client: Extension<ClientAddr>,
    query: Query<LoginWebQuery>,
) -> Response {
    login_web(state, client, Path("saml".to_owned()), query).await
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_an_idp_posts_is_taken() {
        let ok = Posted::parse(
            b"SAMLResponse=PHNhbWw%2B&RelayState=ab12",
            Some("okta".into()),
        )
        .unwrap();
        assert_eq!(ok.saml_response, "PHNhbWw+");
        assert_eq!(ok.relay_state, "ab12");
        assert_eq!(ok.connector, "okta");
        for bad in [
            &b"RelayState=ab12"[..],
            b"SAMLResponse=%22%3E%3Cscript%3E",
            b"SAMLResponse=PHN&RelayState=%22%3E",
            b"SAMLResponse=PHN&RelayState=https%3A%2F%2Fevil.example%2F",
            b"SAMLResponse=PHN&connector=a%2Fb",
        ] {
            assert!(
                Posted::parse(bad, None).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
