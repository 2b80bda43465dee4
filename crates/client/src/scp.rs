//! `jsh scp`: copying files to and from a node, as OpenSSH's `scp`, over the node's
//! `sftp` subsystem (OpenSSH's `sftp-server`, run as the login) with `russh-sftp`.
//!
//! SFTP rather than the classic `scp -t`/`scp -f` exchange, as `scp` itself does since
//! OpenSSH 9.0: one protocol for both directions, a status code for every failure, and
//! no remote shell that would interpret the paths.
//!
//! - [`CopyPlan::parse`]: which arguments are on a node (`[LOGIN@]NODE:PATH`: a `:`
//!   before any `/`, as scp decides), and that exactly one side is.
//! - [`open_sftp`]: the subsystem. A node that refuses it (the roles' `ssh_file_copy`)
//!   writes why on the channel's stderr before failing the request; that reason becomes
//!   [`ScpError::Refused`].
//! - [`copy`]: files stream in chunks with several SFTP requests in flight, never whole
//!   in memory; the mode bits are kept (set after the data, so the umask and an existing
//!   file's mode do not win); directories only with `recursive`. One source failing does
//!   not stop the others: failures are collected in [`CopyReport::errors`].
//! - Names a node lists are checked before they become local paths (no `/`, `.`, `..`).

use crate::error::ClientError;
use crate::ssh::SshConnection;
use crate::web::error_chain;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use russh::ChannelMsg;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::{Config as SftpConfig, SftpSession};
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the node may take to answer the subsystem request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one SFTP request may take.
const REQUEST_TIMEOUT_SECS: u64 = 60;
/// The chunk read from a local file and handed to SFTP at a time.
const CHUNK_LEN: usize = 256 * 1024;
/// Directory depth at which a recursive copy stops (a symbolic link loop, most likely),
/// as OpenSSH's sftp client.
const MAX_DEPTH: usize = 64;

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
/// The mode bits kept: permissions, setuid, setgid, sticky.
const MODE_BITS: u32 = 0o7777;

/// What can go wrong copying files. Whole-copy failures end [`copy`]; failures of one
/// source or one file in a tree are collected in [`CopyReport::errors`].
#[derive(Debug, thiserror::Error)]
pub enum ScpError {
    /// Reaching or logging in to the node.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The arguments do not describe a copy jsh can make.
    #[error("{0}")]
    Usage(String),
    /// The node refused to start file copy; `reason` is what it said.
    #[error("node {node} refused file copy: {reason}")]
    Refused { node: String, reason: String },
    /// An operation on a path on the node failed (the node's SFTP status).
    #[error("{node}:{path}: {reason}")]
    Remote {
        node: String,
        path: String,
        reason: String,
    },
    /// An operation on a local path failed.
    #[error("{}: {reason}", .path.display())]
    Local { path: PathBuf, reason: String },
    /// The SFTP session itself failed (connection lost, protocol error, time-out).
    #[error("the SFTP session with node {node} failed: {reason}")]
    Session { node: String, reason: String },
}

/// `[LOGIN@]NODE:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePath {
    pub login: Option<String>,
    pub node: String,
    /// As given: relative paths are from the login's home directory; empty is the home.
    pub path: String,
}

/// One `jsh scp` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Remote(RemotePath),
}

impl Location {
    /// As scp: remote if a `:` comes before any `/` and not first (`./a:b` is local);
    /// `[...]` protects colons (`[::1]:path`). The login is what comes before the last
    /// `@` of the host part.
    pub fn parse(arg: &str) -> Location {
        let local = || Location::Local(PathBuf::from(arg));
        let mut in_brackets = false;
        for (at, c) in arg.char_indices() {
            match c {
                '[' => in_brackets = true,
                ']' => in_brackets = false,
                '/' if !in_brackets => return local(),
                ':' if !in_brackets => {
                    let (Some(host), Some(path)) = (arg.get(..at), arg.get(at + 1..)) else {
                        return local();
                    };
                    let (login, node) = match host.rsplit_once('@') {
                        Some((login, node)) => (Some(login).filter(|l| !l.is_empty()), node),
                        None => (None, host),
                    };
                    let node = node.trim_start_matches('[').trim_end_matches(']');
                    if node.is_empty() {
                        return local();
                    }
                    return Location::Remote(RemotePath {
                        login: login.map(str::to_string),
                        node: node.to_string(),
                        path: path.to_string(),
                    });
                }
                _ => {}
            }
        }
        local()
    }
}

