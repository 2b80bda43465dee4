//! RBAC evaluation: what a user with a set of roles and traits may do.
//!
//! An [`AccessChecker`] is built once per user identity (at login, or when a connection
//! arrives with a certificate naming the roles): templates are expanded against the user's
//! traits and selectors resolved then, so each check is a few map lookups with no parsing and
//! no I/O. The rules, Teleport's:
//!
//! - **Nothing is allowed by default**: no roles, no access.
//! - **Deny beats allow**, and deny is greedy: a deny block whose `node_labels` match the node
//!   refuses every login there; a login listed in a deny block is refused on every node,
//!   whatever that block's `node_labels` say.
//! - **Allow is precise**: a login is allowed on a node when one role's allow block matches
//!   the node's labels *and* lists that login. Two roles do not combine (one's labels with the
//!   other's logins).
//! - Admin rules: deny rules first, then allow; `*` matches any resource or verb. A rule's
//!   `where` ([`Predicate`]) narrows it to the resources it is true for: an allow grants only
//!   there, a deny refuses only there. Where the condition cannot be decided (it reads a
//!   resource that was not described), an allow grants nothing and a deny applies.
//! - Options merge the strictest way; the session TTL is capped by the smallest
//!   `max_session_ttl`.
//!
//! Role expiry (`metadata.expires`) is the caller's business: pass only live roles (this crate
//! reads no clock).

mod predicate;
#[cfg(test)]
mod tests;

pub use predicate::{
    EventFacts, FIELDS, MAX_PREDICATE_DEPTH, MAX_PREDICATE_LEN, Namespace, Predicate,
    PredicateError, ResourceFacts, SessionFacts,
};

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::role::{
    DEFAULT_MAX_SESSION_TTL, NodeMatcher, Role, RoleConditions, Rule, Traits, is_valid_login,
};
use predicate::{Truth, UserFacts};

/// A user's permissions, from their roles and traits. Cheap to query; build one per identity.
#[derive(Debug, Clone)]
pub struct AccessChecker {
    roles: Vec<CheckedRole>,
    options: SessionOptions,
    max_session_ttl: Duration,
    /// What `where` conditions read as `user.*`.
    user: UserFacts,
}

#[derive(Debug, Clone)]
struct CheckedRole {
    name: String,
    allow: CheckedSide,
    deny: CheckedSide,
}

#[derive(Debug, Clone)]
struct CheckedSide {
    logins: BTreeSet<String>,
    nodes: NodeMatcher,
    rules: Vec<Rule>,
}

/// The session permissions a user's roles grant together: what goes into certificate
/// extensions and what nodes enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// TCP port forwarding: only if every role allows it.
    pub port_forwarding: bool,
    /// scp/sftp: only if every role allows it.
    pub ssh_file_copy: bool,
    /// SSH agent forwarding: if any role grants it (as Teleport; off by default).
    pub forward_agent: bool,
    /// X11 forwarding: if any role grants it (as Teleport; off by default).
    pub permit_x11_forwarding: bool,
    /// End sessions when the certificate expires: if any role says so.
    pub disconnect_expired_cert: bool,
    /// Disconnect idle sessions after the smallest timeout any role sets.
    pub client_idle_timeout: Option<Duration>,
}

impl SessionOptions {
    /// Nothing permitted: the options of a user without roles.
    const NONE: SessionOptions = SessionOptions {
        port_forwarding: false,
        ssh_file_copy: false,
        forward_agent: false,
        permit_x11_forwarding: false,
        disconnect_expired_cert: false,
        client_idle_timeout: None,
    };
}

