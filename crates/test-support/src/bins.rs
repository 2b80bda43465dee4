//! The binaries under test and the ways tests and benchmarks run them.

use crate::process::{output_within, run, text};
use crate::wait::wait_until;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Where the `jumpgate`, `jctl` and `jsh` binaries are. Integration tests fill it from
/// `env!("CARGO_BIN_EXE_...")` (cargo sets those only while compiling the test itself,
/// so this library cannot); the benchmarks use [`Bins::release`].
#[derive(Debug, Clone)]
pub struct Bins {
    pub jumpgate: PathBuf,
    pub jctl: PathBuf,
    pub jsh: PathBuf,
    /// `jctl` and `jsh` run inside this network namespace ([`Bins::in_host`]).
    netns: Option<String>,
}

impl Bins {
    pub fn new(
        jumpgate: impl Into<PathBuf>,
        jctl: impl Into<PathBuf>,
        jsh: impl Into<PathBuf>,
    ) -> Bins {
        Bins {
            jumpgate: jumpgate.into(),
            jctl: jctl.into(),
            jsh: jsh.into(),
            netns: None,
        }
    }

    /// The same binaries, with `jctl` and `jsh` run inside `host` of a
    /// [`Regions`](crate::Regions) fixture (a client in that host's region). Daemons go
    /// there with [`Daemon::start_in`](crate::Daemon::start_in).
    pub fn in_host(&self, host: &crate::Host) -> Bins {
        Bins {
            netns: Some(host.netns().to_string()),
            ..self.clone()
        }
    }

    /// Any other client program (OpenSSH's `ssh`, say), inside this `Bins`' namespace if
    /// it has one, so it reaches the hosts of its region.
    pub fn program(&self, program: impl AsRef<Path>) -> Command {
        self.client(program.as_ref())
    }

    /// A command for `program`, inside this `Bins`' namespace if it has one.
    fn client(&self, program: &Path) -> Command {
        match &self.netns {
            None => Command::new(program),
            Some(netns) => {
                let mut command = Command::new(crate::regions::ip_program());
                command.args(["netns", "exec", netns]).arg(program);
                command
            }
        }
    }