/// Which way the files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    /// Local sources to a path on the node.
    Upload {
        sources: Vec<PathBuf>,
        target: String,
    },
    /// Paths on the node to a local path.
    Download {
        sources: Vec<String>,
        target: PathBuf,
    },
}

/// A copy between this machine and one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPlan {
    /// The login given with the remote paths, if any.
    pub login: Option<String>,
    pub node: String,
    pub direction: Direction,
}

impl CopyPlan {
    /// `SOURCE... TARGET`: either the target is remote and every source local, or the
    /// target is local and every source on the same node with the same login.
    pub fn parse(args: &[String]) -> Result<CopyPlan, ScpError> {
        let usage = |text: &str| Err(ScpError::Usage(text.to_string()));
        let Some((target, sources)) = args.split_last() else {
            return usage("give a SOURCE and a TARGET: jsh scp [-r] SOURCE... TARGET");
        };
        if sources.is_empty() {
            return usage("give a SOURCE and a TARGET: jsh scp [-r] SOURCE... TARGET");
        }
        let sources: Vec<Location> = sources.iter().map(|arg| Location::parse(arg)).collect();
        match Location::parse(target) {
            Location::Remote(target) => {
                let mut local = Vec::new();
                for source in sources {
                    match source {
                        Location::Local(path) => local.push(path),
                        Location::Remote(_) => {
                            return usage(
                                "copying between two nodes is not supported: copy to this machine first, then from it",
                            );
                        }
                    }
                }
                Ok(CopyPlan {
                    login: target.login,
                    node: target.node,
                    direction: Direction::Upload {
                        sources: local,
                        target: target.path,
                    },
                })
            }
            Location::Local(target) => {
                let mut remote: Vec<RemotePath> = Vec::new();
                for source in sources {
                    match source {
                        Location::Remote(path) => remote.push(path),
                        Location::Local(path) => {
                            return Err(ScpError::Usage(format!(
                                "{} is a local path: one side must be on a node, written [LOGIN@]NODE:PATH (for a local copy use cp)",
                                path.display()
                            )));
                        }
                    }
                }
                let Some(first) = remote.first().cloned() else {
                    return usage("give a SOURCE and a TARGET: jsh scp [-r] SOURCE... TARGET");
                };
                if remote
                    .iter()
                    .any(|path| path.node != first.node || path.login != first.login)
                {
                    return usage(
                        "the remote sources must all be on one node, with one login: run jsh scp once per node",
                    );
                }
                Ok(CopyPlan {
                    login: first.login,
                    node: first.node,
                    direction: Direction::Download {
                        sources: remote.into_iter().map(|path| path.path).collect(),
                        target,
                    },
                })
            }
        }
    }
}

/// How to copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// Copy directories with their contents (`-r`).
    pub recursive: bool,
    /// Show a progress bar per file on stderr (the caller checks it is a terminal).
    pub progress: bool,
}

/// What a copy did.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// Files copied whole.
    pub files: u64,
    pub bytes: u64,
    /// The sources and files that failed, in order.
    pub errors: Vec<ScpError>,
}

/// Starts the `sftp` subsystem on a new channel. A refusal carries what the node wrote
/// on the channel's stderr (`jumpgate: access denied: file copy ...`).
pub async fn open_sftp(connection: &SshConnection) -> Result<SftpSession, ScpError> {
    let node = connection.node().to_string();
    let session_error = |reason: String| ScpError::Session {
        node: node.clone(),
        reason,
    };
    let mut channel = connection.open_session_channel().await?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|err| session_error(error_chain(&err)))?;
    let mut stderr = Vec::new();
    let answer = tokio::time::timeout(REPLY_TIMEOUT, async {
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => return Ok(()),
                Some(ChannelMsg::ExtendedData { data, .. }) => stderr.extend_from_slice(&data),
                Some(ChannelMsg::Failure) => return Err("refused the sftp subsystem"),
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    return Err("closed the channel instead of starting the sftp subsystem");
                }
                Some(_) => {}
            }
        }
    })
    .await;
    match answer {
        Ok(Ok(())) => {}
        Ok(Err(what)) => {
            let said = String::from_utf8_lossy(&stderr);
            let said = said.trim();
            let reason = match said.strip_prefix("jumpgate: ") {
                Some(reason) => reason.to_string(),
                None if said.is_empty() => format!("it {what}"),
                None => said.to_string(),
            };
            return Err(ScpError::Refused { node, reason });
        }
        Err(_) => {
            return Err(session_error(format!(
                "no answer to the sftp subsystem request in {} s",
                REPLY_TIMEOUT.as_secs()
            )));
        }
    }
    let config = SftpConfig {
        request_timeout_secs: REQUEST_TIMEOUT_SECS,
        // Larger writes than russh-sftp's default (32 KiB): OpenSSH's sftp-server takes
        // up to 256 KiB, and fewer round trips matter through the proxy.
        max_write_packet_len: 128 * 1024,
        ..SftpConfig::default()
    };
    SftpSession::new_with_config(channel.into_stream(), config)
        .await
        .map_err(|err| session_error(err.to_string()))
}