/// Why access was refused. The `Display` text is for audit events and for the user; it names
/// the role that denied, or what no role allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessDenied {
    /// The user has no roles, so nothing is allowed.
    #[error("access denied: the user has no roles")]
    NoRoles,
    /// A role's deny block matches the node.
    #[error("access denied: role `{role}` denies access to nodes with labels {}", show(.labels))]
    NodeDenied {
        /// The denying role.
        role: String,
        /// The node's labels.
        labels: BTreeMap<String, String>,
    },
    /// A role's deny block lists the login.
    #[error("access denied: role `{role}` denies login `{login}`")]
    LoginDenied {
        /// The denying role.
        role: String,
        /// The login asked for.
        login: String,
    },
    /// No role allows this login on a node with these labels.
    #[error("access denied: no role allows login `{login}` on a node with labels {}", show(.labels))]
    NotAllowed {
        /// The login asked for.
        login: String,
        /// The node's labels.
        labels: BTreeMap<String, String>,
    },
    /// A role's deny rules cover this action.
    #[error("access denied: role `{role}` denies `{verb}` on `{resource}`")]
    RuleDenied {
        /// The denying role.
        role: String,
        /// The resource kind.
        resource: String,
        /// The verb.
        verb: String,
    },
    /// No role's allow rules cover this action.
    #[error("access denied: no role allows `{verb}` on `{resource}`")]
    RuleNotAllowed {
        /// The resource kind.
        resource: String,
        /// The verb.
        verb: String,
    },
    /// Allow rules cover this action only on resources their `where` is true for, and it is
    /// not true for this one (or cannot be decided).
    #[error(
        "access denied: no role allows `{verb}` on this `{resource}`; the rules that allow \
         `{verb}` on `{resource}` have `where` conditions it does not meet"
    )]
    RuleConditionNotMet {
        /// The resource kind.
        resource: String,
        /// The verb.
        verb: String,
    },
}

impl AccessDenied {
    /// The role whose deny refused access, if one did (rather than no role allowing it).
    pub fn denying_role(&self) -> Option<&str> {
        match self {
            Self::NodeDenied { role, .. }
            | Self::LoginDenied { role, .. }
            | Self::RuleDenied { role, .. } => Some(role),
            Self::NoRoles
            | Self::NotAllowed { .. }
            | Self::RuleNotAllowed { .. }
            | Self::RuleConditionNotMet { .. } => None,
        }
    }
}

