//! `jsh login --auth NAME`: single sign-on from the terminal, as `tsh` does it.
//!
//! 1. jsh makes its keys and a secret, and listens on `127.0.0.1:0` under a random path
//!    (`/callback/RANDOM`), so that no other page or local program that finds the port
//!    can end the login with a made-up refusal.
//! 2. It asks the proxy to start a login (`POST /webapi/KIND/login/console`) with its
//!    public keys, that listener's URL and the SHA-256 of the secret; the answer is the
//!    identity provider's login page, which jsh opens in the browser (or prints).
//! 3. The user logs in there; the provider sends the browser to the proxy's callback, and
//!    the proxy sends it on to jsh's listener with the result's id.
//! 4. jsh collects its certificates with the id and the secret (`POST /webapi/sso/result`).
//!
//! The browser (and its history) only ever hold the result's id, which is useless without
//! the secret; the certificates are for keys that never leave this machine.

use crate::error::ClientError;
use crate::login::{Issued, save_login, ttl_seconds};
use crate::profile::{Home, Profile};
use crate::web::{self, LoginAnswer, PingConnector, ProxyAddr, WebTrust};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How long jsh waits for the browser to come back.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);
/// The longest request head the loopback listener reads.
const MAX_REQUEST: usize = 8 * 1024;

/// What an SSO login needs.
#[derive(Debug, Clone)]
pub struct SsoLoginParams {
    pub proxy: ProxyAddr,
    /// The connector's name (`--auth NAME`); empty: the cluster's default.
    pub connector: String,
    pub ttl: Option<Duration>,
    pub trust: WebTrust,
    pub ca_cert: Option<PathBuf>,
}

/// The connector `requested` names among the cluster's, or its default one.
pub fn choose_connector(ping: &web::Ping, requested: &str) -> Result<PingConnector, ClientError> {
    let connectors = &ping.auth.connectors;
    let names = || {
        let names: Vec<String> = connectors
            .iter()
            .map(|c| format!("{} ({})", c.name, c.kind))
            .collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let wanted = if requested.is_empty() {
        ping.auth.connector_name.as_str()
    } else {
        requested
    };
    if wanted.is_empty() {
        return match connectors.as_slice() {
            [only] => Ok(only.clone()),
            _ => Err(ClientError::Sso(format!(
                "name a connector with --auth; the cluster has: {}",
                names()
            ))),
        };
    }
    connectors
        .iter()
        .find(|connector| connector.name == wanted)
        .cloned()
        .ok_or_else(|| {
            ClientError::Sso(format!(
                "the cluster has no connector {wanted:?}; it has: {}",
                names()
            ))
        })
}

#[derive(Serialize)]
struct ConsoleLogin<'a> {
    connector_id: &'a str,
    redirect_url: &'a str,
    ssh_public_key: &'a str,
    tls_public_key_pem: &'a str,
    ttl_seconds: i64,
    client_secret_sha256: &'a str,
}

#[derive(serde::Deserialize)]
struct ConsoleAnswer {
    redirect_url: String,
}

#[derive(Serialize)]
struct ResultRequest<'a> {
    result_id: &'a str,
    client_secret: &'a str,
}

/// Logs in through a connector; `open` is given the provider's login URL (to open a
/// browser, or print it). Replaces the profile in `home`.
pub async fn sso_login(
    home: &Home,
    params: &SsoLoginParams,
    open: impl FnOnce(&str),
) -> Result<Profile, ClientError> {
    let ping = web::ping(&params.proxy, &params.trust).await?;
    let connector = choose_connector(&ping, &params.connector)?;
    let ssh_key = jumpgate_pki::generate_ssh_key("sso@jumpgate")?;
    let (tls_key, tls_public_key) = jumpgate_pki::generate_tls_key()?;
    let mut secret = [0u8; 32];
    rand::fill(&mut secret[..]);
    let secret = hex::encode(secret);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|err| ClientError::Sso(format!("cannot listen on 127.0.0.1: {err}")))?;
    let port = listener
        .local_addr()
        .map_err(|err| ClientError::Sso(err.to_string()))?
        .port();
    let mut path = [0u8; 16];
    rand::fill(&mut path[..]);
    let path = format!("/callback/{}", hex::encode(path));
    let callback = format!("http://127.0.0.1:{port}{path}");
    let started: ConsoleAnswer = web::post_json(
        &params.proxy,
        &params.trust,
        &format!("/webapi/{}/login/console", connector.kind),
        &ConsoleLogin {
            connector_id: &connector.name,
            redirect_url: &callback,
            ssh_public_key: ssh_key.public_openssh.trim(),
            tls_public_key_pem: &tls_public_key,
            ttl_seconds: ttl_seconds(params.ttl),
            client_secret_sha256: &hex::encode(Sha256::digest(secret.as_bytes())),
        },
        "SSO login request",
    )
    .await?;
    // The page is the proxy's word; a browser is only ever sent to a web page, and what
    // is opened is the URL as parsed (the parser drops stray whitespace the check saw
    // differently).
    let page = match url::Url::parse(&started.redirect_url) {
        Ok(url) if matches!(url.scheme(), "https" | "http") => url,
        _ => {
            return Err(ClientError::Sso(format!(
                "the proxy answered with a login page that is not an http(s) URL: {:?}",
                started.redirect_url.chars().take(200).collect::<String>()
            )));
        }
    };
    open(page.as_str());
    let result_id = tokio::time::timeout(BROWSER_TIMEOUT, wait_for_browser(&listener, &path))
        .await
        .map_err(|_| {
            ClientError::Sso(format!(
                "the browser did not come back within {}s; run jsh login --auth {} again",
                BROWSER_TIMEOUT.as_secs(),
                connector.name
            ))
        })??;
    let answer: LoginAnswer = web::post_json(
        &params.proxy,
        &params.trust,
        "/webapi/sso/result",
        &ResultRequest {
            result_id: &result_id,
            client_secret: &secret,
        },
        "SSO login result",
    )
    .await?;
    save_login(
        home,
        &Issued {
            proxy: &params.proxy,
            trust: &params.trust,
            ca_cert: params.ca_cert.clone(),
            user: None,
        },
        ssh_key,
        tls_key,
        answer,
    )
    .await
}

