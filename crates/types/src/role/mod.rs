//! The `role` resource: who may log in where as whom, and which admin actions they may take.
//!
//! ```yaml
//! kind: role
//! version: v7
//! metadata: {name: dev}
//! spec:
//!   allow:
//!     logins: ['{{internal.logins}}', ubuntu]
//!     node_labels: {env: [dev, staging]}
//!     rules: [{resources: [node], verbs: [list, read]}]
//!   deny:
//!     logins: [root]
//!   options:
//!     max_session_ttl: 8h
//! ```
//!
//! This module is the file format: parsing (with errors naming the field), validation and
//! writing back. What a set of roles lets a user do is decided by
//! [`AccessChecker`](crate::AccessChecker). `docs/roles.md` is the reference.

mod labels;
mod teleport;
mod template;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_norway::Value;

pub(crate) use labels::NodeMatcher;
pub use labels::{LabelSelector, LabelValue, LabelValueError, WILDCARD};
pub use template::{INTERNAL_TRAITS, Template, TemplateError, Traits};

use crate::config::error::suggest;
use crate::config::values::{FlexBool, OneOrMany, ScalarString, parse_duration};
use crate::rbac::Predicate;
use crate::resource::{Metadata, Resource, ResourceName, ResourceSpec, ResourceVersion};

/// A role: a [`Resource`] whose spec is a [`RoleSpec`].
pub type Role = Resource<RoleSpec>;

/// The session TTL cap of a role that does not set `max_session_ttl`. DESIGN.md's certificate
/// default is 12h, "never longer than the roles allow"; Teleport's role default is 30h, but a
/// default role that allowed more than the default certificate would make the cap meaningless.
pub const DEFAULT_MAX_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Resource kinds that admin rules name. Rules accept any lowercase name (Teleport has many
/// more kinds); these are the ones Jumpgate checks.
pub mod kinds {
    /// Users.
    pub const USER: &str = "user";
    /// Roles.
    pub const ROLE: &str = "role";
    /// Join tokens.
    pub const TOKEN: &str = "token";
    /// SSH nodes.
    pub const NODE: &str = "node";
    /// Proxy presence records.
    pub const PROXY: &str = "proxy";
    /// Auth server presence records.
    pub const AUTH_SERVER: &str = "auth_server";
    /// Locks: who is cut off from the cluster until when (`jctl lock`).
    pub const LOCK: &str = "lock";
    /// Certificate authorities.
    pub const CERT_AUTHORITY: &str = "cert_authority";
    /// Audit events.
    pub const EVENT: &str = "event";
    /// Session recordings.
    pub const SESSION: &str = "session";
    /// SSO connectors (`oidc`, `saml`, `github`), one rule kind for all three as in
    /// Teleport.
    pub const AUTH_CONNECTOR: &str = "auth_connector";
    /// OIDC connectors.
    pub const OIDC: &str = "oidc";
    /// SAML connectors.
    pub const SAML: &str = "saml";
    /// GitHub connectors.
    pub const GITHUB: &str = "github";
}

/// Verbs that admin rules name.
pub mod verbs {
    /// List resources of a kind.
    pub const LIST: &str = "list";
    /// Create one.
    pub const CREATE: &str = "create";
    /// Read one.
    pub const READ: &str = "read";
    /// Change one.
    pub const UPDATE: &str = "update";
    /// Delete one.
    pub const DELETE: &str = "delete";
}

/// A role's `spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with allow, deny and options"
)]
pub struct RoleSpec {
    /// Session options; merged across a user's roles the strictest way.
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: RoleOptions,
    /// What the role grants.
    #[serde(default, deserialize_with = "null_as_default")]
    pub allow: RoleConditions,
    /// What the role takes away, whatever any role grants.
    #[serde(default, deserialize_with = "null_as_default")]
    pub deny: RoleConditions,
}

impl ResourceSpec for RoleSpec {
    const KIND: &'static str = "role";
    const VERSION: ResourceVersion = ResourceVersion::V7;
}

