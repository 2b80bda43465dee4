//! The web terminal end to end (issue 17): a WebSocket to the proxy, opened with a web
//! session's cookie as a browser does, is a real PTY session on the node as the session's
//! user: output, input, resize, the exit status in the close frame, one `session.start`
//! in the audit log and a recording with what was typed; the session listed as in progress
//! while it runs (to whom the roles allow). Refusals: a socket from another
//! site or with no `Origin`, a node the roles deny, a login they do not allow.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use futures::{SinkExt, StreamExt};
use std::path::Path;
use std::time::Duration;
use support::{free_port, start_daemon, text, wait_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Logs in for the web with curl's help-free HTTP: returns the session cookie's value.
fn web_login(proxy: &str, ca: &Path, user: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-i", "--cacert"])
        .arg(ca)
        .args(["-H", "content-type: application/json", "--data"])
        .arg(
            serde_json::json!({"user": user, "password": jumpgate_test_support::PASSWORD})
                .to_string(),
        )
        .arg(format!("https://{proxy}/webapi/web/login"))
        .output()
        .unwrap();
    let head = text(&out.stdout).to_lowercase();
    head.lines()
        .find_map(|line| line.strip_prefix("set-cookie: __host-jumpgate_web="))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {}", text(&out.stdout)))
        .to_string()
}

/// `GET path` with the session cookie: (status, headers in lowercase, body).
fn web_get(proxy: &str, ca: &Path, cookie: &str, path: &str) -> (u16, String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-i", "--cacert"])
        .arg(ca)
        .args(["-H", &format!("cookie: __Host-jumpgate_web={cookie}")])
        .arg(format!("https://{proxy}{path}"))
        .output()
        .unwrap();
    let raw = text(&out.stdout);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_lowercase(), body.to_string())
}

/// Opens the terminal socket; `Err(status)` when the upgrade is refused.
async fn open(
    proxy: &str,
    ca: &Path,
    cookie: &str,
    query: &str,
    origin: Option<&str>,
) -> Result<Socket, u16> {
    let tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let ca_pem = std::fs::read(ca).unwrap();
    let tls = tokio_rustls::TlsConnector::from(jumpgate_test_support::tls_client_trusting(
        &ca_pem,
        b"http/1.1",
    ));
    let host = proxy.split(':').next().unwrap().to_string();
    let name = rustls::pki_types::ServerName::try_from(host).unwrap();
    let stream = tls.connect(name, tcp).await.unwrap();
    let mut request = format!("wss://{proxy}/webapi/web/terminal?{query}")
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "cookie",
        format!("__Host-jumpgate_web={cookie}").parse().unwrap(),
    );
    if let Some(origin) = origin {
        headers.insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(err) => panic!("websocket: {err}"),
    }
}

/// Opens a socket the proxy refuses after the upgrade: its close code and reason.
async fn refused(proxy: &str, ca: &Path, cookie: &str, query: &str, origin: &str) -> (u16, String) {
    let mut socket = open(proxy, ca, cookie, query, Some(origin))
        .await
        .expect("the upgrade is accepted, then closed with the reason");
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(message)) = socket.next().await {
            match message {
                Message::Close(Some(frame)) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Message::Close(None) => return (0, String::new()),
                _ => {}
            }
        }
        (0, String::new())
    })
    .await;
    closed.expect("the refused socket is closed within 10 s")
}

