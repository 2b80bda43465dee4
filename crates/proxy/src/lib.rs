//! The Jumpgate proxy (DESIGN.md "Services": proxy): the cluster's one public port.
//!
//! - [`router`]: every connection is TLS; it is routed by its ClientHello (ALPN, SNI)
//!   before any TLS ends: the auth API passes through untouched, the web API is served
//!   here. PROXY protocol headers from a layer-4 load balancer are read first when
//!   configured ([`proxy_protocol`]); the ClientHello is read without being consumed
//!   ([`client_hello`], [`prefixed`]).
//! - [`certs`]: the public certificate, from `https_keypairs` (reloaded when the files
//!   change) or issued by the cluster's CA.
//! - [`tunnel`]: agents' reverse tunnels (HTTP/2 over mutual TLS) and the registry of
//!   which node is reachable through which tunnel.
//! - [`ssh`]: users' SSH connections, authorised from memory and spliced into a stream
//!   through the node's tunnel.
//! - [`service`]: the proxy's lifecycle in a daemon: bind, identity (issued next to auth,
//!   or joined), heartbeats and discovery, serve until cancelled.
//! - [`web`]: `/webapi/` (ping, login, signup, host join), calling the auth API with the
//!   proxy's own identity.
//! - [`websession`]: the web UI's cookie sessions under `/webapi/web/` (kept by auth, so
//!   any proxy serves them) and what the pages ask for with a session's identity.
//! - [`webmfa`]: security keys and passkeys (WebAuthn): the logins with a key and the
//!   session user's own keys, under `/webapi/web/mfa/`.
//! - [`webviews`]: the recordings and the audit log, as the web session's user may see them.
//! - [`terminal`]: the web terminal, a WebSocket that is an SSH session to a node as the
//!   web session's user.
//! - [`web_ui`]: the web UI (`web/`, embedded at build time) at `/web`, with its security
//!   headers.
#![forbid(unsafe_code)]

pub mod certs;
pub mod client_hello;
pub mod idle;
pub mod peer;
pub mod per_source;
pub mod prefixed;
pub mod proxy_protocol;
pub mod router;
pub mod service;
pub mod ssh;
pub mod terminal;
pub mod tunnel;
pub mod web;
pub mod web_ui;
pub mod webadmin;
pub mod webmfa;
pub mod websession;
pub mod websso;
pub mod websso_saml;
pub mod webviews;

pub use certs::{KeypairError, KeypairFiles, PublicCerts, watch_keypairs};
pub use router::{Refusal, Route, Router, RouterSettings, TunnelEndpoint, route};
pub use ssh::SshRouting;
pub use tunnel::{DialError, TunnelInfo, Tunnels};
pub use web::WebApi;
pub use web_ui::WebUi;

/// The ALPN protocols the web API is served with.
pub const WEB_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