/// Copies as `direction` says over a new SFTP session on `connection`.
pub async fn copy(
    connection: &SshConnection,
    direction: &Direction,
    options: &CopyOptions,
) -> Result<CopyReport, ScpError> {
    let sftp = open_sftp(connection).await?;
    let mut copier = Copier {
        sftp,
        node: connection.node().to_string(),
        options: *options,
        report: CopyReport::default(),
        buffer: vec![0; CHUNK_LEN],
    };
    let outcome = match direction {
        Direction::Upload { sources, target } => copier.upload(sources, target).await,
        Direction::Download { sources, target } => copier.download(sources, target).await,
    };
    let _ = copier.sftp.close().await;
    outcome.map(|()| copier.report)
}

struct Copier {
    sftp: SftpSession,
    node: String,
    options: CopyOptions,
    report: CopyReport,
    buffer: Vec<u8>,
}

impl Copier {
    fn remote_error(&self, path: &str, err: SftpError) -> ScpError {
        match err {
            SftpError::Status(status) => ScpError::Remote {
                node: self.node.clone(),
                path: path.to_string(),
                reason: status_reason(status.status_code, &status.error_message),
            },
            other => ScpError::Session {
                node: self.node.clone(),
                reason: other.to_string(),
            },
        }
    }

    fn remote_io_error(&self, path: &str, err: &std::io::Error) -> ScpError {
        self.remote(path, err.to_string())
    }

