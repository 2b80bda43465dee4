//! The one place where the auth service's errors become gRPC statuses (STYLE.md
//! "Errors"). Internal errors are logged here with their detail and reach the caller
//! only as a generic message, so no backend or key detail leaks to a client.

use crate::AuthError;
use crate::tokens::{JoinError, SignupError};
use crate::users::LoginError;
use crate::webauthn::DeviceError;
use jumpgate_backend::BackendError;
use tonic::{Code, Status};
use tracing::error;

/// Why a call failed, as the caller should see it. Its `Display` is the message for the
/// audit log (internal detail included: the audit log is for operators); what the caller
/// sees is the [`Status`] made below.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No identity, or one that does not verify (the client's).
    #[error("{0}")]
    Unauthenticated(String),
    /// The identity may not do this (audited as an `auth` event).
    #[error("{0}")]
    PermissionDenied(String),
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Too many attempts from one address.
    #[error("{0}")]
    RateLimited(String),
    /// Not possible yet (a session auth has not heard of): try again.
    #[error("{0}")]
    Unavailable(String),
    /// The backend is unreachable for now: try again. The backend's error is sent too
    /// (it says which endpoint is down, not what is stored).
    #[error("the cluster state backend is unavailable ({0}); try again")]
    BackendUnavailable(#[source] BackendError),
    /// A bug or corrupt state (internal): logged with detail, reported generically.
    #[error(transparent)]
    Internal(#[from] InternalError),
}

/// An internal failure with the error underneath (a backend, the audit log, encoding).
/// Logged where it becomes a status; never sent.
#[derive(Debug)]
pub struct InternalError {
    /// What was being done, when the underlying error does not say: `session owner record`.
    context: Option<&'static str>,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl InternalError {
    /// `source` as is.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        InternalError {
            context: None,
            source: source.into(),
        }
    }

    /// `source` while doing `context`: its message is `{context}: {source}`.
    pub fn context(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        InternalError {
            context: Some(context),
            source: source.into(),
        }
    }
}

impl std::fmt::Display for InternalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.context {
            Some(context) => write!(f, "{context}: {}", self.source),
            None => write!(f, "{}", self.source),
        }
    }
}

impl std::error::Error for InternalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

impl ServiceError {
    pub fn invalid(message: impl Into<String>) -> ServiceError {
        ServiceError::InvalidArgument(message.into())
    }

    /// An internal error: `err` is kept as the source, logged, and never sent.
    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ServiceError {
        ServiceError::Internal(InternalError::new(err))
    }

    /// [`ServiceError::internal`] while doing `context`.
    pub fn internal_in(
        context: &'static str,
        err: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ServiceError {
        ServiceError::Internal(InternalError::context(context, err))
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
            AuthError::Backend(err) if err.is_retryable() => ServiceError::BackendUnavailable(err),
            AuthError::Pki(jumpgate_pki::PkiError::InvalidRequest(message)) => {
                ServiceError::InvalidArgument(message)
            }
            other => ServiceError::internal(other),
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

impl From<DeviceError> for ServiceError {
    fn from(err: DeviceError) -> ServiceError {
        match err {
            DeviceError::NotFound(_) => ServiceError::NotFound(err.to_string()),
            DeviceError::LastFactor(..) => ServiceError::PermissionDenied(err.to_string()),
            DeviceError::NotRegistered | DeviceError::CounterRegression { .. } => {
                ServiceError::Unauthenticated(super::mfa::KEY_REFUSED.to_string())
            }
            DeviceError::Internal(err) => err.into(),
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
            ServiceError::Unavailable(message) => {
                let mut status = Status::new(Code::Unavailable, message);
                // Meant for the user (see the constant's docs).
                status.metadata_mut().insert(
                    jumpgate_api::UNAVAILABLE_EXPLAINED,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
                status
            }
            err @ ServiceError::BackendUnavailable(_) => {
                Status::new(Code::Unavailable, err.to_string())
            }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use std::error::Error as _;

    #[test]
    fn internal_errors_keep_their_source_and_are_not_sent() {
        let json = serde_json::from_str::<u8>("x").unwrap_err();
        let text = json.to_string();
        let err = ServiceError::internal_in("session owner record", json);
        assert_eq!(err.to_string(), format!("session owner record: {text}"));
        let source = err.source().unwrap();
        assert!(
            source.downcast_ref::<serde_json::Error>().is_some(),
            "{source:?}"
        );
        let status = Status::from(err);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains(&text), "{}", status.message());
    }

    #[test]
    fn only_unavailable_messages_meant_for_users_are_marked_so() {
        let provider = Status::from(ServiceError::Unavailable(
            "the identity provider did not answer".to_string(),
        ));
        assert_eq!(provider.code(), Code::Unavailable);
        assert!(
            provider
                .metadata()
                .contains_key(jumpgate_api::UNAVAILABLE_EXPLAINED)
        );
        let backend = Status::from(ServiceError::from(AuthError::Backend(
            BackendError::Unavailable {
                backend: "etcd",
                detail: "10.0.0.1:2379: timed out".to_string(),
            },
        )));
        assert_eq!(backend.code(), Code::Unavailable);
        assert!(
            !backend
                .metadata()
                .contains_key(jumpgate_api::UNAVAILABLE_EXPLAINED)
        );
    }

    #[test]
    fn a_retryable_backend_error_is_unavailable_with_its_source() {
        let backend = BackendError::Unavailable {
            backend: "etcd",
            detail: "10.0.0.1:2379: timed out".to_string(),
        };
        assert!(backend.is_retryable());
        let err = ServiceError::from(AuthError::Backend(backend));
        let ServiceError::BackendUnavailable(inner) = &err else {
            panic!("{err:?}");
        };
        assert!(inner.is_retryable());
        let message = err.to_string();
        assert_eq!(
            message,
            "the cluster state backend is unavailable (etcd backend unavailable: \
             10.0.0.1:2379: timed out); try again"
        );
        assert!(
            err.source()
                .unwrap()
                .downcast_ref::<BackendError>()
                .is_some()
        );
        let status = Status::from(err);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), message);
    }

    #[test]
    fn an_audit_failure_keeps_the_audit_error() {
        let err = AuthError::Audit(jumpgate_audit::Error::Closed);
        assert_eq!(
            err.to_string(),
            "cannot write the audit log: the audit log is closed"
        );
        let source = err.source().unwrap();
        assert!(matches!(
            source.downcast_ref::<jumpgate_audit::Error>(),
            Some(jumpgate_audit::Error::Closed)
        ));
    }
}
