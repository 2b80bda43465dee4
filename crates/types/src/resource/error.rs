//! [`ResourceError`]: why a resource document (a role file given to `jctl create`, or a record
//! read back from the backend) was refused. Same shape and wording as
//! [`ConfigError`](crate::ConfigError), so operators meet one style of message.

use crate::config::Location;

/// Why a resource document was refused. Its `Display` is the whole message for the admin:
/// `{source_name}: {field.path}: {reason}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// The text is not valid YAML or JSON.
    #[error("{source_name}{}: syntax error: {reason}", at(location))]
    Syntax {
        /// The name given by the caller (a file name, or `backend:/roles/x`).
        source_name: String,
        /// Where the parser stopped, when it knows.
        location: Option<Location>,
        /// The parser's message.
        reason: String,
    },
    /// The document as a whole is unusable (empty, not a mapping).
    #[error("{source_name}: {reason}")]
    Document {
        /// The name given by the caller.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A field is unknown, malformed, or not supported.
    #[error("{source_name}: {path}: {reason}")]
    Field {
        /// The name given by the caller.
        source_name: String,
        /// Dotted path of the field, with `[i]` for list items: `spec.allow.logins[0]`.
        path: String,
        /// What is wrong and, where we can tell, how to fix it.
        reason: String,
    },
    /// A resource could not be written out (a value no format can hold, such as a time
    /// after year 9999 set by code rather than parsed).
    #[error("cannot encode resource: {reason}")]
    Encode {
        /// The encoder's message.
        reason: String,
    },
}

impl ResourceError {
    /// The dotted path of the offending field, for [`ResourceError::Field`].
    pub fn field_path(&self) -> Option<&str> {
        match self {
            Self::Field { path, .. } => Some(path),
            Self::Syntax { .. } | Self::Document { .. } | Self::Encode { .. } => None,
        }
    }

    /// The reason alone, without source name or path.
    pub fn reason(&self) -> &str {
        match self {
            Self::Syntax { reason, .. }
            | Self::Document { reason, .. }
            | Self::Field { reason, .. }
            | Self::Encode { reason } => reason,
        }
    }
}

/// A `version` that is not one of `v1` to `v8`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a version from v1 to v8 (Jumpgate writes v7), got {0:?}")]
pub struct UnknownVersion(pub String);

/// Why a time was refused as RFC 3339 (a resource's `expires`, `jctl lock --expires`), or
/// cannot be written as one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// Not an RFC 3339 time with a `Z` or `+hh:mm` offset.
    #[error(
        "expected an RFC 3339 time such as 2030-01-02T15:04:05Z or \
         2030-01-02T15:04:05+02:00, got {text:?}"
    )]
    Malformed {
        /// The text as given (trimmed).
        text: String,
        /// What the date parser found wrong, when it was the one to refuse it (the offset
        /// is checked here).
        #[source]
        source: Option<humantime::TimestampError>,
    },
    /// A well-formed time before 1970-01-01T00:00:00Z.
    #[error("{0:?} is before 1970")]
    BeforeEpoch(String),
    /// A time outside 1970..=9999, which RFC 3339 (as written here) cannot hold.
    #[error("a time must be between 1970 and 9999 to be written in RFC 3339")]
    OutOfRange,
}

fn at(location: &Option<Location>) -> String {
    match location {
        Some(l) => format!(":{}:{}", l.line, l.column),
        None => String::new(),
    }
}
