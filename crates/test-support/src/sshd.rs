//! A real OpenSSH `sshd` and `ssh`: certificates from Jumpgate checked by the program
//! every agentless server runs.

use crate::bins::Bins;
use crate::process::{Process, system_program, text};
use crate::wait::{free_port, wait_until};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What an [`Sshd`] is started with: files written beforehand and extra settings. It
/// takes certificate logins only (no passwords, no `authorized_keys`).
#[derive(Debug, Clone)]
pub struct SshdConfig {
    /// The host private key.
    pub host_key: PathBuf,
    /// The host certificate sshd presents (`HostCertificate`), if any.
    pub host_cert: Option<PathBuf>,
    /// The user CAs whose certificates it accepts (`TrustedUserCAKeys`).
    pub trusted_user_ca_keys: PathBuf,
    /// More `sshd_config` lines, e.g. `LogLevel VERBOSE\n` for tests that read the log.
    pub extra: String,
}

/// Where an sshd started with [`Sshd::start_for_cluster`] gets its host key.
#[derive(Debug, Clone, Copy)]
pub enum HostKey<'a> {
    /// `jctl auth sign --host HOST [--principals PRINCIPALS]`: a key and a host
    /// certificate from the cluster's host CA, as an admin sets up an agentless server.
    SignedByCluster {
        host: &'a str,
        principals: Option<&'a str>,
    },
    /// A fresh key from `ssh-keygen` and no certificate: a host nobody vouches for.
    Unsigned,
}

/// A real sshd on a free loopback port, killed on drop. Needs root (privilege
/// separation); CI runs the tests as root.
#[derive(Debug)]
pub struct Sshd {
    pub process: Process,
    pub port: u16,
    /// Its `sshd_config` and log. sshd reads its key files at each connection, so a test
    /// may rewrite them (e.g. the user CAs after a rotation).
    pub dir: PathBuf,
}

impl Sshd {
    /// Starts `sshd -D -e` with `config`, its `sshd_config` and `sshd.log` in `dir`;
    /// retried on a fresh port if a parallel test took the one picked.
    pub fn start(dir: &Path, name: &str, config: &SshdConfig) -> Sshd {
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd (run as root)");
        std::fs::create_dir_all(dir).unwrap();
        let host_cert = config
            .host_cert
            .as_ref()
            .map(|cert| format!("HostCertificate {}\n", cert.display()))
            .unwrap_or_default();
        let sshd = system_program(&["/usr/sbin/sshd", "/usr/bin/sshd"], "openssh-server");
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let settings = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\n{host_cert}\
                 TrustedUserCAKeys {}\nAuthorizedKeysFile none\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nPidFile none\n{}",
                config.host_key.display(),
                config.trusted_user_ca_keys.display(),
                config.extra
            );
            let config_path = dir.join("sshd_config");
            std::fs::write(&config_path, settings).unwrap();
            let mut process = Process::spawn(
                Command::new(&sshd)
                    .args(["-D", "-e", "-f"])
                    .arg(&config_path),
                name,
                &dir.join("sshd.log"),
            );
            let up = wait_until(Duration::from_secs(10), || {
                process.has_exited() || TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if up && !process.has_exited() {
                return Sshd {
                    process,
                    port,
                    dir: dir.to_path_buf(),
                };
            }
            last_log = process.log_tail();
            eprintln!("{name} did not start on {port}, trying another port:\n{last_log}");
        }
        panic!("{name} did not start; last log:\n{last_log}");
    }

