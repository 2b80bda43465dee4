//! The one conformance suite every [`Backend`] must pass (Teleport's
//! `lib/backend/test/suite.go` is the idea).
//!
//! Each check is an `async fn(Arc<dyn Backend>)` on a fresh, empty backend whose
//! watchers buffer [`WATCH_BUFFER`] events. [`conformance_suite!`](crate::conformance_suite)
//! turns the whole list into one `#[tokio::test]` per check for a given backend factory,
//! so adding a check here adds it for every backend.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::{
    Action, Backend, BackendError, Condition, Event, Item, Key, KeyRange, NewItem, Revision,
    WatchError, Watcher,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The watch buffer factories must configure, so the slow-subscriber check can overrun it.
pub const WATCH_BUFFER: usize = 64;

/// Generates one test per conformance check. `$factory` is an async expression that
/// yields `(Arc<dyn Backend>, guard)`; the guard (e.g. a temp dir or an etcd process)
/// lives until the check ends.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@tests $factory;
            put_get_and_overwrite,
            create_fails_if_exists,
            update_fails_if_missing,
            compare_and_swap,
            conditional_update_and_delete_by_revision,
            delete_then_not_found,
            values_are_binary_safe,
            range_by_prefix_and_limit,
            range_between_bounds,
            delete_range_only_touches_range,
            ttl_expiry,
            keep_alive_extends_expiry,
            atomic_write_is_all_or_nothing,
            watch_starts_ready_and_keeps_order,
            watch_filters_by_prefixes,
            watch_reports_expiry_as_delete,
            slow_watcher_is_told_it_fell_behind,
            concurrent_cas_loses_no_update,
            concurrent_create_has_one_winner,
            expired_items_are_gone_for_every_read,
            watch_keeps_order_across_concurrent_writers,
            watch_sees_atomic_writes_and_range_deletes,
            atomic_write_same_key_twice_last_wins,
        );
    };
    (@tests $factory:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (backend, _guard) = $factory.await;
                $crate::conformance::$check(backend).await;
            }
        )+
    };
}

fn key(text: &str) -> Key {
    Key::new(text).unwrap()
}

fn item(k: &str, value: &str) -> NewItem {
    NewItem::new(key(k), value.as_bytes().to_vec())
}

async fn value_of(backend: &Arc<dyn Backend>, k: &str) -> Option<Vec<u8>> {
    match backend.get(&key(k)).await {
        Ok(found) => Some(found.value),
        Err(BackendError::NotFound { .. }) => None,
        Err(other) => panic!("get {k}: unexpected error {other}"),
    }
}

/// The next watch event, failing the test if none arrives in `within`.
pub async fn next_event(watcher: &mut Watcher, within: Duration) -> Result<Event, WatchError> {
    tokio::time::timeout(within, watcher.next())
        .await
        .expect("no watch event in time")
        .expect("watcher ended without an error")
}

pub async fn put_get_and_overwrite(backend: Arc<dyn Backend>) {
    assert!(value_of(&backend, "/a").await.is_none());
    let first = backend.put(item("/a", "one")).await.unwrap();
    let read = backend.get(&key("/a")).await.unwrap();
    assert_eq!(read.value, b"one");
    assert_eq!(read.revision, first);
    assert_eq!(read.expires, None);
    let second = backend.put(item("/a", "two")).await.unwrap();
    assert!(
        second > first,
        "revisions must increase: {first} then {second}"
    );
    assert_eq!(value_of(&backend, "/a").await.unwrap(), b"two");
}

pub async fn create_fails_if_exists(backend: Arc<dyn Backend>) {
    backend.create(item("/c", "first")).await.unwrap();
    let err = backend.create(item("/c", "second")).await.unwrap_err();
    assert!(matches!(err, BackendError::AlreadyExists { .. }), "{err}");
    assert_eq!(value_of(&backend, "/c").await.unwrap(), b"first");
}

pub async fn update_fails_if_missing(backend: Arc<dyn Backend>) {
    let err = backend.update(item("/u", "x")).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(value_of(&backend, "/u").await.is_none());
    backend.put(item("/u", "x")).await.unwrap();
    backend.update(item("/u", "y")).await.unwrap();
    assert_eq!(value_of(&backend, "/u").await.unwrap(), b"y");
}

