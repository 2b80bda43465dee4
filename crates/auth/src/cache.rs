//! A watch-fed, in-memory copy of some backend prefixes (DESIGN.md, "Data": reads on the
//! connection path come from memory, never from a round trip to the backend).
//!
//! [`StateCache::start`] spawns one task that keeps a map of every live item under the
//! given prefixes. [`StateCache::get`] and [`StateCache::list`] only read that map.
//!
//! # Loading without missing a write
//!
//! A load opens the watch **first** and waits for its [`Event::Ready`], and only then
//! reads each prefix with `get_range`. Every write that the read missed therefore arrives
//! as an event; events that the read already reflects are made harmless by revisions:
//!
//! - Revisions increase across the whole backend, and each prefix's read is one snapshot.
//!   So an event whose revision is not above the highest revision seen in that prefix's
//!   read (its *floor*) is already in the read, and is skipped whatever its kind.
//! - Above the floor, each key keeps the revision of the item held for it: a put is
//!   applied only if it is newer, and a delete (deletes carry the revision of the
//!   deletion in [`Event::Delete`]) only if it is newer than the item held.
//! - Events already buffered when the read finishes are applied before the new map is
//!   published, so readers normally never see the in-between state. (A put that the
//!   read missed because the key was deleted again before the read can still show up
//!   for as long as it takes its own delete event to arrive, which is already queued.)
//!
//! Nested prefixes are merged (`/a/` covers `/a/b/`), so each key belongs to exactly one
//! prefix and one floor. An empty prefix list means every key.
//!
//! # Falling behind and outages: stale but available
//!
//! When the watch ends (the subscriber fell behind, the store compacted its history, or
//! the watch closed) the task logs a warning and re-syncs: a new watch and a full re-read
//! that *replaces* the map. While that fails (the backend is unreachable) it retries with
//! jittered exponential backoff from 100 ms up to 5 s, the cache reports not ready
//! ([`StateCache::is_ready`], [`StateCache::wait_ready`] name the last backend error),
//! and reads keep answering from the last known state. For a highly available cluster
//! that is the right trade: an etcd hiccup must not refuse every connection, and the
//! state it serves was correct moments ago. (The etcd backend's own watcher also resumes
//! across short outages without ending, so the cache does not even notice those.)
//!
//! Expired items are never returned, even before the backend's delete event for them
//! arrives: reads compare each item's expiry with the clock.

use jumpgate_backend::{Backend, BackendError, Event, Item, Key, KeyRange, Revision, Watcher};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a new watch may take to say [`Event::Ready`] before the load is retried.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry delay after a failure; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// A watch that lived this long counts as a success: the next re-sync starts at once.
const STABLE_SESSION: Duration = Duration::from_secs(1);
/// At most this many already-buffered events are applied under one lock (and one tick).
const MAX_BATCH: usize = 512;

/// Changes a follower may miss before it must start over from a new snapshot.
const CHANGES_CAPACITY: usize = 16_384;

/// One change to the cached items, as [`StateCache::snapshot_and_follow`] reports them
/// (in the order they were applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A key was written with a new value. A write that leaves the value as it was (a
    /// heartbeat renewing its TTL) is not reported.
    Put { key: String, value: Arc<[u8]> },
    /// A key was deleted (or expired).
    Delete { key: String },
    /// The whole map was replaced by a re-sync: followers must take a new snapshot.
    Replaced,
}

/// Live `(key, value)` pairs under a prefix, in key order.
pub type Snapshot = Vec<(String, Arc<[u8]>)>;

/// Why the cache cannot answer with current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("the state cache is not ready: {reason}")]
    NotReady { reason: String },
}

/// Counters for logs and metrics, from [`StateCache::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStats {
    /// Live (not expired) items held.
    pub items: usize,
    /// Completed full loads: the first one and every re-sync.
    pub loads: u64,
    /// Failed load attempts (each is retried with backoff).
    pub failed_loads: u64,
    /// Watch events received after the loads.
    pub events: u64,
    /// The value [`StateCache::subscribe`] receivers see.
    pub generation: u64,
    pub ready: bool,
    /// The last load error, until a load succeeds.
    pub last_error: Option<String>,
}

