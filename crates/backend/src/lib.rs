//! Jumpgate's cluster-state store (DESIGN.md, "Data").
//!
//! Users, roles, tokens, nodes and certificate authorities live in a [`Backend`]: a
//! key-value store with revisions, optional expiry (TTL), conditional writes and a
//! prefix watch. The embedded default is [`SqliteBackend`] (one file in `data_dir`);
//! highly available clusters use [`EtcdBackend`], [`PostgresBackend`] or [`DynamoBackend`];
//! tests use [`MemoryBackend`].
//!
//! Every implementation passes the same conformance suite (`conformance`, behind the
//! `test-support` feature), so the services above never need to know which one runs.
//!
//! Semantics shared by all implementations:
//! - A **revision** is a cluster-wide, strictly increasing number stamped on every write.
//!   Conditional writes compare it ("update only if nobody wrote since I read").
//! - An item whose expiry has passed is gone: reads never return it, and watchers get a
//!   delete event for it (possibly a little after the expiry instant).
//! - A [`Watcher`] first yields [`Event::Ready`], then every put and delete under its
//!   prefixes in revision order. If it cannot keep up (or history was compacted) it ends
//!   with [`WatchError::FellBehind`]: the subscriber must re-read and watch again.
#![forbid(unsafe_code)]

mod dynamodb;
mod error;
mod etcd;
mod memory;
pub mod metered;
pub mod pg;
mod postgres;
mod sqlite;
mod tasks;
mod types;
mod watch;

#[cfg(feature = "test-support")]
pub mod conformance;

pub use dynamodb::{DynamoBackend, DynamoBilling, DynamoCredentials, DynamoOptions};
pub use error::{BackendError, Result};
pub use etcd::{EtcdBackend, EtcdOptions, EtcdTls};
pub use memory::MemoryBackend;
pub use metered::MeteredBackend;
pub use postgres::{PostgresBackend, PostgresOptions};
pub use sqlite::{SqliteBackend, SqliteOptions, backup_sqlite, restore_sqlite};
pub use types::{Action, Condition, Event, Item, Key, KeyRange, NewItem, Revision};
pub use watch::{WatchError, Watcher};

use async_trait::async_trait;
use std::time::SystemTime;

/// The cluster-state store. See the crate docs for the shared semantics.
///
/// Methods that "fail if" something return the matching [`BackendError`] variant
/// (`NotFound`, `AlreadyExists`, `CompareFailed`, `ConditionFailed`) and change nothing.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Which implementation this is ("memory", "sqlite", "etcd", "postgresql", "dynamodb"), for logs
    /// and metrics.
    fn kind(&self) -> &'static str;

    /// Reads one item; `NotFound` if it is missing or expired.
    async fn get(&self, key: &Key) -> Result<Item>;

    /// Writes an item whether or not it exists.
    async fn put(&self, item: NewItem) -> Result<Revision>;

    /// Writes an item only if it does not exist yet (`AlreadyExists` otherwise).
    async fn create(&self, item: NewItem) -> Result<Revision>;

    /// Writes an item only if it exists already (`NotFound` otherwise).
    async fn update(&self, item: NewItem) -> Result<Revision>;

    /// Replaces the item only if its current value equals `expected`
    /// (`CompareFailed` if it differs, `NotFound` if it is missing).
    async fn compare_and_swap(&self, expected: &[u8], item: NewItem) -> Result<Revision>;

    /// Replaces the item only if its current revision is `expected`
    /// (`CompareFailed` if it moved on, `NotFound` if it is missing).
    async fn conditional_update(&self, expected: Revision, item: NewItem) -> Result<Revision>;

    /// Deletes one item (`NotFound` if it is missing).
    async fn delete(&self, key: &Key) -> Result<()>;

    /// Deletes the item only if its current revision is `expected`.
    async fn conditional_delete(&self, key: &Key, expected: Revision) -> Result<()>;

    /// Items in `range`, in key order, at most `limit` of them (`None`: all).
    async fn get_range(&self, range: &KeyRange, limit: Option<usize>) -> Result<Vec<Item>>;

    /// Deletes every item in `range`; returns how many were deleted.
    async fn delete_range(&self, range: &KeyRange) -> Result<u64>;

    /// Moves an existing item's expiry to `expires`, keeping its value (`NotFound` if
    /// it is missing or already expired). Watchers see it as a put.
    async fn keep_alive(&self, key: &Key, expires: SystemTime) -> Result<Revision>;

    /// Applies all `actions` in one atomic step if every condition holds; otherwise
    /// changes nothing and returns `ConditionFailed` naming the first failed condition.
    async fn atomic_write(
        &self,
        conditions: Vec<Condition>,
        actions: Vec<Action>,
    ) -> Result<Revision>;

    /// Subscribes to changes under `prefixes` (an empty list means every key).
    async fn watch(&self, prefixes: Vec<Key>) -> Result<Watcher>;

    /// Flushes and releases the store now, rather than whenever the last handle and
    /// background task let go: call it before the files may be touched (restore) or at
    /// shutdown. Later calls on any handle fail with `Unavailable`.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