/// An `allow` or `deny` block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleConditions {
    /// Unix logins, literal or templated (`{{internal.logins}}`).
    pub logins: Vec<Template>,
    /// The nodes this block is about; empty means none.
    pub node_labels: LabelSelector,
    /// Teleport's predicate language, which Jumpgate cannot evaluate yet: kept, and treated as
    /// failing closed (an allow with it matches no node; a deny with it matches every node).
    pub node_labels_expression: Option<String>,
    /// Admin rules.
    pub rules: Vec<Rule>,
    teleport_only: BTreeMap<String, Value>,
}

/// An admin rule: `{resources: [role], verbs: [list, read]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Resource kinds ([`kinds`]), or `*`.
    pub resources: Vec<String>,
    /// Verbs ([`verbs`]), or `*`.
    pub verbs: Vec<String>,
    /// Teleport's condition on the rule (`contains(session.participants,
    /// user.metadata.name)`): the rule applies only to resources it is true for.
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_clause: Option<Predicate>,
    /// Teleport's actions run when a rule matches; ignored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
}

/// A role's `options`. `None` means "not set": the default applies, and the value is not
/// written back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleOptions {
    /// Longest certificate (and so session) this role allows; default
    /// [`DEFAULT_MAX_SESSION_TTL`].
    pub max_session_ttl: Option<Duration>,
    /// TCP port forwarding; default allowed.
    pub port_forwarding: Option<bool>,
    /// Teleport v7's finer `ssh_port_forwarding: {local: {enabled}, remote: {enabled}}`.
    pub ssh_port_forwarding: Option<SshPortForwarding>,
    /// scp/sftp; default allowed.
    pub ssh_file_copy: Option<bool>,
    /// SSH agent forwarding; default refused.
    pub forward_agent: Option<bool>,
    /// Disconnect a session idle for this long; default never.
    pub client_idle_timeout: Option<Duration>,
    /// Disconnect a session when its certificate expires; default no.
    pub disconnect_expired_cert: Option<bool>,
    /// X11 forwarding; default refused.
    pub permit_x11_forwarding: Option<bool>,
    teleport_only: BTreeMap<String, Value>,
}

/// `ssh_port_forwarding`: local (`ssh -L`) and remote (`ssh -R`) forwarding, each default
/// allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SshPortForwarding {
    /// `local.enabled`.
    pub local: Option<bool>,
    /// `remote.enabled`.
    pub remote: Option<bool>,
}

impl RoleOptions {
    /// `max_session_ttl`, or the default.
    pub fn max_session_ttl(&self) -> Duration {
        self.max_session_ttl.unwrap_or(DEFAULT_MAX_SESSION_TTL)
    }

    /// Whether port forwarding is allowed. A certificate carries one permission for both
    /// directions, so any of `port_forwarding`, `ssh_port_forwarding.local` and `.remote` set
    /// to false turns it off.
    pub fn port_forwarding(&self) -> bool {
        let fine = self.ssh_port_forwarding.unwrap_or_default();
        self.port_forwarding.unwrap_or(true)
            && fine.local.unwrap_or(true)
            && fine.remote.unwrap_or(true)
    }

    /// Whether scp/sftp is allowed.
    pub fn ssh_file_copy(&self) -> bool {
        self.ssh_file_copy.unwrap_or(true)
    }

    /// Whether agent forwarding is allowed.
    pub fn forward_agent(&self) -> bool {
        self.forward_agent.unwrap_or(false)
    }

    /// Whether X11 forwarding is allowed.
    pub fn permit_x11_forwarding(&self) -> bool {
        self.permit_x11_forwarding.unwrap_or(false)
    }

    /// Whether sessions end when their certificate expires.
    pub fn disconnect_expired_cert(&self) -> bool {
        self.disconnect_expired_cert.unwrap_or(false)
    }
}

/// A field of a role that Jumpgate accepted but does not act on: what `jctl` warns about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedField {
    /// Dotted path: `spec.allow.kubernetes_groups`, `spec.allow.rules[1].actions`.
    pub path: String,
    /// What Jumpgate does instead.
    pub effect: UnsupportedEffect,
}

