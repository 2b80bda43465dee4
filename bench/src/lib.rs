//! What the benchmarks share: the rate arithmetic and the OpenSSH baseline every
//! signing benchmark compares against (`ssh-keygen -s`, one process per certificate,
//! the way admins sign with a plain OpenSSH CA).
// A benchmark harness fails by panicking with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod procs;
pub mod tunnels;

use jumpgate_pki::SshCa;
use jumpgate_test_support::write_private;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Operations per second.
pub fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// Times `count` runs of `ssh-keygen -s CA -I alice -n alice,ubuntu -V +12h user.pub` with
/// `ca`'s key and the given user public key (an OpenSSH `.pub` line). Only the loop is timed.
pub fn ssh_keygen_sign(ca: &SshCa, user_public_openssh: &str, count: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca");
    // ssh-keygen refuses a CA key others can read.
    write_private(&ca_path, &ca.private_key_openssh().unwrap());
    let pub_path = dir.path().join("user.pub");
    std::fs::write(&pub_path, user_public_openssh).unwrap();
    let started = Instant::now();
    for _ in 0..count {
        let status = Command::new("ssh-keygen")
            .arg("-q")
            .arg("-s")
            .arg(&ca_path)
            .args(["-I", "alice", "-n", "alice,ubuntu", "-V", "+12h"])
            .arg(&pub_path)
            .status()
            .expect("ssh-keygen (openssh-client) is needed for the comparison");
        assert!(status.success());
    }
    started.elapsed()
}

/// The median of `samples` (the mean of the middle two for an even count).
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let n = sorted.len();
    let at = |i: usize| sorted.get(i).copied().unwrap_or_default();
    if n % 2 == 1 {
        at(n / 2)
    } else {
        (at((n / 2).saturating_sub(1)) + at(n / 2)) / 2
    }
}

/// A duration in milliseconds.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A duration in milliseconds with one decimal, or `-` when there is none.
pub fn ms_or_dash(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "-".to_string(), |d| format!("{:.1}", ms(d)))
}

/// The 1-minute load average: other work on the machine skews every number.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

/// The commit the benchmark was built from (short hash, `-dirty` with uncommitted
/// changes), or `unknown`.
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=7"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Appends one JSON line to `path` (`bench/results.json`) and says so.
pub fn append_line(path: &Path, line: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{line}").unwrap();
    println!("appended to {}", path.display());
}
