//! The daemon's lifecycle with real processes: start, diagnostics, the data-directory
//! lock, SIGTERM, and an etcd outage seen through `/readyz`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use jumpgate_test_support::{
    DynamoEmulator, EMULATOR_ACCESS_KEY_ID, EMULATOR_REGION, EMULATOR_SECRET_ACCESS_KEY,
    EtcdServer, Postgres,
};
use std::time::Duration;
use support::{Daemon, http_get, jctl_ok, run, start_daemon, text, wait_until};

#[test]
fn dev_cluster_serves_diagnostics_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut daemon = start_daemon(
        &["--dev", "--data-dir", data.to_str().unwrap()],
        &dir.path().join("log"),
    );
    let ready = wait_until(Duration::from_secs(10), || {
        daemon.readyz().is_some_and(|(status, _)| status == 200)
    });
    assert!(
        ready,
        "not ready: {:?}\n{}",
        daemon.readyz(),
        daemon.log_text()
    );
    let (status, body) = http_get(daemon.diag_port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("jumpgate_build_info"), "{body}");
    assert!(body.contains("jumpgate_backend_up 1"), "{body}");
    assert!(
        body.contains("jumpgate_backend_request_duration_seconds"),
        "{body}"
    );
    assert_eq!(http_get(daemon.diag_port, "/nope").unwrap().0, 404);

    // The banner tells a first-time user where things are (printed once the proxy has
    // its port, a moment after it is ready).
    assert!(
        wait_until(Duration::from_secs(10), || daemon
            .log_text()
            .contains("Jumpgate dev cluster is running")),
        "{}",
        daemon.log_text()
    );
    assert!(
        daemon.log_text().contains("jsh ssh"),
        "{}",
        daemon.log_text()
    );
    assert!(data.join("backend").join("sqlite.db").exists());

    // A second daemon on the same data directory is refused, naming the lock.
    let second = run(
        &[
            "start",
            "--dev",
            "--data-dir",
            data.to_str().unwrap(),
            "--diag-addr",
            "127.0.0.1:0",
        ],
        None,
    );
    assert_eq!(second.status.code(), Some(1));
    assert!(
        text(&second.stderr).contains("in use by another jumpgate process"),
        "{}",
        text(&second.stderr)
    );

    assert!(
        daemon.terminate(),
        "SIGTERM did not stop the daemon cleanly"
    );
    let log = daemon.log_text();
    assert!(log.contains("signal=\"SIGTERM\""), "{log}");
    assert!(log.contains("jumpgate stopped"), "{log}");
}

#[test]
fn json_logs_at_the_configured_level() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jumpgate.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  log:\n    severity: WARN\n    format:\n      output: json\n  storage:\n    type: memory\nauth_service:\n  enabled: yes\n  cluster_name: test\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut daemon = start_daemon(&["-c", config.to_str().unwrap()], &dir.path().join("log"));
    // Memory storage is warned about: at least that line must be there, as JSON.
    assert!(wait_until(Duration::from_secs(10), || daemon
        .log_text()
        .contains("storage type memory")));
    assert!(daemon.terminate());
    let log = daemon.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON log line ({err}): {line}"));
        let level = parsed["level"].as_str().unwrap_or_default();
        assert!(
            matches!(level, "WARN" | "ERROR"),
            "below WARN was logged: {line}"
        );
    }
}

/// SIGHUP reloads other daemons; here it must neither stop a server (systemd would not
/// restart it: a clean signal) nor pass unnoticed. A `--dev` cluster in a terminal stops.
#[test]
fn sighup_is_logged_and_ignored_by_a_server_and_stops_a_dev_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jumpgate.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  storage:\n    type: memory\nauth_service:\n  cluster_name: test\n",
            dir.path().join("server").display()
        ),
    )
    .unwrap();
    let mut server = start_daemon(&["-c", config.to_str().unwrap()], &dir.path().join("log"));
    assert!(wait_until(Duration::from_secs(10), || server
        .log_text()
        .contains("jumpgate started")));
    assert!(server.process.signal("HUP"));
    assert!(
        wait_until(Duration::from_secs(10), || server
            .log_text()
            .contains("SIGHUP: jumpgate does not reload its config")),
        "{}",
        server.log_text()
    );
    server.process.check_alive();
    assert_eq!(
        http_get(server.diag_port, "/healthz").map(|(status, _)| status),
        Some(200)
    );
    assert!(server.terminate(), "{}", server.log_text());

    let data = dir.path().join("dev");
    let mut dev = start_daemon(
        &["--dev", "--data-dir", data.to_str().unwrap()],
        &dir.path().join("dev.log"),
    );
    assert!(wait_until(Duration::from_secs(10), || dev
        .log_text()
        .contains("jumpgate started")));
    assert!(dev.process.signal("HUP"));
    assert!(
        wait_until(Duration::from_secs(15), || dev.process.has_exited()),
        "{}",
        dev.log_text()
    );
    assert!(
        dev.log_text().contains("signal=\"SIGHUP\""),
        "{}",
        dev.log_text()
    );
}

