//! Watchers: the change feed every cache in Jumpgate is built on.
//!
//! In-process backends (memory, SQLite) publish each committed change on an
//! [`EventBus`] while still holding their write lock, so the bus order is the revision
//! order. A slow subscriber that lets the bus overrun its buffer is told
//! [`WatchError::FellBehind`] instead of silently missing events. Remote backends
//! (etcd) feed a watcher from a background task through a channel.

use crate::types::{Event, Key};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{broadcast, mpsc};

/// Why a watch ended. After an error the watcher yields nothing more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// Events were lost (the subscriber was too slow, or the store compacted the history
    /// the watch needed). Re-read the state and start a new watch.
    #[error("watcher fell behind and missed events; re-read the state and watch again")]
    FellBehind,
    /// The backend was closed or failed for good.
    #[error("watch closed: {0}")]
    Closed(String),
}

/// A subscription to changes under some key prefixes. See the crate docs.
#[derive(Debug)]
pub struct Watcher {
    source: Source,
    finished: bool,
}

#[derive(Debug)]
enum Source {
    Bus {
        rx: broadcast::Receiver<Event>,
        prefixes: Vec<Key>,
        ready_sent: bool,
    },
    Channel {
        rx: mpsc::Receiver<Result<Event, WatchError>>,
        /// Set by the feeder when `rx` was full and it had to give up: once the
        /// buffered events are drained, the subscriber is told it fell behind.
        overflowed: Arc<AtomicBool>,
        /// The task feeding `rx`; stopped when the watcher is dropped.
        _feeder: AbortOnDrop,
    },
}

impl Watcher {
    pub(crate) fn from_channel(
        rx: mpsc::Receiver<Result<Event, WatchError>>,
        overflowed: Arc<AtomicBool>,
        feeder: tokio::task::JoinHandle<()>,
    ) -> Watcher {
        Watcher {
            source: Source::Channel {
                rx,
                overflowed,
                _feeder: AbortOnDrop(feeder),
            },
            finished: false,
        }
    }

    /// The next event; `None` once the watch has ended (after an error, or when the
    /// backend was dropped).
    pub async fn next(&mut self) -> Option<Result<Event, WatchError>> {
        if self.finished {
            return None;
        }
        let next = match &mut self.source {
            Source::Bus {
                rx,
                prefixes,
                ready_sent,
            } => {
                if !*ready_sent {
                    *ready_sent = true;
                    return Some(Ok(Event::Ready));
                }
                loop {
                    match rx.recv().await {
                        Ok(event) if matches_prefixes(&event, prefixes) => break Some(Ok(event)),
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            break Some(Err(WatchError::FellBehind));
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            break Some(Err(WatchError::Closed("backend closed".to_string())));
                        }
                    }
                }
            }
            Source::Channel { rx, overflowed, .. } => match rx.recv().await {
                None if overflowed.load(Ordering::Acquire) => Some(Err(WatchError::FellBehind)),
                next => next,
            },
        };
        if !matches!(next, Some(Ok(_))) {
            self.finished = true;
        }
        next
    }
}

fn matches_prefixes(event: &Event, prefixes: &[Key]) -> bool {
    match event.key() {
        None => true,
        Some(key) => prefixes.is_empty() || prefixes.iter().any(|p| key.starts_with(p)),
    }
}

/// The in-process change feed of the memory and SQLite backends.
#[derive(Debug, Clone)]
pub(crate) struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    pub(crate) fn new(capacity: usize) -> EventBus {
        let (tx, _) = broadcast::channel(capacity.max(1));
        EventBus { tx }
    }

    /// Publishes a committed change. Call with the backend's write lock held.
    pub(crate) fn publish(&self, event: Event) {
        // An error only means nobody is subscribed right now.
        let _ = self.tx.send(event);
    }

    pub(crate) fn subscribe(&self, prefixes: Vec<Key>) -> Watcher {
        Watcher {
            source: Source::Bus {
                rx: self.tx.subscribe(),
                prefixes,
                ready_sent: false,
            },
            finished: false,
        }
    }
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
