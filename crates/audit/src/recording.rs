//! Session recordings (DESIGN.md, "Flows: Recording"): every interactive session is recorded
//! by its node as an [asciicast v2](https://docs.asciinema.org/manual/asciicast/v2/) stream, so
//! standard players (`asciinema play`, asciinema-player) work on the files as they are.
//!
//! - The first line is the [`Header`]; Jumpgate's own facts (session id, user, login, node,
//!   cluster) sit under one extra header key, `"jumpgate"` ([`SessionMeta`]), which players
//!   ignore. Then one [`Event`] per line: `[seconds, "o"|"i"|"r"|"m", data]`.
//! - Node side: [`CastEncoder`] turns events into lines without I/O (keeping UTF-8 split
//!   across PTY reads whole, invalid bytes as U+FFFD); [`RecordingWriter`] writes them to a
//!   local spool file ([`SpoolFile`]); [`read_part`] reads the spool back from the
//!   acknowledged offset for upload in parts of up to [`MAX_PART_LEN`].
//! - Auth side: [`RecordingStore`] receives the parts (idempotently, refusing gaps), and
//!   [`FileRecordingStore`] keeps them as `DIR/<session_id>.cast`; `S3RecordingStore` (feature
//!   `s3`, linked by auth only) keeps them in an S3-compatible bucket shared by every auth
//!   server (see its module docs for the protocol and its costs); `PostgresRecordingStore`
//!   (feature `stores`) keeps them in a PostgreSQL database shared by every auth server, in
//!   one transaction per part. [`read_header`] reads a stored recording's header alone, for
//!   deciding who may see it.
//! - Reading: [`parse_cast`] validates untrusted recordings with bounded memory, naming the
//!   bad line; [`to_text`], [`to_json`] and [`play`] are what `jsh play` shows.

mod cast;
#[cfg(feature = "test-support")]
pub mod conformance;
mod encode;
mod error;
mod export;
mod parse;
#[cfg(feature = "stores")]
mod postgres;
#[cfg(feature = "s3")]
mod s3;
mod spool;
mod store;

pub use cast::{
    Event, EventKind, Header, MAX_SESSION_ID_LEN, Recording, SessionId, SessionMeta, TruncatedTail,
};
pub use encode::{CastEncoder, MAX_MARKER_LEN};
pub use error::{LineProblem, RecordingError};
pub use export::{MAX_SPEED, MIN_SPEED, PlayOptions, play, to_json, to_text};
pub use parse::{ParseOptions, parse_cast};
#[cfg(feature = "stores")]
pub use postgres::PostgresRecordingStore;
#[cfg(feature = "s3")]
pub use s3::{S3Credentials, S3Options, S3RecordingStore};
pub use spool::{RecordingWriter, SpoolFile, SpoolOptions, read_part};
pub use store::{FileRecordingStore, MAX_PART_LEN, RecordingInfo, RecordingStore, read_header};

/// The longest line (without its newline) a recording may have.
pub const MAX_LINE_LEN: usize = 1024 * 1024;

/// The default size limit of a whole recording, for parsing and for the store.
pub const DEFAULT_MAX_RECORDING_LEN: u64 = 256 * 1024 * 1024;

/// The latest event time accepted, in seconds (136 years): far beyond any session, and small
/// enough that microsecond times stay exact in the f64 seconds of the file format.
pub const MAX_EVENT_TIME_SECS: u32 = u32::MAX;
