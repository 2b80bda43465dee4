//! PostgreSQL-specific faults with a real server: unreachable at start, restarted under
//! a running backend and watcher.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use jumpgate_backend::conformance::next_event;
use jumpgate_backend::{
    Backend, BackendError, Event, Key, NewItem, PostgresBackend, PostgresOptions,
};
use jumpgate_test_support::{Postgres, free_port};
use std::time::{Duration, Instant};

fn key(text: &str) -> Key {
    Key::new(text).unwrap()
}

#[tokio::test]
async fn connecting_to_nothing_fails_fast_with_a_clear_error_without_the_password() {
    let port = free_port();
    let mut options = PostgresOptions::new(format!(
        "postgresql://jumpgate:hunter2@127.0.0.1:{port}/jumpgate"
    ));
    options.connect_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = PostgresBackend::connect(options).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.is_retryable(), "{err}");
    let message = err.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(!message.contains("hunter2"), "password in {message}");
}

#[tokio::test]
async fn a_wrong_password_is_not_retryable_and_says_so() {
    let server = Postgres::start().await;
    let mut options = PostgresOptions::new(server.conn_string());
    options.password = Some("wrong".to_string());
    let err = PostgresBackend::connect(options).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("password_file"), "{err}");
}

/// Writes continue through a restart; the watcher delivers every write exactly once and
/// in order, including those made while it was disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_watch_loses_and_doubles_nothing() {
    let mut server = Postgres::start().await;
    let mut options = PostgresOptions::new(server.conn_string());
    options.password = Some(server.password().to_string());
    options.request_timeout = Duration::from_secs(3);
    let backend = PostgresBackend::connect(options).await.unwrap();
    let mut watcher = backend.watch(vec![key("/nodes/")]).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    for i in 0..5 {
        backend
            .put(NewItem::new(key(&format!("/nodes/{i:02}")), "before"))
            .await
            .unwrap();
    }

    server.stop().await;
    let started = Instant::now();
    let err = backend.get(&key("/nodes/00")).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "hung {:?}",
        started.elapsed()
    );
    assert!(matches!(err, BackendError::Unavailable { .. }), "{err}");
    assert!(
        err.to_string().contains(&server.port().to_string()),
        "{err}"
    );

    server.start_again().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 5..10 {
        loop {
            match backend
                .put(NewItem::new(key(&format!("/nodes/{i:02}")), "after"))
                .await
            {
                Ok(_) => break,
                Err(err) if err.is_retryable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => panic!("PostgreSQL did not come back: {err}"),
            }
        }
    }
    let mut seen = Vec::new();
    while seen.len() < 10 {
        match next_event(&mut watcher, Duration::from_secs(20))
            .await
            .unwrap()
        {
            Event::Put(item) => seen.push(item.key.to_string()),
            other => panic!("expected puts only, got {other:?}"),
        }
    }
    let expected: Vec<String> = (0..10).map(|i| format!("/nodes/{i:02}")).collect();
    assert_eq!(seen, expected);
    let quiet = tokio::time::timeout(Duration::from_millis(500), watcher.next()).await;
    assert!(quiet.is_err(), "a duplicate or extra event: {quiet:?}");
}

