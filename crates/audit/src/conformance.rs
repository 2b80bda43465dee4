//! The one suite every [`AuditLog`] store must pass: SQLite, JSON-lines files and
//! PostgreSQL here, more as they come (the backend crate's conformance suite is the model).
//!
//! Each check is an `async fn(AuditLogs)`: two handles on one fresh, empty store. For a
//! shared store (PostgreSQL) they are two separate connections, as two auth servers would
//! hold; for a local store they are clones of one handle. [`audit_store_suite!`]
//! (crate::audit_store_suite) turns the list into one `#[tokio::test]` per check for a
//! given store factory, so adding a check here adds it for every store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashSet;
use std::sync::Arc;

use crate::{
    AuditEvent, AuditLog, Error, EventType, MAX_LIMIT, Order, Page, SearchQuery, Timestamp,
};

/// Two handles on one store, as two auth servers sharing it would hold.
#[derive(Debug)]
pub struct AuditLogs {
    pub first: Arc<dyn AuditLog>,
    pub second: Arc<dyn AuditLog>,
}

/// Generates one test per check. `$factory` is an async expression that yields
/// `(AuditLogs, guard)`; the guard (a temp dir, a database server) lives until the check ends.
#[macro_export]
macro_rules! audit_store_suite {
    ($factory:expr) => {
        $crate::audit_store_suite!(@tests $factory;
            append_search_round_trip,
            appending_the_same_uid_twice_stores_it_once,
            time_range_is_from_inclusive_to_exclusive,
            filters_by_type_user_and_session,
            cursor_pagination_sees_every_event_once_in_order_despite_concurrent_appends,
            descending_pagination_covers_everything_once,
            malformed_cursor_is_a_clear_error,
            limit_bounds,
            both_handles_write_to_and_search_one_log,
            fields_survive_the_round_trip_exactly,
            closed_store_refuses_appends,
        );
    };
    (@tests $factory:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (logs, _guard) = $factory.await;
                $crate::conformance::$check(logs).await;
            }
        )+
    };
}

const T0: i64 = 1_700_000_000_000;

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + ms).unwrap()
}

fn all_time() -> SearchQuery {
    SearchQuery::new(ts(-1_000_000_000), ts(1_000_000_000)).limit(MAX_LIMIT)
}

fn times(page: &Page) -> Vec<i64> {
    page.events
        .iter()
        .map(|e| e.time().unix_millis() - T0)
        .collect()
}

pub async fn append_search_round_trip(logs: AuditLogs) {
    let log = logs.first;
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

/// A retried append (its acknowledgement was lost) must not show the event twice.
pub async fn appending_the_same_uid_twice_stores_it_once(logs: AuditLogs) {
    let e = AuditEvent::success(EventType::UserCreate)
        .at(ts(0))
        .user("bob");
    logs.first.append(e.clone()).await.unwrap();
    logs.first.append(e.clone()).await.unwrap();
    logs.second.append(e.clone()).await.unwrap();
    assert_eq!(logs.first.search(all_time()).await.unwrap().events, vec![e]);
}

pub async fn time_range_is_from_inclusive_to_exclusive(logs: AuditLogs) {
    let log = logs.first;
    for ms in [99, 100, 101, 199, 200, 201] {
        log.append(AuditEvent::success(EventType::UserLogin).at(ts(ms)))
            .await
            .unwrap();
    }
    let page = log
        .search(SearchQuery::new(ts(100), ts(200)))
        .await
        .unwrap();
    assert_eq!(times(&page), vec![100, 101, 199]);
    let page = log
        .search(SearchQuery::new(ts(200), ts(201)))
        .await
        .unwrap();
    assert_eq!(times(&page), vec![200]);
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

pub async fn filters_by_type_user_and_session(logs: AuditLogs) {
    let log = logs.first;
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
/// appending through the other handle, and between pages the test appends events both
/// before and after the cursor.
pub async fn cursor_pagination_sees_every_event_once_in_order_despite_concurrent_appends(
    logs: AuditLogs,
) {
    let log = logs.first;
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
    let writer_log = logs.second.clone();
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

pub async fn descending_pagination_covers_everything_once(logs: AuditLogs) {
    let log = logs.first;
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

pub async fn malformed_cursor_is_a_clear_error(logs: AuditLogs) {
    let log = logs.first;
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

pub async fn limit_bounds(logs: AuditLogs) {
    let log = logs.first;
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
}

/// Two auth servers append at once; each one's searches see every event of both, once.
pub async fn both_handles_write_to_and_search_one_log(logs: AuditLogs) {
    let mut tasks = Vec::new();
    let mut expected = HashSet::new();
    for (n, log) in [&logs.first, &logs.second].into_iter().enumerate() {
        let events: Vec<_> = (0..60)
            .map(|i| {
                AuditEvent::success(EventType::SessionStart)
                    .at(ts(i))
                    .user(format!("user-{n}"))
            })
            .collect();
        expected.extend(events.iter().map(AuditEvent::uid));
        let log = Arc::clone(log);
        tasks.push(tokio::spawn(async move {
            for e in events {
                log.append(e).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for log in [&logs.first, &logs.second] {
        let page = log.search(all_time()).await.unwrap();
        let got: Vec<_> = page.events.iter().map(AuditEvent::uid).collect();
        assert_eq!(got.len(), 120, "an event is missing or doubled");
        assert_eq!(got.iter().copied().collect::<HashSet<_>>(), expected);
        let mine = log.search(all_time().user("user-1")).await.unwrap();
        assert_eq!(mine.events.len(), 60);
    }
}

/// Unicode, quotes, control characters and nested values come back exactly as written.
pub async fn fields_survive_the_round_trip_exactly(logs: AuditLogs) {
    let e = AuditEvent::failure(EventType::Exec, "exit 1: \"quoted\" \u{0}\n\tnext")
        .at(ts(7))
        .user("zoë")
        .login("root")
        .session_id("7f2c\u{00e9}")
        .field("command", "echo 'héllo wörld' 🚀; printf '\\x1b[31m'")
        .field(
            "argv",
            serde_json::json!(["a", 1, null, {"k": [true, 2.5]}]),
        )
        .field("long", "x".repeat(64 * 1024));
    logs.first.append(e.clone()).await.unwrap();
    let page = logs
        .second
        .search(all_time().user("zoë").session_id("7f2c\u{00e9}"))
        .await
        .unwrap();
    assert_eq!(page.events, vec![e]);
}

pub async fn closed_store_refuses_appends(logs: AuditLogs) {
    logs.first.close().await.unwrap();
    logs.first.close().await.unwrap(); // idempotent
    let err = logs
        .first
        .append(AuditEvent::success(EventType::RoleDeleted).at(ts(0)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Closed), "{err}");
}
