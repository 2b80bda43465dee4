//! Events to asciicast v2 lines, with no I/O.
//!
//! PTY reads cut UTF-8 sequences anywhere, so output and input each keep the incomplete
//! sequence at the end of a read (at most 3 bytes) and prepend it to the next read of the same
//! stream; bytes that can never become UTF-8 turn into U+FFFD. Every line is therefore valid
//! UTF-8 and JSON. Long reads are split over several lines so none exceeds [`MAX_LINE_LEN`].
//!
//! The JSON is written by hand rather than with serde_json: the format is tiny, and this way
//! encoding cannot fail and the worst-case line length is known (6 bytes per escaped byte).

use std::time::Duration;

use super::{Event, EventKind, Header, MAX_EVENT_TIME_SECS, MAX_LINE_LEN};

/// The most data bytes in one event line: escaped, they take at most 6x that, which with the
/// time and code stays under [`MAX_LINE_LEN`].
pub(crate) const MAX_DATA_PER_LINE: usize = 128 * 1024;

/// Marker labels longer than this are cut (at a character boundary).
pub const MAX_MARKER_LEN: usize = 4096;

const _: () = assert!(MAX_DATA_PER_LINE * 6 + 64 < MAX_LINE_LEN);

/// Turns session events into asciicast v2 lines appended to a caller's buffer.
#[derive(Debug, Default, Clone)]
pub struct CastEncoder {
    last: Duration,
    output_tail: Vec<u8>,
    input_tail: Vec<u8>,
}

impl CastEncoder {
    pub fn new() -> CastEncoder {
        CastEncoder::default()
    }

    /// Appends the header line.
    pub fn header(header: &Header, out: &mut Vec<u8>) {
        let mut line = String::with_capacity(256);
        line.push_str("{\"version\": 2, \"width\": ");
        line.push_str(&header.width.to_string());
        line.push_str(", \"height\": ");
        line.push_str(&header.height.to_string());
        if let Some(timestamp) = header.timestamp {
            line.push_str(", \"timestamp\": ");
            line.push_str(&timestamp.to_string());
        }
        if let Some(limit) = header.idle_time_limit {
            line.push_str(", \"idle_time_limit\": ");
            push_seconds(&mut line, limit);
        }
        for (key, value) in [("command", &header.command), ("title", &header.title)] {
            if let Some(value) = value {
                push_key(&mut line, key);
                push_json_string(&mut line, value);
            }
        }
        line.push_str(", \"env\": {");
        for (i, (key, value)) in header.env.iter().enumerate() {
            if i > 0 {
                line.push_str(", ");
            }
            push_json_string(&mut line, key);
            line.push_str(": ");
            push_json_string(&mut line, value);
        }
        line.push('}');
        if let Some(meta) = &header.jumpgate {
            line.push_str(", \"jumpgate\": {");
            let fields = [
                ("session_id", meta.session_id.as_str()),
                ("user", meta.user.as_str()),
                ("login", meta.login.as_str()),
                ("node", meta.node.as_str()),
                ("node_uuid", meta.node_uuid.as_str()),
                ("cluster", meta.cluster.as_str()),
            ];
            for (i, (key, value)) in fields.into_iter().enumerate() {
                if i > 0 {
                    line.push_str(", ");
                }
                push_json_string(&mut line, key);
                line.push_str(": ");
                push_json_string(&mut line, value);
            }
            line.push('}');
        }
        line.push_str("}\n");
        out.extend_from_slice(line.as_bytes());
    }

    /// Bytes the terminal printed at `at` (time since the start of the session).
    pub fn output(&mut self, at: Duration, bytes: &[u8], out: &mut Vec<u8>) {
        let data = decode(&mut self.output_tail, bytes);
        self.push(at, EventKind::Output, &data, out);
    }

    /// Bytes the user typed.
    pub fn input(&mut self, at: Duration, bytes: &[u8], out: &mut Vec<u8>) {
        let data = decode(&mut self.input_tail, bytes);
        self.push(at, EventKind::Input, &data, out);
    }