/// A server that holds every write (here: the revision counter locked by another session)
/// must not make queued requests wait behind each other: each fails within about two
/// request timeouts (one waiting for a connection, one for the answer), however many wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_behind_a_hung_server_fail_within_their_own_timeout() {
    let server = Postgres::start().await;
    let mut options = PostgresOptions::new(server.conn_string());
    options.password = Some(server.password().to_string());
    options.request_timeout = Duration::from_secs(1);
    let backend = std::sync::Arc::new(PostgresBackend::connect(options).await.unwrap());
    backend
        .put(NewItem::new(key("/nodes/warm"), b"x".to_vec()))
        .await
        .unwrap();

    let mut blocker = server
        .client(jumpgate_test_support::PG_DATABASE)
        .await
        .unwrap();
    let hold = blocker.transaction().await.unwrap();
    hold.execute(
        "SELECT value FROM jumpgate_meta WHERE name = 'revision' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();

    // Three requests per pooled connection.
    let started = Instant::now();
    let writes: Vec<_> = (0..12)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let result = backend
                    .put(NewItem::new(key(&format!("/nodes/n{i}")), b"x".to_vec()))
                    .await;
                (result, started.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for write in writes {
        let (result, elapsed) = write.await.unwrap();
        let err = result.expect_err("a write went through a locked revision counter");
        assert!(err.is_retryable(), "{err}");
        slowest = slowest.max(elapsed);
    }
    assert!(
        slowest < Duration::from_millis(2_600),
        "a queued request took {slowest:?}: it waited behind the others"
    );
    hold.rollback().await.unwrap();
    backend
        .put(NewItem::new(key("/nodes/after"), b"x".to_vec()))
        .await
        .expect("writes work again once the lock is gone");
}

/// The network to PostgreSQL is cut for 10 s (packets vanish; nothing is refused): every
/// request fails within its timeout with `Unavailable` naming the endpoint, then the backend
/// recovers by itself, and its watcher delivers every write made meanwhile (through another
/// connection) exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_network_cut_gives_clear_errors_and_recovers_by_itself() {
    let server = Postgres::start().await;
    let cut = jumpgate_test_support::NetCut::start(&format!("127.0.0.1:{}", server.port())).await;
    let through_cut = server.conn_string().replace(
        &format!(":{}/", server.port()),
        &format!(":{}/", cut.addr().port()),
    );
    let mut options = PostgresOptions::new(through_cut);
    options.password = Some(server.password().to_string());
    options.request_timeout = Duration::from_secs(2);
    options.connect_timeout = Duration::from_secs(1);
    options.poll_interval = Duration::from_millis(500);
    let backend = PostgresBackend::connect(options).await.unwrap();
    let mut direct_options = PostgresOptions::new(server.conn_string());
    direct_options.password = Some(server.password().to_string());
    let direct = PostgresBackend::connect(direct_options).await.unwrap();

    let mut watcher = backend.watch(vec![key("/cut/")]).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    backend
        .put(NewItem::new(key("/cut/00"), "before"))
        .await
        .unwrap();

    cut.cut();
    let outage = Instant::now();
    // Requests during the cut: each fails, none hangs, each names where it was going.
    let mut failures = 0;
    while outage.elapsed() < Duration::from_secs(8) {
        let started = Instant::now();
        let err = backend.get(&key("/cut/00")).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "a request hung for {:?}",
            started.elapsed()
        );
        assert!(matches!(err, BackendError::Unavailable { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("127.0.0.1:{}", cut.addr().port())),
            "{err}"
        );
        failures += 1;
    }
    assert!(failures >= 2, "only {failures} requests in 8 s");
    for i in 1..=5 {
        direct
            .put(NewItem::new(key(&format!("/cut/{i:02}")), "during"))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(outage.elapsed())).await;
    cut.heal();

    // Recovery by itself: the next requests work again within a few seconds.
    let healed = Instant::now();
    loop {
        match backend.put(NewItem::new(key("/cut/06"), "after")).await {
            Ok(_) => break,
            Err(err) if err.is_retryable() && healed.elapsed() < Duration::from_secs(15) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("no recovery after the cut: {err}"),
        }
    }
    let mut seen = Vec::new();
    while seen.len() < 7 {
        match next_event(&mut watcher, Duration::from_secs(20))
            .await
            .unwrap()
        {
            Event::Put(item) => seen.push(item.key.to_string()),
            other => panic!("expected puts only, got {other:?}"),
        }
    }
    let expected: Vec<String> = (0..=6).map(|i| format!("/cut/{i:02}")).collect();
    assert_eq!(
        seen, expected,
        "events were lost, doubled or reordered by the cut"
    );
    let quiet = tokio::time::timeout(Duration::from_millis(500), watcher.next()).await;
    assert!(quiet.is_err(), "a duplicate or extra event: {quiet:?}");
}

/// A real failover: a primary and a streaming hot standby, the backend given both hosts
/// with `target_session_attrs=read-write` (seed 000's "no DNS switch"). The primary dies,
/// the standby is promoted; the backend finds the new primary by itself, and its watcher
/// (whose position is a row in the replicated change log) misses and doubles nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_standby_is_found_by_itself_and_the_watch_continues() {
    let mut primary = Postgres::start().await;
    let standby = primary.start_standby().await;
    let conn = format!(
        "postgresql://{}@127.0.0.1:{},127.0.0.1:{}/{}?target_session_attrs=read-write",
        jumpgate_test_support::PG_USER,
        primary.port(),
        standby.port(),
        jumpgate_test_support::PG_DATABASE
    );
    let mut options = PostgresOptions::new(conn);
    options.password = Some(primary.password().to_string());
    options.request_timeout = Duration::from_secs(3);
    options.poll_interval = Duration::from_millis(500);
    let backend = PostgresBackend::connect(options).await.unwrap();
    let mut watcher = backend.watch(vec![key("/failover/")]).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    for i in 0..5 {
        backend
            .put(NewItem::new(
                key(&format!("/failover/{i:02}")),
                "on the primary",
            ))
            .await
            .unwrap();
    }
    primary.wait_replicated(&standby).await;

    primary.stop().await;
    // Only a read-only standby is left: writes are refused as unavailable, not sent there.
    let err = backend
        .put(NewItem::new(key("/failover/xx"), "nowhere"))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    standby.promote().await;

    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 5..10 {
        loop {
            match backend
                .put(NewItem::new(
                    key(&format!("/failover/{i:02}")),
                    "on the promoted standby",
                ))
                .await
            {
                Ok(_) => break,
                Err(err) if err.is_retryable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => panic!("the promoted standby was not found: {err}"),
            }
        }
    }
    assert_eq!(
        backend.get(&key("/failover/00")).await.unwrap().value,
        b"on the primary"
    );
    let mut seen = Vec::new();
    while seen.len() < 10 {
        match next_event(&mut watcher, Duration::from_secs(20))
            .await
            .unwrap()
        {
            Event::Put(item) => seen.push(item.key.to_string()),
            other => panic!("expected puts only, got {other:?}"),
        }
    }
    let expected: Vec<String> = (0..10).map(|i| format!("/failover/{i:02}")).collect();
    assert_eq!(
        seen, expected,
        "the watch lost, doubled or reordered events across the failover"
    );
    let quiet = tokio::time::timeout(Duration::from_millis(500), watcher.next()).await;
    assert!(quiet.is_err(), "a duplicate or extra event: {quiet:?}");
}