/// An in-memory copy of some backend prefixes, kept current by a watch. Cheap to clone;
/// clones share the copy. The watch task stops on [`StateCache::close`] or when the last
/// clone is dropped.
#[derive(Clone)]
pub struct StateCache {
    shared: Arc<Shared>,
    task: Arc<TaskGuard>,
}

impl fmt::Debug for StateCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateCache")
            .field("backend", &self.shared.backend_kind)
            .field("prefixes", &self.shared.prefixes)
            .field("phase", &*self.shared.phase.borrow())
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// The first load has not succeeded yet.
    Loading,
    /// Loaded and following the watch.
    Ready,
    /// A re-sync failed: serving the last known state while retrying.
    Stale,
    /// [`StateCache::close`] was called.
    Closed,
}

struct Shared {
    backend_kind: &'static str,
    /// Normalised: sorted, none nested in another.
    prefixes: Vec<Key>,
    state: RwLock<State>,
    /// One channel per cached prefix (a watcher of roles is not woken by node
    /// heartbeats). Sent under the state's write lock, so a snapshot taken under its
    /// read lock and a receiver subscribed there together miss nothing and see nothing
    /// twice.
    changes: Vec<(Key, tokio::sync::broadcast::Sender<Change>)>,
    generation: watch::Sender<u64>,
    phase: watch::Sender<Phase>,
    loads: AtomicU64,
    failed_loads: AtomicU64,
    events: AtomicU64,
}

#[derive(Default)]
struct State {
    items: BTreeMap<String, Entry>,
    last_error: Option<String>,
}

#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    revision: Revision,
    expires: Option<SystemTime>,
}

impl Entry {
    fn live(&self, now: SystemTime) -> bool {
        !matches!(self.expires, Some(at) if at <= now)
    }
}

impl From<Item> for Entry {
    fn from(item: Item) -> Entry {
        Entry {
            value: Arc::from(item.value),
            revision: item.revision,
            expires: item.expires,
        }
    }
}

/// Aborts the watch task when the last [`StateCache`] clone goes away.
struct TaskGuard(Mutex<Option<JoinHandle<()>>>);

impl TaskGuard {
    fn abort(&self) {
        let handle = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(handle) = handle {
            handle.abort();
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.abort();
    }
}

impl StateCache {
    /// Starts the watch task for `prefixes` (e.g. `/roles/`, `/users/`, `/authorities/`;
    /// an empty list means every key) and returns at once: use
    /// [`StateCache::wait_ready`] to wait for the first full load. Must be called inside
    /// a Tokio runtime.
    pub fn start(backend: Arc<dyn Backend>, prefixes: Vec<Key>) -> StateCache {
        let (generation, _) = watch::channel(0);
        let (phase, _) = watch::channel(Phase::Loading);
        let prefixes = normalise(prefixes);
        let changes = prefixes
            .iter()
            .map(|prefix| {
                (
                    prefix.clone(),
                    tokio::sync::broadcast::Sender::new(CHANGES_CAPACITY),
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            backend_kind: backend.kind(),
            prefixes,
            state: RwLock::new(State::default()),
            changes,
            generation,
            phase,
            loads: AtomicU64::new(0),
            failed_loads: AtomicU64::new(0),
            events: AtomicU64::new(0),
        });
        let task = tokio::spawn(run(Arc::clone(&shared), backend));
        StateCache {
            shared,
            task: Arc::new(TaskGuard(Mutex::new(Some(task)))),
        }
    }

    /// Waits up to `timeout` until the cache holds a full, current copy. The error names
    /// the last backend error, if any.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), CacheError> {
        let mut phase = self.shared.phase.subscribe();
        let settled = tokio::time::timeout(
            timeout,
            phase.wait_for(|phase| matches!(phase, Phase::Ready | Phase::Closed)),
        )
        .await
        .ok()
        .and_then(|waited| waited.ok().map(|phase| *phase));
        if settled == Some(Phase::Ready) {
            return Ok(());
        }
        let phase = *self.shared.phase.borrow();
        let last_error = self.shared.read().last_error.clone();
        let reason = match (phase, last_error) {
            (Phase::Ready, _) => return Ok(()),
            (Phase::Closed, _) => "the cache was closed".to_string(),
            (_, Some(err)) => format!(
                "the last load from the {} backend failed: {err}",
                self.shared.backend_kind
            ),
            (Phase::Loading, None) => format!(
                "the first load from the {} backend has not finished after {timeout:?}",
                self.shared.backend_kind
            ),
            (Phase::Stale, None) => format!(
                "re-syncing with the {} backend has not finished after {timeout:?}",
                self.shared.backend_kind
            ),
        };
        Err(CacheError::NotReady { reason })
    }

