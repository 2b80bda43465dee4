//! Security keys and passkeys (WebAuthn) end to end: a real `jumpgate start` (auth and
//! proxy) with `second_factor: on`, the RP ID `jumpgate.test` and the proxy's public
//! address `login.jumpgate.test:PORT`; Debian's Chromium with its virtual authenticator
//! drives the pages (`web/tests/webauthn.mjs`, through Playwright's CDP session), then
//! `jsh mfa` and the audit log are checked here; then the same cluster restarts with
//! `second_factor: webauthn` for the tests of that policy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};
use support::{PASSWORD, bins, free_port, start_daemon, text, totp_at};

const RP_ID: &str = "jumpgate.test";

/// `authentication` gets `second_factor` and the RP ID, then `extra` (YAML lines indented
/// as its keys).
fn write_config(path: &Path, data: &Path, port: u16, second_factor: &str, extra: &str) {
    std::fs::write(
        path,
        format!(
            "version: v3\n\
             jumpgate:\n  data_dir: {data}\n\
             auth_service:\n  cluster_name: keys\n  authentication:\n    \
             second_factor: {second_factor}\n    webauthn:\n      rp_id: {RP_ID}\n{extra}\
             proxy_service:\n  public_addr: login.{RP_ID}:{port}\n",
            data = data.display()
        ),
    )
    .unwrap();
}

/// POSTs JSON to the proxy's web API as the browser would (same-site `Origin`); the
/// status and body.
fn post_json(port: u16, path: &str, body: &Value) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(["-H", "Content-Type: application/json"])
        .args(["-H", &format!("Origin: https://127.0.0.1:{port}")])
        .args(["--data-binary", &body.to_string()])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let text = text(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// `/webapi/ping`'s `auth.passwordless`.
fn ping_passwordless(port: u16) -> Option<bool> {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "20"])
        .arg(format!("https://127.0.0.1:{port}/webapi/ping"))
        .output()
        .expect("curl");
    let ping: Value = serde_json::from_slice(&out.stdout).ok()?;
    ping["auth"]["passwordless"].as_bool()
}

fn start(config: &Path, port: u16, log: &Path) -> support::Daemon {
    let daemon = start_daemon(
        &[
            "-c",
            config.to_str().unwrap(),
            "--proxy-addr",
            &format!("127.0.0.1:{port}"),
        ],
        log,
    );
    daemon.wait_ready(&["auth", "proxy"], &[]);
    // Auth takes the origins keys may answer from from the proxies' heartbeats.
    let data = config.parent().unwrap().join("data");
    let public = format!("login.{RP_ID}:{port}");
    assert!(
        support::wait_until(Duration::from_secs(20), || {
            support::jctl(&data, &["get", "proxies", "--format", "json"], None)
                .stdout
                .windows(public.len())
                .any(|window| window == public.as_bytes())
        }),
        "the proxy's heartbeat with its public_addr did not arrive:\n{}",
        daemon.log_text()
    );
    daemon
}

