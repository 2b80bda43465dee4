//! An in-memory backend for tests and for throwaway `storage: {type: memory}` clusters.

use crate::Backend;
use crate::error::{BackendError, Result};
use crate::types::{Action, Condition, Event, Item, Key, KeyRange, NewItem, Revision, is_expired};
use crate::watch::{EventBus, Watcher};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// How often expired items are swept out (and announced to watchers).
const SWEEP_INTERVAL: Duration = Duration::from_millis(200);

/// A [`Backend`] kept in process memory. Cheap to clone; clones share the data.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    bus: EventBus,
}

#[derive(Debug, Default)]
struct State {
    items: BTreeMap<Key, Stored>,
    revision: i64,
}

#[derive(Debug, Clone)]
struct Stored {
    value: Vec<u8>,
    expires: Option<SystemTime>,
    revision: Revision,
}

impl State {
    fn live(&self, key: &Key, now: SystemTime) -> Option<&Stored> {
        self.items
            .get(key)
            .filter(|stored| !is_expired(stored.expires, now))
    }

    fn next_revision(&mut self) -> Revision {
        self.revision += 1;
        Revision(self.revision)
    }

    fn write(&mut self, bus: &EventBus, item: NewItem) -> Revision {
        let revision = self.next_revision();
        self.bus_put(bus, item, revision);
        revision
    }

    fn remove(&mut self, bus: &EventBus, key: &Key) -> Revision {
        let revision = self.next_revision();
        self.items.remove(key);
        bus.publish(Event::Delete {
            key: key.clone(),
            revision,
        });
        revision
    }
}

impl MemoryBackend {
    /// A new, empty backend. Must be called inside a Tokio runtime: a background task
    /// sweeps expired items until the last clone is dropped.
    pub fn new() -> MemoryBackend {
        MemoryBackend::with_watch_buffer(4096)
    }

    /// Like [`MemoryBackend::new`], with watchers that may lag `watch_buffer` events
    /// behind before they are told to re-sync.
    pub fn with_watch_buffer(watch_buffer: usize) -> MemoryBackend {
        let backend = MemoryBackend {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                bus: EventBus::new(watch_buffer),
            }),
        };
        let weak = Arc::downgrade(&backend.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let mut state = lock(&inner.state);
                let now = SystemTime::now();
                let expired: Vec<Key> = state
                    .items
                    .iter()
                    .filter(|(_, stored)| is_expired(stored.expires, now))
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in expired {
                    state.remove(&inner.bus, &key);
                }
            }
        });
        backend
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }
}

