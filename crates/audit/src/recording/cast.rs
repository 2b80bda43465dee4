//! The asciicast v2 data model: header, events, a parsed recording, and session ids.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::RecordingError;

/// The longest session id: a UUID (36) fits with room to spare.
pub const MAX_SESSION_ID_LEN: usize = 64;

/// A session id that is safe as a file name and an object key: 1 to 64 ASCII letters, digits
/// or `-`. No `.`, `/` or `\`, so a path built from it can never leave its directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(String);

impl SessionId {
    pub fn new(id: impl Into<String>) -> Result<SessionId, RecordingError> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("it is empty")
        } else if id.len() > MAX_SESSION_ID_LEN {
            Some("it is longer than 64 characters")
        } else if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            Some("it contains a character other than A-Z, a-z, 0-9 and '-'")
        } else {
            None
        };
        match reason {
            None => Ok(SessionId(id)),
            Some(reason) => {
                // The id may come from the network: keep the error message short.
                let shown: String = id.chars().take(MAX_SESSION_ID_LEN + 1).collect();
                Err(RecordingError::InvalidSessionId { id: shown, reason })
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for SessionId {
    type Err = RecordingError;
    fn from_str(s: &str) -> Result<SessionId, RecordingError> {
        SessionId::new(s)
    }
}

impl TryFrom<String> for SessionId {
    type Error = RecordingError;
    fn try_from(s: String) -> Result<SessionId, RecordingError> {
        SessionId::new(s)
    }
}

/// Jumpgate's own facts about a session, kept in the header under the key `"jumpgate"`, which
/// standard players ignore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMeta {
    pub session_id: SessionId,
    /// The Jumpgate user.
    pub user: String,
    /// The OS login on the node.
    pub login: String,
    /// The node's host name.
    pub node: String,
    pub node_uuid: String,
    pub cluster: String,
}

/// The first line of an asciicast v2 file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Terminal columns at the start.
    pub width: u16,
    /// Terminal rows at the start.
    pub height: u16,
    /// Start of the session, Unix seconds. Passed in by the caller, never read from the clock
    /// here, so tests control it.
    pub timestamp: Option<i64>,
    /// Players shorten pauses longer than this.
    pub idle_time_limit: Option<Duration>,
    /// The command, for an exec session.
    pub command: Option<String>,
    pub title: Option<String>,
    /// Usually `TERM` and `SHELL`.
    pub env: BTreeMap<String, String>,
    pub jumpgate: Option<SessionMeta>,
}

impl Header {
    /// A header with only the terminal size; set the other public fields as needed.
    pub fn new(width: u16, height: u16) -> Header {
        Header {
            width,
            height,
            timestamp: None,
            idle_time_limit: None,
            command: None,
            title: None,
            env: BTreeMap::new(),
            jumpgate: None,
        }
    }
}

/// The kind of an event, with its asciicast code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `"o"`: bytes the terminal printed.
    Output,
    /// `"i"`: bytes the user typed.
    Input,
    /// `"r"`: the terminal was resized; data is `COLSxROWS`.
    Resize,
    /// `"m"`: a marker (a bookmark for players); data is its label.
    Marker,
}

impl EventKind {
    /// The one-letter code used in the file.
    pub fn code(self) -> &'static str {
        match self {
            EventKind::Output => "o",
            EventKind::Input => "i",
            EventKind::Resize => "r",
            EventKind::Marker => "m",
        }
    }

    /// The word used by [`super::to_json`].
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Output => "output",
            EventKind::Input => "input",
            EventKind::Resize => "resize",
            EventKind::Marker => "marker",
        }
    }

    pub fn from_code(code: &str) -> Option<EventKind> {
        match code {
            "o" => Some(EventKind::Output),
            "i" => Some(EventKind::Input),
            "r" => Some(EventKind::Resize),
            "m" => Some(EventKind::Marker),
            _ => None,
        }
    }
}

/// One event line. Times have microsecond precision, like the files asciinema writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Time since the start of the recording.
    pub time: Duration,
    pub kind: EventKind,
    pub data: String,
}

impl Event {
    /// The terminal size of a resize event (`"80x24"` is `(80, 24)`).
    pub fn resize_size(&self) -> Option<(u16, u16)> {
        if self.kind != EventKind::Resize {
            return None;
        }
        parse_size(&self.data)
    }
}

pub(crate) fn parse_size(data: &str) -> Option<(u16, u16)> {
    let (cols, rows) = data.split_once('x')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(cols) || !digits(rows) {
        return None;
    }
    Some((cols.parse().ok()?, rows.parse().ok()?))
}

/// A parsed recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub header: Header,
    /// In file order; times never decrease.
    pub events: Vec<Event>,
    /// Set by tolerant parsing when the last line was cut off and dropped.
    pub truncated: Option<TruncatedTail>,
}

impl Recording {
    /// The time of the last event (zero without events).
    pub fn duration(&self) -> Duration {
        self.events.last().map_or(Duration::ZERO, |e| e.time)
    }

    /// The recording re-encoded as asciicast v2 (normalized: our spacing, microsecond times,
    /// long events split so no line exceeds [`super::MAX_LINE_LEN`]).
    pub fn to_cast(&self) -> Vec<u8> {
        let mut out = Vec::new();
        super::CastEncoder::header(&self.header, &mut out);
        let mut encoder = super::CastEncoder::new();
        for event in &self.events {
            encoder.event(event, &mut out);
        }
        out
    }
}

/// The cut-off last line that tolerant parsing dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncatedTail {
    /// Its line number (from 1).
    pub line: usize,
    /// How many bytes were dropped.
    pub len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids() {
        for ok in ["a", "0b6c2a8e-5f3c-4c7e-9d1e-2f8b6a4c1d00", &"x".repeat(64)] {
            assert_eq!(SessionId::new(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "../x", "a/b", "a.b", "a b", "é", &"x".repeat(65), "a\0"] {
            let err = SessionId::new(bad).unwrap_err();
            assert!(
                matches!(err, RecordingError::InvalidSessionId { .. }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("80x24"), Some((80, 24)));
        for bad in [
            "80", "x24", "80x", "+80x24", "80x24x1", "70000x1", " 80x24", "80X24",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }
}
