//! One session channel: the program it runs, its input, output, window size, signals
//! and exit status, and its audit events.

use super::SshService;
use super::agent::ForwardedAgent;
use super::process::{self, LoginUser, Program, SpawnError};
use super::recording::{Recorder, RecordingStart};
use bytes::Bytes;
use jumpgate_audit::EventType;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use russh::server::Handle;
use russh::{ChannelId, Sig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

/// Input chunks queued for a program: the client's data waits (SSH backpressure) when
/// the program does not read, up to this many packets (32 KiB each at most).
const INPUT_QUEUE: usize = 1024;
/// After a PTY program exits, how long output still held by the terminal is read.
const PTY_DRAIN: Duration = Duration::from_secs(1);

/// A client's `pty-req`.
#[derive(Debug, Clone)]
pub(super) struct PtyRequest {
    pub term: String,
    pub cols: u32,
    pub rows: u32,
}

/// What the client sends a running program.
#[derive(Debug)]
pub(super) enum Input {
    Data(Vec<u8>),
    Eof,
    Resize { cols: u32, rows: u32 },
}

/// A session channel's state, kept by the connection.
#[derive(Debug, Default)]
pub(super) struct SessionChannel {
    pub pty: Option<PtyRequest>,
    pub env: BTreeMap<String, String>,
    /// The client asked for agent forwarding (and the roles allow it).
    pub agent: bool,
    input: Option<mpsc::Sender<Input>>,
    pid: Option<u32>,
    hang_up: Option<oneshot::Sender<()>>,
}

/// What starting a program takes.
pub(super) struct Start {
    pub handle: Handle,
    pub channel: ChannelId,
    pub program: Program,
    pub user: LoginUser,
    pub authorized_user: String,
    pub client: Option<SocketAddr>,
    pub service: Arc<SshService>,
}

/// An `exec` that is OpenSSH's scp in server mode (`scp -t` to receive, `-f` to send).
pub(super) fn is_scp(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let first = words.next().unwrap_or_default();
    (first == "scp" || first.ends_with("/scp"))
        && words.any(|w| w.starts_with("-t") || w.starts_with("-f"))
}

/// Whether an `exec` line runs one of OpenSSH's file-copy servers anywhere in it, for
/// `ssh_file_copy: false`: scp in server mode (`-t`/`-f`, also after `env`, a path, a
/// shell's `-c` or other flags), `sftp-server` run as a command, or `rsync --server`.
/// It errs on the side of refusing (`echo scp -t` is refused too): a user who may run
/// commands can still copy bytes by hand, but not with the file-copy tools.
pub(super) fn file_copy_program(line: &str) -> Option<&'static str> {
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || "'\";|&()`$<>{}".contains(c))
        .filter(|word| !word.is_empty())
        .collect();
    let base = |word: &str| word.rsplit('/').next().unwrap_or(word).to_string();
    for (index, word) in words.iter().enumerate() {
        let rest = words.get(index + 1..).unwrap_or_default();
        match base(word).as_str() {
            "scp" if rest.iter().any(|w| is_scp_server_flag(w)) => return Some("scp"),
            "sftp-server" | "internal-sftp" => return Some("sftp"),
            "rsync" if rest.contains(&"--server") => return Some("rsync"),
            _ => {}
        }
    }
    None
}

/// `-t`, `-f`, or a bundle of single-letter flags that holds one (`-rt`, `-prf`).
fn is_scp_server_flag(word: &str) -> bool {
    word.strip_prefix('-').is_some_and(|flags| {
        !flags.starts_with('-') && !flags.is_empty() && (flags.contains('t') || flags.contains('f'))
    })
}

impl SessionChannel {
    pub fn started(&self) -> bool {
        self.input.is_some()
    }

    /// Hands input to the program (waiting while its queue is full).
    pub async fn send(&self, input: Input) {
        if let Some(queue) = &self.input {
            let _ = queue.send(input).await;
        }
    }

    pub fn signal(&self, signal: &Sig) {
        let Some(pid) = self.pid.and_then(|pid| i32::try_from(pid).ok()) else {
            return;
        };
        let Some(signal) = to_signal(signal) else {
            return;
        };
        // A PTY program leads its own process group: signal the whole group.
        let target = if self.pty.is_some() { -pid } else { pid };
        let _ = kill(Pid::from_raw(target), signal);
    }

    /// The client closed the channel: end the program.
    pub fn hang_up(mut self) {
        if let Some(hang_up) = self.hang_up.take() {
            let _ = hang_up.send(());
        }
    }

