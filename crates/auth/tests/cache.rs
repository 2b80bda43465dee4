//! The watch-fed state cache against real backends: memory, a SQLite file and etcd.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_auth::{CacheError, Change, StateCache};
use jumpgate_backend::{
    Action, Backend, BackendError, Condition, EtcdBackend, EtcdOptions, Item, Key, KeyRange,
    MemoryBackend, NewItem, Revision, SqliteBackend, SqliteOptions, Watcher,
};
use jumpgate_test_support::{EtcdServer, eventually};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

const WITHIN: Duration = Duration::from_secs(5);

fn key(text: &str) -> Key {
    Key::new(text).unwrap()
}

fn keys(texts: &[&str]) -> Vec<Key> {
    texts.iter().map(|text| key(text)).collect()
}

async fn put(backend: &Arc<dyn Backend>, k: &str, value: &str) {
    backend.put(NewItem::new(key(k), value)).await.unwrap();
}

fn memory() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::new())
}

async fn sqlite(dir: &tempfile::TempDir, sweep_interval: Option<Duration>) -> Arc<dyn Backend> {
    let mut options = SqliteOptions::new(dir.path().join("state.db"));
    if let Some(interval) = sweep_interval {
        options.sweep_interval = interval;
    }
    Arc::new(SqliteBackend::open(options).await.unwrap())
}

fn value(cache: &StateCache, k: &str) -> Option<String> {
    cache.get(k).map(|v| String::from_utf8(v.to_vec()).unwrap())
}

fn cached(cache: &StateCache, prefix: &str) -> Vec<(String, Vec<u8>)> {
    cache
        .list(prefix)
        .into_iter()
        .map(|(k, v)| (k, v.to_vec()))
        .collect()
}

async fn stored(backend: &Arc<dyn Backend>, prefix: &str) -> Vec<(String, Vec<u8>)> {
    backend
        .get_range(&KeyRange::prefix(prefix).unwrap(), None)
        .await
        .unwrap()
        .into_iter()
        .map(|item| (item.key.as_str().to_string(), item.value))
        .collect()
}

