//! A TCP forwarder that can cut the network between a client and a server, as a partition
//! does: while cut, nothing passes in either direction and new connections get no answer,
//! but nothing is closed either, so a client sees silence (timeouts), not a refusal. When
//! healed, held data flows again, as TCP retransmission delivers it after a short outage.
//! Nothing is dropped by the forwarder itself; a client that gave up meanwhile closes its
//! own connection.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A forwarder on a free loopback port to `target`. Stops when dropped.
#[derive(Debug)]
pub struct NetCut {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl NetCut {
    /// Starts forwarding to `target` (`host:port`).
    pub async fn start(target: &str) -> NetCut {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the forwarder");
        let addr = listener.local_addr().expect("forwarder address");
        let (cut, _) = watch::channel(false);
        let cuts = cut.clone();
        let target = target.to_string();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let state = cuts.subscribe();
                let target = target.clone();
                connections.spawn(async move {
                    let mut state = state;
                    // A connection made during a cut waits, like a SYN with no answer.
                    if wait_healed(&mut state).await.is_err() {
                        return;
                    }
                    let Ok(upstream) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (upstream_read, upstream_write) = upstream.into_split();
                    tokio::join!(
                        pump(client_read, upstream_write, cuts_of(&state)),
                        pump(upstream_read, client_write, cuts_of(&state)),
                    );
                });
                while connections.try_join_next().is_some() {}
            }
        });
        NetCut { addr, cut, task }
    }

    /// `127.0.0.1:PORT`, where clients connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops every byte in both directions, and answers no new connection.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Lets everything flow again.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    /// Cuts for `outage`, then heals.
    pub async fn cut_for(&self, outage: Duration) {
        self.cut();
        tokio::time::sleep(outage).await;
        self.heal();
    }
}

impl Drop for NetCut {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn cuts_of(state: &watch::Receiver<bool>) -> watch::Receiver<bool> {
    state.clone()
}

/// Returns once the network is not cut; `Err` when the forwarder is gone.
async fn wait_healed(state: &mut watch::Receiver<bool>) -> Result<(), ()> {
    state.wait_for(|cut| !*cut).await.map(drop).map_err(drop)
}

/// Copies one direction, holding each chunk while the network is cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if wait_healed(&mut state).await.is_err() {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            // Cut while waiting for data: stop reading until healed.
            _ = state.wait_for(|cut| *cut) => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        // Data read just as the cut began is held until the network heals.
        if wait_healed(&mut state).await.is_err() {
            return;
        }
        let Some(chunk) = buf.get(..n) else { return };
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
}
