//! A real S3-compatible server on a free loopback port, for the S3 recording store's tests.
//!
//! Tests use `s3s-fs` (crates.io, `cargo install --locked s3s-fs --version 0.14.1 --features
//! binary`, which `./test.sh` does when it is missing): an S3 server over a directory that
//! checks SigV4 signatures, and implements conditional PUTs (`If-None-Match`, `If-Match`),
//! multipart uploads (refusing parts under 5 MiB but the last, as S3 does), ranged GETs and
//! ListObjectsV2. `JUMPGATE_S3S_FS_BIN` overrides the binary. Nothing here is a mock.

use crate::process::Process;
use crate::regions::Host;
use crate::wait::free_port;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The access key id the server accepts.
pub const S3_ACCESS_KEY: &str = "JUMPGATETESTKEY";
/// Its secret.
pub const S3_SECRET_KEY: &str = "jumpgate-test-secret-key";
/// The bucket [`S3Server::start`] creates.
pub const S3_BUCKET: &str = "recordings";

/// An `s3s-fs` process on 127.0.0.1 serving a temporary directory (one bucket,
/// [`S3_BUCKET`]), stopped on drop. [`S3Server::stop`] and [`S3Server::start_again`] keep the
/// data and the port.
#[derive(Debug)]
pub struct S3Server {
    process: Option<Process>,
    dir: tempfile::TempDir,
    port: u16,
    /// The host it runs in, if not the test's own namespace.
    host: Option<Host>,
}

fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("JUMPGATE_S3S_FS_BIN") {
        return PathBuf::from(bin);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let path = PathBuf::from(home).join(".cargo/bin/s3s-fs");
        if path.exists() {
            return path;
        }
    }
    PathBuf::from("s3s-fs")
}

impl S3Server {
    /// Starts the server and waits (at most 30 s) until it accepts connections. A port
    /// taken by a parallel test meanwhile is retried on a fresh one.
    pub async fn start() -> S3Server {
        S3Server::start_on(None).await
    }

    /// [`S3Server::start`] inside `host` of a [`Regions`](crate::Regions) fixture,
    /// listening on the host's address for the other hosts.
    pub async fn start_in(host: &Host) -> S3Server {
        S3Server::start_on(Some(host.clone())).await
    }

    async fn start_on(host: Option<Host>) -> S3Server {
        let dir = tempfile::Builder::new()
            .prefix("jumpgate-s3")
            .tempdir()
            .expect("temp dir for the S3 server");
        std::fs::create_dir_all(dir.path().join("data").join(S3_BUCKET))
            .expect("creating the bucket directory");
        let mut server = S3Server {
            process: None,
            dir,
            port: 0,
            host,
        };
        let mut last_error = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.try_start().await {
                Ok(()) => return server,
                Err(err) => last_error = err,
            }
        }
        panic!("s3s-fs failed to start 5 times; last: {last_error}");
    }

    /// The endpoint URL, e.g. `http://127.0.0.1:41234` (or the host's address).
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.ip(), self.port)
    }

    fn ip(&self) -> std::net::Ipv4Addr {
        self.host
            .as_ref()
            .map_or(std::net::Ipv4Addr::LOCALHOST, Host::ip)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the bucket's objects as files (`DIR/<bucket>/<key>`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Kills the server (like a crash); the data stays.
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Starts the stopped server again on the same port and data.
    pub async fn start_again(&mut self) {
        let mut last_error = String::new();
        for _ in 0..5 {
            match self.try_start().await {
                Ok(()) => return,
                Err(err) => last_error = err,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("s3s-fs failed to restart 5 times; last: {last_error}");
    }

    async fn try_start(&mut self) -> Result<(), String> {
        assert!(self.process.is_none(), "s3s-fs is already running");
        let log = self.dir.path().join("s3s-fs.log");
        let mut command = Command::new(binary());
        command
            .args(["--host", &self.ip().to_string()])
            .args(["--port", &self.port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY])
            .args(["--secret-key", S3_SECRET_KEY])
            .arg(self.data_dir())
            .env("RUST_LOG", "warn");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("s3s-fs log file");
        if let Some(host) = &self.host {
            command = host.wrap(&command);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("s3s-fs log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {}: {err}; install it with `cargo install --locked s3s-fs \
                     --version 0.14.1 --features binary` (./test.sh does) or set \
                     JUMPGATE_S3S_FS_BIN",
                    binary().display()
                )
            });
        let mut process = Process::from_child(child, "s3s-fs", &log);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                return Err(format!(
                    "s3s-fs exited during start-up with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            let addr = std::net::SocketAddr::from((self.ip(), self.port));
            let accepts = match &self.host {
                None => tokio::net::TcpStream::connect(addr).await.is_ok(),
                Some(host) => host.connect(addr, Duration::from_secs(1)).is_ok(),
            };
            if accepts {
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("s3s-fs did not accept connections in 30s".to_string());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
