//! Helpers for end-to-end tests that run the real `jumpgate` binary.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn jumpgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jumpgate"))
}

/// Runs `jumpgate ARGS` to completion, with optional standard input.
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = jumpgate()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jumpgate");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait for jumpgate")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../types/tests/fixtures")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A plain HTTP/1.0 GET: (status, body). `None` while nothing listens.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A running daemon, killed on drop if the test did not stop it.
pub struct Daemon {
    pub child: Child,
    pub diag_port: u16,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `jumpgate start ARGS --diag-addr 127.0.0.1:PORT`, logging to `log`, and
    /// waits for `/healthz`. Retried on a fresh port if a parallel test took the port.
    pub fn start(args: &[&str], log: &Path) -> Daemon {
        for _ in 0..5 {
            if let Some(daemon) = Daemon::try_start(args, log) {
                return daemon;
            }
        }
        panic!(
            "daemon did not come up; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    fn try_start(args: &[&str], log: &Path) -> Option<Daemon> {
        let diag_port = free_port();
        let log_file = std::fs::File::create(log).expect("log file");
        let child = jumpgate()
            .arg("start")
            .args(args)
            .arg("--diag-addr")
            .arg(format!("127.0.0.1:{diag_port}"))
            // Tests run in parallel: the auth API takes any free port (jctl reads it
            // from the data directory).
            .args(if args.contains(&"--auth-addr") {
                &[][..]
            } else {
                &["--auth-addr", "127.0.0.1:0"][..]
            })
            .args(if args.contains(&"--proxy-addr") {
                &[][..]
            } else {
                &["--proxy-addr", "127.0.0.1:0"][..]
            })
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("spawn jumpgate start");
        let mut daemon = Daemon {
            child,
            diag_port,
            log: log.to_path_buf(),
        };
        let up = wait_until(Duration::from_secs(20), || {
            if matches!(daemon.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            http_get(diag_port, "/healthz").is_some_and(|(status, _)| status == 200)
        });
        if up && matches!(daemon.child.try_wait(), Ok(None)) {
            return Some(daemon);
        }
        let _ = daemon.child.kill();
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn readyz(&self) -> Option<(u16, String)> {
        http_get(self.diag_port, "/readyz")
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited 0 in time.
    pub fn terminate(&mut self) -> bool {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `jctl --data-dir DATA ARGS` with optional standard input.
pub fn jctl(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jctl"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jctl");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait for jctl")
}

/// `jctl` that must succeed, with standard input; returns stdout.
pub fn jctl_ok_stdin(data: &Path, args: &[&str], stdin: &str) -> String {
    checked_jctl(data, args, Some(stdin))
}

/// `jctl` that must succeed; returns stdout.
pub fn jctl_ok(data: &Path, args: &[&str]) -> String {
    checked_jctl(data, args, None)
}

fn checked_jctl(data: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = jctl(data, args, stdin);
    assert!(
        out.status.success(),
        "jctl {args:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A real HAProxy (TCP mode), killed on drop.
pub struct Haproxy {
    child: Child,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn haproxy_binary() -> PathBuf {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .expect("haproxy not found: install Debian's haproxy (./test.sh does)")
}

/// Starts HAProxy with `sections` (frontends and backends) after TCP-mode defaults, and
/// waits until every port in `ports` accepts connections.
pub fn start_haproxy(dir: &Path, sections: &str, ports: &[u16]) -> Haproxy {
    let config = format!(
        "global\n  log stderr format raw local0\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n{sections}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).expect("haproxy config");
    let child = Command::new(haproxy_binary())
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log")).expect("haproxy log"))
        .spawn()
        .expect("spawn haproxy");
    let up = wait_until(Duration::from_secs(10), || {
        ports
            .iter()
            .all(|port| TcpStream::connect(("127.0.0.1", *port)).is_ok())
    });
    assert!(
        up,
        "haproxy did not start: {}",
        std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default()
    );
    Haproxy { child }
}

/// Every audit event of `event_type`, oldest first (`jctl audit search`).
pub fn audit_events(data: &Path, event_type: &str) -> Vec<serde_json::Value> {
    let out = jctl_ok(
        data,
        &["audit", "search", "--type", event_type, "--format", "json"],
    );
    serde_json::from_str(&out).expect("audit search output is JSON")
}

/// `jctl tokens add ARGS --format json`: the token and the active `ca_pin`.
pub fn new_join_token(data: &Path, args: &[&str]) -> (String, String) {
    let mut full = vec!["tokens", "add"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--format", "json"]);
    let issued: serde_json::Value =
        serde_json::from_str(&jctl_ok(data, &full)).expect("tokens add output is JSON");
    let field = |pointer: &str| {
        issued
            .pointer(pointer)
            .and_then(serde_json::Value::as_str)
            .expect("tokens add answers token and ca_pins")
            .to_string()
    };
    (field("/token"), field("/ca_pins/0"))
}

/// The password of every user the tests make.
pub const PASSWORD: &str = "correct horse battery staple";

/// Runs `command` to completion with optional standard input, within `limit`: a
/// program that hangs is killed and the test fails, instead of hanging the suite.
pub fn output_within(command: &mut Command, stdin: Option<&str>, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
    let mut input = child.stdin.take().expect("stdin");
    let text = stdin.map(str::to_string);
    // A thread, so that a program that reads no input cannot block us on a full pipe.
    let writer = std::thread::spawn(move || {
        if let Some(text) = text {
            let _ = input.write_all(text.as_bytes());
        }
    });
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    match done_rx.recv_timeout(limit) {
        Ok(out) => {
            let _ = writer.join();
            out.expect("wait for the program")
        }
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{command:?} did not finish within {limit:?}");
        }
    }
}

/// Runs `jsh ARGS` with `JUMPGATE_HOME=home` and optional standard input (at most 60 s).
pub fn jsh(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_jsh"))
            .args(args)
            .env("JUMPGATE_HOME", home)
            .env_remove("SSH_AUTH_SOCK"),
        stdin,
        Duration::from_secs(60),
    )
}

/// Runs `jsh ARGS` until `done` holds for its output, for at most 20 s: a change (a role,
/// a lock) reaches the proxy and the node a moment after it is made. Returns the last
/// output.
pub fn jsh_until(home: &Path, args: &[&str], mut done: impl FnMut(&Output) -> bool) -> Output {
    let mut out = jsh(home, args, None);
    wait_until(Duration::from_secs(20), || {
        if done(&out) {
            return true;
        }
        out = jsh(home, args, None);
        done(&out)
    });
    out
}

pub fn jsh_ok(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let out = jsh(home, args, stdin);
    assert!(
        out.status.success(),
        "jsh {args:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// A started dev cluster: the daemon, its data directory and its proxy address.
pub struct Cluster {
    pub daemon: Daemon,
    pub data: PathBuf,
    pub proxy: String,
}

impl Cluster {
    pub fn start(dir: &Path) -> Cluster {
        let data = dir.join("data");
        let daemon = Daemon::start(
            &["--dev", "--data-dir", data.to_str().unwrap()],
            &dir.join("daemon.log"),
        );
        let ready = wait_until(Duration::from_secs(30), || {
            data.join("proxy_addr").exists()
                && data.join("admin/auth_addr").exists()
                && daemon.readyz().is_some_and(|(status, body)| {
                    status == 200 && body.contains("auth") && body.contains("proxy")
                })
        });
        assert!(ready, "proxy not ready; log:\n{}", daemon.log_text());
        let proxy = std::fs::read_to_string(data.join("proxy_addr"))
            .unwrap()
            .trim()
            .to_string();
        Cluster {
            daemon,
            data,
            proxy,
        }
    }

    pub fn ca(&self) -> String {
        self.data.join("admin/ca.pem").to_str().unwrap().to_string()
    }

    /// `jctl users add NAME --roles access --logins LOGINS --password-stdin`; returns
    /// the otpauth URI.
    pub fn add_user(&self, name: &str, logins: &str) -> String {
        self.add_user_with_roles(name, "access", logins)
    }

    /// `jctl users add NAME --roles ROLES --logins LOGINS --password-stdin`; returns the
    /// otpauth URI.
    pub fn add_user_with_roles(&self, name: &str, roles: &str, logins: &str) -> String {
        let enrolled = jctl_ok_stdin(
            &self.data,
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
            &format!("{PASSWORD}\n"),
        );
        enrolled
            .split_whitespace()
            .find(|word| word.starts_with("otpauth://"))
            .expect("users add prints the otpauth URI")
            .to_string()
    }

    /// `jsh login` as `user` (made with [`Cluster::add_user`], whose TOTP secret is in
    /// `otpauth_uri`) into the profile directory `home`.
    pub fn login(&self, home: &Path, user: &str, otpauth_uri: &str) -> Output {
        jsh_ok(
            home,
            &[
                "login",
                "--proxy",
                &self.proxy,
                "--user",
                user,
                "--ca-cert",
                &self.ca(),
                "--password-stdin",
                "--otp",
                &totp_now(otpauth_uri),
            ],
            Some(&format!("{PASSWORD}\n")),
        )
    }
}

pub fn totp_now(otpauth_uri: &str) -> String {
    totp_rs::Totp::from_url(otpauth_uri)
        .unwrap()
        .generate_current()
        .to_string()
}

/// This machine's host name: the name of the dev node (`jumpgate start --dev`).
pub fn dev_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read the host name")
        .trim()
        .to_string()
}

impl Cluster {
    /// Waits until `jctl nodes ls` shows the dev node (its first heartbeat); returns
    /// its name.
    pub fn wait_for_dev_node(&self) -> String {
        let name = dev_node_name();
        let mut last = String::new();
        let listed = wait_until(Duration::from_secs(30), || {
            last = jctl_ok(&self.data, &["nodes", "ls"]);
            last.lines()
                .any(|line| line.split_whitespace().next() == Some(&name))
        });
        assert!(
            listed,
            "the dev node {name:?} never showed in `jctl nodes ls`:\n{last}\nlog:\n{}",
            self.daemon.log_text()
        );
        name
    }

    /// `jctl create FILE` of `yaml`, written to `dir/FILE_NAME`.
    pub fn create_resource(&self, dir: &Path, file_name: &str, yaml: &str) {
        let path = dir.join(file_name);
        std::fs::write(&path, yaml).expect("write the resource file");
        jctl_ok(&self.data, &["create", path.to_str().expect("UTF-8 path")]);
    }
}
