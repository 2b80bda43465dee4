//! Topology C (issue 16; seed 000's second setup, done right): two servers, each running
//! auth + proxy + agent from the Debian package (`support::packaged_bins`), active/active
//! on one PostgreSQL (state, audit events and recordings) whose primary is on server 1
//! and whose synchronous streaming standby is on server 2. Users list both servers
//! (`jsh login --proxy a,b`), so no DNS change is needed. Server 1 dies whole (its
//! Jumpgate and its PostgreSQL killed with SIGKILL) right after a user's password was
//! changed; the standby is promoted; server 2 carries on: the new password works (seed
//! 000's operator lost such a change with SQLite backups), `jsh ssh` works, and no audit
//! event written before the crash is missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use jumpgate_test_support::{Daemon, Postgres};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{free_port, text, wait_until};

const NEW_PASSWORD: &str = "a new passphrase after the reset";

/// Server `name`'s all-in-one config on the PostgreSQL pair (primary first, then the
/// standby; `target_session_attrs=read-write` finds whichever takes writes).
fn server(
    dir: &Path,
    name: &str,
    proxy: &str,
    both_proxies: &str,
    pg_hosts: &str,
    password_file: &Path,
) -> (PathBuf, PathBuf) {
    let data = dir.join(format!("{name}-data"));
    let url = |credentials: &str| {
        format!(
            "postgresql://{}{credentials}@{pg_hosts}/{}?target_session_attrs=read-write",
            jumpgate_test_support::PG_USER,
            jumpgate_test_support::PG_DATABASE
        )
    };
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: {name}\n  proxy_server: {both_proxies}\n  storage:\n    type: postgresql\n    conn_string: \"{}\"\n    password_file: {}\n    audit_events_uri: [\"{}\"]\n    audit_sessions_uri: \"{}\"\nauth_service:\n  cluster_name: pair\nproxy_service:\n  web_listen_addr: {proxy}\nssh_service:\n  enabled: true\n",
            data.display(),
            url(""),
            password_file.display(),
            url(&format!(":{}", jumpgate_test_support::PG_PASSWORD)),
            url(&format!(":{}", jumpgate_test_support::PG_PASSWORD)),
        ),
    )
    .unwrap();
    (config, data)
}

fn start(config: &Path, proxy: &str, log: PathBuf) -> Daemon {
    let daemon = Daemon::start(
        support::packaged_bins(),
        &["-c", config.to_str().unwrap(), "--proxy-addr", proxy],
        &log,
    );
    daemon.wait_ready(&["auth", "proxy"], &[]);
    daemon
}

