//! SSH connection time and throughput: `jsh ssh` through the proxy and the node's
//! reverse tunnel to this host's Jumpgate SSH service, against OpenSSH in the same run.
//!
//! `cargo build --release -p jumpgate -p jsh`
//! `cargo run --release -p jumpgate-bench --bin bench-ssh -- [--runs N] [--throughput-runs N] [--bytes N] [--append-json FILE]`
//!
//! Defaults: 20 runs per connection-time figure, 3 runs of 1 GiB per throughput figure.
//! Must run as root (two `sshd`s; it creates the login `jgbench` with a stock home if
//! missing). `JUMPGATE_BIN_DIR` overrides where
//! `jumpgate`, `jctl` and `jsh` are (default `target/release`).
//!
//! Everything runs on loopback in a temporary directory, removed at the end, and every
//! process started here is stopped when dropped (also when a step panics):
//! - `jumpgate start --dev` (auth, proxy and this host's SSH service), a user `alice`
//!   (role `access`, login `jgbench`) and `jsh login` into a private `JUMPGATE_HOME`;
//! - a target `sshd` trusting the cluster's user CA (`TrustedUserCAKeys` from `jctl auth
//!   export --type user`) with a host certificate from `jctl auth sign --host`, and a
//!   second `sshd` the same way as the bastion for `ssh -J`; OpenSSH logs in with a
//!   certificate from `jctl auth sign --user` and trusts hosts by the `@cert-authority`
//!   line of `jctl auth export --type host`.
//!
//! Measured, each a median over the runs, the variants interleaved (a different one first
//! in every round) so that load from elsewhere falls on all of them alike:
//! 1. Wall time of one process running `true` remotely: `jsh ssh jgbench@NODE true`; `ssh`
//!    straight to the target (`-o ControlMaster=no -o ControlPath=none -o BatchMode=yes`),
//!    also with `KexAlgorithms=curve25519-sha256` (russh's server has no sntrup761);
//!    `ssh -J bastion` to the target; and `ssh jgbench@NODE.CLUSTER` with the `jsh config`
//!    block (ProxyCommand `jsh proxy ssh`).
//! 2. Throughput: `head -c BYTES /dev/zero` remotely, standard output to /dev/null here,
//!    and uploads of a BYTES file with `jsh scp` / `scp`, for jsh, direct, -J and OpenSSH
//!    via `jsh proxy ssh`, every OpenSSH variant with jsh's cipher (`Ciphers
//!    aes256-gcm@openssh.com` in its config), and direct once more with OpenSSH's default
//!    `chacha20-poly1305@openssh.com`; the time includes connecting.
//!    With each run, the CPU seconds it cost: the client processes (this process's reaped
//!    children) and the servers (the daemon and both sshds with their reaped children).
//! 3. Where the time goes, measured from outside the product: an in-process client built on
//!    the same libraries as `jsh` (rustls via `jumpgate_api`, the `jumpgate_api::ssh_route`
//!    dial, russh with jsh's settings) times each phase: loading the profile, TCP, TLS, the
//!    dial request, SSH key exchange, certificate login, `exec true`; and the same russh
//!    client straight to the target sshd. Also: a fresh process's first random number
//!    (aws-lc seeds its generator from CPU jitter), `jsh status` (process start and profile,
//!    no network), and the remote shell's own start (`bash -c true` as an SSH server runs
//!    it, which reads `~/.bashrc`), which every variant pays.
//!
//! The negotiated algorithms are read from `ssh -v` and `jsh --debug` and printed.
// A benchmark harness fails by panicking with the reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_api::ssh_route::{ALPN_SSH, DialRequest, DialResponse, read_line, to_line};
use jumpgate_api::tunnel::PROXY_SERVER_NAME;
use jumpgate_bench::procs::{
    LOGIN, add_user_and_login, clock_ticks, cpu_seconds, ensure_login_user,
};
use jumpgate_bench::{append_line, git_commit, load_average, median, ms, ms_or_dash};
use jumpgate_client::Home;
use jumpgate_pki::ssh_key::Fingerprint;
use jumpgate_test_support::{Bins, Cluster, HostKey, Process, Sshd, run_ok, text, wait_for};
use russh::keys::{Algorithm, EcdsaCurve, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use rustls::pki_types::ServerName;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The cipher every OpenSSH variant is configured with (`Ciphers` in its config): the one
/// jsh negotiates with the Jumpgate node, for a like-for-like throughput comparison.
const SAME_CIPHER: &str = "aes256-gcm@openssh.com";
/// OpenSSH's own first choice, for the one variant that keeps it.
const CHACHA20: &str = "chacha20-poly1305@openssh.com";
/// Where uploads go on the node (tmpfs, so the disk is not what is measured).
const UPLOAD_TARGET: &str = "/dev/shm/jumpgate-bench-upload";
const GIB: u64 = 1 << 30;
/// The hidden argument of a child run of this binary that times its first random number.
const FIRST_RANDOM: &str = "--first-random";
/// How long the servers get to shut down at the end before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

struct Options {
    runs: usize,
    throughput_runs: usize,
    bytes: u64,
    append_json: Option<PathBuf>,
}

impl Options {
    fn parse() -> Options {
        let mut options = Options {
            runs: 20,
            throughput_runs: 3,
            bytes: GIB,
            append_json: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .unwrap_or_else(|| panic!("{name} needs a value"))
            };
            match arg.as_str() {
                "--runs" => options.runs = value("--runs").parse().expect("--runs N"),
                "--throughput-runs" => {
                    options.throughput_runs = value("--throughput-runs")
                        .parse()
                        .expect("--throughput-runs N");
                }
                "--bytes" => options.bytes = value("--bytes").parse().expect("--bytes N"),
                "--append-json" => options.append_json = Some(value("--append-json").into()),
                other => panic!(
                    "unknown argument {other:?}; usage: ssh [--runs N] [--throughput-runs N] \
                     [--bytes N] [--append-json FILE]"
                ),
            }
        }
        assert!(options.runs > 0 && options.throughput_runs > 0 && options.bytes > 0);
        options
    }
}

