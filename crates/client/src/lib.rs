//! The Jumpgate client (DESIGN.md "Programs": `jsh` and `jctl`; "Flows": login and
//! connect): what `jsh` and `jctl` do, as a library, so that tests and later the web
//! terminal share it. The binaries only parse arguments, call this crate and print.
//!
//! - [`admin`]: cluster administration (`jctl`): a typed client of the auth API.
//! - [`profile`]: the user's keys and certificates in `~/.jumpgate` (`JUMPGATE_HOME`).
//! - [`web`] and [`login`]: the proxy's web API; a login makes fresh keys here and gets
//!   certificates for them.
//! - [`nodes`]: the nodes a user may reach (the auth API through the proxy).
//! - [`dial`]: a stream to a node through the proxy (ALPN `jumpgate-ssh`).
//! - [`ssh`]: the SSH session over that stream: host certificate check, certificate
//!   login, commands, shells, port and agent forwarding.
//! - [`scp`]: copying files to and from a node over its `sftp` subsystem (`jsh scp`).
//! - [`mfa`]: the user's own security keys (`jsh mfa ls`, `jsh mfa rm`).
//! - [`recordings`]: session recordings from the auth API (`jsh recordings`, `jsh play`).
//! - [`terminal`]: raw mode and window sizes for interactive sessions.
//! - [`openssh`]: the `ssh_config` block for OpenSSH through `jsh proxy ssh`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod dial;
pub mod error;
pub mod login;
pub mod mfa;
pub mod nodes;
pub mod openssh;
pub mod profile;
pub mod recordings;
pub mod scp;
pub mod ssh;
pub mod sso;
pub mod terminal;
pub mod web;

pub use admin::{AdminClient, AdminError};
pub use dial::{PipelinedDial, dial_node_pipelined};
pub use error::ClientError;
pub use login::{LoginParams, Password, login};
pub use nodes::{LabelFilter, NodeInfo, list_nodes};
pub use profile::{Home, Profile, ProfileMeta};
pub use ssh::{
    ForwardSpec, PtyRequest, SessionEnd, SessionIo, SessionRequest, SshConnection, SshIdentity,
    connect_node, connect_stream, connect_stream_as,
};
pub use web::{Ping, ProxyAddr, WebTrust, ping};
