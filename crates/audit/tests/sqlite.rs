//! The SQLite store against real database files in temporary directories.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashSet;
use std::sync::Arc;

use jumpgate_audit::{
    AuditEvent, AuditLog, Error, EventType, MAX_LIMIT, Order, SearchQuery, SqliteAuditLog,
    Timestamp,
};

const T0: i64 = 1_700_000_000_000;

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + ms).unwrap()
}

fn all_time() -> SearchQuery {
    SearchQuery::new(ts(-1_000_000_000), ts(1_000_000_000)).limit(MAX_LIMIT)
}

async fn open() -> (tempfile::TempDir, SqliteAuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteAuditLog::open(dir.path().join("audit/events.db"))
        .await
        .unwrap();
    (dir, log)
}

#[tokio::test]
async fn append_search_round_trip() {
    let (_dir, log) = open().await;
    let e = AuditEvent::success(EventType::Exec)
        .at(ts(5))
        .user("alice")
        .login("root")
        .server_id("node-1")
        .session_id("s-1")
        .remote_addr("10.0.0.5:51234")
        .field("command", "uptime")
        .field("exit_code", 0);
    log.append(e.clone()).await.unwrap();
    let page = log.search(all_time()).await.unwrap();
    assert_eq!(page.events, vec![e]);
    assert_eq!(page.next_cursor, None);
}

#[tokio::test]
async fn appending_the_same_uid_twice_stores_it_once() {
    let (_dir, log) = open().await;
    let e = AuditEvent::success(EventType::UserCreate)
        .at(ts(0))
        .user("bob");
    log.append(e.clone()).await.unwrap();
    log.append(e.clone()).await.unwrap();
    assert_eq!(log.search(all_time()).await.unwrap().events, vec![e]);
}

#[tokio::test]
async fn time_range_is_from_inclusive_to_exclusive() {
    let (_dir, log) = open().await;
    for ms in [99, 100, 101, 199, 200, 201] {
        log.append(AuditEvent::success(EventType::UserLogin).at(ts(ms)))
            .await
            .unwrap();
    }
    let times = |page: jumpgate_audit::Page| -> Vec<i64> {
        page.events
            .iter()
            .map(|e| e.time().unix_millis() - T0)
            .collect()
    };
    let page = log
        .search(SearchQuery::new(ts(100), ts(200)))
        .await
        .unwrap();
    assert_eq!(times(page), vec![100, 101, 199]);
    let page = log
        .search(SearchQuery::new(ts(200), ts(201)))
        .await
        .unwrap();
    assert_eq!(times(page), vec![200]);
    let empty = log
        .search(SearchQuery::new(ts(150), ts(150)))
        .await
        .unwrap();
    assert!(empty.events.is_empty());
    let err = log
        .search(SearchQuery::new(ts(201), ts(200)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRange { .. }), "{err}");
}

#[tokio::test]
async fn filters_by_type_user_and_session() {
    let (_dir, log) = open().await;
    let events = [
        AuditEvent::success(EventType::UserLogin)
            .at(ts(1))
            .user("alice"),
        AuditEvent::failure(EventType::UserLogin, "bad password")
            .at(ts(2))
            .user("bob"),
        AuditEvent::success(EventType::SessionStart)
            .at(ts(3))
            .user("alice")
            .session_id("s1"),
        AuditEvent::success(EventType::Exec)
            .at(ts(4))
            .user("alice")
            .session_id("s1"),
        AuditEvent::success(EventType::SessionStart)
            .at(ts(5))
            .user("bob")
            .session_id("s2"),
        AuditEvent::failure(EventType::Auth, "denied by role")
            .at(ts(6))
            .user("bob"),
    ];
    for e in &events {
        log.append(e.clone()).await.unwrap();
    }
    let q = all_time();
    let got = |idx: &[usize]| idx.iter().map(|&i| events[i].clone()).collect::<Vec<_>>();

    let p = log
        .search(q.clone().event_types([EventType::UserLogin]))
        .await
        .unwrap();
    assert_eq!(p.events, got(&[0, 1]));
    let p = log
        .search(
            q.clone()
                .event_types([EventType::SessionStart, EventType::Auth]),
        )
        .await
        .unwrap();
    assert_eq!(p.events, got(&[2, 4, 5]));
    let p = log.search(q.clone().user("alice")).await.unwrap();
    assert_eq!(p.events, got(&[0, 2, 3]));
    let p = log.search(q.clone().session_id("s1")).await.unwrap();
    assert_eq!(p.events, got(&[2, 3]));
    let p = log
        .search(q.clone().user("bob").event_types([EventType::SessionStart]))
        .await
        .unwrap();
    assert_eq!(p.events, got(&[4]));
    let p = log.search(q.clone().user("nobody")).await.unwrap();
    assert!(p.events.is_empty());
    let p = log
        .search(q.clone().order(Order::Descending).user("bob"))
        .await
        .unwrap();
    assert_eq!(p.events, got(&[5, 4, 1]));
}