/// Waits until the cache holds exactly what the backend holds under `prefix`.
async fn converges(cache: &StateCache, backend: &Arc<dyn Backend>, prefix: &str, within: Duration) {
    let want = stored(backend, prefix).await;
    let deadline = Instant::now() + within;
    loop {
        let have = cached(cache, prefix);
        if have == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cache did not converge under {prefix}: {} cached vs {} stored; first difference: {:?}",
            have.len(),
            want.len(),
            have.iter()
                .zip(&want)
                .find(|(a, b)| a != b)
                .map(|(a, b)| (&a.0, &b.0))
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- Loading, following, filtering, ticking ----

async fn loads_and_follows(backend: Arc<dyn Backend>) {
    put(&backend, "/roles/admin", "a1").await;
    put(&backend, "/users/alice", "u1").await;
    put(&backend, "/other/x", "outside").await;
    put(&backend, "/rolesX", "not under /roles/").await;

    let cache = StateCache::start(Arc::clone(&backend), keys(&["/roles/", "/users/"]));
    cache.wait_ready(WITHIN).await.unwrap();
    assert!(cache.is_ready());
    assert_eq!(value(&cache, "/roles/admin").as_deref(), Some("a1"));
    assert_eq!(value(&cache, "/users/alice").as_deref(), Some("u1"));
    assert_eq!(cache.get("/other/x"), None);
    assert_eq!(cache.get("/rolesX"), None);
    assert_eq!(
        cached(&cache, "/"),
        vec![
            ("/roles/admin".to_string(), b"a1".to_vec()),
            ("/users/alice".to_string(), b"u1".to_vec()),
        ]
    );

    // Every change ticks the subscription and shows up without a backend read.
    let mut ticks = cache.subscribe();
    ticks.borrow_and_update();
    put(&backend, "/roles/dev", "d1").await;
    tokio::time::timeout(WITHIN, ticks.changed())
        .await
        .expect("no tick after a put")
        .unwrap();
    eventually("the new role", WITHIN, || {
        value(&cache, "/roles/dev").as_deref() == Some("d1")
    })
    .await;

    put(&backend, "/roles/admin", "a2").await;
    backend.delete(&key("/users/alice")).await.unwrap();
    put(&backend, "/other/y", "outside").await;
    put(&backend, "/users/marker", "m").await;
    // Events arrive in revision order: once the marker is in, the rest was handled.
    eventually("the marker", WITHIN, || {
        cache.get("/users/marker").is_some()
    })
    .await;
    assert_eq!(value(&cache, "/roles/admin").as_deref(), Some("a2"));
    assert_eq!(cache.get("/users/alice"), None);
    assert_eq!(cache.get("/other/y"), None);
    assert_eq!(cached(&cache, "/other/"), Vec::new());
    converges(&cache, &backend, "/roles/", WITHIN).await;
    converges(&cache, &backend, "/users/", WITHIN).await;
    assert!(ticks.has_changed().unwrap(), "later changes did not tick");

    let stats = cache.stats();
    assert_eq!(stats.loads, 1, "{stats:?}");
    assert_eq!(stats.items, 3, "{stats:?}");

    // Closed: no longer ready, but the last state is still readable.
    cache.close();
    assert!(!cache.is_ready());
    let err = cache
        .wait_ready(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CacheError::NotReady { reason } if reason.contains("closed")),
        "{err}"
    );
    assert_eq!(value(&cache, "/roles/admin").as_deref(), Some("a2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_loads_and_follows() {
    loads_and_follows(memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_loads_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    loads_and_follows(sqlite(&dir, None).await).await;
}

/// The sweeper is slowed to an hour, so no delete event comes: the cache itself must
/// stop returning the item at its expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_items_disappear_before_their_delete_event() {
    let dir = tempfile::tempdir().unwrap();
    let backend = sqlite(&dir, Some(Duration::from_secs(3600))).await;
    let cache = StateCache::start(Arc::clone(&backend), keys(&["/nodes/"]));
    cache.wait_ready(WITHIN).await.unwrap();
    // Long enough for a loaded CI machine to see the item before it expires.
    let expires = SystemTime::now() + Duration::from_millis(2500);
    backend
        .put(NewItem::new(key("/nodes/n1"), "heartbeat").expiring(expires))
        .await
        .unwrap();
    put(&backend, "/nodes/n2", "forever").await;
    eventually("both nodes", Duration::from_secs(2), || {
        cache.list("/nodes/").len() == 2
    })
    .await;
    assert!(cache.get("/nodes/n1").is_some());

    while SystemTime::now() <= expires {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cache.get("/nodes/n1"), None);
    assert_eq!(
        cached(&cache, "/nodes/"),
        vec![("/nodes/n2".to_string(), b"forever".to_vec())]
    );
    assert_eq!(cache.stats().items, 1);
}

// ---- No write lost while starting ----

/// A writer on its own thread keeps writing (puts, overwrites, deletes) from before the
/// cache starts until after it is ready; afterwards the cache must hold exactly what the
/// backend holds. A cache that read before watching would miss the writes in between.
async fn converges_with_a_concurrent_writer(backend: Arc<dyn Backend>) {
    let preload = (0..500)
        .map(|i| Action::Put(NewItem::new(key(&format!("/w/{i:04}")), "preloaded")))
        .collect();
    backend.atomic_write(Vec::new(), preload).await.unwrap();
    let ready = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let writer = {
        let backend = Arc::clone(&backend);
        let ready = Arc::clone(&ready);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut started_tx = Some(started_tx);
                let mut after_ready = 0;
                for i in 0..100_000 {
                    put(&backend, &format!("/w/{:04}", i % 700), &format!("v{i}")).await;
                    if i % 5 == 4 {
                        let doomed = key(&format!("/w/{:04}", (i * 7) % 700));
                        match backend.delete(&doomed).await {
                            Ok(()) => {}
                            Err(err) if err.is_not_found() => {}
                            Err(err) => panic!("{err}"),
                        }
                    }
                    if let Some(tx) = started_tx.take() {
                        let _ = tx.send(());
                    }
                    if ready.load(Ordering::SeqCst) {
                        after_ready += 1;
                        if after_ready >= 200 {
                            return;
                        }
                    }
                    // Fast, but slow enough for the cache to keep up with the watch.
                    if i % 4 == 0 {
                        std::thread::sleep(Duration::from_micros(20));
                    }
                }
                panic!("the cache was not ready after 100000 writes");
            })
        })
    };
    started_rx.await.unwrap();
    let cache = StateCache::start(Arc::clone(&backend), keys(&["/w/"]));
    cache.wait_ready(WITHIN).await.unwrap();
    ready.store(true, Ordering::SeqCst);
    // It wrote before the cache started and goes on for 200 rounds after it is ready.
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    converges(&cache, &backend, "/w/", WITHIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_converges_with_a_concurrent_writer() {
    converges_with_a_concurrent_writer(memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_converges_with_a_concurrent_writer() {
    let dir = tempfile::tempdir().unwrap();
    converges_with_a_concurrent_writer(sqlite(&dir, None).await).await;
}

// ---- Falling behind ----

/// On a single-threaded runtime the memory backend's writes never yield, so 200 writes
/// in a row overrun a 64-event watch buffer before the cache task runs: it must be told
/// it fell behind, re-sync, and still end up exact.
#[tokio::test(flavor = "current_thread")]
async fn a_cache_that_fell_behind_resyncs_and_converges() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::with_watch_buffer(64));
    put(&backend, "/r/keep", "1").await;
    put(&backend, "/r/doomed", "1").await;
    let cache = StateCache::start(Arc::clone(&backend), keys(&["/r/"]));
    cache.wait_ready(WITHIN).await.unwrap();
    assert_eq!(cache.stats().loads, 1);

    for i in 0..200 {
        put(&backend, &format!("/r/{i:03}"), &format!("v{i}")).await;
    }
    backend.delete(&key("/r/doomed")).await.unwrap();
    put(&backend, "/r/keep", "2").await;

    converges(&cache, &backend, "/r/", WITHIN).await;
    assert_eq!(cache.get("/r/doomed"), None);
    assert_eq!(value(&cache, "/r/keep").as_deref(), Some("2"));
    let stats = cache.stats();
    assert!(stats.loads >= 2, "the cache never re-synced: {stats:?}");
    cache.wait_ready(WITHIN).await.unwrap();
}

/// A real memory backend whose `watch` and `get_range` can be made to fail, as if the
/// store were unreachable, while writes still go through (as they would from another
/// auth server that can still reach it).
#[derive(Debug)]
struct Flaky {
    inner: Arc<dyn Backend>,
    down: AtomicBool,
}

type Fut<'a, T> = Pin<Box<dyn Future<Output = jumpgate_backend::Result<T>> + Send + 'a>>;

impl Flaky {
    fn outage(&self) -> jumpgate_backend::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable {
                backend: "flaky",
                detail: "injected outage 7f3a".to_string(),
            });
        }
        Ok(())
    }
}