    /// The terminal is now `cols` x `rows`.
    pub fn resize(&mut self, at: Duration, cols: u16, rows: u16, out: &mut Vec<u8>) {
        self.push(at, EventKind::Resize, &format!("{cols}x{rows}"), out);
    }

    /// A marker with a label (may be empty). Labels are cut to [`MAX_MARKER_LEN`] bytes.
    pub fn marker(&mut self, at: Duration, label: &str, out: &mut Vec<u8>) {
        let label = label
            .get(..floor_char_boundary(label, MAX_MARKER_LEN))
            .unwrap_or("");
        let at = self.clamp(at);
        push_line(out, at, EventKind::Marker, label);
    }

    /// Re-encodes a parsed event.
    pub fn event(&mut self, event: &Event, out: &mut Vec<u8>) {
        match event.kind {
            EventKind::Output => self.output(event.time, event.data.as_bytes(), out),
            EventKind::Input => self.input(event.time, event.data.as_bytes(), out),
            EventKind::Resize => match event.resize_size() {
                Some((cols, rows)) => self.resize(event.time, cols, rows, out),
                None => self.push(event.time, EventKind::Resize, &event.data, out),
            },
            EventKind::Marker => self.marker(event.time, &event.data, out),
        }
    }

    /// Ends the stream: an incomplete UTF-8 sequence still held back is written as U+FFFD.
    pub fn finish(&mut self, at: Duration, out: &mut Vec<u8>) {
        for kind in [EventKind::Output, EventKind::Input] {
            let tail = match kind {
                EventKind::Input => &mut self.input_tail,
                _ => &mut self.output_tail,
            };
            if !std::mem::take(tail).is_empty() {
                self.push(at, kind, "\u{FFFD}", out);
            }
        }
    }

    /// Whether output or input holds back an incomplete UTF-8 sequence.
    pub fn has_pending(&self) -> bool {
        !self.output_tail.is_empty() || !self.input_tail.is_empty()
    }

    /// Times never go backwards in the file, even if the caller's clock did; and they stay
    /// within what the parser accepts.
    fn clamp(&mut self, at: Duration) -> Duration {
        let at = at.clamp(
            self.last,
            Duration::from_secs(u64::from(MAX_EVENT_TIME_SECS)),
        );
        self.last = at;
        at
    }

    fn push(&mut self, at: Duration, kind: EventKind, data: &str, out: &mut Vec<u8>) {
        if data.is_empty() {
            return;
        }
        let at = self.clamp(at);
        let mut rest = data;
        while !rest.is_empty() {
            let cut = floor_char_boundary(rest, MAX_DATA_PER_LINE);
            let (chunk, after) = rest.split_at_checked(cut).unwrap_or((rest, ""));
            push_line(out, at, kind, chunk);
            rest = after;
        }
    }
}

fn push_line(out: &mut Vec<u8>, at: Duration, kind: EventKind, data: &str) {
    let mut line = String::with_capacity(data.len() + 32);
    line.push('[');
    push_seconds(&mut line, at);
    line.push_str(", \"");
    line.push_str(kind.code());
    line.push_str("\", ");
    push_json_string(&mut line, data);
    line.push_str("]\n");
    out.extend_from_slice(line.as_bytes());
}

/// Seconds with exactly six decimals, as asciinema writes them (no float formatting involved).
fn push_seconds(line: &mut String, d: Duration) {
    line.push_str(&format!("{}.{:06}", d.as_secs(), d.subsec_micros()));
}

fn push_key(line: &mut String, key: &str) {
    line.push_str(", ");
    push_json_string(line, key);
    line.push_str(": ");
}