/// Runs the browser tests matching `tests`; fails with their report and the daemon's log.
fn browser(
    tests: &str,
    port: u16,
    data: &Path,
    key_file: &Path,
    users: &[(&str, &str)],
    invites: [(&str, &str); 2],
    log: &Path,
) {
    let out = support::browser_script("webauthn.mjs")
        .env("JUMPGATE_WEB_URL", format!("https://127.0.0.1:{port}"))
        .env("JUMPGATE_SITE", format!("https://login.{RP_ID}:{port}"))
        .env(
            "JUMPGATE_EVIL_SITE",
            format!("https://evil.login.{RP_ID}:{port}"),
        )
        .env(
            "JUMPGATE_CHROMIUM_ARGS",
            format!("--host-resolver-rules=MAP *.{RP_ID} 127.0.0.1"),
        )
        .env("JUMPGATE_CA", data.join("admin/ca.pem"))
        .env("JUMPGATE_USER", users[0].0)
        .env("JUMPGATE_OTPAUTH", users[0].1)
        .env("JUMPGATE_OTHER_USER", users[1].0)
        .env("JUMPGATE_OTHER_OTPAUTH", users[1].1)
        .env("JUMPGATE_PASSWORD", PASSWORD)
        .env("JUMPGATE_KEY_FILE", key_file)
        .env("JUMPGATE_INVITEE", invites[0].0)
        .env("JUMPGATE_INVITE", invites[0].1)
        .env("JUMPGATE_OTHER_INVITE", invites[1].1)
        .env("JUMPGATE_WEB_TESTS", tests)
        .output()
        .expect("node (./test.sh installs it)");
    support::assert_browser_report(&out, || {
        format!(
            "daemon log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
}

/// A new user `name` invited (`jctl users add` without a password): the invite's token.
fn invite(data: &Path, name: &str) -> String {
    let out = bins().jctl_ok(
        data,
        &[
            "users", "add", name, "--roles", "access", "--logins", "root",
        ],
    );
    out.split_once("/web/invite#")
        .and_then(|(_, rest)| rest.get(..64))
        .unwrap_or_else(|| panic!("no invite link in {out}"))
        .to_string()
}

fn events(data: &Path, event_type: &str, user: &str) -> Vec<Value> {
    bins()
        .audit_events(data, event_type)
        .into_iter()
        .filter(|event| event["user"] == user)
        .collect()
}

fn has(events: &[Value], success: bool, field: &str, value: &str) -> bool {
    events
        .iter()
        .any(|event| event["success"] == success && event[field] == value)
}

#[test]
fn security_keys_and_passkeys_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("jumpgate.yaml");
    let log = dir.path().join("daemon.log");
    let key_file = dir.path().join("alice-key.json");
    let port = free_port();
    write_config(&config, &data, port, "on", "");
    let mut daemon = start(&config, port, &log);
    let alice = bins().add_user(&data, "alice", "access", "root");
    let bob = bins().add_user(&data, "bob", "access", "root");
    let users = [("alice", alice.as_str()), ("bob", bob.as_str())];

    let (dave, erin) = (invite(&data, "dave"), invite(&data, "erin"));
    let invites = [("dave", dave.as_str()), ("erin", erin.as_str())];
    browser("^on:", port, &data, &key_file, &users, invites, &log);

    // Audited: each key added (and the refused attempt), removed, each key login.
    let added = events(&data, "mfa.add", "alice");
    assert!(has(&added, true, "mfa_device_name", "blue"), "{added:?}");
    assert!(has(&added, false, "mfa_device_name", "blue"), "{added:?}");
    let removed = events(&data, "mfa.delete", "alice");
    assert!(
        has(&removed, true, "mfa_device_name", "green"),
        "{removed:?}"
    );
    let logins = events(&data, "user.login", "alice");
    assert!(has(&logins, true, "method", "webauthn"), "{logins:?}");
    assert!(has(&logins, true, "method", "passwordless"), "{logins:?}");
    assert!(has(&logins, false, "method", "webauthn"), "{logins:?}");
    assert!(has(&logins, false, "method", "passwordless"), "{logins:?}");

    // jsh: alice logs in with her code (the next one: hers was used in the browser), lists
    // her keys, is sent to the web page to add one, removes one.
    let home = dir.path().join("alice-home");
    let proxy = format!("127.0.0.1:{port}");
    let ca = data.join("admin/ca.pem");
    // The browser tests logged in from 127.0.0.1 many times: auth's per-address login
    // limit (10 at once, then one every 6 s) may ask to wait.
    for attempt in 0.. {
        let code = totp_at(&alice, SystemTime::now() + Duration::from_secs(30));
        let out = bins().jsh(
            &home,
            &[
                "login",
                "--proxy",
                &proxy,
                "--user",
                "alice",
                "--ca-cert",
                ca.to_str().unwrap(),
                "--password-stdin",
                "--otp",
                &code,
            ],
            Some(&format!("{PASSWORD}\n")),
        );
        if out.status.success() {
            break;
        }
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("too many attempts") && attempt < 5,
            "{stderr}"
        );
        std::thread::sleep(Duration::from_secs(7));
    }
    let listed = text(&bins().jsh_ok(&home, &["mfa", "ls"], None).stdout);
    assert!(
        listed.contains("blue") && listed.contains("spare"),
        "{listed}"
    );
    assert!(
        listed.contains("TOTP") && !listed.contains("green"),
        "{listed}"
    );
    let add = text(&bins().jsh_ok(&home, &["mfa", "add"], None).stdout);
    assert!(add.contains("/web/security-keys"), "{add}");
    let missing = bins().jsh(&home, &["mfa", "rm", "no-such-key"], None);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("no security key named"),
        "{missing:?}"
    );
    let gone = text(&bins().jsh_ok(&home, &["mfa", "rm", "spare"], None).stdout);
    assert!(gone.contains("Removed"), "{gone}");
    let listed = text(&bins().jsh_ok(&home, &["mfa", "ls"], None).stdout);
    assert!(!listed.contains("spare"), "{listed}");

    // The same cluster with second_factor: webauthn.
    assert!(daemon.terminate(), "{}", daemon.log_text());
    write_config(&config, &data, port, "webauthn", "");
    let mut daemon = start(&config, port, &log);
    let carol = invite(&data, "carol");
    let invites = [("carol", carol.as_str()), ("erin", erin.as_str())];
    browser("^webauthn:", port, &data, &key_file, &users, invites, &log);
    // Carol signed up with a key, audited as her key's registration.
    let added = events(&data, "mfa.add", "carol");
    assert!(
        has(&added, true, "mfa_device_name", "invited-key"),
        "{added:?}"
    );
    // jsh has no FIDO library: it says where to log in instead.
    let refused = bins().jsh(
        &dir.path().join("bob-home"),
        &[
            "login",
            "--proxy",
            &proxy,
            "--user",
            "bob",
            "--ca-cert",
            ca.to_str().unwrap(),
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(!refused.status.success());
    let message = text(&refused.stderr);
    assert!(
        message.contains("security key")
            && message.contains(&format!("https://login.{RP_ID}:{port}/web")),
        "{message}"
    );

    // Passkeys on (the default) are in `/webapi/ping`, so the login page offers one.
    assert_eq!(ping_passwordless(port), Some(true));

    // The same cluster with `passwordless: false`: the ping says so (the login page then
    // hides *Sign in with a passkey*), and a passkey login is refused.
    assert!(daemon.terminate(), "{}", daemon.log_text());
    write_config(&config, &data, port, "on", "    passwordless: false\n");
    let mut daemon = start(&config, port, &log);
    assert_eq!(ping_passwordless(port), Some(false));
    let (status, answer) = post_json(
        port,
        "/webapi/web/mfa/passwordless/begin",
        &serde_json::json!({}),
    );
    assert!(
        status == 400 && answer.contains("passwordless"),
        "{status} {answer}"
    );

    // The same cluster taking single sign-on only (`local_auth: false`): a local user's
    // password, security key and passkey are all refused, and the refusal says how to log in.
    assert!(daemon.terminate(), "{}", daemon.log_text());
    write_config(
        &config,
        &data,
        port,
        "on",
        "    type: oidc\n    connector_name: corp\n    local_auth: false\n",
    );
    let _daemon = start(&config, port, &log);
    let code = totp_at(&alice, SystemTime::now() + Duration::from_secs(60));
    let attempts = [
        (
            "/webapi/web/login",
            serde_json::json!({"user": "alice", "password": PASSWORD, "otp": code}),
        ),
        (
            "/webapi/web/mfa/login/begin",
            serde_json::json!({"user": "alice", "password": PASSWORD}),
        ),
        ("/webapi/web/mfa/passwordless/begin", serde_json::json!({})),
    ];
    for (path, body) in attempts {
        let (status, answer) = post_json(port, path, &body);
        assert!(
            matches!(status, 401 | 403) && answer.contains("single sign-on only"),
            "{path}: {status} {answer}"
        );
        assert!(answer.contains("--auth corp"), "{path}: {answer}");
    }
    let refused = bins().jsh(
        &dir.path().join("bob-home"),
        &[
            "login",
            "--proxy",
            &proxy,
            "--auth",
            "local",
            "--user",
            "bob",
            "--ca-cert",
            ca.to_str().unwrap(),
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(!refused.status.success());
    let message = text(&refused.stderr);
    assert!(message.contains("single sign-on only"), "{message}");
}
