//! The shared test support (`jumpgate-test-support`) bound to the binaries cargo built for
//! these tests: the same helpers under short names, so a test reads
//! `jctl_ok(&data, ...)`, not where the binary is.
#![allow(dead_code)]

pub use jumpgate_test_support::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::LazyLock;

/// The `jumpgate`, `jctl` and `jsh` that cargo built for this test.
pub fn bins() -> &'static Bins {
    static BINS: LazyLock<Bins> = LazyLock::new(|| {
        Bins::new(
            env!("CARGO_BIN_EXE_jumpgate"),
            env!("CARGO_BIN_EXE_jctl"),
            jsh_bin(),
        )
    });
    &BINS
}

/// `jsh`, a package of its own (`crates/jsh`, so it links no server code), next to
/// `jumpgate`. Cargo builds a package's binaries only for that package's own tests, so
/// `test.sh` (the README's test command) runs `cargo build --workspace --bins` first.
pub fn jsh_bin() -> &'static str {
    static JSH: LazyLock<String> = LazyLock::new(|| {
        let path = Path::new(env!("CARGO_BIN_EXE_jumpgate")).with_file_name("jsh");
        assert!(
            path.is_file(),
            "{} is missing: build it with `cargo build -p jsh` (test.sh builds every binary first)",
            path.display()
        );
        path.display().to_string()
    });
    &JSH
}

/// The seed configuration snippets of `crates/types`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../types/tests/fixtures")
}

pub fn jumpgate() -> Command {
    bins().jumpgate()
}

/// [`Bins::run`]: `jumpgate ARGS` to completion.
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    bins().run(args, stdin)
}

/// [`Daemon::start`]: `jumpgate start ARGS`, up (`/healthz`).
pub fn start_daemon(args: &[&str], log: &Path) -> Daemon {
    Daemon::start(bins(), args, log)
}

/// [`Daemon::start_dev`]: `jumpgate start --dev`, its auth API up.
pub fn start_dev_daemon(data: &Path, log: &Path) -> Daemon {
    Daemon::start_dev(bins(), data, log)
}

/// [`Daemon::start_auth_and_proxy`]: the cluster (`edge`) agents and proxies join.
pub fn start_cluster(dir: &Path, data: &Path, proxy_port: u16, log: &str) -> Daemon {
    Daemon::start_auth_and_proxy(bins(), dir, data, proxy_port, log)
}

/// [`Cluster::start`]: a dev cluster in `dir`, its auth and proxy ready.
pub fn start_dev_cluster(dir: &Path) -> Cluster {
    Cluster::start(bins(), dir)
}

pub fn jctl(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    bins().jctl(data, args, stdin)
}

pub fn jctl_ok(data: &Path, args: &[&str]) -> String {
    bins().jctl_ok(data, args)
}

pub fn jctl_ok_stdin(data: &Path, args: &[&str], stdin: &str) -> String {
    bins().jctl_ok_stdin(data, args, stdin)
}

pub fn jsh(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    bins().jsh(home, args, stdin)
}

pub fn jsh_ok(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    bins().jsh_ok(home, args, stdin)
}

pub fn jsh_until(home: &Path, args: &[&str], done: impl FnMut(&Output) -> bool) -> Output {
    bins().jsh_until(home, args, done)
}

pub fn audit_events(data: &Path, event_type: &str) -> Vec<serde_json::Value> {
    bins().audit_events(data, event_type)
}

pub fn new_join_token(data: &Path, args: &[&str]) -> (String, String) {
    bins().new_join_token(data, args)
}