    /// Whether the cache holds a full copy and is following the watch. While it is not
    /// (before the first load, or while a re-sync fails) reads still answer from the
    /// last known state.
    pub fn is_ready(&self) -> bool {
        *self.shared.phase.borrow() == Phase::Ready
    }

    /// The value under `key`, from memory: `None` if it is absent, expired, or outside
    /// the cached prefixes. Never touches the backend.
    pub fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        let now = SystemTime::now();
        self.shared
            .read()
            .items
            .get(key)
            .filter(|entry| entry.live(now))
            .map(|entry| Arc::clone(&entry.value))
    }

    /// Every live `(key, value)` under `prefix` (a plain string prefix), in key order,
    /// from memory.
    pub fn list(&self, prefix: &str) -> Vec<(String, Arc<[u8]>)> {
        let now = SystemTime::now();
        self.shared
            .read()
            .items
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(_, entry)| entry.live(now))
            .map(|(key, entry)| (key.clone(), Arc::clone(&entry.value)))
            .collect()
    }

    /// Every live item under `prefix` now, and a receiver of every change applied after
    /// that snapshot (for all prefixes; the follower filters). A receiver that falls more
    /// than [`CHANGES_CAPACITY`] changes behind gets `Lagged`, and after a re-sync it
    /// gets [`Change::Replaced`]: either way it must take a new snapshot.
    pub fn snapshot_and_follow(
        &self,
        prefix: &str,
    ) -> (Snapshot, tokio::sync::broadcast::Receiver<Change>) {
        let now = SystemTime::now();
        let state = self.shared.read();
        // The channel of the cached prefix holding `prefix`; a prefix outside the cache
        // gets a channel that never says anything (and an empty snapshot).
        let receiver = self
            .shared
            .changes
            .iter()
            .find(|(cached, _)| prefix.starts_with(cached.as_str()))
            .map_or_else(
                || tokio::sync::broadcast::Sender::new(1).subscribe(),
                |(_, sender)| sender.subscribe(),
            );
        let items = state
            .items
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(_, entry)| entry.live(now))
            .map(|(key, entry)| (key.clone(), Arc::clone(&entry.value)))
            .collect();
        (items, receiver)
    }

    /// A receiver whose value (a generation counter) changes every time the cache does,
    /// so dependants (e.g. a decoded role table) know to rebuild. Items expiring on their
    /// own tick it when the backend's delete event for them arrives.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    /// Waits until `check` holds for the cache (re-checked on every change), at most
    /// `timeout`; returns whether it held. How a writer gets read-your-writes: after
    /// writing to the backend it waits for the watch to bring the change here.
    pub async fn wait_until(&self, timeout: Duration, check: impl Fn(&StateCache) -> bool) -> bool {
        let mut changes = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if check(self) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // Closed or timed out: one last look.
                _ => return check(self),
            }
        }
    }

    /// Counters for logs and metrics.
    pub fn stats(&self) -> CacheStats {
        let now = SystemTime::now();
        let (items, last_error) = {
            let state = self.shared.read();
            let items = state.items.values().filter(|e| e.live(now)).count();
            (items, state.last_error.clone())
        };
        CacheStats {
            items,
            loads: self.shared.loads.load(Ordering::Relaxed),
            failed_loads: self.shared.failed_loads.load(Ordering::Relaxed),
            events: self.shared.events.load(Ordering::Relaxed),
            generation: *self.shared.generation.borrow(),
            ready: self.is_ready(),
            last_error,
        }
    }

    /// Stops the watch task. Reads keep answering from the last state; the cache no
    /// longer reports ready.
    pub fn close(&self) {
        self.task.abort();
        self.shared.phase.send_replace(Phase::Closed);
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn tick(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// Sets the phase unless the cache was closed meanwhile.
    fn set_phase(&self, next: Phase) {
        self.phase.send_if_modified(|phase| {
            if *phase == Phase::Closed || *phase == next {
                return false;
            }
            *phase = next;
            true
        });
    }

    /// Publishes a freshly loaded map in place of the old one.
    fn replace(&self, items: BTreeMap<String, Entry>) -> usize {
        let count = items.len();
        {
            let mut state = self.write();
            state.items = items;
            state.last_error = None;
            for (_, sender) in &self.changes {
                let _ = sender.send(Change::Replaced);
            }
        }
        self.loads.fetch_add(1, Ordering::Relaxed);
        self.tick();
        self.set_phase(Phase::Ready);
        count
    }

    fn load_failed(&self, error: String) {
        self.write().last_error = Some(error);
        self.failed_loads.fetch_add(1, Ordering::Relaxed);
        if *self.phase.borrow() == Phase::Ready {
            self.set_phase(Phase::Stale);
        }
    }

    /// Applies a batch of watch events; ticks once if anything changed.
    fn apply(&self, floors: &[Floor], events: Vec<Event>) {
        self.events
            .fetch_add(u64::try_from(events.len()).unwrap_or(0), Ordering::Relaxed);
        let mut changed = false;
        {
            let mut state = self.write();
            for event in events {
                // Every event is applied: no short-circuit.
                let sender = event_key(&event).and_then(|key| {
                    self.changes
                        .iter()
                        .find(|(prefix, _)| key.starts_with(prefix.as_str()))
                        .map(|(_, sender)| sender)
                });
                changed |= apply_event(&mut state.items, floors, event, sender);
            }
        }
        if changed {
            self.tick();
        }
    }
}

/// The key an event is about (`None` for `Ready`).
fn event_key(event: &Event) -> Option<&str> {
    match event {
        Event::Ready => None,
        Event::Put(item) => Some(item.key.as_str()),
        Event::Delete { key, .. } => Some(key.as_str()),
    }
}

/// One prefix and the highest revision its load read (`None`: the read was empty).
type Floor = (Key, Option<Revision>);

/// Applies one event to `items`; returns whether it changed them. See the module docs.
fn apply_event(
    items: &mut BTreeMap<String, Entry>,
    floors: &[Floor],
    event: Event,
    changes: Option<&tokio::sync::broadcast::Sender<Change>>,
) -> bool {
    let (key, revision) = match &event {
        Event::Ready => return false,
        Event::Put(item) => (&item.key, item.revision),
        Event::Delete { key, revision } => (key, *revision),
    };
    let Some((_, floor)) = floors.iter().find(|(prefix, _)| key.starts_with(prefix)) else {
        // Not under a cached prefix (the watch filters these; be safe anyway).
        return false;
    };
    if floor.is_some_and(|floor| revision <= floor) {
        return false; // Already reflected in the load.
    }
    let held = items.get(key.as_str()).map(|entry| entry.revision);
    if held.is_some_and(|held| held >= revision) {
        return false; // Older than what we hold.
    }
    match event {
        Event::Put(item) => {
            let key = item.key.as_str().to_owned();
            let entry = Entry::from(item);
            let same_value = items
                .get(&key)
                .is_some_and(|held| held.value == entry.value);
            if let Some(changes) = changes.filter(|_| !same_value) {
                let _ = changes.send(Change::Put {
                    key: key.clone(),
                    value: Arc::clone(&entry.value),
                });
            }
            items.insert(key, entry);
            true
        }
        Event::Delete { key, .. } => {
            let removed = items.remove(key.as_str()).is_some();
            if let Some(changes) = changes.filter(|_| removed) {
                let _ = changes.send(Change::Delete {
                    key: key.as_str().to_owned(),
                });
            }
            removed
        }
        Event::Ready => false,
    }
}

/// Sorts the prefixes and drops those nested in another, so every key has one floor.
fn normalise(mut prefixes: Vec<Key>) -> Vec<Key> {
    if prefixes.is_empty() {
        return vec![Key::root()];
    }
    prefixes.sort();
    let mut kept: Vec<Key> = Vec::with_capacity(prefixes.len());
    for prefix in prefixes {
        if !kept.iter().any(|outer| prefix.starts_with(outer)) {
            kept.push(prefix);
        }
    }
    kept
}

/// Why a load failed.
#[derive(Debug)]
enum LoadError {
    Backend(BackendError),
    /// The new watch ended or misbehaved before the load finished.
    Watch(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Backend(err) => err.fmt(f),
            LoadError::Watch(reason) => f.write_str(reason),
        }
    }
}

