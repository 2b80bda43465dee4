//! The role file format: every refusal names the field and says why; what parses writes back
//! the same. Behaviour (who may do what) is tested in `crate::rbac`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use super::*;
use crate::ResourceError;

fn parse(yaml: &str) -> Role {
    Role::from_yaml("role.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
}

/// A role document around a spec written in YAML flow style.
fn doc(spec: &str) -> String {
    format!("kind: role\nversion: v7\nmetadata:\n  name: r\nspec: {spec}\n")
}

/// (case, document, expected field path, fragment of the reason)
#[test]
fn malformed_roles_name_the_field_and_the_reason() {
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "unknown condition key with a hint",
            doc("{allow: {node_lables: {env: prod}}}"),
            "spec.allow.node_lables",
            "unknown key `node_lables`; did you mean `node_labels`?",
        ),
        (
            "unknown spec key with a hint",
            doc("{alow: {}}"),
            "spec.alow",
            "did you mean `allow`?",
        ),
        (
            "unknown option with a hint",
            doc("{options: {max_sesion_ttl: 8h}}"),
            "spec.options.max_sesion_ttl",
            "did you mean `max_session_ttl`?",
        ),
        (
            "unknown Teleport-like key with a hint",
            doc("{allow: {kubernetes_group: [x]}}"),
            "spec.allow.kubernetes_group",
            "did you mean `kubernetes_groups`?",
        ),
        (
            "unknown key without a close match lists the known ones",
            doc("{deny: {frobnicate: 1}}"),
            "spec.deny.frobnicate",
            "unknown key `frobnicate`; expected one of logins, node_labels, node_labels_expression, rules",
        ),
        (
            "unknown top-level key",
            "kind: role\nversion: v7\nmetadata: {name: r}\nspecs: {}\n".to_owned(),
            "specs",
            "did you mean `spec`?",
        ),
        (
            "unknown metadata key",
            "kind: role\nversion: v7\nmetadata: {name: r, lables: {}}\nspec: {}\n".to_owned(),
            "metadata.lables",
            "did you mean `labels`?",
        ),
        (
            "unknown rule key",
            doc("{allow: {rules: [{resources: [role], verb: [list]}]}}"),
            "spec.allow.rules[0].verb",
            "did you mean `verbs`?",
        ),
        (
            "unknown function in a rule's where",
            doc(
                "{allow: {rules: [{resources: [session], verbs: [list], where: 'contain(session.participants, user.metadata.name)'}]}}",
            ),
            "spec.allow.rules[0].where",
            "at column 1: unknown function `contain`; did you mean `contains`?",
        ),
        (
            "unknown field in a deny rule's where",
            doc(
                "{deny: {rules: [{resources: [role], verbs: [list]}, {resources: [session], verbs: [read], where: 'equals(session.logn, \"root\")'}]}}",
            ),
            "spec.deny.rules[1].where",
            "at column 8: unknown field `session.logn`; did you mean `session.login`?",
        ),
        (
            "a where that is not a condition",
            doc("{allow: {rules: [{resources: [session], verbs: [list], where: is_owner}]}}"),
            "spec.allow.rules[0].where",
            "`is_owner` is a value, not a condition",
        ),
        (
            "a where reading a resource the rule is not about",
            doc(
                "{allow: {rules: [{resources: [user, role], verbs: [list], where: 'contains(session.participants, user.metadata.name)'}]}}",
            ),
            "spec.allow.rules[0]",
            "`where` reads `session.*` fields, which only rules on `session` have, but this rule \
             is on user, role",
        ),
        (
            "invalid regex",
            doc("{allow: {node_labels: {env: '^prod-[0-9$'}}}"),
            "spec.allow.node_labels.env",
            "invalid regular expression \"^prod-[0-9$\": unclosed character class",
        ),
        (
            "invalid regex in a list",
            doc("{allow: {node_labels: {env: [dev, '^(x$']}}}"),
            "spec.allow.node_labels.env",
            "invalid regular expression",
        ),
        (
            "unclosed template",
            doc("{allow: {logins: ['{{internal.logins']}}"),
            "spec.allow.logins[0]",
            "without a closing `}}`",
        ),
        (
            "unknown internal trait",
            doc("{allow: {logins: [root, '{{internal.login}}']}}"),
            "spec.allow.logins[1]",
            "did you mean `internal.logins`?",
        ),
        (
            "template in a label value",
            doc("{allow: {node_labels: {team: '{{external.team'}}}"),
            "spec.allow.node_labels.team",
            "without a closing `}}`",
        ),
        (
            "bad duration",
            doc("{options: {max_session_ttl: forever}}"),
            "spec.options.max_session_ttl",
            "expected a duration such as 30s or 12h, got \"forever\"",
        ),
        (
            "duration without unit",
            doc("{options: {client_idle_timeout: 30}}"),
            "spec.options.client_idle_timeout",
            "with a unit",
        ),
        (
            "bad boolean",
            doc("{options: {port_forwarding: maybe}}"),
            "spec.options.port_forwarding",
            "expected yes/no, on/off or true/false, got \"maybe\"",
        ),
        (
            "bad ssh_port_forwarding",
            doc("{options: {ssh_port_forwarding: {local: {enable: false}}}}"),
            "spec.options.ssh_port_forwarding.local.enable",
            "did you mean `enabled`?",
        ),
        (
            "wrong kind",
            "kind: user\nversion: v2\nmetadata: {name: alice}\nspec: {roles: [access]}\n"
                .to_owned(),
            "kind",
            "expected `role`, got `user` (this document is not a role)",
        ),
        (
            "kind typo",
            "kind: roles\nversion: v7\nmetadata: {name: r}\nspec: {}\n".to_owned(),
            "kind",
            "did you mean `role`?",
        ),
        (
            "missing kind",
            "version: v7\nmetadata: {name: r}\nspec: {}\n".to_owned(),
            "kind",
            "is required; expected `role`",
        ),
        (
            "bad version",
            "kind: role\nversion: v9\nmetadata: {name: r}\nspec: {}\n".to_owned(),
            "version",
            "expected a version from v1 to v8",
        ),
        (
            "missing version",
            "kind: role\nmetadata: {name: r}\nspec: {}\n".to_owned(),
            "version",
            "is required",
        ),
        (
            "missing name",
            "kind: role\nversion: v7\nmetadata: {description: x}\nspec: {}\n".to_owned(),
            "metadata.name",
            "is required",
        ),
        (
            "bad name",
            "kind: role\nversion: v7\nmetadata: {name: 'db admins'}\nspec: {}\n".to_owned(),
            "metadata.name",
            "contains ' '",
        ),
        (
            "name too long",
            format!(
                "kind: role\nversion: v7\nmetadata: {{name: {}}}\nspec: {{}}\n",
                "a".repeat(254)
            ),
            "metadata.name",
            "at most 253",
        ),
        (
            "missing spec",
            "kind: role\nversion: v7\nmetadata: {name: r}\n".to_owned(),
            "spec",
            "is required",
        ),
        (
            "bad expiry",
            "kind: role\nversion: v7\nmetadata: {name: r, expires: tomorrow}\nspec: {}\n"
                .to_owned(),
            "metadata.expires",
            "expected an RFC 3339 time",
        ),
        (
            "other namespace",
            "kind: role\nversion: v7\nmetadata: {name: r, namespace: prod}\nspec: {}\n".to_owned(),
            "metadata.namespace",
            "the only namespace is \"default\"",
        ),
        (
            "bad metadata label key",
            "kind: role\nversion: v7\nmetadata: {name: r, labels: {'a b': c}}\nspec: {}\n"
                .to_owned(),
            "metadata.labels",
            "label key \"a b\"",
        ),
        (
            "wildcard key with a value other than '*'",
            doc("{allow: {node_labels: {'*': prod}}}"),
            "spec.allow.node_labels",
            "the label key '*' takes only the value '*'",
        ),
        (
            "bad node label key",
            doc("{allow: {node_labels: {'env!': prod}}}"),
            "spec.allow.node_labels",
            "label key \"env!\"",
        ),
        (
            "empty list of label values",
            doc("{allow: {node_labels: {env: []}}}"),
            "spec.allow.node_labels",
            "empty list of values",
        ),
        (
            "template in a label key",
            doc("{allow: {node_labels: {'{{external.k}}': x}}}"),
            "spec.allow.node_labels",
            "templates are not supported in label keys",
        ),
        (
            "login with a space",
            doc("{allow: {logins: ['ro ot']}}"),
            "spec.allow.logins[0]",
            "contains ' '",
        ),
        (
            "login starting with a dash",
            doc("{deny: {logins: [ok, '-oProxyCommand=x']}}"),
            "spec.deny.logins[1]",
            "must not start with '-'",
        ),
        (
            "login wildcard",
            doc("{allow: {logins: ['*']}}"),
            "spec.allow.logins[0]",
            "logins have no wildcard",
        ),
        (
            "bad text around a login template",
            doc("{allow: {logins: ['a b{{internal.logins}}']}}"),
            "spec.allow.logins[0]",
            "the text around the template contains ' '",
        ),
        (
            "rule without verbs",
            doc("{allow: {rules: [{resources: [role]}]}}"),
            "spec.allow.rules[0]",
            "a rule needs `verbs`",
        ),
        (
            "rule without resources",
            doc("{allow: {rules: [{verbs: [list]}]}}"),
            "spec.allow.rules[0]",
            "a rule needs `resources`",
        ),
        (
            "bad rule resource",
            doc("{allow: {rules: [{resources: [role, 'Cert Authority'], verbs: [list]}]}}"),
            "spec.allow.rules[0].resources[1]",
            "is not a resource kind or verb",
        ),
        (
            "refused option: per-session MFA",
            doc("{options: {require_session_mfa: true}}"),
            "spec.options.require_session_mfa",
            "per-session MFA is not supported yet",
        ),
        (
            "refused option: source IP pinning",
            doc("{options: {pin_source_ip: true}}"),
            "spec.options.pin_source_ip",
            "ignoring `pin_source_ip` would give users more access",
        ),
        (
            "refused option: session limits",
            doc("{options: {max_sessions: 3}}"),
            "spec.options.max_sessions",
            "limits are not enforced",
        ),
        (
            "refused condition: moderated sessions",
            doc(
                "{allow: {require_session_join: [{name: auditor, filter: x, kinds: [ssh], count: 1}]}}",
            ),
            "spec.allow.require_session_join",
            "moderated sessions",
        ),
        (
            "allow is not a mapping",
            doc("{allow: [logins]}"),
            "spec.allow",
            "expected a mapping with logins, node_labels and rules",
        ),
        (
            "logins is a mapping",
            doc("{allow: {logins: {a: b}}}"),
            "spec.allow.logins",
            "expected a string or a list",
        ),
    ];
    for (case, yaml, path, reason) in &cases {
        let err = Role::from_yaml("role.yaml", yaml)
            .map(|_| ())
            .expect_err(case);
        assert_eq!(err.field_path(), Some(*path), "{case}: {err}");
        assert!(err.reason().contains(reason), "{case}: {err}");
        assert!(
            err.to_string().starts_with(&format!("role.yaml: {path}: ")),
            "{case}: {err}"
        );
    }
}