/// `{env=prod, team=db}`, or `{}` for a node without labels.
fn show(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

impl AccessChecker {
    /// Builds the checker for a user holding `roles`, with `traits` for templates. The order
    /// of roles only decides which denying role an error names.
    pub fn new<'a>(roles: impl IntoIterator<Item = &'a Role>, traits: &Traits) -> Self {
        let roles: Vec<&Role> = roles.into_iter().collect();
        let checked: Vec<CheckedRole> = roles
            .iter()
            .map(|role| CheckedRole {
                name: role.name().to_owned(),
                allow: CheckedSide::new(&role.spec.allow, traits, Side::Allow),
                deny: CheckedSide::new(&role.spec.deny, traits, Side::Deny),
            })
            .collect();
        let options = if roles.is_empty() {
            SessionOptions::NONE
        } else {
            // Features on by default are switched off by any role that disables them;
            // features off by default are granted by any role that enables them. This is
            // Teleport's rule, so `access` plus a role granting agent forwarding forwards.
            let all =
                |f: fn(&crate::role::RoleOptions) -> bool| roles.iter().all(|r| f(&r.spec.options));
            let any =
                |f: fn(&crate::role::RoleOptions) -> bool| roles.iter().any(|r| f(&r.spec.options));
            SessionOptions {
                port_forwarding: all(|o| o.port_forwarding()),
                ssh_file_copy: all(|o| o.ssh_file_copy()),
                forward_agent: any(|o| o.forward_agent()),
                permit_x11_forwarding: any(|o| o.permit_x11_forwarding()),
                disconnect_expired_cert: roles
                    .iter()
                    .any(|r| r.spec.options.disconnect_expired_cert()),
                client_idle_timeout: roles
                    .iter()
                    .filter_map(|r| r.spec.options.client_idle_timeout)
                    .min(),
            }
        };
        let max_session_ttl = roles
            .iter()
            .map(|r| r.spec.options.max_session_ttl())
            .min()
            .unwrap_or(DEFAULT_MAX_SESSION_TTL);
        Self {
            user: UserFacts {
                name: None,
                roles: checked.iter().map(|r| r.name.clone()).collect(),
                traits: traits.clone(),
            },
            roles: checked,
            options,
            max_session_ttl,
        }
    }

    /// Names the user, for `user.metadata.name` in `where` conditions. Without it the name is
    /// unknown, and conditions reading it fail closed.
    #[must_use]
    pub fn with_user(mut self, name: impl Into<String>) -> Self {
        self.user.name = Some(name.into());
        self
    }

    /// The names of the user's roles, in the order given.
    pub fn role_names(&self) -> Vec<&str> {
        self.roles.iter().map(|r| r.name.as_str()).collect()
    }

    /// Whether the user may log in as `login` on a node with these labels.
    pub fn check_ssh_access(
        &self,
        node_labels: &BTreeMap<String, String>,
        login: &str,
    ) -> Result<(), AccessDenied> {
        if self.roles.is_empty() {
            return Err(AccessDenied::NoRoles);
        }
        for role in &self.roles {
            if role.deny.nodes.matches(node_labels) {
                return Err(AccessDenied::NodeDenied {
                    role: role.name.clone(),
                    labels: node_labels.clone(),
                });
            }
            if role.deny.logins.contains(login) {
                return Err(AccessDenied::LoginDenied {
                    role: role.name.clone(),
                    login: login.to_owned(),
                });
            }
        }
        let allowed = self
            .roles
            .iter()
            .any(|r| r.allow.nodes.matches(node_labels) && r.allow.logins.contains(login));
        if allowed {
            Ok(())
        } else {
            Err(AccessDenied::NotAllowed {
                login: login.to_owned(),
                labels: node_labels.clone(),
            })
        }
    }

    /// Every login the user may use on a node with these labels (what a node or the proxy
    /// offers, and what [`check_ssh_access`](Self::check_ssh_access) accepts).
    pub fn allowed_logins(&self, node_labels: &BTreeMap<String, String>) -> BTreeSet<String> {
        if self.roles.iter().any(|r| r.deny.nodes.matches(node_labels)) {
            return BTreeSet::new();
        }
        let denied = self.denied_logins();
        self.roles
            .iter()
            .filter(|r| r.allow.nodes.matches(node_labels))
            .flat_map(|r| r.allow.logins.iter())
            .filter(|l| !denied.contains(*l))
            .cloned()
            .collect()
    }

    /// Every login the user may use on some node: the principals of their SSH certificate.
    /// Logins of a role whose allow block selects no node are left out (a principal is
    /// access on an agentless OpenSSH server, where no labels are checked), as is everything
    /// when a deny block matches every node.
    pub fn logins(&self) -> BTreeSet<String> {
        if self.roles.iter().any(|r| r.deny.nodes.is_everything()) {
            return BTreeSet::new();
        }
        let denied = self.denied_logins();
        self.roles
            .iter()
            .filter(|r| !r.allow.nodes.is_nothing())
            .flat_map(|r| r.allow.logins.iter())
            .filter(|l| !denied.contains(*l))
            .cloned()
            .collect()
    }

    fn denied_logins(&self) -> BTreeSet<&String> {
        self.roles
            .iter()
            .flat_map(|r| r.deny.logins.iter())
            .collect()
    }

    /// Whether the user may take admin action `verb` on resources of kind `resource`
    /// (see [`kinds`](crate::role::kinds) and [`verbs`](crate::role::verbs)), knowing nothing
    /// about the particular resource: rules whose `where` reads the resource fail closed (an
    /// allow grants nothing, a deny applies). Conditions on the user alone are decided.
    pub fn check_rule(&self, resource: &str, verb: &str) -> Result<(), AccessDenied> {
        self.check_rule_on(resource, verb, ResourceFacts::Unknown)
    }

    /// Whether the user may take `verb` on this particular resource of kind `resource`,
    /// described by `facts` for the rules' `where` conditions. What the conditions read of a
    /// resource `facts` does not describe is unknown, and fails closed.
    pub fn check_rule_on(
        &self,
        resource: &str,
        verb: &str,
        facts: ResourceFacts<'_>,
    ) -> Result<(), AccessDenied> {
        self.decide_rule(resource, verb, facts, Certainty::Certain)
    }

    /// Whether the user may take `verb` on *some* resource of kind `resource`: the gate of a
    /// list or read call that then checks each resource with
    /// [`check_rule_on`](Self::check_rule_on). Refused only when no resource could be allowed:
    /// a deny applies whatever the resource, or no allow rule covers the action or could be
    /// true.
    pub fn check_rule_for_some(&self, resource: &str, verb: &str) -> Result<(), AccessDenied> {
        self.decide_rule(resource, verb, ResourceFacts::Unknown, Certainty::Possible)
    }

    fn decide_rule(
        &self,
        resource: &str,
        verb: &str,
        facts: ResourceFacts<'_>,
        certainty: Certainty,
    ) -> Result<(), AccessDenied> {
        if self.roles.is_empty() {
            return Err(AccessDenied::NoRoles);
        }
        let truth = |rule: &Rule| match &rule.where_clause {
            None => Truth::True,
            Some(predicate) => predicate.eval(&self.user, facts),
        };
        // An undecided condition counts against the user when a decision is needed, and for
        // them when the question is whether any resource could be allowed.
        let holds = |t: Truth| match (t, certainty) {
            (Truth::True, _) => true,
            (Truth::False, _) => false,
            (Truth::Unknown, Certainty::Certain) => false,
            (Truth::Unknown, Certainty::Possible) => true,
        };
        let denies = |t: Truth| match (t, certainty) {
            (Truth::True, _) => true,
            (Truth::False, _) => false,
            (Truth::Unknown, Certainty::Certain) => true,
            (Truth::Unknown, Certainty::Possible) => false,
        };
        for role in &self.roles {
            let denied = role
                .deny
                .rules
                .iter()
                .any(|r| r.matches(resource, verb) && denies(truth(r)));
            if denied {
                return Err(AccessDenied::RuleDenied {
                    role: role.name.clone(),
                    resource: resource.to_owned(),
                    verb: verb.to_owned(),
                });
            }
        }
        let mut covered = false;
        for role in &self.roles {
            for rule in role
                .allow
                .rules
                .iter()
                .filter(|r| r.matches(resource, verb))
            {
                if holds(truth(rule)) {
                    return Ok(());
                }
                covered = true;
            }
        }
        let (resource, verb) = (resource.to_owned(), verb.to_owned());
        if covered {
            Err(AccessDenied::RuleConditionNotMet { resource, verb })
        } else {
            Err(AccessDenied::RuleNotAllowed { resource, verb })
        }
    }

    /// The longest session (certificate TTL) the roles allow: the smallest `max_session_ttl`.
    pub fn max_session_ttl(&self) -> Duration {
        self.max_session_ttl
    }

    /// The TTL to issue for a requested one: the request capped by
    /// [`max_session_ttl`](Self::max_session_ttl); a zero request means "as long as allowed".
    pub fn adjust_session_ttl(&self, requested: Duration) -> Duration {
        if requested.is_zero() {
            self.max_session_ttl
        } else {
            requested.min(self.max_session_ttl)
        }
    }

    /// The merged session options.
    pub fn options(&self) -> &SessionOptions {
        &self.options
    }
}

/// How [`AccessChecker::decide_rule`] counts a `where` it cannot decide.
#[derive(Clone, Copy)]
enum Certainty {
    /// Is this allowed? Undecided allows do not grant; undecided denies apply.
    Certain,
    /// Could this be allowed for some resource? Undecided allows might; undecided denies
    /// might not apply.
    Possible,
}

#[derive(Clone, Copy)]
enum Side {
    Allow,
    Deny,
}

impl CheckedSide {
    fn new(cond: &RoleConditions, traits: &Traits, side: Side) -> Self {
        let logins = cond
            .logins
            .iter()
            .flat_map(|t| t.expand(traits))
            .filter(|l| is_valid_login(l))
            .collect();
        // An expression Jumpgate cannot evaluate fails closed.
        let nodes = match (cond.node_labels_expression.is_some(), side) {
            (true, Side::Allow) => NodeMatcher::Nothing,
            (true, Side::Deny) => NodeMatcher::Everything,
            (false, _) => cond.node_labels.resolve(traits),
        };
        Self {
            logins,
            nodes,
            rules: cond.rules.clone(),
        }
    }
}