pub async fn compare_and_swap(backend: Arc<dyn Backend>) {
    let err = backend
        .compare_and_swap(b"old", item("/cas", "new"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    backend.put(item("/cas", "old")).await.unwrap();
    let err = backend
        .compare_and_swap(b"wrong", item("/cas", "new"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::CompareFailed { .. }), "{err}");
    assert_eq!(value_of(&backend, "/cas").await.unwrap(), b"old");
    backend
        .compare_and_swap(b"old", item("/cas", "new"))
        .await
        .unwrap();
    assert_eq!(value_of(&backend, "/cas").await.unwrap(), b"new");
}

pub async fn conditional_update_and_delete_by_revision(backend: Arc<dyn Backend>) {
    let first = backend.put(item("/r", "1")).await.unwrap();
    let second = backend
        .conditional_update(first, item("/r", "2"))
        .await
        .unwrap();
    // The first revision is stale now: both conditional writes must refuse.
    let err = backend
        .conditional_update(first, item("/r", "3"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::CompareFailed { .. }), "{err}");
    let err = backend
        .conditional_delete(&key("/r"), first)
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::CompareFailed { .. }), "{err}");
    assert_eq!(value_of(&backend, "/r").await.unwrap(), b"2");
    backend
        .conditional_delete(&key("/r"), second)
        .await
        .unwrap();
    assert!(value_of(&backend, "/r").await.is_none());
    let err = backend
        .conditional_update(second, item("/r", "4"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

pub async fn delete_then_not_found(backend: Arc<dyn Backend>) {
    let err = backend.delete(&key("/d")).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    backend.put(item("/d", "x")).await.unwrap();
    backend.delete(&key("/d")).await.unwrap();
    assert!(value_of(&backend, "/d").await.is_none());
    let err = backend.delete(&key("/d")).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

pub async fn values_are_binary_safe(backend: Arc<dyn Backend>) {
    let every_byte: Vec<u8> = (0..=255u8).collect();
    backend
        .put(NewItem::new(key("/bin"), every_byte.clone()))
        .await
        .unwrap();
    backend
        .put(NewItem::new(key("/empty"), Vec::new()))
        .await
        .unwrap();
    assert_eq!(value_of(&backend, "/bin").await.unwrap(), every_byte);
    assert_eq!(
        value_of(&backend, "/empty").await.unwrap(),
        Vec::<u8>::new()
    );
}

async fn seed_range(backend: &Arc<dyn Backend>) {
    for k in [
        "/a/3", "/a/1", "/a/5", "/a/2", "/a/4", "/ab/1", "/b/1", "/a",
    ] {
        backend.put(item(k, k)).await.unwrap();
    }
}

fn keys_of(items: &[Item]) -> Vec<&str> {
    items.iter().map(|item| item.key.as_str()).collect()
}

pub async fn range_by_prefix_and_limit(backend: Arc<dyn Backend>) {
    seed_range(&backend).await;
    let prefix = KeyRange::prefix("/a/").unwrap();
    let all = backend.get_range(&prefix, None).await.unwrap();
    assert_eq!(keys_of(&all), ["/a/1", "/a/2", "/a/3", "/a/4", "/a/5"]);
    assert!(
        all.iter()
            .all(|item| item.value == item.key.as_str().as_bytes())
    );
    let limited = backend.get_range(&prefix, Some(2)).await.unwrap();
    assert_eq!(keys_of(&limited), ["/a/1", "/a/2"]);
    let none = backend
        .get_range(&KeyRange::prefix("/zzz/").unwrap(), None)
        .await
        .unwrap();
    assert!(none.is_empty());
    let everything = backend
        .get_range(&KeyRange::Prefix(Key::root()), None)
        .await
        .unwrap();
    assert_eq!(everything.len(), 8);
}

pub async fn range_between_bounds(backend: Arc<dyn Backend>) {
    seed_range(&backend).await;
    let range = KeyRange::Between {
        start: key("/a/2"),
        end: key("/a/4"),
    };
    let found = backend.get_range(&range, None).await.unwrap();
    assert_eq!(keys_of(&found), ["/a/2", "/a/3"]);
}

pub async fn delete_range_only_touches_range(backend: Arc<dyn Backend>) {
    seed_range(&backend).await;
    let deleted = backend
        .delete_range(&KeyRange::prefix("/a/").unwrap())
        .await
        .unwrap();
    assert_eq!(deleted, 5);
    let left = backend
        .get_range(&KeyRange::Prefix(Key::root()), None)
        .await
        .unwrap();
    assert_eq!(keys_of(&left), ["/a", "/ab/1", "/b/1"]);
}

pub async fn ttl_expiry(backend: Arc<dyn Backend>) {
    let expires = SystemTime::now() + Duration::from_millis(1500);
    backend
        .put(item("/ttl/short", "x").expiring(expires))
        .await
        .unwrap();
    backend.put(item("/ttl/forever", "y")).await.unwrap();
    let read = backend.get(&key("/ttl/short")).await.unwrap();
    let stored = read.expires.expect("expiry must be kept");
    let drift = stored
        .duration_since(expires)
        .unwrap_or_else(|e| e.duration());
    assert!(
        drift < Duration::from_millis(5),
        "expiry drifted by {drift:?}"
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert!(
        value_of(&backend, "/ttl/short").await.is_none(),
        "expired item still readable"
    );
    let left = backend
        .get_range(&KeyRange::prefix("/ttl/").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(keys_of(&left), ["/ttl/forever"]);
    // An expired key can be created again.
    backend.create(item("/ttl/short", "again")).await.unwrap();
}

pub async fn keep_alive_extends_expiry(backend: Arc<dyn Backend>) {
    backend
        .put(item("/hb", "node").with_ttl(Duration::from_millis(1500)))
        .await
        .unwrap();
    let later = SystemTime::now() + Duration::from_secs(60);
    backend.keep_alive(&key("/hb"), later).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let read = backend
        .get(&key("/hb"))
        .await
        .expect("kept-alive item expired");
    assert_eq!(read.value, b"node");
    assert!(read.expires.unwrap() > SystemTime::now() + Duration::from_secs(50));
    let err = backend
        .keep_alive(&key("/missing"), later)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

pub async fn atomic_write_is_all_or_nothing(backend: Arc<dyn Backend>) {
    let existing = backend.put(item("/tx/existing", "1")).await.unwrap();
    let failed = backend
        .atomic_write(
            vec![
                Condition::NotExists(key("/tx/new")),
                Condition::NotExists(key("/tx/existing")),
            ],
            vec![
                Action::Put(item("/tx/new", "n")),
                Action::Delete(key("/tx/existing")),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(failed, BackendError::ConditionFailed { index: 1, .. }),
        "{failed}"
    );
    assert!(
        value_of(&backend, "/tx/new").await.is_none(),
        "partial write"
    );
    assert!(
        value_of(&backend, "/tx/existing").await.is_some(),
        "partial delete"
    );

    let revision = backend
        .atomic_write(
            vec![
                Condition::NotExists(key("/tx/new")),
                Condition::Exists(key("/tx/existing")),
                Condition::Revision(key("/tx/existing"), existing),
            ],
            vec![
                Action::Put(item("/tx/new", "n")),
                Action::Put(item("/tx/other", "o")),
                Action::Delete(key("/tx/existing")),
            ],
        )
        .await
        .unwrap();
    assert!(revision > existing);
    assert_eq!(value_of(&backend, "/tx/new").await.unwrap(), b"n");
    assert_eq!(value_of(&backend, "/tx/other").await.unwrap(), b"o");
    assert!(value_of(&backend, "/tx/existing").await.is_none());

    let stale = backend
        .atomic_write(
            vec![Condition::Revision(key("/tx/new"), existing)],
            vec![Action::Put(item("/tx/new", "stale"))],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(stale, BackendError::ConditionFailed { index: 0, .. }),
        "{stale}"
    );
    assert_eq!(value_of(&backend, "/tx/new").await.unwrap(), b"n");
}

pub async fn watch_starts_ready_and_keeps_order(backend: Arc<dyn Backend>) {
    let mut watcher = backend.watch(vec![key("/w/")]).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    let mut expected = Vec::new();
    for i in 0..20 {
        let k = format!("/w/{}", i % 4);
        if i % 5 == 4 {
            backend.delete(&key(&k)).await.unwrap();
            expected.push(format!("delete {k}"));
        } else {
            backend.put(item(&k, &i.to_string())).await.unwrap();
            expected.push(format!("put {k}={i}"));
        }
        // Writes outside the prefix must not show up.
        backend.put(item("/elsewhere", "x")).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut last = Revision::from_raw(i64::MIN);
    while seen.len() < expected.len() {
        let event = next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap();
        let (text, revision) = match event {
            Event::Put(item) => (
                format!(
                    "put {}={}",
                    item.key,
                    String::from_utf8(item.value).unwrap()
                ),
                item.revision,
            ),
            Event::Delete { key, revision } => (format!("delete {key}"), revision),
            Event::Ready => panic!("a second Ready"),
        };
        assert!(
            revision > last,
            "revisions out of order: {last} then {revision}"
        );
        last = revision;
        seen.push(text);
    }
    assert_eq!(seen, expected);
}

pub async fn watch_filters_by_prefixes(backend: Arc<dyn Backend>) {
    let mut watcher = backend
        .watch(vec![key("/users/"), key("/roles/")])
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    for k in [
        "/nodes/n1",
        "/users/alice",
        "/tokens/t",
        "/roles/admin",
        "/users",
    ] {
        backend.put(item(k, "v")).await.unwrap();
    }
    let mut keys = Vec::new();
    for _ in 0..2 {
        let event = next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap();
        keys.push(event.key().unwrap().to_string());
    }
    assert_eq!(keys, ["/users/alice", "/roles/admin"]);
    let quiet = tokio::time::timeout(Duration::from_millis(300), watcher.next()).await;
    assert!(quiet.is_err(), "unexpected event {quiet:?}");
}

pub async fn watch_reports_expiry_as_delete(backend: Arc<dyn Backend>) {
    let mut watcher = backend.watch(vec![key("/hb/")]).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    backend
        .put(item("/hb/node1", "up").with_ttl(Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Put(_)
    ));
    // etcd revokes leases on its own schedule, a little after the expiry.
    match next_event(&mut watcher, Duration::from_secs(10))
        .await
        .unwrap()
    {
        Event::Delete { key: deleted, .. } => assert_eq!(deleted, key("/hb/node1")),
        other => panic!("expected the expiry as a delete, got {other:?}"),
    }
}

pub async fn slow_watcher_is_told_it_fell_behind(backend: Arc<dyn Backend>) {
    let mut watcher = backend.watch(vec![key("/slow/")]).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    let total = WATCH_BUFFER * 3;
    for i in 0..total {
        backend
            .put(item(&format!("/slow/{i:04}"), "v"))
            .await
            .unwrap();
    }
    // Whatever arrives must be a gap-free start of the sequence, then FellBehind.
    let mut expected = 0;
    loop {
        match next_event(&mut watcher, Duration::from_secs(10)).await {
            Ok(Event::Put(item)) => {
                assert_eq!(
                    item.key.as_str(),
                    format!("/slow/{expected:04}"),
                    "gap in events"
                );
                expected += 1;
            }
            Ok(other) => panic!("unexpected event {other:?}"),
            Err(WatchError::FellBehind) => break,
            Err(other) => panic!("expected FellBehind, got {other}"),
        }
        assert!(
            expected < total,
            "a watcher that never read got every event: buffer unbounded?"
        );
    }
    assert!(
        watcher.next().await.is_none(),
        "a watcher must end after FellBehind"
    );
}

pub async fn concurrent_cas_loses_no_update(backend: Arc<dyn Backend>) {
    const WRITERS: usize = 6;
    const INCREMENTS: usize = 15;
    backend.put(item("/counter", "0")).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let backend = Arc::clone(&backend);
        tasks.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS {
                loop {
                    let current = backend.get(&key("/counter")).await.unwrap().value;
                    let n: usize = String::from_utf8(current.clone()).unwrap().parse().unwrap();
                    match backend
                        .compare_and_swap(&current, item("/counter", &(n + 1).to_string()))
                        .await
                    {
                        Ok(_) => break,
                        Err(BackendError::CompareFailed { .. }) => continue,
                        Err(other) => panic!("cas: {other}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = value_of(&backend, "/counter").await.unwrap();
    assert_eq!(
        String::from_utf8(total).unwrap(),
        (WRITERS * INCREMENTS).to_string()
    );
}

pub async fn concurrent_create_has_one_winner(backend: Arc<dyn Backend>) {
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let backend = Arc::clone(&backend);
        tasks.push(tokio::spawn(async move {
            backend
                .create(item("/leader", &writer.to_string()))
                .await
                .map(|_| writer)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(writer) => winners.push(writer),
            Err(BackendError::AlreadyExists { .. }) => {}
            Err(other) => panic!("create: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = value_of(&backend, "/leader").await.unwrap();
    assert_eq!(String::from_utf8(stored).unwrap(), winners[0].to_string());
}

pub async fn expired_items_are_gone_for_every_read(backend: Arc<dyn Backend>) {
    // Already expired when written: every read must treat it as missing at once,
    // whatever the background sweeper has done yet.
    let past = SystemTime::now() - Duration::from_secs(1);
    backend
        .put(item("/gone/x", "stale").expiring(past))
        .await
        .unwrap();
    backend.put(item("/gone/y", "live")).await.unwrap();
    assert!(value_of(&backend, "/gone/x").await.is_none());
    let range = backend
        .get_range(&KeyRange::prefix("/gone/").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(keys_of(&range), ["/gone/y"]);
    let limited = backend
        .get_range(&KeyRange::prefix("/gone/").unwrap(), Some(1))
        .await
        .unwrap();
    assert_eq!(
        keys_of(&limited),
        ["/gone/y"],
        "an expired item used up the limit"
    );
    assert!(
        backend
            .update(item("/gone/x", "u"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        backend
            .compare_and_swap(b"stale", item("/gone/x", "c"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        backend
            .keep_alive(&key("/gone/x"), SystemTime::now() + Duration::from_secs(60))
            .await
            .unwrap_err()
            .is_not_found()
    );
    let exists = backend
        .atomic_write(
            vec![Condition::Exists(key("/gone/x"))],
            vec![Action::Put(item("/gone/z", "z"))],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(exists, BackendError::ConditionFailed { index: 0, .. }),
        "{exists}"
    );
    backend.create(item("/gone/x", "fresh")).await.unwrap();
    assert_eq!(value_of(&backend, "/gone/x").await.unwrap(), b"fresh");
}

pub async fn watch_keeps_order_across_concurrent_writers(backend: Arc<dyn Backend>) {
    const WRITERS: usize = 4;
    const EACH: usize = 12;
    let mut watcher = backend.watch(vec![key("/cw/")]).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let backend = Arc::clone(&backend);
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                backend
                    .put(item(&format!("/cw/{writer}"), &i.to_string()))
                    .await
                    .unwrap();
            }
        }));
    }
    let mut last = Revision::from_raw(i64::MIN);
    let mut next_of_writer = [0usize; WRITERS];
    for _ in 0..WRITERS * EACH {
        let Event::Put(put) = next_event(&mut watcher, Duration::from_secs(10))
            .await
            .unwrap()
        else {
            panic!("expected only puts");
        };
        assert!(
            put.revision > last,
            "out of revision order: {last} then {}",
            put.revision
        );
        last = put.revision;
        let writer: usize = put.key.as_str().trim_start_matches("/cw/").parse().unwrap();
        let value: usize = String::from_utf8(put.value).unwrap().parse().unwrap();
        assert_eq!(
            value, next_of_writer[writer],
            "writer {writer}'s puts out of order"
        );
        next_of_writer[writer] += 1;
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Each delivered put matches what a read returns now: the last value per writer.
    for writer in 0..WRITERS {
        let stored = value_of(&backend, &format!("/cw/{writer}")).await.unwrap();
        assert_eq!(stored, (EACH - 1).to_string().into_bytes());
    }
}

pub async fn watch_sees_atomic_writes_and_range_deletes(backend: Arc<dyn Backend>) {
    let mut watcher = backend.watch(vec![key("/ev/")]).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    let revision = backend
        .atomic_write(
            vec![],
            vec![
                Action::Put(item("/ev/a", "1")),
                Action::Put(item("/ev/b", "2")),
            ],
        )
        .await
        .unwrap();
    let mut puts = Vec::new();
    for _ in 0..2 {
        match next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap()
        {
            Event::Put(put) => {
                assert_eq!(put.revision, revision, "an atomic write has one revision");
                puts.push(put.key.to_string());
            }
            other => panic!("expected a put, got {other:?}"),
        }
    }
    puts.sort();
    assert_eq!(puts, ["/ev/a", "/ev/b"]);
    assert_eq!(
        backend
            .delete_range(&KeyRange::prefix("/ev/").unwrap())
            .await
            .unwrap(),
        2
    );
    let mut deleted = Vec::new();
    for _ in 0..2 {
        match next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap()
        {
            Event::Delete { key, .. } => deleted.push(key.to_string()),
            other => panic!("expected a delete, got {other:?}"),
        }
    }
    deleted.sort();
    assert_eq!(deleted, ["/ev/a", "/ev/b"]);
}

pub async fn atomic_write_same_key_twice_last_wins(backend: Arc<dyn Backend>) {
    backend
        .atomic_write(
            vec![],
            vec![
                Action::Put(item("/twice", "1")),
                Action::Put(item("/twice", "2")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(value_of(&backend, "/twice").await.unwrap(), b"2");
    backend
        .atomic_write(
            vec![],
            vec![
                Action::Put(item("/twice", "3")),
                Action::Delete(key("/twice")),
            ],
        )
        .await
        .unwrap();
    assert!(value_of(&backend, "/twice").await.is_none());
    backend
        .atomic_write(
            vec![],
            vec![
                Action::Delete(key("/twice")),
                Action::Put(item("/twice", "4")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(value_of(&backend, "/twice").await.unwrap(), b"4");
}
