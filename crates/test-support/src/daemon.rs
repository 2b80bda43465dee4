//! `jumpgate start` as a test or a benchmark runs it.

use crate::bins::Bins;
use crate::process::Process;
use crate::regions::{Host, in_netns};
use crate::wait::{free_port, http_get, wait_until};
use std::path::Path;
use std::time::Duration;

/// A running `jumpgate start`, killed on drop if the test did not stop it.
#[derive(Debug)]
pub struct Daemon {
    pub process: Process,
    /// Where its diagnostics (`/healthz`, `/readyz`, `/metrics`) listen: on 127.0.0.1 of
    /// the root namespace, or of its host's with [`Daemon::start_in`].
    pub diag_port: u16,
    /// The network namespace it runs in, if not the test's.
    netns: Option<String>,
}

impl Daemon {
    /// Starts `jumpgate start ARGS --diag-addr 127.0.0.1:PORT`, logging to `log`, and
    /// waits for `/healthz`. Unless ARGS name them, the auth API and the proxy take any
    /// free port (tests run in parallel; `jctl` reads the address from the data
    /// directory). Retried on a fresh port if a parallel test took the port.
    pub fn start(bins: &Bins, args: &[&str], log: &Path) -> Daemon {
        Daemon::start_with_env(bins, args, &[], log)
    }

    /// [`Daemon::start`] with extra environment variables for the daemon alone (for
    /// example AWS credentials for an S3 recording store), leaving the test's own
    /// environment untouched.
    pub fn start_with_env(bins: &Bins, args: &[&str], env: &[(&str, &str)], log: &Path) -> Daemon {
        Daemon::start_on(None, bins, args, env, log)
    }

    /// [`Daemon::start`] inside `host` of a [`Regions`](crate::Regions) fixture. Its
    /// diagnostics and, unless ARGS name them, its auth API and proxy listen on the host's
    /// 127.0.0.1: give `--auth-addr`/`--proxy-addr` the host's IP (or `0.0.0.0`) for other
    /// hosts to reach them.
    pub fn start_in(host: &Host, bins: &Bins, args: &[&str], log: &Path) -> Daemon {
        Daemon::start_on(Some(host), bins, args, &[], log)
    }

    /// [`Daemon::start_in`] with extra environment variables for the daemon alone.
    pub fn start_in_with_env(
        host: &Host,
        bins: &Bins,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Daemon {
        Daemon::start_on(Some(host), bins, args, env, log)
    }

    fn start_on(
        host: Option<&Host>,
        bins: &Bins,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Daemon {
        for _ in 0..5 {
            if let Some(daemon) = Daemon::try_start(host, bins, args, env, log) {
                return daemon;
            }
        }
        panic!(
            "daemon did not come up; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    fn try_start(
        host: Option<&Host>,
        bins: &Bins,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Option<Daemon> {
        let diag_port = free_port();
        let mut command = bins.jumpgate();
        command
            .envs(env.iter().copied())
            .arg("start")
            .args(args)
            .arg("--diag-addr")
            .arg(format!("127.0.0.1:{diag_port}"));
        for flag in ["--auth-addr", "--proxy-addr"] {
            if !args.contains(&flag) {
                command.args([flag, "127.0.0.1:0"]);
            }
        }
        if let Some(host) = host {
            command = host.wrap(&command);
        }
        let mut daemon = Daemon {
            process: Process::spawn(&mut command, "jumpgate start", log),
            diag_port,
            netns: host.map(|host| host.netns().to_string()),
        };
        let up = wait_until(Duration::from_secs(20), || {
            daemon.process.has_exited()
                || daemon
                    .diag_get("/healthz")
                    .is_some_and(|(status, _)| status == 200)
        });
        if up && !daemon.process.has_exited() {
            return Some(daemon);
        }
        None
    }

    /// `jumpgate start --dev --data-dir DATA`, once its auth API is up (the admin
    /// identity `jctl` uses is written then).
    pub fn start_dev(bins: &Bins, data: &Path, log: &Path) -> Daemon {
        let daemon = Daemon::start(
            bins,
            &["--dev", "--data-dir", data.to_str().expect("UTF-8 path")],
            log,
        );
        daemon.wait_ready(&["auth"], &[&data.join("admin/auth_addr")]);
        daemon
    }

    /// A cluster of auth and proxy (no SSH service) named `edge`, its state in `data`, its
    /// proxy on `proxy_port`; the config and the log (`log_name`) in `dir`. What agents
    /// and proxies of their own join.
    pub fn start_auth_and_proxy(
        bins: &Bins,
        dir: &Path,
        data: &Path,
        proxy_port: u16,
        log_name: &str,
    ) -> Daemon {
        let config = dir.join("cluster.yaml");
        std::fs::write(
            &config,
            format!(
                "version: v3\njumpgate:\n  data_dir: {}\nauth_service:\n  cluster_name: edge\nproxy_service:\n  web_listen_addr: 127.0.0.1:{proxy_port}\n",
                data.display()
            ),
        )
        .unwrap();
        let proxy_addr = format!("127.0.0.1:{proxy_port}");
        let daemon = Daemon::start(
            bins,
            &[
                "-c",
                config.to_str().expect("UTF-8 path"),
                "--proxy-addr",
                &proxy_addr,
            ],
            &dir.join(log_name),
        );
        daemon.wait_ready(&["auth", "proxy"], &[]);
        daemon
    }

    /// Waits up to 30 s until every one of `files` exists and `/readyz` answers 200
    /// naming every one of `services`; fails with the log otherwise.
    pub fn wait_ready(&self, services: &[&str], files: &[&Path]) {
        let ready = wait_until(Duration::from_secs(30), || {
            files.iter().all(|file| file.exists())
                && self.readyz().is_some_and(|(status, body)| {
                    status == 200 && services.iter().all(|service| body.contains(service))
                })
        });
        assert!(
            ready,
            "not ready ({services:?}, {files:?}): {:?}; log:\n{}",
            self.readyz(),
            self.log_text()
        );
    }

    /// Waits until its auth and proxy are ready (with data directory `data`); returns
    /// the proxy's address.
    pub fn wait_for_proxy(&self, data: &Path) -> String {
        let proxy_addr = data.join("proxy_addr");
        self.wait_ready(
            &["auth", "proxy"],
            &[&proxy_addr, &data.join("admin/auth_addr")],
        );
        std::fs::read_to_string(proxy_addr)
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    pub fn readyz(&self) -> Option<(u16, String)> {
        self.diag_get("/readyz")
    }

    /// A GET on its diagnostics port, from inside its namespace.
    fn diag_get(&self, path: &str) -> Option<(u16, String)> {
        match &self.netns {
            None => http_get(self.diag_port, path),
            Some(netns) => in_netns(netns, || http_get(self.diag_port, path)),
        }
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited 0 within 15 s.
    pub fn terminate(&mut self) -> bool {
        self.process
            .terminate(Duration::from_secs(15))
            .is_some_and(|(status, _)| status.success())
    }
}
