//! The SQLite store against real database files in temporary directories: the shared
//! audit-store suite, plus what only a local file can show (reopening, file modes, corrupt rows).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;

use jumpgate_audit::conformance::AuditLogs;
use jumpgate_audit::{
    AuditEvent, AuditLog, Error, EventType, MAX_LIMIT, SearchQuery, SqliteAuditLog, Timestamp,
};

const T0: i64 = 1_700_000_000_000;

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + ms).unwrap()
}

fn all_time() -> SearchQuery {
    SearchQuery::new(ts(-1_000_000_000), ts(1_000_000_000)).limit(MAX_LIMIT)
}

/// Two handles on one SQLite file: clones sharing the one connection, as the services do.
async fn sqlite() -> (AuditLogs, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteAuditLog::open(dir.path().join("audit/events.db"))
        .await
        .unwrap();
    let logs = AuditLogs {
        first: Arc::new(log.clone()),
        second: Arc::new(log),
    };
    (logs, dir)
}

jumpgate_audit::audit_store_suite!(sqlite());

#[tokio::test]
async fn events_survive_close_and_reopen_and_a_drop_without_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let log = SqliteAuditLog::open(&path).await.unwrap();
    let first = AuditEvent::success(EventType::RoleCreated)
        .at(ts(1))
        .user("admin")
        .field("name", "ops");
    log.append(first.clone()).await.unwrap();
    log.close().await.unwrap();
    log.close().await.unwrap(); // idempotent
    let err = log
        .append(AuditEvent::success(EventType::RoleDeleted))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Closed));

    let log = SqliteAuditLog::open(&path).await.unwrap();
    let second = AuditEvent::success(EventType::RoleDeleted)
        .at(ts(2))
        .user("admin");
    log.append(second.clone()).await.unwrap();
    drop(log); // no close: the append was already synced

    let log: Arc<dyn AuditLog> = Arc::new(SqliteAuditLog::open(&path).await.unwrap());
    assert_eq!(
        log.search(all_time()).await.unwrap().events,
        vec![first, second]
    );
    log.close().await.unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = SqliteAuditLog::open(&path).await.unwrap();
    log.append(AuditEvent::success(EventType::CertCreate))
        .await
        .unwrap();
    for name in ["events.db", "events.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_corrupt_row_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let log = SqliteAuditLog::open(&path).await.unwrap();
    log.close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO events (time_ms, event, uid, data) VALUES (?1, 'exec', 'x', '{not json')",
        [T0],
    )
    .unwrap();
    drop(conn);
    let log = SqliteAuditLog::open(&path).await.unwrap();
    let err = log.search(all_time()).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}
