//! The local terminal for interactive sessions: raw mode (restored by a guard on every
//! way out), its size, and size changes (SIGWINCH).

use crate::error::ClientError;
use std::io::IsTerminal;
use tokio::sync::mpsc;

/// Whether standard input is a terminal.
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// The terminal's size as (columns, rows), if there is a terminal.
pub fn size() -> Option<(u32, u32)> {
    crossterm::terminal::size()
        .ok()
        .filter(|(cols, rows)| *cols > 0 && *rows > 0)
        .map(|(cols, rows)| (u32::from(cols), u32::from(rows)))
}

/// The terminal in raw mode while this lives: keys go to the node as typed (Ctrl-C
/// included), and the node's PTY does the echoing and line editing.
#[derive(Debug)]
pub struct RawMode(());

impl RawMode {
    pub fn enable() -> Result<RawMode, ClientError> {
        crossterm::terminal::enable_raw_mode().map_err(ClientError::Terminal)?;
        Ok(RawMode(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// The terminal's new size after every SIGWINCH.
pub fn resizes() -> Result<mpsc::UnboundedReceiver<(u32, u32)>, ClientError> {
    let mut signals = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .map_err(ClientError::Terminal)?;
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while signals.recv().await.is_some() {
            if let Some(size) = size()
                && sender.send(size).is_err()
            {
                break;
            }
        }
    });
    Ok(receiver)
}

/// Reads a secret from the terminal without echo.
pub fn prompt_secret(prompt: &str) -> Result<String, ClientError> {
    rpassword::prompt_password(prompt)
        .map_err(|err| ClientError::Prompt(format!("cannot read from the terminal: {err}")))
}

/// Reads a line from the terminal (echoed), e.g. a one-time code.
pub fn prompt_line(prompt: &str) -> Result<String, ClientError> {
    use std::io::Write;
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{prompt}");
    let _ = stderr.flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|err| ClientError::Prompt(format!("cannot read from the terminal: {err}")))?;
    Ok(line.trim().to_string())
}
