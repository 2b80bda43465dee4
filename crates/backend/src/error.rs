//! Errors a caller can match on: the "fails if" outcomes of each operation, and the
//! faults of the store behind (unreachable, corrupt), which say what to do.

use crate::types::Key;

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("key {key} not found")]
    NotFound { key: Key },

    #[error("key {key} already exists")]
    AlreadyExists { key: Key },

    /// A compare-and-swap or conditional write lost: someone else wrote first.
    #[error("key {key} changed since it was read (compare failed); read it again and retry")]
    CompareFailed { key: Key },

    /// A condition of an atomic write did not hold; nothing was written.
    #[error(
        "condition #{index} of the atomic write ({condition}) did not hold; nothing was written"
    )]
    ConditionFailed { index: usize, condition: String },

    /// The caller asked for something the interface does not allow.
    #[error("invalid request: {0}")]
    InvalidArgument(String),

    /// The store cannot be reached or refused the connection; retrying later may work.
    #[error("{backend} backend unavailable: {detail}")]
    Unavailable {
        backend: &'static str,
        detail: String,
    },

    /// Stored bytes are not what this version of Jumpgate wrote.
    #[error("{backend} backend holds corrupt data at {location}: {detail}")]
    Corrupt {
        backend: &'static str,
        location: String,
        detail: String,
    },

    /// The store failed in a way that is not the caller's fault.
    #[error("{backend} backend error: {detail}")]
    Internal {
        backend: &'static str,
        detail: String,
    },
}

impl BackendError {
    /// Whether retrying the same call later may succeed (the store was unreachable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, BackendError::Unavailable { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }
}
