//! Errors a caller can match on. Each says whose fault it is: the caller's (a bad query or
//! cursor), the store's (I/O, corrupt rows), or the lifecycle (used after close).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller passed a cursor that this store did not hand out (or that was mangled).
    #[error("invalid search cursor: {reason}; pass the `next_cursor` of a previous page unchanged")]
    InvalidCursor { reason: &'static str },

    /// The caller asked for a page size outside `1..=MAX_LIMIT`.
    #[error("invalid search limit {limit}: must be between 1 and {max}")]
    InvalidLimit { limit: u32, max: u32 },

    /// The caller's time range ends before it starts.
    #[error("invalid search time range: `from` ({from}) is after `to` ({to})")]
    InvalidRange { from: String, to: String },

    /// A time could not be parsed or is outside years 0000..=9999.
    #[error("invalid time {input:?}: {reason}")]
    InvalidTime { input: String, reason: String },

    /// An `audit_events_uri` this crate cannot use.
    #[error("invalid audit_events_uri {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: &'static str },

    /// The store was closed; the caller's shutdown order is wrong.
    #[error("the audit log is closed")]
    Closed,

    /// A file or directory could not be created, written or synced.
    #[error("audit log I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// SQLite failed (disk full, locked by another process, ...).
    #[cfg(feature = "stores")]
    #[error("audit log SQLite error while {action}: {source}")]
    Sqlite {
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    /// A stored row is not an event this version wrote.
    #[error("audit log holds a corrupt event at row {row}: {source}")]
    Corrupt {
        row: i64,
        #[source]
        source: serde_json::Error,
    },

    /// A `dynamodb://` audit_events_uri that does not parse.
    #[error("invalid audit_events_uri {uri:?}: {reason}")]
    InvalidDynamoUri { uri: String, reason: String },

    /// A `postgresql://` audit_events_uri that does not parse.
    #[error("invalid postgresql:// audit_events_uri: {reason}")]
    InvalidPostgresUri { reason: String },

    /// A shared store (PostgreSQL, DynamoDB) could not be reached or did not answer in time;
    /// retrying later may work.
    #[error("the {store} audit store at {endpoint} is unavailable while {action}: {detail}")]
    Unavailable {
        store: &'static str,
        endpoint: String,
        action: &'static str,
        detail: String,
    },

    /// A shared store refused our credentials: retrying will not help until they are fixed.
    #[error("the {store} audit store at {endpoint} refused the login: {detail}")]
    Refused {
        store: &'static str,
        endpoint: String,
        detail: String,
    },

    /// An item of a shared store that is not an event this version wrote.
    #[error("the {store} audit store holds a corrupt event at {key}: {reason}")]
    CorruptItem {
        store: &'static str,
        key: String,
        reason: String,
    },

    /// A line of a JSON-lines day file is not an event this version wrote.
    #[error(
        "audit log file {}, line {line}, is not an audit event: {reason}; move the file aside \
         (or fix the line) to search the days around it",
        path.display()
    )]
    CorruptLine {
        path: PathBuf,
        line: i64,
        reason: String,
    },

    /// An event could not be encoded as JSON (should not happen for events built here).
    #[error("could not encode audit event: {0}")]
    Encode(#[source] serde_json::Error),

    /// The blocking worker thread died (panicked or the runtime is shutting down).
    #[error("audit log worker task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl Error {
    #[cfg(feature = "stores")]
    pub(crate) fn sqlite(action: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
        move |source| Error::Sqlite { action, source }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