/// Pages through 250 events (several sharing a millisecond) while another task keeps
/// appending, and between pages the test appends events both before and after the cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pagination_sees_every_event_once_in_order_despite_concurrent_appends() {
    let (_dir, log) = open().await;
    let mut originals = Vec::new();
    for i in 0..250 {
        // Three events per millisecond, so pages split inside a millisecond.
        let e = AuditEvent::success(EventType::Exec)
            .at(ts(i / 3))
            .user("alice");
        originals.push(e.uid());
        log.append(e).await.unwrap();
    }
    // A concurrent writer appending after everything else (still inside the range).
    let writer_log = log.clone();
    let writer = tokio::spawn(async move {
        for i in 0..100 {
            let e = AuditEvent::success(EventType::Exec)
                .at(ts(10_000 + i))
                .user("alice");
            writer_log.append(e).await.unwrap();
            tokio::task::yield_now().await;
        }
    });

    let query = SearchQuery::new(ts(0), ts(100_000)).limit(40);
    let mut seen = Vec::new();
    let mut late_before_cursor = HashSet::new();
    let mut late_after_cursor = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => query.clone().cursor(c.clone()),
            None => query.clone(),
        };
        let page = log.search(q).await.unwrap();
        pages += 1;
        assert!(page.events.len() <= 40);
        seen.extend(page.events.iter().map(|e| (e.time(), e.uid())));
        let Some(next) = page.next_cursor else { break };
        cursor = Some(next);
        // Between pages: one event in the already-read range, one still ahead.
        let last = page.events.last().unwrap().time();
        if last < ts(80) {
            let behind = AuditEvent::success(EventType::Exec).at(last.saturating_add_millis(-1));
            late_before_cursor.insert(behind.uid());
            log.append(behind).await.unwrap();
            let ahead = AuditEvent::success(EventType::Exec).at(ts(90));
            late_after_cursor.insert(ahead.uid());
            log.append(ahead).await.unwrap();
        }
    }
    writer.await.unwrap();
    assert!(pages > 6, "expected several pages, got {pages}");

    let uids: Vec<_> = seen.iter().map(|(_, u)| *u).collect();
    let unique: HashSet<_> = uids.iter().copied().collect();
    assert_eq!(unique.len(), uids.len(), "an event was returned twice");
    // Time order across pages.
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "out of order");
    // The originals, exactly once and in insertion order.
    let originals_seen: Vec<_> = uids
        .iter()
        .filter(|u| originals.contains(u))
        .copied()
        .collect();
    assert_eq!(originals_seen, originals);
    // Events appended behind the cursor stay behind it; those ahead are reached.
    assert!(late_before_cursor.iter().all(|u| !unique.contains(u)));
    assert!(!late_after_cursor.is_empty());
    assert!(late_after_cursor.iter().all(|u| unique.contains(u)));
}

#[tokio::test]
async fn descending_pagination_covers_everything_once() {
    let (_dir, log) = open().await;
    let mut uids = Vec::new();
    for i in 0..25 {
        let e = AuditEvent::success(EventType::Port).at(ts(i / 2));
        uids.push(e.uid());
        log.append(e).await.unwrap();
    }
    uids.reverse();
    let query = all_time().order(Order::Descending).limit(7);
    let mut got = Vec::new();
    let mut page = log.search(query.clone()).await.unwrap();
    loop {
        got.extend(page.events.iter().map(|e| e.uid()));
        let Some(c) = page.next_cursor else { break };
        page = log.search(query.clone().cursor(c)).await.unwrap();
    }
    assert_eq!(got, uids);
}

#[tokio::test]
async fn malformed_cursor_is_a_clear_error() {
    let (_dir, log) = open().await;
    log.append(AuditEvent::success(EventType::Scp).at(ts(0)))
        .await
        .unwrap();
    for bad in [
        "",
        "garbage",
        "c1zz",
        "c1000000000000000000000000000000000",
        "c1\u{1F600}",
    ] {
        let err = log.search(all_time().cursor(bad)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidCursor { .. }), "{bad:?}: {err}");
        assert!(err.to_string().contains("cursor"), "{err}");
    }
}

#[tokio::test]
async fn limit_bounds() {
    let (_dir, log) = open().await;
    for i in 0..5 {
        log.append(AuditEvent::success(EventType::Sftp).at(ts(i)))
            .await
            .unwrap();
    }
    for bad in [0, MAX_LIMIT + 1, u32::MAX] {
        let err = log.search(all_time().limit(bad)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidLimit { .. }), "{bad}: {err}");
    }
    let one = log.search(all_time().limit(1)).await.unwrap();
    assert_eq!(one.events.len(), 1);
    assert!(one.next_cursor.is_some());
    // Exactly `limit` events left: no next page.
    let five = log.search(all_time().limit(5)).await.unwrap();
    assert_eq!(five.events.len(), 5);
    assert_eq!(five.next_cursor, None);
    // The default is 100.
    assert_eq!(
        SearchQuery::new(ts(0), ts(1)),
        SearchQuery::new(ts(0), ts(1)).limit(100)
    );
}

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
