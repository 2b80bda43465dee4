//! The web UI's sessions end to end (issue 17), with curl as the browser: a real cluster
//! (auth + proxy, an agent) and a second proxy joined to it. A session made through one
//! proxy works on the other (auth keeps it); the cookie's flags; the CSRF token and the
//! origin check on logout; logout and logout everywhere; the idle timeout; a lock or the
//! user's deletion ends a session; refusals (wrong password) with the server's message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{Daemon, free_port, jctl_ok, start_daemon, text, wait_until};

/// A browser: curl with its own cookie jar, trusting the cluster's CA.
struct Browser {
    jar: PathBuf,
    ca: PathBuf,
}

/// An answer: status, headers (lowercase names), body.
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| panic!("{err}: {}", self.body))
    }
}

impl Browser {
    fn new(dir: &Path, name: &str, ca: &Path) -> Browser {
        Browser {
            jar: dir.join(format!("{name}.cookies")),
            ca: ca.to_path_buf(),
        }
    }

    fn request(&self, method: &str, url: &str, body: Option<&str>, headers: &[&str]) -> Answer {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--max-time", "20", "-i", "-X", method])
            .arg("--cacert")
            .arg(&self.ca)
            .arg("-b")
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar);
        for header in headers {
            command.args(["-H", header]);
        }
        if let Some(body) = body {
            command.args(["-H", "content-type: application/json", "--data", body]);
        }
        let out = command.arg(url).output().unwrap();
        assert!(out.status.success(), "curl {url}: {}", text(&out.stderr));
        let raw = text(&out.stdout);
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head}"));
        Answer {
            status,
            headers: head.to_lowercase(),
            body: body.to_string(),
        }
    }

    fn login(&self, proxy: &str, user: &str, password: &str, otp: &str) -> Answer {
        let body = serde_json::json!({"user": user, "password": password, "otp": otp});
        self.request(
            "POST",
            &format!("https://{proxy}/webapi/web/login"),
            Some(&body.to_string()),
            &[],
        )
    }

    fn get(&self, proxy: &str, path: &str) -> Answer {
        self.request("GET", &format!("https://{proxy}{path}"), None, &[])
    }
}

/// A local user with the role `access` and `login`; the cluster asks no second factor
/// (`second_factor: off`), so one user can hold several sessions in a test without
/// waiting for fresh one-time codes (the web login runs the same checks as `jsh login`,
/// tested with TOTP elsewhere).
fn add_user(data: &Path, name: &str, login: &str) {
    support::jctl_ok_stdin(
        data,
        &[
            "users",
            "add",
            name,
            "--roles",
            "access",
            "--logins",
            login,
            "--password-stdin",
        ],
        &format!("{}\n", jumpgate_test_support::PASSWORD),
    );
}

/// A proxy of its own, joined to the cluster with `token`.
fn second_proxy(dir: &Path, auth: &str, token: &str, pin: &str) -> (Daemon, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.join("proxy-2.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: proxy-2\n  auth_server: {auth}\n  auth_token: \"{token}\"\n  ca_pin: \"{pin}\"\nauth_service:\n  enabled: false\nproxy_service:\n  web_listen_addr: {addr}\nssh_service:\n  enabled: false\n",
            dir.join("proxy-2-data").display()
        ),
    )
    .unwrap();
    let daemon = start_daemon(
        &["-c", config.to_str().unwrap(), "--proxy-addr", &addr],
        &dir.join("proxy-2.log"),
    );
    daemon.wait_ready(&["proxy"], &[]);
    (daemon, addr)
}

