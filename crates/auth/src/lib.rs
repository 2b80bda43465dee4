//! The Jumpgate auth service (DESIGN.md "Services": auth): the cluster's certificate
//! authorities and state. This first part creates the cluster's identity on the first
//! start and loads it on every later one; the gRPC API, users, roles, tokens, login and
//! join build on it.
#![forbid(unsafe_code)]

pub mod authorities;
pub mod cache;
pub mod ratelimit;
pub mod service;
pub mod tokens;
pub mod users;

pub use authorities::{AuthError, ClusterAuthorities};
pub use cache::{CacheError, CacheStats, StateCache};
pub use tokens::{IssuedToken, JoinError, SignupError, SignupToken, TokenInfo, Tokens};
pub use users::{Enrollment, LoginError, SecondFactor, User, Users};
