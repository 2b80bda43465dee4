//! The JSON-lines store, the multi-store, and the JSON shape auditors and SIEMs read.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;

use jumpgate_audit::conformance::AuditLogs;
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
        vec![before.clone(), offset.clone()]
    );
    assert_eq!(
        read_lines(&log.file_for_day("2026-03-02")),
        vec![midnight.clone(), later.clone()]
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
    assert!(matches!(err, Error::Closed), "{err}");

    // Reopened, the days search as one log, across the day boundary and in either order.
    let log = FileAuditLog::open(log.dir()).await.unwrap();
    let march = SearchQuery::new(at("2026-03-01T00:00:00Z"), at("2026-03-03T00:00:00Z"));
    let page = log.search(march.clone()).await.unwrap();
    let got: Vec<_> = page.events.iter().map(AuditEvent::uid).collect();
    assert_eq!(
        got,
        [&offset, &before, &midnight, &later].map(AuditEvent::uid)
    );
    let page = log
        .search(march.order(jumpgate_audit::Order::Descending).limit(2))
        .await
        .unwrap();
    let got: Vec<_> = page.events.iter().map(AuditEvent::uid).collect();
    assert_eq!(got, [&later, &midnight].map(AuditEvent::uid));
    assert!(page.next_cursor.is_some());
}

/// Two handles on one directory: clones of one store, as the services hold it.
async fn files() -> (AuditLogs, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = FileAuditLog::open(dir.path().join("log")).await.unwrap();
    let logs = AuditLogs {
        first: Arc::new(log.clone()),
        second: Arc::new(log),
    };
    (logs, dir)
}

jumpgate_audit::audit_store_suite!(files());

/// A crash in the middle of a write leaves a torn last line: search skips it (it was never
/// acknowledged), and the next open cuts it off so the next event gets a line of its own.
#[tokio::test]
async fn a_torn_last_line_is_skipped_and_cut_off_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let t = at("2026-04-04T04:04:04Z");
    let day = SearchQuery::new(at("2026-04-04T00:00:00Z"), at("2026-04-05T00:00:00Z"));
    let log = FileAuditLog::open(dir.path()).await.unwrap();
    let first = AuditEvent::success(EventType::Exec).at(t).user("dave");
    log.append(first.clone()).await.unwrap();
    log.close().await.unwrap();
    let path = log.file_for_day("2026-04-04");
    let torn = AuditEvent::success(EventType::Exec)
        .at(t)
        .to_json()
        .unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, &torn.as_bytes()[..torn.len() / 2]).unwrap();
    drop(file);

    let log = FileAuditLog::open(dir.path()).await.unwrap();
    assert_eq!(
        log.search(day.clone()).await.unwrap().events,
        vec![first.clone()]
    );
    let second = AuditEvent::success(EventType::Exec).at(t).user("erin");
    log.append(second.clone()).await.unwrap();
    assert_eq!(
        log.search(day).await.unwrap().events,
        vec![first.clone(), second.clone()]
    );
    assert_eq!(read_lines(&path), vec![first, second]);
}

/// A line in the middle that is not an event stops the search with the file and line, not
/// a panic or a silently shorter answer.
#[tokio::test]
async fn a_corrupt_line_names_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileAuditLog::open(dir.path()).await.unwrap();
    let t = at("2026-06-06T06:06:06Z");
    log.append(AuditEvent::success(EventType::Exec).at(t))
        .await
        .unwrap();
    let path = log.file_for_day("2026-06-06");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, b"{not json\n").unwrap();
    drop(file);
    log.append(AuditEvent::success(EventType::Exec).at(t))
        .await
        .unwrap();
    let err = log
        .search(SearchQuery::new(
            at("2026-06-06T00:00:00Z"),
            at("2026-06-07T00:00:00Z"),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CorruptLine { line: 2, .. }), "{err}");
    assert!(err.to_string().contains("2026-06-06.log"), "{err}");
    // Files that are not day files are ignored.
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    std::fs::write(dir.path().join("2026-13-99.log"), "junk\n").unwrap();
    let other_day = log
        .search(SearchQuery::new(
            at("2026-06-07T00:00:00Z"),
            at("2027-01-01T00:00:00Z"),
        ))
        .await
        .unwrap();
    assert!(other_day.events.is_empty());
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