/// A user's home directory and shell, from /etc/passwd.
fn home_and_shell(user: &str) -> (String, String) {
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() == 7 && fields[0] == user)
                .then(|| (fields[5].to_string(), fields[6].to_string()))
        })
        .unwrap_or_else(|| panic!("{user} is not in /etc/passwd"))
}

/// An OpenSSH `sshd` on a free loopback port, configured only from jctl's output: a host
/// key and certificate (principal 127.0.0.1) and the cluster's user CA.
fn start_sshd(bins: &Bins, data: &Path, dir: &Path, name: &str) -> (Process, u16) {
    let host_key = HostKey::SignedByCluster {
        host: name,
        principals: Some("127.0.0.1"),
    };
    let sftp = "Subsystem sftp /usr/lib/openssh/sftp-server\n";
    let mut sshd = Sshd::start_for_cluster(bins, data, &dir.join(name), host_key, sftp);
    sshd.process.name = format!("sshd {name}");
    (sshd.process.stop_gracefully_on_drop(STOP_GRACE), sshd.port)
}

/// Everything the variants need, started once.
struct Setup {
    bins: Bins,
    /// The temporary directory everything lives in.
    dir: PathBuf,
    home: PathBuf,
    node: String,
    cluster: String,
    proxy: String,
    /// `jsh config`'s block.
    jsh_config: PathBuf,
    /// Key, certificate and known hosts for OpenSSH to the two sshds.
    openssh_config: PathBuf,
    target_port: u16,
    bastion_port: u16,
    servers: Vec<Process>,
}

impl Setup {
    /// CPU seconds so far of the daemon and both sshds, with their reaped children (the
    /// remote commands, sshd's per-connection processes).
    fn server_cpu(&self, ticks: f64) -> f64 {
        self.servers
            .iter()
            .map(|server| cpu_seconds(&server.id().to_string(), ticks))
            .sum()
    }
}

impl Setup {
    fn start(bins: Bins, dir: &Path) -> Setup {
        let data = dir.join("data");
        let cluster = Cluster::start_at(&bins, &data, &data.with_extension("log"));
        let proxy = cluster.proxy;
        let daemon = cluster.daemon.process.stop_gracefully_on_drop(STOP_GRACE);

        let home = dir.join("jsh-home");
        add_user_and_login(&bins, &data, "alice", &proxy, &home);
        let profile: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(home.join("profile.json")).unwrap())
                .unwrap();
        let cluster = profile["cluster"].as_str().unwrap().to_string();
        let node = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
            .to_string();

        let mut config = Command::new(&bins.jsh);
        config.env("JUMPGATE_HOME", &home).arg("config");
        let jsh_config = dir.join("jsh_ssh_config");
        // The same cipher as jsh for every OpenSSH variant (`Host *` first: the first
        // value found wins), so that throughput compares like with like.
        std::fs::write(
            &jsh_config,
            format!(
                "Host *\n  Ciphers {SAME_CIPHER}\n\n{}",
                run_ok(&mut config, None)
            ),
        )
        .unwrap();

        // OpenSSH's side: the user's certificate and the host CA.
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let key = keys.join("alice");
        bins.sign_user(&data, "alice", "4h", &key);
        let known_hosts = dir.join("known_hosts");
        std::fs::write(
            &known_hosts,
            bins.jctl_ok(&data, &["auth", "export", "--type", "host"]),
        )
        .unwrap();
        let (target, target_port) = start_sshd(&bins, &data, dir, "target");
        let (bastion, bastion_port) = start_sshd(&bins, &data, dir, "bastion");
        // `Host *` so that the jump host's own `ssh -W` (which gets `-F` but not `-o`)
        // uses the same settings.
        let openssh_config = dir.join("openssh_config");
        std::fs::write(
            &openssh_config,
            format!(
                "Host *\n  User {LOGIN}\n  IdentityFile {key}\n  CertificateFile {key}-cert.pub\n  \
                 IdentitiesOnly yes\n  PreferredAuthentications publickey\n  \
                 Ciphers {SAME_CIPHER}\n  \
                 UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n  \
                 StrictHostKeyChecking yes\n  BatchMode yes\n  ControlMaster no\n  \
                 ControlPath none\n",
                key = key.display(),
                known_hosts = known_hosts.display(),
            ),
        )
        .unwrap();

        let mut setup = Setup {
            bins,
            dir: dir.to_path_buf(),
            home,
            node,
            cluster,
            proxy,
            jsh_config,
            openssh_config,
            target_port,
            bastion_port,
            servers: vec![daemon, target, bastion],
        };
        // The node registers and its tunnel comes up a moment after the banner.
        wait_for("jsh ssh to this host", Duration::from_secs(30), || {
            for server in &mut setup.servers {
                server.check_alive();
            }
            Variant::Jsh
                .command(&setup, "true", false)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
        });
        setup
    }

    fn jsh(&self) -> Command {
        let mut command = Command::new(&self.bins.jsh);
        command.env("JUMPGATE_HOME", &self.home);
        command
    }

    fn ssh(&self, config: &Path, verbose: bool) -> Command {
        let mut command = Command::new("ssh");
        if verbose {
            command.arg("-v");
        }
        command.arg("-F").arg(config).args([
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            "-o",
            "BatchMode=yes",
        ]);
        command
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Jsh,
    Direct,
    DirectCurve25519,
    DirectChacha20,
    Jump,
    OpensshViaJsh,
}

