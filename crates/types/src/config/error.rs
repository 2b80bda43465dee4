//! [`ConfigError`], and turning serde's messages into ones that name the field and suggest a fix.
//!
//! Unknown keys: we let serde's `deny_unknown_fields` find them and `serde_path_to_error` say
//! where, then rewrite serde's fixed message ("unknown field `x`, expected one of `a`, `b`")
//! into ours with a "did you mean" hint computed from the list it carries. The alternative, a
//! hand-written walk over the YAML value against a second copy of the schema, would have to be
//! kept in step with the structs by hand. serde has used this message since 1.0; a unit test
//! pins it so a change would fail loudly rather than lose the hints.

use std::fmt;

use serde_path_to_error::{Path, Segment};

/// Why a config was refused. Its `Display` is the whole message for the operator:
/// `{source_name}: {field.path}: {reason}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not valid YAML.
    #[error("{source_name}{}: YAML syntax error: {reason}", at(location))]
    Syntax {
        /// The file name given to `from_yaml`.
        source_name: String,
        /// Where the parser stopped, when it knows.
        location: Option<Location>,
        /// The parser's message.
        reason: String,
    },
    /// The document as a whole is unusable (empty, or not a mapping of sections).
    #[error("{source_name}: {reason}")]
    Document {
        /// The file name given to `from_yaml`.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A field is unknown, malformed, or contradicts another field.
    #[error("{source_name}: {path}: {reason}")]
    Field {
        /// The file name given to `from_yaml`.
        source_name: String,
        /// Dotted path of the field, with `[i]` for list items: `auth_service.tokens[0]`.
        path: String,
        /// What is wrong and, where we can tell, how to fix it.
        reason: String,
    },
}

impl ConfigError {
    /// The dotted path of the offending field, for [`ConfigError::Field`].
    pub fn field_path(&self) -> Option<&str> {
        match self {
            Self::Field { path, .. } => Some(path),
            Self::Syntax { .. } | Self::Document { .. } => None,
        }
    }

    /// The reason alone, without file name or path.
    pub fn reason(&self) -> &str {
        match self {
            Self::Syntax { reason, .. }
            | Self::Document { reason, .. }
            | Self::Field { reason, .. } => reason,
        }
    }

    /// Where a syntax error is, when the parser said.
    pub fn location(&self) -> Option<Location> {
        match self {
            Self::Syntax { location, .. } => *location,
            Self::Document { .. } | Self::Field { .. } => None,
        }
    }
}

/// A position in the config text, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line number.
    pub line: usize,
    /// Column number.
    pub column: usize,
}

fn at(location: &Option<Location>) -> String {
    match location {
        Some(l) => format!(":{}:{}", l.line, l.column),
        None => String::new(),
    }
}

/// A field error before the file name is attached: what `validate.rs` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub path: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(path: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    pub fn into_error(self, source_name: &str) -> ConfigError {
        ConfigError::Field {
            source_name: source_name.to_owned(),
            path: self.path,
            reason: self.reason,
        }
    }
}

/// Joins a parent path and a key: `join("jumpgate", "storage")` is `jumpgate.storage`. An
/// empty key (`"": 1` is valid YAML) is written `""`, so the path still shows where it is.
pub(super) fn join(parent: &str, key: &str) -> String {
    let key = if key.is_empty() { "\"\"" } else { key };
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Formats a serde path as `a.b[0].c` (serde_path_to_error writes `.` for the root).
fn format_path(path: &Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out = join(&out, key);
            }
            Segment::Unknown => out = join(&out, "?"),
        }
    }
    out
}

/// Turns a serde error into a field error, rewriting the messages operators meet most. Generic
/// over the format's error type, so cluster resources (`crate::resource`) share the wording.
/// A YAML syntax error as (where, what): the position is taken out of the message so the
/// caller can print it once, as `file:line:col: reason`.
pub(crate) fn yaml_syntax(err: &serde_norway::Error) -> (Option<Location>, String) {
    let location = err.location().map(|l| Location {
        line: l.line(),
        column: l.column(),
    });
    let mut reason = err.to_string();
    if let Some(l) = location {
        reason = reason.replacen(&format!(" at line {} column {}", l.line, l.column), "", 1);
    }
    (location, reason)
}