#[test]
fn a_config_that_cannot_bind_its_diag_addr_fails_at_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "start",
            "--dev",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--diag-addr",
            &format!("127.0.0.1:{port}"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("diag_addr") && err.contains(&port.to_string()),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_an_etcd_outage_and_recovery() {
    let mut etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jumpgate.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  storage:\n    type: etcd\n    peers: [\"{}\"]\n    prefix: /jumpgate-e2e/\nauth_service:\n  cluster_name: ha\n",
            dir.path().join("data").display(),
            etcd.endpoint()
        ),
    )
    .unwrap();
    let daemon = start_daemon(&["-c", config.to_str().unwrap()], &dir.path().join("log"));
    let status = |daemon: &Daemon| daemon.readyz();
    assert!(
        wait_until(Duration::from_secs(10), || status(&daemon)
            .is_some_and(|(s, _)| s == 200)),
        "{:?}\n{}",
        status(&daemon),
        daemon.log_text()
    );

    etcd.stop().await;
    let mut seen = None;
    let noticed = wait_until(Duration::from_secs(20), || {
        seen = status(&daemon);
        seen.as_ref().is_some_and(|(s, _)| *s == 503)
    });
    assert!(noticed, "etcd outage not reflected: {seen:?}");
    let (_, body) = seen.unwrap();
    assert!(body.contains("etcd"), "the reason should name etcd: {body}");

    etcd.start_again().await;
    assert!(
        wait_until(Duration::from_secs(30), || status(&daemon)
            .is_some_and(|(s, _)| s == 200)),
        "did not recover: {:?}",
        status(&daemon)
    );
}

/// `storage.type: postgresql` as an operator writes it (the password in a file) and
/// `audit_events_uri: postgresql://...`: the cluster's CAs, users and audit events live in
/// PostgreSQL and survive a restart of the daemon on a new data directory, and the log
/// names the backend.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_keeps_its_state_in_postgresql_across_restarts() {
    let postgres = Postgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let password_file = dir.path().join("pg-password");
    std::fs::write(&password_file, format!("{}\n", postgres.password())).unwrap();
    let config = dir.path().join("jumpgate.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  storage:\n    type: postgresql\n    conn_string: \"{}\"\n    password_file: {}\n    audit_events_uri: [\"{}\"]\nauth_service:\n  cluster_name: pg\n",
            data.display(),
            postgres.conn_string(),
            password_file.display(),
            postgres
                .conn_string()
                .replacen('@', &format!(":{}@", postgres.password()), 1),
        ),
    )
    .unwrap();
    let log = dir.path().join("log");
    let mut daemon = start_daemon(&["-c", config.to_str().unwrap()], &log);
    let ready = |daemon: &Daemon| {
        wait_until(Duration::from_secs(20), || {
            daemon.readyz().is_some_and(|(status, _)| status == 200)
        })
    };
    assert!(ready(&daemon), "{}", daemon.log_text());
    assert!(
        daemon.log_text().contains("postgresql"),
        "the log should name the backend:\n{}",
        daemon.log_text()
    );
    jctl_ok(
        &data,
        &[
            "users", "add", "carol", "--roles", "access", "--logins", "root",
        ],
    );
    let pin = jctl_ok(&data, &["status"]);
    assert!(daemon.terminate(), "{}", daemon.log_text());

    // A new data directory: everything the cluster knows must come from PostgreSQL.
    let data_again = dir.path().join("data-again");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap().replace(
            &data.display().to_string(),
            &data_again.display().to_string(),
        ),
    )
    .unwrap();
    let daemon = start_daemon(&["-c", config.to_str().unwrap()], &dir.path().join("log-2"));
    assert!(ready(&daemon), "{}", daemon.log_text());
    let users = jctl_ok(&data_again, &["users", "ls"]);
    assert!(users.contains("carol"), "{users}");
    let events = jctl_ok(
        &data_again,
        &[
            "audit",
            "search",
            "--type",
            "user.create",
            "--format",
            "json",
        ],
    );
    assert!(
        events.contains("carol"),
        "the first run's audit events are not in PostgreSQL: {events}"
    );
    assert!(
        !data.join("log").join("events.db").exists()
            && !data_again.join("log").join("events.db").exists(),
        "with audit_events_uri set, no local SQLite audit log is made"
    );
    assert!(
        !daemon.log_text().contains(postgres.password()),
        "the password leaked into the log"
    );
    let ca_line = |status: &str| {
        status
            .lines()
            .find(|line| line.contains("sha256:"))
            .map(str::to_string)
    };
    let before = ca_line(&pin).expect("jctl status prints the CA pin");
    assert_eq!(
        ca_line(&jctl_ok(&data_again, &["status"])),
        Some(before),
        "the cluster's CA changed: its state did not come from PostgreSQL"
    );
}