/// What Jumpgate does with a field it does not support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsupportedEffect {
    /// Nothing: the feature (Kubernetes groups, access requests, ...) does not exist here yet,
    /// so the field grants nothing.
    Ignored,
    /// It cannot be evaluated, so what it qualifies fails closed: an allow grants nothing and
    /// a deny applies everywhere.
    FailsClosed,
}

impl fmt::Display for UnsupportedField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.effect {
            UnsupportedEffect::Ignored => write!(f, "{} (ignored: not supported yet)", self.path),
            UnsupportedEffect::FailsClosed => write!(
                f,
                "{} (not evaluated: an allow with it grants nothing, a deny with it applies everywhere)",
                self.path
            ),
        }
    }
}

impl RoleSpec {
    /// The fields Jumpgate accepted for Teleport compatibility but does not act on, in
    /// document order within each block. Fields holding Teleport's default are left out.
    pub fn unsupported_fields(&self) -> Vec<UnsupportedField> {
        let mut out = Vec::new();
        let ignored = |path: String| UnsupportedField {
            path,
            effect: UnsupportedEffect::Ignored,
        };
        for key in inert_filtered(&self.options.teleport_only) {
            out.push(ignored(format!("spec.options.{key}")));
        }
        for (side, cond) in [("allow", &self.allow), ("deny", &self.deny)] {
            if cond.node_labels_expression.is_some() {
                out.push(UnsupportedField {
                    path: format!("spec.{side}.node_labels_expression"),
                    effect: UnsupportedEffect::FailsClosed,
                });
            }
            for (i, rule) in cond.rules.iter().enumerate() {
                if !rule.actions.is_empty() {
                    out.push(ignored(format!("spec.{side}.rules[{i}].actions")));
                }
            }
            for key in inert_filtered(&cond.teleport_only) {
                out.push(ignored(format!("spec.{side}.{key}")));
            }
        }
        out
    }
}

fn inert_filtered(fields: &BTreeMap<String, Value>) -> impl Iterator<Item = &str> {
    fields
        .iter()
        .filter(|(k, v)| !teleport::is_inert(k, v))
        .map(|(k, _)| k.as_str())
}

impl Resource<RoleSpec> {
    /// See [`RoleSpec::unsupported_fields`].
    pub fn unsupported_fields(&self) -> Vec<UnsupportedField> {
        self.spec.unsupported_fields()
    }

    /// Built-in `access`: log in to every node as the user's own logins (the `logins` trait),
    /// and list and play the recordings of one's own sessions (Teleport's rule); no other
    /// admin rights.
    pub fn builtin_access() -> Role {
        builtin(
            "access",
            "Log in to every node as the user's own logins; play back one's own sessions",
            RoleConditions {
                logins: vec![Template::internal_trait("logins")],
                node_labels: LabelSelector::everything(),
                rules: vec![Rule {
                    where_clause: Some(Predicate::own_sessions()),
                    ..Rule::trusted(&[kinds::SESSION], &[verbs::LIST, verbs::READ])
                }],
                ..RoleConditions::default()
            },
        )
    }

    /// Built-in `editor`: manage the cluster's users, roles, tokens, nodes, certificate
    /// authorities, locks and SSO connectors; no node logins (an admin who also needs shell
    /// gets `access` too).
    pub fn builtin_editor() -> Role {
        let resources = [
            kinds::USER,
            kinds::ROLE,
            kinds::TOKEN,
            kinds::NODE,
            kinds::PROXY,
            kinds::AUTH_SERVER,
            kinds::CERT_AUTHORITY,
            kinds::LOCK,
            kinds::AUTH_CONNECTOR,
        ];
        builtin(
            "editor",
            "Manage users, roles, join tokens, nodes, certificate authorities, locks and SSO connectors",
            RoleConditions {
                rules: vec![Rule::trusted(&resources, &[WILDCARD])],
                ..RoleConditions::default()
            },
        )
    }

    /// Built-in `auditor`: read the audit log and session recordings; nothing else.
    pub fn builtin_auditor() -> Role {
        builtin(
            "auditor",
            "Read the audit log and session recordings",
            RoleConditions {
                rules: vec![Rule::trusted(
                    &[kinds::EVENT, kinds::SESSION],
                    &[verbs::LIST, verbs::READ],
                )],
                ..RoleConditions::default()
            },
        )
    }