#[test]
fn document_errors() {
    let err = Role::from_yaml("r.yaml", "kind: role\nspec: {allow: [}\n").unwrap_err();
    assert!(
        matches!(
            err,
            ResourceError::Syntax {
                location: Some(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("r.yaml:2:"), "{err}");

    let err = Role::from_yaml("r.yaml", "kind: role\nkind: role\n").unwrap_err();
    assert!(err.reason().contains("duplicate"), "{err}");

    for empty in ["", "   \n", "{}", "# nothing\n"] {
        let err = Role::from_yaml("r.yaml", empty).unwrap_err();
        assert!(
            matches!(err, ResourceError::Document { .. }),
            "{empty:?}: {err}"
        );
        assert!(err.reason().contains("empty"), "{err}");
    }
    let err = Role::from_yaml("r.yaml", "- kind: role\n").unwrap_err();
    assert!(err.reason().contains("expected a mapping"), "{err}");

    let err = Role::from_json("r.json", "{\"kind\": \"role\",\n \"version\": }").unwrap_err();
    assert!(
        matches!(
            err,
            ResourceError::Syntax {
                location: Some(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("r.json:2:"), "{err}");

    let json = r#"{"kind": "role", "version": "v7", "metadata": {"name": "r"},
                   "spec": {"allow": {"node_labels": {"env": "^[$"}}}}"#;
    let err = Role::from_json("r.json", json).unwrap_err();
    assert_eq!(
        err.field_path(),
        Some("spec.allow.node_labels.env"),
        "{err}"
    );
}

#[test]
fn a_full_role_parses_into_typed_fields() {
    let role = parse(
        r#"
kind: role
version: v7
metadata:
  name: dev
  description: Developers
  labels: {team: platform, tier: 2}
  expires: 2030-01-02T03:04:05Z
  namespace: default
  revision: 3e4e0a0b-6b0b-4c5e-9a1a-7c1c2d3e4f50
spec:
  options:
    max_session_ttl: 8h0m0s
    port_forwarding: "no"
    ssh_file_copy: false
    forward_agent: yes
    client_idle_timeout: 15m
    disconnect_expired_cert: true
    permit_x11_forwarding: on
    ssh_port_forwarding: {local: {enabled: true}, remote: {enabled: false}}
  allow:
    logins: ['{{internal.logins}}', ubuntu]
    node_labels:
      env: [dev, staging]
      region: '^eu-.*$'
      rack: 12
    rules:
      - resources: [node, session]
        verbs: [list, read]
  deny:
    logins: root
"#,
    );
    assert_eq!(role.name(), "dev");
    assert_eq!(role.kind(), "role");
    assert_eq!(role.version, ResourceVersion::V7);
    assert_eq!(role.metadata.description.as_deref(), Some("Developers"));
    assert_eq!(role.metadata.labels["tier"], "2");
    assert!(role.metadata.expires.is_some());
    let o = &role.spec.options;
    assert_eq!(o.max_session_ttl, Some(Duration::from_secs(8 * 3600)));
    assert!(!o.port_forwarding());
    assert!(!o.ssh_file_copy());
    assert!(o.forward_agent());
    assert_eq!(o.client_idle_timeout, Some(Duration::from_secs(900)));
    assert!(o.disconnect_expired_cert());
    assert!(o.permit_x11_forwarding());
    assert_eq!(
        o.ssh_port_forwarding,
        Some(SshPortForwarding {
            local: Some(true),
            remote: Some(false)
        })
    );
    let logins: Vec<&str> = role
        .spec
        .allow
        .logins
        .iter()
        .map(Template::as_str)
        .collect();
    assert_eq!(logins, ["{{internal.logins}}", "ubuntu"]);
    let labels: Vec<(&str, Vec<&str>)> = role
        .spec
        .allow
        .node_labels
        .iter()
        .map(|(k, v)| (k, v.iter().map(LabelValue::as_str).collect()))
        .collect();
    assert_eq!(
        labels,
        [
            ("env", vec!["dev", "staging"]),
            ("rack", vec!["12"]),
            ("region", vec!["^eu-.*$"])
        ]
    );
    assert_eq!(role.spec.allow.rules[0].resources, ["node", "session"]);
    assert_eq!(role.spec.deny.logins[0].as_str(), "root");
    assert!(role.unsupported_fields().is_empty());
}

#[test]
fn empty_blocks_and_defaults() {
    let role = parse(
        "kind: role\nversion: v3\nmetadata: {name: r}\nspec:\n  allow:\n  deny: {}\n  options:\n",
    );
    assert_eq!(role.spec, RoleSpec::default());
    let o = &role.spec.options;
    assert_eq!(o.max_session_ttl(), DEFAULT_MAX_SESSION_TTL);
    assert!(o.port_forwarding() && o.ssh_file_copy());
    assert!(!o.forward_agent() && !o.permit_x11_forwarding() && !o.disconnect_expired_cert());
    // Teleport writes `never` and 0 for "no idle timeout", and 0 for "default TTL".
    let role = parse(&doc(
        "{options: {client_idle_timeout: never, max_session_ttl: 0}}",
    ));
    assert_eq!(role.spec.options.client_idle_timeout, None);
    assert_eq!(role.spec.options.max_session_ttl(), DEFAULT_MAX_SESSION_TTL);
}

#[test]
fn roles_write_back_as_they_were_read() {
    let yaml = r#"
kind: role
version: v6
metadata:
  name: mixed
  labels: {a: b}
  expires: 2031-05-06T07:08:09.5+02:00
spec:
  options:
    max_session_ttl: 1h30m
    forward_agent: true
    ssh_port_forwarding: {remote: {enabled: no}}
    client_idle_timeout: 10m
    cert_format: standard
    enhanced_recording: [command, network]
  allow:
    logins: ['{{external.unix}}', 'adm-{{email.local(external.email)}}']
    node_labels: {'*': '*'}
    node_labels_expression: 'labels["env"] == "dev"'
    rules:
      - {resources: ['*'], verbs: [list], where: 'contains(user.spec.roles, "x")', actions: [log('x')]}
    kubernetes_groups: ['{{internal.kubernetes_groups}}']
    db_labels: {'*': '*'}
  deny:
    node_labels: {env: ['^prod-.*$', 'staging-*']}
"#;
    let role = parse(yaml);
    let again = parse(&role.to_yaml().unwrap());
    assert_eq!(again, role);
    let json = role.to_json().unwrap();
    let again = Role::from_json("r.json", &json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    assert_eq!(again, role);
    for builtin in Role::builtins() {
        assert_eq!(parse(&builtin.to_yaml().unwrap()), builtin);
    }
}

#[test]
fn unsupported_fields_are_listed_with_their_effect() {
    let role = parse(&doc(r#"{
  options: {cert_format: standard, pin_source_ip: false, enhanced_recording: [command],
            record_session: {desktop: true, default: best_effort}, desktop_clipboard: true},
  allow: {
    logins: [a], node_labels: {'*': '*'}, node_labels_expression: 'true',
    kubernetes_groups: [masters], db_labels: {'*': '*'}, app_labels: {},
    rules: [{resources: [session], verbs: [read], where: 'equals(session.login, "x")'}, {resources: [event], verbs: [list], actions: [y]}]
  },
  deny: {windows_desktop_logins: [Administrator], request: {roles: [admin]}}
}"#));
    let got: Vec<String> = role
        .unsupported_fields()
        .iter()
        .map(|f| f.to_string())
        .collect();
    assert_eq!(
        got,
        [
            "spec.options.enhanced_recording (ignored: not supported yet)",
            "spec.allow.node_labels_expression (not evaluated: an allow with it grants nothing, \
             a deny with it applies everywhere)",
            "spec.allow.rules[1].actions (ignored: not supported yet)",
            "spec.allow.db_labels (ignored: not supported yet)",
            "spec.allow.kubernetes_groups (ignored: not supported yet)",
            "spec.deny.request (ignored: not supported yet)",
            "spec.deny.windows_desktop_logins (ignored: not supported yet)",
        ]
    );
}

#[test]
fn builtin_roles() {
    for role in Role::builtins() {
        // `ResourceName::trusted` skipped validation; check it here.
        assert!(ResourceName::new(role.name()).is_ok(), "{}", role.name());
        assert_eq!(role.version, ResourceVersion::V7);
        assert!(
            role.spec.deny == RoleConditions::default(),
            "{}",
            role.name()
        );
        assert!(role.unsupported_fields().is_empty());
        for rule in role.spec.allow.rules.iter() {
            let yaml = serde_norway::to_string(rule).unwrap();
            let parsed: Rule = serde_norway::from_str(&yaml).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&parsed, rule);
        }
    }
    let access = Role::builtin_access();
    assert_eq!(
        access.spec,
        parse(&doc(
            "{allow: {logins: ['{{internal.logins}}'], node_labels: {'*': '*'}, rules: [\
             {resources: [session], verbs: [list, read], \
             where: 'contains(session.participants, user.metadata.name)'}]}}"
        ))
        .spec
    );
    let editor = Role::builtin_editor();
    assert!(editor.spec.allow.logins.is_empty() && editor.spec.allow.node_labels.is_empty());
    assert!(
        editor
            .spec
            .allow
            .rules
            .iter()
            .any(|r| r.matches(kinds::ROLE, verbs::DELETE))
    );
    assert!(
        !editor
            .spec
            .allow
            .rules
            .iter()
            .any(|r| r.matches(kinds::EVENT, verbs::LIST))
    );
    let auditor = Role::builtin_auditor();
    assert!(
        auditor
            .spec
            .allow
            .rules
            .iter()
            .any(|r| r.matches(kinds::SESSION, verbs::READ))
    );
    assert!(
        !auditor
            .spec
            .allow
            .rules
            .iter()
            .any(|r| r.matches(kinds::SESSION, verbs::DELETE))
    );
}

#[test]
fn login_validity() {
    for good in [
        "root",
        "ubuntu",
        "alice.smith",
        "svc_backup",
        "a@b",
        "host$",
        "DOMAIN\\user",
        "élise",
    ] {
        assert!(is_valid_login(good), "{good}");
    }
    for bad in [
        "",
        "-x",
        "*",
        "a b",
        "a:b",
        "a/b",
        "a,b",
        "a\nb",
        &"a".repeat(65),
    ] {
        assert!(!is_valid_login(bad), "{bad:?}");
    }
}

#[test]
fn peek_kind_reads_either_format() {
    assert_eq!(
        crate::peek_kind("f", "kind: role\nspec: {}\n").unwrap(),
        "role"
    );
    assert_eq!(
        crate::peek_kind("f", "{\"kind\": \"user\"}").unwrap(),
        "user"
    );
    let err = crate::peek_kind("f", "version: v7\n").unwrap_err();
    assert_eq!(err.field_path(), Some("kind"));
}

/// Found by the `role` fuzz target: a Teleport-only field with a non-string mapping key read
/// differently from YAML than from the JSON auth stores, and one with a sequence as a key
/// (or null) could not be stored at all (an internal error for a document auth had accepted).
#[test]
fn teleport_only_values_read_back_the_same_from_the_stored_json() {
    let role = parse(&doc(
        "{allow: {kubernetes_labels: {TRUE: '*', 12: x}, db_labels: {a: .nan}, \
         app_labels: {tagged: !custom v}}, options: {enhanced_recording: {1.5: z}}}",
    ));
    let json = role.to_json().unwrap();
    let again = Role::from_json("r.json", &json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    assert_eq!(again, role);
    assert_eq!(parse(&role.to_yaml().unwrap()), role);

    for labels in ["{? [a, b] : c}", "{~: c}"] {
        let spec = format!("{{allow: {{kubernetes_labels: {labels}}}}}");
        match Role::from_yaml("role.yaml", &doc(&spec)).unwrap_err() {
            ResourceError::Field { path, reason, .. } => {
                assert_eq!(path, "spec.allow.kubernetes_labels");
                assert!(reason.contains("cannot be stored"), "{reason}");
            }
            other => panic!("expected a field error, got {other:?}"),
        }
    }
}

/// Found by the `role` fuzz target: serde_json's default float parser is not exact, so a
/// number in a Teleport-only field (1.1111111111111111e92) came back from the stored JSON
/// as another one (1.1111111111111113e92). The workspace enables `float_roundtrip`.
#[test]
fn numbers_read_back_exactly_from_the_stored_json() {
    for number in [
        "1.1111111111111111e92",
        &"1".repeat(93),
        "0.30000000000000004",
    ] {
        let role = parse(&doc(&format!("{{allow: {{db_labels: {number}}}}}")));
        let json = role.to_json().unwrap();
        let again = Role::from_json("r.json", &json).unwrap_or_else(|e| panic!("{e}\n{json}"));
        assert_eq!(again, role, "{number}");
    }
}
