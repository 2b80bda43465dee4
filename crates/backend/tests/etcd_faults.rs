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
use jumpgate_backend::{Backend, BackendError, EtcdBackend, EtcdOptions, Event, Key, NewItem};
use jumpgate_test_support::{EtcdServer, free_port};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// A TCP proxy in front of etcd that can cut every connection, so a watcher loses its
/// stream while etcd itself keeps taking writes from other clients.
struct CuttableProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl CuttableProxy {
    async fn start(target: String) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let accept_cut = Arc::clone(&cut);
        let generations = generation.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if accept_cut.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let target = target.trim_start_matches("http://").to_string();
                let mut killed = generations.subscribe();
                tokio::spawn(async move {
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = killed.changed() => {}
                    }
                });
            }
        });
        CuttableProxy {
            port,
            cut,
            generation,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_where_it_left_off_and_misses_nothing() {
    let server = EtcdServer::start().await;
    let proxy = CuttableProxy::start(server.endpoint()).await;
    let watched = EtcdBackend::connect(EtcdOptions::new(vec![proxy.endpoint()], "/jumpgate/"))
        .await
        .unwrap();
    let direct = EtcdBackend::connect(EtcdOptions::new(vec![server.endpoint()], "/jumpgate/"))
        .await
        .unwrap();
    let mut watcher = watched.watch(vec![key("/nodes/")]).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    direct
        .put(NewItem::new(key("/nodes/0"), "before"))
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Put(_)
    ));

    // The watcher's connection is gone; writes keep happening elsewhere meanwhile.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 1..=3 {
        direct
            .put(NewItem::new(key(&format!("/nodes/{i}")), "during"))
            .await
            .unwrap();
    }
    direct.delete(&key("/nodes/0")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.heal();

    let mut seen = Vec::new();
    while seen.len() < 4 {
        match next_event(&mut watcher, Duration::from_secs(20))
            .await
            .unwrap()
        {
            Event::Put(item) => seen.push(format!("put {}", item.key)),
            Event::Delete { key, .. } => seen.push(format!("delete {key}")),
            Event::Ready => panic!("a second Ready"),
        }
    }
    assert_eq!(
        seen,
        [
            "put /nodes/1",
            "put /nodes/2",
            "put /nodes/3",
            "delete /nodes/0"
        ],
        "events written while the watch was cut were lost or reordered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_do_not_pile_up_etcd_leases() {
    let server = EtcdServer::start().await;
    let backend = EtcdBackend::connect(EtcdOptions::new(vec![server.endpoint()], "/jumpgate/"))
        .await
        .unwrap();
    let far = std::time::SystemTime::now() + Duration::from_secs(600);
    backend
        .put(NewItem::new(key("/nodes/n1"), "up").expiring(far))
        .await
        .unwrap();
    for _ in 0..20 {
        backend.keep_alive(&key("/nodes/n1"), far).await.unwrap();
    }
    // Superseded leases are revoked in the background: wait for it to settle.
    let mut raw = etcd_client::Client::connect([server.endpoint()], None)
        .await
        .unwrap();
    let mut count = usize::MAX;
    for _ in 0..50 {
        count = raw.leases().await.unwrap().leases().len();
        if count == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count, 1, "one live item should hold one lease");
}
