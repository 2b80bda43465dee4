//! Session recordings in S3 end to end: a daemon configured with
//! `audit_sessions_uri: s3://...` (auth, proxy and this host's SSH service, credentials from
//! the standard AWS environment variables) records a real PTY session into a real
//! S3-compatible server (`s3s-fs`, which checks SigV4 signatures), and `jsh recordings ls` /
//! `jsh play` read it back from there.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;
use support::{
    Cluster, Daemon, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, S3Server, bins, jsh_ok, text,
    wait_until,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_session_is_recorded_into_s3_and_played_back() {
    let s3 = S3Server::start().await;
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
                 audit_sessions_uri: \"s3://{S3_BUCKET}/cluster/sessions?endpoint={endpoint}&region=us-east-1\"\n\
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
            endpoint = s3.endpoint(),
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let daemon = Daemon::start_with_env(
        bins(),
        &[
            "-c",
            config.to_str().unwrap(),
            "--proxy-addr",
            "127.0.0.1:0",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
        ],
        &log,
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
            "echo s3-recorded-marker",
        ],
        None,
    );
    assert!(text(&out.stdout).contains("s3-recorded-marker"));

    let mut listed: Vec<serde_json::Value> = Vec::new();
    let completed = wait_until(Duration::from_secs(30), || {
        let out = jsh_ok(&home, &["recordings", "ls", "--format", "json"], None);
        listed = serde_json::from_slice(&out.stdout).unwrap();
        listed.iter().any(|r| r["completed"] == true)
    });
    assert!(
        completed,
        "no completed recording in 30 s: {listed:?}\nlog:\n{}",
        cluster.daemon.log_text()
    );
    let id = listed
        .iter()
        .find(|r| r["completed"] == true)
        .and_then(|r| r["session_id"].as_str())
        .unwrap()
        .to_string();

    // In the bucket, as one object under the prefix; nothing in the data directory.
    let object = s3
        .data_dir()
        .join(S3_BUCKET)
        .join(format!("cluster/sessions/{id}.cast"));
    let stored = std::fs::read(&object).unwrap_or_else(|err| {
        panic!(
            "{}: {err}\nlog:\n{}",
            object.display(),
            cluster.daemon.log_text()
        )
    });
    eprintln!("{} bytes in {}", stored.len(), object.display());
    assert!(
        String::from_utf8_lossy(&stored).contains("s3-recorded-marker"),
        "{}",
        String::from_utf8_lossy(&stored)
    );
    assert!(
        !data
            .join("log/sessions")
            .join(format!("{id}.cast"))
            .exists()
    );
    let log_text = cluster.daemon.log_text();
    assert!(
        log_text.contains("session recordings are stored in S3"),
        "{log_text}"
    );
    assert!(!log_text.contains(S3_SECRET_KEY), "the secret was logged");

    let shown = text(&jsh_ok(&home, &["play", &id, "--format", "text"], None).stdout);
    assert!(shown.contains("s3-recorded-marker"), "{shown}");
}