/// What the browser brought back to the loopback listener.
#[derive(Debug, PartialEq, Eq)]
enum BrowserAnswer {
    /// `/callback?result=ID`: the certificates wait under that id.
    Result(String),
    /// `/callback?error=TEXT`: auth refused the login, and says why.
    Refused(String),
}

/// Reads the loopback listener's request line: the answer it carries, if it is one and
/// comes to the login's own `path`.
fn browser_answer(request_line: &str, path: &str) -> Option<BrowserAnswer> {
    let target = request_line.split(' ').nth(1)?;
    let url = url::Url::parse(&format!("http://127.0.0.1{target}")).ok()?;
    if url.path() != path {
        return None;
    }
    let param = |wanted: &str| {
        url.query_pairs()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.into_owned())
    };
    if let Some(id) = param("result") {
        return (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(BrowserAnswer::Result(id));
    }
    // The text is auth's, but it may quote the provider's error description: no control
    // characters reach the terminal, and no more than a screenful.
    param("error").map(|text| {
        BrowserAnswer::Refused(
            text.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(1000)
                .collect(),
        )
    })
}

/// Serves the loopback listener until the browser comes back with the login's result (or
/// its refusal) at `path`; answers each request with a short text page.
async fn wait_for_browser(listener: &TcpListener, path: &str) -> Result<String, ClientError> {
    loop {
        let (mut stream, _) = listener
            .accept()
            .await
            .map_err(|err| ClientError::Sso(format!("the loopback listener failed: {err}")))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
                }
            }
        })
        .await;
        if read.is_err() {
            continue;
        }
        let request_line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let answer = browser_answer(&request_line, path);
        let (status, page) = match &answer {
            Some(BrowserAnswer::Result(_)) => (
                "200 OK",
                "Logged in to Jumpgate. You can close this tab and go back to the terminal.\n"
                    .to_string(),
            ),
            Some(BrowserAnswer::Refused(reason)) => (
                "403 Forbidden",
                format!("The Jumpgate login was refused: {reason}\n"),
            ),
            None => ("404 Not Found", "Not the login callback.\n".to_string()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             X-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\
             Cache-Control: no-store\r\n\r\n{page}",
            page.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        match answer {
            Some(BrowserAnswer::Result(id)) => return Ok(id),
            Some(BrowserAnswer::Refused(reason)) => {
                return Err(ClientError::Sso(format!("the login was refused: {reason}")));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BrowserAnswer, browser_answer};

    #[test]
    fn the_browser_brings_a_result_or_a_refusal_and_nothing_else() {
        let path = "/callback/0123abcd";
        let answer = |line: &str| browser_answer(line, path);
        let id = "ab".repeat(32);
        assert_eq!(
            answer(&format!("GET {path}?result={id} HTTP/1.1")),
            Some(BrowserAnswer::Result(id.clone()))
        );
        assert_eq!(answer(&format!("GET {path}?result=short HTTP/1.1")), None);
        assert_eq!(answer("GET /favicon.ico HTTP/1.1"), None);
        assert_eq!(answer("garbage"), None);
        assert_eq!(
            answer(&format!(
                "GET {path}?error=no%20role%1b%5B31m%0Afor%20you HTTP/1.1"
            )),
            Some(BrowserAnswer::Refused("no role [31m for you".to_string()))
        );
        // Only the login's own path: a page or program that finds the port cannot end
        // the login with a refusal of its own, nor hand it a result.
        assert_eq!(answer("GET /callback?error=gotcha HTTP/1.1"), None);
        assert_eq!(answer(&format!("GET /callback?result={id} HTTP/1.1")), None);
        assert_eq!(answer("GET /callback/0123abce?error=x HTTP/1.1"), None);
    }
}