#[test]
fn web_sessions_work_on_every_proxy_and_end_by_logout_idleness_and_locks() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let data = dir.join("data");
    let config = dir.join("cluster.yaml");
    let proxy_1 = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\nauth_service:\n  cluster_name: web\n  web_idle_timeout: 8s\n  authentication:\n    second_factor: \"off\"\nproxy_service:\n  web_listen_addr: {proxy_1}\nssh_service:\n  enabled: true\n  labels:\n    env: \"<script>alert(1)</script>\"\n",
            data.display()
        ),
    )
    .unwrap();
    let cluster = start_daemon(
        &["-c", config.to_str().unwrap(), "--proxy-addr", &proxy_1],
        &dir.join("cluster.log"),
    );
    cluster.wait_ready(&["auth", "proxy"], &[&data.join("admin/auth_addr")]);
    let auth = std::fs::read_to_string(data.join("admin/auth_addr")).unwrap();
    let (token, pin) = support::new_join_token(&data, &["--type", "proxy"]);
    let (_proxy_2, proxy_2) = second_proxy(dir, auth.trim(), &token, &pin);
    let login = jumpgate_test_support::current_user();
    add_user(&data, "wendy", &login);
    let ca = data.join("admin/ca.pem");
    let password = jumpgate_test_support::PASSWORD;

    // Refusals carry the server's message.
    let browser = Browser::new(dir, "wendy", &ca);
    let wrong = browser.login(&proxy_1, "wendy", "not the password", "000000");
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(
        wrong.json()["error"]["message"].as_str().unwrap().len() > 10,
        "{}",
        wrong.body
    );
    assert!(!wrong.headers.contains("set-cookie"), "{}", wrong.headers);

    // Logged in through proxy 1: the cookie's flags, then the session on proxy 2 as well.
    let logged_in = browser.login(&proxy_1, "wendy", password, "");
    assert_eq!(logged_in.status, 200, "{}", logged_in.body);
    let cookie = logged_in
        .headers
        .lines()
        .find(|line| line.starts_with("set-cookie: __host-jumpgate_web="))
        .unwrap_or_else(|| panic!("no session cookie: {}", logged_in.headers))
        .to_string();
    for flag in ["secure", "httponly", "samesite=strict", "path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let session = logged_in.json();
    assert_eq!(session["user"], "wendy");
    assert!(
        session["logins"]
            .as_array()
            .unwrap()
            .contains(&Value::from(login.clone()))
    );
    let csrf = session["csrf_token"].as_str().unwrap().to_string();
    for proxy in [&proxy_1, &proxy_2] {
        let current = browser.get(proxy, "/webapi/web/session");
        assert_eq!(current.status, 200, "{proxy}: {}", current.body);
        assert_eq!(current.json()["user"], "wendy");
    }
    // The nodes the user may reach, with their labels as data (the UI shows them as text).
    assert!(
        wait_until(Duration::from_secs(20), || {
            let page = browser.get(&proxy_2, "/webapi/web/nodes?search=&limit=10");
            page.status == 200 && page.json()["total"].as_u64().unwrap_or(0) >= 1
        }),
        "no node listed"
    );
    let page = browser.get(
        &proxy_2,
        "/webapi/web/nodes?label=env%3D%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.json()["nodes"][0]["labels"]["env"],
        "<script>alert(1)</script>"
    );
    assert_eq!(
        browser.get(&proxy_1, "/webapi/web/nodes?sort=uuid").status,
        400
    );

    // Logout needs the CSRF token and our own origin.
    let url = format!("https://{proxy_2}/webapi/web/session");
    let no_token = browser.request("DELETE", &url, None, &[]);
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let other_site = browser.request(
        "DELETE",
        &url,
        None,
        &[
            &format!("x-csrf-token: {csrf}"),
            "origin: https://evil.example",
        ],
    );
    assert_eq!(other_site.status, 403, "{}", other_site.body);
    // As a browser sends it: our own Origin (curl speaks HTTP/2 here, as browsers do, so
    // the host is the request's authority, not a Host header).
    let out = browser.request(
        "DELETE",
        &url,
        None,
        &[
            &format!("x-csrf-token: {csrf}"),
            &format!("origin: https://{proxy_2}"),
        ],
    );
    assert_eq!(out.status, 204, "{}", out.body);
    // Ended on both proxies (the other within its 5 s re-check).
    assert_eq!(browser.get(&proxy_2, "/webapi/web/session").status, 401);
    assert!(wait_until(Duration::from_secs(7), || browser
        .get(&proxy_1, "/webapi/web/session")
        .status
        == 401));

    // Logout everywhere ends the user's other sessions.
    let laptop = Browser::new(dir, "laptop", &ca);
    let phone = Browser::new(dir, "phone", &ca);
    assert_eq!(laptop.login(&proxy_1, "wendy", password, "").status, 200);
    let on_phone = phone.login(&proxy_2, "wendy", password, "");
    assert_eq!(on_phone.status, 200, "{}", on_phone.body);
    let phone_csrf = on_phone.json()["csrf_token"].as_str().unwrap().to_string();
    let all = phone.request(
        "POST",
        &format!("https://{proxy_2}/webapi/web/sessions/logout-all"),
        None,
        &[&format!("x-csrf-token: {phone_csrf}")],
    );
    assert_eq!(all.status, 204, "{}", all.body);
    assert!(wait_until(Duration::from_secs(7), || laptop
        .get(&proxy_1, "/webapi/web/session")
        .status
        == 401));
    // Audited: a user.logout of wendy's, everywhere, from the phone's address.
    let logouts = support::bins().audit_events(&data, "user.logout");
    assert!(
        logouts.iter().any(|event| event["user"] == "wendy"
            && event["everywhere"] == true
            && event["sessions_ended"].as_u64() >= Some(2)
            && event["addr.remote"]
                .as_str()
                .is_some_and(|addr| addr.starts_with("127.0.0.1:"))),
        "no user.logout of wendy everywhere: {logouts:?}"
    );

    // Idle for longer than web_idle_timeout (8 s here): ended.
    let idle = Browser::new(dir, "idle", &ca);
    add_user(&data, "ivan", &login);
    assert_eq!(idle.login(&proxy_1, "ivan", password, "").status, 200);
    assert_eq!(idle.get(&proxy_2, "/webapi/web/session").status, 200);
    std::thread::sleep(Duration::from_secs(9));
    let expired = idle.get(&proxy_2, "/webapi/web/session");
    assert_eq!(expired.status, 401, "{}", expired.body);
    assert!(expired.body.contains("log in again"), "{}", expired.body);

    // A lock on the user ends the session.
    let locked = Browser::new(dir, "locked", &ca);
    assert_eq!(locked.login(&proxy_1, "ivan", password, "").status, 200);
    jctl_ok(
        &data,
        &["lock", "--user", "ivan", "--message", "left the company"],
    );
    assert!(wait_until(Duration::from_secs(7), || locked
        .get(&proxy_1, "/webapi/web/session")
        .status
        == 403));
    // A user deleted: their session ends with them.
    add_user(&data, "dora", &login);
    let gone = Browser::new(dir, "gone", &ca);
    assert_eq!(gone.login(&proxy_1, "dora", password, "").status, 200);
    jctl_ok(&data, &["users", "rm", "dora"]);
    assert!(wait_until(Duration::from_secs(7), || gone
        .get(&proxy_1, "/webapi/web/session")
        .status
        == 401));
    drop(cluster);
}