/// The network to PostgreSQL is cut for 10 s under a running daemon: `/readyz` turns
/// not ready within seconds, naming the store, and ready again by itself after the cut.
#[tokio::test(flavor = "multi_thread")]
async fn a_network_cut_to_postgresql_shows_on_readyz_and_heals_by_itself() {
    let postgres = Postgres::start().await;
    let cut = jumpgate_test_support::NetCut::start(&format!("127.0.0.1:{}", postgres.port())).await;
    let through_cut = postgres.conn_string().replace(
        &format!(":{}/", postgres.port()),
        &format!(":{}/", cut.addr().port()),
    );
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("pg-password");
    std::fs::write(&password_file, postgres.password()).unwrap();
    let config = dir.path().join("jumpgate.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  storage:\n    type: postgresql\n    conn_string: \"{through_cut}\"\n    password_file: {}\nauth_service:\n  cluster_name: cut\n",
            dir.path().join("data").display(),
            password_file.display()
        ),
    )
    .unwrap();
    let daemon = start_daemon(&["-c", config.to_str().unwrap()], &dir.path().join("log"));
    let status = |daemon: &Daemon| daemon.readyz();
    assert!(
        wait_until(Duration::from_secs(20), || status(&daemon)
            .is_some_and(|(s, _)| s == 200)),
        "{:?}\n{}",
        status(&daemon),
        daemon.log_text()
    );

    cut.cut();
    let started = std::time::Instant::now();
    let mut seen = None;
    let noticed = wait_until(Duration::from_secs(9), || {
        seen = status(&daemon);
        seen.as_ref().is_some_and(|(s, _)| *s == 503)
    });
    assert!(
        noticed,
        "a cut network was not reflected on /readyz: {seen:?}"
    );
    let (_, body) = seen.unwrap();
    assert!(
        body.contains("postgresql"),
        "the reason should name the store: {body}"
    );
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed())).await;
    cut.heal();
    assert!(
        wait_until(Duration::from_secs(30), || status(&daemon)
            .is_some_and(|(s, _)| s == 200)),
        "did not recover after the cut: {:?}",
        status(&daemon)
    );
}

#[test]
fn a_corrupt_state_database_stops_the_daemon_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("backend")).unwrap();
    std::fs::write(
        data.join("backend").join("sqlite.db"),
        b"garbage garbage garbage garbage garbage garbage garbage garbage",
    )
    .unwrap();
    let mut child = support::jumpgate()
        .args([
            "start",
            "--dev",
            "--data-dir",
            data.to_str().unwrap(),
            "--diag-addr",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(Duration::from_secs(15), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = child.kill();
        panic!("the daemon kept running on a corrupt database");
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("sqlite.db"), "{err}");
    assert!(err.contains("jumpgate backup restore"), "{err}");
}

fn ca_pin_in(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|line| line.contains("cluster certificate authorities ready"))?;
    let start = line.find("ca_pin=")? + "ca_pin=".len();
    Some(line[start..].split_whitespace().next()?.to_string())
}

