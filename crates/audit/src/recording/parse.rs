//! Reading untrusted asciicast v2 recordings.
//!
//! The input size is checked against a caller's limit before anything else, each line against
//! [`MAX_LINE_LEN`], and JSON nesting is bounded by serde_json's recursion limit, so memory is
//! proportional to the input and a bad file costs at most one pass over it. Every error names
//! the line (from 1) and says what is wrong with it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::cast::parse_size;
use super::{
    DEFAULT_MAX_RECORDING_LEN, Event, EventKind, Header, LineProblem, MAX_EVENT_TIME_SECS,
    MAX_LINE_LEN, Recording, RecordingError, SessionId, SessionMeta, TruncatedTail,
};

/// How [`parse_cast`] treats its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Inputs longer than this are refused with [`RecordingError::TooLarge`].
    pub max_len: u64,
    /// Keep the complete lines of a recording whose last line was cut off (a session that
    /// ended abruptly, or one still being written) and report the cut in
    /// [`Recording::truncated`], instead of failing with [`LineProblem::Truncated`].
    pub tolerate_truncated_tail: bool,
}

impl ParseOptions {
    /// Every line must be complete; at most [`DEFAULT_MAX_RECORDING_LEN`] bytes.
    pub fn strict() -> ParseOptions {
        ParseOptions {
            max_len: DEFAULT_MAX_RECORDING_LEN,
            tolerate_truncated_tail: false,
        }
    }

    /// A cut-off last line is dropped and reported; at most [`DEFAULT_MAX_RECORDING_LEN`] bytes.
    pub fn tolerant() -> ParseOptions {
        ParseOptions {
            tolerate_truncated_tail: true,
            ..ParseOptions::strict()
        }
    }

    pub fn with_max_len(self, max_len: u64) -> ParseOptions {
        ParseOptions { max_len, ..self }
    }
}

impl Default for ParseOptions {
    fn default() -> ParseOptions {
        ParseOptions::strict()
    }
}

/// Parses and validates an asciicast v2 recording.
///
/// A last line without a newline is fine if it is a complete event. One that stops in the
/// middle of its JSON is [`LineProblem::Truncated`], or dropped in tolerant mode; a cut-off
/// header is always an error, since nothing would be left.
pub fn parse_cast(bytes: &[u8], options: &ParseOptions) -> Result<Recording, RecordingError> {
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > options.max_len {
        return Err(RecordingError::TooLarge {
            size,
            max: options.max_len,
        });
    }
    if bytes.is_empty() {
        return Err(RecordingError::line(1, LineProblem::Empty));
    }
    let mut header = None;
    let mut events = Vec::new();
    let mut truncated = None;
    let mut previous = Duration::ZERO;
    let mut rest = bytes;
    let mut number = 0usize;
    while !rest.is_empty() {
        number += 1;
        let (line, terminated) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let (line, after) = rest.split_at_checked(i).unwrap_or((rest, &[]));
                rest = after.get(1..).unwrap_or_default();
                (line, true)
            }
            None => (std::mem::take(&mut rest), false),
        };
        if line.len() > MAX_LINE_LEN {
            let problem = LineProblem::TooLong {
                len: line.len(),
                max: MAX_LINE_LEN,
            };
            return Err(RecordingError::line(number, problem));
        }
        let value = match to_json(line) {
            Ok(value) => value,
            Err(Syntax { problem, cut_off }) => {
                if terminated || !cut_off {
                    return Err(RecordingError::line(number, problem));
                }
                if header.is_none() || !options.tolerate_truncated_tail {
                    return Err(RecordingError::line(number, LineProblem::Truncated));
                }
                truncated = Some(TruncatedTail {
                    line: number,
                    len: line.len(),
                });
                break;
            }
        };
        if header.is_none() {
            let parsed = parse_header(value).map_err(|p| RecordingError::line(number, p))?;
            header = Some(parsed);
        } else {
            let event =
                parse_event(value, previous).map_err(|p| RecordingError::line(number, p))?;
            previous = event.time;
            events.push(event);
        }
    }
    let Some(header) = header else {
        return Err(RecordingError::line(1, LineProblem::Empty));
    };
    Ok(Recording {
        header,
        events,
        truncated,
    })
}

