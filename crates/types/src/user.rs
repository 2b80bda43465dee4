//! What services other than auth know of a user, and the one rule every service applies
//! to a user's certificate.
//!
//! Auth keeps users with their secrets apart (password hashes and TOTP secrets never leave
//! it); proxies and nodes get this view through the auth API: the name, the roles the user
//! holds now and their traits.
//!
//! A certificate names the roles the user held when it was issued. Auth, proxies and nodes
//! all grant it only [`held_roles`]: the roles it names that the user *still* holds, as
//! they are defined *now*. So taking a role from a user, deleting the user or deleting a
//! role takes effect on certificates already issued, not only when they expire.

use crate::{Role, Traits};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// Why a `user` document from the auth API was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserDocumentError {
    /// Not JSON, or not the document's shape.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A document of another kind (a role sent where a user was expected).
    #[error("expected a user document, got kind {0:?}")]
    WrongKind(String),
    /// `metadata.name` is missing or empty.
    #[error("a user document without metadata.name")]
    NoName,
}

/// A user as proxies and nodes see them: no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserView {
    pub name: String,
    /// The roles the user holds now.
    pub roles: Vec<String>,
    /// For role templates (`{{internal.logins}}`).
    pub traits: Traits,
}

/// The document form: `{"kind": "user", "version": "v2", "metadata": {"name"}, "spec":
/// {"roles", "traits"}}` (Teleport's shape; auth may add a `status`).
#[derive(Serialize, Deserialize)]
struct Document {
    kind: String,
    #[serde(default)]
    version: String,
    metadata: Metadata,
    #[serde(default)]
    spec: Spec,
}

#[derive(Serialize, Deserialize)]
struct Metadata {
    name: String,
}

#[derive(Serialize, Deserialize, Default)]
struct Spec {
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    traits: Traits,
}

impl UserView {
    /// Reads a `user` document as the auth API sends it.
    pub fn from_json(document: &str) -> Result<UserView, UserDocumentError> {
        let document: Document = serde_json::from_str(document)?;
        if document.kind != "user" {
            return Err(UserDocumentError::WrongKind(document.kind));
        }
        if document.metadata.name.is_empty() {
            return Err(UserDocumentError::NoName);
        }
        Ok(UserView {
            name: document.metadata.name,
            roles: document.spec.roles,
            traits: document.spec.traits,
        })
    }

    /// The document [`UserView::from_json`] reads.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Document {
            kind: "user".to_string(),
            version: "v2".to_string(),
            metadata: Metadata {
                name: self.name.clone(),
            },
            spec: Spec {
                roles: self.roles.clone(),
                traits: self.traits.clone(),
            },
        })
        .unwrap_or_default()
    }
}

/// The roles a certificate naming `certificate_roles` grants `user` now: those the user
/// still holds, as `defined` now (a role that no longer exists, or has expired, grants
/// nothing). Auth, proxies and nodes decide with this one function.
pub fn held_roles<'a>(
    certificate_roles: &[String],
    user: &UserView,
    defined: impl IntoIterator<Item = &'a Role>,
    now: SystemTime,
) -> Vec<&'a Role> {
    let defined: Vec<&Role> = defined.into_iter().collect();
    certificate_roles
        .iter()
        .filter(|name| user.roles.contains(name))
        .filter_map(|name| {
            defined
                .iter()
                .find(|role| role.name() == name && !role.metadata.is_expired(now))
                .copied()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn role(name: &str) -> Role {
        Role::from_yaml(
            "test",
            &format!("kind: role\nversion: v7\nmetadata: {{name: {name}}}\nspec: {{}}\n"),
        )
        .unwrap()
    }

    fn names(roles: &[&Role]) -> Vec<String> {
        roles.iter().map(|role| role.name().to_string()).collect()
    }

    #[test]
    fn refused_user_documents_say_why_and_keep_the_json_error() {
        let err = UserView::from_json("{").unwrap_err();
        assert!(matches!(err, UserDocumentError::Json(_)), "{err:?}");
        let source = std::error::Error::source(&err);
        assert!(
            source.is_some_and(|s| s.downcast_ref::<serde_json::Error>().is_some()),
            "{err:?}"
        );
        let role = r#"{"kind":"role","metadata":{"name":"x"}}"#;
        let err = UserView::from_json(role).unwrap_err();
        assert!(matches!(&err, UserDocumentError::WrongKind(kind) if kind == "role"));
        assert_eq!(
            err.to_string(),
            "expected a user document, got kind \"role\""
        );
        let err = UserView::from_json(r#"{"kind":"user","metadata":{"name":""}}"#).unwrap_err();
        assert!(matches!(err, UserDocumentError::NoName), "{err:?}");
        let alice = UserView {
            name: "alice".into(),
            roles: vec!["access".into()],
            traits: Traits::new(),
        };
        assert_eq!(UserView::from_json(&alice.to_json()).unwrap(), alice);
    }

    #[test]
    fn a_certificate_keeps_only_the_roles_the_user_still_holds_and_that_exist() {
        let defined = [role("access"), role("auditor"), role("editor")];
        let user = UserView {
            name: "alice".into(),
            roles: vec!["access".into(), "auditor".into(), "gone".into()],
            traits: Traits::new(),
        };
        let certificate = ["access", "editor", "gone"].map(String::from);
        // `editor` was taken from alice after the certificate was issued; `gone` was
        // deleted; `auditor` she holds but the certificate does not name.
        let held = held_roles(&certificate, &user, &defined, SystemTime::now());
        assert_eq!(names(&held), ["access"]);
    }

    #[test]
    fn an_expired_role_grants_nothing() {
        let expired = Role::from_yaml(
            "test",
            "kind: role\nversion: v7\nmetadata: {name: temp, expires: '2001-01-01T00:00:00Z'}\nspec: {}\n",
        )
        .unwrap();
        let user = UserView {
            name: "alice".into(),
            roles: vec!["temp".into()],
            traits: Traits::new(),
        };
        let held = held_roles(&["temp".to_string()], &user, [&expired], SystemTime::now());
        assert!(held.is_empty());
    }

    #[test]
    fn the_document_round_trips_and_bad_ones_are_refused() {
        let user = UserView {
            name: "alice".into(),
            roles: vec!["access".into()],
            traits: Traits::from([("logins".to_string(), vec!["alice".to_string()])]),
        };
        assert_eq!(UserView::from_json(&user.to_json()).unwrap(), user);
        let with_status = r#"{"kind":"user","version":"v2","metadata":{"name":"bob"},"spec":{"roles":["x"]},"status":{"is_locked":false}}"#;
        assert_eq!(UserView::from_json(with_status).unwrap().roles, ["x"]);
        assert!(
            UserView::from_json(r#"{"kind":"role","version":"v7","metadata":{"name":"x"}}"#)
                .is_err()
        );
        assert!(
            UserView::from_json(r#"{"kind":"user","version":"v2","metadata":{"name":""}}"#)
                .is_err()
        );
        assert!(UserView::from_json("[]").is_err());
    }
}