    /// An sshd set up only from what `jctl` writes for the cluster in `data`: the host
    /// key as `host_key` says, `TrustedUserCAKeys` from `jctl auth export --type user`.
    pub fn start_for_cluster(
        bins: &Bins,
        data: &Path,
        dir: &Path,
        host_key: HostKey<'_>,
        extra: &str,
    ) -> Sshd {
        std::fs::create_dir_all(dir).unwrap();
        let key = dir.join("host_key");
        let host_cert = match host_key {
            HostKey::SignedByCluster { host, principals } => {
                let mut args = vec!["auth", "sign", "--host", host];
                if let Some(principals) = principals {
                    args.extend(["--principals", principals]);
                }
                args.extend(["--out", key.to_str().expect("UTF-8 path")]);
                bins.jctl_ok(data, &args);
                Some(dir.join("host_key-cert.pub"))
            }
            HostKey::Unsigned => {
                let out = Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(&key)
                    .output()
                    .expect("ssh-keygen (Debian's openssh-client)");
                assert!(out.status.success(), "{}", text(&out.stderr));
                None
            }
        };
        let user_ca = dir.join("user_ca.pub");
        std::fs::write(
            &user_ca,
            bins.jctl_ok(data, &["auth", "export", "--type", "user"]),
        )
        .unwrap();
        let config = SshdConfig {
            host_key: key,
            host_cert,
            trusted_user_ca_keys: user_ca,
            extra: extra.to_string(),
        };
        Sshd::start(dir, "sshd", &config)
    }

    /// Its log so far (`-e`: everything it would send to syslog).
    pub fn log(&self) -> String {
        self.process.log_text()
    }
}

/// How [`openssh_to`] checks the server's host key.
#[derive(Debug, Clone, Copy)]
pub enum KnownHosts<'a> {
    /// Only hosts this file vouches for (e.g. a `@cert-authority` line):
    /// `StrictHostKeyChecking=yes`.
    Strict(&'a Path),
    /// Any host key, remembered in this file: the test is about the user's side.
    AcceptAny(&'a Path),
}

/// OpenSSH `ssh` to `login@127.0.0.1` on `port` with only `key` and its certificate
/// `cert`: no config file, no agent, no prompts, publickey only. Add the remote command.
pub fn openssh_to(
    port: u16,
    login: &str,
    key: &Path,
    cert: &Path,
    known_hosts: KnownHosts<'_>,
) -> Command {
    let (strict, file) = match known_hosts {
        KnownHosts::Strict(file) => ("yes", file),
        KnownHosts::AcceptAny(file) => ("no", file),
    };
    let mut command = Command::new("ssh");
    command
        .args(["-F", "/dev/null", "-T", "-i"])
        .arg(key)
        .arg("-o")
        .arg(format!("CertificateFile={}", cert.display()))
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
        .args(["-o", &format!("StrictHostKeyChecking={strict}")])
        .args(["-o", "PreferredAuthentications=publickey"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", file.display()))
        .args(["-o", "ConnectTimeout=10", "-p", &port.to_string()])
        .arg(format!("{login}@127.0.0.1"))
        .stdin(Stdio::null());
    command
}

/// The name of the user the tests run as (a login sshd accepts for it).
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    text(&out.stdout).trim().to_string()
}

/// The login that timings use: a user of its own with a stock home (`/etc/skel`), so the
/// remote shell's start is the system's, not whatever root's `~/.bashrc` runs on this
/// machine. Bash reads `~/.bashrc` even for `bash -c` when it runs under SSH (Debian
/// builds it so); here root's runs `pyenv init`, 100 to 300 ms that would swamp what a
/// timing means to compare.
pub const TIMING_LOGIN: &str = "jgbench";

/// Creates [`TIMING_LOGIN`] (a home from `/etc/skel`, bash) unless it exists, and returns
/// its name. Its password field is `*` (no password) rather than useradd's `!` (locked),
/// which sshd without PAM refuses even for a certificate login. Safe to call from tests
/// running at once: a concurrent creation counts as success.
pub fn ensure_timing_login() -> &'static str {
    let exists = || {
        Command::new("id")
            .arg(TIMING_LOGIN)
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if !exists() {
        let out = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/bash", TIMING_LOGIN])
            .output()
            .expect("useradd (the passwd package) for the timing login");
        assert!(
            out.status.success() || exists(),
            "useradd {TIMING_LOGIN}: {}",
            text(&out.stderr)
        );
    }
    let out = Command::new("usermod")
        .args(["--password", "*", TIMING_LOGIN])
        .output()
        .expect("usermod (the passwd package) for the timing login");
    assert!(out.status.success(), "usermod: {}", text(&out.stderr));
    TIMING_LOGIN
}
