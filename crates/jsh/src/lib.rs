//! `jsh`: the Jumpgate user tool. [`cli`] parses the arguments; [`jsh_main`] runs each
//! command through `jumpgate_client` (login, listing, dialling through the proxy, SSH,
//! copying, recordings) and prints the result.
//!
//! A library as well as a binary so that `jumpgate-dist` (crates/dist) generates jsh's
//! shell completions and man pages from this very [`cli::JshCli`].
#![forbid(unsafe_code)]

pub mod cli;
mod run;

pub use run::jsh_main;
