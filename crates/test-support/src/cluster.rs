//! A dev cluster (`jumpgate start --dev`: auth, proxy and this host's SSH service in one
//! process) with users made by `jctl` and logged in by `jsh`.

use crate::bins::Bins;
use crate::daemon::Daemon;
use crate::wait::wait_until;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// The password of every user the tests and benchmarks make.
pub const PASSWORD: &str = "correct horse battery staple";

/// A started dev cluster: the daemon, its data directory and its proxy address.
#[derive(Debug)]
pub struct Cluster {
    pub bins: Bins,
    pub daemon: Daemon,
    pub data: PathBuf,
    pub proxy: String,
}

impl Cluster {
    /// A dev cluster with its state in `dir/data` and its log in `dir/daemon.log`, once
    /// its auth and proxy are ready.
    pub fn start(bins: &Bins, dir: &Path) -> Cluster {
        Cluster::start_at(bins, &dir.join("data"), &dir.join("daemon.log"))
    }

    /// A dev cluster with its state in `data`, logging to `log`.
    pub fn start_at(bins: &Bins, data: &Path, log: &Path) -> Cluster {
        let daemon = Daemon::start(
            bins,
            &["--dev", "--data-dir", data.to_str().expect("UTF-8 path")],
            log,
        );
        let proxy = daemon.wait_for_proxy(data);
        Cluster {
            bins: bins.clone(),
            daemon,
            data: data.to_path_buf(),
            proxy,
        }
    }

    /// [`Cluster::start`] inside `host` of a [`Regions`](crate::Regions) fixture, listening
    /// on the host's 127.0.0.1. Its `bins` run `jctl` and `jsh` inside the host too, so a
    /// timing against it pays the same `ip netns exec` (about 1.7 ms a process here) as
    /// one against the hosts of a topology.
    pub fn start_in(host: &crate::Host, bins: &Bins, dir: &Path) -> Cluster {
        let data = dir.join("data");
        let daemon = Daemon::start_in(
            host,
            bins,
            &["--dev", "--data-dir", data.to_str().expect("UTF-8 path")],
            &dir.join("daemon.log"),
        );
        let proxy = daemon.wait_for_proxy(&data);
        Cluster {
            bins: bins.in_host(host),
            daemon,
            data,
            proxy,
        }
    }

    /// The cluster's TLS CA certificate file (what `jsh login --ca-cert` takes).
    pub fn ca(&self) -> String {
        self.data
            .join("admin/ca.pem")
            .to_str()
            .expect("UTF-8 path")
            .to_string()
    }

    /// `jctl users add NAME --roles access --logins LOGINS --password-stdin`; returns
    /// the otpauth URI.
    pub fn add_user(&self, name: &str, logins: &str) -> String {
        self.add_user_with_roles(name, "access", logins)
    }

    /// `jctl users add NAME --roles ROLES --logins LOGINS --password-stdin`; returns the
    /// otpauth URI.
    pub fn add_user_with_roles(&self, name: &str, roles: &str, logins: &str) -> String {
        self.bins.add_user(&self.data, name, roles, logins)
    }

    /// `jsh login` as `user` (made with [`Cluster::add_user`], whose TOTP secret is in
    /// `otpauth_uri`) into the profile directory `home`.
    pub fn login(&self, home: &Path, user: &str, otpauth_uri: &str) -> Output {
        self.bins.login(
            home,
            &self.proxy,
            &self.data.join("admin/ca.pem"),
            user,
            otpauth_uri,
        )
    }

    /// Waits until `jctl nodes ls` shows the dev node (its first heartbeat); returns
    /// its name.
    pub fn wait_for_dev_node(&self) -> String {
        let name = dev_node_name();
        let mut last = String::new();
        let listed = wait_until(Duration::from_secs(30), || {
            last = self.bins.jctl_ok(&self.data, &["nodes", "ls"]);
            last.lines()
                .any(|line| line.split_whitespace().next() == Some(&name))
        });
        assert!(
            listed,
            "the dev node {name:?} never showed in `jctl nodes ls`:\n{last}\nlog:\n{}",
            self.daemon.log_text()
        );
        name
    }

    /// `jctl create FILE` of `yaml`, written to `dir/FILE_NAME`.
    pub fn create_resource(&self, dir: &Path, file_name: &str, yaml: &str) {
        let path = dir.join(file_name);
        std::fs::write(&path, yaml).expect("write the resource file");
        self.bins
            .jctl_ok(&self.data, &["create", path.to_str().expect("UTF-8 path")]);
    }
}

/// This machine's host name: the name of the dev node (`jumpgate start --dev`).
pub fn dev_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read the host name")
        .trim()
        .to_string()
}
