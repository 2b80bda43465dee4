//! A real HAProxy in front of the proxy, as operators run it.

use crate::process::{Process, system_program};
use crate::wait::wait_until;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A real HAProxy (TCP mode), killed on drop.
#[derive(Debug)]
pub struct Haproxy {
    pub process: Process,
}

/// Starts HAProxy with `sections` (frontends and backends) after TCP-mode defaults, and
/// waits until every port in `ports` accepts connections. Its config and log are in `dir`.
pub fn start_haproxy(dir: &Path, sections: &str, ports: &[u16]) -> Haproxy {
    let config = format!(
        "global\n  log stderr format raw local0\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n{sections}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).expect("haproxy config");
    let process = Process::spawn(
        Command::new(system_program(
            &["/usr/sbin/haproxy", "/usr/bin/haproxy"],
            "haproxy",
        ))
        .arg("-db")
        .arg("-f")
        .arg(&path),
        "haproxy",
        &dir.join("haproxy.log"),
    );
    let up = wait_until(Duration::from_secs(10), || {
        ports
            .iter()
            .all(|port| TcpStream::connect(("127.0.0.1", *port)).is_ok())
    });
    assert!(up, "haproxy did not start: {}", process.log_text());
    Haproxy { process }
}