    /// Starts the program and the task that runs the channel until it exits.
    pub fn start(&mut self, start: Start) -> Result<(), SpawnError> {
        let mut env = self.env.clone();
        if let Some(pty) = &self.pty {
            env.insert("TERM".to_string(), pty.term.clone());
        }
        let sid = uuid::Uuid::new_v4().to_string();
        tracing::info!(session = %sid, "session started");
        env.insert("JUMPGATE_SESSION_ID".to_string(), sid.clone());
        if let Some(client) = start.client {
            env.insert(
                "SSH_CLIENT".to_string(),
                format!("{} {} 0", client.ip(), client.port()),
            );
        }
        let agent = if self.agent {
            let agent = ForwardedAgent::start(&start.user, start.handle.clone())?;
            env.insert(
                "SSH_AUTH_SOCK".to_string(),
                agent.socket().display().to_string(),
            );
            Some(agent)
        } else {
            None
        };
        let command = process::command(&start.user, &start.program, &env)?;
        let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (hang_up_tx, hang_up_rx) = oneshot::channel();
        let mut running = match &self.pty {
            Some(pty) => spawn_with_pty(command, pty)?,
            None => spawn_with_pipes(command)?,
        };
        running.agent = agent;
        self.pid = running.child.id();
        self.input = Some(input_tx);
        self.hang_up = Some(hang_up_tx);
        let interactive = matches!(start.program, Program::Shell);
        tokio::spawn(run(
            start,
            running,
            input_rx,
            hang_up_rx,
            sid,
            interactive,
            self.pty.clone(),
        ));
        Ok(())
    }
}

/// A started program and its I/O.
struct Running {
    child: tokio::process::Child,
    io: Io,
    /// Held until the session ends, then its socket is removed.
    agent: Option<ForwardedAgent>,
}

enum Io {
    Pty {
        reader: pty_process::OwnedReadPty,
        writer: pty_process::OwnedWritePty,
    },
    Pipes {
        stdin: Option<tokio::process::ChildStdin>,
        stdout: tokio::process::ChildStdout,
        stderr: tokio::process::ChildStderr,
    },
}

fn spawn_with_pty(
    command: tokio::process::Command,
    pty: &PtyRequest,
) -> Result<Running, SpawnError> {
    let (terminal, pts) = pty_process::open().map_err(|err| SpawnError::Pty(err.to_string()))?;
    terminal
        .resize(terminal_size(pty.cols, pty.rows))
        .map_err(|err| SpawnError::Pty(err.to_string()))?;
    let child = pty_process::Command::from(command)
        .spawn(pts)
        .map_err(|err| SpawnError::Pty(err.to_string()))?;
    let (reader, writer) = terminal.into_split();
    Ok(Running {
        child,
        io: Io::Pty { reader, writer },
        agent: None,
    })
}

fn spawn_with_pipes(mut command: tokio::process::Command) -> Result<Running, SpawnError> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(SpawnError::Io(std::io::Error::other(
            "the program's pipes are missing",
        )));
    };
    Ok(Running {
        child,
        io: Io::Pipes {
            stdin: Some(stdin),
            stdout,
            stderr,
        },
        agent: None,
    })
}

fn terminal_size(cols: u32, rows: u32) -> pty_process::Size {
    let clamp = |value: u32, default: u16| {
        u16::try_from(value)
            .ok()
            .filter(|v| *v > 0)
            .unwrap_or(default)
    };
    pty_process::Size::new(clamp(rows, 24), clamp(cols, 80))
}