/// A line that is not JSON; `cut_off` if it is the start of valid JSON that stopped early.
struct Syntax {
    problem: LineProblem,
    cut_off: bool,
}

fn to_json(line: &[u8]) -> Result<Value, Syntax> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(Syntax {
            problem: LineProblem::Blank,
            cut_off: false,
        });
    }
    let text = std::str::from_utf8(line).map_err(|e| Syntax {
        problem: LineProblem::NotUtf8 {
            at: e.valid_up_to(),
        },
        cut_off: e.error_len().is_none(),
    })?;
    serde_json::from_str(text).map_err(|e| {
        // serde_json's message ends with a position in its own terms ("line 1 column 7");
        // keep the column, the line number is ours.
        let message = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let reason = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
        Syntax {
            problem: LineProblem::NotJson {
                reason,
                column: e.column(),
            },
            cut_off: e.classify() == serde_json::error::Category::Eof,
        }
    })
}

fn parse_header(value: Value) -> Result<Header, LineProblem> {
    let Value::Object(mut obj) = value else {
        return Err(LineProblem::HeaderNotObject);
    };
    match obj.get("version") {
        None => return Err(LineProblem::MissingField { field: "version" }),
        Some(v) if v.as_u64() == Some(2) => {}
        Some(v) => {
            return Err(LineProblem::UnsupportedVersion {
                found: shorten(&v.to_string()),
            });
        }
    }
    let width = size_field(&obj, "width")?;
    let height = size_field(&obj, "height")?;
    let timestamp = match present(&obj, "timestamp") {
        None => None,
        Some(v) => Some(unix_seconds(v).ok_or(LineProblem::BadField {
            field: "timestamp",
            expected: "a Unix time in seconds",
        })?),
    };
    let idle_time_limit = match present(&obj, "idle_time_limit") {
        None => None,
        Some(v) => Some(v.as_f64().and_then(seconds).ok_or(LineProblem::BadField {
            field: "idle_time_limit",
            expected: "a non-negative number of seconds",
        })?),
    };
    let command = string_field(&mut obj, "command")?;
    let title = string_field(&mut obj, "title")?;
    let env = match obj.remove("env") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(vars)) => {
            let mut env = BTreeMap::new();
            for (key, value) in vars {
                match value {
                    Value::String(value) => {
                        env.insert(key, value);
                    }
                    // asciinema writes `null` for a variable that was not set.
                    Value::Null => {}
                    _ => {
                        return Err(LineProblem::BadField {
                            field: "env",
                            expected: "an object whose values are strings",
                        });
                    }
                }
            }
            env
        }
        Some(_) => {
            return Err(LineProblem::BadField {
                field: "env",
                expected: "an object whose values are strings",
            });
        }
    };
    let jumpgate = match obj.remove("jumpgate") {
        None | Some(Value::Null) => None,
        Some(Value::Object(mut meta)) => Some(session_meta(&mut meta)?),
        Some(_) => {
            return Err(LineProblem::BadField {
                field: "jumpgate",
                expected: "an object",
            });
        }
    };
    Ok(Header {
        width,
        height,
        timestamp,
        idle_time_limit,
        command,
        title,
        env,
        jumpgate,
    })
}

fn session_meta(meta: &mut Map<String, Value>) -> Result<SessionMeta, LineProblem> {
    let mut take = |key: &str, field: &'static str| match meta.remove(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(LineProblem::MissingField { field }),
        Some(_) => Err(LineProblem::BadField {
            field,
            expected: "a string",
        }),
    };
    let session_id = take("session_id", "jumpgate.session_id")?;
    let session_id = SessionId::new(session_id).map_err(|_| LineProblem::BadField {
        field: "jumpgate.session_id",
        expected: "1 to 64 ASCII letters, digits or '-'",
    })?;
    Ok(SessionMeta {
        session_id,
        user: take("user", "jumpgate.user")?,
        login: take("login", "jumpgate.login")?,
        node: take("node", "jumpgate.node")?,
        node_uuid: take("node_uuid", "jumpgate.node_uuid")?,
        cluster: take("cluster", "jumpgate.cluster")?,
    })
}

fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn size_field(obj: &Map<String, Value>, field: &'static str) -> Result<u16, LineProblem> {
    let value = present(obj, field).ok_or(LineProblem::MissingField { field })?;
    value
        .as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .ok_or(LineProblem::BadField {
            field,
            expected: "an integer from 0 to 65535",
        })
}

fn string_field(
    obj: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, LineProblem> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(LineProblem::BadField {
            field,
            expected: "a string",
        }),
    }
}

/// Whole seconds; a fractional time (some writers use one) is rounded down.
fn unix_seconds(value: &Value) -> Option<i64> {
    if let Some(n) = value.as_i64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    // 2^63 is exactly representable; anything at or beyond it does not fit.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.is_finite() && (-LIMIT..LIMIT).contains(&f)).then(|| f.floor() as i64)
}

/// Seconds as a float to a duration with microsecond precision (the precision of the format),
/// if it is within `0..=MAX_EVENT_TIME_SECS`.
fn seconds(secs: f64) -> Option<Duration> {
    if !(0.0..=f64::from(MAX_EVENT_TIME_SECS)).contains(&secs) {
        return None;
    }
    // In range, so the product fits a u64 exactly enough (below 2^53).
    Some(Duration::from_micros((secs * 1_000_000.0).round() as u64))
}

fn parse_event(value: Value, previous: Duration) -> Result<Event, LineProblem> {
    let Value::Array(items) = value else {
        return Err(LineProblem::EventNotArray);
    };
    let [time, code, data]: [Value; 3] = items
        .try_into()
        .map_err(|items: Vec<Value>| LineProblem::EventArity { len: items.len() })?;
    let time = time
        .as_f64()
        .and_then(seconds)
        .ok_or(LineProblem::BadTime {
            max: MAX_EVENT_TIME_SECS,
        })?;
    if time < previous {
        return Err(LineProblem::TimeWentBackwards {
            previous: previous.as_secs_f64(),
            time: time.as_secs_f64(),
        });
    }
    let Value::String(code) = code else {
        return Err(LineProblem::CodeNotString);
    };
    let kind = EventKind::from_code(&code).ok_or_else(|| LineProblem::UnknownEventCode {
        code: shorten(&code),
    })?;
    let Value::String(data) = data else {
        return Err(LineProblem::DataNotString);
    };
    if kind == EventKind::Resize && parse_size(&data).is_none() {
        return Err(LineProblem::BadResize {
            data: shorten(&data),
        });
    }
    Ok(Event { time, kind, data })
}

