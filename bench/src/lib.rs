//! What the benchmarks share: the rate arithmetic and the OpenSSH baseline every
//! signing benchmark compares against (`ssh-keygen -s`, one process per certificate,
//! the way admins sign with a plain OpenSSH CA).
// A benchmark harness fails by panicking with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jumpgate_pki::SshCa;
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
    std::fs::write(&ca_path, ca.private_key_openssh().unwrap()).unwrap();
    set_private(&ca_path);
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

/// ssh-keygen refuses a CA key others can read.
fn set_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}
