//! The Jumpgate auth service (DESIGN.md "Services": auth): the cluster's certificate
//! authorities and state.
//!
//! - [`authorities`]: the CAs, created atomically on a cluster's first start.
//! - [`users`], [`tokens`]: local users (argon2id, TOTP, lockout), join and signup tokens.
//! - [`webauthn`]: security keys and passkeys (second factor, passwordless), the policy of
//!   `second_factor`, and the ceremonies' state kept in the backend.
//! - [`cache`]: the watch-fed copy of roles and users that every call's authorisation
//!   reads, so no call waits on the backend.
//! - [`service`]: the gRPC API (`jumpgate_api`), authorised from the caller's TLS identity.
//! - [`lifecycle`]: the auth service in a daemon: started, serving, stopped by its token.
//! - [`local_identity`]: certificates for the services in the auth server's own process.
//! - [`ratelimit`]: per-address limits for login, join and signup.
#![forbid(unsafe_code)]

pub mod authorities;
pub mod cache;
pub mod lifecycle;
pub mod local_identity;
mod names;
pub mod ratelimit;
pub mod service;
pub mod sso;
pub mod tokens;
pub mod users;
pub mod webauthn;

pub use authorities::{AuthError, AuthorityType, ClusterAuthorities, RotationState};
pub use cache::{CacheError, CacheStats, Change, StateCache};
pub use local_identity::{LOCAL_CERT_RENEW_EVERY, LocalIdentity};
pub use tokens::{
    IssuedToken, JoinError, PendingSignup, SignupError, SignupToken, TokenInfo, Tokens,
};
pub use users::{Enrollment, LoginError, SecondFactor, User, Users};
