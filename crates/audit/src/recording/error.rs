//! Errors of the recording code. [`RecordingError::Malformed`] names the line of an untrusted
//! recording and, in [`LineProblem`], what is wrong with it; the store variants say whether the
//! uploader should resend from another offset, stop, or look at the disk.

use std::path::PathBuf;

use super::SessionId;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingError {
    /// A line of a recording is not valid asciicast v2. `line` counts from 1 (the header).
    #[error("recording line {line}: {problem}")]
    Malformed { line: usize, problem: LineProblem },

    /// A recording (or the part of it being read) is bigger than the caller's limit.
    #[error(
        "recording is {size} bytes, more than the limit of {max} bytes; \
         raise the limit if this recording is expected to be that large"
    )]
    TooLarge { size: u64, max: u64 },

    /// A session id that could not be used as a file name or object key.
    #[error(
        "invalid session id {id:?}: {reason}; a session id is 1 to 64 ASCII letters, digits or '-'"
    )]
    InvalidSessionId { id: String, reason: &'static str },

    /// A playback speed outside [`super::MIN_SPEED`]..=[`super::MAX_SPEED`].
    #[error("invalid playback speed {speed}: use a number from 0.001 to 1000 (1 is real time)")]
    InvalidSpeed { speed: f64 },

    /// An uploaded part bigger than [`super::MAX_PART_LEN`].
    #[error(
        "recording part of {len} bytes is larger than the limit of {max} bytes; send smaller parts"
    )]
    PartTooLarge { len: usize, max: usize },

    /// An uploaded part starts after the end of what the store holds; the uploader's idea of
    /// what was acknowledged is ahead of the store (for example, a lost part).
    #[error(
        "recording {session_id}: part at offset {offset} would leave a gap, the store holds \
         {stored} bytes; resend from offset {stored}"
    )]
    Gap {
        session_id: SessionId,
        offset: u64,
        stored: u64,
    },

    /// An uploaded part overlaps stored bytes but differs from them: the node's spool and the
    /// store disagree, so two writers are using one session id or a file was damaged.
    #[error(
        "recording {session_id}: part at offset {offset} differs from the bytes already stored \
         there; the recording was written by two different sources or damaged, refusing to mix them"
    )]
    Conflict { session_id: SessionId, offset: u64 },

    /// The recording was marked complete; it cannot grow any more.
    #[error(
        "recording {session_id} is already complete ({stored} bytes) and cannot grow; \
         a new session needs a new session id"
    )]
    AlreadyComplete { session_id: SessionId, stored: u64 },

    /// No recording with this session id is stored.
    #[error("no recording for session {session_id}")]
    NotFound { session_id: SessionId },

    /// A file or directory could not be created, read, written or synced.
    #[error("recording I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The object store cannot be reached (connection refused, timeout, 5xx after retries):
    /// try again later.
    #[error(
        "the recording store at {endpoint} is unavailable: {reason}; check that it is up and \
         reachable from this auth server, the upload will be retried"
    )]
    StoreUnavailable { endpoint: String, reason: String },

    /// The object store refused the credentials or their permissions.
    /// `reason` names the bucket and the request.
    #[error(
        "the recording store at {endpoint} refused access key id {access_key_id}: {reason}; \
         check the secret key and the key's permissions on the bucket"
    )]
    StoreDenied {
        endpoint: String,
        access_key_id: String,
        reason: String,
    },

    /// The object store answered a request with an error not covered above; `detail` names
    /// the request, the key and the answer.
    #[error("the recording store at {endpoint} (bucket {bucket:?}): {detail}")]
    Store {
        endpoint: String,
        bucket: String,
        detail: String,
    },

    /// The database holding the recordings refused a request for a reason other than its
    /// availability (a permission, a full disk, a damaged table); `detail` names the action
    /// and the server's answer.
    #[error("the recording store in PostgreSQL at {endpoint}: {detail}")]
    Database { endpoint: String, detail: String },

    /// The store cannot be set up as configured (no credentials, no such bucket).
    #[error("recording store: {reason}")]
    StoreConfig { reason: String },

    /// What the store holds about a recording contradicts itself (damaged or edited by hand).
    #[error("recording {session_id} is damaged in the store: {reason}")]
    Corrupt {
        session_id: SessionId,
        reason: String,
    },

    /// The blocking worker thread died (panicked or the runtime is shutting down).
    #[error("recording store worker task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl RecordingError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RecordingError {
        let path = path.into();
        move |source| RecordingError::Io { path, source }
    }

    pub(crate) fn line(line: usize, problem: LineProblem) -> RecordingError {
        RecordingError::Malformed { line, problem }
    }
}

/// What is wrong with one line of a recording.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LineProblem {
    #[error("the recording is empty; expected an asciicast v2 header line")]
    Empty,

    #[error("blank line; every line must be a JSON header or event")]
    Blank,

    #[error("line is {len} bytes, longer than the limit of {max} bytes")]
    TooLong { len: usize, max: usize },

    #[error("not valid UTF-8 (at byte {at} of the line)")]
    NotUtf8 { at: usize },

    #[error("not JSON: {reason} (column {column})")]
    NotJson { reason: String, column: usize },

    /// The last line ends without a newline in the middle of a JSON value: the session most
    /// likely ended abruptly. Tolerant parsing keeps the lines before it.
    #[error(
        "the line is cut off (the recording ends in the middle of it); the session may have \
         ended abruptly, parse in tolerant mode to keep the complete lines"
    )]
    Truncated,

    #[error("the header must be a JSON object")]
    HeaderNotObject,

    #[error("asciicast version {found} is not supported; expected version 2")]
    UnsupportedVersion { found: String },

    #[error("header field `{field}` is missing")]
    MissingField { field: &'static str },

    #[error("header field `{field}` must be {expected}")]
    BadField {
        field: &'static str,
        expected: &'static str,
    },

    #[error("an event must be a JSON array [time, code, data]")]
    EventNotArray,

    #[error("an event must have 3 elements [time, code, data], this one has {len}")]
    EventArity { len: usize },

    #[error("event time must be a number of seconds from 0 to {max}")]
    BadTime { max: u32 },

    #[error("event time {time:.6} s is before the previous event's {previous:.6} s")]
    TimeWentBackwards { previous: f64, time: f64 },

    #[error("event code must be a string: \"o\", \"i\", \"r\" or \"m\"")]
    CodeNotString,

    #[error("unknown event code {code:?}; expected \"o\", \"i\", \"r\" or \"m\"")]
    UnknownEventCode { code: String },

    #[error("event data must be a string")]
    DataNotString,

    #[error("resize data {data:?} is not COLSxROWS (for example \"80x24\")")]
    BadResize { data: String },
}
