//! Running programs: to completion (with a time limit where one could hang), or in the
//! background as a [`Process`] that cannot outlive the test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Bytes of a program's output as text (lossy: a test shows whatever came).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command` to completion with optional standard input (closed after it).
pub fn run(command: &mut Command, stdin: Option<&str>) -> Output {
    let (child, mut input) = spawn_piped(command);
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child
        .wait_with_output()
        .unwrap_or_else(|err| panic!("wait for {command:?}: {err}"))
}

/// Starts `command` with every standard stream piped; returns it and its input.
fn spawn_piped(command: &mut Command) -> (Child, ChildStdin) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
    let input = child.stdin.take().expect("stdin");
    (child, input)
}

/// [`run`] that must succeed; returns its standard output.
pub fn run_ok(command: &mut Command, stdin: Option<&str>) -> String {
    let out = run(command, stdin);
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `command` to completion with optional standard input, within `limit`: a
/// program that hangs is killed and the test fails, instead of hanging the suite.
pub fn output_within(command: &mut Command, stdin: Option<&str>, limit: Duration) -> Output {
    let (child, mut input) = spawn_piped(command);
    let text = stdin.map(str::to_string);
    // A thread, so that a program that reads no input cannot block us on a full pipe.
    let writer = std::thread::spawn(move || {
        if let Some(text) = text {
            let _ = input.write_all(text.as_bytes());
        }
    });
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    match done_rx.recv_timeout(limit) {
        Ok(out) => {
            let _ = writer.join();
            out.expect("wait for the program")
        }
        Err(_) => {
            signal(pid, "KILL");
            panic!("{command:?} did not finish within {limit:?}");
        }
    }
}

/// The first of `candidates` that exists: a program of the Debian package `package`
/// (`./test.sh` installs it).
pub(crate) fn system_program(candidates: &[&str], package: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!("{candidates:?} not found: install Debian's {package} (./test.sh does)")
        })
}

/// Sends a signal with `kill(1)` (this crate has no unsafe code for `kill(2)`).
fn signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .is_ok_and(|status| status.success())
}

/// A background child process with its output in a log file. Dropping it stops it
/// (also when the test panics): SIGKILL at once, or SIGTERM first when
/// [`Process::stop_gracefully_on_drop`] was set.
#[derive(Debug)]
pub struct Process {
    pub child: Child,
    /// What it is, for failure messages.
    pub name: String,
    /// Where its standard output and error go.
    pub log: PathBuf,
    grace_on_drop: Duration,
}

impl Process {
    /// Starts `command` with no input and its output in `log` (truncated first).
    pub fn spawn(command: &mut Command, name: &str, log: &Path) -> Process {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|err| panic!("create {}: {err}", log.display()));
        Process::spawn_into(command, name, log, file)
    }

    /// [`Process::spawn`] that appends to `log`: a restarted process keeps one log.
    pub fn spawn_appending(command: &mut Command, name: &str, log: &Path) -> Process {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|err| panic!("open {}: {err}", log.display()));
        Process::spawn_into(command, name, log, file)
    }

    fn spawn_into(command: &mut Command, name: &str, log: &Path, file: std::fs::File) -> Process {
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name} ({command:?}): {err}"));
        Process::from_child(child, name, log)
    }

    /// Takes charge of a child started elsewhere (e.g. with its stdout piped).
    pub fn from_child(child: Child, name: &str, log: &Path) -> Process {
        Process {
            child,
            name: name.to_string(),
            log: log.to_path_buf(),
            grace_on_drop: Duration::ZERO,
        }
    }

    /// On drop, SIGTERM and up to `grace` for the exit before SIGKILL: a benchmark's
    /// servers shut down as in production.
    pub fn stop_gracefully_on_drop(mut self, grace: Duration) -> Process {
        self.grace_on_drop = grace;
        self
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends the signal `name` (`HUP`, `TERM`, ...); whether it was delivered.
    pub fn signal(&self, name: &str) -> bool {
        signal(self.child.id(), name)
    }

    /// Everything it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 30 lines of its log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .get(lines.len().saturating_sub(30)..)
            .unwrap_or_default()
            .join("\n")
    }

    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Fails with the end of the log if the process has exited.
    pub fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.log_tail());
        }
    }

    /// Sends SIGTERM and waits up to `within` for the exit: its status and how long the
    /// exit took, or `None` if it did not exit in time.
    pub fn terminate(&mut self, within: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        assert!(
            signal(self.child.id(), "TERM"),
            "kill -TERM {} failed",
            self.name
        );
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.has_exited() {
            return;
        }
        if !self.grace_on_drop.is_zero() && signal(self.child.id(), "TERM") {
            let deadline = Instant::now() + self.grace_on_drop;
            while Instant::now() < deadline {
                if self.has_exited() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
