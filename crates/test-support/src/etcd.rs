//! A real etcd server started on free loopback ports, for the etcd backend's tests and
//! the HA setups built on it.
//!
//! Tests use Debian's `etcd-server` package (installed by `./test.sh`); `JUMPGATE_ETCD_BIN`
//! overrides the binary. Nothing here is a mock.

use crate::wait::free_port;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// An etcd server process on 127.0.0.1, with its data in a temporary directory that
/// survives [`EtcdServer::stop`]/[`EtcdServer::start_again`] (so a restart keeps data).
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

fn etcd_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("JUMPGATE_ETCD_BIN") {
        return PathBuf::from(bin);
    }
    for candidate in ["/usr/bin/etcd", "/usr/local/bin/etcd"] {
        let path = PathBuf::from(candidate);
        if path.exists() {
            return path;
        }
    }
    PathBuf::from("etcd")
}

/// Spawns one etcd member: client URL `endpoint`, peer URL `peer`, data in `dir/data`,
/// bootstrapping the cluster `initial_cluster` (`name=peer,...`).
fn spawn_member(
    name: &str,
    dir: &std::path::Path,
    endpoint: &str,
    peer: &str,
    initial_cluster: &str,
) -> Child {
    Command::new(etcd_binary())
        .arg(format!("--name={name}"))
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={endpoint}"))
        .arg(format!("--advertise-client-urls={endpoint}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster={initial_cluster}"))
        .arg("--initial-cluster-state=new")
        .arg("--initial-cluster-token=jumpgate-test")
        .arg("--logger=zap")
        .arg("--log-level=error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot start etcd ({}): {err}. Install Debian's etcd-server package \
                 (./test.sh does) or set JUMPGATE_ETCD_BIN",
                etcd_binary().display()
            )
        })
}

impl EtcdServer {
    /// Starts etcd and waits until it answers. Panics with a hint when etcd is missing.
    ///
    /// A "free" port can be taken by a parallel test between our check and etcd's bind,
    /// so a server that exits at start-up is retried on fresh ports.
    pub async fn start() -> EtcdServer {
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut server = EtcdServer {
                child: None,
                dir: tempfile::tempdir().expect("temp dir for etcd"),
                client_port: free_port(),
                peer_port: free_port(),
            };
            match server.try_start().await {
                Ok(()) => return server,
                Err(err) => last_error = err,
            }
        }
        panic!("etcd failed to start 5 times; last: {last_error}");
    }

    /// The client URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Starts the (stopped) server again on the same ports and data.
    pub async fn start_again(&mut self) {
        let mut last_error = String::new();
        for _ in 0..5 {
            match self.try_start().await {
                Ok(()) => return,
                Err(err) => last_error = err,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("etcd failed to restart 5 times; last: {last_error}");
    }

    async fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "etcd is already running");
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = spawn_member(
            "jumpgate-test",
            self.dir.path(),
            &self.endpoint(),
            &peer,
            &format!("jumpgate-test={peer}"),
        );
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
                return Err(format!("etcd exited during start-up with {status}"));
            }
            let endpoint = self.endpoint();
            let ready = async {
                let mut client = etcd_client::Client::connect([endpoint], None).await.ok()?;
                client.status().await.ok()
            };
            if tokio::time::timeout(Duration::from_secs(2), ready)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("etcd did not become ready in 30s".to_string());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the server (like a crash) and waits until it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// A real etcd cluster of several members on loopback (static bootstrap), for the HA
/// topologies built on it (seed 000's first setup: 3 members). Each member can be killed
/// like a crashed host and started again with its data.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    initial_cluster: String,
}

#[derive(Debug)]
struct EtcdMember {
    name: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl EtcdCluster {
    /// Starts `size` members at once (they wait for each other) and waits until every one
    /// answers.
    pub async fn start(size: usize) -> EtcdCluster {
        let members: Vec<EtcdMember> = (0..size)
            .map(|i| EtcdMember {
                name: format!("member-{i}"),
                child: None,
                dir: tempfile::tempdir().expect("temp dir for etcd"),
                client_port: free_port(),
                peer_port: free_port(),
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            initial_cluster,
        };
        for index in 0..size {
            cluster.spawn(index);
        }
        for index in 0..size {
            cluster.wait_ready(index).await;
        }
        cluster
    }

    /// Every member's client URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::endpoint).collect()
    }

    /// The index of the member that leads now.
    pub async fn leader(&self) -> usize {
        let endpoints = self.endpoints();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for (index, endpoint) in endpoints.iter().enumerate() {
                let status = async {
                    let mut client = etcd_client::Client::connect([endpoint.clone()], None)
                        .await
                        .ok()?;
                    client.status().await.ok()
                };
                if let Ok(Some(status)) = tokio::time::timeout(Duration::from_secs(2), status).await
                    && status.leader() == status.header().map(|h| h.member_id()).unwrap_or(0)
                {
                    return index;
                }
            }
            assert!(Instant::now() < deadline, "no etcd leader within 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills member `index` (SIGKILL, like a crash).
    pub async fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members.get_mut(index).and_then(|m| m.child.take()) {
            let _ = child.kill().await;
        }
    }

    /// Starts member `index` again with its data, and waits until it answers.
    pub async fn start_again(&mut self, index: usize) {
        self.spawn(index);
        self.wait_ready(index).await;
    }

    fn spawn(&mut self, index: usize) {
        let initial_cluster = self.initial_cluster.clone();
        let member = self.members.get_mut(index).expect("no such etcd member");
        assert!(member.child.is_none(), "etcd member {index} is running");
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let child = spawn_member(
            &member.name,
            member.dir.path(),
            &member.endpoint(),
            &peer,
            &initial_cluster,
        );
        member.child = Some(child);
    }

    async fn wait_ready(&mut self, index: usize) {
        let endpoint = self.members.get(index).expect("member").endpoint();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.members.get_mut(index).and_then(|m| m.child.as_mut())
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("etcd member {index} exited during start-up with {status}");
            }
            let ready = async {
                let mut client = etcd_client::Client::connect([endpoint.clone()], None)
                    .await
                    .ok()?;
                client.get("health-probe", None).await.ok()
            };
            if tokio::time::timeout(Duration::from_secs(2), ready)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd member {index} did not answer within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl EtcdMember {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
}