/// Ten thousand nodes (registered with the admin identity, as heartbeats would) page from
/// the proxy's copies: the total, the pages by cursor, search and a label filter answer
/// correctly, and each page answers fast (the times are printed; the bound is a hang
/// guard for a loaded machine, not the target).
#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_nodes_page_from_the_proxys_copies() {
    const NODES: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let data = dir.join("data");
    let config = dir.join("cluster.yaml");
    let proxy = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\nauth_service:\n  cluster_name: many\n  authentication:\n    second_factor: \"off\"\nproxy_service:\n  web_listen_addr: {proxy}\n",
            data.display()
        ),
    )
    .unwrap();
    let cluster = start_daemon(
        &["-c", config.to_str().unwrap(), "--proxy-addr", &proxy],
        &dir.join("cluster.log"),
    );
    cluster.wait_ready(&["auth", "proxy"], &[&data.join("admin/auth_addr")]);
    support::register_nodes(&data, support::many_nodes(NODES)).await;

    let login = jumpgate_test_support::current_user();
    add_user(&data, "nina", &login);
    let browser = Browser::new(dir, "nina", &data.join("admin/ca.pem"));
    let page = |query: &str| -> (Value, Duration) {
        let started = std::time::Instant::now();
        let answer = browser.get(&proxy, &format!("/webapi/web/nodes?{query}"));
        let took = started.elapsed();
        assert_eq!(answer.status, 200, "{}", answer.body);
        (answer.json(), took)
    };
    tokio::task::block_in_place(|| {
        let logged_in = browser.login(&proxy, "nina", jumpgate_test_support::PASSWORD, "");
        assert_eq!(logged_in.status, 200, "{}", logged_in.body);
        assert!(
            wait_until(Duration::from_secs(30), || page("limit=1").0["total"]
                == NODES),
            "the proxy does not list {NODES} nodes: {}",
            page("limit=1").0
        );
        let mut times = Vec::new();
        let mut cursor = String::new();
        let mut seen = 0;
        for _ in 0..5 {
            let query = if cursor.is_empty() {
                "limit=50".to_string()
            } else {
                format!("limit=50&cursor={cursor}")
            };
            let (body, took) = page(&query);
            times.push(took);
            let nodes = body["nodes"].as_array().unwrap();
            assert_eq!(nodes.len(), 50);
            assert_eq!(nodes[0]["hostname"], format!("node-{seen:05}"));
            seen += 50;
            cursor = body["next_cursor"].as_str().unwrap().to_string();
        }
        let (found, took) = page("search=node-09999");
        times.push(took);
        assert_eq!(found["total"], 1, "{found}");
        let (racked, took) = page("label=rack%3Dr7&limit=50");
        times.push(took);
        assert_eq!(racked["total"], NODES / 10, "{racked}");
        let (last, took) = page("sort=-hostname&limit=1");
        times.push(took);
        assert_eq!(
            last["nodes"][0]["hostname"],
            format!("node-{:05}", NODES - 1)
        );
        println!("{NODES} nodes: each page (curl, TLS and all) took {times:?}");
        assert!(
            times.iter().all(|took| *took < Duration::from_secs(2)),
            "{times:?}"
        );
    });
    drop(cluster);
}
