//! Table-driven tests of role evaluation (issue 3's "done when"): deny beats allow, wildcard,
//! list and regex labels, templated logins, rules, TTL capping and option merging.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::role::{Role, Traits};

/// A role named `name` whose spec is YAML flow text.
fn role(name: &str, spec: &str) -> Role {
    let yaml = format!("kind: role\nversion: v7\nmetadata: {{name: {name}}}\nspec: {spec}\n");
    Role::from_yaml("test.yaml", &yaml).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn roles(specs: &[(&str, &str)]) -> Vec<Role> {
    specs.iter().map(|(name, spec)| role(name, spec)).collect()
}

fn traits(pairs: &[(&str, &[&str])]) -> Traits {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const EVERYWHERE_ROOT: &str = "{allow: {logins: [root, alice], node_labels: {'*': '*'}}}";

struct SshCase {
    name: &'static str,
    roles: &'static [(&'static str, &'static str)],
    traits: &'static [(&'static str, &'static [&'static str])],
    node: &'static [(&'static str, &'static str)],
    login: &'static str,
    /// `None`: allowed. `Some(text)`: refused with a message containing `text`.
    denied: Option<&'static str>,
}

const SSH_CASES: &[SshCase] = &[
    SshCase {
        name: "no roles: nothing is allowed",
        roles: &[],
        traits: &[("logins", &["alice"])],
        node: &[],
        login: "alice",
        denied: Some("the user has no roles"),
    },
    SshCase {
        name: "a role without allow grants nothing",
        roles: &[("empty", "{}")],
        traits: &[],
        node: &[],
        login: "root",
        denied: Some("no role allows login `root` on a node with labels {}"),
    },
    SshCase {
        name: "allow everywhere",
        roles: &[("a", EVERYWHERE_ROOT)],
        traits: &[],
        node: &[("env", "prod")],
        login: "root",
        denied: None,
    },
    SshCase {
        name: "a login not listed is refused",
        roles: &[("a", EVERYWHERE_ROOT)],
        traits: &[],
        node: &[("env", "prod")],
        login: "bob",
        denied: Some("no role allows login `bob` on a node with labels {env=prod}"),
    },
    SshCase {
        name: "deny beats allow: a denied login, from another role",
        roles: &[
            ("a", EVERYWHERE_ROOT),
            ("no-root", "{deny: {logins: [root]}}"),
        ],
        traits: &[],
        node: &[("env", "dev")],
        login: "root",
        denied: Some("role `no-root` denies login `root`"),
    },
    SshCase {
        name: "deny beats allow: in the same role",
        roles: &[(
            "a",
            "{allow: {logins: [root], node_labels: {'*': '*'}}, deny: {logins: [root]}}",
        )],
        traits: &[],
        node: &[],
        login: "root",
        denied: Some("role `a` denies login `root`"),
    },
    SshCase {
        name: "deny beats allow: denied node labels refuse every login",
        roles: &[
            ("a", EVERYWHERE_ROOT),
            ("no-prod", "{deny: {node_labels: {env: prod}}}"),
        ],
        traits: &[],
        node: &[("env", "prod"), ("team", "db")],
        login: "alice",
        denied: Some("role `no-prod` denies access to nodes with labels {env=prod, team=db}"),
    },
    SshCase {
        name: "a deny on other labels leaves this node alone",
        roles: &[
            ("a", EVERYWHERE_ROOT),
            ("no-prod", "{deny: {node_labels: {env: prod}}}"),
        ],
        traits: &[],
        node: &[("env", "dev")],
        login: "alice",
        denied: None,
    },
    SshCase {
        name: "a denied login is denied everywhere, even where the deny's labels do not match",
        roles: &[
            ("a", EVERYWHERE_ROOT),
            ("b", "{deny: {logins: [root], node_labels: {env: prod}}}"),
        ],
        traits: &[],
        node: &[("env", "dev")],
        login: "root",
        denied: Some("role `b` denies login `root`"),
    },
    SshCase {
        name: "an empty deny denies nothing",
        roles: &[("a", EVERYWHERE_ROOT), ("b", "{deny: {}}")],
        traits: &[],
        node: &[],
        login: "root",
        denied: None,
    },
    SshCase {
        name: "'*': '*' matches a node without labels",
        roles: &[("a", EVERYWHERE_ROOT)],
        traits: &[],
        node: &[],
        login: "alice",
        denied: None,
    },
    SshCase {
        name: "a wildcard value needs the key to be there",
        roles: &[("a", "{allow: {logins: [alice], node_labels: {env: '*'}}}")],
        traits: &[],
        node: &[("team", "db")],
        login: "alice",
        denied: Some("no role allows login `alice`"),
    },
    SshCase {
        name: "a wildcard value matches any value",
        roles: &[("a", "{allow: {logins: [alice], node_labels: {env: '*'}}}")],
        traits: &[],
        node: &[("env", "anything")],
        login: "alice",
        denied: None,
    },
    SshCase {
        name: "a literal value matches only itself",
        roles: &[("a", "{allow: {logins: [alice], node_labels: {env: prod}}}")],
        traits: &[],
        node: &[("env", "production")],
        login: "alice",
        denied: Some("no role allows"),
    },
    SshCase {
        name: "list values: any of them",
        roles: &[(
            "a",
            "{allow: {logins: [alice], node_labels: {env: [dev, staging]}}}",
        )],
        traits: &[],
        node: &[("env", "staging")],
        login: "alice",
        denied: None,
    },
    SshCase {
        name: "list values: none of them",
        roles: &[(
            "a",
            "{allow: {logins: [alice], node_labels: {env: [dev, staging]}}}",
        )],
        traits: &[],
        node: &[("env", "prod")],
        login: "alice",
        denied: Some("no role allows"),
    },
    SshCase {
        name: "regex: match",
        roles: &[(
            "a",
            "{allow: {logins: [alice], node_labels: {env: '^prod-[0-9]+$'}}}",
        )],
        traits: &[],
        node: &[("env", "prod-12")],
        login: "alice",
        denied: None,
    },
    SshCase {
        name: "regex: trailing text does not match",
        roles: &[(
            "a",
            "{allow: {logins: [alice], node_labels: {env: '^prod-[0-9]+$'}}}",
        )],
        traits: &[],
        node: &[("env", "prod-12x")],
        login: "alice",
        denied: Some("no role allows"),
    },
    SshCase {
        name: "regex: leading text does not match",
        roles: &[(
            "a",
            "{allow: {logins: [alice], node_labels: {env: '^prod-[0-9]+$'}}}",
        )],
        traits: &[],
        node: &[("env", "xprod-1")],
        login: "alice",
        denied: Some("no role allows"),
    },
    SshCase {
        name: "regex: an alternation is anchored as a whole",
        roles: &[(
            "a",
            "{allow: {logins: [alice], node_labels: {env: '^dev|test$'}}}",
        )],
        traits: &[],
        node: &[("env", "pretest")],
        login: "alice",
        denied: Some("no role allows"),
    },
    SshCase {
        name: "regex: each alternative matches",
        roles: &[(
            "a",
            "{allow: {logins: [alice], node_labels: {env: '^dev|test$'}}}",
        )],
        traits: &[],
        node: &[("env", "test")],
        login: "alice",
        denied: None,
    },
    SshCase {
        name: "regex in a deny",
        roles: &[
            ("a", EVERYWHERE_ROOT),
            ("b", "{deny: {node_labels: {host: '^db-[0-9]+\\.prod$'}}}"),
        ],
        traits: &[],
        node: &[("host", "db-7.prod")],
        login: "alice",
        denied: Some("role `b` denies access"),
    },
    SshCase {
        name: "glob: a '*' inside a value",
        roles: &[(
            "a",
            "{allow: {logins: [alice], node_labels: {host: 'web-*'}}}",
        )],
        traits: &[],
        node: &[("host", "web-01")],
        login: "alice",
        denied: None,
    },
    SshCase {
        name: "glob: no match",
        roles: &[(
            "a",
            "{allow: {logins: [alice], node_labels: {host: 'web-*'}}}",
        )],
        traits: &[],
        node: &[("host", "db-01")],
        login: "alice",
        denied: Some("no role allows"),
    },
    SshCase {
        name: "a dot in a literal is not a regex",
        roles: &[(
            "a",
            "{allow: {logins: [alice], node_labels: {host: 'a.b'}}}",
        )],
        traits: &[],
        node: &[("host", "axb")],
        login: "alice",
        denied: Some("no role allows"),
    },
    SshCase {
        name: "every key must match",
        roles: &[(
            "a",
            "{allow: {logins: [alice], node_labels: {env: prod, team: db}}}",
        )],
        traits: &[],
        node: &[("env", "prod"), ("team", "web")],
        login: "alice",
        denied: Some("no role allows"),
    },
    SshCase {
        name: "every key matches",
        roles: &[(
            "a",
            "{allow: {logins: [alice], node_labels: {env: prod, team: db}}}",
        )],
        traits: &[],
        node: &[("env", "prod"), ("team", "db"), ("extra", "x")],
        login: "alice",
        denied: None,
    },
    SshCase {
        name: "numbers in label values",
        roles: &[("a", "{allow: {logins: [alice], node_labels: {rack: 12}}}")],
        traits: &[],
        node: &[("rack", "12")],
        login: "alice",
        denied: None,
    },
    SshCase {
        name: "allow without node_labels grants no node",
        roles: &[("a", "{allow: {logins: [alice]}}")],
        traits: &[],
        node: &[],
        login: "alice",
        denied: Some("no role allows"),
    },
    SshCase {
        name: "one role's labels do not combine with another role's logins",
        roles: &[
            ("dev", "{allow: {logins: [dev], node_labels: {env: dev}}}"),
            ("ops", "{allow: {logins: [ops], node_labels: {env: prod}}}"),
        ],
        traits: &[],
        node: &[("env", "dev")],
        login: "ops",
        denied: Some("no role allows login `ops` on a node with labels {env=dev}"),
    },
    SshCase {
        name: "templated logins: internal.logins",
        roles: &[(
            "access",
            "{allow: {logins: ['{{internal.logins}}'], node_labels: {'*': '*'}}}",
        )],
        traits: &[("logins", &["alice", "ubuntu"])],
        node: &[],
        login: "ubuntu",
        denied: None,
    },
    SshCase {
        name: "templated logins: a missing trait contributes nothing, literals still count",
        roles: &[(
            "access",
            "{allow: {logins: ['{{internal.logins}}', ubuntu], node_labels: {'*': '*'}}}",
        )],
        traits: &[],
        node: &[],
        login: "ubuntu",
        denied: None,
    },
    SshCase {
        name: "templated logins: a missing trait allows no login of its own",
        roles: &[(
            "access",
            "{allow: {logins: ['{{internal.logins}}', ubuntu], node_labels: {'*': '*'}}}",
        )],
        traits: &[("groups", &["alice"])],
        node: &[],
        login: "alice",
        denied: Some("no role allows login `alice`"),
    },
    SshCase {
        name: "templated logins: the template's text is never a login",
        roles: &[(
            "access",
            "{allow: {logins: ['{{internal.logins}}'], node_labels: {'*': '*'}}}",
        )],
        traits: &[],
        node: &[],
        login: "{{internal.logins}}",
        denied: Some("no role allows"),
    },
    SshCase {
        name: "templated logins: external traits",
        roles: &[(
            "sso",
            "{allow: {logins: ['{{external.unix_user}}'], node_labels: {'*': '*'}}}",
        )],
        traits: &[("unix_user", &["al"])],
        node: &[],
        login: "al",
        denied: None,
    },
    SshCase {
        name: "templated logins: text around the template",
        roles: &[(
            "t",
            "{allow: {logins: ['adm-{{external.team}}'], node_labels: {'*': '*'}}}",
        )],
        traits: &[("team", &["db", "web"])],
        node: &[],
        login: "adm-web",
        denied: None,
    },
    SshCase {
        name: "templated logins: email.local",
        roles: &[(
            "t",
            "{allow: {logins: ['{{email.local(external.email)}}'], node_labels: {'*': '*'}}}",
        )],
        traits: &[("email", &["alice@example.com"])],
        node: &[],
        login: "alice",
        denied: None,
    },
    SshCase {
        name: "templated logins: trait values that are not valid logins are dropped",
        roles: &[(
            "access",
            "{allow: {logins: ['{{internal.logins}}'], node_labels: {'*': '*'}}}",
        )],
        traits: &[("logins", &["-oProxyCommand=evil", "alice"])],
        node: &[],
        login: "-oProxyCommand=evil",
        denied: Some("no role allows"),
    },
    SshCase {
        name: "templated deny logins",
        roles: &[
            ("a", EVERYWHERE_ROOT),
            ("b", "{deny: {logins: ['{{external.blocked}}']}}"),
        ],
        traits: &[("blocked", &["alice"])],
        node: &[],
        login: "alice",
        denied: Some("role `b` denies login `alice`"),
    },
    SshCase {
        name: "templated label values match the user's trait values",
        roles: &[(
            "t",
            "{allow: {logins: [alice], node_labels: {team: '{{external.team}}'}}}",
        )],
        traits: &[("team", &["db"])],
        node: &[("team", "db")],
        login: "alice",
        denied: None,
    },
    SshCase {
        name: "templated label values are literal, not wildcards",
        roles: &[(
            "t",
            "{allow: {logins: [alice], node_labels: {team: '{{external.team}}'}}}",
        )],
        traits: &[("team", &["*"])],
        node: &[("team", "db")],
        login: "alice",
        denied: Some("no role allows"),
    },
    SshCase {
        name: "templated label values with a missing trait match nothing",
        roles: &[(
            "t",
            "{allow: {logins: [alice], node_labels: {team: '{{external.team}}'}}}",
        )],
        traits: &[],
        node: &[("team", "")],
        login: "alice",
        denied: Some("no role allows"),
    },
    SshCase {
        name: "node_labels_expression in an allow fails closed",
        roles: &[(
            "x",
            "{allow: {logins: [alice], node_labels: {'*': '*'}, node_labels_expression: 'true'}}",
        )],
        traits: &[],
        node: &[],
        login: "alice",
        denied: Some("no role allows"),
    },
    SshCase {
        name: "node_labels_expression in a deny fails closed",
        roles: &[
            ("a", EVERYWHERE_ROOT),
            (
                "x",
                "{deny: {node_labels_expression: 'labels.env == \"prod\"'}}",
            ),
        ],
        traits: &[],
        node: &[("env", "dev")],
        login: "alice",
        denied: Some("role `x` denies access"),
    },
];