    fn remote(&self, path: &str, reason: impl Into<String>) -> ScpError {
        ScpError::Remote {
            node: self.node.clone(),
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    /// The node's attributes of `path` (following links); `None` if it does not exist.
    async fn remote_stat(&self, path: &str) -> Result<Option<FileAttributes>, ScpError> {
        match self.sftp.metadata(path).await {
            Ok(attrs) => Ok(Some(attrs)),
            Err(SftpError::Status(status)) if status.status_code == StatusCode::NoSuchFile => {
                Ok(None)
            }
            Err(err) => Err(self.remote_error(path, err)),
        }
    }

    async fn set_remote_mode(&self, path: &str, mode: u32) -> Result<(), ScpError> {
        let attrs = FileAttributes {
            permissions: Some(mode & MODE_BITS),
            ..FileAttributes::empty()
        };
        self.sftp
            .set_metadata(path, attrs)
            .await
            .map_err(|err| self.remote_error(path, err))
    }

    fn progress_bar(&self, name: &str, len: u64) -> ProgressBar {
        if !self.options.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{wide_msg} {percent:>3}% {bytes:>10} {binary_bytes_per_sec:>12} {eta:>4} [{bar:24}]",
        )
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(name.to_string());
        bar
    }

    /// Leaves the bar's last state on its own line, as scp does for every file.
    fn end_progress_bar(&self, bar: &ProgressBar, completed: bool) {
        if completed {
            bar.finish();
        } else {
            bar.abandon();
        }
        if self.options.progress {
            eprintln!();
        }
    }

    // ---- upload ----

    async fn upload(&mut self, sources: &[PathBuf], target: &str) -> Result<(), ScpError> {
        let target = remote_path(target);
        let into_dir = self
            .remote_stat(&target)
            .await?
            .is_some_and(|attrs| is_dir(&attrs));
        if sources.len() > 1 && !into_dir {
            return Err(self.remote(
                &target,
                "not a directory (several sources need an existing directory as the target)",
            ));
        }
        for source in sources {
            if let Err(err) = self.upload_one(source, &target, into_dir).await {
                self.report.errors.push(err);
            }
        }
        Ok(())
    }

    async fn upload_one(
        &mut self,
        source: &Path,
        target: &str,
        into_dir: bool,
    ) -> Result<(), ScpError> {
        let meta = tokio::fs::metadata(source)
            .await
            .map_err(local_error(source))?;
        let remote = if into_dir {
            join_remote(target, &local_name(source)?)
        } else {
            target.to_string()
        };
        if meta.is_dir() {
            if !self.options.recursive {
                return Err(ScpError::Local {
                    path: source.to_path_buf(),
                    reason: "is a directory (give -r to copy directories)".to_string(),
                });
            }
            self.upload_tree(source, remote, meta.permissions().mode(), 0)
                .await
        } else if meta.is_file() {
            self.upload_file(source, &remote, &meta).await
        } else {
            Err(ScpError::Local {
                path: source.to_path_buf(),
                reason: "not a regular file".to_string(),
            })
        }
    }

    async fn upload_tree(
        &mut self,
        source: &Path,
        remote: String,
        mode: u32,
        depth: usize,
    ) -> Result<(), ScpError> {
        if depth >= MAX_DEPTH {
            return Err(ScpError::Local {
                path: source.to_path_buf(),
                reason: format!("more than {MAX_DEPTH} directories deep (a symbolic link loop?)"),
            });
        }
        match self.remote_stat(&remote).await? {
            Some(attrs) if is_dir(&attrs) => {}
            Some(_) => return Err(self.remote(&remote, "exists and is not a directory")),
            None => self
                .sftp
                .create_dir(remote.as_str())
                .await
                .map_err(|err| self.remote_error(&remote, err))?,
        }
        let mut names = Vec::new();
        let mut entries = tokio::fs::read_dir(source)
            .await
            .map_err(local_error(source))?;
        while let Some(entry) = entries.next_entry().await.map_err(local_error(source))? {
            names.push(entry.file_name());
        }
        names.sort();
        for name in names {
            let path = source.join(&name);
            let Some(name) = name.to_str() else {
                self.report.errors.push(ScpError::Local {
                    path,
                    reason: "the name is not UTF-8, which SFTP paths must be".to_string(),
                });
                continue;
            };
            let child = join_remote(&remote, name);
            let outcome = match tokio::fs::metadata(&path).await {
                Err(err) => Err(local_error(&path)(err)),
                Ok(meta) if meta.is_dir() => {
                    Box::pin(self.upload_tree(&path, child, meta.permissions().mode(), depth + 1))
                        .await
                }
                Ok(meta) if meta.is_file() => self.upload_file(&path, &child, &meta).await,
                Ok(_) => Err(ScpError::Local {
                    path,
                    reason: "not a regular file; skipped".to_string(),
                }),
            };
            if let Err(err) = outcome {
                self.report.errors.push(err);
            }
        }
        // Last, since the mode may not let us write into it.
        self.set_remote_mode(&remote, mode).await
    }

    async fn upload_file(
        &mut self,
        source: &Path,
        remote: &str,
        meta: &std::fs::Metadata,
    ) -> Result<(), ScpError> {
        let mode = meta.permissions().mode() & MODE_BITS;
        let mut local = tokio::fs::File::open(source)
            .await
            .map_err(local_error(source))?;
        let attrs = FileAttributes {
            permissions: Some(mode),
            ..FileAttributes::empty()
        };
        let mut file = self
            .sftp
            .open_with_flags_and_attributes(
                remote,
                OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
                attrs,
            )
            .await
            .map_err(|err| self.remote_error(remote, err))?;
        let bar = self.progress_bar(&display_name(&source.to_string_lossy()), meta.len());
        let mut sent = 0u64;
        let copied: Result<(), ScpError> = async {
            loop {
                let n = local
                    .read(&mut self.buffer)
                    .await
                    .map_err(local_error(source))?;
                if n == 0 {
                    break;
                }
                let chunk = self.buffer.get(..n).unwrap_or_default();
                file.write_all(chunk)
                    .await
                    .map_err(|err| self.remote_io_error(remote, &err))?;
                sent = sent.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
                bar.set_position(sent);
            }
            // Waits for every write to be acknowledged, then closes the handle.
            file.shutdown()
                .await
                .map_err(|err| self.remote_io_error(remote, &err))
        }
        .await;
        if let Err(err) = copied {
            self.end_progress_bar(&bar, false);
            return Err(err);
        }
        // The mode given at open was masked by the umask, and ignored if the file existed.
        self.set_remote_mode(remote, mode).await?;
        self.end_progress_bar(&bar, true);
        self.report.files += 1;
        self.report.bytes = self.report.bytes.saturating_add(sent);
        Ok(())
    }

    // ---- download ----

    async fn download(&mut self, sources: &[String], target: &Path) -> Result<(), ScpError> {
        let into_dir = match tokio::fs::metadata(target).await {
            Ok(meta) => meta.is_dir(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
            Err(err) => return Err(local_error(target)(err)),
        };
        if sources.len() > 1 && !into_dir {
            return Err(ScpError::Local {
                path: target.to_path_buf(),
                reason:
                    "not a directory (several sources need an existing directory as the target)"
                        .to_string(),
            });
        }
        for source in sources {
            if let Err(err) = self.download_one(source, target, into_dir).await {
                self.report.errors.push(err);
            }
        }
        Ok(())
    }

    async fn download_one(
        &mut self,
        source: &str,
        target: &Path,
        into_dir: bool,
    ) -> Result<(), ScpError> {
        let source = remote_path(source);
        let attrs = self
            .sftp
            .metadata(source.as_str())
            .await
            .map_err(|err| self.remote_error(&source, err))?;
        let local = if into_dir {
            target.join(self.remote_name(&source).await?)
        } else {
            target.to_path_buf()
        };
        if is_dir(&attrs) {
            if !self.options.recursive {
                return Err(self.remote(&source, "is a directory (give -r to copy directories)"));
            }
            self.download_tree(&source, local, mode_of(&attrs, 0o755), 0)
                .await
        } else if is_regular(&attrs) {
            self.download_file(&source, &local, &attrs).await
        } else {
            Err(self.remote(&source, "not a regular file"))
        }
    }

    /// The last component of `path` on the node, checked to be a plain name.
    async fn remote_name(&self, path: &str) -> Result<String, ScpError> {
        let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let name = if name.is_empty() || name == "." || name == ".." {
            let real = self
                .sftp
                .canonicalize(path)
                .await
                .map_err(|err| self.remote_error(path, err))?;
            real.trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string()
        } else {
            name.to_string()
        };
        if is_plain_name(&name) {
            Ok(name)
        } else {
            Err(self.remote(path, "has no name to copy it under; give a target name"))
        }
    }

    async fn download_tree(
        &mut self,
        source: &str,
        local: PathBuf,
        mode: u32,
        depth: usize,
    ) -> Result<(), ScpError> {
        if depth >= MAX_DEPTH {
            return Err(self.remote(
                source,
                format!("more than {MAX_DEPTH} directories deep (a symbolic link loop?)"),
            ));
        }
        match tokio::fs::metadata(&local).await {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(ScpError::Local {
                    path: local,
                    reason: "exists and is not a directory".to_string(),
                });
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                tokio::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&local)
                    .await
                    .map_err(local_error(&local))?;
            }
            Err(err) => return Err(local_error(&local)(err)),
        }
        let listing = self
            .sftp
            .read_dir(source)
            .await
            .map_err(|err| self.remote_error(source, err))?;
        let mut entries: Vec<(String, FileAttributes)> = listing
            .map(|entry| (entry.file_name(), entry.metadata()))
            .filter(|(name, _)| name != "." && name != "..")
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, attrs) in entries {
            if !is_plain_name(&name) {
                self.report.errors.push(self.remote(
                    source,
                    format!(
                        "listed an entry named {name:?}, which is not a plain file name; skipped"
                    ),
                ));
                continue;
            }
            let child = join_remote(source, &name);
            let outcome = async {
                let attrs = if is_symlink(&attrs) {
                    self.sftp
                        .metadata(child.as_str())
                        .await
                        .map_err(|err| self.remote_error(&child, err))?
                } else {
                    attrs
                };
                let child_local = local.join(&name);
                if is_dir(&attrs) {
                    Box::pin(self.download_tree(
                        &child,
                        child_local,
                        mode_of(&attrs, 0o755),
                        depth + 1,
                    ))
                    .await
                } else if is_regular(&attrs) {
                    self.download_file(&child, &child_local, &attrs).await
                } else {
                    Err(self.remote(&child, "not a regular file; skipped"))
                }
            }
            .await;
            if let Err(err) = outcome {
                self.report.errors.push(err);
            }
        }
        // Last, since the mode may not let us write into it.
        tokio::fs::set_permissions(&local, std::fs::Permissions::from_mode(mode))
            .await
            .map_err(local_error(&local))
    }

    async fn download_file(
        &mut self,
        source: &str,
        local: &Path,
        attrs: &FileAttributes,
    ) -> Result<(), ScpError> {
        let mode = mode_of(attrs, 0o644);
        let mut file = self
            .sftp
            .open(source)
            .await
            .map_err(|err| self.remote_error(source, err))?;
        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(local)
            .await
            .map_err(local_error(local))?;
        let bar = self.progress_bar(&display_name(source), attrs.size.unwrap_or(0));
        let mut received = 0u64;
        let copied: Result<(), ScpError> = async {
            loop {
                let n = file
                    .read(&mut self.buffer)
                    .await
                    .map_err(|err| self.remote_io_error(source, &err))?;
                if n == 0 {
                    break;
                }
                let chunk = self.buffer.get(..n).unwrap_or_default();
                out.write_all(chunk).await.map_err(local_error(local))?;
                received = received.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
                bar.set_position(received);
            }
            // tokio writes in the background: flush to see the last write's outcome.
            out.flush().await.map_err(local_error(local))
        }
        .await;
        let _ = file.shutdown().await;
        if let Err(err) = copied {
            self.end_progress_bar(&bar, false);
            return Err(err);
        }
        // The mode given at open was masked by the umask, and ignored if the file existed.
        tokio::fs::set_permissions(local, std::fs::Permissions::from_mode(mode))
            .await
            .map_err(local_error(local))?;
        self.end_progress_bar(&bar, true);
        self.report.files += 1;
        self.report.bytes = self.report.bytes.saturating_add(received);
        Ok(())
    }
}

