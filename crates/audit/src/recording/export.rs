//! What `jsh play` shows: plain text, JSON, or the output replayed in real time.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{EventKind, Recording, RecordingError};

/// The slowest playback speed accepted by [`play`].
pub const MIN_SPEED: f64 = 0.001;
/// The fastest playback speed accepted by [`play`].
pub const MAX_SPEED: f64 = 1000.0;

/// The output as plain text, for reading and grepping: escape sequences (CSI, OSC, DCS and
/// friends, two- and three-byte ESC sequences) and other control characters are removed,
/// `\r\n` and a lone `\r` become `\n`, and a backspace removes the character before it on the
/// line (which turns the shell's `\b \b` erase and overtyping into what the screen showed).
///
/// Full-screen programs (vim, top) repaint with cursor motion, which text cannot follow: their
/// screens come out as fragments.
pub fn to_text(recording: &Recording) -> String {
    let mut filter = TextFilter::default();
    for event in &recording.events {
        if event.kind == EventKind::Output {
            for c in event.data.chars() {
                filter.push(c);
            }
        }
    }
    filter.finish()
}

/// The events as a JSON array of `{"time": seconds, "type": "output"|"input"|"resize"|"marker",
/// "data": string}` objects.
pub fn to_json(recording: &Recording) -> String {
    let events: Vec<Value> = recording
        .events
        .iter()
        .map(|e| {
            json!({
                "time": e.time.as_secs_f64(),
                "type": e.kind.name(),
                "data": e.data,
            })
        })
        .collect();
    Value::Array(events).to_string()
}

/// How [`play`] paces the output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayOptions {
    /// 2.0 plays twice as fast; within [`MIN_SPEED`]..=[`MAX_SPEED`].
    pub speed: f64,
    /// Pauses longer than this (in recording time, before `speed` applies) are cut to it,
    /// like asciinema's `idle_time_limit`; `None` keeps every pause.
    pub idle_limit: Option<Duration>,
}

impl Default for PlayOptions {
    /// Real time, pauses cut to 2 s.
    fn default() -> PlayOptions {
        PlayOptions {
            speed: 1.0,
            idle_limit: Some(Duration::from_secs(2)),
        }
    }
}

/// Writes the output events to `out` (a terminal, usually) at their recorded pace, flushing
/// after each. Uses tokio's clock, so tests run it with `start_paused = true`. Deadlines are
/// absolute from the start, so a slow terminal does not make the playback drift.
pub async fn play<W>(
    recording: &Recording,
    options: &PlayOptions,
    mut out: W,
) -> Result<(), RecordingError>
where
    W: AsyncWrite + Unpin,
{
    if !(MIN_SPEED..=MAX_SPEED).contains(&options.speed) {
        return Err(RecordingError::InvalidSpeed {
            speed: options.speed,
        });
    }
    let io = |e| RecordingError::Io {
        path: "playback output".into(),
        source: e,
    };
    let start = tokio::time::Instant::now();
    let mut played = Duration::ZERO;
    let mut previous = Duration::ZERO;
    for event in &recording.events {
        if event.kind != EventKind::Output {
            continue;
        }
        let mut gap = event.time.saturating_sub(previous);
        previous = event.time;
        if let Some(limit) = options.idle_limit {
            gap = gap.min(limit);
        }
        // Within the speed range and with times below MAX_EVENT_TIME_SECS this cannot fail;
        // should it, play without waiting rather than give up.
        let wait = Duration::try_from_secs_f64(gap.as_secs_f64() / options.speed)
            .unwrap_or(Duration::ZERO);
        played = played.saturating_add(wait);
        if let Some(deadline) = start.checked_add(played) {
            tokio::time::sleep_until(deadline).await;
        }
        out.write_all(event.data.as_bytes()).await.map_err(io)?;
        out.flush().await.map_err(io)?;
    }
    Ok(())
}