/// Locks the state, recovering from a poisoned lock: every mutation below completes
/// before anything can panic, so the data stays consistent.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &Key) -> Result<Item> {
        let state = self.state();
        match state.live(key, SystemTime::now()) {
            Some(stored) => Ok(Item {
                key: key.clone(),
                value: stored.value.clone(),
                expires: stored.expires,
                revision: stored.revision,
            }),
            None => Err(BackendError::NotFound { key: key.clone() }),
        }
    }

    async fn put(&self, item: NewItem) -> Result<Revision> {
        let mut state = self.state();
        Ok(state.write(&self.inner.bus, item))
    }

    async fn create(&self, item: NewItem) -> Result<Revision> {
        let mut state = self.state();
        if state.live(&item.key, SystemTime::now()).is_some() {
            return Err(BackendError::AlreadyExists { key: item.key });
        }
        Ok(state.write(&self.inner.bus, item))
    }

    async fn update(&self, item: NewItem) -> Result<Revision> {
        let mut state = self.state();
        if state.live(&item.key, SystemTime::now()).is_none() {
            return Err(BackendError::NotFound { key: item.key });
        }
        Ok(state.write(&self.inner.bus, item))
    }

    async fn compare_and_swap(&self, expected: &[u8], item: NewItem) -> Result<Revision> {
        let mut state = self.state();
        match state.live(&item.key, SystemTime::now()) {
            None => Err(BackendError::NotFound { key: item.key }),
            Some(stored) if stored.value != expected => {
                Err(BackendError::CompareFailed { key: item.key })
            }
            Some(_) => Ok(state.write(&self.inner.bus, item)),
        }
    }

    async fn conditional_update(&self, expected: Revision, item: NewItem) -> Result<Revision> {
        let mut state = self.state();
        match state.live(&item.key, SystemTime::now()) {
            None => Err(BackendError::NotFound { key: item.key }),
            Some(stored) if stored.revision != expected => {
                Err(BackendError::CompareFailed { key: item.key })
            }
            Some(_) => Ok(state.write(&self.inner.bus, item)),
        }
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let mut state = self.state();
        if state.live(key, SystemTime::now()).is_none() {
            return Err(BackendError::NotFound { key: key.clone() });
        }
        state.remove(&self.inner.bus, key);
        Ok(())
    }

    async fn conditional_delete(&self, key: &Key, expected: Revision) -> Result<()> {
        let mut state = self.state();
        match state.live(key, SystemTime::now()) {
            None => Err(BackendError::NotFound { key: key.clone() }),
            Some(stored) if stored.revision != expected => {
                Err(BackendError::CompareFailed { key: key.clone() })
            }
            Some(_) => {
                state.remove(&self.inner.bus, key);
                Ok(())
            }
        }
    }

    async fn get_range(&self, range: &KeyRange, limit: Option<usize>) -> Result<Vec<Item>> {
        let state = self.state();
        let now = SystemTime::now();
        Ok(state
            .items
            .iter()
            .filter(|(key, stored)| range.contains(key) && !is_expired(stored.expires, now))
            .take(limit.unwrap_or(usize::MAX))
            .map(|(key, stored)| Item {
                key: key.clone(),
                value: stored.value.clone(),
                expires: stored.expires,
                revision: stored.revision,
            })
            .collect())
    }

    async fn delete_range(&self, range: &KeyRange) -> Result<u64> {
        let mut state = self.state();
        let now = SystemTime::now();
        let doomed: Vec<Key> = state
            .items
            .iter()
            .filter(|(key, stored)| range.contains(key) && !is_expired(stored.expires, now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &doomed {
            state.remove(&self.inner.bus, key);
        }
        Ok(doomed.len() as u64)
    }

    async fn keep_alive(&self, key: &Key, expires: SystemTime) -> Result<Revision> {
        let mut state = self.state();
        let Some(stored) = state.live(key, SystemTime::now()) else {
            return Err(BackendError::NotFound { key: key.clone() });
        };
        let item = NewItem {
            key: key.clone(),
            value: stored.value.clone(),
            expires: Some(expires),
        };
        Ok(state.write(&self.inner.bus, item))
    }

    async fn atomic_write(
        &self,
        conditions: Vec<Condition>,
        actions: Vec<Action>,
    ) -> Result<Revision> {
        let mut state = self.state();
        let now = SystemTime::now();
        for (index, condition) in conditions.iter().enumerate() {
            let current = state.live(condition.key(), now).map(|s| s.revision);
            if !condition.holds(current) {
                return Err(BackendError::ConditionFailed {
                    index,
                    condition: format!("{condition:?}"),
                });
            }
        }
        // One revision for the whole write, like an etcd transaction.
        let revision = state.next_revision();
        for action in actions {
            match action {
                Action::Put(item) => {
                    state.bus_put(&self.inner.bus, item, revision);
                }
                Action::Delete(key) => {
                    if state.items.remove(&key).is_some() {
                        self.inner.bus.publish(Event::Delete { key, revision });
                    }
                }
            }
        }
        Ok(revision)
    }

    async fn watch(&self, prefixes: Vec<Key>) -> Result<Watcher> {
        Ok(self.inner.bus.subscribe(prefixes))
    }
}

impl State {
    /// A put that reuses an already allocated revision (atomic writes).
    fn bus_put(&mut self, bus: &EventBus, item: NewItem, revision: Revision) {
        bus.publish(Event::Put(Item {
            key: item.key.clone(),
            value: item.value.clone(),
            expires: item.expires,
            revision,
        }));
        self.items.insert(
            item.key,
            Stored {
                value: item.value,
                expires: item.expires,
                revision,
            },
        );
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend::new()
    }
}