impl Backend for Flaky {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    fn get<'a, 'b, 'at>(&'a self, key: &'b Key) -> Fut<'at, Item>
    where
        'a: 'at,
        'b: 'at,
        Self: 'at,
    {
        self.inner.get(key)
    }
    fn put<'a, 'at>(&'a self, item: NewItem) -> Fut<'at, Revision>
    where
        'a: 'at,
        Self: 'at,
    {
        self.inner.put(item)
    }
    fn create<'a, 'at>(&'a self, item: NewItem) -> Fut<'at, Revision>
    where
        'a: 'at,
        Self: 'at,
    {
        self.inner.create(item)
    }
    fn update<'a, 'at>(&'a self, item: NewItem) -> Fut<'at, Revision>
    where
        'a: 'at,
        Self: 'at,
    {
        self.inner.update(item)
    }
    fn compare_and_swap<'a, 'b, 'at>(
        &'a self,
        expected: &'b [u8],
        item: NewItem,
    ) -> Fut<'at, Revision>
    where
        'a: 'at,
        'b: 'at,
        Self: 'at,
    {
        self.inner.compare_and_swap(expected, item)
    }
    fn conditional_update<'a, 'at>(
        &'a self,
        expected: Revision,
        item: NewItem,
    ) -> Fut<'at, Revision>
    where
        'a: 'at,
        Self: 'at,
    {
        self.inner.conditional_update(expected, item)
    }
    fn delete<'a, 'b, 'at>(&'a self, key: &'b Key) -> Fut<'at, ()>
    where
        'a: 'at,
        'b: 'at,
        Self: 'at,
    {
        self.inner.delete(key)
    }
    fn conditional_delete<'a, 'b, 'at>(&'a self, key: &'b Key, expected: Revision) -> Fut<'at, ()>
    where
        'a: 'at,
        'b: 'at,
        Self: 'at,
    {
        self.inner.conditional_delete(key, expected)
    }
    fn get_range<'a, 'b, 'at>(
        &'a self,
        range: &'b KeyRange,
        limit: Option<usize>,
    ) -> Fut<'at, Vec<Item>>
    where
        'a: 'at,
        'b: 'at,
        Self: 'at,
    {
        Box::pin(async move {
            self.outage()?;
            self.inner.get_range(range, limit).await
        })
    }
    fn delete_range<'a, 'b, 'at>(&'a self, range: &'b KeyRange) -> Fut<'at, u64>
    where
        'a: 'at,
        'b: 'at,
        Self: 'at,
    {
        self.inner.delete_range(range)
    }
    fn keep_alive<'a, 'b, 'at>(&'a self, key: &'b Key, expires: SystemTime) -> Fut<'at, Revision>
    where
        'a: 'at,
        'b: 'at,
        Self: 'at,
    {
        self.inner.keep_alive(key, expires)
    }
    fn atomic_write<'a, 'at>(
        &'a self,
        conditions: Vec<Condition>,
        actions: Vec<Action>,
    ) -> Fut<'at, Revision>
    where
        'a: 'at,
        Self: 'at,
    {
        self.inner.atomic_write(conditions, actions)
    }
    fn watch<'a, 'at>(&'a self, prefixes: Vec<Key>) -> Fut<'at, Watcher>
    where
        'a: 'at,
        Self: 'at,
    {
        Box::pin(async move {
            self.outage()?;
            self.inner.watch(prefixes).await
        })
    }
}

/// The watch falls behind while the store is unreachable: the re-sync fails, so the
/// cache says it is not ready (naming the error) but keeps serving what it had; once
/// the store is back it re-syncs to the exact state.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_resync_serves_stale_state_until_the_backend_is_back() {
    let flaky = Arc::new(Flaky {
        inner: Arc::new(MemoryBackend::with_watch_buffer(64)),
        down: AtomicBool::new(false),
    });
    let backend: Arc<dyn Backend> = flaky.clone();
    put(&backend, "/r/kept", "1").await;
    let cache = StateCache::start(Arc::clone(&backend), keys(&["/r/"]));
    cache.wait_ready(WITHIN).await.unwrap();

    flaky.down.store(true, Ordering::SeqCst);
    for i in 0..200 {
        put(&backend, &format!("/r/{i:03}"), "new").await;
    }
    eventually("the cache to notice", WITHIN, || !cache.is_ready()).await;
    let err = cache
        .wait_ready(Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected outage 7f3a"), "{err}");
    assert_eq!(value(&cache, "/r/kept").as_deref(), Some("1"));
    assert!(cache.stats().failed_loads >= 1);
    // It keeps retrying (with backoff) rather than giving up.
    let failed = cache.stats().failed_loads;
    eventually("another attempt", WITHIN, || {
        cache.stats().failed_loads > failed
    })
    .await;
    assert_eq!(value(&cache, "/r/kept").as_deref(), Some("1"));

    flaky.down.store(false, Ordering::SeqCst);
    cache.wait_ready(WITHIN).await.unwrap();
    converges(&cache, &backend, "/r/", WITHIN).await;
    assert_eq!(cache.list("/r/").len(), 201);
    assert_eq!(cache.stats().last_error, None);
}

// ---- A real etcd ----

async fn etcd_backend(server: &EtcdServer) -> Arc<dyn Backend> {
    let mut options = EtcdOptions::new(vec![server.endpoint()], "/jumpgate-cache/");
    options.dial_timeout = Duration::from_secs(1);
    options.request_timeout = Duration::from_secs(1);
    options.watch_buffer = 64;
    Arc::new(EtcdBackend::connect(options).await.unwrap())
}

/// etcd stops: the cache keeps answering from what it had; etcd comes back: writes made
/// after the restart reach the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_serves_the_last_state_then_converges() {
    let mut server = EtcdServer::start().await;
    let backend = etcd_backend(&server).await;
    put(&backend, "/roles/before", "1").await;
    let cache = StateCache::start(Arc::clone(&backend), keys(&["/roles/"]));
    cache.wait_ready(WITHIN).await.unwrap();
    put(&backend, "/roles/live", "2").await;
    eventually("the live write", WITHIN, || {
        cache.get("/roles/live").is_some()
    })
    .await;

    server.stop().await;
    // The backend itself fails now; the cache still answers.
    assert!(backend.get(&key("/roles/before")).await.is_err());
    assert_eq!(value(&cache, "/roles/before").as_deref(), Some("1"));
    assert_eq!(cache.list("/roles/").len(), 2);

    server.start_again().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match backend.put(NewItem::new(key("/roles/after"), "3")).await {
            Ok(_) => break,
            Err(err) if err.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("etcd did not come back: {err}"),
        }
    }
    backend.delete(&key("/roles/live")).await.unwrap();
    converges(&cache, &backend, "/roles/", Duration::from_secs(20)).await;
    assert_eq!(value(&cache, "/roles/after").as_deref(), Some("3"));
    assert_eq!(cache.get("/roles/live"), None);
    assert!(cache.is_ready());
}