#[test]
fn the_cluster_keeps_its_cas_across_restarts_and_refuses_a_new_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = |name: &str| {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "version: v3\njumpgate:\n  data_dir: {}\nauth_service:\n  cluster_name: {name}\n",
                data.display()
            ),
        )
        .unwrap();
        path
    };
    let prod = config("prod");
    let mut pins = Vec::new();
    for run in 0..2 {
        let mut daemon = start_daemon(
            &["-c", prod.to_str().unwrap()],
            &dir.path().join(format!("log{run}")),
        );
        let ready = wait_until(Duration::from_secs(15), || {
            daemon
                .readyz()
                .is_some_and(|(status, body)| status == 200 && body.contains("\"auth\""))
        });
        assert!(ready, "{:?}\n{}", daemon.readyz(), daemon.log_text());
        let pin = ca_pin_in(&daemon.log_text()).expect("the log names the ca_pin");
        assert!(pin.starts_with("sha256:"), "{pin}");
        pins.push(pin);
        assert!(daemon.terminate());
    }
    assert_eq!(pins[0], pins[1], "a restart must keep the cluster's CAs");

    let renamed = config("staging");
    let out = run(
        &[
            "start",
            "-c",
            renamed.to_str().unwrap(),
            "--diag-addr",
            "127.0.0.1:0",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cluster_name") && err.contains("\"prod\""),
        "{err}"
    );
}

/// The value of the sample `name` (with its labels, as exported) on `/metrics`.
fn sample(daemon: &Daemon, name: &str) -> Option<f64> {
    let (_, body) = http_get(daemon.diag_port, "/metrics")?;
    body.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// What an operator watches moves with what happens: logins, certificates, the proxy's
/// connections by route, tunnels, SSH sessions on the node, audit writes, watch streams.
#[test]
fn metrics_follow_logins_connections_sessions_and_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = support::start_dev_cluster(dir.path());
    let node = cluster.wait_for_dev_node();
    let daemon = &cluster.daemon;
    let uri = cluster.add_user("alice", "root");
    let home = dir.path().join("alice");
    cluster.login(&home, "alice", &uri);
    let ca = cluster.ca();
    let bad = support::jsh(
        &dir.path().join("mallory"),
        &[
            "login",
            "--proxy",
            &cluster.proxy,
            "--user",
            "alice",
            "--ca-cert",
            &ca,
            "--password-stdin",
            "--otp",
            "000000",
        ],
        Some("wrong password\n"),
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("invalid"),
        "{}",
        text(&bad.stderr)
    );
    let out = support::jsh_ok(&home, &["ssh", &format!("root@{node}"), "echo hi"], None);
    assert_eq!(text(&out.stdout), "hi\n");

    let at_least = |name: &str, least: f64| {
        let value = sample(daemon, name);
        assert!(
            value.is_some_and(|value| value >= least),
            "{name} = {value:?}, expected at least {least}\n{}",
            http_get(daemon.diag_port, "/metrics").unwrap().1
        );
    };
    at_least("jumpgate_user_logins_total{result=\"success\"}", 1.0);
    at_least("jumpgate_user_logins_total{result=\"failure\"}", 1.0);
    at_least("jumpgate_certificates_issued_total{kind=\"user\"}", 1.0);
    at_least("jumpgate_certificates_issued_total{kind=\"host\"}", 1.0);
    at_least("jumpgate_reverse_tunnels_connected", 1.0);
    at_least("jumpgate_node_ssh_logins_total{result=\"accepted\"}", 1.0);
    at_least("jumpgate_audit_events_total{result=\"written\"}", 3.0);
    at_least("jumpgate_watch_streams{kind=\"role\"}", 1.0);
    at_least("jumpgate_watch_streams{kind=\"node\"}", 1.0);
    // The ssh connection is counted when it ends, a moment after jsh returns.
    let counted = wait_until(Duration::from_secs(5), || {
        sample(
            daemon,
            "jumpgate_proxy_connections_total{result=\"served\",route=\"ssh\"}",
        )
        .is_some_and(|value| value >= 1.0)
    });
    assert!(
        counted,
        "{}",
        http_get(daemon.diag_port, "/metrics").unwrap().1
    );
    at_least(
        "jumpgate_proxy_connections_total{result=\"served\",route=\"web\"}",
        1.0,
    );
    assert_eq!(
        sample(daemon, "jumpgate_node_ssh_sessions_active"),
        Some(0.0)
    );
}

