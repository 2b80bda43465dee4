//! The web UI (docs/web.md): the single-page app in `web/`, built into `web/dist` and
//! embedded in the binary by `build.rs`, served on the proxy's public port next to the
//! web API.
//!
//! - `GET /` redirects to `/web`.
//! - `GET /web`, `/web/`: `index.html`. `/web/FILE`: that built file; hashed bundles under
//!   `/web/assets/` are cached for a year (their names change with their content), the
//!   rest (`index.html`, the icon) is revalidated on every load (`no-cache`), so a new
//!   release is picked up at once.
//! - Any other path under `/web/` is a page of the app (client-side routing): it gets
//!   `index.html`, except a missing file under `/web/assets/` (a stale bundle gets a 404,
//!   not HTML under a script's name) and a path with a `.` or `..` segment or an encoded
//!   separator, which gets a 404: nothing here reads the file system, the assets are an
//!   in-memory list looked up by exact name, and such a path is never a page.
//!
//! Every answer carries the security headers of [`WebUi::headers`]: a strict
//! Content-Security-Policy (scripts and styles only from this origin, no inline code,
//! no framing), `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer`, and `Strict-Transport-Security` when the proxy serves
//! a public certificate (`https_keypairs`): HSTS pinned to a certificate browsers do not
//! trust (the cluster's own CA, in development) would lock users out of the page.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION,
    REFERRER_POLICY, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The files of `web/dist`: (path relative to it, contents), sorted by path.
static ASSETS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// Where the app is served; the Vite build's `base` (web/vite.config.ts) must match.
const BASE: &str = "/web";

/// `default-src 'self'` and no inline script. Styles: the stylesheets are files, and
/// Preact sets element styles through the CSSOM, which CSP does not restrict; but the
/// terminal (`@xterm/xterm`'s DOM renderer) writes its theme and cell sizes into `<style>`
/// elements it makes and colours 24-bit cells with `style` attributes, which CSP governs
/// and which take no nonce: hence `style-src 'unsafe-inline'` (styles only: scripts stay
/// `'self'`, and no page builds markup from strings). `script-src 'wasm-unsafe-eval'`:
/// the recordings player (`asciinema-player`) compiles its terminal emulator from
/// WebAssembly bytes in its bundle; it allows compiling WebAssembly only, not `eval`.
/// `img-src 'self'` (the icon); `connect-src 'self'` covers the API and, in browsers
/// implementing CSP 3, same-origin WebSockets (the terminal). `frame-ancestors 'none'` is
/// X-Frame-Options for browsers that know CSP; `form-action 'self'` and `base-uri 'none'`
/// stop injected markup from sending a form elsewhere or re-rooting relative URLs.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; \
     script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
     img-src 'self'; font-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Two years, the HSTS preload list's minimum; no `includeSubDomains`: the proxy does not
/// know what else runs under its domain.
const HSTS_VALUE: &str = "max-age=63072000";

/// Cache headers: hashed bundles never change under their name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// How the UI is served; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct WebUi {
    hsts: bool,
}

impl WebUi {
    /// `public_certificate`: the proxy serves `https_keypairs` (a certificate browsers
    /// trust), so answers carry `Strict-Transport-Security`.
    pub fn new(public_certificate: bool) -> WebUi {
        WebUi {
            hsts: public_certificate,
        }
    }

    /// The routes `/`, `/web` and `/web/*`, each answer with the security headers.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(redirect_to_app))
            .route(BASE, get(serve))
            .route("/web/", get(serve))
            .route("/web/{*path}", get(serve))
            .layer(middleware::from_fn(move |request: Request, next: Next| {
                let ui = self;
                async move {
                    let mut response = next.run(request).await;
                    ui.add_headers(&mut response);
                    response
                }
            }))
    }

    /// The security headers every UI answer carries.
    pub fn headers(self) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = vec![
            (
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
            ),
            (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
        ];
        if self.hsts {
            headers.push((
                STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(HSTS_VALUE),
            ));
        }
        headers
    }

    fn add_headers(self, response: &mut Response) {
        let map = response.headers_mut();
        for (name, value) in self.headers() {
            map.insert(name, value);
        }
    }
}

async fn redirect_to_app() -> Response {
    (StatusCode::FOUND, [(LOCATION, BASE)]).into_response()
}

/// What a path under `/web` names.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    /// A built file: its path in `web/dist` and contents.
    File(&'static str, &'static [u8]),
    /// A page of the app: `index.html`.
    App,
    NotFound,
}

fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .binary_search_by(|(name, _)| (*name).cmp(path))
        .ok()
        .and_then(|index| ASSETS.get(index))
        .copied()
}

/// Decides from the raw (still percent-encoded) request path.
fn lookup(path: &str) -> Lookup {
    let Some(rest) = path.strip_prefix(BASE) else {
        return Lookup::NotFound;
    };
    let rest = match rest.strip_prefix('/') {
        Some(rest) => rest,
        None if rest.is_empty() => "",
        // `/webfoo` is not under `/web`.
        None => return Lookup::NotFound,
    };
    for segment in rest.split('/') {
        let Ok(decoded) = percent_encoding::percent_decode_str(segment).decode_utf8() else {
            return Lookup::NotFound;
        };
        if decoded == "." || decoded == ".." || decoded.contains(['/', '\\', '\0']) {
            return Lookup::NotFound;
        }
    }
    if rest.is_empty() || rest == "index.html" {
        return Lookup::App;
    }
    if let Some((name, contents)) = asset(rest) {
        return Lookup::File(name, contents);
    }
    if rest.starts_with("assets/") {
        return Lookup::NotFound;
    }
    Lookup::App
}

async fn serve(uri: Uri) -> Response {
    match lookup(uri.path()) {
        Lookup::File(name, contents) => {
            let cache = if name.starts_with("assets/") {
                IMMUTABLE
            } else {
                REVALIDATE
            };
            file(content_type(name), cache, contents)
        }
        Lookup::App => match asset("index.html") {
            Some((_, contents)) => file("text/html; charset=utf-8", REVALIDATE, contents),
            None => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "this proxy was built without the web UI (web/dist/index.html is missing)",
            )
                .into_response(),
        },
        Lookup::NotFound => (
            StatusCode::NOT_FOUND,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            "not found\n",
        )
            .into_response(),
    }
}

fn file(content_type: &'static str, cache: &'static str, contents: &'static [u8]) -> Response {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, cache)],
        Body::from(contents),
    )
        .into_response()
}

/// The types of what Vite writes; anything else is served as bytes (and, with `nosniff`,
/// never run or rendered as something else).
fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map_or("", |(_, extension)| extension);
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests;