/// A cache started while etcd is down says why it is not ready, keeps retrying, and
/// loads once etcd is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_at_start_is_reported_and_retried() {
    let mut server = EtcdServer::start().await;
    let backend = etcd_backend(&server).await;
    put(&backend, "/users/alice", "a").await;
    server.stop().await;

    let cache = StateCache::start(Arc::clone(&backend), keys(&["/users/"]));
    eventually("a failed load", Duration::from_secs(10), || {
        cache.stats().failed_loads >= 1
    })
    .await;
    let err = cache
        .wait_ready(Duration::from_millis(10))
        .await
        .unwrap_err();
    let CacheError::NotReady { reason } = &err;
    assert!(
        reason.contains(&server.endpoint()),
        "the reason should name the unreachable endpoint: {err}"
    );
    assert!(!cache.is_ready());
    assert_eq!(cache.get("/users/alice"), None);

    server.start_again().await;
    cache.wait_ready(Duration::from_secs(20)).await.unwrap();
    assert_eq!(value(&cache, "/users/alice").as_deref(), Some("a"));
    assert_eq!(cache.stats().last_error, None);
}

/// One 100-put transaction arrives as one etcd watch response, which overruns a 64-event
/// watch buffer at once: the cache re-syncs. Expiring items vanish at their exact expiry
/// although etcd's lease (whole seconds) deletes them later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_fell_behind_and_expiry() {
    let server = EtcdServer::start().await;
    let backend = etcd_backend(&server).await;
    let cache = StateCache::start(Arc::clone(&backend), keys(&["/tx/", "/hb/"]));
    cache.wait_ready(WITHIN).await.unwrap();

    let actions = (0..100)
        .map(|i| Action::Put(NewItem::new(key(&format!("/tx/{i:03}")), format!("v{i}"))))
        .collect();
    backend.atomic_write(Vec::new(), actions).await.unwrap();
    converges(&cache, &backend, "/tx/", WITHIN).await;
    let stats = cache.stats();
    assert!(stats.loads >= 2, "the cache never re-synced: {stats:?}");

    // Long enough that a loaded CI machine sees the item before it expires (the cache
    // hides an item from its expiry on, whether or not it saw it arrive).
    let expires = SystemTime::now() + Duration::from_millis(2500);
    backend
        .put(NewItem::new(key("/hb/node"), "alive").expiring(expires))
        .await
        .unwrap();
    eventually("the heartbeat", Duration::from_secs(2), || {
        cache.get("/hb/node").is_some()
    })
    .await;
    while SystemTime::now() <= expires {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cache.get("/hb/node"), None);
    assert!(cache.list("/hb/").is_empty());
    cache.wait_ready(WITHIN).await.unwrap();
}

