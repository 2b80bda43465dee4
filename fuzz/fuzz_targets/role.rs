//! Throws arbitrary text at the role parser (`Role::from_yaml`, what `jctl create` sends
//! and auth runs; `Role::from_json`, how auth stores roles and nodes and proxies read
//! them back), then at what a parsed role is used for: role templates expanded with
//! traits from a certificate, and the access checks of nodes, proxies and auth.
//!
//! Besides "never panics", checks that the answer is consistent: a parsed role writes
//! back to YAML and to JSON that read back as the same role, and the access checks agree
//! with each other (`check_ssh_access` passes exactly the `allowed_logins`, which are
//! among the certificate's `logins`).

#![no_main]

use jumpgate_types::{AccessChecker, Role, Traits};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fn exercise(role: &Role) {
    let yaml = role.to_yaml().expect("a parsed role writes YAML");
    let back = Role::from_yaml("again.yaml", &yaml);
    assert_eq!(back.as_ref().ok(), Some(role), "{yaml}\n{back:?}");
    let json = role.to_json().expect("a parsed role writes JSON");
    let back = Role::from_json("again.json", &json);
    assert_eq!(back.as_ref().ok(), Some(role), "{json}\n{back:?}");
    let _ = role.unsupported_fields();

    let traits = Traits::from([
        (
            "logins".to_owned(),
            vec!["alice".to_owned(), "root".to_owned()],
        ),
        ("email".to_owned(), vec!["alice@example.com".to_owned()]),
        ("github_username".to_owned(), vec!["alice-gh".to_owned()]),
        ("empty".to_owned(), Vec::new()),
    ]);
    let checker = AccessChecker::new([role], &traits);
    let logins = checker.logins();
    let _ = checker.max_session_ttl();
    let _ = checker.adjust_session_ttl(std::time::Duration::from_secs(3600));
    for resource in ["node", "role", "user", "*"] {
        for verb in ["list", "read", "create"] {
            let _ = checker.check_rule(resource, verb);
        }
    }
    for (env, team) in [("dev", "platform"), ("prod", ""), ("prod-eu", "*")] {
        let labels = BTreeMap::from([
            ("env".to_owned(), env.to_owned()),
            ("team".to_owned(), team.to_owned()),
        ]);
        let allowed = checker.allowed_logins(&labels);
        assert!(
            allowed.is_subset(&logins),
            "{allowed:?} not among {logins:?}"
        );
        for login in ["alice", "root", "alice-gh", "dev-alice", "ubuntu"] {
            assert_eq!(
                checker.check_ssh_access(&labels, login).is_ok(),
                allowed.contains(login),
                "{login} on {labels:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(role) = Role::from_yaml("fuzz.yaml", text) {
        exercise(&role);
    }
    if let Ok(role) = Role::from_json("fuzz.json", text) {
        exercise(&role);
    }
});
