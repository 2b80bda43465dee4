//! A real HAProxy in front of the proxy, as operators run it.

use crate::process::{Process, system_program};
use crate::regions::Host;
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
    start(None, dir, sections, ports)
}

/// [`start_haproxy`] inside `host` of a [`Regions`](crate::Regions) fixture: bind its
/// frontends to `0.0.0.0` or the host's IP for other hosts to reach them.
pub fn start_haproxy_in(host: &Host, dir: &Path, sections: &str, ports: &[u16]) -> Haproxy {
    start(Some(host), dir, sections, ports)
}

fn start(host: Option<&Host>, dir: &Path, sections: &str, ports: &[u16]) -> Haproxy {
    let config = format!(
        "global\n  log stderr format raw local0\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n{sections}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).expect("haproxy config");
    let mut command = Command::new(system_program(
        &["/usr/sbin/haproxy", "/usr/bin/haproxy"],
        "haproxy",
    ));
    command.arg("-db").arg("-f").arg(&path);
    if let Some(host) = host {
        command = host.wrap(&command);
    }
    let process = Process::spawn(&mut command, "haproxy", &dir.join("haproxy.log"));
    // A frontend listens on loopback or on the host's address (inside its namespace).
    let listening = |port: u16| {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
            || host.is_some_and(|host| TcpStream::connect(host.addr(port)).is_ok())
    };
    let up = wait_until(Duration::from_secs(10), || match host {
        None => ports.iter().all(|port| listening(*port)),
        Some(host) => host.enter(|| ports.iter().all(|port| listening(*port))),
    });
    assert!(up, "haproxy did not start: {}", process.log_text());
    Haproxy { process }
}