const CONNECT_VARIANTS: [Variant; 5] = [
    Variant::Jsh,
    Variant::Direct,
    Variant::DirectCurve25519,
    Variant::Jump,
    Variant::OpensshViaJsh,
];
const THROUGHPUT_VARIANTS: [Variant; 5] = [
    Variant::Jsh,
    Variant::Direct,
    Variant::DirectChacha20,
    Variant::Jump,
    Variant::OpensshViaJsh,
];

impl Variant {
    fn key(self) -> &'static str {
        match self {
            Variant::Jsh => "jsh",
            Variant::Direct => "openssh_direct",
            Variant::DirectCurve25519 => "openssh_direct_curve25519",
            Variant::DirectChacha20 => "openssh_direct_chacha20",
            Variant::Jump => "openssh_jump",
            Variant::OpensshViaJsh => "openssh_via_jsh_proxy",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::Jsh => "jsh ssh (proxy + reverse tunnel + Jumpgate node)",
            Variant::Direct => "OpenSSH ssh straight to sshd (certificate)",
            Variant::DirectCurve25519 => "  same, -o KexAlgorithms=curve25519-sha256",
            Variant::DirectChacha20 => "  same, -c chacha20-poly1305 (OpenSSH's default)",
            Variant::Jump => "OpenSSH ssh -J bastion sshd to target sshd",
            Variant::OpensshViaJsh => "OpenSSH ssh via `jsh proxy ssh` (jsh config)",
        }
    }

    /// The command line, with the temporary paths shortened, for the record.
    fn shown(self, setup: &Setup, remote: &str) -> String {
        let (t, b) = (setup.target_port, setup.bastion_port);
        let o = "-o ControlMaster=no -o ControlPath=none -o BatchMode=yes";
        match self {
            Variant::Jsh => format!("jsh ssh {LOGIN}@{} {remote}", setup.node),
            Variant::Direct => {
                format!("ssh -F openssh_config {o} -p {t} {LOGIN}@127.0.0.1 {remote}")
            }
            Variant::DirectCurve25519 => format!(
                "ssh -F openssh_config {o} -o KexAlgorithms=curve25519-sha256 -p {t} {LOGIN}@127.0.0.1 {remote}"
            ),
            Variant::DirectChacha20 => {
                format!("ssh -F openssh_config {o} -c {CHACHA20} -p {t} {LOGIN}@127.0.0.1 {remote}")
            }
            Variant::Jump => format!(
                "ssh -F openssh_config {o} -J {LOGIN}@127.0.0.1:{b} -p {t} {LOGIN}@127.0.0.1 {remote}"
            ),
            Variant::OpensshViaJsh => format!(
                "ssh -F jsh_ssh_config {o} {LOGIN}@{}.{} {remote}",
                setup.node, setup.cluster
            ),
        }
    }

    fn command(self, setup: &Setup, remote: &str, verbose: bool) -> Command {
        match self {
            Variant::Jsh => {
                let mut command = setup.jsh();
                if verbose {
                    command.arg("--debug");
                }
                command
                    .arg("ssh")
                    .arg(format!("{LOGIN}@{}", setup.node))
                    .arg(remote);
                command
            }
            Variant::Direct | Variant::DirectCurve25519 | Variant::DirectChacha20 => {
                let mut command = setup.ssh(&setup.openssh_config, verbose);
                if self == Variant::DirectCurve25519 {
                    command.args(["-o", "KexAlgorithms=curve25519-sha256"]);
                }
                if self == Variant::DirectChacha20 {
                    command.args(["-c", CHACHA20]);
                }
                command
                    .args(["-p", &setup.target_port.to_string()])
                    .arg(format!("{LOGIN}@127.0.0.1"))
                    .arg(remote);
                command
            }
            Variant::Jump => {
                let mut command = setup.ssh(&setup.openssh_config, verbose);
                command
                    .arg("-J")
                    .arg(format!("{LOGIN}@127.0.0.1:{}", setup.bastion_port))
                    .args(["-p", &setup.target_port.to_string()])
                    .arg(format!("{LOGIN}@127.0.0.1"))
                    .arg(remote);
                command
            }
            Variant::OpensshViaJsh => {
                let mut command = setup.ssh(&setup.jsh_config, verbose);
                command
                    .arg(format!("{LOGIN}@{}.{}", setup.node, setup.cluster))
                    .arg(remote);
                command
            }
        }
    }

    /// Copies the local `file` to `target` on the server with `jsh scp` or OpenSSH's `scp`
    /// (SFTP, as every scp since OpenSSH 9.0).
    fn upload(self, setup: &Setup, file: &Path, target: &str) -> Command {
        let o = [
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            "-o",
            "BatchMode=yes",
        ];
        let mut command;
        match self {
            Variant::Jsh => {
                command = setup.jsh();
                command
                    .args(["scp", "-q"])
                    .arg(file)
                    .arg(format!("{LOGIN}@{}:{target}", setup.node));
            }
            Variant::Direct
            | Variant::DirectCurve25519
            | Variant::DirectChacha20
            | Variant::Jump => {
                command = Command::new("scp");
                command
                    .arg("-q")
                    .arg("-F")
                    .arg(&setup.openssh_config)
                    .args(o);
                if self == Variant::DirectCurve25519 {
                    command.args(["-o", "KexAlgorithms=curve25519-sha256"]);
                }
                if self == Variant::DirectChacha20 {
                    command.args(["-c", CHACHA20]);
                }
                if self == Variant::Jump {
                    command
                        .arg("-J")
                        .arg(format!("{LOGIN}@127.0.0.1:{}", setup.bastion_port));
                }
                command
                    .args(["-P", &setup.target_port.to_string()])
                    .arg(file)
                    .arg(format!("{LOGIN}@127.0.0.1:{target}"));
            }
            Variant::OpensshViaJsh => {
                command = Command::new("scp");
                command
                    .arg("-q")
                    .arg("-F")
                    .arg(&setup.jsh_config)
                    .args(o)
                    .arg(file)
                    .arg(format!("{LOGIN}@{}.{}:{target}", setup.node, setup.cluster));
            }
        }
        command
    }

    /// The upload command line, with the temporary paths shortened, for the record.
    fn shown_upload(self, setup: &Setup) -> String {
        let (t, b) = (setup.target_port, setup.bastion_port);
        let o = "-o ControlMaster=no -o ControlPath=none -o BatchMode=yes";
        match self {
            Variant::Jsh => format!("jsh scp -q FILE {LOGIN}@{}:{UPLOAD_TARGET}", setup.node),
            Variant::Direct | Variant::DirectCurve25519 => {
                format!(
                    "scp -q -F openssh_config {o} -P {t} FILE {LOGIN}@127.0.0.1:{UPLOAD_TARGET}"
                )
            }
            Variant::DirectChacha20 => format!(
                "scp -q -F openssh_config {o} -c {CHACHA20} -P {t} FILE {LOGIN}@127.0.0.1:{UPLOAD_TARGET}"
            ),
            Variant::Jump => format!(
                "scp -q -F openssh_config {o} -J {LOGIN}@127.0.0.1:{b} -P {t} FILE {LOGIN}@127.0.0.1:{UPLOAD_TARGET}"
            ),
            Variant::OpensshViaJsh => format!(
                "scp -q -F jsh_ssh_config {o} FILE {LOGIN}@{}.{}:{UPLOAD_TARGET}",
                setup.node, setup.cluster
            ),
        }
    }

    /// Wall time of one upload; it must succeed.
    fn time_upload(self, setup: &Setup, file: &Path) -> Duration {
        let mut command = self.upload(setup, file, UPLOAD_TARGET);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let out = command.output().unwrap();
        let elapsed = started.elapsed();
        assert!(
            out.status.success(),
            "{} failed ({}): {}",
            self.shown_upload(setup),
            out.status,
            text(&out.stderr)
        );
        elapsed
    }

    /// Wall time of one run, standard output to /dev/null; the run must succeed.
    fn time(self, setup: &Setup, remote: &str) -> Duration {
        let mut command = self.command(setup, remote, false);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let out = command.output().unwrap();
        let elapsed = started.elapsed();
        assert!(
            out.status.success(),
            "{} failed ({}): {}",
            self.shown(setup, remote),
            out.status,
            text(&out.stderr)
        );
        elapsed
    }

    /// The algorithms negotiated (from `ssh -v`, or russh's debug log through `jsh --debug`).
    fn negotiated(self, setup: &Setup) -> String {
        let out = self
            .command(setup, "true", true)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let log = strip_ansi(&text(&out.stderr));
        if self == Variant::Jsh {
            let field = |name: &str| {
                log.split(&format!("{name}: Name(\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or("?")
                    .to_string()
            };
            let tls = log
                .split("Using ciphersuite ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("?");
            return format!(
                "SSH (russh to russh): kex {}, cipher {}; TLS to the proxy {tls}",
                field("kex"),
                field("cipher")
            );
        }
        // One kex per SSH connection: with -J the bastion's comes first, then the target's.
        let mut hops = Vec::new();
        let mut kex = String::new();
        for line in log.lines() {
            if let Some(rest) = line.split("kex: algorithm: ").nth(1) {
                kex = rest.trim().to_string();
            }
            if let Some(rest) = line.split("kex: server->client cipher: ").nth(1) {
                let cipher = rest.split_whitespace().next().unwrap_or("?");
                hops.push(format!("kex {kex}, cipher {cipher}"));
            }
        }
        hops.join(" | ")
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// russh client callbacks as jsh has them for the part measured: the host certificate
/// must pass `verify_host_cert` against the profile's host CAs.
struct BenchHandler {
    trusted: Vec<Fingerprint>,
    principal: String,
}

impl russh::client::Handler for BenchHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, russh::Error> {
        match server_key {
            PublicKeyOrCertificate::Certificate(cert) => Ok(jumpgate_pki::verify_host_cert(
                cert,
                &self.trusted,
                &self.principal,
                SystemTime::now(),
            )
            .is_ok()),
            PublicKeyOrCertificate::PublicKey { .. } => Ok(false),
        }
    }
}

/// jsh's russh settings (`jumpgate_client::ssh`): host certificates only, no delay.
fn russh_config() -> Arc<russh::client::Config> {
    let mut config = russh::client::Config {
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        ..russh::client::Config::default()
    };
    config.preferred.host_key_certificates = Cow::Borrowed(&[
        Algorithm::Ed25519,
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
    ]);
    Arc::new(config)
}

/// Phases of one in-process connection; `None` for what a route does not have.
#[derive(Default, Clone)]
struct Phases {
    profile: Option<Duration>,
    tcp: Duration,
    tls: Option<Duration>,
    dial: Option<Duration>,
    kex: Duration,
    auth: Duration,
    exec: Duration,
    total: Duration,
}

struct Loaded {
    tls: Arc<rustls::ClientConfig>,
    trusted: Vec<Fingerprint>,
    key: jumpgate_pki::ssh_key::PrivateKey,
    cert: jumpgate_pki::ssh_key::Certificate,
}

/// What `jsh` reads before it connects: profile, TLS credentials, SSH key, host CAs.
fn load(home: &Path) -> Loaded {
    let profile = Home::new(home).load().unwrap();
    let tls = profile
        .tls_credentials()
        .unwrap()
        .client_config_for(jumpgate_api::tls::IdentityKind::Proxy, &[ALPN_SSH])
        .unwrap();
    let trusted = profile.host_ca_fingerprints().unwrap();
    let (key, cert) = profile.ssh_identity().unwrap();
    Loaded {
        tls,
        trusted,
        key,
        cert,
    }
}

/// SSH over `stream`: key exchange, certificate login, `exec true` to its exit status.
async fn ssh_phases<S>(loaded: Loaded, stream: S, principal: &str, phases: &mut Phases)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let handler = BenchHandler {
        trusted: loaded.trusted,
        principal: principal.to_string(),
    };
    let started = Instant::now();
    let mut handle = russh::client::connect_stream(russh_config(), stream, handler)
        .await
        .expect("SSH key exchange (or the host certificate) failed");
    phases.kex = started.elapsed();
    let started = Instant::now();
    let auth = handle
        .authenticate_openssh_cert(LOGIN, Arc::new(loaded.key), loaded.cert)
        .await
        .unwrap();
    assert!(auth.success(), "the certificate login was refused");
    phases.auth = started.elapsed();
    let started = Instant::now();
    let mut channel = handle.channel_open_session().await.unwrap();
    channel.exec(true, "true").await.unwrap();
    let mut status = None;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    assert_eq!(status, Some(0), "`true` did not exit 0");
    phases.exec = started.elapsed();
    let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
}

/// The jsh route, phase by phase: as `jumpgate_client::dial_node` and `connect` do it.
async fn via_proxy(setup: &Setup) -> Phases {
    let mut phases = Phases::default();
    let all = Instant::now();
    let loaded = load(&setup.home);
    phases.profile = Some(all.elapsed());
    let started = Instant::now();
    let tcp = TcpStream::connect(&setup.proxy).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    phases.tcp = started.elapsed();
    let started = Instant::now();
    let mut stream = TlsConnector::from(loaded.tls.clone())
        .connect(ServerName::try_from(PROXY_SERVER_NAME).unwrap(), tcp)
        .await
        .unwrap();
    phases.tls = Some(started.elapsed());
    let started = Instant::now();
    let request = DialRequest {
        node: setup.node.clone(),
        login: LOGIN.to_string(),
    };
    stream.write_all(&to_line(&request)).await.unwrap();
    stream.flush().await.unwrap();
    let response: DialResponse = read_line(&mut stream).await.unwrap();
    assert!(response.ok, "dial refused: {}", response.error);
    phases.dial = Some(started.elapsed());
    ssh_phases(loaded, stream, &response.node_uuid, &mut phases).await;
    phases.total = all.elapsed();
    phases
}

/// The same russh client straight to the target sshd.
async fn direct(setup: &Setup) -> Phases {
    let mut phases = Phases::default();
    let loaded = load(&setup.home);
    let all = Instant::now();
    let tcp = TcpStream::connect(("127.0.0.1", setup.target_port))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    phases.tcp = all.elapsed();
    ssh_phases(loaded, tcp, "127.0.0.1", &mut phases).await;
    phases.total = all.elapsed();
    phases
}

/// The TLS parameters the in-process client negotiated with the proxy.
async fn tls_parameters(setup: &Setup) -> String {
    let loaded = load(&setup.home);
    let tcp = TcpStream::connect(&setup.proxy).await.unwrap();
    let stream = TlsConnector::from(loaded.tls)
        .connect(ServerName::try_from(PROXY_SERVER_NAME).unwrap(), tcp)
        .await
        .unwrap();
    let (_, connection) = stream.get_ref();
    format!(
        "{:?}, {:?}, key exchange {:?}",
        connection.protocol_version().unwrap(),
        connection.negotiated_cipher_suite().unwrap().suite(),
        connection
            .negotiated_key_exchange_group()
            .map(|group| group.name())
    )
}

fn median_of(phases: &[Phases], get: impl Fn(&Phases) -> Option<Duration>) -> Option<Duration> {
    let samples: Vec<Duration> = phases.iter().filter_map(get).collect();
    (!samples.is_empty()).then(|| median(&samples))
}

/// Child mode: print how long this fresh process's first and second random fills took.
fn first_random_child() {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let mut buf = [0u8; 32];
    let started = Instant::now();
    provider.secure_random.fill(&mut buf).unwrap();
    let first = started.elapsed();
    let started = Instant::now();
    provider.secure_random.fill(&mut buf).unwrap();
    println!("{} {}", first.as_nanos(), started.elapsed().as_nanos());
}

/// Medians of the first and second random fill, each in a fresh process.
fn first_random(runs: usize) -> (Duration, Duration) {
    let me = std::env::current_exe().unwrap();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let out = run_ok(Command::new(&me).arg(FIRST_RANDOM), None);
        let mut numbers = out
            .split_whitespace()
            .map(|n| Duration::from_nanos(n.parse().unwrap()));
        first.push(numbers.next().unwrap());
        second.push(numbers.next().unwrap());
    }
    (median(&first), median(&second))
}

/// Medians of plain commands (process floors).
fn time_plain(runs: usize, mut make: impl FnMut() -> Command) -> Duration {
    let mut samples = Vec::new();
    for _ in 0..runs {
        let mut command = make();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let started = Instant::now();
        let status = command.status().unwrap();
        samples.push(started.elapsed());
        assert!(status.success(), "{command:?} failed");
    }
    median(&samples)
}

/// One bulk transfer per [`THROUGHPUT_VARIANTS`] entry, medians over the runs.
struct Bulk {
    /// MiB/s, connecting included.
    rate: Vec<f64>,
    seconds: Vec<Duration>,
    /// CPU seconds per GiB: the client side (this process's reaped children) and the
    /// servers (the daemon's and sshds' with their reaped children).
    cpu_per_gib: Vec<(f64, f64)>,
}

impl Bulk {
    /// Runs `transfer` (one copy of `options.bytes`, returning its wall time) for every
    /// variant, interleaved with a different one first in every round.
    fn measure(
        setup: &Setup,
        options: &Options,
        ticks: f64,
        mut transfer: impl FnMut(Variant) -> Duration,
    ) -> Bulk {
        let count = THROUGHPUT_VARIANTS.len();
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); count];
        let mut client_cpu: Vec<Vec<f64>> = vec![Vec::new(); count];
        let mut server_cpu: Vec<Vec<f64>> = vec![Vec::new(); count];
        for round in 0..options.throughput_runs {
            for k in 0..count {
                let index = (round + k) % count;
                let (client_before, server_before) =
                    (cpu_seconds("self", ticks), setup.server_cpu(ticks));
                times[index].push(transfer(THROUGHPUT_VARIANTS[index]));
                // sshd reaps its session process a moment after the client is gone.
                std::thread::sleep(Duration::from_millis(200));
                client_cpu[index].push(cpu_seconds("self", ticks) - client_before);
                server_cpu[index].push(setup.server_cpu(ticks) - server_before);
            }
        }
        let median_f = |samples: &[f64]| {
            let mut sorted = samples.to_vec();
            sorted.sort_by(f64::total_cmp);
            sorted[sorted.len() / 2]
        };
        let gib = options.bytes as f64 / GIB as f64;
        let mib = options.bytes as f64 / f64::from(1u32 << 20);
        let seconds: Vec<Duration> = times.iter().map(|s| median(s)).collect();
        Bulk {
            rate: seconds.iter().map(|d| mib / d.as_secs_f64()).collect(),
            seconds,
            cpu_per_gib: client_cpu
                .iter()
                .zip(&server_cpu)
                .map(|(c, s)| (median_f(c) / gib, median_f(s) / gib))
                .collect(),
        }
    }

    fn rate_of(&self, variant: Variant) -> f64 {
        self.rate[THROUGHPUT_VARIANTS
            .iter()
            .position(|v| *v == variant)
            .unwrap()]
    }

    fn ratio(&self, a: Variant, b: Variant) -> f64 {
        self.rate_of(a) / self.rate_of(b)
    }

    fn print(&self) {
        for (index, variant) in THROUGHPUT_VARIANTS.iter().enumerate() {
            println!(
                "  {:<52} {:>7.0} MiB/s   ({:.2} s; CPU s per GiB: client {:.2}, servers {:.2})",
                variant.label(),
                self.rate[index],
                self.seconds[index].as_secs_f64(),
                self.cpu_per_gib[index].0,
                self.cpu_per_gib[index].1,
            );
        }
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(FIRST_RANDOM) {
        first_random_child();
        return;
    }
    let options = Options::parse();
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        text(&uid.stdout).trim(),
        "0",
        "run as root: two sshds, and a login user of the benchmark's own"
    );
    ensure_login_user();
    let load_before = load_average();
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let bins = Bins::release();
    let dir = tempfile::Builder::new()
        .prefix("jumpgate-bench-ssh.")
        .tempdir()
        .unwrap();
    let setup = Setup::start(bins, dir.path());
    println!(
        "Setup: dev cluster {:?} (proxy {}), node {:?}, target sshd 127.0.0.1:{}, bastion sshd 127.0.0.1:{}; load average before: {load_before}",
        setup.cluster, setup.proxy, setup.node, setup.target_port, setup.bastion_port
    );

    // Every route delivers exactly what the remote command writes.
    let check_bytes: u64 = 16 << 20;
    let check_command = format!("head -c {check_bytes} /dev/zero");
    for variant in THROUGHPUT_VARIANTS {
        let out = variant
            .command(&setup, &check_command, false)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            out.stdout.len() as u64,
            check_bytes,
            "{} delivered the wrong number of bytes",
            variant.key()
        );
    }

    let negotiated: Vec<(Variant, String)> = THROUGHPUT_VARIANTS
        .iter()
        .map(|variant| (*variant, variant.negotiated(&setup)))
        .collect();

    // 1. Connection time, interleaved; two warm-up rounds first.
    for _ in 0..2 {
        for variant in CONNECT_VARIANTS {
            variant.time(&setup, "true");
        }
    }
    let mut connect: Vec<Vec<Duration>> = vec![Vec::new(); CONNECT_VARIANTS.len()];
    for round in 0..options.runs {
        for k in 0..CONNECT_VARIANTS.len() {
            let index = (round + k) % CONNECT_VARIANTS.len();
            connect[index].push(CONNECT_VARIANTS[index].time(&setup, "true"));
        }
    }
    let connect_median: Vec<Duration> = connect.iter().map(|s| median(s)).collect();
    let connect_of = |variant: Variant| {
        connect_median[CONNECT_VARIANTS.iter().position(|v| *v == variant).unwrap()]
    };

    // 2. Throughput, interleaved.
    let bulk_command = format!("head -c {} /dev/zero", options.bytes);
    let ticks = clock_ticks();
    let download = Bulk::measure(&setup, &options, ticks, |variant| {
        variant.time(&setup, &bulk_command)
    });
    // 2b. Uploads: a sparse file of the same size (reads cost no disk), copied to tmpfs
    // on the server. Every route first copies 16 MiB exactly.
    let upload_file = setup.dir.join("upload");
    let check_file = setup.dir.join("upload-check");
    std::fs::File::create(&check_file)
        .unwrap()
        .set_len(check_bytes)
        .unwrap();
    for variant in THROUGHPUT_VARIANTS {
        variant.time_upload(&setup, &check_file);
        let copied = std::fs::metadata(UPLOAD_TARGET)
            .map(|m| m.len())
            .unwrap_or(0);
        assert_eq!(
            copied,
            check_bytes,
            "{} uploaded the wrong number of bytes",
            variant.key()
        );
        let _ = std::fs::remove_file(UPLOAD_TARGET);
    }
    std::fs::File::create(&upload_file)
        .unwrap()
        .set_len(options.bytes)
        .unwrap();
    let upload = Bulk::measure(&setup, &options, ticks, |variant| {
        let elapsed = variant.time_upload(&setup, &upload_file);
        let _ = std::fs::remove_file(UPLOAD_TARGET);
        elapsed
    });
    let _ = std::fs::remove_file(&upload_file);

    // 3. Where the time goes.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tls_parameters = runtime.block_on(tls_parameters(&setup));
    runtime.block_on(via_proxy(&setup));
    runtime.block_on(direct(&setup));
    let mut proxied = Vec::new();
    let mut straight = Vec::new();
    for _ in 0..options.runs {
        proxied.push(runtime.block_on(via_proxy(&setup)));
        straight.push(runtime.block_on(direct(&setup)));
    }
    let (random_first, random_second) = first_random(options.runs);
    let jsh_status = time_plain(options.runs, || {
        let mut command = setup.jsh();
        command.arg("status");
        command
    });
    let (login_home, shell) = home_and_shell(LOGIN);
    let remote_shell = time_plain(options.runs, || {
        let mut command = Command::new(&shell);
        command
            .env_clear()
            .env("HOME", &login_home)
            .env("USER", LOGIN)
            .env("LOGNAME", LOGIN)
            .env("SHELL", &shell)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("SSH_CLIENT", "127.0.0.1 40000 22")
            .current_dir(&login_home)
            .args(["-c", "true"]);
        command
    });
    let remote_shell_plain = time_plain(options.runs, || {
        let mut command = Command::new(&shell);
        command
            .env_clear()
            .env("HOME", &login_home)
            .env("PATH", "/usr/bin:/bin")
            .args(["-c", "true"]);
        command
    });
    drop(runtime);

    // The report.
    let runs = options.runs;
    println!();
    println!("SSH connection time, `true` on the remote side (median of {runs} runs, min-max):");
    for (index, variant) in CONNECT_VARIANTS.iter().enumerate() {
        let samples = &connect[index];
        println!(
            "  {:<52} {:>7.1} ms   ({:.1}-{:.1})",
            variant.label(),
            ms(connect_median[index]),
            ms(*samples.iter().min().unwrap()),
            ms(*samples.iter().max().unwrap()),
        );
    }
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let r_jsh_direct = ratio(connect_of(Variant::Jsh), connect_of(Variant::Direct));
    let r_jsh_direct_curve = ratio(
        connect_of(Variant::Jsh),
        connect_of(Variant::DirectCurve25519),
    );
    let r_jsh_jump = ratio(connect_of(Variant::Jsh), connect_of(Variant::Jump));
    let r_via_direct = ratio(
        connect_of(Variant::OpensshViaJsh),
        connect_of(Variant::Direct),
    );
    let r_via_direct_curve = ratio(
        connect_of(Variant::OpensshViaJsh),
        connect_of(Variant::DirectCurve25519),
    );
    println!(
        "  ratios: jsh/direct {r_jsh_direct:.2} (jsh/direct-curve25519 {r_jsh_direct_curve:.2}), \
         jsh/-J {r_jsh_jump:.2}, openssh-via-jsh/direct {r_via_direct:.2} \
         (/direct-curve25519 {r_via_direct_curve:.2})"
    );
    println!();
    println!(
        "Throughput, `head -c {} /dev/zero` to /dev/null (median of {} runs, connection included):",
        options.bytes, options.throughput_runs
    );
    download.print();
    let t_jsh_direct = download.ratio(Variant::Jsh, Variant::Direct);
    let t_jsh_jump = download.ratio(Variant::Jsh, Variant::Jump);
    let t_via_direct = download.ratio(Variant::OpensshViaJsh, Variant::Direct);
    println!(
        "  ratios: jsh/direct {t_jsh_direct:.2}, jsh/-J {t_jsh_jump:.2}, openssh-via-jsh/direct {t_via_direct:.2}"
    );
    println!();
    println!(
        "Upload, a {}-byte file to {UPLOAD_TARGET} (tmpfs) with jsh scp / scp (median of {} runs, connection included):",
        options.bytes, options.throughput_runs
    );
    upload.print();
    let u_jsh_direct = upload.ratio(Variant::Jsh, Variant::Direct);
    let u_jsh_jump = upload.ratio(Variant::Jsh, Variant::Jump);
    let u_via_direct = upload.ratio(Variant::OpensshViaJsh, Variant::Direct);
    println!(
        "  ratios: jsh/direct {u_jsh_direct:.2}, jsh/-J {u_jsh_jump:.2}, openssh-via-jsh/direct {u_via_direct:.2}"
    );
    println!();
    println!("Negotiated:");
    for (variant, algorithms) in &negotiated {
        println!("  {:<52} {algorithms}", variant.key());
    }
    println!(
        "  {:<52} {tls_parameters}",
        "in-process client to the proxy (TLS)"
    );
    println!();
    println!(
        "Where the time goes: an in-process client on jsh's libraries (median of {runs}, ms):"
    );
    println!(
        "  {:<34} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7}",
        "route", "profile", "tcp", "tls", "dial", "kex", "auth", "exec", "total"
    );
    for (name, samples) in [
        ("proxy + tunnel -> Jumpgate node", &proxied),
        ("straight -> target sshd", &straight),
    ] {
        println!(
            "  {:<34} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7}",
            name,
            ms_or_dash(median_of(samples, |p| p.profile)),
            ms_or_dash(median_of(samples, |p| Some(p.tcp))),
            ms_or_dash(median_of(samples, |p| p.tls)),
            ms_or_dash(median_of(samples, |p| p.dial)),
            ms_or_dash(median_of(samples, |p| Some(p.kex))),
            ms_or_dash(median_of(samples, |p| Some(p.auth))),
            ms_or_dash(median_of(samples, |p| Some(p.exec))),
            ms_or_dash(median_of(samples, |p| Some(p.total))),
        );
    }
    println!(
        "  fresh process, first aws-lc random number: {:.1} ms (the second: {:.3} ms)",
        ms(random_first),
        ms(random_second)
    );
    println!(
        "  `jsh status` (process start, profile, no network): {:.1} ms",
        ms(jsh_status)
    );
    println!(
        "  remote shell `{shell} -c true` as sshd/the node run it (SSH_CLIENT set, reads ~/.bashrc): {:.1} ms; without SSH_CLIENT: {:.1} ms",
        ms(remote_shell),
        ms(remote_shell_plain)
    );
    println!();
    println!("Commands (temporary paths shortened):");
    for variant in CONNECT_VARIANTS {
        println!("  {}", variant.shown(&setup, "true"));
    }
    for variant in THROUGHPUT_VARIANTS {
        println!("  {}", variant.shown_upload(&setup));
    }

    let phase_json = |samples: &[Phases]| {
        serde_json::json!({
            "profile": median_of(samples, |p| p.profile).map(ms),
            "tcp": median_of(samples, |p| Some(p.tcp)).map(ms),
            "tls": median_of(samples, |p| p.tls).map(ms),
            "dial": median_of(samples, |p| p.dial).map(ms),
            "kex": median_of(samples, |p| Some(p.kex)).map(ms),
            "auth": median_of(samples, |p| Some(p.auth)).map(ms),
            "exec": median_of(samples, |p| Some(p.exec)).map(ms),
            "total": median_of(samples, |p| Some(p.total)).map(ms),
        })
    };
    let record = serde_json::json!({
        "bench": "ssh",
        "date": date,
        "commit": git_commit(),
        "command": format!(
            "cargo run --release -p jumpgate-bench --bin bench-ssh -- --runs {} --throughput-runs {} --bytes {}",
            options.runs, options.throughput_runs, options.bytes
        ),
        "load_average_before": load_before,
        "runs": options.runs,
        "connect_ms_median": CONNECT_VARIANTS.iter().zip(&connect_median)
            .map(|(v, d)| (v.key().to_string(), serde_json::json!(ms(*d))))
            .collect::<serde_json::Map<_, _>>(),
        "connect_ratios": {
            "jsh_over_direct": r_jsh_direct,
            "jsh_over_direct_curve25519": r_jsh_direct_curve,
            "jsh_over_jump": r_jsh_jump,
            "openssh_via_jsh_over_direct": r_via_direct,
            "openssh_via_jsh_over_direct_curve25519": r_via_direct_curve,
        },
        "throughput_runs": options.throughput_runs,
        "throughput_bytes": options.bytes,
        "throughput_mib_s_median": THROUGHPUT_VARIANTS.iter().zip(&download.rate)
            .map(|(v, r)| (v.key().to_string(), serde_json::json!(r)))
            .collect::<serde_json::Map<_, _>>(),
        "throughput_cpu_seconds_per_gib_median": THROUGHPUT_VARIANTS.iter().zip(&download.cpu_per_gib)
            .map(|(v, (c, s))| (v.key().to_string(), serde_json::json!({"client": c, "servers": s})))
            .collect::<serde_json::Map<_, _>>(),
        "throughput_ratios": {
            "jsh_over_direct": t_jsh_direct,
            "jsh_over_jump": t_jsh_jump,
            "openssh_via_jsh_over_direct": t_via_direct,
        },
        "upload_mib_s_median": THROUGHPUT_VARIANTS.iter().zip(&upload.rate)
            .map(|(v, r)| (v.key().to_string(), serde_json::json!(r)))
            .collect::<serde_json::Map<_, _>>(),
        "upload_cpu_seconds_per_gib_median": THROUGHPUT_VARIANTS.iter().zip(&upload.cpu_per_gib)
            .map(|(v, (c, s))| (v.key().to_string(), serde_json::json!({"client": c, "servers": s})))
            .collect::<serde_json::Map<_, _>>(),
        "upload_ratios": {
            "jsh_over_direct": u_jsh_direct,
            "jsh_over_jump": u_jsh_jump,
            "openssh_via_jsh_over_direct": u_via_direct,
        },
        "login": LOGIN,
        "variants": CONNECT_VARIANTS.iter().chain(&[Variant::DirectChacha20])
            .map(|v| (v.key().to_string(), serde_json::json!({
                "label": v.label().trim(),
                "command": v.shown(&setup, "true"),
                "upload_command": v.shown_upload(&setup),
            })))
            .collect::<serde_json::Map<_, _>>(),
        "negotiated": negotiated.iter()
            .map(|(v, a)| (v.key().to_string(), serde_json::json!(a)))
            .chain([("jsh_tls_to_proxy".to_string(), serde_json::json!(tls_parameters))])
            .collect::<serde_json::Map<_, _>>(),
        "phases_ms_median": {
            "via_proxy_to_jumpgate_node": phase_json(&proxied),
            "straight_to_sshd": phase_json(&straight),
        },
        "floors_ms": {
            "first_aws_lc_random_in_fresh_process": ms(random_first),
            "second_aws_lc_random": ms(random_second),
            "jsh_status": ms(jsh_status),
            "remote_shell_with_ssh_client_env": ms(remote_shell),
            "remote_shell_plain": ms(remote_shell_plain),
        },
    });
    let line = serde_json::to_string(&record).unwrap();
    println!();
    println!("JSON: {line}");
    if let Some(path) = &options.append_json {
        append_line(path, &line);
    }
    drop(setup);
}
