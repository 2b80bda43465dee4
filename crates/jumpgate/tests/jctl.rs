//! `jctl` end to end: a real daemon, the real `jctl` binary, and a real OpenSSH `sshd`
//! set up the agentless way (host key and certificate from `jctl auth sign --host`,
//! `TrustedUserCAKeys` from `jctl auth export --type user`), reached by a real `ssh`
//! with a certificate from `jctl auth sign --user`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::{
    Daemon, HostKey, KnownHosts, Sshd, bins, current_user, jctl, jctl_ok, openssh_to,
    start_dev_daemon, text, wait_until,
};

/// A dev daemon whose auth API is up, its data in `dir/NAME`.
fn auth_daemon(dir: &Path, name: &str) -> (Daemon, PathBuf) {
    let data = dir.join(name);
    let daemon = start_dev_daemon(&data, &dir.join(format!("{name}.log")));
    (daemon, data)
}

/// `jctl` that must fail; returns stderr.
fn jctl_err(data: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = jctl(data, args, stdin);
    assert!(
        !out.status.success(),
        "jctl {args:?} should have failed:\n{}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

/// A real sshd configured only with files jctl wrote: host key and certificate from
/// `jctl auth sign --host node1 --principals 127.0.0.1`, the exported user CA.
fn start_sshd(data: &Path, dir: &Path) -> Sshd {
    let host_key = HostKey::SignedByCluster {
        host: "node1",
        principals: Some("127.0.0.1"),
    };
    Sshd::start_for_cluster(bins(), data, dir, host_key, "LogLevel VERBOSE\n")
}

/// `ssh` with a key and certificate, trusting hosts by the cluster's host CA only.
fn ssh(sshd: &Sshd, key: &Path, login: &str, known_hosts: &Path) -> Output {
    let cert = PathBuf::from(format!("{}-cert.pub", key.display()));
    openssh_to(
        sshd.port,
        login,
        key,
        &cert,
        KnownHosts::Strict(known_hosts),
    )
    .arg("echo jumpgate-ok")
    .output()
    .unwrap()
}

#[test]
fn openssh_accepts_jctl_certificates_for_allowed_logins_only() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, data) = auth_daemon(dir.path(), "cluster-a");
    let me = current_user();
    jctl_ok(
        &data,
        &[
            "users",
            "add",
            "alice",
            "--roles",
            "access",
            "--logins",
            &format!("{me},alice-ops"),
        ],
    );
    let sshd = start_sshd(&data, &dir.path().join("sshd"));
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        jctl_ok(&data, &["auth", "export", "--type", "host"]),
    )
    .unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let alice = keys.join("alice");
    sign_user(&data, "alice", &alice);

    // ssh-keygen shows what was intended.
    let shown = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(keys.join("alice-cert.pub"))
        .output()
        .unwrap();
    let shown = text(&shown.stdout);
    assert!(shown.contains("user certificate"), "{shown}");
    assert!(shown.contains("Key ID: \"alice\""), "{shown}");
    for expected in [
        me.as_str(),
        "alice-ops",
        "permit-pty",
        "jumpgate-roles@jumpgate",
    ] {
        assert!(shown.contains(expected), "{expected} missing in:\n{shown}");
    }
    // The access role has port forwarding on and agent forwarding off by default.
    assert!(shown.contains("permit-port-forwarding"), "{shown}");
    assert!(!shown.contains("permit-agent-forwarding"), "{shown}");

    // An allowed login gets in, and the host is trusted by its CA-signed certificate.
    let out = ssh(&sshd, &alice, &me, &known_hosts);
    assert!(
        text(&out.stdout).contains("jumpgate-ok"),
        "allowed login refused: {}\nsshd:\n{}",
        text(&out.stderr),
        sshd.log()
    );

    // A principal the certificate does not carry is refused.
    let out = ssh(&sshd, &alice, "nobody", &known_hosts);
    assert!(!out.status.success());
    assert!(!text(&out.stdout).contains("jumpgate-ok"));

    // A certificate from another cluster's user CA is refused.
    let (_other, other_data) = auth_daemon(dir.path(), "cluster-b");
    jctl_ok(
        &other_data,
        &[
            "users", "add", "alice", "--roles", "access", "--logins", &me,
        ],
    );
    let foreign = keys.join("alice-foreign");
    jctl_ok(
        &other_data,
        &[
            "auth",
            "sign",
            "--user",
            "alice",
            "--out",
            foreign.to_str().unwrap(),
        ],
    );
    let out = ssh(&sshd, &foreign, &me, &known_hosts);
    assert!(!out.status.success(), "a foreign CA's certificate got in");
    assert!(!text(&out.stdout).contains("jumpgate-ok"));

    // An expired certificate is refused: sign one for 1 s and wait it out.
    let short = keys.join("alice-short");
    jctl_ok(
        &data,
        &[
            "auth",
            "sign",
            "--user",
            "alice",
            "--ttl",
            "1s",
            "--out",
            short.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    let out = ssh(&sshd, &short, &me, &known_hosts);
    assert!(!out.status.success(), "an expired certificate got in");
    assert!(
        sshd.log().contains("expired") || sshd.log().contains("Certificate invalid"),
        "sshd did not say why:\n{}",
        sshd.log()
    );

    // Every certificate was audited.
    let events = jctl_ok(
        &data,
        &[
            "audit",
            "search",
            "--type",
            "cert.create",
            "--format",
            "json",
        ],
    );
    let events: Vec<serde_json::Value> = serde_json::from_str(&events).unwrap();
    let for_alice = events
        .iter()
        .filter(|e| e["user"] == "alice" && e["cert_type"] == "user")
        .count();
    assert_eq!(for_alice, 2, "{events:#?}");
    assert!(events.iter().any(|e| e["cert_type"] == "host"));
}

#[test]
fn jctl_manages_users_roles_and_tokens_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, data) = auth_daemon(dir.path(), "cluster");

    let status = jctl_ok(&data, &["status"]);
    assert!(status.contains("Cluster:        dev"), "{status}");
    assert!(status.contains("CA pin:         sha256:"), "{status}");

    // A user without a password gets a signup token; one with a password an otpauth URI.
    let added = jctl_ok(
        &data,
        &[
            "users", "add", "dana", "--roles", "access", "--logins", "dana",
        ],
    );
    assert!(added.contains("Signup token"), "{added}");
    let out = jctl(
        &data,
        &[
            "users",
            "add",
            "erin",
            "--roles",
            "access,auditor",
            "--password-stdin",
        ],
        Some("a long enough password\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("otpauth://totp/"),
        "{}",
        text(&out.stdout)
    );
    let err = jctl_err(
        &data,
        &[
            "users",
            "add",
            "fay",
            "--roles",
            "access",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert!(err.contains("at least 12 characters"), "{err}");
    let err = jctl_err(&data, &["users", "add", "gus", "--roles", "nosuch"], None);
    assert!(err.contains("role \"nosuch\" does not exist"), "{err}");
    let err = jctl_err(&data, &["users", "add", "dana", "--roles", "access"], None);
    assert!(err.contains("already exists"), "{err}");

    let listed = jctl_ok(&data, &["users", "ls", "--format", "json"]);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = listed
        .iter()
        .map(|u| u["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dana", "erin"]);
    assert!(!serde_json::to_string(&listed).unwrap().contains("argon2"));

    // Roles from YAML files: created, refused when present, replaced with --force.
    let role = dir.path().join("role.yaml");
    std::fs::write(
        &role,
        "kind: role\nversion: v7\nmetadata:\n  name: dev\nspec:\n  allow:\n    logins: [dev]\n    node_labels:\n      env: ['^dev-.*$']\n",
    )
    .unwrap();
    assert!(jctl_ok(&data, &["create", role.to_str().unwrap()]).contains("created"));
    let err = jctl_err(&data, &["create", role.to_str().unwrap()], None);
    assert!(err.contains("already exists; use --force"), "{err}");
    assert!(jctl_ok(&data, &["create", "-f", role.to_str().unwrap()]).contains("updated"));
    let shown = jctl_ok(&data, &["get", "role/dev"]);
    assert!(shown.contains("^dev-.*$"), "{shown}");

    // Malformed documents: a clear error naming the file and field, audited, no change.
    std::fs::write(
        &role,
        "kind: role\nmetadata:\n  name: typo\nspec:\n  allow:\n    lgins: [x]\n",
    )
    .unwrap();
    let err = jctl_err(&data, &["create", role.to_str().unwrap()], None);
    assert!(err.contains("role.yaml: spec.allow.lgins"), "{err}");
    assert!(err.contains("did you mean `logins`"), "{err}");
    let err = jctl_err(&data, &["create", "-"], Some("kind: role\n  bad: ["));
    assert!(
        err.contains("stdin:") && err.contains("syntax error"),
        "{err}"
    );
    let err = jctl_err(&data, &["get", "role/typo"], None);
    assert!(err.contains("does not exist"), "{err}");

    // Removal rules.
    let err = jctl_err(&data, &["rm", "role/access"], None);
    assert!(err.contains("assigned to dana, erin"), "{err}");
    let err = jctl_err(&data, &["rm", "cert_authority/dev"], None);
    assert!(err.contains("cannot be removed"), "{err}");
    jctl_ok(&data, &["rm", "role/dev"]);
    let err = jctl_err(&data, &["rm", "role/dev"], None);
    assert!(err.contains("does not exist"), "{err}");
    jctl_ok(&data, &["users", "rm", "dana"]);
    let err = jctl_err(
        &data,
        &["auth", "sign", "--user", "dana", "--out", "/tmp/x"],
        None,
    );
    assert!(err.contains("no user \"dana\""), "{err}");

    // Join tokens: shown once, listed by id, removable by id.
    let added = jctl_ok(
        &data,
        &[
            "tokens", "add", "--type", "node", "--ttl", "1h", "--format", "json",
        ],
    );
    let added: serde_json::Value = serde_json::from_str(&added).unwrap();
    let token = added["token"].as_str().unwrap().to_string();
    let id = added["id"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    let listed = jctl_ok(&data, &["tokens", "ls"]);
    assert!(listed.contains(&id) && !listed.contains(&token), "{listed}");
    let err = jctl_err(&data, &["tokens", "add", "--type", "db"], None);
    assert!(err.contains("token type"), "{err}");
    jctl_ok(&data, &["tokens", "rm", &id]);
    assert!(!jctl_ok(&data, &["tokens", "ls"]).contains(&id));

    // The audit log has the refusals too.
    let events = jctl_ok(
        &data,
        &["audit", "search", "--format", "json", "--limit", "500"],
    );
    let events: Vec<serde_json::Value> = serde_json::from_str(&events).unwrap();
    let refused_roles = events
        .iter()
        .filter(|e| e["event"] == "role.created" && e["success"] == false)
        .count();
    assert!(refused_roles >= 2, "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "user.delete" && e["user"] == "dana" && e["success"] == true)
    );
    let text_out = jctl_ok(&data, &["audit", "search", "--type", "user.create"]);
    assert!(
        text_out.contains("user.create") && text_out.contains("erin"),
        "{text_out}"
    );

    // A search cut short by its limit says so on stderr, leaving the JSON whole.
    let cut = jctl(
        &data,
        &["audit", "search", "--limit", "2", "--format", "json"],
        None,
    );
    assert!(cut.status.success(), "{}", text(&cut.stderr));
    let first_two: Vec<serde_json::Value> = serde_json::from_slice(&cut.stdout).unwrap();
    assert_eq!(first_two.len(), 2, "{first_two:#?}");
    assert!(
        text(&cut.stderr).contains("showing the first 2 matching events; more match"),
        "{}",
        text(&cut.stderr)
    );
    let whole = jctl(
        &data,
        &["audit", "search", "--limit", "5000", "--format", "json"],
        None,
    );
    assert!(whole.status.success(), "{}", text(&whole.stderr));
    assert!(
        !text(&whole.stderr).contains("more match"),
        "{}",
        text(&whole.stderr)
    );
    let err = jctl_err(&data, &["audit", "search", "--limit", "0"], None);
    assert!(err.contains("--limit"), "{err}");
}

#[test]
fn jctl_without_a_running_auth_service_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let err = jctl_err(dir.path(), &["status"], None);
    assert!(err.contains("no admin identity"), "{err}");

    // With an identity but nothing listening: the address and a hint.
    let (mut daemon, data) = auth_daemon(dir.path(), "cluster");
    assert!(daemon.terminate());
    let err = jctl_err(&data, &["status"], None);
    assert!(
        err.contains("cannot connect to the auth service at 127.0.0.1:"),
        "{err}"
    );
}

/// Signs a user certificate for a fresh key at `path` (`path-cert.pub` beside it).
fn sign_user(data: &Path, user: &str, path: &Path) {
    bins().sign_user(data, user, "1h", path);
}

fn gets_in(sshd: &Sshd, key: &Path, login: &str, known_hosts: &Path) -> bool {
    text(&ssh(sshd, key, login, known_hosts).stdout).contains("jumpgate-ok")
}

/// `jctl auth rotate` end to end: during the grace period certificates of the old and
/// the new keys both work against a real sshd (after re-exporting the user CA), a copy
/// of the old admin identity still reaches the rotated auth API (cross certificate),
/// and after a rotation with no grace only certificates of the newest keys do.
#[test]
fn ca_rotation_keeps_old_certificates_working_for_the_grace_period_only() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, data) = auth_daemon(dir.path(), "cluster");
    let me = current_user();
    jctl_ok(
        &data,
        &[
            "users", "add", "alice", "--roles", "access", "--logins", &me,
        ],
    );
    let sshd = start_sshd(&data, &dir.path().join("sshd"));
    let known_hosts = dir.path().join("known_hosts");
    let export_trust = || {
        std::fs::write(
            &known_hosts,
            jctl_ok(&data, &["auth", "export", "--type", "host"]),
        )
        .unwrap();
        std::fs::write(
            sshd.dir.join("user_ca.pub"),
            jctl_ok(&data, &["auth", "export", "--type", "user"]),
        )
        .unwrap();
    };
    export_trust();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let old_cert = keys.join("alice-old");
    sign_user(&data, "alice", &old_cert);
    assert!(
        gets_in(&sshd, &old_cert, &me, &known_hosts),
        "{}",
        sshd.log()
    );
    // The admin identity as it is before the rotation, kept as a stale client would.
    let stale = dir.path().join("stale-client");
    std::fs::create_dir_all(stale.join("admin")).unwrap();
    for file in ["cert.pem", "key.pem", "ca.pem", "auth_addr"] {
        std::fs::copy(
            data.join("admin").join(file),
            stale.join("admin").join(file),
        )
        .unwrap();
    }
    let status_before = jctl_ok(&data, &["status", "--format", "json"]);
    let status_before: serde_json::Value = serde_json::from_str(&status_before).unwrap();

    let rotated = jctl_ok(
        &data,
        &["auth", "rotate", "--type", "all", "--grace-period", "1h"],
    );
    assert!(
        rotated.contains("Rotated the user, host, tls CAs"),
        "{rotated}"
    );
    assert!(rotated.contains("stay trusted until"), "{rotated}");
    assert!(rotated.contains("TrustedUserCAKeys"), "{rotated}");

    // jctl status shows the new keys and the old ones with their end.
    let status = jctl_ok(&data, &["status"]);
    assert!(status.contains("(old, trusted until"), "{status}");
    let status_json = jctl_ok(&data, &["status", "--format", "json"]);
    let status_json: serde_json::Value = serde_json::from_str(&status_json).unwrap();
    assert_ne!(
        status_json["user_ca_fingerprints"][0],
        status_before["user_ca_fingerprints"][0]
    );
    assert_eq!(
        status_json["user_ca_fingerprints"][1],
        status_before["user_ca_fingerprints"][0]
    );
    assert_eq!(status_json["ca_pins"][1], status_before["ca_pins"][0]);

    // The stale admin identity (old TLS CA only) still gets through.
    let stale_status = jctl_ok(&stale, &["status"]);
    assert!(
        stale_status.contains("You are:        admin"),
        "{stale_status}"
    );

    // A certificate of the new user CA is refused until sshd trusts the new key...
    let new_cert = keys.join("alice-new");
    sign_user(&data, "alice", &new_cert);
    assert!(!gets_in(&sshd, &new_cert, &me, &known_hosts));
    // ...and after re-exporting, old and new certificates both get in; the host's
    // certificate from the old host CA is still trusted by the new known_hosts.
    export_trust();
    assert!(
        gets_in(&sshd, &new_cert, &me, &known_hosts),
        "{}",
        sshd.log()
    );
    assert!(
        gets_in(&sshd, &old_cert, &me, &known_hosts),
        "{}",
        sshd.log()
    );

    // An emergency rotation retires every earlier key at once.
    let rotated = jctl_ok(
        &data,
        &["auth", "rotate", "--type", "all", "--grace-period", "0s"],
    );
    assert!(rotated.contains("retired at once"), "{rotated}");
    // The daemon re-issues the admin identity right after; wait for it.
    assert!(
        wait_until(Duration::from_secs(10), || jctl(&data, &["status"], None)
            .status
            .success()),
        "jctl lost access after the rotation"
    );
    export_trust();
    let newest = keys.join("alice-newest");
    sign_user(&data, "alice", &newest);
    // sshd's host certificate is from a retired host CA now: re-sign it and restart.
    drop(sshd);
    let sshd = start_sshd(&data, &dir.path().join("sshd-resigned"));
    assert!(gets_in(&sshd, &newest, &me, &known_hosts), "{}", sshd.log());
    assert!(
        !gets_in(&sshd, &old_cert, &me, &known_hosts),
        "a retired key's certificate got in"
    );
    assert!(
        !gets_in(&sshd, &new_cert, &me, &known_hosts),
        "a retired key's certificate got in"
    );
    let err = jctl_err(&stale, &["status"], None);
    assert!(!err.is_empty());

    // Both rotations are in the audit log, with who did them.
    let events = jctl_ok(
        &data,
        &[
            "audit",
            "search",
            "--type",
            "cert_authority.rotate",
            "--format",
            "json",
        ],
    );
    let events: Vec<serde_json::Value> = serde_json::from_str(&events).unwrap();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e["user"] == "admin:admin" && e["success"] == true),
        "{events:#?}"
    );
    assert_eq!(events[1]["grace_period_seconds"], 0);

    // Bad requests name what is wrong.
    let err = jctl_err(
        &data,
        &["auth", "rotate", "--type", "all", "--grace-period", "1000h"],
        None,
    );
    assert!(err.contains("maximum of 720 hours"), "{err}");
    let err = jctl_err(&data, &["auth", "rotate", "--type", "users"], None);
    assert!(err.contains("invalid value 'users'"), "{err}");
}
