//! Session recordings in PostgreSQL end to end (`audit_sessions_uri: postgresql://...`):
//! a daemon records a real PTY session into a real PostgreSQL server and `jsh recordings
//! ls` / `jsh play` read it back from there; then topology C (two all-in-one servers on
//! one PostgreSQL with a synchronous standby), where a session recorded by server 2's node
//! plays back through server 1's proxy, and still plays after server 1 and the primary die
//! together. A malformed URI stops the daemon at start, naming the field.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jumpgate_test_support::{Daemon, PG_DATABASE, PG_PASSWORD, PG_USER, Postgres};
use support::{Cluster, bins, free_port, jsh_ok, start_daemon, text, wait_until};

/// The connection URL with the password in it, as the `audit_events_uri` form takes it.
fn pg_url(hosts: &str) -> String {
    format!(
        "postgresql://{PG_USER}:{PG_PASSWORD}@{hosts}/{PG_DATABASE}?target_session_attrs=read-write"
    )
}

/// Waits until `jsh recordings ls` (profile `home`) lists a completed recording; its id.
fn completed_recording(home: &Path, log: impl Fn() -> String) -> String {
    let mut listed: Vec<serde_json::Value> = Vec::new();
    let completed = wait_until(Duration::from_secs(30), || {
        let out = jsh_ok(home, &["recordings", "ls", "--format", "json"], None);
        listed = serde_json::from_slice(&out.stdout).unwrap();
        listed.iter().any(|r| r["completed"] == true)
    });
    assert!(
        completed,
        "no completed recording in 30 s: {listed:?}\nlog:\n{}",
        log()
    );
    listed
        .iter()
        .find(|r| r["completed"] == true)
        .and_then(|r| r["session_id"].as_str())
        .unwrap()
        .to_string()
}

/// The recordings table's view of one recording: (size, completed, bytes stored in parts).
async fn stored(server: &Postgres, id: &str) -> (i64, bool, i64) {
    let client = server.client(PG_DATABASE).await.unwrap();
    let row = client
        .query_one(
            "SELECT r.size, r.completed,
                    (SELECT COALESCE(SUM(octet_length(p.data)), 0)::bigint
                     FROM jumpgate_recording_parts p WHERE p.session_id = r.session_id)
             FROM jumpgate_recordings r WHERE r.session_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_is_recorded_into_postgresql_and_played_back() {
    let pg = Postgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("jumpgate.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\n\
             jumpgate:\n  \
               data_dir: {data}\n  \
               storage:\n    \
                 audit_sessions_uri: \"{uri}\"\n\
             auth_service:\n  \
               enabled: true\n  \
               cluster_name: dev\n  \
               authentication:\n    \
                 type: local\n    \
                 second_factor: otp\n\
             proxy_service:\n  \
               enabled: true\n\
             ssh_service:\n  \
               enabled: true\n",
            data = data.display(),
            uri = pg_url(&format!("127.0.0.1:{}", pg.port())),
        ),
    )
    .unwrap();
    let daemon = start_daemon(
        &[
            "-c",
            config.to_str().unwrap(),
            "--proxy-addr",
            "127.0.0.1:0",
        ],
        &dir.path().join("daemon.log"),
    );
    let proxy = daemon.wait_for_proxy(&data);
    let cluster = Cluster {
        bins: bins().clone(),
        daemon,
        data: data.clone(),
        proxy,
    };
    let node = cluster.wait_for_dev_node();
    let uri = cluster.add_user_with_roles("sam", "access,auditor", "root");
    let home = dir.path().join("sam-home");
    cluster.login(&home, "sam", &uri);

    let out = jsh_ok(
        &home,
        &[
            "ssh",
            "-t",
            &format!("root@{node}"),
            "echo pg-recorded-marker",
        ],
        None,
    );
    assert!(text(&out.stdout).contains("pg-recorded-marker"));
    let id = completed_recording(&home, || cluster.daemon.log_text());

    // In the database, complete and whole; nothing in the data directory.
    let (size, completed, in_parts) = stored(&pg, &id).await;
    assert!(
        completed && size > 0 && size == in_parts,
        "{size} {completed} {in_parts}"
    );
    assert!(
        !data
            .join("log/sessions")
            .join(format!("{id}.cast"))
            .exists()
    );
    let log = cluster.daemon.log_text();
    assert!(
        log.contains("session recordings are stored in PostgreSQL"),
        "{log}"
    );
    assert!(!log.contains(PG_PASSWORD), "the password was logged");

    let shown = text(&jsh_ok(&home, &["play", &id, "--format", "text"], None).stdout);
    assert!(shown.contains("pg-recorded-marker"), "{shown}");
}

/// Server `name`'s all-in-one config for topology C: cluster state, audit events and
/// session recordings in the one PostgreSQL pair.
fn server(dir: &Path, name: &str, proxy: &str, both: &str, hosts: &str) -> (PathBuf, PathBuf) {
    let data = dir.join(format!("{name}-data"));
    let config = dir.join(format!("{name}.yaml"));
    let url = pg_url(hosts);
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: {name}\n  proxy_server: {both}\n  storage:\n    type: postgresql\n    conn_string: \"{url}\"\n    audit_events_uri: [\"{url}\"]\n    audit_sessions_uri: \"{url}\"\nauth_service:\n  cluster_name: pair\nproxy_service:\n  web_listen_addr: {proxy}\nssh_service:\n  enabled: true\n",
            data.display(),
        ),
    )
    .unwrap();
    (config, data)
}