#[derive(Debug, Default)]
struct TextFilter {
    text: String,
    state: State,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Text,
    /// After ESC.
    Escape,
    /// After ESC and intermediate bytes (`ESC ( B`).
    EscapeIntermediate,
    /// In a CSI sequence, until its final byte.
    Csi,
    /// In a string (OSC, DCS, SOS, PM, APC), until BEL or ST.
    String,
    /// ESC inside a string: `\` ends it (ST).
    StringEscape,
    /// After a `\r`: decides between `\r\n` and a lone `\r`.
    CarriageReturn,
}

impl TextFilter {
    fn push(&mut self, c: char) {
        match self.state {
            State::Text => self.text_char(c),
            State::CarriageReturn => {
                if c != '\r' {
                    self.text.push('\n');
                    self.state = State::Text;
                    if c != '\n' {
                        self.text_char(c);
                    }
                }
            }
            State::Escape => {
                self.state = match c {
                    '[' => State::Csi,
                    ']' | 'P' | 'X' | '^' | '_' => State::String,
                    '\u{20}'..='\u{2f}' => State::EscapeIntermediate,
                    // ESC ESC: the first one was aborted.
                    '\u{1b}' => State::Escape,
                    _ => State::Text,
                }
            }
            State::EscapeIntermediate => {
                if !('\u{20}'..='\u{2f}').contains(&c) {
                    self.state = State::Text;
                }
            }
            State::Csi => {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    self.state = State::Text;
                } else if c == '\u{1b}' {
                    self.state = State::Escape;
                } else if c == '\u{18}' || c == '\u{1a}' {
                    // CAN and SUB abort a sequence.
                    self.state = State::Text;
                }
            }
            State::String => match c {
                '\u{7}' | '\u{9c}' | '\u{18}' | '\u{1a}' => self.state = State::Text,
                '\u{1b}' => self.state = State::StringEscape,
                _ => {}
            },
            State::StringEscape => {
                self.state = if c == '\\' {
                    State::Text
                } else {
                    State::String
                };
            }
        }
    }

    fn text_char(&mut self, c: char) {
        match c {
            '\u{1b}' => self.state = State::Escape,
            '\u{9b}' => self.state = State::Csi,
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => self.state = State::String,
            '\r' => self.state = State::CarriageReturn,
            '\n' | '\t' => self.text.push(c),
            '\u{8}' => {
                if self
                    .text
                    .chars()
                    .next_back()
                    .is_some_and(|last| last != '\n')
                {
                    self.text.pop();
                }
            }
            c if c.is_control() => {}
            c => self.text.push(c),
        }
    }

    fn finish(mut self) -> String {
        if self.state == State::CarriageReturn {
            self.text.push('\n');
        }
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        let mut f = TextFilter::default();
        s.chars().for_each(|c| f.push(c));
        f.finish()
    }

    #[test]
    fn escapes_are_stripped() {
        let cases = [
            ("plain", "plain"),
            ("\u{1b}[1;31mred\u{1b}[0m", "red"),
            ("\u{1b}[?1049h\u{1b}[2J\u{1b}[Hx", "x"),
            ("\u{1b}]0;user@host: ~\u{7}$ ", "$ "),
            ("\u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\", "link"),
            ("\u{1b}(B\u{1b}=\u{1b}>\u{1b}7a\u{1b}8", "a"),
            ("\u{1b}P+q544e\u{1b}\\b", "b"),
            ("\u{9b}32mc", "c"),
            ("a\r\nb\r\r\nc\rd\n", "a\nb\nc\nd\n"),
            ("ab\u{8}\u{8}cd", "cd"),
            ("x\n\u{8}y", "x\ny"),
            ("$ lx\u{8} \u{8}s\r\n", "$ ls\n"),
            ("bell\u{7}\u{0}", "bell"),
            ("tab\there", "tab\there"),
            ("end\r", "end\n"),
            ("unterminated \u{1b}]0;title", "unterminated "),
        ];
        for (input, want) in cases {
            assert_eq!(text(input), want, "{input:?}");
        }
    }
}