fn local_error(path: &Path) -> impl FnOnce(std::io::Error) -> ScpError {
    let path = path.to_path_buf();
    move |err| ScpError::Local {
        reason: io_reason(&err),
        path,
    }
}

/// The system's message without the ` (os error N)` tail, as scp prints it.
fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(at) => text.get(..at).unwrap_or(&text).to_string(),
        None => text,
    }
}

fn status_reason(code: StatusCode, message: &str) -> String {
    match code {
        StatusCode::NoSuchFile => "No such file or directory".to_string(),
        StatusCode::PermissionDenied => "Permission denied".to_string(),
        _ if !message.is_empty() => message.to_string(),
        other => other.to_string(),
    }
}

/// A path as the node's sftp-server takes it: relative paths are from the login's home
/// directory (its working directory), so `~` and `~/` are dropped, and an empty path is
/// the home directory itself.
fn remote_path(path: &str) -> String {
    let path = match path.strip_prefix("~/") {
        Some(rest) => rest,
        None if path == "~" => "",
        None => path,
    };
    if path.is_empty() {
        ".".to_string()
    } else {
        path.to_string()
    }
}

fn join_remote(dir: &str, name: &str) -> String {
    if dir == "." {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The name a local source gets on the node: its last component (of the absolute path
/// for `.` and `..`).
fn local_name(source: &Path) -> Result<String, ScpError> {
    let named = match source.file_name() {
        Some(name) => Some(name.to_os_string()),
        None => std::fs::canonicalize(source)
            .ok()
            .and_then(|path| path.file_name().map(std::ffi::OsStr::to_os_string)),
    };
    let no_name = |reason: &str| ScpError::Local {
        path: source.to_path_buf(),
        reason: reason.to_string(),
    };
    let name = named.ok_or_else(|| no_name("has no name to copy it under; give a target name"))?;
    name.into_string()
        .map_err(|_| no_name("the name is not UTF-8, which SFTP paths must be"))
}

/// A name that is safe to join to a local directory: not empty, `.` or `..`, without `/`
/// or NUL.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

fn display_name(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty())
        .unwrap_or(path)
        .to_string()
}

fn file_type(attrs: &FileAttributes) -> u32 {
    attrs.permissions.unwrap_or(0) & S_IFMT
}

fn is_dir(attrs: &FileAttributes) -> bool {
    file_type(attrs) == S_IFDIR
}

fn is_regular(attrs: &FileAttributes) -> bool {
    file_type(attrs) == S_IFREG
}

fn is_symlink(attrs: &FileAttributes) -> bool {
    file_type(attrs) == S_IFLNK
}

fn mode_of(attrs: &FileAttributes, default: u32) -> u32 {
    attrs
        .permissions
        .map_or(default, |permissions| permissions & MODE_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    fn remote(login: Option<&str>, node: &str, path: &str) -> Location {
        Location::Remote(RemotePath {
            login: login.map(str::to_string),
            node: node.to_string(),
            path: path.to_string(),
        })
    }

    #[test]
    fn arguments_are_local_or_remote_as_scp_decides() {
        assert_eq!(
            Location::parse("root@web-1:/tmp/x"),
            remote(Some("root"), "web-1", "/tmp/x")
        );
        assert_eq!(Location::parse("web-1:"), remote(None, "web-1", ""));
        assert_eq!(
            Location::parse("a@b@web-1:x:y"),
            remote(Some("a@b"), "web-1", "x:y")
        );
        assert_eq!(
            Location::parse("root@[::1]:f"),
            remote(Some("root"), "::1", "f")
        );
        for local in ["file", "./a:b", "/abs/a:b", ":x", "dir/", "@:x", ""] {
            assert_eq!(
                Location::parse(local),
                Location::Local(PathBuf::from(local)),
                "{local}"
            );
        }
    }

    #[test]
    fn plans_need_exactly_one_remote_side() {
        let plan = CopyPlan::parse(&args(&["a", "b", "root@web-1:dir"])).unwrap();
        assert_eq!(plan.node, "web-1");
        assert_eq!(plan.login.as_deref(), Some("root"));
        assert_eq!(
            plan.direction,
            Direction::Upload {
                sources: vec![PathBuf::from("a"), PathBuf::from("b")],
                target: "dir".to_string(),
            }
        );
        let plan = CopyPlan::parse(&args(&["web-1:a", "web-1:b", "."])).unwrap();
        assert_eq!(plan.login, None);
        assert_eq!(
            plan.direction,
            Direction::Download {
                sources: vec!["a".to_string(), "b".to_string()],
                target: PathBuf::from("."),
            }
        );
        for bad in [
            &["a"][..],
            &[],
            &["a", "b"],
            &["web-1:a", "web-2:b"],
            &["web-1:a", "root@web-1:b", "."],
            &["web-1:a", "local", "."],
            &["web-1:a", "web-2:b"],
        ] {
            let err = CopyPlan::parse(&args(bad)).unwrap_err();
            assert!(matches!(err, ScpError::Usage(_)), "{bad:?}: {err}");
        }
        let err = CopyPlan::parse(&args(&["web-1:a", "web-2:b"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("between two nodes"), "{err}");
    }

    #[test]
    fn remote_paths_and_names() {
        assert_eq!(remote_path(""), ".");
        assert_eq!(remote_path("~"), ".");
        assert_eq!(remote_path("~/"), ".");
        assert_eq!(remote_path("~/x"), "x");
        assert_eq!(remote_path("/etc"), "/etc");
        assert_eq!(join_remote(".", "f"), "f");
        assert_eq!(join_remote("/", "f"), "/f");
        assert_eq!(join_remote("d", "f"), "d/f");
        assert_eq!(display_name("/a/b/"), "b");
        for bad in ["", ".", "..", "a/b", "../x", "a\0"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        assert!(is_plain_name("..."));
        assert_eq!(local_name(Path::new("/tmp/dir/")).unwrap(), "dir");
        assert!(local_name(Path::new("/")).is_err());
        let dir = FileAttributes {
            permissions: Some(0o040_755),
            ..FileAttributes::empty()
        };
        let link = FileAttributes {
            permissions: Some(0o120_777),
            ..FileAttributes::empty()
        };
        assert!(is_dir(&dir) && !is_regular(&dir));
        // A symbolic link's type bits contain the regular file's: compare, don't mask.
        assert!(is_symlink(&link) && !is_regular(&link));
        assert_eq!(mode_of(&dir, 0), 0o755);
        assert_eq!(
            io_reason(&std::io::Error::from_raw_os_error(2)),
            "No such file or directory"
        );
    }
}
