//! Locks end to end (`jctl lock`): a real dev daemon, a user logged in with `jsh`, a live
//! SSH session through the proxy to the dev node. A lock cuts its target off at once:
//! the live session ends within seconds, new connections, API calls and logins are
//! refused with the lock's message, every refusal is audited; removing the lock lets
//! the target back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{bins, jctl, jctl_ok, jsh, jsh_until, start_dev_cluster, text, totp_at, wait_until};

/// How long any one wait may take.
const WAIT: Duration = Duration::from_secs(20);

fn both(out: &Output) -> String {
    format!(
        "{:?} {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// A background `jsh ssh` that runs for a minute unless it is ended.
fn long_session(home: &Path, node: &str) -> Child {
    bins()
        .jsh_command(home)
        .args([
            "ssh",
            &format!("root@{node}"),
            "echo started; sleep 60; echo finished",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `jctl lock ARGS`; returns the lock's name.
fn lock(data: &Path, args: &[&str]) -> String {
    let mut full = vec!["lock"];
    full.extend_from_slice(args);
    let out = jctl_ok(data, &full);
    out.split_whitespace()
        .skip_while(|word| *word != "lock")
        .nth(1)
        .unwrap_or_else(|| panic!("jctl lock names the lock: {out}"))
        .to_string()
}

/// The next time step's code: the current one was spent by the first login (a replay
/// would be refused before the lock is even looked at).
fn next_totp(otpauth_uri: &str) -> String {
    totp_at(
        otpauth_uri,
        std::time::SystemTime::now() + Duration::from_secs(30),
    )
}

fn dev_node_uuid(data: &Path) -> String {
    let listed: Value =
        serde_json::from_str(&jctl_ok(data, &["nodes", "ls", "--format", "json"])).unwrap();
    let name = support::dev_node_name();
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|node| node["spec"]["hostname"] == name.as_str())
        .and_then(|node| node["metadata"]["name"].as_str())
        .unwrap_or_else(|| panic!("the dev node in {listed}"))
        .to_string()
}

#[test]
fn a_user_lock_ends_live_sessions_refuses_everything_and_lifts() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let node = cluster.wait_for_dev_node();
    let otpauth = cluster.add_user("alice", "root");
    let home = dir.path().join("alice");
    cluster.login(&home, "alice", &otpauth);
    let ok = jsh_until(&home, &["ssh", &format!("root@{node}"), "true"], |out| {
        out.status.success()
    });
    assert!(ok.status.success(), "{}", both(&ok));

    // A live session, then the lock.
    let mut session = long_session(&home, &node);
    let stdout = session.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            all.push_str(&line);
            all.push('\n');
            let _ = lines_tx.send(line);
        }
        all
    });
    assert_eq!(
        lines.recv_timeout(WAIT).ok().as_deref(),
        Some("started"),
        "the session never started"
    );
    let locked_at = Instant::now();
    let name = lock(
        &cluster.data,
        &["--user", "alice", "--message", "incident 42", "--ttl", "1h"],
    );

    // The live session ends within seconds, without finishing its command.
    let ended = wait_until(WAIT, || matches!(session.try_wait(), Ok(Some(_))));
    let took = locked_at.elapsed();
    if !ended {
        let _ = session.kill();
    }
    let status = session.wait().unwrap();
    let output = reader.join().unwrap();
    assert!(ended, "the live session outlived the lock by {took:?}");
    assert!(took < Duration::from_secs(10), "ended only after {took:?}");
    assert!(!status.success(), "{status:?}");
    assert!(!output.contains("finished"), "{output}");

    // New connections, API calls and logins are refused with the lock's message.
    let refused = jsh(&home, &["ssh", &format!("root@{node}"), "true"], None);
    assert!(!refused.status.success());
    assert!(both(&refused).contains("incident 42"), "{}", both(&refused));
    let listed = jsh(&home, &["ls"], None);
    assert!(!listed.status.success(), "{}", both(&listed));
    assert!(both(&listed).contains("locked"), "{}", both(&listed));
    let relogin = Command::new(support::jsh_bin())
        .args([
            "login",
            "--proxy",
            &cluster.proxy,
            "--user",
            "alice",
            "--ca-cert",
        ])
        .arg(cluster.ca())
        .args(["--password-stdin", "--otp", &next_totp(&otpauth)])
        .env("JUMPGATE_HOME", dir.path().join("alice-again"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let relogin = {
        let mut child = relogin;
        std::io::Write::write_all(
            child.stdin.as_mut().unwrap(),
            format!("{}\n", support::PASSWORD).as_bytes(),
        )
        .unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(!relogin.status.success());
    assert!(both(&relogin).contains("locked"), "{}", both(&relogin));

    // Audited: the lock, and refusals naming it.
    let created = support::audit_events(&cluster.data, "lock.created");
    assert!(
        created
            .iter()
            .any(|e| e["name"] == name.as_str() && e["target"] == "user=alice"),
        "{created:?}"
    );
    let refusals = support::audit_events(&cluster.data, "auth");
    assert!(
        refusals.iter().any(|e| e["error"]
            .as_str()
            .is_some_and(|err| err.contains("incident 42"))),
        "{refusals:?}"
    );
    let listed = jctl_ok(&cluster.data, &["get", "locks", "--format", "json"]);
    assert!(
        listed.contains(&name) && listed.contains("incident 42"),
        "{listed}"
    );

    // Lifted: alice is back, with the certificates she already had.
    jctl_ok(&cluster.data, &["rm", &format!("lock/{name}")]);
    let back = jsh_until(
        &home,
        &["ssh", &format!("root@{node}"), "echo back"],
        |out| out.status.success(),
    );
    assert!(back.status.success(), "{}", both(&back));
    assert_eq!(text(&back.stdout).trim(), "back");
}

#[test]
fn role_login_and_node_locks_refuse_what_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let node = cluster.wait_for_dev_node();
    let uuid = dev_node_uuid(&cluster.data);
    let otpauth = cluster.add_user("bob", "root,nobody");
    let home = dir.path().join("bob");
    cluster.login(&home, "bob", &otpauth);
    let target = format!("root@{node}");
    let ok = jsh_until(&home, &["ssh", &target, "true"], |out| out.status.success());
    assert!(ok.status.success(), "{}", both(&ok));

    for args in [
        vec!["--role", "access", "--message", "role locked"],
        vec!["--login", "root", "--message", "login locked"],
        vec!["--node", uuid.as_str(), "--message", "node locked"],
    ] {
        let message = args[3];
        let name = lock(&cluster.data, &args);
        // The proxy refuses with the lock's message once it has seen the lock (the
        // node may refuse a moment earlier, with its own words).
        let refused = jsh_until(&home, &["ssh", &target, "true"], |out| {
            !out.status.success() && both(out).contains(message)
        });
        assert!(!refused.status.success(), "{args:?}: {}", both(&refused));
        assert!(
            both(&refused).contains(message),
            "{args:?}: {}",
            both(&refused)
        );
        jctl_ok(&cluster.data, &["rm", &format!("lock/{name}")]);
        // The node's tunnel comes back by itself after a node lock.
        let back = jsh_until(&home, &["ssh", &target, "true"], |out| out.status.success());
        assert!(back.status.success(), "{args:?} lifted: {}", both(&back));
    }

    // A lock's bad input is refused with a clear message, before anything is stored.
    let bad = jctl(
        &cluster.data,
        &["lock", "--user", "bob", "--expires", "2001-01-01T00:00:00Z"],
        None,
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("in the past"),
        "{}",
        text(&bad.stderr)
    );
    let none = jctl(&cluster.data, &["lock", "--message", "who?"], None);
    assert!(!none.status.success());
}

/// The login grace time (30 s) bounds only the time to log in: a logged-in session runs
/// on past it.
#[test]
fn a_logged_in_session_outlives_the_login_grace_time() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let node = cluster.wait_for_dev_node();
    let otpauth = cluster.add_user("carol", "root");
    let home = dir.path().join("carol");
    cluster.login(&home, "carol", &otpauth);
    let ok = jsh_until(&home, &["ssh", &format!("root@{node}"), "true"], |out| {
        out.status.success()
    });
    assert!(ok.status.success(), "{}", both(&ok));
    let out = jsh(
        &home,
        &["ssh", &format!("root@{node}"), "sleep 35; echo survived"],
        None,
    );
    assert_eq!(text(&out.stdout).trim(), "survived", "{}", both(&out));
}
