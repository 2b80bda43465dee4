//! Opening the audit log the config asks for (`jumpgate.storage.audit_events_uri`).
//!
//! The searchable store is always SQLite in `DATA_DIR/log/events.db`; `file://DIR` URIs
//! add daily JSON-lines files (for log shippers). Every event goes to all of them before
//! the action it records is answered, and every one is counted for `/metrics`.

use crate::{AuditLog, CountedLog, FileAuditLog, MultiLog, Result, SqliteAuditLog};
use std::path::Path;
use std::sync::Arc;

/// The SQLite audit log's file inside a data directory.
pub fn sqlite_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("log").join("events.db")
}

/// Opens SQLite in `DATA_DIR/log/`, plus a JSON-lines store per `file://` URI. The config
/// validation has already refused other schemes; one here is an [`crate::Error::InvalidUri`].
pub async fn open_configured(data_dir: &Path, uris: &[String]) -> Result<Arc<dyn AuditLog>> {
    let primary: Arc<dyn AuditLog> = Arc::new(SqliteAuditLog::open(sqlite_path(data_dir)).await?);
    let mut others: Vec<Arc<dyn AuditLog>> = Vec::new();
    for uri in uris {
        let dir = FileAuditLog::dir_from_uri(uri)?;
        others.push(Arc::new(FileAuditLog::open(&dir).await?));
    }
    let all: Arc<dyn AuditLog> = if others.is_empty() {
        primary
    } else {
        Arc::new(MultiLog::new(primary, others))
    };
    Ok(Arc::new(CountedLog::new(all)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_uri_that_is_not_a_directory_is_refused_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let Err(err) = open_configured(dir.path(), &["s3://bucket".to_string()]).await else {
            panic!("an s3:// URI was accepted as an audit directory");
        };
        assert!(matches!(err, crate::Error::InvalidUri { .. }), "{err:?}");
        let events = dir.path().join("events");
        let uri = format!("file://{}", events.display());
        let log = open_configured(dir.path(), &[uri]).await.unwrap();
        drop(log);
        assert!(sqlite_path(dir.path()).exists());
        assert!(events.is_dir());
    }
}