/// The watch task: load, follow the watch until it ends, repeat; back off on failures.
async fn run(shared: Arc<Shared>, backend: Arc<dyn Backend>) {
    let kind = shared.backend_kind;
    // Failed attempts in a row (a watch that ended quickly counts as one).
    let mut failures: u32 = 0;
    loop {
        if failures > 0 {
            tokio::time::sleep(retry_delay(failures)).await;
        }
        let started = Instant::now();
        let (watcher, floors) = match load(&shared, backend.as_ref()).await {
            Ok(loaded) => loaded,
            Err(err) => {
                failures = failures.saturating_add(1);
                tracing::warn!(
                    backend = kind,
                    error = %err,
                    attempt = failures,
                    retry_in_ms = u64::try_from(retry_delay(failures).as_millis()).unwrap_or(0),
                    "state cache load failed; serving the last known state and retrying"
                );
                shared.load_failed(err.to_string());
                continue;
            }
        };
        let ended = follow(&shared, watcher, &floors).await;
        failures = if started.elapsed() >= STABLE_SESSION {
            0
        } else {
            failures.saturating_add(1)
        };
        tracing::warn!(
            backend = kind,
            reason = %ended,
            "state cache watch ended; re-syncing"
        );
    }
}

/// 100 ms doubling per failure up to 5 s, times a random factor in [0.5, 1) so many
/// caches do not retry in lockstep.
fn retry_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let delay = FIRST_RETRY_DELAY
        .saturating_mul(1u32 << exponent)
        .min(MAX_RETRY_DELAY);
    delay.mul_f64(rand::random_range(0.5..1.0))
}

