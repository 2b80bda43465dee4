//! A DynamoDB **emulator** for the DynamoDB backend's tests: moto's server mode (PyPI
//! `moto[server]`, pinned and installed by `./test.sh`), which implements the DynamoDB API
//! in memory. It is not DynamoDB: it is the nearest thing that runs here, and it speaks the
//! same wire protocol, so the backend's requests, signing and error handling are the real
//! ones.
//!
//! moto's own `moto_server` serves requests on several threads, and its transactions are not
//! atomic across threads; DynamoDB's are. So the emulator runs moto's application under
//! werkzeug with one thread: requests are handled one at a time, which makes each
//! transaction atomic, as on DynamoDB. (A single-threaded werkzeug speaks HTTP/1.0, one
//! connection per request.) Under threaded moto the conformance suite's three concurrency
//! checks fail (a compare-and-swap counter lost 6 of 90 increments), which is moto's fault,
//! not the backend's.
//!
//! moto also copies every table a transaction names, whole, before running it (to undo it
//! on failure), so each write grows slower as the table grows; `dynamo_launcher.py` keeps
//! copies of only the items a transaction names instead, without changing what it does.
//!
//! The emulator listens on a free loopback port, keeps everything in memory (a restart
//! loses the tables), and is killed on drop.

use crate::process::Process;
use crate::regions::Host;
use crate::wait::free_port;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// Any credentials do unless [`DynamoEmulator::start_checking_credentials`] was used.
pub const EMULATOR_ACCESS_KEY_ID: &str = "AKIDJUMPGATETEST";
/// The matching (meaningless) secret.
pub const EMULATOR_SECRET_ACCESS_KEY: &str = "jumpgate-emulator-secret";
/// The region the tests use.
pub const EMULATOR_REGION: &str = "us-east-1";

/// moto's WSGI application under a single-threaded werkzeug server, its transactions
/// undone from a copy of the items they name rather than of whole tables (the file says why).
const LAUNCHER: &str = include_str!("dynamo_launcher.py");

/// moto in server mode on 127.0.0.1 (or on a [`Host`]'s address), standing in for DynamoDB.
#[derive(Debug)]
pub struct DynamoEmulator {
    process: Option<Process>,
    port: u16,
    dir: tempfile::TempDir,
    check_credentials: bool,
    /// The host it runs in, if not the test's own namespace.
    host: Option<Host>,
}

impl DynamoEmulator {
    /// Starts the emulator and waits (bounded) until it answers. A port taken by a parallel
    /// test between our check and the bind is retried on a fresh one.
    pub async fn start() -> DynamoEmulator {
        DynamoEmulator::start_with(false, None).await
    }

    /// [`DynamoEmulator::start`] inside `host` of a [`Regions`](crate::Regions) fixture,
    /// listening on the host's address for the other hosts.
    pub async fn start_in(host: &Host) -> DynamoEmulator {
        DynamoEmulator::start_with(false, Some(host.clone())).await
    }

    /// An emulator that checks credentials against its (empty) IAM: every request is
    /// refused as signed by an unknown access key, as DynamoDB refuses wrong credentials.
    pub async fn start_checking_credentials() -> DynamoEmulator {
        DynamoEmulator::start_with(true, None).await
    }

    async fn start_with(check_credentials: bool, host: Option<Host>) -> DynamoEmulator {
        let dir = tempfile::Builder::new()
            .prefix("jumpgate-dynamo-emulator")
            .tempdir()
            .expect("temp dir for the DynamoDB emulator");
        let mut emulator = DynamoEmulator {
            process: None,
            port: 0,
            dir,
            check_credentials,
            host,
        };
        let mut last_error = String::new();
        for _ in 0..5 {
            emulator.port = free_port();
            match emulator.try_start().await {
                Ok(()) => return emulator,
                Err(err) => last_error = err,
            }
        }
        panic!("the DynamoDB emulator (moto) failed to start 5 times; last: {last_error}");
    }

    /// `http://127.0.0.1:PORT` (or the host's address), for `DynamoOptions::endpoint`.
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

    /// Runs the emulator at the lowest CPU priority (nice 19) until the guard is dropped,
    /// for latency comparisons against a cluster that needs no emulator. DynamoDB runs
    /// elsewhere and takes none of the cluster's CPU; moto takes most of a core of this
    /// machine (it answers each auth server's change-log poll, four a second, by reading
    /// every entry of the log's partition), and at the same priority it delays every
    /// process on a connection's path. Lowered, it still gets every cycle the cluster
    /// leaves idle. The guard puts it back, so that the drills after a comparison do not
    /// wait on a starved emulator on a busy machine.
    pub fn lower_priority(&self) -> LoweredPriority {
        let pid = self.process.as_ref().expect("the emulator is running").id();
        renice(pid, 19);
        LoweredPriority { pid }
    }

    /// Kills the emulator (its tables are gone with it).
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Starts it again on the same port, empty.
    pub async fn start_again(&mut self) {
        let mut last_error = String::new();
        for _ in 0..5 {
            match self.try_start().await {
                Ok(()) => return,
                Err(err) => last_error = err,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the DynamoDB emulator failed to restart 5 times; last: {last_error}");
    }

    async fn try_start(&mut self) -> Result<(), String> {
        assert!(self.process.is_none(), "the emulator is already running");
        let log = self.dir.path().join("moto.log");
        let mut command = Command::new("python3");
        command
            .args([
                "-c",
                LAUNCHER,
                &self.port.to_string(),
                &self.ip().to_string(),
            ])
            .current_dir(self.dir.path())
            // moto's IAM checks: from the first request when asked, never otherwise.
            .env(
                "INITIAL_NO_AUTH_ACTION_COUNT",
                if self.check_credentials { "0" } else { "inf" },
            )
            .env_remove("MOTO_PORT");
        if let Some(host) = &self.host {
            command = host.wrap(&command);
        }
        let mut process = Process::spawn_appending(&mut command, "moto (DynamoDB emulator)", &log);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if process.has_exited() {
                return Err(format!(
                    "moto exited during start-up (is moto[server] installed? ./test.sh installs \
                     it); log:\n{}",
                    process.log_tail()
                ));
            }
            // werkzeug says so once it has bound the port: a connection alone could reach
            // another test's server that took the port first.
            if process.log_text().contains("Running on") && self.accepts() {
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto did not listen on port {} within 30s; log:\n{}",
                    self.port,
                    process.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether something accepts connections on its port (from inside its host).
    fn accepts(&self) -> bool {
        let addr = std::net::SocketAddr::from((self.ip(), self.port));
        match &self.host {
            None => TcpStream::connect(addr).is_ok(),
            Some(host) => host.connect(addr, Duration::from_secs(1)).is_ok(),
        }
    }
}

/// The emulator at nice 19, until dropped: see [`DynamoEmulator::lower_priority`].
#[derive(Debug)]
#[must_use = "the emulator's priority is restored when this is dropped"]
pub struct LoweredPriority {
    pid: u32,
}

impl Drop for LoweredPriority {
    fn drop(&mut self) {
        // Best effort: a drop must not panic (the test may be unwinding already), and the
        // emulator may be gone.
        let _ = crate::process::run(
            Command::new("renice").args(["-n", "0", "-p", &self.pid.to_string()]),
            None,
        );
    }
}

fn renice(pid: u32, nice: i32) {
    crate::process::run_ok(
        Command::new("renice").args(["-n", &nice.to_string(), "-p", &pid.to_string()]),
        None,
    );
}