#[test]
fn ssh_access() {
    for case in SSH_CASES {
        let roles = roles(case.roles);
        let checker = AccessChecker::new(&roles, &traits(case.traits));
        let node = labels(case.node);
        let result = checker.check_ssh_access(&node, case.login);
        match (case.denied, &result) {
            (None, Ok(())) => {}
            (Some(why), Err(e)) => assert!(e.to_string().contains(why), "{}: {e}", case.name),
            _ => panic!("{}: expected {:?}, got {result:?}", case.name, case.denied),
        }
        // What a node offers and what it accepts must agree.
        assert_eq!(
            checker.allowed_logins(&node).contains(case.login),
            result.is_ok(),
            "{}: allowed_logins disagrees",
            case.name
        );
    }
}

#[test]
fn denials_name_the_role() {
    let roles = roles(&[
        ("a", EVERYWHERE_ROOT),
        ("no-root", "{deny: {logins: [root]}}"),
    ]);
    let checker = AccessChecker::new(&roles, &Traits::new());
    let err = checker.check_ssh_access(&labels(&[]), "root").unwrap_err();
    assert_eq!(err.denying_role(), Some("no-root"));
    let err = checker.check_ssh_access(&labels(&[]), "bob").unwrap_err();
    assert_eq!(err.denying_role(), None);
    assert_eq!(checker.role_names(), ["a", "no-root"]);
}