/// What a follower saw: `key=value` for a put, `-key` for a delete, `REPLACED`.
fn describe(change: &Change) -> String {
    match change {
        Change::Put { key, value } => format!("{key}={}", String::from_utf8_lossy(value)),
        Change::Delete { key } => format!("-{key}"),
        Change::Replaced => "REPLACED".to_string(),
    }
}

/// A follower gets the snapshot, then every change after it in order, each once; a
/// write that leaves the value as it was (a heartbeat) is not a change, and changes under
/// other cached prefixes do not wake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_gets_the_snapshot_then_each_change_once_in_order() {
    let backend = memory();
    put(&backend, "/r/a", "1").await;
    put(&backend, "/r/b", "1").await;
    put(&backend, "/other/x", "1").await;
    let cache = StateCache::start(Arc::clone(&backend), keys(&["/r/", "/other/"]));
    cache.wait_ready(WITHIN).await.unwrap();

    let (snapshot, mut changes) = cache.snapshot_and_follow("/r/");
    let names: Vec<&str> = snapshot.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(names, ["/r/a", "/r/b"]);

    put(&backend, "/r/a", "2").await;
    put(&backend, "/r/a", "2").await; // the same value again: not a change
    put(&backend, "/other/x", "2").await; // another prefix: another channel
    backend.delete(&key("/r/b")).await.unwrap();
    put(&backend, "/r/c", "1").await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let change = tokio::time::timeout(WITHIN, changes.recv())
            .await
            .expect("a change in time")
            .unwrap();
        seen.push(describe(&change));
    }
    assert_eq!(seen, ["/r/a=2", "-/r/b", "/r/c=1"]);
    assert!(
        changes.try_recv().is_err(),
        "a write that changed nothing was reported"
    );
}

/// After a re-sync (the cache's own watch fell behind) followers are told to start
/// over, since they cannot know what the new map changed.
#[tokio::test(flavor = "current_thread")]
async fn a_resync_tells_followers_to_start_over() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::with_watch_buffer(64));
    put(&backend, "/r/keep", "1").await;
    let cache = StateCache::start(Arc::clone(&backend), keys(&["/r/"]));
    cache.wait_ready(WITHIN).await.unwrap();
    let (_, mut changes) = cache.snapshot_and_follow("/r/");
    for i in 0..200 {
        put(&backend, &format!("/r/{i:03}"), &format!("v{i}")).await;
    }
    converges(&cache, &backend, "/r/", WITHIN).await;
    let mut replaced = false;
    while let Ok(change) = changes.try_recv() {
        replaced |= change == Change::Replaced;
    }
    assert!(replaced, "a re-sync was not reported: {:?}", cache.stats());
}
