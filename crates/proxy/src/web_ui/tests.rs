use super::*;
use axum::body::to_bytes;
use axum::http::Method;
use tower::ServiceExt;

async fn get_with(
    ui: WebUi,
    method: Method,
    path: &str,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = ui.router().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, headers, body.to_vec())
}

async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    get_with(WebUi::new(false), Method::GET, path).await
}

fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .unwrap()
}

fn assert_security_headers(headers: &axum::http::HeaderMap) {
    let csp = header(headers, "content-security-policy");
    let directive = |name: &str| {
        csp.split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in {csp}"))
    };
    assert_eq!(directive("default-src"), "'self'", "{csp}");
    // WebAssembly for the recordings player; never eval or inline script.
    assert_eq!(
        directive("script-src"),
        "'self' 'wasm-unsafe-eval'",
        "{csp}"
    );
    // Inline styles for the terminal (its <style> elements and style attributes).
    assert_eq!(directive("style-src"), "'self' 'unsafe-inline'", "{csp}");
    assert_eq!(directive("frame-ancestors"), "'none'", "{csp}");
    assert_eq!(csp.matches("unsafe-inline").count(), 1, "{csp}");
    assert!(!csp.contains(" 'unsafe-eval'"), "{csp}");
    assert_eq!(header(headers, "x-frame-options"), "DENY");
    assert_eq!(header(headers, "x-content-type-options"), "nosniff");
    assert_eq!(header(headers, "referrer-policy"), "no-referrer");
}

fn index_html() -> &'static [u8] {
    asset("index.html")
        .expect("web/dist/index.html is embedded")
        .1
}

/// The hashed script bundle Vite wrote (the one index.html loads).
fn script_bundle() -> &'static str {
    ASSETS
        .iter()
        .map(|(name, _)| *name)
        // The entry point (the pages loaded later are chunks of their own).
        .find(|name| name.starts_with("assets/index-") && name.ends_with(".js"))
        .expect("the entry script web/dist/assets/index-*.js")
}

#[tokio::test]
async fn the_root_redirects_to_the_app() {
    let (status, headers, _) = get("/").await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(header(&headers, "location"), "/web");
    assert_security_headers(&headers);
}

#[tokio::test]
async fn the_app_is_index_html_revalidated_on_every_load() {
    for path in ["/web", "/web/", "/web/index.html"] {
        let (status, headers, body) = get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&headers, "cache-control"), "no-cache");
        assert_security_headers(&headers);
        assert_eq!(body, index_html(), "{path}");
    }
    let html = String::from_utf8(index_html().to_vec()).unwrap();
    // No inline script: the CSP would refuse it.
    assert!(
        html.contains(&format!("src=\"/web/{}\"", script_bundle())),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
}

#[tokio::test]
async fn hashed_bundles_are_cached_for_a_year() {
    let path = format!("/web/{}", script_bundle());
    let (status, headers, body) = get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header(&headers, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        header(&headers, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_security_headers(&headers);
    assert_eq!(body, asset(script_bundle()).unwrap().1);

    let (status, headers, _) = get("/web/favicon.svg").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "image/svg+xml");
    assert_eq!(header(&headers, "cache-control"), "no-cache");
}

#[tokio::test]
async fn unknown_pages_get_the_app_for_client_side_routing() {
    for path in [
        "/web/login",
        "/web/resources",
        "/web/resources/",
        "/web/terminal/web-1.example.com/root",
        "/web/terminal/my%20node/root",
        "/web/etc/passwd",
    ] {
        let (status, headers, body) = get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body, index_html(), "{path}");
        assert_security_headers(&headers);
    }
}

#[tokio::test]
async fn a_missing_bundle_is_not_found_not_html() {
    let (status, headers, body) = get("/web/assets/index-0ld.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_security_headers(&headers);
    assert_eq!(body, b"not found\n");
}

#[tokio::test]
async fn path_traversal_is_not_found() {
    for path in [
        "/web/../../etc/passwd",
        "/web/../Cargo.toml",
        "/web/./index.html",
        "/web/assets/../index.html",
        "/web/%2e%2e/%2e%2e/etc/passwd",
        "/web/%2E%2E/%2E%2E/etc/passwd",
        "/web/..%2f..%2fetc%2fpasswd",
        "/web/..%2F..%2Fetc%2Fpasswd",
        "/web/..%5c..%5cetc%5cpasswd",
        "/web/%252e%252e/etc/passwd/..",
        "/web/assets/%2e%2e%2f%2e%2e%2f%2e%2e%2fCargo.toml",
        "/web/terminal/%00/root",
        "/web/%c0%ae%c0%ae/etc/passwd",
    ] {
        let (status, headers, body) = get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_security_headers(&headers);
        assert_eq!(body, b"not found\n", "{path}");
    }
    // Not under /web at all: not the UI's (the web API's fallback answers those).
    assert_eq!(lookup("/webfoo"), Lookup::NotFound);
    assert_eq!(lookup("/etc/passwd"), Lookup::NotFound);
}

#[tokio::test]
async fn hsts_only_with_a_public_certificate() {
    for path in ["/", "/web", "/web/resources", "/web/../x"] {
        let (_, headers, _) = get_with(WebUi::new(false), Method::GET, path).await;
        assert!(
            headers.get("strict-transport-security").is_none(),
            "{path}: {headers:?}"
        );
        let (_, headers, _) = get_with(WebUi::new(true), Method::GET, path).await;
        assert_eq!(
            header(&headers, "strict-transport-security"),
            "max-age=63072000",
            "{path}"
        );
        assert_security_headers(&headers);
    }
}

#[tokio::test]
async fn head_and_other_methods() {
    let (status, headers, body) = get_with(WebUi::new(false), Method::HEAD, "/web").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    assert_security_headers(&headers);
    let (status, headers, _) = get_with(WebUi::new(false), Method::POST, "/web/login").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_security_headers(&headers);
}

#[test]
fn assets_are_sorted_for_lookup() {
    assert!(ASSETS.windows(2).all(|pair| pair[0].0 < pair[1].0));
    assert!(
        ASSETS
            .iter()
            .all(|(name, _)| !name.starts_with('/') && !name.contains('\\'))
    );
}