/// Seed 000's operator leaves SQLite: `jumpgate storage migrate` moves a stopped cluster's
/// state and audit events to PostgreSQL, verifies them, refuses to run while the daemon
/// holds the source and refuses to overwrite a non-empty target without --force; the
/// cluster then starts on PostgreSQL with the same CA, users and audit history.
#[tokio::test(flavor = "multi_thread")]
async fn storage_migrate_moves_a_sqlite_cluster_to_postgresql() {
    let postgres = Postgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite_data = dir.path().join("sqlite-data");
    let sqlite_config = dir.path().join("sqlite.yaml");
    std::fs::write(
        &sqlite_config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\nauth_service:\n  cluster_name: moving\n",
            sqlite_data.display()
        ),
    )
    .unwrap();
    let pg_data = dir.path().join("pg-data");
    let password_file = dir.path().join("pg-password");
    std::fs::write(&password_file, postgres.password()).unwrap();
    let pg_config = dir.path().join("postgres.yaml");
    std::fs::write(
        &pg_config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  storage:\n    type: postgresql\n    conn_string: \"{}\"\n    password_file: {}\n    audit_events_uri: [\"{}\"]\nauth_service:\n  cluster_name: moving\n",
            pg_data.display(),
            postgres.conn_string(),
            password_file.display(),
            postgres
                .conn_string()
                .replacen('@', &format!(":{}@", postgres.password()), 1),
        ),
    )
    .unwrap();
    let migrate = |extra: &[&str]| {
        let mut args = vec![
            "storage",
            "migrate",
            "--from",
            sqlite_config.to_str().unwrap(),
            "--to",
            pg_config.to_str().unwrap(),
            "--audit",
        ];
        args.extend_from_slice(extra);
        run(&args, None)
    };

    let mut daemon = start_daemon(
        &["-c", sqlite_config.to_str().unwrap()],
        &dir.path().join("log-sqlite"),
    );
    assert!(
        wait_until(Duration::from_secs(20), || daemon
            .readyz()
            .is_some_and(|(s, _)| s == 200)),
        "{}",
        daemon.log_text()
    );
    jctl_ok(
        &sqlite_data,
        &[
            "users", "add", "dana", "--roles", "access", "--logins", "root",
        ],
    );
    let pin = jctl_ok(&sqlite_data, &["status"]);

    // While the daemon runs, its state may change under the copy: refused.
    let busy = migrate(&[]);
    assert_eq!(busy.status.code(), Some(1), "{}", text(&busy.stdout));
    assert!(
        text(&busy.stderr).contains("stop the daemon"),
        "{}",
        text(&busy.stderr)
    );
    assert!(daemon.terminate(), "{}", daemon.log_text());

    let moved = migrate(&[]);
    assert!(
        moved.status.success(),
        "{}{}",
        text(&moved.stdout),
        text(&moved.stderr)
    );
    let out = text(&moved.stdout);
    assert!(out.contains("Verified:") && out.contains("sha256"), "{out}");
    assert!(out.contains("audit events"), "{out}");
    assert!(!out.contains(postgres.password()), "{out}");

    // Again: the target holds state now.
    let again = migrate(&[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
    let forced = migrate(&["--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert!(
        text(&forced.stdout).contains("Emptied the target"),
        "{}",
        text(&forced.stdout)
    );

    let daemon = start_daemon(
        &["-c", pg_config.to_str().unwrap()],
        &dir.path().join("log-pg"),
    );
    assert!(
        wait_until(Duration::from_secs(20), || daemon
            .readyz()
            .is_some_and(|(s, _)| s == 200)),
        "{}",
        daemon.log_text()
    );
    assert!(jctl_ok(&pg_data, &["users", "ls"]).contains("dana"));
    let ca_line = |status: &str| {
        status
            .lines()
            .find(|line| line.contains("sha256:"))
            .map(str::to_string)
    };
    assert_eq!(
        ca_line(&jctl_ok(&pg_data, &["status"])),
        ca_line(&pin),
        "the cluster's CA did not move"
    );
    let events = jctl_ok(
        &pg_data,
        &[
            "audit",
            "search",
            "--type",
            "user.create",
            "--format",
            "json",
        ],
    );
    assert!(
        events.contains("dana"),
        "audit history did not move: {events}"
    );
}

/// Two auth servers on one PostgreSQL, started at the same moment (the first start of a
/// cluster): they agree on one set of CAs, either one sees what the other wrote at once
/// (caches fed by the backend's watch), and both write to and search one audit log.
#[tokio::test(flavor = "multi_thread")]
async fn two_auth_servers_started_together_share_one_cluster_in_postgresql() {
    let postgres = Postgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("pg-password");
    std::fs::write(&password_file, postgres.password()).unwrap();
    let audit_uri = postgres
        .conn_string()
        .replacen('@', &format!(":{}@", postgres.password()), 1);
    let config_for = |name: &str| {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "version: v3\njumpgate:\n  data_dir: {}\n  storage:\n    type: postgresql\n    conn_string: \"{}\"\n    password_file: {}\n    audit_events_uri: [\"{audit_uri}\"]\nauth_service:\n  cluster_name: shared\nproxy_service:\n  enabled: false\nssh_service:\n  enabled: false\n",
                dir.path().join(format!("{name}-data")).display(),
                postgres.conn_string(),
                password_file.display(),
            ),
        )
        .unwrap();
        path
    };
    let (config_a, config_b) = (config_for("a"), config_for("b"));
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| start_daemon(&["-c", config_a.to_str().unwrap()], &log_a));
        let b = scope.spawn(|| start_daemon(&["-c", config_b.to_str().unwrap()], &log_b));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (data_a, data_b) = (dir.path().join("a-data"), dir.path().join("b-data"));
    for (daemon, data) in [(&a, &data_a), (&b, &data_b)] {
        assert!(
            wait_until(Duration::from_secs(30), || data
                .join("admin/auth_addr")
                .exists()
                && daemon.readyz().is_some_and(|(s, _)| s == 200)),
            "{}",
            daemon.log_text()
        );
    }
    let pins = |data: &std::path::Path| {
        let status: serde_json::Value =
            serde_json::from_str(&jctl_ok(data, &["status", "--format", "json"])).unwrap();
        status["ca_pins"].clone()
    };
    assert_eq!(
        pins(&data_a),
        pins(&data_b),
        "the two auth servers made two clusters"
    );
    let created = [&a, &b]
        .iter()
        .filter(|d| {
            d.log_text()
                .contains("created the cluster's certificate authorities")
        })
        .count();
    assert_eq!(created, 1, "exactly one auth server creates the CAs");

    jctl_ok(
        &data_a,
        &[
            "users", "add", "frank", "--roles", "access", "--logins", "root",
        ],
    );
    assert!(
        wait_until(Duration::from_secs(5), || jctl_ok(
            &data_b,
            &["users", "ls"]
        )
        .contains("frank")),
        "a user added on one auth server is not seen on the other"
    );
    jctl_ok(
        &data_b,
        &[
            "users", "add", "gina", "--roles", "access", "--logins", "root",
        ],
    );
    for data in [&data_a, &data_b] {
        let events = jctl_ok(
            data,
            &[
                "audit",
                "search",
                "--type",
                "user.create",
                "--format",
                "json",
            ],
        );
        assert!(
            events.contains("frank") && events.contains("gina"),
            "each auth server must search the one log: {events}"
        );
    }
}

