//! [`AdminError`]: why an administration call failed.
//!
//! `jctl` prints an error with its causes (`{:#}`, each cause after `: `), so a variant
//! that has a cause says only what was being done, and the cause says what went wrong;
//! variants that wrap another crate's error are `transparent`.

use jumpgate_api::ApiError;
use jumpgate_pki::PkiError;
use jumpgate_types::ResourceError;
use jumpgate_types::resource::InvalidName;

use crate::error::ClientError;

/// What can go wrong administering the cluster through the auth API.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The auth service refused the call (its message says why: a missing role, a name
    /// that does not exist, ...) or could not be reached during it.
    ///
    /// The status is not a `#[source]`: its message is this error's message, and its own
    /// `Display` is a debugging dump, so as a cause it would only repeat that message.
    #[error("{}{}", .status.message(), refusal_hint(.status.code()))]
    Refused {
        /// The gRPC status, as the auth service (or the transport) gave it.
        status: tonic::Status,
    },
    /// Dialling the auth service, or the TLS identity to dial it with, failed.
    #[error(transparent)]
    Connect(#[from] ApiError),
    /// The `jsh login` profile cannot be used (expired, unreadable).
    #[error(transparent)]
    Profile(#[from] ClientError),
    /// Making a key for a certificate to be signed failed.
    #[error(transparent)]
    Keys(#[from] PkiError),
    /// A resource built here cannot be written out (a time after year 9999), or a value
    /// for one does not parse (`jctl lock --expires`).
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// A name made here for a resource is not a valid resource name.
    #[error(transparent)]
    Name(#[from] InvalidName),
    /// A resource document from the auth service is not JSON.
    #[error("the auth service sent malformed JSON")]
    MalformedResource(#[source] serde_json::Error),
    /// A node record (from a host's heartbeat) is not one: no name, or another kind.
    #[error("the auth service sent a malformed node record")]
    MalformedNode(#[source] ResourceError),
    /// An audit event from the auth service is not JSON.
    #[error("malformed event from the auth service")]
    MalformedEvent(#[source] serde_json::Error),
    /// A file given to `jctl create` holds only comments and separators.
    #[error("{source_name}: holds no resource")]
    NoResource {
        /// The file (or `stdin`).
        source_name: String,
    },
    /// A document the auth API would not take: said here, not as the transport's "h2
    /// protocol error" when the client refuses to send it.
    #[error(
        "{source_name}: the document is {} KiB; the auth API takes resources of at most {} KiB",
        .len / 1024,
        super::MAX_DOCUMENT_LEN / 1024
    )]
    DocumentTooLarge {
        /// The file, and which document in it.
        source_name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A time for an audit search before 1970, which the API cannot express.
    #[error("the {what} time of an audit search must not be before 1970")]
    BeforeEpoch {
        /// `from` or `to`.
        what: &'static str,
    },
}

impl AdminError {
    /// The gRPC code of a refused call.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            AdminError::Refused { status } => Some(status.code()),
            _ => None,
        }
    }
}

impl From<tonic::Status> for AdminError {
    fn from(status: tonic::Status) -> AdminError {
        AdminError::Refused { status }
    }
}

/// What to check when the call did not get through.
fn refusal_hint(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Unavailable => " (is the auth service running?)",
        _ => "",
    }
}
