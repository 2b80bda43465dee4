//! The auth service's API (DESIGN.md "Services and ports": auth, gRPC over mutual TLS).
//!
//! - [`proto`]: the messages and the generated client and server, from
//!   `proto/jumpgate/auth/v1/auth.proto`.
//! - [`tls`]: a holder's TLS credentials (certificate, key, trusted CAs) as rustls
//!   configs. Auth servers ask for a client certificate but also let anonymous
//!   callers in, because a joining host has none yet; each call then decides what
//!   the caller's identity (or its absence) may do.
//! - [`server`]: serves the API on a listener, handing every call its [`PeerInfo`].
//! - [`mirror`]: roles, users, nodes and locks kept in memory by proxies and nodes.
//! - [`live`]: the live connections a proxy or node holds, so a lock ends them at once.
//! - [`ssh_route`]: how a user's SSH connection asks the proxy for a node.
//! - [`json`]: [`JsonObject`], for JSON messages that must be objects (the dial line, the
//!   web API's bodies).
//! - [`admin_identity`], [`files`]: the admin identity jctl uses on the auth host; files
//!   written for their owner only.
//! - [`client`]: dials an auth server (directly; through the proxy later) and returns the
//!   typed client.
#![forbid(unsafe_code)]

/// Metadata key auth sets on an `Unavailable` status whose message is meant for the user
/// (an identity provider that does not answer). A proxy words every other `Unavailable` or
/// timeout itself ("auth is unreachable"): those came from the transport, or from auth's
/// backend, whose details (addresses) stay out of the web UI.
pub const UNAVAILABLE_EXPLAINED: &str = "jumpgate-unavailable-explained";

pub mod admin_identity;
pub mod client;
pub mod files;
pub mod forwarded;
pub mod json;
pub mod live;
#[cfg(feature = "mirror")]
pub mod mirror;
#[cfg(feature = "server")]
pub mod server;
pub mod ssh_route;
pub mod tls;
pub mod tunnel;

/// Generated from `proto/jumpgate/auth/v1/auth.proto`.
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_debug_implementations,
    clippy::doc_markdown,
    clippy::default_trait_access
)]
pub mod proto {
    tonic::include_proto!("jumpgate.auth.v1");
}

pub use client::{AuthClient, DialOptions, connect, connect_from};
pub use json::JsonObject;
pub use rustls::{ClientConfig, ServerConfig};
#[cfg(feature = "server")]
pub use server::{PeerInfo, serve};

/// The largest gRPC message either side sends or accepts (a resource document, a key, a
/// page of audit events): 4 MiB.
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
pub use tls::{AUTH_SERVER_NAME, ApiError, PemIdentity, TlsCredentials};
