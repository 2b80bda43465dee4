//! Independent scanners against real Jumpgate processes: `ssh-audit` (PyPI) against a
//! node's SSH service, `sslyze` (PyPI) against the proxy's public port. `./test.sh`
//! installs both. The node offers no algorithm ssh-audit rates `fail`; by default its
//! only warning is X25519's (not post-quantum, kept for OpenSSH before 9.9), and with
//! `kex_algos: [mlkem768x25519-sha256]` it has none. The proxy speaks TLS 1.2 and 1.3
//! only, with forward-secret suites only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Daemon, free_port, new_join_token, start_daemon, text, wait_until};

/// A cluster (auth + proxy) on `proxy_port`, its data in `dir/cluster-data`.
fn start_cluster(dir: &Path, proxy_port: u16) -> Daemon {
    support::start_cluster(dir, &dir.join("cluster-data"), proxy_port, "cluster.log")
}

/// An agent serving SSH directly on a free port with `extra` in its `jumpgate:` section;
/// returns it and the port.
fn start_node(dir: &Path, name: &str, proxy_port: u16, extra: &str) -> (Daemon, u16) {
    let (token, pin) = new_join_token(
        &dir.join("cluster-data"),
        &["--type", "node", "--ttl", "1h"],
    );
    let ssh_port = free_port();
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {}\n  nodename: {name}\n  proxy_server: 127.0.0.1:{proxy_port}\n  auth_token: \"{token}\"\n  ca_pin: \"{pin}\"\n{extra}ssh_service:\n  listen_addr: 127.0.0.1:{ssh_port}\n",
            dir.join(format!("{name}-data")).display()
        ),
    )
    .unwrap();
    let node = start_daemon(
        &["-c", config.to_str().unwrap()],
        &dir.join(format!("{name}.log")),
    );
    let listening = wait_until(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", ssh_port)).is_ok()
    });
    assert!(listening, "the node never listened:\n{}", node.log_text());
    (node, ssh_port)
}

/// `ssh-audit -j` of the SSH service on `port`: every (algorithm, level, note) it rates
/// `warn` or `fail`.
fn ssh_audit(port: u16) -> Vec<(String, String, String)> {
    // As a module of the python3 that test.sh installed it for: no PATH or shim games.
    let out = Command::new("python3")
        .args(["-m", "ssh_audit"])
        .args([
            "-j",
            "--skip-rate-test",
            "-t",
            "10",
            "-p",
            &port.to_string(),
            "127.0.0.1",
        ])
        .output()
        .expect("ssh-audit (`./test.sh` installs it from PyPI)");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "ssh-audit -j gave no JSON ({err}): {}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    let mut findings = Vec::new();
    for section in ["kex", "key", "enc", "mac"] {
        for entry in report[section].as_array().into_iter().flatten() {
            for level in ["warn", "fail"] {
                for note in entry["notes"][level].as_array().into_iter().flatten() {
                    findings.push((
                        entry["algorithm"].as_str().unwrap_or_default().to_string(),
                        level.to_string(),
                        note.as_str().unwrap_or_default().to_string(),
                    ));
                }
            }
        }
    }
    findings
}

#[test]
fn ssh_audit_rates_no_node_algorithm_fail_and_the_strict_set_warning_free() {
    let dir = tempfile::tempdir().unwrap();
    let proxy_port = free_port();
    let _cluster = start_cluster(dir.path(), proxy_port);

    let (_default, port) = start_node(dir.path(), "default-1", proxy_port, "");
    let findings = ssh_audit(port);
    assert!(
        !findings.iter().any(|(_, level, _)| level == "fail"),
        "{findings:#?}"
    );
    assert_eq!(
        findings,
        vec![(
            "curve25519-sha256".to_string(),
            "warn".to_string(),
            "does not provide protection against post-quantum attacks".to_string()
        )],
        "the default set's only warning is X25519's"
    );

    let strict = "  kex_algos: [mlkem768x25519-sha256]\n";
    let (_strict, port) = start_node(dir.path(), "strict-1", proxy_port, strict);
    let findings = ssh_audit(port);
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn sslyze_finds_only_tls_1_2_and_1_3_with_forward_secrecy_on_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let proxy_port = free_port();
    let _cluster = start_cluster(dir.path(), proxy_port);
    let json = dir.path().join("sslyze.json");
    let out = Command::new("python3")
        .args(["-m", "sslyze"])
        .arg(format!("--json_out={}", json.display()))
        .arg("--quiet")
        .arg(format!("127.0.0.1:{proxy_port}"))
        .output()
        .expect("sslyze (`./test.sh` installs it from PyPI)");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_else(|err| {
            panic!(
                "sslyze wrote no report ({err}): {}{}",
                text(&out.stdout),
                text(&out.stderr)
            )
        }))
        .unwrap();
    let result = &report["server_scan_results"][0]["scan_result"];
    let accepted = |scan: &str| -> Vec<String> {
        result[scan]["result"]["accepted_cipher_suites"]
            .as_array()
            .unwrap_or_else(|| panic!("no {scan} result: {result}"))
            .iter()
            .map(|suite| suite["cipher_suite"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    for old in [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ] {
        assert!(accepted(old).is_empty(), "{old}: {:?}", accepted(old));
    }
    let tls12 = accepted("tls_1_2_cipher_suites");
    assert!(!tls12.is_empty());
    for suite in &tls12 {
        assert!(
            suite.starts_with("TLS_ECDHE_"),
            "not forward secret: {suite}"
        );
    }
    assert!(!accepted("tls_1_3_cipher_suites").is_empty());
    assert_eq!(
        result["heartbleed"]["result"]["is_vulnerable_to_heartbleed"],
        Value::Bool(false)
    );
    assert_eq!(
        result["session_renegotiation"]["result"]["is_vulnerable_to_client_renegotiation_dos"],
        Value::Bool(false)
    );
}