    /// The release binaries in `target/release`, or in the directory `JUMPGATE_BIN_DIR`
    /// names. Fails with what to build when one is missing.
    pub fn release() -> Bins {
        let dir = std::env::var_os("JUMPGATE_BIN_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release"),
            PathBuf::from,
        );
        let binary = |name: &str| {
            let path = dir.join(name);
            assert!(
                path.is_file(),
                "{} is missing: build it first with `cargo build --release -p jumpgate -p jsh` \
                 (or set JUMPGATE_BIN_DIR)",
                path.display()
            );
            // Absolute, so that `jsh config` and child processes name it the same way.
            path.canonicalize().unwrap()
        };
        Bins::new(binary("jumpgate"), binary("jctl"), binary("jsh"))
    }

    pub fn jumpgate(&self) -> Command {
        Command::new(&self.jumpgate)
    }

    /// `jumpgate ARGS` to completion, with optional standard input.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run(self.jumpgate().args(args), stdin)
    }

    /// `jctl --data-dir DATA ARGS` to completion, with optional standard input.
    pub fn jctl(&self, data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        run(
            self.client(&self.jctl)
                .arg("--data-dir")
                .arg(data)
                .args(args),
            stdin,
        )
    }

    /// `jctl` that must succeed; returns stdout.
    pub fn jctl_ok(&self, data: &Path, args: &[&str]) -> String {
        self.checked_jctl(data, args, None)
    }

    /// `jctl` that must succeed, with standard input; returns stdout.
    pub fn jctl_ok_stdin(&self, data: &Path, args: &[&str], stdin: &str) -> String {
        self.checked_jctl(data, args, Some(stdin))
    }

    fn checked_jctl(&self, data: &Path, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.jctl(data, args, stdin);
        assert!(
            out.status.success(),
            "jctl {args:?} failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `jsh` with the profile directory `home` and no SSH agent of the caller's.
    pub fn jsh_command(&self, home: &Path) -> Command {
        let mut command = self.client(&self.jsh);
        command
            .env("JUMPGATE_HOME", home)
            .env_remove("SSH_AUTH_SOCK");
        command
    }

    /// `jsh ARGS` with the profile in `home` and optional standard input (at most 60 s).
    pub fn jsh(&self, home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        output_within(
            self.jsh_command(home).args(args),
            stdin,
            Duration::from_secs(60),
        )
    }

    /// [`Bins::jsh`] that must succeed.
    pub fn jsh_ok(&self, home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let out = self.jsh(home, args, stdin);
        assert!(
            out.status.success(),
            "jsh {args:?} failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    /// Runs `jsh ARGS` until `done` holds for its output, for at most 20 s: a change (a
    /// role, a lock) reaches the proxy and the node a moment after it is made. Returns
    /// the last output.
    pub fn jsh_until(
        &self,
        home: &Path,
        args: &[&str],
        mut done: impl FnMut(&Output) -> bool,
    ) -> Output {
        let mut out = self.jsh(home, args, None);
        wait_until(Duration::from_secs(20), || {
            if done(&out) {
                return true;
            }
            out = self.jsh(home, args, None);
            done(&out)
        });
        out
    }

    /// Every audit event of `event_type`, oldest first (`jctl audit search`).
    pub fn audit_events(&self, data: &Path, event_type: &str) -> Vec<serde_json::Value> {
        let out = self.jctl_ok(
            data,
            &[
                "audit", "search", "--type", event_type, "--limit", "100000", "--format", "json",
            ],
        );
        serde_json::from_str(&out).expect("audit search output is JSON")
    }

    /// `jctl tokens add ARGS --format json`: the token and the active `ca_pin`.
    pub fn new_join_token(&self, data: &Path, args: &[&str]) -> (String, String) {
        let mut full = vec!["tokens", "add"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--format", "json"]);
        let issued: serde_json::Value =
            serde_json::from_str(&self.jctl_ok(data, &full)).expect("tokens add output is JSON");
        let field = |pointer: &str| {
            issued
                .pointer(pointer)
                .and_then(serde_json::Value::as_str)
                .expect("tokens add answers token and ca_pins")
                .to_string()
        };
        (field("/token"), field("/ca_pins/0"))
    }

    /// `jctl users add NAME --roles ROLES --logins LOGINS --password-stdin` with
    /// [`crate::PASSWORD`]; returns the otpauth URI (for [`crate::totp_now`]).
    pub fn add_user(&self, data: &Path, name: &str, roles: &str, logins: &str) -> String {
        let enrolled = self.jctl_ok_stdin(
            data,
            &[
                "users",
                "add",
                name,
                "--roles",
                roles,
                "--logins",
                logins,
                "--password-stdin",
            ],
            &format!("{}\n", crate::PASSWORD),
        );
        enrolled
            .split_whitespace()
            .find(|word| word.starts_with("otpauth://"))
            .unwrap_or_else(|| panic!("users add prints the otpauth URI:\n{enrolled}"))
            .to_string()
    }

    /// `jsh login` through `proxy` as `user` (made with [`Bins::add_user`], whose TOTP
    /// secret is in `otpauth_uri`), trusting the CA in `ca`, into the profile `home`.
    pub fn login(
        &self,
        home: &Path,
        proxy: &str,
        ca: &Path,
        user: &str,
        otpauth_uri: &str,
    ) -> Output {
        self.jsh_ok(
            home,
            &[
                "login",
                "--proxy",
                proxy,
                "--user",
                user,
                "--ca-cert",
                ca.to_str().expect("UTF-8 path"),
                "--password-stdin",
                "--otp",
                &crate::totp_now(otpauth_uri),
            ],
            Some(&format!("{}\n", crate::PASSWORD)),
        )
    }

    /// `jctl auth sign --user USER --ttl TTL --out PATH`: a fresh key at `path` and its
    /// user certificate at `PATH-cert.pub`, as an admin hands a user for plain OpenSSH.
    pub fn sign_user(&self, data: &Path, user: &str, ttl: &str, path: &Path) {
        self.jctl_ok(
            data,
            &[
                "auth",
                "sign",
                "--user",
                user,
                "--ttl",
                ttl,
                "--out",
                path.to_str().expect("UTF-8 path"),
            ],
        );
    }
}
