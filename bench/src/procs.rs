//! What only the benchmarks need of processes: the benchmark login, a logged-in `jsh`
//! user, and CPU and memory of running processes. Starting daemons, sshds and `jctl` is
//! `jumpgate-test-support`'s, shared with the tests.

use jumpgate_test_support::{Bins, text};
use std::path::Path;
use std::process::Command;

/// The login on the servers: a user of its own with a stock home (`/etc/skel`), so the
/// remote shell's start is the system's, not whatever root's `~/.bashrc` runs on this
/// machine (here `pyenv init`, ~105 ms that every variant paid alike).
pub const LOGIN: &str = "jgbench";

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

/// Adds the Jumpgate user `user` (role `access`, login [`LOGIN`]) to the cluster whose
/// admin files are in `data`, and logs `jsh` in as that user through `proxy` into the
/// profile directory `home`.
pub fn add_user_and_login(bins: &Bins, data: &Path, user: &str, proxy: &str, home: &Path) {
    let otpauth_uri = bins.add_user(data, user, "access", LOGIN);
    bins.login(home, proxy, &data.join("admin/ca.pem"), user, &otpauth_uri);
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