    /// The three built-in roles, which exist in every cluster.
    pub fn builtins() -> Vec<Role> {
        vec![
            Self::builtin_access(),
            Self::builtin_editor(),
            Self::builtin_auditor(),
        ]
    }
}

fn builtin(name: &'static str, description: &str, allow: RoleConditions) -> Role {
    let mut metadata = Metadata::new(ResourceName::trusted(name));
    metadata.description = Some(description.to_owned());
    Resource::new(
        metadata,
        RoleSpec {
            allow,
            ..RoleSpec::default()
        },
    )
}

impl Rule {
    /// A rule from names known to be valid (the built-in roles'); a unit test checks them.
    fn trusted(resources: &[&str], verbs: &[&str]) -> Self {
        Self {
            resources: resources.iter().map(|s| (*s).to_owned()).collect(),
            verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
            where_clause: None,
            actions: Vec::new(),
        }
    }

    /// Whether the rule names this resource kind and verb (or `*` for either).
    pub fn matches(&self, resource: &str, verb: &str) -> bool {
        let has = |list: &[String], item: &str| list.iter().any(|x| x == WILDCARD || x == item);
        has(&self.resources, resource) && has(&self.verbs, verb)
    }
}

/// Whether `login` can be a Unix login in a certificate: 1 to 64 characters, letters (any
/// script), digits and `. _ - @ $ \ +`, not starting with `-` (it would read as an option).
/// Trait values that fail this are dropped when templates expand.
pub fn is_valid_login(login: &str) -> bool {
    check_login(login).is_ok()
}

const MAX_LOGIN_LEN: usize = 64;

fn login_char(c: char) -> bool {
    c.is_alphanumeric() || "._-@$\\+".contains(c)
}

fn check_login(login: &str) -> Result<(), String> {
    if login.is_empty() {
        return Err("a login must not be empty".to_owned());
    }
    if login.chars().count() > MAX_LOGIN_LEN {
        return Err(format!(
            "login {login:?} is longer than {MAX_LOGIN_LEN} characters"
        ));
    }
    if login.starts_with('-') {
        return Err(format!("login {login:?} must not start with '-'"));
    }
    if login == WILDCARD {
        return Err("logins have no wildcard: list them, or use {{internal.logins}}".to_owned());
    }
    if let Some(bad) = login.chars().find(|c| !login_char(*c)) {
        return Err(format!(
            "login {login:?} contains {bad:?}; logins use letters, digits and . _ - @ $ \\ +"
        ));
    }
    Ok(())
}

/// A `logins` entry: a template whose literal text is valid in a login.
struct Login(Template);

impl<'de> Deserialize<'de> for Login {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let template = Template::deserialize(d)?;
        match template.literal() {
            Some(literal) => check_login(literal).map_err(de::Error::custom)?,
            None => {
                for part in template.literal_parts() {
                    if let Some(bad) = part.chars().find(|c| !login_char(*c)) {
                        return Err(de::Error::custom(format_args!(
                            "{:?}: the text around the template contains {bad:?}; logins use \
                             letters, digits and . _ - @ $ \\ +",
                            template.as_str()
                        )));
                    }
                }
            }
        }
        Ok(Login(template))
    }
}

/// A rule's resource or verb: lowercase letters, digits and `_`, or `*`.
struct RuleName(String);

