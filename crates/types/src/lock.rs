//! The `lock` resource, in Teleport's shape: it names a user, a role, a login or a node,
//! and while it lasts every part of the cluster refuses that target's certificates and
//! ends its live sessions (DESIGN.md "Identity").
//!
//! ```yaml
//! kind: lock
//! version: v2
//! metadata: {name: 5a1e...}
//! spec:
//!   target: {user: alice}
//!   message: "Suspicious activity; talk to security"
//!   expires: 2030-01-01T00:00:00Z
//! ```
//!
//! A lock without `expires` lasts until it is removed (`jctl rm lock/NAME`).

use crate::resource::rfc3339;
use crate::resource::{Resource, ResourceSpec, ResourceVersion};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// A lock: what it targets, why, until when.
pub type Lock = Resource<LockSpec>;

/// What a lock says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockSpec {
    /// Whom it locks out: exactly one of the target's fields is set.
    #[serde(deserialize_with = "one_target")]
    pub target: LockTarget,
    /// Shown to whoever is refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the lock ends by itself; none: until removed.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339")]
    pub expires: Option<SystemTime>,
    /// Who made it (set by the auth service).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339")]
    pub created_at: Option<SystemTime>,
}

impl ResourceSpec for LockSpec {
    const KIND: &'static str = "lock";
    const VERSION: ResourceVersion = ResourceVersion::V2;
}

/// Whom a lock targets (Teleport's `LockTarget`, the fields Jumpgate has identities for).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockTarget {
    /// A user by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Everyone holding this role (in their certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// An OS login on nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// A host by UUID (Teleport also writes it as `server_id`): the node (or proxy) is
    /// cut off, and nobody may connect to it.
    #[serde(default, alias = "server_id", skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl LockTarget {
    /// The target as `kind=value`, for messages and audit events.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("user", &self.user),
            ("role", &self.role),
            ("login", &self.login),
            ("node", &self.node),
        ]
        .into_iter()
        .filter_map(|(kind, value)| value.as_ref().map(|value| format!("{kind}={value}")))
        .collect();
        parts.join(",")
    }
}

fn one_target<'de, D: serde::Deserializer<'de>>(d: D) -> Result<LockTarget, D::Error> {
    let target = LockTarget::deserialize(d)?;
    let set = [&target.user, &target.role, &target.login, &target.node]
        .into_iter()
        .filter(|field| field.as_ref().is_some_and(|value| !value.trim().is_empty()))
        .count();
    match set {
        1 => Ok(target),
        0 => Err(serde::de::Error::custom(
            "expected one of user, role, login or node (server_id)",
        )),
        _ => Err(serde::de::Error::custom(
            "a lock targets one of user, role, login or node; make one lock per target",
        )),
    }
}

/// Who is asking to be let in, as far as locks care: any of the parts a lock may name.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockSubject<'a> {
    pub user: Option<&'a str>,
    /// The roles the caller's certificate carries.
    pub roles: &'a [String],
    pub login: Option<&'a str>,
    /// The host calling (its UUID), or the node being reached.
    pub node: Option<&'a str>,
}

impl LockSpec {
    /// Whether the lock is in force at `now`.
    pub fn in_force(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|expires| now < expires)
    }

    /// Whether the lock applies to `subject` at `now`.
    pub fn applies_to(&self, subject: &LockSubject<'_>, now: SystemTime) -> bool {
        if !self.in_force(now) {
            return false;
        }
        let target = &self.target;
        let same = |wanted: &Option<String>, have: Option<&str>| matches!((wanted, have), (Some(wanted), Some(have)) if wanted == have);
        same(&target.user, subject.user)
            || same(&target.login, subject.login)
            || same(&target.node, subject.node)
            || target
                .role
                .as_ref()
                .is_some_and(|role| subject.roles.iter().any(|held| held == role))
    }

    /// What a refused party is told.
    pub fn refusal(&self) -> String {
        let mut text = format!("locked ({})", self.target.describe());
        if !self.message.is_empty() {
            text.push_str(": ");
            text.push_str(&self.message);
        }
        if let Some(expires) = self.expires.and_then(|t| rfc3339::format(t).ok()) {
            text.push_str(&format!(" (until {expires})"));
        }
        text
    }
}

/// The first lock among `locks` that applies to `subject` at `now`.
pub fn find_lock<'a>(
    locks: impl IntoIterator<Item = &'a Lock>,
    subject: &LockSubject<'_>,
    now: SystemTime,
) -> Option<&'a Lock> {
    locks
        .into_iter()
        .find(|lock| lock.spec.applies_to(subject, now))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lock(target: &str, expires: Option<&str>) -> Lock {
        let expires = expires
            .map(|e| format!("\n  expires: {e}"))
            .unwrap_or_default();
        Lock::from_yaml(
            "lock.yaml",
            &format!(
                "kind: lock\nversion: v2\nmetadata: {{name: l1}}\nspec:\n  target: {target}\n  message: go away{expires}\n"
            ),
        )
        .unwrap()
    }

    #[test]
    fn each_target_kind_matches_only_its_own() {
        let now = SystemTime::now();
        let roles = ["dev".to_string()];
        let alice = LockSubject {
            user: Some("alice"),
            roles: &roles,
            login: Some("root"),
            node: Some("n1"),
        };
        let bob = LockSubject {
            user: Some("bob"),
            roles: &[],
            login: Some("bob"),
            node: Some("n2"),
        };
        for target in [
            "{user: alice}",
            "{role: dev}",
            "{login: root}",
            "{node: n1}",
            "{server_id: n1}",
        ] {
            let lock = lock(target, None);
            assert!(lock.spec.applies_to(&alice, now), "{target}");
            assert!(!lock.spec.applies_to(&bob, now), "{target}");
        }
    }

    #[test]
    fn an_expired_lock_applies_to_nobody() {
        let lock = lock("{user: alice}", Some("2030-01-01T00:00:00Z"));
        let alice = LockSubject {
            user: Some("alice"),
            ..LockSubject::default()
        };
        let before = rfc3339::parse("2029-12-31T23:59:59Z").unwrap();
        assert!(lock.spec.applies_to(&alice, before));
        assert!(
            !lock
                .spec
                .applies_to(&alice, before + Duration::from_secs(1))
        );
        assert!(lock.spec.refusal().contains("go away"));
        assert!(lock.spec.refusal().contains("until 2030-01-01T00:00:00Z"));
    }

    #[test]
    fn a_lock_targets_exactly_one_thing() {
        for (target, expected) in [
            ("{}", "expected one of user, role, login or node"),
            ("{user: a, role: b}", "make one lock per target"),
            ("{user: '  '}", "expected one of user"),
            ("{group: a}", "unknown key `group`"),
        ] {
            let err = Lock::from_yaml(
                "lock.yaml",
                &format!(
                    "kind: lock\nversion: v2\nmetadata: {{name: l1}}\nspec:\n  target: {target}\n"
                ),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(expected), "{target}: {err}");
            assert!(
                err.contains("spec.target"),
                "the path is named: {target}: {err}"
            );
        }
    }
}
