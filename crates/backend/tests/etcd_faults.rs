//! etcd-specific faults with a real server: unreachable at start, stopped and restarted
//! under a running backend and watcher.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use jumpgate_backend::conformance::next_event;
use jumpgate_backend::testing::{EtcdServer, free_port};
use jumpgate_backend::{Backend, BackendError, EtcdBackend, EtcdOptions, Event, Key, NewItem};
use std::time::{Duration, Instant};

fn key(text: &str) -> Key {
    Key::new(text).unwrap()
}

#[tokio::test]
async fn connecting_to_nothing_fails_fast_with_a_clear_error() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let mut options = EtcdOptions::new(vec![endpoint.clone()], "/jumpgate/");
    options.dial_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = EtcdBackend::connect(options).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.is_retryable(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&endpoint),
        "error should name the endpoint: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_etcd_gives_clear_errors_and_the_watch_recovers() {
    let mut server = EtcdServer::start().await;
    let mut options = EtcdOptions::new(vec![server.endpoint()], "/jumpgate/");
    options.request_timeout = Duration::from_secs(3);
    let backend = EtcdBackend::connect(options).await.unwrap();
    let mut watcher = backend.watch(vec![key("/nodes/")]).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    backend
        .put(NewItem::new(key("/nodes/before"), "1"))
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Put(_)
    ));

    server.stop().await;
    let started = Instant::now();
    let err = backend.get(&key("/nodes/before")).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a read against a stopped etcd hung for {:?}",
        started.elapsed()
    );
    assert!(matches!(err, BackendError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains(&server.endpoint()), "{err}");

    server.start_again().await;
    // The same client object works again once etcd is back (retry while it reconnects).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match backend.put(NewItem::new(key("/nodes/after"), "2")).await {
            Ok(_) => break,
            Err(err) if err.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("etcd did not come back: {err}"),
        }
    }
    // The watcher resumed by itself and delivers the write made after the restart.
    match next_event(&mut watcher, Duration::from_secs(20))
        .await
        .unwrap()
    {
        Event::Put(item) => assert_eq!(item.key, key("/nodes/after")),
        other => panic!("expected the post-restart put, got {other:?}"),
    }
    assert_eq!(
        backend.get(&key("/nodes/before")).await.unwrap().value,
        b"1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_not_written_by_jumpgate_are_reported_as_corrupt() {
    let server = EtcdServer::start().await;
    let mut raw = etcd_client::Client::connect([server.endpoint()], None)
        .await
        .unwrap();
    raw.put("/jumpgate/users/alice", "not an envelope", None)
        .await
        .unwrap();
    let backend = EtcdBackend::connect(EtcdOptions::new(vec![server.endpoint()], "/jumpgate"))
        .await
        .unwrap();
    let err = backend.get(&key("/users/alice")).await.unwrap_err();
    assert!(matches!(err, BackendError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("/users/alice"), "{err}");
}
