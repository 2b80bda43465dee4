//! SSH agent forwarding (`auth-agent-req@openssh.com`, `jsh ssh -A`, `ssh -A`): a Unix
//! socket in a private directory owned by the session's user, named in the session's
//! `SSH_AUTH_SOCK`; each connection to it is relayed to the client's agent over a new
//! `auth-agent@openssh.com` channel. The socket and its directory go away with the
//! session.

use super::process::LoginUser;
use nix::unistd::{Gid, Uid, chown};
use russh::server::Handle;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;
use tracing::debug;

/// A forwarded agent's socket; dropping it stops forwarding and removes the socket.
#[derive(Debug)]
pub(super) struct ForwardedAgent {
    dir: PathBuf,
    socket: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ForwardedAgent {
    /// Listens on a new socket for `user`, relaying to the client through `handle`.
    pub fn start(user: &LoginUser, handle: Handle) -> std::io::Result<ForwardedAgent> {
        let dir = std::env::temp_dir().join(format!("jumpgate-agent-{}", uuid::Uuid::new_v4()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let socket = dir.join("agent.sock");
        let listener = UnixListener::bind(&socket)?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
        let owner = (Some(Uid::from_raw(user.uid)), Some(Gid::from_raw(user.gid)));
        for path in [&dir, &socket] {
            chown(path.as_path(), owner.0, owner.1).map_err(std::io::Error::from)?;
        }
        let task = tokio::spawn(async move {
            while let Ok((mut local, _)) = listener.accept().await {
                let handle = handle.clone();
                tokio::spawn(async move {
                    match handle.channel_open_agent().await {
                        Ok(channel) => {
                            let mut remote = channel.into_stream();
                            let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
                        }
                        Err(err) => debug!(%err, "the client refused an agent channel"),
                    }
                });
            }
        });
        Ok(ForwardedAgent { dir, socket, task })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for ForwardedAgent {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_dir(&self.dir);
    }
}