/// Watch, wait for Ready, read every prefix, apply what is already buffered, publish.
async fn load(shared: &Shared, backend: &dyn Backend) -> Result<(Watcher, Vec<Floor>), LoadError> {
    let started = Instant::now();
    let mut watcher = backend
        .watch(shared.prefixes.clone())
        .await
        .map_err(LoadError::Backend)?;
    match tokio::time::timeout(READY_TIMEOUT, watcher.next()).await {
        Ok(Some(Ok(Event::Ready))) => {}
        Ok(Some(Ok(_))) => {
            return Err(LoadError::Watch(
                "the watch sent an event before Ready".to_string(),
            ));
        }
        Ok(Some(Err(err))) => return Err(LoadError::Watch(err.to_string())),
        Ok(None) => return Err(LoadError::Watch("the watch ended at once".to_string())),
        Err(_) => {
            return Err(LoadError::Watch(format!(
                "the watch was not ready within {READY_TIMEOUT:?}"
            )));
        }
    }
    let mut items = BTreeMap::new();
    let mut floors = Vec::with_capacity(shared.prefixes.len());
    for prefix in &shared.prefixes {
        let read = backend
            .get_range(&KeyRange::Prefix(prefix.clone()), None)
            .await
            .map_err(LoadError::Backend)?;
        floors.push((prefix.clone(), read.iter().map(|item| item.revision).max()));
        for item in read {
            items.insert(item.key.as_str().to_owned(), Entry::from(item));
        }
    }
    // Apply what arrived during the read before anyone sees the new map.
    let (buffered, ended) = next_batch_now(&mut watcher).await;
    let drained = buffered.len();
    for event in buffered {
        // Not published yet: followers learn of the whole new map from `Replaced`.
        apply_event(&mut items, &floors, event, None);
    }
    if let Some(reason) = ended {
        return Err(LoadError::Watch(reason));
    }
    let count = shared.replace(items);
    tracing::debug!(
        backend = shared.backend_kind,
        items = count,
        drained_events = drained,
        load_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(0),
        loads = shared.loads.load(Ordering::Relaxed),
        "state cache loaded"
    );
    Ok((watcher, floors))
}

