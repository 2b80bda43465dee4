//! Ports and waiting: processes start in parallel with other tests, so every wait is
//! bounded and every port is picked at the last moment.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago, picked at random below the kernel's
/// ephemeral range (32768-60999 by default). A port from that range (what binding port 0
/// gives) can be taken, before the test binds it, by any outgoing connection of the tests
/// running in parallel; below it, only another test's pick can collide, which starters
/// retry on a fresh port.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    const FIRST: u16 = 10_000;
    const COUNT: u64 = 22_000;
    let random = RandomState::new();
    for attempt in 0..1_000u64 {
        let offset = u16::try_from(random.hash_one(attempt) % COUNT).unwrap_or(0);
        let port = FIRST + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("no free loopback port")
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes; whether it did.
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

/// [`wait_until`] that fails, naming `what`, when `check` does not hold in time.
pub fn wait_for(what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    assert!(wait_until(timeout, check), "{what}: not within {timeout:?}");
}

/// The async [`wait_for`]: polls `check` every 10 ms without blocking the runtime.
pub async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1 (the daemon's diagnostics): (status, body).
/// `None` while nothing listens.
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
