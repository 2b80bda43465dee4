//! Opening the audit log the config asks for (`jumpgate.storage.audit_events_uri`).
//!
//! Teleport's rule: with no URI, events go to the embedded store (SQLite in
//! `DATA_DIR/log/events.db`); with URIs, every event goes to each of them before the
//! action it records is answered, and searches go to the first. The forms:
//! - `file:///DIR`: daily JSON-lines files in `DIR` (for log shippers; searchable too);
//! - `postgresql://user@host:5432/db?...` (or `postgres://`): a PostgreSQL database that
//!   several auth servers share;
//! - `dynamodb://TABLE?region=R[&endpoint=URL]`: a DynamoDB table that several auth servers
//!   share (credentials from the standard AWS chain).
//!
//! [`AuditUri::parse`] checks a URI without I/O, so a bad one stops the daemon before any
//! socket is bound; [`open_configured`] opens them and counts every write for `/metrics`.

use crate::{
    AuditLog, CountedLog, DynamoAuditLog, DynamoAuditTarget, FileAuditLog, MultiLog,
    PostgresAuditLog, Result, SqliteAuditLog,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The SQLite audit log's file inside a data directory.
pub fn sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("log").join("events.db")
}

/// One `audit_events_uri`, checked.
#[derive(Clone, PartialEq, Eq)]
pub enum AuditUri {
    /// `file:///DIR`
    Files(PathBuf),
    /// `postgresql://...`, kept whole for the driver (it may hold a password: never printed).
    Postgres(String),
    /// `dynamodb://TABLE?region=R&endpoint=URL`
    Dynamo(DynamoAuditTarget),
}

impl std::fmt::Debug for AuditUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl AuditUri {
    /// Parses one URI; an unknown scheme or a malformed URI is an error naming it.
    pub fn parse(uri: &str) -> Result<AuditUri> {
        if uri.starts_with("file://") {
            return FileAuditLog::dir_from_uri(uri).map(AuditUri::Files);
        }
        if uri.starts_with("postgresql://") || uri.starts_with("postgres://") {
            jumpgate_backend::pg::PgTarget::parse(uri, None)
                .map_err(|reason| crate::Error::InvalidPostgresUri { reason })?;
            return Ok(AuditUri::Postgres(uri.to_string()));
        }
        if uri.starts_with("dynamodb://") {
            return DynamoAuditTarget::parse(uri)
                .map(AuditUri::Dynamo)
                .map_err(|reason| crate::Error::InvalidDynamoUri {
                    uri: uri.to_string(),
                    reason,
                });
        }
        Err(crate::Error::InvalidUri {
            uri: uri.to_string(),
            reason: "expected file:///DIR, postgresql://USER@HOST:PORT/DATABASE or \
                     dynamodb://TABLE?region=REGION",
        })
    }

    /// Where the events go, for logs: never a password.
    pub fn describe(&self) -> String {
        match self {
            AuditUri::Files(dir) => format!("files in {}", dir.display()),
            AuditUri::Postgres(uri) => match jumpgate_backend::pg::PgTarget::parse(uri, None) {
                Ok(target) => format!("postgresql at {}", target.endpoint()),
                Err(_) => "postgresql".to_string(),
            },
            AuditUri::Dynamo(target) => target.describe(),
        }
    }

    async fn open(&self) -> Result<Arc<dyn AuditLog>> {
        Ok(match self {
            AuditUri::Files(dir) => Arc::new(FileAuditLog::open(dir).await?),
            AuditUri::Postgres(uri) => Arc::new(PostgresAuditLog::open(uri).await?),
            AuditUri::Dynamo(target) => Arc::new(DynamoAuditLog::open(target.clone()).await?),
        })
    }
}

/// Checks every URI without opening anything.
pub fn parse_uris(uris: &[String]) -> Result<Vec<AuditUri>> {
    uris.iter().map(|uri| AuditUri::parse(uri)).collect()
}

/// Opens SQLite in `DATA_DIR/log/` when `uris` is empty; otherwise every URI, the first
/// answering searches.
pub async fn open_configured(data_dir: &Path, uris: &[String]) -> Result<Arc<dyn AuditLog>> {
    let parsed = parse_uris(uris)?;
    let mut opened: Vec<Arc<dyn AuditLog>> = Vec::with_capacity(parsed.len());
    for uri in &parsed {
        match uri.open().await {
            Ok(log) => opened.push(log),
            Err(err) => {
                for log in opened {
                    let _ = log.close().await;
                }
                return Err(err);
            }
        }
    }
    let mut stores = opened.into_iter();
    let all: Arc<dyn AuditLog> = match stores.next() {
        None => Arc::new(SqliteAuditLog::open(sqlite_path(data_dir)).await?),
        Some(primary) => {
            let others: Vec<_> = stores.collect();
            if others.is_empty() {
                primary
            } else {
                Arc::new(MultiLog::new(primary, others))
            }
        }
    };
    for uri in &parsed {
        tracing::info!(store = %uri.describe(), "audit events go to");
    }
    Ok(Arc::new(CountedLog::new(all)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[tokio::test]
    async fn uris_choose_the_stores_and_the_first_is_searched() {
        let dir = tempfile::tempdir().unwrap();
        let Err(err) = open_configured(dir.path(), &["s3://bucket".to_string()]).await else {
            panic!("an s3:// URI was accepted as an audit store");
        };
        assert!(matches!(err, crate::Error::InvalidUri { .. }), "{err:?}");

        // No URI: SQLite in the data directory.
        let log = open_configured(dir.path(), &[]).await.unwrap();
        log.close().await.unwrap();
        assert!(sqlite_path(dir.path()).exists());

        // A file URI alone: the files, and no SQLite.
        let other = tempfile::tempdir().unwrap();
        let events = other.path().join("events");
        let uri = format!("file://{}", events.display());
        let log = open_configured(other.path(), &[uri]).await.unwrap();
        log.close().await.unwrap();
        assert!(events.is_dir());
        assert!(!sqlite_path(other.path()).exists());
    }

    #[test]
    fn descriptions_never_show_a_password() {
        let uri = AuditUri::parse("postgresql://jg:s3cret@db1:5432,db2/audit").unwrap();
        assert_eq!(uri.describe(), "postgresql at db1:5432,db2:5432/audit");
        assert!(!format!("{uri:?}").contains("s3cret"));
        for bad in [
            "dynamodb:/x",
            "postgresql://u@h:x/d",
            "file://relative",
            "/var/log",
        ] {
            assert!(AuditUri::parse(bad).is_err(), "{bad}");
        }
    }
}