/// Untrusted text quoted in an error: at most 40 characters.
fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut short: String = s.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"version": 2, "width": 80, "height": 24}"#;

    fn strict(input: &str) -> Result<Recording, RecordingError> {
        parse_cast(input.as_bytes(), &ParseOptions::strict())
    }

    /// The line and problem of a malformed input.
    fn problem(input: &str) -> (usize, LineProblem) {
        match strict(input) {
            Err(RecordingError::Malformed { line, problem }) => (line, problem),
            other => panic!("expected a malformed-line error for {input:?}, got {other:?}"),
        }
    }

    #[test]
    fn minimal_and_asciinema_written_headers() {
        let rec = strict(HEADER).unwrap();
        assert_eq!(rec.header, Header::new(80, 24));
        assert!(rec.events.is_empty());

        let asciinema = concat!(
            r#"{"version": 2, "width": 213, "height": 58, "timestamp": 1598556015, "#,
            r#""idle_time_limit": 2.5, "env": {"SHELL": "/bin/zsh", "TERM": "xterm", "X": null}, "#,
            r##""theme": {"fg": "#d0d0d0"}, "title": "demo", "command": null}"##,
            "\n",
            r#"[0.010242, "o", "\u001b[1m$ \u001b[0m"]"#,
            "\n",
            r#"[1, "i", "l"]"#,
            "\n",
            r#"[1.5, "r", "100x30"]"#,
            "\n",
            r#"[1.5, "m", "here"]"#,
            "\n",
        );
        let rec = strict(asciinema).unwrap();
        assert_eq!(rec.header.width, 213);
        assert_eq!(rec.header.timestamp, Some(1_598_556_015));
        assert_eq!(
            rec.header.idle_time_limit,
            Some(Duration::from_millis(2500))
        );
        assert_eq!(rec.header.title.as_deref(), Some("demo"));
        assert_eq!(rec.header.command, None);
        assert_eq!(rec.header.env.len(), 2);
        let kinds: Vec<_> = rec.events.iter().map(|e| e.kind).collect();
        use EventKind::*;
        assert_eq!(kinds, [Output, Input, Resize, Marker]);
        assert_eq!(rec.events[0].time, Duration::from_micros(10_242));
        assert_eq!(rec.events[0].data, "\u{1b}[1m$ \u{1b}[0m");
        assert_eq!(rec.events[2].resize_size(), Some((100, 30)));
        assert_eq!(rec.duration(), Duration::from_millis(1500));
    }

    #[test]
    fn each_problem_names_its_line() {
        let h = HEADER;
        let cases: Vec<(String, usize, LineProblem)> = vec![
            ("".into(), 1, LineProblem::Empty),
            ("\n".into(), 1, LineProblem::Blank),
            (format!("{h}\n\n[0, \"o\", \"\"]\n"), 2, LineProblem::Blank),
            ("[1, 2]".into(), 1, LineProblem::HeaderNotObject),
            (
                r#"{"width": 1, "height": 1}"#.into(),
                1,
                LineProblem::MissingField { field: "version" },
            ),
            (
                r#"{"version": 1, "width": 1, "height": 1}"#.into(),
                1,
                LineProblem::UnsupportedVersion { found: "1".into() },
            ),
            (
                r#"{"version": "2", "width": 1, "height": 1}"#.into(),
                1,
                LineProblem::UnsupportedVersion {
                    found: "\"2\"".into(),
                },
            ),
            (
                r#"{"version": 2, "height": 1}"#.into(),
                1,
                LineProblem::MissingField { field: "width" },
            ),
            (
                r#"{"version": 2, "width": 80}"#.into(),
                1,
                LineProblem::MissingField { field: "height" },
            ),
            (
                r#"{"version": 2, "width": -1, "height": 1}"#.into(),
                1,
                LineProblem::BadField {
                    field: "width",
                    expected: "an integer from 0 to 65535",
                },
            ),
            (
                r#"{"version": 2, "width": 1, "height": 1, "env": {"TERM": 1}}"#.into(),
                1,
                LineProblem::BadField {
                    field: "env",
                    expected: "an object whose values are strings",
                },
            ),
            (
                r#"{"version": 2, "width": 1, "height": 1, "jumpgate": {"session_id": "../x"}}"#
                    .into(),
                1,
                LineProblem::BadField {
                    field: "jumpgate.session_id",
                    expected: "1 to 64 ASCII letters, digits or '-'",
                },
            ),
            (
                r#"{"version": 2, "width": 1, "height": 1, "jumpgate": {"session_id": "a"}}"#
                    .into(),
                1,
                LineProblem::MissingField {
                    field: "jumpgate.user",
                },
            ),
            (format!("{h}\n{{}}\n"), 2, LineProblem::EventNotArray),
            (
                format!("{h}\n[1, \"o\"]\n"),
                2,
                LineProblem::EventArity { len: 2 },
            ),
            (
                format!("{h}\n[-1, \"o\", \"\"]\n"),
                2,
                LineProblem::BadTime {
                    max: MAX_EVENT_TIME_SECS,
                },
            ),
            (
                format!("{h}\n[\"1\", \"o\", \"\"]\n"),
                2,
                LineProblem::BadTime {
                    max: MAX_EVENT_TIME_SECS,
                },
            ),
            (
                format!("{h}\n[1e300, \"o\", \"\"]\n"),
                2,
                LineProblem::BadTime {
                    max: MAX_EVENT_TIME_SECS,
                },
            ),
            (
                format!("{h}\n[2, \"o\", \"\"]\n[1.5, \"o\", \"\"]\n"),
                3,
                LineProblem::TimeWentBackwards {
                    previous: 2.0,
                    time: 1.5,
                },
            ),
            (
                format!("{h}\n[1, 5, \"\"]\n"),
                2,
                LineProblem::CodeNotString,
            ),
            (
                format!("{h}\n[1, \"x\", \"\"]\n"),
                2,
                LineProblem::UnknownEventCode { code: "x".into() },
            ),
            (
                format!("{h}\n[1, \"o\", 5]\n"),
                2,
                LineProblem::DataNotString,
            ),
            (
                format!("{h}\n[1, \"r\", \"80\"]\n"),
                2,
                LineProblem::BadResize { data: "80".into() },
            ),
            (
                format!("{h}\n[1, \"o\", \"a\"]x\n"),
                2,
                LineProblem::NotJson {
                    reason: "trailing characters".into(),
                    column: 14,
                },
            ),
            (format!("{h}\n[1, \"o\", \"a"), 2, LineProblem::Truncated),
            (h[..10].to_string(), 1, LineProblem::Truncated),
        ];
        for (input, line, expected) in cases {
            let (got_line, got) = problem(&input);
            assert_eq!((got_line, &got), (line, &expected), "{input:?}");
            let message = RecordingError::line(got_line, got).to_string();
            assert!(
                message.starts_with(&format!("recording line {line}: ")),
                "{message}"
            );
        }
    }

    #[test]
    fn byte_level_problems() {
        let mut input = format!("{HEADER}\n[1, \"o\", \"").into_bytes();
        input.extend_from_slice(b"\xff\"]\n");
        let err = parse_cast(&input, &ParseOptions::strict()).unwrap_err();
        assert!(
            matches!(
                err,
                RecordingError::Malformed {
                    line: 2,
                    problem: LineProblem::NotUtf8 { at: 10 }
                }
            ),
            "{err:?}"
        );

        let long = format!("{HEADER}\n[1, \"o\", \"{}\"]\n", "a".repeat(MAX_LINE_LEN));
        let err = strict(&long).unwrap_err();
        assert!(
            matches!(
                err,
                RecordingError::Malformed {
                    line: 2,
                    problem: LineProblem::TooLong { .. }
                }
            ),
            "{err:?}"
        );

        let err =
            parse_cast(HEADER.as_bytes(), &ParseOptions::strict().with_max_len(10)).unwrap_err();
        assert!(
            matches!(err, RecordingError::TooLarge { size: 41, max: 10 }),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_tail() {
        let complete = format!("{HEADER}\n[1, \"o\", \"a\"]\n");
        for cut in ["[2, \"o\", \"b", "[2", "[", "[2, \"o\", \"\\u00"] {
            let input = format!("{complete}{cut}");
            let rec = parse_cast(input.as_bytes(), &ParseOptions::tolerant()).unwrap();
            assert_eq!(rec.events.len(), 1);
            assert_eq!(
                rec.truncated,
                Some(TruncatedTail {
                    line: 3,
                    len: cut.len()
                })
            );
            assert_eq!(problem(&input), (3, LineProblem::Truncated));
        }
        // Cut inside a UTF-8 sequence.
        let mut input = format!("{complete}[2, \"o\", \"").into_bytes();
        input.extend_from_slice(&"€".as_bytes()[..2]);
        let rec = parse_cast(&input, &ParseOptions::tolerant()).unwrap();
        assert_eq!(rec.truncated.map(|t| t.line), Some(3));

        // A complete last event without a newline is not truncated.
        let rec = strict(&format!("{complete}[2, \"o\", \"b\"]")).unwrap();
        assert_eq!((rec.events.len(), rec.truncated), (2, None));

        // Even tolerant mode refuses a broken line that is not merely cut off, and a cut header.
        let bad = format!("{complete}[2, \"o\", \"b\"]]");
        assert!(parse_cast(bad.as_bytes(), &ParseOptions::tolerant()).is_err());
        let bad = format!("{complete}[2, \"o\", \"b\n");
        assert!(parse_cast(bad.as_bytes(), &ParseOptions::tolerant()).is_err());
        assert!(parse_cast(&HEADER.as_bytes()[..5], &ParseOptions::tolerant()).is_err());
    }

    #[test]
    fn untrusted_text_in_errors_is_short() {
        let code = "x".repeat(10_000);
        let (_, p) = problem(&format!("{HEADER}\n[1, \"{code}\", \"\"]"));
        assert!(p.to_string().len() < 200, "{p}");
    }
}