/// Seed 004's `storage.type: dynamodb`, with moto's server mode standing in for DynamoDB
/// (an emulator) through `endpoint`, and the credentials in the environment as the AWS chain
/// reads them: the cluster's CAs and users live in the table and survive a restart of the
/// daemon with a fresh data directory.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_keeps_its_state_in_dynamodb_across_restarts() {
    let emulator = DynamoEmulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("jumpgate.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  storage:\n    type: dynamodb\n    region: {EMULATOR_REGION}\n    table_name: jumpgate-backend\n    endpoint: {}\nauth_service:\n  cluster_name: dynamo\n",
            data.display(),
            emulator.endpoint(),
        ),
    )
    .unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", EMULATOR_ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", EMULATOR_SECRET_ACCESS_KEY),
        // No profile or instance metadata lookups on a test machine.
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let start = |config: &std::path::Path, log: &std::path::Path| {
        support::Daemon::start_with_env(
            support::bins(),
            &["-c", config.to_str().unwrap()],
            &env,
            log,
        )
    };
    let ready = |daemon: &Daemon| {
        wait_until(Duration::from_secs(30), || {
            daemon.readyz().is_some_and(|(status, _)| status == 200)
        })
    };
    let mut daemon = start(&config, &dir.path().join("log"));
    assert!(ready(&daemon), "{}", daemon.log_text());
    let log = daemon.log_text();
    assert!(
        log.contains("DynamoDB table jumpgate-backend"),
        "the log should name the table:\n{log}"
    );
    assert!(
        !log.contains(EMULATOR_SECRET_ACCESS_KEY),
        "the secret was logged:\n{log}"
    );
    jctl_ok(
        &data,
        &[
            "users", "add", "dora", "--roles", "access", "--logins", "root",
        ],
    );
    let pin = jctl_ok(&data, &["status"]);
    assert!(daemon.terminate(), "{}", daemon.log_text());

    // A new data directory: everything the cluster knows must come from the table.
    let data_again = dir.path().join("data-again");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap().replace(
            &data.display().to_string(),
            &data_again.display().to_string(),
        ),
    )
    .unwrap();
    let daemon = start(&config, &dir.path().join("log-2"));
    assert!(ready(&daemon), "{}", daemon.log_text());
    let users = jctl_ok(&data_again, &["users", "ls"]);
    assert!(users.contains("dora"), "{users}");
    let ca_line = |status: &str| {
        status
            .lines()
            .find(|line| line.contains("sha256:"))
            .map(str::to_string)
    };
    let before = ca_line(&pin).expect("jctl status prints the CA pin");
    assert_eq!(
        ca_line(&jctl_ok(&data_again, &["status"])),
        Some(before),
        "the cluster's CA changed: its state did not come from DynamoDB"
    );
}

