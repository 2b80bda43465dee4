//! Types shared by every Jumpgate part (see DESIGN.md): the configuration schema of the
//! `jumpgate` daemon, the cluster resources (today: roles) and RBAC evaluation.
//!
//! This crate does no I/O. The binary reads `/etc/jumpgate.yaml` and hands the text to
//! [`Config::from_yaml`], which parses *and* validates it in one step, so that a bad config is
//! refused with a message naming the field before any socket is bound:
//!
//! ```
//! let config = jumpgate_types::Config::from_yaml(
//!     "/etc/jumpgate.yaml",
//!     "version: v3\njumpgate:\n  proxy_server: jumpgate.example.com:443\nssh_service: {}\n",
//! )?;
//! assert!(config.ssh_service.enabled);
//! assert!(!config.auth_service.enabled);
//! # Ok::<(), jumpgate_types::ConfigError>(())
//! ```
//!
//! Resources come the same way, in Teleport's `kind`/`version`/`metadata`/`spec` shape, and
//! an [`AccessChecker`] answers what a user holding some roles may do:
//!
//! ```
//! use std::collections::BTreeMap;
//! use jumpgate_types::{AccessChecker, Role, Traits};
//!
//! let dev = Role::from_yaml("dev.yaml", "
//! kind: role
//! version: v7
//! metadata: {name: dev}
//! spec:
//!   allow:
//!     logins: ['{{internal.logins}}']
//!     node_labels: {env: [dev, staging]}
//!   deny:
//!     logins: [root]
//! ")?;
//! let traits = Traits::from([("logins".to_owned(), vec!["alice".to_owned(), "root".to_owned()])]);
//! let checker = AccessChecker::new([&dev], &traits);
//! let node = BTreeMap::from([("env".to_owned(), "dev".to_owned())]);
//! assert!(checker.check_ssh_access(&node, "alice").is_ok());
//! assert!(checker.check_ssh_access(&node, "root").is_err());
//! # Ok::<(), jumpgate_types::ResourceError>(())
//! ```
//!
//! Hosts' presence records (the heartbeats of nodes and proxies) are typed here too
//! ([`NodePresence`], [`ProxyPresence`]): one type per record, which its writer serialises and
//! every reader parses.
//!
//! `docs/config.md` and `docs/roles.md` are the references for the file formats.
#![forbid(unsafe_code)]

pub mod config;
pub mod connector;
pub mod lock;
pub mod presence;
pub mod rbac;
pub mod resource;
pub mod role;
pub mod text;
pub mod user;

pub use config::{Config, ConfigError, sample_config};
pub use connector::{
    ClaimMapping, ConnectorKind, ConnectorSummary, GithubConnector, OidcConnector, SamlConnector,
};
pub use lock::{Lock, LockSpec, LockSubject, LockTarget, find_lock};
pub use presence::{NodePresence, NodeTunnel, ProxyPresence};
pub use rbac::{AccessChecker, AccessDenied, SessionOptions};
pub use resource::{
    Metadata, Resource, ResourceError, ResourceName, ResourceSpec, ResourceVersion, TimeError,
    locate_field, peek_kind,
};
pub use role::{
    LabelSelector, LabelValue, Role, RoleConditions, RoleOptions, RoleSpec, Rule, Template, Traits,
    UnsupportedEffect, UnsupportedField,
};
pub use user::{UserDocumentError, UserView, held_roles};
