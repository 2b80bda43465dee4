//! The one place where the auth service's errors become gRPC statuses (STYLE.md
//! "Errors"). Internal errors are logged here with their detail and reach the caller
//! only as a generic message, so no backend or key detail leaks to a client.

use crate::AuthError;
use crate::tokens::{JoinError, SignupError};
use crate::users::LoginError;
use jumpgate_backend::BackendError;
use tonic::{Code, Status};
use tracing::error;

/// Why a call failed, as the caller should see it.
#[derive(Debug)]
pub enum ServiceError {
    /// No identity, or one that does not verify.
    Unauthenticated(String),
    /// The identity may not do this (audited as an `auth` event).
    PermissionDenied(String),
    /// The request is malformed; the message names the field.
    InvalidArgument(String),
    NotFound(String),
    AlreadyExists(String),
    /// Too many attempts from one address.
    RateLimited(String),
    /// The backend is unreachable for now: try again.
    Unavailable(String),
    /// A bug or corrupt state: logged with detail, reported generically.
    Internal(String),
}

impl ServiceError {
    pub fn invalid(message: impl Into<String>) -> ServiceError {
        ServiceError::InvalidArgument(message.into())
    }
}

/// The message as an audit event's `error` (internal detail included: the audit log
/// is for operators).
impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceError::Unauthenticated(message)
            | ServiceError::PermissionDenied(message)
            | ServiceError::InvalidArgument(message)
            | ServiceError::NotFound(message)
            | ServiceError::AlreadyExists(message)
            | ServiceError::RateLimited(message)
            | ServiceError::Unavailable(message)
            | ServiceError::Internal(message) => f.write_str(message),
        }
    }
}

impl From<AuthError> for ServiceError {
    fn from(err: AuthError) -> ServiceError {
        match err {
            AuthError::InvalidRequest(message) => ServiceError::InvalidArgument(message),
            AuthError::Backend(BackendError::NotFound { key }) => {
                ServiceError::NotFound(format!("{key} does not exist"))
            }
            AuthError::Backend(BackendError::AlreadyExists { key }) => {
                ServiceError::AlreadyExists(format!("{key} already exists"))
            }
            AuthError::Backend(err) if err.is_retryable() => ServiceError::Unavailable(format!(
                "the cluster state backend is unavailable ({err}); try again"
            )),
            AuthError::Pki(jumpgate_pki::PkiError::InvalidRequest(message)) => {
                ServiceError::InvalidArgument(message)
            }
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<LoginError> for ServiceError {
    fn from(err: LoginError) -> ServiceError {
        match err {
            LoginError::Internal(err) => err.into(),
            // Wrong credentials, locked, code missing: the message is written for users.
            other => ServiceError::Unauthenticated(other.to_string()),
        }
    }
}

impl From<JoinError> for ServiceError {
    fn from(err: JoinError) -> ServiceError {
        match err {
            JoinError::Internal(err) => err.into(),
            other => ServiceError::PermissionDenied(other.to_string()),
        }
    }
}

impl From<SignupError> for ServiceError {
    fn from(err: SignupError) -> ServiceError {
        match err {
            SignupError::Internal(err) => err.into(),
            other => ServiceError::PermissionDenied(other.to_string()),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Status {
        match err {
            ServiceError::Unauthenticated(message) => Status::new(Code::Unauthenticated, message),
            ServiceError::PermissionDenied(message) => Status::new(Code::PermissionDenied, message),
            ServiceError::InvalidArgument(message) => Status::new(Code::InvalidArgument, message),
            ServiceError::NotFound(message) => Status::new(Code::NotFound, message),
            ServiceError::AlreadyExists(message) => Status::new(Code::AlreadyExists, message),
            ServiceError::RateLimited(message) => Status::new(Code::ResourceExhausted, message),
            ServiceError::Unavailable(message) => Status::new(Code::Unavailable, message),
            ServiceError::Internal(detail) => {
                error!(%detail, "internal error in the auth service");
                Status::new(
                    Code::Internal,
                    "internal error in the auth service; its log has the details",
                )
            }
        }
    }
}