/// (case, roles, traits, node labels, allowed logins there)
#[test]
fn allowed_logins_per_node() {
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [(&'static str, &'static [&'static str])],
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
    );
    let mixed: &[(&str, &str)] = &[
        (
            "dev",
            "{allow: {logins: ['{{internal.logins}}', root], node_labels: {env: dev}}}",
        ),
        ("ops", "{allow: {logins: [ops], node_labels: {'*': '*'}}}"),
        ("no-root", "{deny: {logins: [root]}}"),
        ("no-vault", "{deny: {node_labels: {app: vault}}}"),
    ];
    let cases: &[Case] = &[
        ("no roles", &[], &[], &[], &[]),
        (
            "dev node",
            mixed,
            &[("logins", &["alice"])],
            &[("env", "dev")],
            &["alice", "ops"],
        ),
        (
            "prod node",
            mixed,
            &[("logins", &["alice"])],
            &[("env", "prod")],
            &["ops"],
        ),
        (
            "denied node",
            mixed,
            &[("logins", &["alice"])],
            &[("env", "dev"), ("app", "vault")],
            &[],
        ),
    ];
    for (case, specs, t, node, want) in cases {
        let roles = roles(specs);
        let checker = AccessChecker::new(&roles, &traits(t));
        let got: Vec<String> = checker.allowed_logins(&labels(node)).into_iter().collect();
        assert_eq!(got, *want, "{case}");
    }
}

/// (case, roles, traits, certificate principals)
#[test]
fn certificate_logins() {
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [(&'static str, &'static [&'static str])],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        ("no roles", &[], &[("logins", &["alice"])], &[]),
        (
            "union of roles, expanded",
            &[
                (
                    "access",
                    "{allow: {logins: ['{{internal.logins}}'], node_labels: {'*': '*'}}}",
                ),
                (
                    "dev",
                    "{allow: {logins: [deploy], node_labels: {env: dev}}}",
                ),
            ],
            &[("logins", &["alice", "ubuntu"])],
            &["alice", "deploy", "ubuntu"],
        ),
        (
            "denied logins are removed",
            &[
                (
                    "access",
                    "{allow: {logins: ['{{internal.logins}}'], node_labels: {'*': '*'}}}",
                ),
                ("no-root", "{deny: {logins: [root]}}"),
            ],
            &[("logins", &["alice", "root"])],
            &["alice"],
        ),
        (
            "a role that selects no node adds no principal",
            &[
                (
                    "access",
                    "{allow: {logins: [alice], node_labels: {'*': '*'}}}",
                ),
                ("orphan", "{allow: {logins: [backup]}}"),
            ],
            &[],
            &["alice"],
        ),
        (
            "a deny of every node leaves no principal",
            &[
                (
                    "access",
                    "{allow: {logins: [alice], node_labels: {'*': '*'}}}",
                ),
                ("locked", "{deny: {node_labels: {'*': '*'}}}"),
            ],
            &[],
            &[],
        ),
        (
            "a deny of some nodes leaves the principals (nodes check labels)",
            &[
                (
                    "access",
                    "{allow: {logins: [alice], node_labels: {'*': '*'}}}",
                ),
                ("no-prod", "{deny: {node_labels: {env: prod}}}"),
            ],
            &[],
            &["alice"],
        ),
    ];
    for (case, specs, t, want) in cases {
        let roles = roles(specs);
        let checker = AccessChecker::new(&roles, &traits(t));
        let got: Vec<String> = checker.logins().into_iter().collect();
        assert_eq!(got, *want, "{case}");
    }
}

/// (case, roles, resource, verb, None if allowed or a fragment of the refusal)
#[test]
fn admin_rules() {
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
        Option<&'static str>,
    );
    let editor: &[(&str, &str)] = &[(
        "editor",
        "{allow: {rules: [{resources: [role, user], verbs: ['*']}]}}",
    )];
    let cases: &[Case] = &[
        (
            "no roles",
            &[],
            "role",
            "list",
            Some("the user has no roles"),
        ),
        (
            "no rules",
            &[("a", EVERYWHERE_ROOT)],
            "role",
            "list",
            Some("no role allows `list` on `role`"),
        ),
        (
            "listed resource, wildcard verb",
            editor,
            "role",
            "delete",
            None,
        ),
        (
            "resource not listed",
            editor,
            "token",
            "list",
            Some("no role allows `list` on `token`"),
        ),
        (
            "wildcard resource, listed verb",
            &[(
                "r",
                "{allow: {rules: [{resources: ['*'], verbs: [list, read]}]}}",
            )],
            "cert_authority",
            "read",
            None,
        ),
        (
            "wildcard resource, verb not listed",
            &[(
                "r",
                "{allow: {rules: [{resources: ['*'], verbs: [list, read]}]}}",
            )],
            "cert_authority",
            "delete",
            Some("no role allows `delete` on `cert_authority`"),
        ),
        (
            "deny beats allow",
            &[
                (
                    "all",
                    "{allow: {rules: [{resources: ['*'], verbs: ['*']}]}}",
                ),
                (
                    "keep-ca",
                    "{deny: {rules: [{resources: [cert_authority], verbs: [delete]}]}}",
                ),
            ],
            "cert_authority",
            "delete",
            Some("role `keep-ca` denies `delete` on `cert_authority`"),
        ),
        (
            "a deny elsewhere leaves the rest",
            &[
                (
                    "all",
                    "{allow: {rules: [{resources: ['*'], verbs: ['*']}]}}",
                ),
                (
                    "keep-ca",
                    "{deny: {rules: [{resources: [cert_authority], verbs: [delete]}]}}",
                ),
            ],
            "cert_authority",
            "read",
            None,
        ),
        (
            "deny with a wildcard verb",
            &[
                (
                    "all",
                    "{allow: {rules: [{resources: ['*'], verbs: ['*']}]}}",
                ),
                (
                    "no-roles",
                    "{deny: {rules: [{resources: [role], verbs: ['*']}]}}",
                ),
            ],
            "role",
            "list",
            Some("role `no-roles` denies `list` on `role`"),
        ),
        (
            "deny with a wildcard resource",
            &[
                (
                    "all",
                    "{allow: {rules: [{resources: ['*'], verbs: ['*']}]}}",
                ),
                (
                    "read-only",
                    "{deny: {rules: [{resources: ['*'], verbs: [create, update, delete]}]}}",
                ),
            ],
            "user",
            "update",
            Some("role `read-only` denies `update` on `user`"),
        ),
        (
            "an allow rule whose `where` reads the resource grants nothing without it",
            &[(
                "own",
                "{allow: {rules: [{resources: [session], verbs: [list], \
                 where: 'contains(session.participants, user.metadata.name)'}]}}",
            )],
            "session",
            "list",
            Some("no role allows `list` on this `session`"),
        ),
        (
            "a deny rule whose `where` reads the resource applies without it",
            &[
                (
                    "all",
                    "{allow: {rules: [{resources: ['*'], verbs: ['*']}]}}",
                ),
                (
                    "cond",
                    "{deny: {rules: [{resources: [session], verbs: [read], \
                     where: 'equals(session.login, \"root\")'}]}}",
                ),
            ],
            "session",
            "read",
            Some("role `cond` denies `read` on `session`"),
        ),
        (
            "a `where` on the user alone is decided: true",
            &[(
                "r",
                "{allow: {rules: [{resources: [role], verbs: [list], \
                 where: 'contains(user.spec.roles, \"r\")'}]}}",
            )],
            "role",
            "list",
            None,
        ),
        (
            "a `where` on the user alone is decided: false",
            &[(
                "r",
                "{allow: {rules: [{resources: [role], verbs: [list], \
                 where: 'contains(user.spec.roles, \"admins\")'}]}}",
            )],
            "role",
            "list",
            Some("no role allows `list` on this `role`"),
        ),
        (
            "a deny whose `where` on the user is false leaves the allow",
            &[
                (
                    "all",
                    "{allow: {rules: [{resources: ['*'], verbs: ['*']}]}}",
                ),
                (
                    "cond",
                    "{deny: {rules: [{resources: [user], verbs: [delete], \
                     where: 'contains(user.spec.roles, \"interns\")'}]}}",
                ),
            ],
            "user",
            "delete",
            None,
        ),
    ];
    for (case, specs, resource, verb, denied) in cases {
        let roles = roles(specs);
        let result = AccessChecker::new(&roles, &Traits::new())
            .with_user("alice")
            .check_rule(resource, verb);
        match (denied, &result) {
            (None, Ok(())) => {}
            (Some(why), Err(e)) => assert!(e.to_string().contains(why), "{case}: {e}"),
            _ => panic!("{case}: expected {denied:?}, got {result:?}"),
        }
    }
}

#[test]
fn builtin_roles_do_what_they_say() {
    let t = traits(&[("logins", &["alice"])]);
    let node = labels(&[("env", "prod")]);
    let access = AccessChecker::new(&[Role::builtin_access()], &t);
    assert!(access.check_ssh_access(&node, "alice").is_ok());
    assert!(access.check_ssh_access(&node, "root").is_err());
    assert!(access.check_rule("role", "list").is_err());

    let editor = AccessChecker::new(&[Role::builtin_editor()], &t);
    assert!(editor.check_ssh_access(&node, "alice").is_err());
    assert!(editor.logins().is_empty());
    for kind in ["user", "role", "token", "node", "cert_authority"] {
        for verb in ["list", "create", "read", "update", "delete"] {
            assert!(editor.check_rule(kind, verb).is_ok(), "{kind} {verb}");
        }
    }
    assert!(editor.check_rule("event", "list").is_err());

    // `access` lists and plays back the user's own sessions, and no one else's.
    let access = access.with_user("alice");
    let hers = session("alice");
    let bobs = session("bob");
    for verb in ["list", "read"] {
        assert!(access.check_rule_for_some("session", verb).is_ok());
        assert!(
            access
                .check_rule_on("session", verb, ResourceFacts::Session(&hers))
                .is_ok()
        );
        assert!(
            access
                .check_rule_on("session", verb, ResourceFacts::Session(&bobs))
                .is_err()
        );
        assert!(access.check_rule("session", verb).is_err());
    }
    assert!(access.check_rule_for_some("session", "delete").is_err());
    assert!(access.check_rule_for_some("event", "list").is_err());

    let auditor = AccessChecker::new(&[Role::builtin_auditor()], &t);
    for verb in ["list", "read"] {
        assert!(
            auditor
                .check_rule_on("session", verb, ResourceFacts::Session(&bobs))
                .is_ok()
        );
    }
    assert!(auditor.check_ssh_access(&node, "alice").is_err());
    assert!(auditor.check_rule("event", "list").is_ok());
    assert!(auditor.check_rule("session", "read").is_ok());
    assert!(auditor.check_rule("session", "delete").is_err());
    assert!(auditor.check_rule("role", "read").is_err());
}

/// (case, each role's `max_session_ttl` (None: unset), requested, issued)
#[test]
fn session_ttl_capping() {
    const H: u64 = 3600;
    let cases: &[(&str, &[Option<&str>], u64, u64)] = &[
        ("no roles: the default cap", &[], 0, 12 * H),
        ("unset: the 12h default", &[None], 24 * H, 12 * H),
        ("zero request: the cap", &[Some("8h")], 0, 8 * H),
        ("shorter request: as asked", &[Some("8h")], H, H),
        ("longer request: capped", &[Some("8h")], 10 * H, 8 * H),
        (
            "smallest of several roles wins",
            &[Some("30h"), Some("8h"), Some("20h")],
            0,
            8 * H,
        ),
        (
            "an unset role caps at the default",
            &[Some("30h"), None],
            24 * H,
            12 * H,
        ),
        (
            "a longer role than default is allowed",
            &[Some("30h")],
            24 * H,
            24 * H,
        ),
        ("Teleport's spelling", &[Some("1h30m0s")], 0, 5400),
        ("0 means the default", &[Some("0")], 0, 12 * H),
    ];
    for (case, ttls, requested, want) in cases {
        let roles: Vec<Role> = ttls
            .iter()
            .enumerate()
            .map(|(i, ttl)| match ttl {
                Some(ttl) => role(
                    &format!("r{i}"),
                    &format!("{{options: {{max_session_ttl: '{ttl}'}}}}"),
                ),
                None => role(&format!("r{i}"), "{}"),
            })
            .collect();
        let checker = AccessChecker::new(&roles, &Traits::new());
        assert_eq!(
            checker.adjust_session_ttl(Duration::from_secs(*requested)),
            Duration::from_secs(*want),
            "{case}"
        );
    }
}

/// (case, each role's options, merged options)
#[test]
fn options_merge_as_teleport_does() {
    const DEFAULTS: SessionOptions = SessionOptions {
        port_forwarding: true,
        ssh_file_copy: true,
        forward_agent: false,
        permit_x11_forwarding: false,
        disconnect_expired_cert: false,
        client_idle_timeout: None,
    };
    let cases: &[(&str, &[&str], SessionOptions)] = &[
        ("no roles: nothing", &[], SessionOptions::NONE),
        ("one role with defaults", &["{}"], DEFAULTS),
        (
            "agent forwarding when the only role enables it",
            &["{forward_agent: true}"],
            SessionOptions {
                forward_agent: true,
                ..DEFAULTS
            },
        ),
        (
            "agent forwarding granted by any role (as Teleport)",
            &["{forward_agent: true}", "{}"],
            SessionOptions {
                forward_agent: true,
                ..DEFAULTS
            },
        ),
        (
            "no role granting agent forwarding: none",
            &["{forward_agent: false}", "{}"],
            DEFAULTS,
        ),
        (
            "X11 forwarding granted by any role (as Teleport)",
            &["{}", "{permit_x11_forwarding: yes}"],
            SessionOptions {
                permit_x11_forwarding: true,
                ..DEFAULTS
            },
        ),
        (
            "one role disabling port forwarding wins",
            &["{port_forwarding: true}", "{port_forwarding: false}"],
            SessionOptions {
                port_forwarding: false,
                ..DEFAULTS
            },
        ),
        (
            "ssh_port_forwarding with remote disabled disables it",
            &["{ssh_port_forwarding: {remote: {enabled: false}}}"],
            SessionOptions {
                port_forwarding: false,
                ..DEFAULTS
            },
        ),
        (
            "one role disabling file copy wins",
            &["{}", "{ssh_file_copy: 'no'}"],
            SessionOptions {
                ssh_file_copy: false,
                ..DEFAULTS
            },
        ),
        (
            "smallest idle timeout",
            &[
                "{client_idle_timeout: 30m}",
                "{client_idle_timeout: 10m}",
                "{}",
            ],
            SessionOptions {
                client_idle_timeout: Some(Duration::from_secs(600)),
                ..DEFAULTS
            },
        ),
        (
            "disconnect on expiry if any role says so",
            &["{}", "{disconnect_expired_cert: on}"],
            SessionOptions {
                disconnect_expired_cert: true,
                ..DEFAULTS
            },
        ),
    ];
    for (case, options, want) in cases {
        let roles: Vec<Role> = options
            .iter()
            .enumerate()
            .map(|(i, o)| role(&format!("r{i}"), &format!("{{options: {o}}}")))
            .collect();
        let checker = AccessChecker::new(&roles, &Traits::new());
        assert_eq!(checker.options(), want, "{case}");
    }
}

fn session(user: &str) -> SessionFacts {
    SessionFacts {
        sid: format!("{user}-session"),
        participants: vec![user.to_owned()],
        user: user.to_owned(),
        login: "root".to_owned(),
        ..SessionFacts::default()
    }
}

const OWN_SESSIONS: &str = "{allow: {rules: [{resources: [session], verbs: [list, read], \
                            where: 'contains(session.participants, user.metadata.name)'}]}}";

/// Rules with `where` on particular resources: an allow grants where it is true, a deny
/// refuses where it is true, and deny beats allow.
#[test]
fn rules_with_where_decide_per_resource() {
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
        Option<&'static str>,
    );
    let cases: &[Case] = &[
        (
            "allow with where: own session",
            &[("own", OWN_SESSIONS)],
            "alice",
            None,
        ),
        (
            "allow with where: someone else's session",
            &[("own", OWN_SESSIONS)],
            "bob",
            Some(
                "no role allows `read` on this `session`; the rules that allow `read` on \
                  `session` have `where` conditions it does not meet",
            ),
        ),
        (
            "deny with where refuses where it is true",
            &[
                (
                    "all",
                    "{allow: {rules: [{resources: [session], verbs: ['*']}]}}",
                ),
                (
                    "not-bob",
                    "{deny: {rules: [{resources: [session], verbs: [read], \
                     where: 'equals(session.user, \"bob\")'}]}}",
                ),
            ],
            "bob",
            Some("role `not-bob` denies `read` on `session`"),
        ),
        (
            "deny with where leaves the rest",
            &[
                (
                    "all",
                    "{allow: {rules: [{resources: [session], verbs: ['*']}]}}",
                ),
                (
                    "not-bob",
                    "{deny: {rules: [{resources: [session], verbs: [read], \
                     where: 'equals(session.user, \"bob\")'}]}}",
                ),
            ],
            "alice",
            None,
        ),
        (
            "deny with where beats allow with where",
            &[
                ("own", OWN_SESSIONS),
                (
                    "no-root",
                    "{deny: {rules: [{resources: ['*'], verbs: [read], \
                     where: 'equals(session.login, \"root\")'}]}}",
                ),
            ],
            "alice",
            Some("role `no-root` denies `read` on `session`"),
        ),
        (
            "deny without where beats allow with where",
            &[
                ("own", OWN_SESSIONS),
                (
                    "none",
                    "{deny: {rules: [{resources: [session], verbs: [read]}]}}",
                ),
            ],
            "alice",
            Some("role `none` denies `read` on `session`"),
        ),
        (
            "a where that is false for the user denies nothing",
            &[
                ("own", OWN_SESSIONS),
                (
                    "interns",
                    "{deny: {rules: [{resources: [session], verbs: [read], \
                     where: 'contains(user.spec.roles, \"interns\") && \
                     !contains(session.participants, user.metadata.name)'}]}}",
                ),
            ],
            "alice",
            None,
        ),
        (
            "a rule on other verbs does not apply",
            &[(
                "list-own",
                "{allow: {rules: [{resources: [session], verbs: [list], \
                 where: 'contains(session.participants, user.metadata.name)'}]}}",
            )],
            "alice",
            Some("no role allows `read` on `session`"),
        ),
    ];
    for (case, specs, owner, denied) in cases {
        let roles = roles(specs);
        let checker = AccessChecker::new(&roles, &Traits::new()).with_user("alice");
        let facts = session(owner);
        let result = checker.check_rule_on("session", "read", ResourceFacts::Session(&facts));
        match (denied, &result) {
            (None, Ok(())) => {}
            (Some(why), Err(e)) => assert!(e.to_string().contains(why), "{case}: {e}"),
            _ => panic!("{case}: expected {denied:?}, got {result:?}"),
        }
    }
}

/// The gate of a list or read call: refused only when no resource could be allowed.
#[test]
fn rules_for_some_resource() {
    let check = |specs: &[(&str, &str)]| {
        AccessChecker::new(&roles(specs), &Traits::new())
            .with_user("alice")
            .check_rule_for_some("session", "list")
    };
    assert!(check(&[("own", OWN_SESSIONS)]).is_ok());
    assert!(
        check(&[(
            "auditor",
            "{allow: {rules: [{resources: [session], verbs: [list]}]}}"
        )])
        .is_ok()
    );
    // No allow, an allow that is false whatever the session, or a deny true whatever it is.
    assert!(check(&[("none", EVERYWHERE_ROOT)]).is_err());
    assert!(
        check(&[(
            "never",
            "{allow: {rules: [{resources: [session], verbs: [list], \
             where: 'contains(user.spec.roles, \"admins\") && \
             contains(session.participants, user.metadata.name)'}]}}"
        )])
        .is_err()
    );
    let denied = check(&[
        ("own", OWN_SESSIONS),
        (
            "none",
            "{deny: {rules: [{resources: [session], verbs: [list]}]}}",
        ),
    ])
    .unwrap_err();
    assert_eq!(denied.denying_role(), Some("none"));
    // A deny that depends on the session leaves some sessions possible.
    assert!(
        check(&[
            ("own", OWN_SESSIONS),
            (
                "no-root",
                "{deny: {rules: [{resources: [session], verbs: [list], \
                 where: 'equals(session.login, \"root\")'}]}}"
            ),
        ])
        .is_ok()
    );
    // Without the user's name, `user.metadata.name` is unknown: nothing of hers is granted.
    let unnamed = AccessChecker::new(&roles(&[("own", OWN_SESSIONS)]), &Traits::new());
    let hers = session("alice");
    assert!(
        unnamed
            .check_rule_on("session", "read", ResourceFacts::Session(&hers))
            .is_err()
    );
}
