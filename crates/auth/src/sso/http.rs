//! Auth's one HTTP client for identity providers (OIDC discovery, keys, tokens and
//! userinfo; GitHub's OAuth and API): rustls with aws-lc-rs and the system's roots, as
//! every other TLS connection of Jumpgate.
//!
//! It follows no redirects (a provider's answer is the answer: a redirect to somewhere
//! else is not followed into the internal network), gives up after [`TIMEOUT`] (a login
//! waits on it, never a connection), and reads at most [`MAX_BODY`] of a body.

use openidconnect::{HttpRequest, HttpResponse};
use std::time::Duration;

/// How long one request to a provider may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest body read from a provider (discovery documents and key sets are a few KiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// Why a request to a provider failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Request(#[from] reqwest::Error),
    #[error("the answer is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("{0}")]
    Build(String),
}

/// Cheap to clone: one connection pool.
#[derive(Debug, Clone)]
pub struct HttpClient(reqwest::Client);

impl HttpClient {
    pub fn new() -> Result<HttpClient, HttpError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .user_agent(concat!("jumpgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpClient(client))
    }

    /// The client for requests of our own (GitHub's API).
    pub fn inner(&self) -> &reqwest::Client {
        &self.0
    }

    /// Sends one request of the `openidconnect`/`oauth2` crates.
    pub async fn execute(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_limited(response).await?;
        let mut built = openidconnect::http::Response::builder().status(status);
        if let Some(map) = built.headers_mut() {
            *map = headers;
        }
        built
            .body(body)
            .map_err(|err| HttpError::Build(err.to_string()))
    }
}

/// For the `openidconnect` crate's requests.
impl<'c> openidconnect::AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}

/// A response's body, refused past [`MAX_BODY`].
pub async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