/// `storage.type: dynamodb` on a machine with no AWS credentials anywhere in the chain (no
/// environment variables, no profile files, instance metadata off): the daemon stops with
/// an error that names the table and says where credentials come from, rather than
/// retrying forever.
#[test]
fn a_daemon_without_aws_credentials_stops_and_says_where_they_come_from() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("jumpgate.yaml");
    // Nothing listens there; credentials are looked for before any request.
    let endpoint = format!("http://127.0.0.1:{}", jumpgate_test_support::free_port());
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  storage:\n    type: dynamodb\n    region: eu-west-1\n    table_name: jumpgate-nocreds\n    endpoint: {endpoint}\nauth_service:\n  cluster_name: nocreds\n",
            data.display(),
        ),
    )
    .unwrap();
    let mut command = support::jumpgate();
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        command.env_remove(var);
    }
    let mut child = command
        .env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", dir.path().join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.path().join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args([
            "start",
            "-c",
            config.to_str().unwrap(),
            "--diag-addr",
            "127.0.0.1:0",
            "--auth-addr",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(Duration::from_secs(30), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = child.kill();
        panic!("the daemon kept running without AWS credentials");
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("no AWS credentials found"), "{err}");
    assert!(err.contains("jumpgate-nocreds"), "{err}");
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
}

