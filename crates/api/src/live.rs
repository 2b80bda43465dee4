//! Live connections a service holds (a proxy's SSH relays, a node's SSH connections), so
//! that a lock created now ends the matching ones now, not when their certificates expire
//! (DESIGN.md "Identity": locks end live sessions).
//!
//! A connection registers what locks may name about it (`T`) and keeps the returned
//! [`LiveGuard`] for as long as it lives; [`LiveSet::end_matching`] tells the matching
//! ones why they must end, through their [`Ended`] future.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The live connections of one kind, with what locks may name about each.
#[derive(Debug)]
pub struct LiveSet<T> {
    next_id: AtomicU64,
    entries: Mutex<HashMap<u64, Entry<T>>>,
}

#[derive(Debug)]
struct Entry<T> {
    info: T,
    end: watch::Sender<Option<String>>,
}

impl<T> Default for LiveSet<T> {
    fn default() -> Self {
        LiveSet {
            next_id: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

/// Keeps a connection in its [`LiveSet`]; dropping it takes the connection out.
#[derive(Debug)]
pub struct LiveGuard<T> {
    set: Arc<LiveSet<T>>,
    id: u64,
}

impl<T> Drop for LiveGuard<T> {
    fn drop(&mut self) {
        self.set.entries().remove(&self.id);
    }
}

/// Resolves with the reason when the connection must end, or `None` when it left the
/// set on its own.
#[derive(Debug)]
pub struct Ended(watch::Receiver<Option<String>>);

impl Ended {
    pub async fn wait(mut self) -> Option<String> {
        loop {
            if let Some(reason) = self.0.borrow_and_update().clone() {
                return Some(reason);
            }
            if self.0.changed().await.is_err() {
                return None;
            }
        }
    }
}

impl<T> LiveSet<T> {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry<T>>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a live connection described by `info`.
    pub fn register(self: &Arc<Self>, info: T) -> (LiveGuard<T>, Ended) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (end, ended) = watch::channel(None);
        self.entries().insert(id, Entry { info, end });
        (
            LiveGuard {
                set: self.clone(),
                id,
            },
            Ended(ended),
        )
    }

    /// Ends every connection for which `why` gives a reason; returns how many.
    pub fn end_matching(&self, why: impl Fn(&T) -> Option<String>) -> usize {
        let entries = self.entries();
        let mut ended = 0;
        for entry in entries.values() {
            if let Some(reason) = why(&entry.info) {
                entry.end.send_replace(Some(reason));
                ended += 1;
            }
        }
        ended
    }

    /// What each live entry registered, in no particular order.
    pub fn infos(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.entries()
            .values()
            .map(|entry| entry.info.clone())
            .collect()
    }

    /// How many connections are live.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn matching_connections_end_with_the_reason_and_others_do_not() {
        let set: Arc<LiveSet<&'static str>> = Arc::default();
        let (alice_guard, alice) = set.register("alice");
        let (bob_guard, bob) = set.register("bob");
        assert_eq!(set.len(), 2);
        let ended = set.end_matching(|user| (*user == "alice").then(|| "locked".to_string()));
        assert_eq!(ended, 1);
        assert_eq!(alice.wait().await.as_deref(), Some("locked"));
        drop(bob_guard);
        assert_eq!(bob.wait().await, None, "left on its own");
        drop(alice_guard);
        assert!(set.is_empty());
    }
}
