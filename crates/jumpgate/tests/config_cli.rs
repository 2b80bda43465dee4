//! `jumpgate configure` and `jumpgate config check` as an operator runs them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use support::{fixtures, run, text};

#[test]
fn every_seed_snippet_passes_config_check() {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            let out = run(&["config", "check", "-c", path.to_str().unwrap()], None);
            assert!(
                out.status.success(),
                "{} rejected: {}",
                path.display(),
                text(&out.stderr)
            );
            assert!(text(&out.stdout).contains(": OK"), "{}", text(&out.stdout));
            checked += 1;
        }
    }
    assert!(checked >= 4, "expected the seed fixtures, found {checked}");
}

#[test]
fn the_seed_agent_snippet_means_an_ssh_agent() {
    let path = fixtures().join("seed004_agent.yaml");
    let out = run(&["config", "check", "-c", path.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(services: ssh_service)"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn the_sample_config_passes_its_own_check() {
    let sample = run(&["configure"], None);
    assert!(sample.status.success());
    let sample = text(&sample.stdout);
    assert!(sample.contains("version: v3"), "{sample}");
    assert!(
        sample
            .lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count()
            > 20,
        "sample should be commented"
    );
    let out = run(&["config", "check", "-c", "-"], Some(&sample));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_broken_config_names_the_file_the_field_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jumpgate.yaml");
    std::fs::write(
        &path,
        "version: v3\nproxy_service:\n  peer_public_addr: teleport-proxy-eu-west-1-host1.example.com\n",
    )
    .unwrap();
    let out = run(&["config", "check", "-c", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(err.contains("proxy_service.peer_public_addr"), "{err}");
    assert!(err.contains("expected host:port"), "{err}");
}

#[test]
fn a_misspelt_key_gets_a_did_you_mean_hint() {
    let out = run(
        &["config", "check", "-c", "-"],
        Some("version: v3\nauth_service:\n  tunnel_stratgy:\n    type: proxy_peering\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("auth_service"), "{err}");
    assert!(err.contains("tunnel_strategy"), "{err}");
}

#[test]
fn a_missing_config_file_says_how_to_make_one() {
    let out = run(
        &["config", "check", "-c", "/nonexistent/jumpgate.yaml"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("/nonexistent/jumpgate.yaml"), "{err}");
    assert!(err.contains("jumpgate configure"), "{err}");
}

#[test]
fn bad_command_line_arguments_are_refused_without_a_panic() {
    for args in [
        &["start", "--dev", "--diag-addr", "nonsense"][..],
        &["start", "--dev", "-c", "/etc/jumpgate.yaml"][..],
        &["frobnicate"][..],
        &["backup", "restore"][..],
    ] {
        let out = run(args, None);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}: no message");
    }
}
