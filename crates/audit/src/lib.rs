//! Jumpgate's audit log (DESIGN.md, "Data" and "Invariants": every allow and every refusal
//! is audited).
//!
//! - [`AuditEvent`] is one typed, Teleport-shaped event (`event`, `code`, `uid`, `time`,
//!   `user`, `login`, `server_id`, `sid`, `addr.remote`, `success`, `error`, plus
//!   event-specific fields). It can only be built as a [`AuditEvent::success`] or a
//!   [`AuditEvent::failure`], so no caller forgets to say how it went.
//! - [`AuditLog`] is the store interface: append, search by time range / type / user /
//!   session with an opaque cursor, close.
//! - [`SqliteAuditLog`] is the default store (one file in `data_dir`); [`FileAuditLog`]
//!   writes daily JSON-lines files (`audit_events_uri: file://DIR`); `PostgresAuditLog`
//!   keeps one log for several auth servers (`postgresql://...`); [`MultiLog`] writes
//!   every event to several stores and searches the first. All pass the one suite in
//!   `conformance` (feature `test-support`).
//!
//! Durability: `append` returns only once the event is on disk (fsync), so a clean
//! shutdown — or even a crash after `append` returned — never loses an event.
#![forbid(unsafe_code)]

#[cfg(feature = "stores")]
pub mod configured;
#[cfg(feature = "test-support")]
pub mod conformance;
#[cfg(feature = "stores")]
mod dynamodb;
mod error;
mod event;
mod file;
mod log;
mod multi;
#[cfg(feature = "stores")]
mod postgres;
mod query;
pub mod recording;
#[cfg(feature = "stores")]
mod sqlite;
mod timestamp;

#[cfg(feature = "stores")]
pub use configured::{AuditUri, open_configured, parse_uris};
#[cfg(feature = "stores")]
pub use dynamodb::{DynamoAuditLog, DynamoAuditTarget};
pub use error::{Error, Result};
pub use event::{AuditEvent, EventType, RESERVED_KEYS};
pub use file::FileAuditLog;
#[cfg(feature = "stores")]
pub use log::CountedLog;
pub use log::{AuditLog, BoxFuture};
pub use multi::MultiLog;
#[cfg(feature = "stores")]
pub use postgres::PostgresAuditLog;
pub use query::{DEFAULT_LIMIT, MAX_LIMIT, Order, Page, SearchQuery};
#[cfg(feature = "stores")]
pub use recording::PostgresRecordingStore;
pub use recording::{FileRecordingStore, RecordingError, RecordingStore};
#[cfg(feature = "s3")]
pub use recording::{S3Credentials, S3Options, S3RecordingStore};
#[cfg(feature = "stores")]
pub use sqlite::SqliteAuditLog;
pub use timestamp::Timestamp;
