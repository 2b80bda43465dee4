//! Opening the audit log the config asks for (`jumpgate.storage.audit_events_uri`).
//!
//! The searchable store is always SQLite in `data_dir/log/events.db`; `file://DIR`
//! URIs add daily JSON-lines files (for log shippers). Every event goes to all of them
//! before the action it records is answered.

use anyhow::{Context, Result, bail};
use jumpgate_audit::{AuditLog, CountedLog, FileAuditLog, MultiLog, SqliteAuditLog};
use std::path::Path;
use std::sync::Arc;

/// Checks the URIs without opening anything (before sockets are bound).
pub fn check(uris: &[String]) -> Result<()> {
    for (i, uri) in uris.iter().enumerate() {
        let field = format!("jumpgate.storage.audit_events_uri[{i}]");
        match uri.split_once("://").map(|(scheme, _)| scheme) {
            Some("file") => {
                FileAuditLog::dir_from_uri(uri).with_context(|| format!("{field}: {uri:?}"))?;
            }
            Some(scheme) => bail!(
                "{field}: {uri:?}: audit store {scheme:?} is not supported yet; events are \
                 kept in SQLite in data_dir, and `file:///DIR` adds JSON-lines files"
            ),
            None => bail!("{field}: {uri:?} is not a URI such as file:///var/lib/jumpgate/log"),
        }
    }
    Ok(())
}

/// Opens the audit log: SQLite in `data_dir/log/`, plus the `file://` stores.
pub async fn open(data_dir: &Path, uris: &[String]) -> Result<Arc<dyn AuditLog>> {
    check(uris)?;
    let path = data_dir.join("log").join("events.db");
    let primary: Arc<dyn AuditLog> = Arc::new(
        SqliteAuditLog::open(&path)
            .await
            .with_context(|| format!("opening the audit log {}", path.display()))?,
    );
    let mut others: Vec<Arc<dyn AuditLog>> = Vec::new();
    for uri in uris {
        let dir = FileAuditLog::dir_from_uri(uri)?;
        others.push(Arc::new(FileAuditLog::open(&dir).await.with_context(
            || format!("opening the audit directory {}", dir.display()),
        )?));
    }
    let all: Arc<dyn AuditLog> = if others.is_empty() {
        primary
    } else {
        Arc::new(MultiLog::new(primary, others))
    };
    Ok(Arc::new(CountedLog::new(all)))
}