impl<'de> Deserialize<'de> for RuleName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ScalarString(name) = ScalarString::deserialize(d)?;
        let ok = name == WILDCARD
            || (!name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        if ok {
            Ok(RuleName(name))
        } else {
            Err(de::Error::custom(format_args!(
                "{name:?} is not a resource kind or verb: use lowercase letters, digits and _ \
                 (e.g. `cert_authority`, `list`), or '*'"
            )))
        }
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, expecting = "a mapping with resources and verbs")]
        struct RawRule {
            #[serde(default)]
            resources: Option<OneOrMany<RuleName>>,
            #[serde(default)]
            verbs: Option<OneOrMany<RuleName>>,
            #[serde(default, rename = "where")]
            where_clause: Option<WhereClause>,
            #[serde(default)]
            actions: Option<OneOrMany<String>>,
        }
        let raw = RawRule::deserialize(d)?;
        let names = |list: Option<OneOrMany<RuleName>>| -> Vec<String> {
            list.map(|l| l.0.into_iter().map(|n| n.0).collect())
                .unwrap_or_default()
        };
        let rule = Rule {
            resources: names(raw.resources),
            verbs: names(raw.verbs),
            where_clause: raw.where_clause.and_then(|w| w.0),
            actions: raw.actions.map(|a| a.0).unwrap_or_default(),
        };
        if rule.resources.is_empty() {
            return Err(de::Error::custom(
                "a rule needs `resources`: at least one kind (e.g. [role]) or '*'",
            ));
        }
        if rule.verbs.is_empty() {
            return Err(de::Error::custom(
                "a rule needs `verbs`: at least one (e.g. [list, read]) or '*'",
            ));
        }
        // `session.*` is only ever known for sessions: on any other kind such a condition
        // could never be true, so the rule would silently grant nothing.
        if let Some(predicate) = &rule.where_clause {
            for kind in predicate.namespaces().into_iter().filter_map(|n| n.kind()) {
                if !rule.resources.iter().any(|r| r == kind || r == WILDCARD) {
                    return Err(de::Error::custom(format_args!(
                        "`where` reads `{kind}.*` fields, which only rules on `{kind}` have, but \
                         this rule is on {}: add `{kind}` to `resources`, or use other fields",
                        rule.resources.join(", ")
                    )));
                }
            }
        }
        Ok(rule)
    }
}

/// A rule's `where`: blank means none; anything else must parse.
struct WhereClause(Option<Predicate>);

impl<'de> Deserialize<'de> for WhereClause {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ScalarString(text) = ScalarString::deserialize(d)?;
        if text.trim().is_empty() {
            return Ok(WhereClause(None));
        }
        Predicate::parse(&text)
            .map(|p| WhereClause(Some(p)))
            .map_err(de::Error::custom)
    }
}

/// Reads a field Jumpgate refuses unless it holds Teleport's default. A seed, so that the
/// error arises while reading the value and its path ends with the field's key.
struct Refused<'a>(&'a str);

impl<'de> de::DeserializeSeed<'de> for Refused<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        let value = as_stored(Value::deserialize(d)?)?;
        if teleport::is_inert(self.0, &value) {
            Ok(value)
        } else {
            Err(de::Error::custom(teleport::refusal(self.0)))
        }
    }
}

/// Reads a Teleport field Jumpgate accepts and ignores, to be written back.
struct Ignored;

impl<'de> de::DeserializeSeed<'de> for Ignored {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        as_stored(Value::deserialize(d)?)
    }
}

/// A Teleport-only value as it will be read back: auth stores roles as JSON, and nodes and
/// proxies read them from there, so the value is kept as JSON carries it (mapping keys as
/// strings, `.nan` and `.inf` as null, a YAML tag as a one-key mapping). A value JSON cannot
/// carry (a sequence or mapping as a key) is refused here, naming the field, instead of
/// failing as an internal error when the role is stored. Found by the `role` fuzz target: a
/// role read from YAML differed from the same role read back from its JSON.
fn as_stored<E: de::Error>(value: Value) -> Result<Value, E> {
    let json = serde_json::to_value(&value).map_err(|err| {
        E::custom(format_args!(
            "cannot be stored ({err}); keys of mappings must be strings, numbers or booleans"
        ))
    })?;
    serde_norway::to_value(json).map_err(E::custom)
}