/// Follows the watch until it ends; returns why.
async fn follow(shared: &Shared, mut watcher: Watcher, floors: &[Floor]) -> String {
    loop {
        let first = match watcher.next().await {
            Some(Ok(event)) => event,
            Some(Err(err)) => return err.to_string(),
            None => return "the watch ended".to_string(),
        };
        let (mut batch, ended) = next_batch_now(&mut watcher).await;
        batch.insert(0, first);
        shared.apply(floors, batch);
        if let Some(reason) = ended {
            return reason;
        }
    }
}

/// The events the watcher can hand over without waiting (at most [`MAX_BATCH`]), and
/// why the watch ended if it did.
async fn next_batch_now(watcher: &mut Watcher) -> (Vec<Event>, Option<String>) {
    let mut events = Vec::new();
    while events.len() < MAX_BATCH {
        // A zero timeout polls the watcher once: an event if one is buffered.
        match tokio::time::timeout(Duration::ZERO, watcher.next()).await {
            Err(_) => break,
            Ok(Some(Ok(event))) => events.push(event),
            Ok(Some(Err(err))) => return (events, Some(err.to_string())),
            Ok(None) => return (events, Some("the watch ended".to_string())),
        }
    }
    (events, None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn key(text: &str) -> Key {
        Key::new(text).unwrap()
    }

    fn put(k: &str, value: &str, revision: i64) -> Event {
        Event::Put(Item {
            key: key(k),
            value: value.as_bytes().to_vec(),
            expires: None,
            revision: Revision::from_raw(revision),
        })
    }

    fn delete(k: &str, revision: i64) -> Event {
        Event::Delete {
            key: key(k),
            revision: Revision::from_raw(revision),
        }
    }

    #[test]
    fn events_already_in_the_load_or_older_than_held_are_ignored() {
        let mut items = BTreeMap::new();
        let floors = vec![(key("/r/"), Some(Revision::from_raw(10)))];
        // The load read /r/a at revision 10: a put at 5 and a delete at 7 are older.
        assert!(!apply_event(
            &mut items,
            &floors,
            put("/r/a", "old", 5),
            None
        ));
        assert!(!apply_event(&mut items, &floors, delete("/r/a", 7), None));
        assert!(apply_event(
            &mut items,
            &floors,
            put("/r/a", "new", 11),
            None
        ));
        assert!(!apply_event(
            &mut items,
            &floors,
            put("/r/a", "stale", 11),
            None
        ));
        assert!(!apply_event(
            &mut items,
            &floors,
            put("/x/a", "outside", 12),
            None
        ));
        assert_eq!(&*items["/r/a"].value, b"new");
        assert!(apply_event(&mut items, &floors, delete("/r/a", 13), None));
        assert!(items.is_empty());
        assert!(!apply_event(&mut items, &floors, delete("/r/a", 14), None));
    }

    #[test]
    fn nested_prefixes_are_merged() {
        let merged = normalise(vec![key("/a/b/"), key("/c/"), key("/a/"), key("/c/")]);
        assert_eq!(merged, vec![key("/a/"), key("/c/")]);
        assert_eq!(normalise(Vec::new()), vec![Key::root()]);
    }

    #[test]
    fn retry_delay_grows_and_is_capped() {
        assert!(retry_delay(1) <= FIRST_RETRY_DELAY);
        assert!(retry_delay(40) <= MAX_RETRY_DELAY);
        assert!(retry_delay(40) >= MAX_RETRY_DELAY / 2);
    }
}
