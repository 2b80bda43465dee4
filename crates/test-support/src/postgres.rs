//! A real PostgreSQL server in a private cluster, for the PostgreSQL backend's tests.
//!
//! Tests use Debian's `postgresql` package (installed by `./test.sh`): `initdb` and
//! `postgres` from the newest `/usr/lib/postgresql/*/bin` (`JUMPGATE_PG_BIN` overrides the
//! directory). The cluster lives in a temporary directory, listens on a free loopback port
//! (its Unix socket stays inside that directory), requires a password over TCP
//! (SCRAM-SHA-256) and is stopped and removed on drop. PostgreSQL refuses to run as root,
//! so under root the cluster belongs to `nobody`. Nothing here is a mock.

use crate::wait::free_port;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The superuser the tests connect as.
pub const PG_USER: &str = "jumpgate";
/// Its password (SCRAM-SHA-256 over TCP; the cluster is private and on loopback).
pub const PG_PASSWORD: &str = "jumpgate-test-password";
/// The database [`Postgres::start`] creates.
pub const PG_DATABASE: &str = "jumpgate_test";

/// The client's side of [`Postgres::start_tls`]: PEM files.
#[derive(Debug, Clone)]
pub struct PgTls {
    /// The CA that signed the server's and the client's certificates.
    pub ca: PathBuf,
    /// A CA that signed neither.
    pub other_ca: PathBuf,
    /// A client certificate for [`PG_USER`], and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A PostgreSQL server on 127.0.0.1 with its cluster in a temporary directory that
/// survives [`Postgres::stop`]/[`Postgres::start_again`] (so a restart keeps data).
#[derive(Debug)]
pub struct Postgres {
    child: Option<Child>,
    /// `-c` settings added to every start (TLS).
    settings: Vec<String>,
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Uid and gid the cluster runs as when the tests run as root.
    run_as: Option<(u32, u32)>,
}

/// The directory holding `initdb` and `postgres`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("JUMPGATE_PG_BIN") {
        return PathBuf::from(dir);
    }
    // The highest major version installed (Debian puts each under its own directory).
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries are missing: no /usr/lib/postgresql/*/bin/initdb. \
             Install Debian's postgresql package (./test.sh does) or set JUMPGATE_PG_BIN"
        )
    })
}

impl Postgres {
    /// Makes a cluster, starts it and creates [`PG_DATABASE`]; waits (bounded) until it
    /// accepts connections. A port taken by a parallel test between our check and the
    /// server's bind is retried on a fresh one.
    pub async fn start() -> Postgres {
        Postgres::start_with(false).await.0
    }

    /// As [`Postgres::start`], but with PostgreSQL's durable defaults (`fsync`,
    /// `full_page_writes`): what a benchmark must compare against.
    pub async fn start_durable() -> Postgres {
        let (mut server, _) = Postgres::start_with(false).await;
        server.stop().await;
        server.settings = vec!["fsync=on".into(), "full_page_writes=on".into()];
        server.start_again().await;
        server
    }

    /// As [`Postgres::start`], but TCP connections must use TLS with a certificate from
    /// [`PgTls::ca`] whose name is the user's (`cert` authentication): the server's
    /// certificate names `localhost` only, so clients verifying the name connect to
    /// `localhost`, not `127.0.0.1`.
    pub async fn start_tls() -> (Postgres, PgTls) {
        let (server, tls) = Postgres::start_with(true).await;
        (server, tls.expect("TLS files"))
    }

    async fn start_with(tls: bool) -> (Postgres, Option<PgTls>) {
        let bin = bin_dir();
        let run_as = nix::unistd::geteuid().is_root().then_some((65534, 65534));
        let dir = match run_as {
            // `nobody` must reach the directory: keep it out of a private TMPDIR.
            Some(_) => tempfile::Builder::new()
                .prefix("jumpgate-pg")
                .tempdir_in("/tmp"),
            None => tempfile::Builder::new().prefix("jumpgate-pg").tempdir(),
        }
        .expect("temp dir for PostgreSQL");
        let mut server = Postgres {
            child: None,
            settings: Vec::new(),
            bin,
            dir,
            port: 0,
            run_as,
        };
        server.init().await;
        let files = if tls {
            Some(server.require_tls())
        } else {
            None
        };
        let mut last_error = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.try_start().await {
                Ok(()) => {
                    server.create_database().await;
                    return (server, files);
                }
                Err(err) => last_error = err,
            }
        }
        panic!("PostgreSQL failed to start 5 times; last: {last_error}");
    }

    /// A hot standby of this server: a copy made with `pg_basebackup -R`, streaming from
    /// it, read-only until [`Postgres::promote`]. Started on a port of its own.
    pub async fn start_standby(&self) -> Postgres {
        let run_as = self.run_as;
        let dir = match run_as {
            Some(_) => tempfile::Builder::new()
                .prefix("jumpgate-pg-standby")
                .tempdir_in("/tmp"),
            None => tempfile::Builder::new()
                .prefix("jumpgate-pg-standby")
                .tempdir(),
        }
        .expect("temp dir for the standby");
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("handing the standby directory to nobody");
        }
        let mut standby = Postgres {
            child: None,
            settings: self.settings.clone(),
            bin: self.bin.clone(),
            dir,
            port: 0,
            run_as,
        };
        let mut command = standby.command("pg_basebackup");
        command
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                PG_USER,
            ])
            .arg("-D")
            .arg(standby.data_dir())
            // A fast checkpoint: the default spreads it over minutes.
            .args(["-R", "-X", "stream", "--no-sync", "--checkpoint=fast"])
            .env("PGPASSWORD", PG_PASSWORD);
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::from(command).output(),
        )
        .await
        .expect("pg_basebackup did not finish in 60s")
        .expect("running pg_basebackup");
        assert!(
            output.status.success(),
            "pg_basebackup failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let mut last_error = String::new();
        for _ in 0..5 {
            standby.port = free_port();
            match standby.try_start().await {
                Ok(()) => return standby,
                Err(err) => last_error = err,
            }
        }
        panic!("the standby failed to start 5 times; last: {last_error}");
    }

    /// Makes a standby the primary (`pg_promote()`, waiting until it takes writes).
    pub async fn promote(&self) {
        let client = self
            .client("postgres")
            .await
            .unwrap_or_else(|err| panic!("connecting to the standby: {err}"));
        let rows = client
            .query("SELECT pg_promote(true, 30)", &[])
            .await
            .unwrap_or_else(|err| panic!("pg_promote: {err}"));
        let promoted: bool = rows.first().map(|row| row.get(0)).unwrap_or(false);
        assert!(promoted, "the standby was not promoted within 30 s");
    }

    /// Makes every commit wait until a standby has it on disk (`synchronous_standby_names =
    /// '*'`, with the default `synchronous_commit = on`): a write this server acknowledged
    /// survives its death. Call it once the standby streams, or commits wait for one.
    pub async fn make_synchronous(&self) {
        let client = self.client("postgres").await.expect("primary");
        // One statement each: a multi-statement string runs as one transaction, which
        // ALTER SYSTEM refuses.
        for statement in [
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
            "SELECT pg_reload_conf()",
        ] {
            client
                .batch_execute(statement)
                .await
                .expect("turning on synchronous replication");
        }
        // Reloaded asynchronously: wait until it applies.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let row = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                    &[],
                )
                .await
                .expect("pg_stat_replication");
            if row.get::<_, i64>(0) > 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no synchronous standby after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server at once (SIGKILL), as a crashed host: no shutdown checkpoint, no
    /// goodbye to clients or standbys.
    pub async fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            let log = self.log_path();
            tokio::task::spawn_blocking(move || shut_down(child, Signal::SIGKILL, &log))
                .await
                .expect("killing PostgreSQL");
        }
    }

    /// Waits (bounded) until `standby` has replayed everything this server has written, so
    /// a failover test loses nothing to replication lag it did not mean to test.
    pub async fn wait_replicated(&self, standby: &Postgres) {
        let primary = self.client("postgres").await.expect("primary");
        let row = primary
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .expect("primary LSN");
        let target: String = row.get(0);
        let replica = standby.client("postgres").await.expect("standby");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let caught_up: bool = replica
                .query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&target],
                )
                .await
                .expect("standby LSN")
                .get(0);
            if caught_up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the standby did not catch up in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A libpq-style connection URL without the password, e.g.
    /// `postgresql://jumpgate@127.0.0.1:41234/jumpgate_test`.
    pub fn conn_string(&self) -> String {
        format!(
            "postgresql://{PG_USER}@127.0.0.1:{}/{PG_DATABASE}",
            self.port
        )
    }

    /// The password of [`PG_USER`].
    pub fn password(&self) -> &'static str {
        PG_PASSWORD
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connects as [`PG_USER`] to `database`, for tests that look at the tables directly:
    /// through the cluster's Unix socket, so it works whatever TCP requires.
    pub async fn client(&self, database: &str) -> Result<tokio_postgres::Client, String> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(self.dir.path())
            .port(self.port)
            .user(PG_USER)
            .password(PG_PASSWORD)
            .dbname(database)
            .connect_timeout(Duration::from_secs(2));
        let (client, connection) = tokio::time::timeout(
            Duration::from_secs(3),
            config.connect(tokio_postgres::NoTls),
        )
        .await
        .map_err(|_| "no answer within 3s".to_string())?
        .map_err(|err| err.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Stops the server with a fast shutdown (clients are disconnected) and waits until
    /// it is gone.
    pub async fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            let log = self.log_path();
            tokio::task::spawn_blocking(move || shut_down(child, Signal::SIGINT, &log))
                .await
                .expect("stopping PostgreSQL");
        }
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
        panic!("PostgreSQL failed to restart 5 times; last: {last_error}");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command
            .current_dir(self.dir.path())
            .env_remove("PGDATA")
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            // std drops root's supplementary groups when it sets the uid.
            command.uid(uid).gid(gid);
        }
        command
    }

    async fn init(&mut self) {
        let password_file = self.dir.path().join("password");
        std::fs::write(&password_file, PG_PASSWORD).expect("writing the password file");
        if let Some((uid, gid)) = self.run_as {
            for path in [self.dir.path(), password_file.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .expect("handing the cluster directory to nobody");
            }
        }
        let mut command = self.command("initdb");
        command
            .arg("-D")
            .arg(self.data_dir())
            .arg(format!("--username={PG_USER}"))
            .arg(format!("--pwfile={}", password_file.display()))
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["--encoding=UTF8", "--no-locale", "--no-sync"]);
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::from(command).output(),
        )
        .await
        .expect("initdb did not finish in 60s")
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", self.bin.join("initdb").display()));
        assert!(
            output.status.success(),
            "initdb failed with {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "PostgreSQL is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("PostgreSQL log file");
        let log_err = log.try_clone().expect("PostgreSQL log file");
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            // A throwaway cluster: durability costs time and buys nothing here.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=40", "-c", "shared_buffers=16MB"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdout(log)
            .stderr(log_err);
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", self.bin.display()));
        self.child = Some(child);
        let ready = self.wait_ready().await;
        if ready.is_err() {
            self.stop().await;
        }
        ready
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "postgres exited during start-up with {status}; log:\n{}",
                    log_tail(&self.log_path())
                ));
            }
            let last = match self.client("postgres").await {
                Ok(client) => match client.simple_query("SELECT 1").await {
                    Ok(_) => return Ok(()),
                    Err(err) => err.to_string(),
                },
                Err(err) => err,
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "PostgreSQL did not accept connections in 30s ({last}); log:\n{}",
                    log_tail(&self.log_path())
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes a CA, a server certificate for `localhost` and a client certificate for
    /// [`PG_USER`], and lets TCP clients in only over TLS with that client certificate.
    fn require_tls(&mut self) -> PgTls {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca = |name: &str| {
            let key = KeyPair::generate().expect("CA key");
            let mut params = CertificateParams::new(Vec::new()).expect("CA params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.self_signed(&key).expect("CA certificate");
            (cert.pem(), Issuer::new(params, key))
        };
        let leaf = |issuer: &Issuer<'_, KeyPair>, names: Vec<String>, common_name: &str| {
            let key = KeyPair::generate().expect("leaf key");
            let mut params = CertificateParams::new(names).expect("leaf params");
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            let cert = params.signed_by(&key, issuer).expect("leaf certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (ca_pem, issuer) = ca("Jumpgate test PostgreSQL CA");
        let (other_ca_pem, _) = ca("Some other CA");
        let (server_cert, server_key) = leaf(&issuer, vec!["localhost".into()], "localhost");
        let (client_cert, client_key) = leaf(&issuer, Vec::new(), PG_USER);

        // The server's files belong to the user it runs as, the key 0600 (postgres insists).
        let data = self.data_dir();
        let server_files = [
            ("server.crt", server_cert),
            ("server.key", server_key),
            ("root.crt", ca_pem.clone()),
        ];
        for (name, contents) in server_files {
            let path = data.join(name);
            std::fs::write(&path, contents).expect("writing a server TLS file");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("server TLS file mode");
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown TLS file");
            }
        }
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 cert\n",
        )
        .expect("writing pg_hba.conf");
        self.settings = vec![
            "ssl=on".into(),
            "ssl_cert_file=server.crt".into(),
            "ssl_key_file=server.key".into(),
            "ssl_ca_file=root.crt".into(),
        ];

        // The client's files, where the test (root or not) reads them.
        let client_dir = self.dir.path().join("client");
        std::fs::create_dir_all(&client_dir).expect("client TLS directory");
        let write = |name: &str, contents: &str| {
            let path = client_dir.join(name);
            std::fs::write(&path, contents).expect("writing a client TLS file");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("client TLS file mode");
            path
        };
        PgTls {
            ca: write("ca.pem", &ca_pem),
            other_ca: write("other-ca.pem", &other_ca_pem),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
        }
    }

    async fn create_database(&self) {
        let client = self
            .client("postgres")
            .await
            .unwrap_or_else(|err| panic!("connecting to the new cluster: {err}"));
        client
            .simple_query(&format!("CREATE DATABASE {PG_DATABASE}"))
            .await
            .unwrap_or_else(|err| panic!("CREATE DATABASE {PG_DATABASE}: {err}"));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate shutdown: the children exit with the postmaster, so nothing is left
        // holding the directory that TempDir removes next.
        if let Some(child) = self.child.take() {
            shut_down(child, Signal::SIGQUIT, &self.log_path());
        }
    }
}

/// Signals the postmaster and waits up to 10 s for it to exit, then kills it.
fn shut_down(mut child: Child, signal: Signal, log: &Path) {
    let pid = i32::try_from(child.id()).map(Pid::from_raw);
    if let Ok(pid) = pid {
        let _ = kill(pid, signal);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "PostgreSQL did not stop within 10s after {signal}; killing it. Log:\n{}",
        log_tail(log)
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(20);
    lines.into_iter().skip(skip).collect::<Vec<_>>().join("\n")
}