/// serde's unknown-field message, which `from_serde` rewrites: with a "did you mean" when the
/// key is close to any known one (Teleport's included), else listing the keys Jumpgate acts on
/// (the Teleport-only ones are in docs/roles.md; listing forty of them would bury the point).
fn unknown_key<E: de::Error>(
    key: &str,
    supported: &[&'static str],
    teleport: &[&[&'static str]],
) -> E {
    let all: Vec<&str> = supported
        .iter()
        .chain(teleport.iter().flat_map(|t| t.iter()))
        .copied()
        .collect();
    let shown: Vec<String> = match suggest(key, &all) {
        Some(hint) => vec![format!("`{hint}`")],
        None => supported.iter().map(|k| format!("`{k}`")).collect(),
    };
    E::custom(format_args!(
        "unknown field `{key}`, expected one of {}",
        shown.join(", ")
    ))
}

const CONDITIONS_SUPPORTED: &[&str] = &["logins", "node_labels", "node_labels_expression", "rules"];

impl<'de> Deserialize<'de> for RoleConditions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RoleConditions;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping with logins, node_labels and rules")
            }
            fn visit_unit<E: de::Error>(self) -> Result<RoleConditions, E> {
                Ok(RoleConditions::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RoleConditions, A::Error> {
                let mut out = RoleConditions::default();
                let mut seen = BTreeSet::new();
                while let Some(ScalarString(key)) = map.next_key()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    match key.as_str() {
                        "logins" => {
                            let logins: Option<OneOrMany<Login>> = map.next_value()?;
                            out.logins = logins
                                .map(|l| l.0.into_iter().map(|l| l.0).collect())
                                .unwrap_or_default();
                        }
                        "node_labels" => {
                            out.node_labels = map
                                .next_value::<Option<LabelSelector>>()?
                                .unwrap_or_default();
                        }
                        "node_labels_expression" => {
                            out.node_labels_expression = map
                                .next_value::<Option<String>>()?
                                .filter(|e| !e.trim().is_empty());
                        }
                        "rules" => {
                            out.rules = map.next_value::<Option<Vec<Rule>>>()?.unwrap_or_default();
                        }
                        k if teleport::CONDITIONS_REFUSED.contains(&k) => {
                            let value = map.next_value_seed(Refused(k))?;
                            out.teleport_only.insert(key, value);
                        }
                        k if teleport::CONDITIONS_IGNORED.contains(&k) => {
                            let value = map.next_value_seed(Ignored)?;
                            out.teleport_only.insert(key, value);
                        }
                        _ => {
                            return Err(unknown_key(
                                &key,
                                CONDITIONS_SUPPORTED,
                                &[teleport::CONDITIONS_IGNORED, teleport::CONDITIONS_REFUSED],
                            ));
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for RoleConditions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if !self.logins.is_empty() {
            map.serialize_entry("logins", &self.logins)?;
        }
        if !self.node_labels.is_empty() {
            map.serialize_entry("node_labels", &self.node_labels)?;
        }
        if let Some(e) = &self.node_labels_expression {
            map.serialize_entry("node_labels_expression", e)?;
        }
        if !self.rules.is_empty() {
            map.serialize_entry("rules", &self.rules)?;
        }
        for (k, v) in &self.teleport_only {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

const OPTIONS_SUPPORTED: &[&str] = &[
    "max_session_ttl",
    "port_forwarding",
    "ssh_port_forwarding",
    "ssh_file_copy",
    "forward_agent",
    "client_idle_timeout",
    "disconnect_expired_cert",
    "permit_x11_forwarding",
];

/// A duration option where `never`, `0` and an empty value mean "not set".
struct OptDuration(Option<Duration>);

impl<'de> Deserialize<'de> for OptDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = OptDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 30m or 12h, or never")
            }
            fn visit_unit<E: de::Error>(self) -> Result<OptDuration, E> {
                Ok(OptDuration(None))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<OptDuration, E> {
                if v == 0 {
                    return Ok(OptDuration(None));
                }
                Err(E::custom(format_args!(
                    "expected a duration with a unit such as 30s or 12h, got the number {v}"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<OptDuration, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format_args!(
                        "a duration cannot be negative, got {v}"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OptDuration, E> {
                let t = v.trim();
                if t.is_empty() || t.eq_ignore_ascii_case("never") || t == "0" {
                    return Ok(OptDuration(None));
                }
                let d = parse_duration(t).map_err(E::custom)?;
                Ok(OptDuration((!d.is_zero()).then_some(d)))
            }
        }
        d.deserialize_any(V)
    }
}

fn flex(value: Option<FlexBool>) -> Option<bool> {
    value.map(|b| b.0)
}

/// Go-style compact text (`1h30m`), which both humantime and Teleport read back.
fn duration_text(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

impl<'de> Deserialize<'de> for RoleOptions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RoleOptions;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of role options")
            }
            fn visit_unit<E: de::Error>(self) -> Result<RoleOptions, E> {
                Ok(RoleOptions::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RoleOptions, A::Error> {
                let mut out = RoleOptions::default();
                let mut seen = BTreeSet::new();
                while let Some(ScalarString(key)) = map.next_key()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    match key.as_str() {
                        "max_session_ttl" => {
                            out.max_session_ttl = map.next_value::<OptDuration>()?.0
                        }
                        "client_idle_timeout" => {
                            out.client_idle_timeout = map.next_value::<OptDuration>()?.0;
                        }
                        "port_forwarding" => out.port_forwarding = flex(map.next_value()?),
                        "ssh_file_copy" => out.ssh_file_copy = flex(map.next_value()?),
                        "forward_agent" => out.forward_agent = flex(map.next_value()?),
                        "disconnect_expired_cert" => {
                            out.disconnect_expired_cert = flex(map.next_value()?);
                        }
                        "permit_x11_forwarding" => {
                            out.permit_x11_forwarding = flex(map.next_value()?);
                        }
                        "ssh_port_forwarding" => {
                            let raw: Option<RawPortForwarding> = map.next_value()?;
                            out.ssh_port_forwarding = raw.map(|r| SshPortForwarding {
                                local: r.local.and_then(|e| flex(e.enabled)),
                                remote: r.remote.and_then(|e| flex(e.enabled)),
                            });
                        }
                        k if teleport::OPTIONS_REFUSED.contains(&k) => {
                            let value = map.next_value_seed(Refused(k))?;
                            out.teleport_only.insert(key, value);
                        }
                        k if teleport::OPTIONS_IGNORED.contains(&k) => {
                            let value = map.next_value_seed(Ignored)?;
                            out.teleport_only.insert(key, value);
                        }
                        _ => {
                            return Err(unknown_key(
                                &key,
                                OPTIONS_SUPPORTED,
                                &[teleport::OPTIONS_IGNORED, teleport::OPTIONS_REFUSED],
                            ));
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with local and remote")]
struct RawPortForwarding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local: Option<RawEnabled>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remote: Option<RawEnabled>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with enabled")]
struct RawEnabled {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "bool_opt"
    )]
    enabled: Option<FlexBool>,
}

fn bool_opt<S: Serializer>(value: &Option<FlexBool>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(b) => serializer.serialize_bool(b.0),
        None => serializer.serialize_none(),
    }
}

impl Serialize for RoleOptions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(d) = self.max_session_ttl {
            map.serialize_entry("max_session_ttl", &duration_text(d))?;
        }
        let flags = [
            ("port_forwarding", self.port_forwarding),
            ("ssh_file_copy", self.ssh_file_copy),
            ("forward_agent", self.forward_agent),
            ("disconnect_expired_cert", self.disconnect_expired_cert),
            ("permit_x11_forwarding", self.permit_x11_forwarding),
        ];
        for (name, value) in flags {
            if let Some(v) = value {
                map.serialize_entry(name, &v)?;
            }
        }
        if let Some(p) = self.ssh_port_forwarding {
            let enabled = |v: Option<bool>| {
                v.map(|b| RawEnabled {
                    enabled: Some(FlexBool(b)),
                })
            };
            let raw = RawPortForwarding {
                local: enabled(p.local),
                remote: enabled(p.remote),
            };
            map.serialize_entry("ssh_port_forwarding", &raw)?;
        }
        if let Some(d) = self.client_idle_timeout {
            map.serialize_entry("client_idle_timeout", &duration_text(d))?;
        }
        for (k, v) in &self.teleport_only {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// `deserialize_with` for a block that may be written empty (`deny:` with nothing after it).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