/// Reads frames until the terminal output holds `wanted` (at most 20 s); returns it all.
async fn read_until(socket: &mut Socket, wanted: &str) -> String {
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Binary(bytes) = message {
                seen.push_str(&String::from_utf8_lossy(&bytes));
                if seen.contains(wanted) {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert!(found == Ok(true), "no {wanted:?} in the terminal: {seen:?}");
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_terminal_is_a_recorded_pty_session_as_the_sessions_user() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let data = dir.join("data");
    let proxy = format!("127.0.0.1:{}", free_port());
    let config = dir.join("cluster.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: term-node\nauth_service:\n  cluster_name: term\n  authentication:\n    second_factor: \"off\"\nproxy_service:\n  web_listen_addr: {proxy}\nssh_service:\n  enabled: true\n  labels:\n    env: dev\n",
            data.display()
        ),
    )
    .unwrap();
    let cluster = start_daemon(
        &["-c", config.to_str().unwrap(), "--proxy-addr", &proxy],
        &dir.join("cluster.log"),
    );
    cluster.wait_ready(&["auth", "proxy"], &[&data.join("admin/auth_addr")]);
    let login = jumpgate_test_support::current_user();
    let add = |name: &str, roles: &str| {
        support::jctl_ok_stdin(
            &data,
            &[
                "users",
                "add",
                name,
                "--roles",
                roles,
                "--logins",
                &login,
                "--password-stdin",
            ],
            &format!("{}\n", jumpgate_test_support::PASSWORD),
        );
    };
    add("tess", "access");
    let ca = data.join("admin/ca.pem");
    let cookie = web_login(&proxy, &ca, "tess");
    let origin = format!("https://{proxy}");
    assert!(
        wait_until(Duration::from_secs(20), || support::node(
            &data,
            "term-node"
        )
        .is_some()),
        "{}",
        cluster.log_text()
    );

    // Refused before any SSH: no Origin, another site's Origin, a login the roles do not
    // allow, a node that does not exist.
    let query = format!("node=term-node&login={login}&cols=80&rows=24");
    assert_eq!(
        open(&proxy, &ca, &cookie, &query, None).await.err(),
        Some(403)
    );
    assert_eq!(
        open(&proxy, &ca, &cookie, &query, Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    // A refused node or login is told over the socket (a browser cannot read a refused
    // upgrade): closed at once with 4001 and the reason.
    let not_allowed = "node=term-node&login=nobody-allowed&cols=80&rows=24";
    let (code, reason) = refused(&proxy, &ca, &cookie, not_allowed, &origin).await;
    assert_eq!(code, 4001, "{reason}");
    assert!(reason.contains("nobody-allowed"), "{reason}");
    let absent = format!("node=no-such-node&login={login}");
    let (code, reason) = refused(&proxy, &ca, &cookie, &absent, &origin).await;
    assert_eq!(code, 4001, "{reason}");
    assert!(reason.contains("no node named"), "{reason}");
    assert_eq!(
        open(&proxy, &ca, "00", &query, Some(&origin)).await.err(),
        Some(401)
    );

    // A real terminal: a command's output, a resize, then the exit status.
    let mut socket = open(&proxy, &ca, &cookie, &query, Some(&origin))
        .await
        .unwrap();
    socket
        .send(Message::Binary(b"echo web-$((6*7))\n".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut socket, "web-42").await;
    socket
        .send(Message::Text(r#"{"resize": [100, 30]}"#.into()))
        .await
        .unwrap();
    socket
        .send(Message::Binary(b"stty size\n".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut socket, "30 100").await;

    // The session is listed as in progress: to its user and to an auditor, not to
    // another user with `access` (who sees only their own).
    add("aud", "access,auditor");
    add("ned", "access");
    let active = |user: &str| {
        let cookie = web_login(&proxy, &ca, user);
        let (status, _, body) = web_get(&proxy, &ca, &cookie, "/webapi/web/active-sessions");
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        page["sessions"].as_array().cloned().unwrap_or_default()
    };
    let tess_listed = |sessions: &[serde_json::Value]| {
        sessions.iter().any(|session| {
            session["user"] == "tess"
                && session["node_hostname"] == "term-node"
                && session["login"] == login.as_str()
                && session["interactive"] == true
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), || tess_listed(&active("tess"))),
        "tess's session is not listed for tess: {:?}",
        active("tess")
    );
    assert!(tess_listed(&active("aud")), "{:?}", active("aud"));
    let seen_by_ned = active("ned");
    assert!(
        seen_by_ned.is_empty(),
        "another user sees tess's session: {seen_by_ned:?}"
    );
    // Past the listing's 20 s expiry, the node's heartbeats keep it listed.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert!(tess_listed(&active("aud")), "{:?}", active("aud"));
    // jctl lists it too.
    let listed: serde_json::Value = serde_json::from_str(&support::jctl_ok(
        &data,
        &["sessions", "ls", "--format", "json"],
    ))
    .unwrap();
    assert!(
        tess_listed(listed.as_array().unwrap()),
        "jctl sessions ls: {listed}"
    );
    let table = support::jctl_ok(&data, &["sessions", "ls"]);
    assert!(table.contains(&format!("{login}@term-node")), "{table}");
    socket
        .send(Message::Binary(b"exit 3\n".to_vec().into()))
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Close(frame) = message {
                return frame.map(|frame| frame.reason.to_string());
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(closed.as_deref(), Some("the shell exited with status 3"));
    // Its session.end takes it off the list.
    assert!(
        wait_until(Duration::from_secs(10), || !tess_listed(&active("aud"))),
        "an ended session is still listed: {:?}",
        active("aud")
    );

    // The node audited one session as tess, and recorded what the terminal showed.
    let bins = support::bins();
    assert!(
        wait_until(Duration::from_secs(10), || bins
            .audit_events(&data, "session.start")
            .iter()
            .any(
                |event| event["user"] == "tess" && event["interactive"] == true
            )),
        "no session.start of tess"
    );
    let sessions = data.join("log/sessions");
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_dir(&sessions)
            .map(|entries| entries
                .flatten()
                .any(|entry| std::fs::read_to_string(entry.path())
                    .is_ok_and(|cast| cast.contains("web-42"))))
            .unwrap_or(false)),
        "no recording shows web-42 in {}",
        sessions.display()
    );
    // The web UI's recordings and audit pages see it, as the user's roles allow.
    let mut listed = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let (status, _, body) = web_get(&proxy, &ca, &cookie, "/webapi/web/recordings");
            listed = serde_json::from_str(&body).unwrap_or_default();
            status == 200
                && listed["recordings"]
                    .as_array()
                    .is_some_and(|all| all.iter().any(|r| r["completed"] == true))
        }),
        "{listed}"
    );
    let recording = &listed["recordings"][0];
    assert_eq!(recording["user"], "tess", "{recording}");
    assert_eq!(recording["node"], "term-node", "{recording}");
    let id = recording["session_id"].as_str().unwrap().to_string();
    let (status, headers, cast) = web_get(
        &proxy,
        &ca,
        &cookie,
        &format!("/webapi/web/recordings/{id}.cast?download=1"),
    );
    assert_eq!(status, 200, "{cast}");
    assert!(cast.contains("web-42"), "{cast}");
    assert!(
        headers.contains("content-type: application/x-asciicast"),
        "{headers}"
    );
    assert!(
        headers.contains("content-disposition: attachment"),
        "{headers}"
    );
    let (status, _, events) = web_get(
        &proxy,
        &ca,
        &cookie,
        &format!("/webapi/web/events?type=session.start&session={id}"),
    );
    // `access` has no `event` rule: the audit page is for auditors.
    assert_eq!(status, 403, "{events}");
    add("uma", "access");
    let other = web_login(&proxy, &ca, "uma");
    let (status, _, body) = web_get(&proxy, &ca, &other, "/webapi/web/recordings");
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(&id), "uma sees tess's recording: {body}");
    let (status, _, body) = web_get(
        &proxy,
        &ca,
        &other,
        &format!("/webapi/web/recordings/{id}.cast"),
    );
    assert!(status == 403 || status == 404, "{status}: {body}");
    add("audrey", "access,auditor");
    let auditor = web_login(&proxy, &ca, "audrey");
    let (status, _, body) = web_get(
        &proxy,
        &ca,
        &auditor,
        &format!("/webapi/web/events?type=session.start&session={id}"),
    );
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(page["events"][0]["user"], "tess", "{body}");

    assert!(
        cluster.log_text().contains("web terminal to a node"),
        "{}",
        cluster.log_text()
    );
    drop(cluster);
}