pub(crate) fn from_serde<E: fmt::Display>(err: serde_path_to_error::Error<E>) -> Invalid {
    let mut path = format_path(err.path());
    let message = err.inner().to_string();
    if let Some(unknown) = UnknownField::parse(&message) {
        // serde_path_to_error has usually pushed the unknown key itself onto the path. Ask
        // it, rather than the joined text: an empty key is written `""` there.
        let pushed = matches!(
            err.path().iter().next_back(),
            Some(Segment::Map { key }) if key == unknown.name
        );
        if !pushed {
            path = join(&path, unknown.name);
        }
        return Invalid::new(path, unknown.describe());
    }
    if let Some(missing) = field_between(&message, "missing field `") {
        return Invalid::new(join(&path, missing), "is required");
    }
    // Raised on the second key, before serde_path_to_error pushes it: the path is the
    // mapping's, empty at the top level.
    if let Some(duplicate) = field_between(&message, "duplicate field `") {
        return Invalid::new(join(&path, duplicate), "is given twice; keep one");
    }
    Invalid::new(path, message)
}

/// serde's "unknown field `x`, expected one of `a`, `b`" message, taken apart.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct UnknownField<'a> {
    pub name: &'a str,
    pub expected: Vec<&'a str>,
}

impl<'a> UnknownField<'a> {
    pub fn parse(message: &'a str) -> Option<Self> {
        let (name, rest) = message.strip_prefix("unknown field `")?.split_once('`')?;
        // The names are the odd pieces when split on backticks: "expected one of `a`, `b`".
        let expected = rest.split('`').skip(1).step_by(2).collect();
        Some(Self { name, expected })
    }

    pub fn describe(&self) -> String {
        match suggest(self.name, &self.expected) {
            Some(hint) => format!("unknown key `{}`; did you mean `{hint}`?", self.name),
            None if self.expected.is_empty() => format!("unknown key `{}`", self.name),
            None => format!(
                "unknown key `{}`; expected one of {}",
                self.name,
                self.expected.join(", ")
            ),
        }
    }
}

/// The text between `prefix` and the next backtick, if the message starts with `prefix`.
fn field_between<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(name, _)| name)
}

/// The known name closest to `name`, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let budget = (name.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (strsim::levenshtein(&name.to_ascii_lowercase(), k), *k))
        .filter(|(distance, _)| *distance <= budget)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Two {
        listen_addr: Option<String>,
        public_addr: Option<String>,
    }

    /// Pins serde's wording, which `from_serde` parses: if serde changes it, this fails.
    #[test]
    fn serde_unknown_field_message_is_what_we_parse() {
        let value: serde_norway::Value = serde_norway::from_str("listen_adr: x").unwrap();
        let err = serde_path_to_error::deserialize::<_, Two>(value).unwrap_err();
        assert_eq!(
            err.inner().to_string(),
            "unknown field `listen_adr`, expected `listen_addr` or `public_addr`"
        );
        assert_eq!(err.path().to_string(), "listen_adr");
        let invalid = from_serde(err);
        assert_eq!(invalid.path, "listen_adr");
        assert_eq!(
            invalid.reason,
            "unknown key `listen_adr`; did you mean `listen_addr`?"
        );
    }

    #[test]
    fn unknown_field_parsing() {
        let parsed =
            UnknownField::parse("unknown field `x`, expected one of `a`, `b`, `c`").unwrap();
        assert_eq!(parsed.name, "x");
        assert_eq!(parsed.expected, ["a", "b", "c"]);
        let parsed = UnknownField::parse("unknown field `x`, there are no fields").unwrap();
        assert!(parsed.expected.is_empty());
        assert_eq!(parsed.describe(), "unknown key `x`");
        assert_eq!(UnknownField::parse("invalid type: string"), None);
    }

    #[test]
    fn suggestions() {
        let known = ["enabled", "listen_addr", "labels", "commands"];
        assert_eq!(suggest("enable", &known), Some("enabled"));
        assert_eq!(suggest("listen_address", &known), Some("listen_addr"));
        assert_eq!(suggest("Labels", &known), Some("labels"));
        assert_eq!(suggest("tunnel_strategy", &known), None);
    }

    #[test]
    fn display_formats() {
        let e = ConfigError::Syntax {
            source_name: "f.yaml".into(),
            location: Some(Location { line: 3, column: 5 }),
            reason: "bad".into(),
        };
        assert_eq!(e.to_string(), "f.yaml:3:5: YAML syntax error: bad");
        let e = Invalid::new("a.b", "nope").into_error("f.yaml");
        assert_eq!(e.to_string(), "f.yaml: a.b: nope");
        assert_eq!(e.field_path(), Some("a.b"));
    }
}
