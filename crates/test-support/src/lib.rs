//! What Jumpgate's tests and benchmarks share to run real processes and real peers
//! (STYLE.md, "Tests": end-to-end tests start real processes, not mocks).
//!
//! One implementation of each helper, used by the crates' `tests/` and by `bench/`:
//! - [`free_port`], [`wait_until`] / [`wait_for`] / [`eventually`], [`http_get`];
//! - [`Process`]: a child with its output in a log file, stopped when dropped;
//! - [`Bins`]: the `jumpgate`, `jctl` and `jsh` binaries and the ways to run them. A
//!   library cannot name cargo's test binaries (`env!("CARGO_BIN_EXE_jctl")` is only set
//!   when an integration test is compiled), so the caller builds a `Bins`: tests from
//!   `env!`, the benchmarks from `target/release` ([`Bins::release`]);
//! - [`Daemon`] (`jumpgate start`) and [`Cluster`] (a dev cluster with users and logins);
//! - real peers: [`Sshd`] (OpenSSH), [`Haproxy`], [`EtcdServer`], [`Postgres`], [`S3Server`]
//!   (s3s-fs); one emulator, [`DynamoEmulator`] (moto standing in for DynamoDB, which
//!   cannot run here); and one stand-in, [`GithubStandIn`] (GitHub's OAuth web flow and the
//!   REST endpoints an SSO connector reads, written from GitHub's documentation: github.com
//!   cannot be reached from here); and one rogue, [`RogueOidc`] (an OpenID Provider whose ID
//!   tokens carry a chosen [`Defect`], for the OIDC connector's negative tests);
//! - [`Regions`]: regions as network namespaces joined by cables with a real delay, hosts
//!   with their own addresses in them ([`Host`]), partitions;
//! - certificates and codes: [`issue_tls`], `jctl auth sign` ([`Bins::sign_user`]),
//!   [`tls_client_trusting`], [`totp_now`].
//!
//! Everything here fails by panicking with the reason, as a test does.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bins;
mod certs;
mod cluster;
mod daemon;
mod dynamo;
mod etcd;
mod github;
mod haproxy;
mod netcut;
mod postgres;
mod process;
mod regions;
mod rogue_oidc;
mod s3;
mod sshd;
mod wait;

pub use bins::Bins;
pub use certs::{issue_tls, tls_client_trusting, totp_at, totp_now, write_private};
pub use cluster::{Cluster, PASSWORD, dev_node_name};
pub use daemon::Daemon;
pub use dynamo::{
    DynamoEmulator, EMULATOR_ACCESS_KEY_ID, EMULATOR_REGION, EMULATOR_SECRET_ACCESS_KEY,
    LoweredPriority,
};
pub use etcd::{EtcdCluster, EtcdServer};
pub use github::{
    CODE_LIFETIME, GITHUB_DEFAULT_PASSWORD, GithubRequest, GithubStandIn, GithubTeam, GithubUser,
    OauthApp, SUPPORTED_API_VERSIONS,
};
pub use haproxy::{Haproxy, start_haproxy, start_haproxy_in};
pub use netcut::NetCut;
pub use postgres::{PG_DATABASE, PG_PASSWORD, PG_USER, PgTls, Postgres};
pub use process::{Process, output_within, run, run_ok, text};
pub use regions::{Host, Regions};
pub use rogue_oidc::{Defect, RogueOidc, RogueUser};
pub use s3::{S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, S3Server};
pub use sshd::{
    HostKey, KnownHosts, Sshd, SshdConfig, TIMING_LOGIN, current_user, ensure_timing_login,
    openssh_to,
};
pub use wait::{eventually, free_port, http_get, wait_for, wait_until};
