//! Starting and stopping the processes a benchmark runs against: daemons and sshds
//! under guards, `jctl` calls, the benchmark login and a logged-in `jsh` user.

use crate::release_binary;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The login on the servers: a user of its own with a stock home (`/etc/skel`), so the
/// remote shell's start is the system's, not whatever root's `~/.bashrc` runs on this
/// machine (here `pyenv init`, ~105 ms that every variant paid alike).
pub const LOGIN: &str = "jgbench";
/// The password of the benchmark's Jumpgate user.
pub const PASSWORD: &str = "correct-horse-battery-staple-42";

/// A child process stopped when dropped: SIGTERM, then SIGKILL after 5 s.
#[derive(Debug)]
pub struct Guard {
    pub child: Child,
    pub name: &'static str,
    /// Where the process writes its output.
    pub log: PathBuf,
}

impl Guard {
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .get(lines.len().saturating_sub(30)..)
            .unwrap_or_default()
            .join("\n")
    }

    pub fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.log_tail());
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release binaries under test.
#[derive(Debug)]
pub struct Bins {
    pub jumpgate: PathBuf,
    pub jctl: PathBuf,
    pub jsh: PathBuf,
}

impl Bins {
    /// `target/release` (or `JUMPGATE_BIN_DIR`), see [`release_binary`].
    pub fn release() -> Bins {
        Bins {
            jumpgate: release_binary("jumpgate"),
            jctl: release_binary("jctl"),
            jsh: release_binary("jsh"),
        }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `jctl --data-dir DATA ARGS`, which must succeed; returns its standard output.
pub fn jctl(bins: &Bins, data: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut command = Command::new(&bins.jctl);
    command.arg("--data-dir").arg(data).args(args);
    output_of(command, stdin)
}

pub fn output_of(mut command: Command, stdin: Option<&str>) -> String {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Creates [`LOGIN`] (a home from `/etc/skel`, bash) unless it exists. Its password
/// field is `*` (no password) rather than useradd's `!` (locked), which sshd without PAM
/// refuses even for a certificate login.
pub fn ensure_login_user() {
    let known = Command::new("id").arg(LOGIN).output().unwrap();
    if !known.status.success() {
        passwd_tool("useradd", &["--create-home", "--shell", "/bin/bash", LOGIN]);
    }
    passwd_tool("usermod", &["--password", "*", LOGIN]);
}

/// Runs `useradd`/`usermod` (the passwd package), which must succeed.
fn passwd_tool(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("{program} (passwd package) for the benchmark login: {err}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        text(&out.stderr)
    );
}

pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Adds the Jumpgate user `user` (role `access`, login [`LOGIN`]) to the cluster whose
/// admin files are in `data`, and logs `jsh` in as that user through `proxy` into the
/// profile directory `home`.
pub fn add_user_and_login(bins: &Bins, data: &Path, user: &str, proxy: &str, home: &Path) {
    let added = jctl(
        bins,
        data,
        &[
            "users",
            "add",
            user,
            "--roles",
            "access",
            "--logins",
            LOGIN,
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    let uri = added
        .split_whitespace()
        .find(|word| word.starts_with("otpauth://"))
        .unwrap_or_else(|| panic!("no otpauth URI in:\n{added}"));
    let code = totp_rs::Totp::from_url(uri)
        .unwrap()
        .generate_current()
        .to_string();
    let mut login = Command::new(&bins.jsh);
    login
        .env("JUMPGATE_HOME", home)
        .args(["login", "--proxy", proxy, "--user", user, "--ca-cert"])
        .arg(data.join("admin/ca.pem"))
        .args(["--password-stdin", "--otp", &code]);
    output_of(login, Some(&format!("{PASSWORD}\n")));
}

/// CPU seconds of a process and of the children it has reaped (utime + stime + cutime +
/// cstime from /proc/PID/stat).
pub fn cpu_seconds(pid: &str, ticks_per_second: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, fields)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<f64> = fields
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // After the command name: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    fields.get(11..15).map_or(0.0, |t| t.iter().sum::<f64>()) / ticks_per_second
}

/// Clock ticks per second, the unit of /proc/PID/stat times.
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| text(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Resident memory of a process in KiB (VmRSS from /proc/PID/status), 0 when gone.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
