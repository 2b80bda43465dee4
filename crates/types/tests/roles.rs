//! Teleport users can reuse their role files: Teleport's preset roles and typical team roles
//! (in `fixtures/roles/`) parse, say which of their fields Jumpgate does not act on, write back
//! unchanged, and grant what they say.

// Test code: a panic is how a test reports failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use jumpgate_types::rbac::{ResourceFacts, SessionFacts};
use jumpgate_types::{AccessChecker, ResourceVersion, Role, Traits, UnsupportedEffect, peek_kind};

fn load(file: &str) -> Role {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/roles")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(peek_kind(file, &text).unwrap(), "role");
    let parsed = if file.ends_with(".json") {
        Role::from_json(file, &text)
    } else {
        Role::from_yaml(file, &text)
    };
    parsed.unwrap_or_else(|e| panic!("{e}"))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn traits(pairs: &[(&str, &[&str])]) -> Traits {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
        .collect()
}

/// (fixture, the unsupported fields `jctl` would warn about)
const FIXTURES: &[(&str, &[&str])] = &[
    (
        "teleport_access_preset.yaml",
        &[
            "spec.options.enhanced_recording",
            "spec.options.idp",
            "spec.allow.app_labels",
            "spec.allow.aws_role_arns",
            "spec.allow.azure_identities",
            "spec.allow.db_labels",
            "spec.allow.db_names",
            "spec.allow.db_roles",
            "spec.allow.db_service_labels",
            "spec.allow.db_users",
            "spec.allow.gcp_service_accounts",
            "spec.allow.kubernetes_groups",
            "spec.allow.kubernetes_labels",
            "spec.allow.kubernetes_resources",
            "spec.allow.kubernetes_users",
            "spec.allow.windows_desktop_labels",
            "spec.allow.windows_desktop_logins",
        ],
    ),
    (
        "teleport_editor_preset.yaml",
        &["spec.options.enhanced_recording", "spec.options.idp"],
    ),
    (
        "teleport_auditor_preset.yaml",
        &[
            "spec.options.enhanced_recording",
            "spec.options.idp",
            "spec.options.record_session",
        ],
    ),
    (
        "dev_team.yaml",
        &[
            "spec.allow.db_labels",
            "spec.allow.db_users",
            "spec.allow.kubernetes_groups",
            "spec.allow.kubernetes_labels",
            "spec.allow.request",
        ],
    ),
    ("prod_readonly.json", &[]),
];

#[test]
fn fixtures_parse_and_list_what_is_not_supported() {
    for (file, want) in FIXTURES {
        let role = load(file);
        let got: Vec<String> = role
            .unsupported_fields()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(got, *want, "{file}");
    }
    // Its session rule's `where` is evaluated, so nothing of it fails closed.
    let access = load("teleport_access_preset.yaml");
    assert!(
        !access
            .unsupported_fields()
            .iter()
            .any(|f| f.effect == UnsupportedEffect::FailsClosed)
    );
}

#[test]
fn fixtures_write_back_unchanged() {
    for (file, _) in FIXTURES {
        let role = load(file);
        let yaml = role.to_yaml().unwrap();
        assert_eq!(
            Role::from_yaml(file, &yaml).unwrap(),
            role,
            "{file} via YAML"
        );
        let json = role.to_json().unwrap();
        assert_eq!(
            Role::from_json(file, &json).unwrap(),
            role,
            "{file} via JSON"
        );
    }
}

#[test]
fn teleport_access_preset_grants_what_ours_does() {
    let theirs = load("teleport_access_preset.yaml");
    let t = traits(&[("logins", &["alice", "ubuntu"])]);
    let node = labels(&[("env", "prod")]);
    let checker = AccessChecker::new([&theirs], &t);
    let ours = AccessChecker::new([&Role::builtin_access()], &t);
    for login in ["alice", "ubuntu", "root"] {
        assert_eq!(
            checker.check_ssh_access(&node, login).is_ok(),
            ours.check_ssh_access(&node, login).is_ok(),
            "{login}"
        );
    }
    assert_eq!(checker.logins(), ours.logins());
    // Its rules: events readable; sessions where the user took part, as ours.
    assert!(checker.check_rule("event", "list").is_ok());
    assert!(checker.check_rule("role", "list").is_err());
    let (checker, ours) = (checker.with_user("alice"), ours.with_user("alice"));
    for (owner, allowed) in [("alice", true), ("bob", false)] {
        let session = SessionFacts {
            participants: vec![owner.to_owned()],
            ..SessionFacts::default()
        };
        for checker in [&checker, &ours] {
            for verb in ["list", "read"] {
                let facts = ResourceFacts::Session(&session);
                assert_eq!(
                    checker.check_rule_on("session", verb, facts).is_ok(),
                    allowed,
                    "{owner} {verb}"
                );
            }
        }
    }
    // Teleport's 30h is kept; our built-in default is 12h.
    assert_eq!(checker.max_session_ttl(), Duration::from_secs(30 * 3600));
    assert_eq!(ours.max_session_ttl(), Duration::from_secs(12 * 3600));
    assert!(checker.options().forward_agent);
}

#[test]
fn teleport_editor_and_auditor_presets() {
    let editor = AccessChecker::new([&load("teleport_editor_preset.yaml")], &Traits::new());
    assert!(editor.check_rule("role", "create").is_ok());
    assert!(editor.check_rule("token", "delete").is_ok());
    assert!(editor.check_rule("event", "list").is_err());
    assert!(editor.logins().is_empty());
    assert_eq!(editor.max_session_ttl(), Duration::from_secs(8 * 3600));

    let auditor = AccessChecker::new([&load("teleport_auditor_preset.yaml")], &Traits::new());
    assert!(auditor.check_rule("session", "read").is_ok());
    assert!(auditor.check_rule("event", "list").is_ok());
    assert!(auditor.check_rule("user", "read").is_err());
}

#[test]
fn a_team_role_with_sso_traits() {
    let dev = load("dev_team.yaml");
    let t = traits(&[
        ("logins", &["alice", "root"]),
        ("github_username", &["alice-gh"]),
        ("email", &["alice@example.com"]),
    ]);
    let checker = AccessChecker::new([&dev], &t);
    let staging = labels(&[("env", "staging"), ("team", "web")]);
    let prod = labels(&[("env", "prod"), ("team", "web")]);
    let prod_like = labels(&[("env", "prod-eu"), ("team", "web")]);
    let no_team = labels(&[("env", "dev")]);

    let allowed: Vec<String> = checker.allowed_logins(&staging).into_iter().collect();
    assert_eq!(allowed, ["alice", "alice-gh", "dev-alice"]);
    assert!(checker.check_ssh_access(&staging, "dev-alice").is_ok());
    let root = checker.check_ssh_access(&staging, "root").unwrap_err();
    assert_eq!(root.denying_role(), Some("dev-team"));
    assert!(checker.check_ssh_access(&prod, "alice").is_err());
    assert!(checker.check_ssh_access(&prod_like, "alice").is_err());
    assert!(checker.check_ssh_access(&no_team, "alice").is_err());
    let principals: Vec<String> = checker.logins().into_iter().collect();
    assert_eq!(principals, ["alice", "alice-gh", "dev-alice"]);

    assert_eq!(
        checker.adjust_session_ttl(Duration::ZERO),
        Duration::from_secs(8 * 3600)
    );
    let o = checker.options();
    assert!(o.forward_agent && o.port_forwarding && o.disconnect_expired_cert);
    assert_eq!(o.client_idle_timeout, Some(Duration::from_secs(1800)));
}

#[test]
fn a_json_role_with_regex_and_globs() {
    let role = load("prod_readonly.json");
    assert_eq!(role.version, ResourceVersion::V6);
    assert!(role.metadata.expires.is_some());
    let checker = AccessChecker::new([&role], &Traits::new());
    let cases = [
        (&[("env", "prod"), ("region", "eu-west-1")][..], true),
        (&[("env", "prod"), ("region", "eu-north-3")][..], true),
        (&[("env", "prod"), ("region", "eu-south-1")][..], false),
        (&[("env", "prod"), ("region", "us-east-2")][..], true),
        (&[("env", "prod"), ("region", "xus-east-2")][..], false),
        (
            &[("env", "prod"), ("region", "eu-west-1"), ("app", "vault")][..],
            false,
        ),
        (&[("region", "eu-west-1")][..], false),
    ];
    for (node, allowed) in cases {
        assert_eq!(
            checker.check_ssh_access(&labels(node), "readonly").is_ok(),
            allowed,
            "{node:?}"
        );
    }
    let o = checker.options();
    assert!(!o.port_forwarding && !o.ssh_file_copy);
    assert_eq!(
        checker.adjust_session_ttl(Duration::from_secs(8 * 3600)),
        Duration::from_secs(3600)
    );
}

#[test]
fn several_roles_together() {
    let roles = [
        load("teleport_access_preset.yaml"),
        load("dev_team.yaml"),
        load("prod_readonly.json"),
    ];
    let t = traits(&[("logins", &["alice"])]);
    let checker = AccessChecker::new(&roles, &t);
    // dev-team's deny of production beats the prod-readonly and access allows.
    let prod = labels(&[("env", "prod"), ("region", "eu-west-1")]);
    let err = checker.check_ssh_access(&prod, "readonly").unwrap_err();
    assert_eq!(err.denying_role(), Some("dev-team"));
    // The smallest TTL (prod-readonly's 1h) caps everything; the strictest options win.
    assert_eq!(checker.max_session_ttl(), Duration::from_secs(3600));
    assert!(!checker.options().port_forwarding);
    assert!(!checker.options().ssh_file_copy);
    assert_eq!(
        checker.options().client_idle_timeout,
        Some(Duration::from_secs(600))
    );
}

/// Bad input gets an error, never a panic (DESIGN.md): every prefix of every fixture, and each
/// fixture with one byte replaced by characters that matter to the parsers.
#[test]
fn damaged_files_are_refused_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roles");
    for (file, _) in FIXTURES {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for (i, _) in text.char_indices() {
            let _ = Role::from_yaml(file, &text[..i]);
            let _ = Role::from_json(file, &text[..i]);
        }
        for (i, c) in text.char_indices().step_by(7) {
            for replacement in [
                "{", "}", "*", "^", "$", "[", "(", "\\", "'", "\"", ":", "-", "\t",
            ] {
                let damaged = format!("{}{replacement}{}", &text[..i], &text[i + c.len_utf8()..]);
                let _ = Role::from_yaml(file, &damaged);
            }
        }
    }
}

/// The YAML examples in docs/roles.md that are whole roles parse, and the built-in roles it
/// shows are the built-in roles.
#[test]
fn docs_examples_parse() {
    let docs = include_str!("../../../docs/roles.md");
    let blocks: Vec<&str> = docs
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    let mut roles = Vec::new();
    for block in blocks {
        for document in block.split("---\n").filter(|d| d.starts_with("kind: role")) {
            let role = Role::from_yaml("docs/roles.md", document)
                .unwrap_or_else(|e| panic!("{e}\n{document}"));
            roles.push(role);
        }
    }
    assert_eq!(roles.len(), 4, "the example and the three built-ins");
    assert_eq!(roles[1..], Role::builtins()[..]);
}
