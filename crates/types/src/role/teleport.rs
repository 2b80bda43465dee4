//! The Teleport role fields Jumpgate reads but does not act on (yet), and the few it refuses.
//!
//! Teleport users should be able to `jctl create` the roles they have. Most fields Jumpgate
//! lacks are about other protocols (Kubernetes, databases, apps, desktops) or features it does
//! not have (access requests, impersonation, moderated sessions): ignoring them grants nothing
//! extra, so they are accepted, kept (a role is written back as it came) and listed by
//! [`Role::unsupported_fields`](super::RoleSpec::unsupported_fields) for `jctl` to warn about.
//! Fields whose value equals Teleport's default are not listed: `tctl get` writes some of them
//! on every role.
//!
//! A few options *restrict* users, and ignoring them would quietly give users more than the
//! role says (`require_session_mfa`, `pin_source_ip`, `max_connections`, ...). Those are
//! refused unless they hold their default, with a message saying so. Keys that are not
//! Teleport's at all are errors as everywhere else.

use serde_norway::Value;

/// Teleport condition fields (under `allow:`/`deny:`) that are accepted and ignored.
pub(super) const CONDITIONS_IGNORED: &[&str] = &[
    "kubernetes_groups",
    "kubernetes_users",
    "kubernetes_labels",
    "kubernetes_labels_expression",
    "kubernetes_resources",
    "request",
    "review_requests",
    "impersonate",
    "app_labels",
    "app_labels_expression",
    "cluster_labels",
    "cluster_labels_expression",
    "db_labels",
    "db_labels_expression",
    "db_names",
    "db_users",
    "db_roles",
    "db_service_labels",
    "db_service_labels_expression",
    "db_permissions",
    "aws_role_arns",
    "azure_identities",
    "gcp_service_accounts",
    "windows_desktop_logins",
    "windows_desktop_labels",
    "windows_desktop_labels_expression",
    "desktop_groups",
    "join_sessions",
    "host_groups",
    "host_sudoers",
    "group_labels",
    "group_labels_expression",
    "spiffe",
    "account_assignments",
    "github_permissions",
    "workload_identity_labels",
    "workload_identity_labels_expression",
];

/// Teleport condition fields refused unless empty: moderated sessions (`require_session_join`)
/// would otherwise start unmoderated.
pub(super) const CONDITIONS_REFUSED: &[&str] = &["require_session_join"];

/// Teleport options that are accepted and ignored.
pub(super) const OPTIONS_IGNORED: &[&str] = &[
    "cert_format",
    "enhanced_recording",
    "request_access",
    "request_prompt",
    "lock",
    "record_session",
    "desktop_clipboard",
    "desktop_directory_sharing",
    "cert_extensions",
    "max_kubernetes_connections",
    "create_host_user",
    "create_host_user_mode",
    "create_host_user_default_shell",
    "create_desktop_user",
    "create_db_user",
    "create_db_user_mode",
    "idp",
    "mfa_verification_interval",
];

/// Teleport options refused unless they hold their default: each restricts users in a way
/// Jumpgate does not enforce yet.
pub(super) const OPTIONS_REFUSED: &[&str] = &[
    "require_session_mfa",
    "pin_source_ip",
    "max_connections",
    "max_sessions",
    "device_trust_mode",
];

/// Why a refused field is refused, for its error message.
pub(super) fn refusal(key: &str) -> String {
    let what = match key {
        "require_session_mfa" => "per-session MFA is not supported yet",
        "pin_source_ip" => "pinning certificates to the client's IP is not supported yet",
        "max_connections" | "max_sessions" => "connection and session limits are not enforced yet",
        "device_trust_mode" => "device trust is not supported yet",
        "require_session_join" => "moderated sessions are not supported yet",
        _ => "this Teleport feature is not supported yet",
    };
    format!(
        "{what}, and ignoring `{key}` would give users more access than the role says; remove \
         it (or set it to its default) to use this role"
    )
}

/// Whether a value is empty or Teleport's default, so that ignoring it changes nothing.
pub(super) fn is_inert(key: &str, value: &Value) -> bool {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.trim().to_ascii_lowercase()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let is = |v: &Value, accepted: &[&str]| text(v).is_some_and(|t| accepted.contains(&t.as_str()));
    const FALSE: &[&str] = &["false", "no", "off", ""];
    const TRUE: &[&str] = &["true", "yes", "on"];
    match value {
        Value::Null => return true,
        Value::Sequence(s) if s.is_empty() => return true,
        Value::Mapping(m) if m.is_empty() => return true,
        Value::String(s) if s.trim().is_empty() => return true,
        _ => {}
    }
    match key {
        "cert_format" => is(value, &["standard"]),
        "request_access" => is(value, &["optional"]),
        "lock" => is(value, &["best_effort"]),
        "desktop_clipboard" | "desktop_directory_sharing" => is(value, TRUE),
        "pin_source_ip" | "create_host_user" | "create_desktop_user" | "create_db_user" => {
            is(value, FALSE)
        }
        "require_session_mfa" => is(value, FALSE),
        "device_trust_mode" => is(value, &["off"]),
        "create_host_user_mode" | "create_db_user_mode" => is(value, &["off", "unspecified"]),
        "max_connections" | "max_sessions" | "max_kubernetes_connections" => is(value, &["0"]),
        "record_session" => match value {
            // Jumpgate records every SSH session; the defaults say the same.
            Value::Mapping(m) => m.iter().all(|(k, v)| match k.as_str() {
                Some("desktop") => is(v, TRUE),
                Some("default" | "ssh") => is(v, &["best_effort"]),
                _ => false,
            }),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn lists_do_not_overlap() {
        for k in CONDITIONS_IGNORED {
            assert!(!CONDITIONS_REFUSED.contains(k), "{k}");
        }
        for k in OPTIONS_IGNORED {
            assert!(!OPTIONS_REFUSED.contains(k), "{k}");
        }
    }

    /// docs/roles.md lists every Teleport field by name; a field added here must be added there.
    #[test]
    fn docs_list_every_field() {
        let docs = include_str!("../../../../docs/roles.md");
        let lists = [
            CONDITIONS_IGNORED,
            CONDITIONS_REFUSED,
            OPTIONS_IGNORED,
            OPTIONS_REFUSED,
        ];
        let missing: Vec<&str> = lists
            .iter()
            .flat_map(|l| l.iter())
            .filter(|k| !docs.contains(&format!("`{k}`")))
            .copied()
            .collect();
        assert!(missing.is_empty(), "not in docs/roles.md: {missing:?}");
    }

    #[test]
    fn defaults_are_inert() {
        let v = |s: &str| serde_norway::from_str::<Value>(s).unwrap();
        assert!(is_inert("pin_source_ip", &v("false")));
        assert!(!is_inert("pin_source_ip", &v("true")));
        assert!(is_inert("require_session_mfa", &v("\"no\"")));
        assert!(!is_inert("require_session_mfa", &v("hardware_key_touch")));
        assert!(is_inert(
            "record_session",
            &v("{desktop: true, default: best_effort}")
        ));
        assert!(!is_inert("record_session", &v("{ssh: strict}")));
        assert!(is_inert("kubernetes_groups", &v("[]")));
        assert!(!is_inert("kubernetes_groups", &v("[system:masters]")));
        assert!(is_inert("max_sessions", &v("0")));
        assert!(!is_inert("max_sessions", &v("3")));
    }
}
