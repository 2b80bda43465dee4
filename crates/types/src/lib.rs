//! Types shared by every Jumpgate part (see DESIGN.md): today the configuration schema of the
//! `jumpgate` daemon; later the cluster resources (users, roles, nodes, tokens, CAs) and RBAC.
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
//! `docs/config.md` is the reference for every field.
#![forbid(unsafe_code)]

pub mod config;

pub use config::{Config, ConfigError, sample_config};