/// Copies a program's output to the channel (`ext` 1: stderr) until it ends.
async fn pump_output(
    mut output: impl AsyncRead + Unpin,
    handle: Handle,
    channel: ChannelId,
    ext: Option<u32>,
    recorder: Option<Arc<Recorder>>,
) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let n = match output.read(&mut buffer).await {
            Ok(0) | Err(_) => return, // EOF; EIO on a PTY whose program is gone
            Ok(n) => n,
        };
        let chunk = Bytes::copy_from_slice(buffer.get(..n).unwrap_or_default());
        if let Some(recorder) = &recorder {
            recorder.output(&chunk);
        }
        let sent = match ext {
            None => handle.data(channel, chunk).await,
            Some(ext) => handle.extended_data(channel, ext, chunk).await,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Feeds the client's input to the program until the channel ends.
async fn pump_input(mut input: mpsc::Receiver<Input>, mut writer: impl AsyncWrite + Unpin) {
    while let Some(item) = input.recv().await {
        match item {
            Input::Data(data) => {
                if writer.write_all(&data).await.is_err() {
                    return;
                }
            }
            Input::Eof => {
                let _ = writer.shutdown().await;
                return;
            }
            // Without a terminal there is no window size.
            Input::Resize { .. } => {}
        }
    }
}

async fn run(
    start: Start,
    running: Running,
    input: mpsc::Receiver<Input>,
    hang_up: oneshot::Receiver<()>,
    sid: String,
    interactive: bool,
    pty_request: Option<PtyRequest>,
) {
    let size = pty_request
        .as_ref()
        .map(|pty| format!("{}:{}", pty.cols, pty.rows));
    let Start {
        handle,
        channel,
        program,
        user,
        authorized_user,
        client,
        service,
    } = start;
    let started = Instant::now();
    let command = match &program {
        Program::Shell => String::new(),
        Program::Command(line) => line.clone(),
        Program::Sftp => "sftp".to_string(),
    };
    let mut start_event = service
        .event(EventType::SessionStart, client)
        .user(authorized_user.clone())
        .login(user.name.clone())
        .session_id(sid.clone())
        .field("proto", "ssh")
        .field("interactive", interactive);
    if let Some(size) = &size {
        start_event = start_event.field("size", size.clone());
    }
    service.events.emit(start_event);
    // Named in heartbeats until this function returns (the session ends).
    let (_in_progress, _) = service.sessions.register(sid.clone());

    let Running {
        mut child,
        io,
        agent: _agent,
    } = running;
    let (output, input_task) = match io {
        Io::Pty { reader, writer } => {
            let recorder = start_recording(
                &service,
                &sid,
                &authorized_user,
                &user.name,
                &command,
                pty_request.as_ref(),
            )
            .map(Arc::new);
            let output = tokio::spawn(pump_output(
                reader,
                handle.clone(),
                channel,
                None,
                recorder.clone(),
            ));
            let input_task = tokio::spawn(async move {
                // The PTY's writer also resizes; EOF on a terminal is the user's ^D,
                // not the channel's end, so a PTY's input is never shut.
                let writer = Arc::new(tokio::sync::Mutex::new(writer));
                let mut input = input;
                while let Some(item) = input.recv().await {
                    let mut writer = writer.lock().await;
                    match item {
                        Input::Data(data) => {
                            if let Some(recorder) = &recorder {
                                recorder.input(&data);
                            }
                            if writer.write_all(&data).await.is_err() {
                                return;
                            }
                        }
                        Input::Eof => {}
                        Input::Resize { cols, rows } => {
                            if let Some(recorder) = &recorder {
                                recorder.resize(cols, rows);
                            }
                            let _ = writer.resize(terminal_size(cols, rows));
                        }
                    }
                }
            });
            (vec![output], input_task)
        }
        Io::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            let stdout = tokio::spawn(pump_output(stdout, handle.clone(), channel, None, None));
            let stderr = tokio::spawn(pump_output(stderr, handle.clone(), channel, Some(1), None));
            let input_task = match stdin {
                Some(stdin) => tokio::spawn(pump_input(input, stdin)),
                None => tokio::spawn(async {}),
            };
            (vec![stdout, stderr], input_task)
        }
    };
    let status = tokio::select! {
        status = child.wait() => status.ok(),
        _ = hang_up => {
            debug!(%sid, "the client closed the channel; ending the program");
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    let pty = size.is_some();
    for mut task in output {
        if pty {
            // A background job may hold the terminal open: read what is there, not more.
            if tokio::time::timeout(PTY_DRAIN, &mut task).await.is_err() {
                task.abort();
            }
        } else {
            let _ = task.await;
        }
    }
    input_task.abort();

    let code = status.and_then(|status| status.code());
    let signal = status.and_then(|status| status.signal());
    match (code, signal) {
        (Some(code), _) => {
            let _ = handle
                .exit_status_request(channel, u32::try_from(code).unwrap_or(255))
                .await;
        }
        (None, Some(signal)) => {
            let _ = handle
                .exit_signal_request(channel, to_sig(signal), false, String::new(), String::new())
                .await;
        }
        (None, None) => {
            let _ = handle.exit_status_request(channel, 255).await;
        }
    }
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;

    let exit_code = code.map_or_else(
        || signal.map_or("unknown".to_string(), |s| format!("signal {s}")),
        |c| c.to_string(),
    );
    if !interactive {
        let kind = match &program {
            Program::Sftp => EventType::Sftp,
            Program::Command(line) if is_scp(line) => EventType::Scp,
            _ => EventType::Exec,
        };
        let mut event = service
            .event(kind, client)
            .user(authorized_user.clone())
            .login(user.name.clone())
            .session_id(sid.clone())
            .field("command", command)
            .field("exitCode", exit_code.clone());
        if code != Some(0) {
            event = event.field("exitError", format!("exit {exit_code}"));
        }
        service.events.emit(event);
    }
    let end = service
        .event(EventType::SessionEnd, client)
        .user(authorized_user.clone())
        .login(user.name.clone())
        .session_id(sid)
        .field("proto", "ssh")
        .field("interactive", interactive)
        .field("participants", vec![authorized_user])
        .field(
            "duration_ms",
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        );
    service.events.emit(end);
}

/// Starts the recording of a PTY session.
fn start_recording(
    service: &SshService,
    sid: &str,
    user: &str,
    login: &str,
    command: &str,
    pty: Option<&PtyRequest>,
) -> Option<Recorder> {
    let pty = pty?;
    let identity = service.identity.borrow().clone();
    service.recordings.start(RecordingStart {
        session_id: sid.to_string(),
        user: user.to_string(),
        login: login.to_string(),
        node: service.host_name.clone(),
        node_uuid: identity.host_uuid,
        cluster: identity.cluster,
        cols: pty.cols,
        rows: pty.rows,
        term: pty.term.clone(),
        command: Some(command.to_string()).filter(|c| !c.is_empty()),
    })
}

fn to_signal(signal: &Sig) -> Option<Signal> {
    Some(match signal {
        Sig::ABRT => Signal::SIGABRT,
        Sig::ALRM => Signal::SIGALRM,
        Sig::FPE => Signal::SIGFPE,
        Sig::HUP => Signal::SIGHUP,
        Sig::ILL => Signal::SIGILL,
        Sig::INT => Signal::SIGINT,
        Sig::KILL => Signal::SIGKILL,
        Sig::PIPE => Signal::SIGPIPE,
        Sig::QUIT => Signal::SIGQUIT,
        Sig::SEGV => Signal::SIGSEGV,
        Sig::TERM => Signal::SIGTERM,
        Sig::USR1 => Signal::SIGUSR1,
        Sig::Custom(_) => return None,
    })
}

fn to_sig(signal: i32) -> Sig {
    match Signal::try_from(signal) {
        Ok(Signal::SIGABRT) => Sig::ABRT,
        Ok(Signal::SIGALRM) => Sig::ALRM,
        Ok(Signal::SIGFPE) => Sig::FPE,
        Ok(Signal::SIGHUP) => Sig::HUP,
        Ok(Signal::SIGILL) => Sig::ILL,
        Ok(Signal::SIGINT) => Sig::INT,
        Ok(Signal::SIGKILL) => Sig::KILL,
        Ok(Signal::SIGPIPE) => Sig::PIPE,
        Ok(Signal::SIGQUIT) => Sig::QUIT,
        Ok(Signal::SIGSEGV) => Sig::SEGV,
        Ok(Signal::SIGTERM) => Sig::TERM,
        Ok(Signal::SIGUSR1) => Sig::USR1,
        Ok(other) => Sig::Custom(other.as_str().trim_start_matches("SIG").to_string()),
        Err(_) => Sig::Custom(signal.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scp_in_server_mode_is_recognised() {
        assert!(is_scp("scp -t /tmp"));
        assert!(is_scp("/usr/bin/scp -r -f dir"));
        assert!(!is_scp("scpx -t"));
        assert!(!is_scp("echo scp -t"));
        assert!(!is_scp("scp"));
    }

    #[test]
    fn every_way_to_run_a_file_copy_server_is_recognised() {
        for line in [
            "scp -t /tmp",
            "scp -r -t /tmp",
            "scp -rt /tmp",
            "/usr/bin/scp -f x",
            "env scp -t /tmp",
            "env -i /usr/bin/scp -p -t /tmp",
            "sh -c 'scp -t /tmp'",
            "true; scp -t /tmp",
            "/usr/lib/openssh/sftp-server",
            "exec /usr/lib/openssh/sftp-server -e",
            "rsync --server -vlogDtpre.iLsfxCIvu . /tmp",
        ] {
            assert!(file_copy_program(line).is_some(), "{line}");
        }
        for line in [
            "ls -la",
            "scpx -t",
            "scp",
            "echo hello",
            "cat /etc/hostname",
        ] {
            assert_eq!(file_copy_program(line), None, "{line}");
        }
    }

    #[test]
    fn signals_map_both_ways() {
        assert_eq!(to_signal(&Sig::INT), Some(Signal::SIGINT));
        assert!(matches!(to_sig(Signal::SIGTERM as i32), Sig::TERM));
        assert!(matches!(to_sig(Signal::SIGUSR2 as i32), Sig::Custom(name) if name == "USR2"));
    }
}