fn start(config: &Path, proxy: &str, log: PathBuf) -> Daemon {
    let daemon = start_daemon(
        &["-c", config.to_str().unwrap(), "--proxy-addr", proxy],
        &log,
    );
    daemon.wait_ready(&["auth", "proxy"], &[]);
    daemon
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_made_through_server_two_plays_through_server_one_and_survives_its_loss() {
    let mut primary = Postgres::start().await;
    let standby = primary.start_standby().await;
    primary.make_synchronous().await;

    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let hosts = format!("127.0.0.1:{},127.0.0.1:{}", primary.port(), standby.port());
    let proxy_1 = format!("127.0.0.1:{}", free_port());
    let proxy_2 = format!("127.0.0.1:{}", free_port());
    let both = format!("{proxy_1},{proxy_2}");
    let (config_1, data_1) = server(dir, "server-1", &proxy_1, &both, &hosts);
    let (config_2, data_2) = server(dir, "server-2", &proxy_2, &both, &hosts);
    let server_1 = start(&config_1, &proxy_1, dir.join("server-1.log"));
    let server_2 = start(&config_2, &proxy_2, dir.join("server-2.log"));

    let bins = bins();
    let login = jumpgate_test_support::current_user();
    // One user records through server 2, an auditor plays through server 1 (each their
    // own one-time codes).
    let sam_otp = bins.add_user(&data_1, "sam", "access", &login);
    let ada_otp = bins.add_user(&data_1, "ada", "access,auditor", &login);
    // And one more plays through server 2 after server 1 is gone (a code of its own).
    let ben_otp = bins.add_user(&data_1, "ben", "access,auditor", &login);
    let ca = data_1.join("admin/ca.pem");
    let sam = dir.join("sam-home");
    let ada = dir.join("ada-home");
    let out = bins.login(&sam, &proxy_2, &ca, "sam", &sam_otp);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = bins.login(&ada, &proxy_1, &ca, "ada", &ada_otp);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Server 2's agent holds a tunnel to each proxy.
    let tunnels = || support::tunnel_holders(bins, &data_2, "server-2").len();
    assert!(
        wait_until(Duration::from_secs(40), || tunnels() == 2),
        "server 2's agent holds {} tunnels\n{}",
        tunnels(),
        server_2.log_text()
    );
    let target = format!("{login}@server-2");
    let out = jsh_ok(
        &sam,
        &["ssh", "-t", &target, "echo pair-recorded-marker"],
        None,
    );
    assert!(text(&out.stdout).contains("pair-recorded-marker"));
    let mut last = String::new();

    let id = completed_recording(&ada, || server_1.log_text());
    let shown = text(&jsh_ok(&ada, &["play", &id, "--format", "text"], None).stdout);
    assert!(shown.contains("pair-recorded-marker"), "{shown}");
    // Neither server's data directory holds it: one copy, in the database.
    for data in [&data_1, &data_2] {
        assert!(
            !data
                .join("log/sessions")
                .join(format!("{id}.cast"))
                .exists()
        );
    }
    let before = jsh_ok(&ada, &["play", &id, "--format", "asciicast"], None).stdout;

    // Server 1 dies with the primary; the standby is promoted; server 2 plays the same
    // bytes: the synchronous standby had every part acknowledged.
    drop(server_1);
    primary.kill().await;
    standby.promote().await;
    let ben = dir.join("ben-home");
    let mut relogged = false;
    for _ in 0..3 {
        let out = bins.jsh(
            &ben,
            &[
                "login",
                "--proxy",
                &proxy_2,
                "--user",
                "ben",
                "--ca-cert",
                ca.to_str().unwrap(),
                "--password-stdin",
                "--otp",
                &jumpgate_test_support::totp_now(&ben_otp),
            ],
            Some(&format!("{}\n", jumpgate_test_support::PASSWORD)),
        );
        if out.status.success() {
            relogged = true;
            break;
        }
        last = text(&out.stderr);
        // A one-time code is good once: the next try waits for the next one.
        std::thread::sleep(Duration::from_secs(30));
    }
    assert!(relogged, "{last}\nserver 2:\n{}", server_2.log_text());
    let mut after = Vec::new();
    let played = wait_until(Duration::from_secs(30), || {
        let out = support::jsh(&ben, &["play", &id, "--format", "asciicast"], None);
        after = out.stdout;
        out.status.success()
    });
    assert!(
        played,
        "play after the failover\nserver 2:\n{}",
        server_2.log_text()
    );
    assert!(after == before, "the recording changed across the failover");
}

#[test]
fn a_malformed_or_unsupported_sessions_uri_stops_the_daemon_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (uri, expected) in [
        (
            "postgresql://jumpgate:hunter2@db:port/jumpgate",
            "must be a number",
        ),
        (
            "postgresql://jumpgate:hunter2@db/j?sslmode=prefer",
            "falls back",
        ),
        ("postgresql://jumpgate:hunter2@db/j?colour=blue", "colour"),
        ("mysql://jumpgate@db/j", "unsupported scheme"),
    ] {
        let config = dir.path().join("jumpgate.yaml");
        std::fs::write(
            &config,
            format!(
                "version: v3\njumpgate:\n  data_dir: {}\n  storage:\n    audit_sessions_uri: \"{uri}\"\nauth_service:\n  cluster_name: dev\nproxy_service:\n  enabled: false\nssh_service:\n  enabled: false\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let out = support::run(&["start", "-c", config.to_str().unwrap()], None);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{uri}: started\n{err}");
        assert!(err.contains("audit_sessions_uri"), "{uri}: {err}");
        assert!(err.contains(expected), "{uri}: {err}");
        assert!(
            !err.contains("hunter2"),
            "{uri}: the password was shown: {err}"
        );
    }
}
