//! The JSON-lines store, the multi-store, and the JSON shape auditors and SIEMs read.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;

use jumpgate_audit::{
    AuditEvent, AuditLog, Error, EventType, FileAuditLog, MultiLog, SearchQuery, SqliteAuditLog,
    Timestamp,
};
use serde_json::Value;

fn at(rfc3339: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).unwrap()
}

fn read_lines(path: &std::path::Path) -> Vec<AuditEvent> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn lines_parse_back_and_days_roll_over_by_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileAuditLog::open(dir.path().join("log")).await.unwrap();
    let before = AuditEvent::success(EventType::UserLogin)
        .at(at("2026-03-01T23:59:59.999Z"))
        .user("alice");
    let midnight = AuditEvent::failure(EventType::UserLogin, "bad password")
        .at(at("2026-03-02T00:00:00.000Z"))
        .user("bob");
    // UTC day, not local day: 01:30+02:00 is still March 1st in UTC.
    let offset = AuditEvent::success(EventType::SessionEnd)
        .at(at("2026-03-02T01:30:00+02:00"))
        .session_id("s1");
    let later = AuditEvent::success(EventType::JoinTokenCreate)
        .at(at("2026-03-02T12:00:00Z"))
        .field("roles", serde_json::json!(["node"]));
    for e in [&before, &midnight, &offset, &later] {
        log.append(e.clone()).await.unwrap();
    }
    log.close().await.unwrap();

    let mut names: Vec<_> = std::fs::read_dir(log.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["2026-03-01.log", "2026-03-02.log"]);
    assert_eq!(
        read_lines(&log.file_for_day("2026-03-01")),
        vec![before, offset]
    );
    assert_eq!(
        read_lines(&log.file_for_day("2026-03-02")),
        vec![midnight, later]
    );

    let err = log
        .append(AuditEvent::success(EventType::Exec))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Closed));
    let err = log
        .search(SearchQuery::new(
            at("2026-03-01T00:00:00Z"),
            at("2026-03-03T00:00:00Z"),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SearchUnsupported { .. }));
}

#[tokio::test]
async fn reopening_appends_to_the_same_day_file() {
    let dir = tempfile::tempdir().unwrap();
    let t = at("2026-05-05T05:05:05.005Z");
    let mut expected = Vec::new();
    for _ in 0..2 {
        let log = FileAuditLog::open(dir.path()).await.unwrap();
        let e = AuditEvent::success(EventType::UserUpdate)
            .at(t)
            .user("carol");
        expected.push(e.clone());
        log.append(e).await.unwrap();
        log.close().await.unwrap();
    }
    let log = FileAuditLog::open(dir.path()).await.unwrap();
    assert_eq!(read_lines(&log.file_for_day("2026-05-05")), expected);
}

#[cfg(unix)]
#[tokio::test]
async fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let log = FileAuditLog::open(dir.path().join("log")).await.unwrap();
    log.append(AuditEvent::success(EventType::Exec).at(at("2026-01-01T00:00:00Z")))
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&log.file_for_day("2026-01-01")), 0o600);
    assert_eq!(mode(log.dir()), 0o700);
}

#[test]
fn audit_events_uri() {
    assert_eq!(
        FileAuditLog::dir_from_uri("file:///var/lib/jumpgate/log").unwrap(),
        std::path::PathBuf::from("/var/lib/jumpgate/log")
    );
    for bad in ["/var/lib/log", "file://relative/dir", "s3://bucket", ""] {
        assert!(
            matches!(
                FileAuditLog::dir_from_uri(bad),
                Err(Error::InvalidUri { .. })
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn multi_log_writes_everywhere_and_searches_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteAuditLog::open(dir.path().join("events.db"))
        .await
        .unwrap();
    let files = FileAuditLog::open(dir.path().join("log")).await.unwrap();
    let multi = MultiLog::new(Arc::new(sqlite.clone()), vec![Arc::new(files.clone())]);
    let e = AuditEvent::success(EventType::CertCreate)
        .at(at("2026-07-04T10:00:00Z"))
        .user("alice")
        .field("cert_type", "user");
    multi.append(e.clone()).await.unwrap();
    let page = multi
        .search(SearchQuery::new(
            at("2026-07-04T00:00:00Z"),
            at("2026-07-05T00:00:00Z"),
        ))
        .await
        .unwrap();
    assert_eq!(page.events, vec![e.clone()]);
    assert_eq!(read_lines(&files.file_for_day("2026-07-04")), vec![e]);
    multi.close().await.unwrap();
    assert!(matches!(
        sqlite.append(AuditEvent::success(EventType::Exec)).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        files.append(AuditEvent::success(EventType::Exec)).await,
        Err(Error::Closed)
    ));
}

#[test]
fn json_has_teleport_keys_including_addr_remote() {
    let e = AuditEvent::success(EventType::SessionStart)
        .at(at("2026-01-02T03:04:05.678Z"))
        .user("alice")
        .login("root")
        .server_id("node-1")
        .session_id("s-1")
        .remote_addr("192.0.2.1:40000");
    let v: Value = serde_json::from_str(&e.to_json().unwrap()).unwrap();
    assert_eq!(v["event"], "session.start");
    assert_eq!(v["code"], "T2000I");
    assert_eq!(v["time"], "2026-01-02T03:04:05.678Z");
    assert_eq!(v["addr.remote"], "192.0.2.1:40000");
    assert_eq!(v["login"], "root");
    assert_eq!(v["server_id"], "node-1");
    assert_eq!(v["sid"], "s-1");
    assert_eq!(v["success"], true);
    assert!(v.get("error").is_none());
}

/// An event carries exactly what its builder was given: the error text verbatim, no
/// `Debug` dump of any struct, no extra keys where a secret could hide.
#[test]
fn a_failure_event_contains_only_what_was_put_in() {
    #[derive(Debug)]
    #[allow(dead_code)]
    struct LoginRequest {
        user: &'static str,
        password: &'static str,
    }
    let request = LoginRequest {
        user: "alice",
        password: "hunter2-secret",
    };
    let e = AuditEvent::failure(EventType::UserLogin, "invalid username or password")
        .at(at("2026-01-01T00:00:00Z"))
        .user(request.user)
        .remote_addr("198.51.100.7:1234")
        .field("method", "local");
    let json = e.to_json().unwrap();
    assert!(!json.contains("hunter2"), "{json}");
    assert!(!json.contains("LoginRequest"), "{json}");
    let v: Value = serde_json::from_str(&json).unwrap();
    let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "addr.remote",
            "code",
            "error",
            "event",
            "method",
            "success",
            "time",
            "uid",
            "user"
        ]
    );
    assert_eq!(v["error"], "invalid username or password");
    assert_eq!(v["code"], "T1000W");
    assert_eq!(v["success"], false);
    // The Debug form of the event is also only its own fields.
    let debug = format!("{e:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
}