fn push_json_string(line: &mut String, s: &str) {
    line.push('"');
    for c in s.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            '\u{8}' => line.push_str("\\b"),
            '\u{c}' => line.push_str("\\f"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                line.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// The largest index `<= max` that is a char boundary of `s`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// Decodes `tail + bytes`, keeping an incomplete sequence at the end in `tail` and replacing
/// invalid bytes with U+FFFD.
fn decode(tail: &mut Vec<u8>, bytes: &[u8]) -> String {
    let mut input = std::mem::take(tail);
    input.extend_from_slice(bytes);
    let mut text = String::with_capacity(input.len());
    let mut rest = input.as_slice();
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                text.push_str(valid);
                break;
            }
            Err(e) => {
                let (valid, after) = rest
                    .split_at_checked(e.valid_up_to())
                    .unwrap_or((&[], rest));
                text.push_str(&String::from_utf8_lossy(valid));
                match e.error_len() {
                    Some(len) => {
                        text.push('\u{FFFD}');
                        rest = after.get(len..).unwrap_or_default();
                    }
                    None => {
                        // Incomplete, but may be completed by the next read.
                        *tail = after.to_vec();
                        break;
                    }
                }
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(out: &[u8]) -> Vec<String> {
        String::from_utf8(out.to_vec())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn split_utf8_is_joined() {
        let mut enc = CastEncoder::new();
        let mut out = Vec::new();
        let euro = "€".as_bytes(); // e2 82 ac
        enc.output(Duration::from_millis(1), &[b'a', euro[0]], &mut out);
        enc.output(Duration::from_millis(2), &euro[1..2], &mut out);
        assert!(enc.has_pending());
        enc.output(Duration::from_millis(3), &[euro[2], b'b'], &mut out);
        assert!(!enc.has_pending());
        assert_eq!(
            lines(&out),
            [r#"[0.001000, "o", "a"]"#, r#"[0.003000, "o", "€b"]"#]
        );
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut enc = CastEncoder::new();
        let mut out = Vec::new();
        enc.output(Duration::ZERO, b"a\xffb\xe2\x82c", &mut out);
        // An incomplete sequence followed by something that cannot continue it.
        enc.input(Duration::ZERO, b"\xe2", &mut out);
        enc.input(Duration::ZERO, b"x", &mut out);
        // Left over at the end.
        enc.output(Duration::ZERO, b"\xf0\x9f", &mut out);
        enc.finish(Duration::from_secs(1), &mut out);
        assert_eq!(
            lines(&out),
            [
                "[0.000000, \"o\", \"a\u{FFFD}b\u{FFFD}c\"]",
                "[0.000000, \"i\", \"\u{FFFD}x\"]",
                "[1.000000, \"o\", \"\u{FFFD}\"]",
            ]
        );
    }

    #[test]
    fn escapes_and_clamped_times() {
        let mut enc = CastEncoder::new();
        let mut out = Vec::new();
        enc.output(
            Duration::from_secs(5),
            b"\"\\\n\r\t\x08\x0c\x01\x1b[0m\x7f",
            &mut out,
        );
        enc.resize(Duration::from_secs(4), 100, 30, &mut out);
        enc.marker(Duration::from_micros(5_000_001), "", &mut out);
        assert_eq!(
            lines(&out),
            [
                r#"[5.000000, "o", "\"\\\n\r\t\b\f\u0001\u001b[0m\u007f"]"#,
                r#"[5.000000, "r", "100x30"]"#,
                r#"[5.000001, "m", ""]"#,
            ]
        );
    }

    #[test]
    fn long_output_is_split_under_the_line_limit() {
        let mut enc = CastEncoder::new();
        let mut out = Vec::new();
        let data = "\u{1}é".repeat(MAX_DATA_PER_LINE);
        enc.output(Duration::ZERO, data.as_bytes(), &mut out);
        let lines = lines(&out);
        assert_eq!(
            lines.len(),
            4,
            "3 x 128 KiB, each chunk cut back to a char boundary"
        );
        assert!(lines.iter().all(|l| l.len() < MAX_LINE_LEN));
    }
}
