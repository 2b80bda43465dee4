//! What only the benchmarks need of processes: the benchmark login, a logged-in `jsh`
//! user, and CPU and memory of running processes. Starting daemons, sshds and `jctl` is
//! `jumpgate-test-support`'s, shared with the tests.

use jumpgate_test_support::{Bins, text};
use std::path::Path;
use std::process::Command;

/// The login on the servers ([`jumpgate_test_support::TIMING_LOGIN`]: its own user with a
/// stock home, so root's `~/.bashrc` on this machine, here `pyenv init`, is not timed).
pub use jumpgate_test_support::TIMING_LOGIN as LOGIN;

/// Creates [`LOGIN`] unless it exists.
pub fn ensure_login_user() {
    jumpgate_test_support::ensure_timing_login();
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