/// `jumpgate storage migrate --recordings` moves the session recordings to the store the
/// target config names: a finished one in several parts and one still being uploaded,
/// byte for byte (compared by SHA-256 by the command and here), keeping which are
/// complete; a second run copies nothing new; a target holding a different, longer
/// recording under the same id is refused rather than overwritten.
#[tokio::test(flavor = "multi_thread")]
async fn storage_migrate_moves_the_session_recordings() {
    use jumpgate_audit::RecordingStore;
    use jumpgate_audit::recording::{MAX_PART_LEN, SessionId};

    let dir = tempfile::tempdir().unwrap();
    let source_data = dir.path().join("source-data");
    let source_config = dir.path().join("source.yaml");
    std::fs::write(
        &source_config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\nauth_service:\n  cluster_name: moving\n",
            source_data.display()
        ),
    )
    .unwrap();
    let target_sessions = dir.path().join("target-sessions");
    let target_config = dir.path().join("target.yaml");
    std::fs::write(
        &target_config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  storage:\n    audit_sessions_uri: \"file://{}\"\nauth_service:\n  cluster_name: moving\n",
            dir.path().join("target-data").display(),
            target_sessions.display()
        ),
    )
    .unwrap();
    // A cluster state to move (the command refuses a source without one).
    let mut daemon = start_daemon(
        &["-c", source_config.to_str().unwrap()],
        &dir.path().join("log"),
    );
    assert!(
        wait_until(Duration::from_secs(20), || daemon
            .readyz()
            .is_some_and(|(s, _)| s == 200)),
        "{}",
        daemon.log_text()
    );
    assert!(daemon.terminate(), "{}", daemon.log_text());

    // Two recordings in the source's default store: one finished, of several parts, and
    // one whose upload is still going on.
    let source = jumpgate_audit::FileRecordingStore::open(source_data.join("log/sessions"))
        .await
        .unwrap();
    let cast = |events: usize| {
        let mut text = String::from("{\"version\":2,\"width\":80,\"height\":24}\n");
        for i in 0..events {
            text.push_str(&format!(
                "[{}.5,\"o\",\"line {i} of the session\\r\\n\"]\n",
                i
            ));
        }
        text.into_bytes()
    };
    let finished = SessionId::new("3f6c1a52-finished").unwrap();
    let going_on = SessionId::new("9b2e44d0-going-on").unwrap();
    let finished_bytes = cast(3 * MAX_PART_LEN / 30);
    let going_on_bytes = cast(10);
    let mut offset = 0;
    for part in finished_bytes.chunks(MAX_PART_LEN) {
        offset = source
            .append_part(&finished, offset, part.to_vec())
            .await
            .unwrap();
    }
    source.complete(&finished).await.unwrap();
    source
        .append_part(&going_on, 0, going_on_bytes.clone())
        .await
        .unwrap();
    assert!(
        finished_bytes.len() > 2 * MAX_PART_LEN,
        "make it several parts"
    );

    let migrate = |extra: &[&str]| {
        let mut args = vec![
            "storage",
            "migrate",
            "--from",
            source_config.to_str().unwrap(),
            "--to",
            target_config.to_str().unwrap(),
            "--recordings",
        ];
        args.extend_from_slice(extra);
        run(&args, None)
    };
    let moved = migrate(&[]);
    assert!(
        moved.status.success(),
        "{}{}",
        text(&moved.stdout),
        text(&moved.stderr)
    );
    let total = finished_bytes.len() + going_on_bytes.len();
    assert!(
        text(&moved.stdout).contains(&format!("Copied 2 session recordings ({total} new bytes)")),
        "{}",
        text(&moved.stdout)
    );
    let target = jumpgate_audit::FileRecordingStore::open(&target_sessions)
        .await
        .unwrap();
    assert_eq!(target.read(&finished).await.unwrap(), finished_bytes);
    assert_eq!(target.read(&going_on).await.unwrap(), going_on_bytes);
    let state = |id: &SessionId| {
        let target = &target;
        let id = id.clone();
        async move { target.stat(&id).await.unwrap().unwrap().completed }
    };
    assert!(
        state(&finished).await,
        "the finished recording is not complete"
    );
    assert!(
        !state(&going_on).await,
        "an unfinished recording was completed"
    );

    // Again (the state needs --force; the recordings are there whole): nothing new.
    let again = migrate(&["--force"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("Copied 2 session recordings (0 new bytes)"),
        "{}",
        text(&again.stdout)
    );

    // A target recording longer than the source's under the same id is another recording.
    target
        .append_part(
            &going_on,
            going_on_bytes.len() as u64,
            b"[99.0,\"o\",\"x\"]\n".to_vec(),
        )
        .await
        .unwrap();
    let clash = migrate(&["--force"]);
    assert_eq!(clash.status.code(), Some(1), "{}", text(&clash.stdout));
    assert!(
        text(&clash.stderr).contains("9b2e44d0-going-on")
            && text(&clash.stderr).contains("not the same recording"),
        "{}",
        text(&clash.stderr)
    );
}