/// `curl -sS ARGS` (a real HTTPS client) that must succeed; returns its output.
fn curl(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Every audit event's id, as `jctl audit search` lists them.
fn event_ids(data: &Path) -> Vec<String> {
    let out = support::packaged_bins().jctl_ok(
        data,
        &["audit", "search", "--format", "json", "--limit", "1000"],
    );
    let events: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    events
        .iter()
        .filter_map(|event| event["uid"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pair_survives_the_loss_of_server_one_with_its_database_and_keeps_a_fresh_password() {
    let mut primary = Postgres::start().await;
    let standby = primary.start_standby().await;
    primary.make_synchronous().await;

    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let password_file = dir.join("pg-password");
    std::fs::write(&password_file, primary.password()).unwrap();
    let hosts = format!("127.0.0.1:{},127.0.0.1:{}", primary.port(), standby.port());
    let proxy_1 = format!("127.0.0.1:{}", free_port());
    let proxy_2 = format!("127.0.0.1:{}", free_port());
    // Each server's agent lists both servers too, and so keeps a tunnel to each proxy.
    let both = format!("{proxy_1},{proxy_2}");
    let (config_1, data_1) = server(dir, "server-1", &proxy_1, &both, &hosts, &password_file);
    let (config_2, data_2) = server(dir, "server-2", &proxy_2, &both, &hosts, &password_file);
    let server_1 = start(&config_1, &proxy_1, dir.join("server-1.log"));
    let server_2 = start(&config_2, &proxy_2, dir.join("server-2.log"));
    let tunnels_of =
        |host: &str| support::tunnel_holders(support::packaged_bins(), &data_2, host).len();
    assert!(
        wait_until(Duration::from_secs(40), || tunnels_of("server-1") == 2
            && tunnels_of("server-2") == 2),
        "the agents do not hold a tunnel to each server: {} and {}\n{}",
        tunnels_of("server-1"),
        tunnels_of("server-2"),
        server_2.log_text()
    );

    let bins = support::packaged_bins();
    let login = jumpgate_test_support::current_user();
    let otp = bins.add_user(&data_1, "cleo", "access", &login);
    let home = dir.join("cleo-home");
    let ca = data_2.join("admin/ca.pem");
    let logged_in = bins.login(&home, &both, &ca, "cleo", &otp);
    assert!(logged_in.status.success(), "{}", text(&logged_in.stderr));
    let target = format!("{login}@server-2");
    // Every path to each server's node, through server 1 (the first in the user's list):
    // recordings are in the PostgreSQL pair too, so server 2's play back through server 1.
    for node in ["server-1", "server-2"] {
        support::use_every_path(bins, &home, dir, &login, node, &format!("cleo-{node}"));
    }
    let reached = bins.jsh(&home, &["ssh", &target, "echo", "reached"], None);
    assert!(
        text(&reached.stdout).contains("reached"),
        "{}",
        text(&reached.stderr)
    );

    // The password changes (a reset, then the user's signup through server 2's web API)...
    let reset = bins.jctl_ok(&data_2, &["users", "reset", "cleo"]);
    let token = reset
        .split_whitespace()
        .find(|word| word.len() == 64 && word.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no signup token in: {reset}"))
        .to_string();
    // The invite's TOTP secret, then the signup confirmed with a code of it.
    let post = |path: &str, body: serde_json::Value| {
        curl(&[
            "--cacert",
            ca.to_str().unwrap(),
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data",
            &body.to_string(),
            &format!("https://{proxy_2}{path}"),
        ])
    };
    let invite = post("/webapi/web/invite", serde_json::json!({"token": token}));
    let invite: serde_json::Value = serde_json::from_str(&invite)
        .unwrap_or_else(|err| panic!("invite answered {invite:?}: {err}"));
    let code = support::totp_now(invite["otpauth_uri"].as_str().unwrap());
    let signup = post(
        "/webapi/signup",
        serde_json::json!({"token": token, "password": NEW_PASSWORD, "otp": code}),
    );
    let enrolled: serde_json::Value = serde_json::from_str(&signup)
        .unwrap_or_else(|err| panic!("signup answered {signup:?}: {err}"));
    let new_otp = enrolled["otpauth_uri"].as_str().unwrap().to_string();
    let events_before = event_ids(&data_2);
    assert!(!events_before.is_empty());

    // ...and server 1 dies at once, its database with it.
    drop(server_1);
    primary.kill().await;
    let killed = Instant::now();
    standby.promote().await;

    // Server 2 carries on: the new password logs in, through the list of both servers.
    let mut last = String::new();
    let relogged = wait_until(Duration::from_secs(30), || {
        let out = bins.jsh(
            &home,
            &[
                "login",
                "--proxy",
                &both,
                "--user",
                "cleo",
                "--ca-cert",
                ca.to_str().unwrap(),
                "--password-stdin",
                "--otp",
                // The code after the one that confirmed the signup (spent).
                &jumpgate_test_support::totp_at(
                    &new_otp,
                    std::time::SystemTime::now() + Duration::from_secs(30),
                ),
            ],
            Some(&format!("{NEW_PASSWORD}\n")),
        );
        last = text(&out.stderr);
        if !out.status.success() {
            // A one-time code is good once: the next try waits for the next one.
            std::thread::sleep(Duration::from_secs(1));
        }
        out.status.success()
    });
    assert!(
        relogged,
        "the password changed before the crash does not log in: {last}\nserver 2:\n{}",
        server_2.log_text()
    );
    println!(
        "logged in with the new password {:?} after the crash",
        killed.elapsed()
    );
    let reached = bins.jsh(&home, &["ssh", &target, "echo", "reached"], None);
    assert!(
        text(&reached.stdout).contains("reached"),
        "after the failover: {}",
        text(&reached.stderr)
    );
    // No audit event written before the crash is missing.
    let events_after = event_ids(&data_2);
    let lost: Vec<&String> = events_before
        .iter()
        .filter(|id| !events_after.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} audit events lost: {lost:?}",
        lost.len()
    );
    drop(config_2);
}
