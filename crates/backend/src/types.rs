//! The values that cross the [`Backend`](crate::Backend) interface.

use crate::error::BackendError;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A key: a UTF-8 path that starts with `/`, such as `/users/alice`, without NUL bytes.
///
/// Keys are ordered bytewise, which is what prefix ranges rely on.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    /// Validates and wraps a key.
    pub fn new(key: impl Into<String>) -> Result<Key, BackendError> {
        let key = key.into();
        if !key.starts_with('/') {
            return Err(BackendError::InvalidArgument(format!(
                "key {key:?} must start with '/'"
            )));
        }
        if key.contains('\0') {
            return Err(BackendError::InvalidArgument(format!(
                "key {key:?} contains a NUL byte"
            )));
        }
        Ok(Key(key))
    }

    /// `/`, the parent of every key.
    pub fn root() -> Key {
        Key("/".to_string())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this key lies under `prefix` (plain string prefix).
    pub fn starts_with(&self, prefix: &Key) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl TryFrom<&str> for Key {
    type Error = BackendError;
    fn try_from(key: &str) -> Result<Key, BackendError> {
        Key::new(key)
    }
}

/// A revision stamped on every write. Strictly increasing across the whole backend,
/// so "newer" is a plain comparison. Opaque otherwise: do not do arithmetic on it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Revision(pub(crate) i64);

impl Revision {
    /// The raw number, for display and for storing alongside a resource.
    pub fn get(self) -> i64 {
        self.0
    }

    /// Rebuilds a revision from [`Revision::get`]'s output.
    pub fn from_raw(raw: i64) -> Revision {
        Revision(raw)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An item as stored.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Item {
    pub key: Key,
    pub value: Vec<u8>,
    /// When the item disappears on its own; `None` for "never".
    pub expires: Option<SystemTime>,
    pub revision: Revision,
}

/// An item to write: the backend assigns its revision.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NewItem {
    pub key: Key,
    pub value: Vec<u8>,
    pub expires: Option<SystemTime>,
}

impl NewItem {
    /// An item that never expires.
    pub fn new(key: Key, value: impl Into<Vec<u8>>) -> NewItem {
        NewItem {
            key,
            value: value.into(),
            expires: None,
        }
    }

    /// The same item, expiring at `expires`.
    pub fn expiring(mut self, expires: SystemTime) -> NewItem {
        self.expires = Some(expires);
        self
    }

    /// The same item, expiring `ttl` from now.
    pub fn with_ttl(self, ttl: Duration) -> NewItem {
        // An absurdly long TTL means "in about a century" rather than an overflow.
        let now = SystemTime::now();
        let century = Duration::from_secs(100 * 365 * 24 * 3600);
        self.expiring(now.checked_add(ttl.min(century)).unwrap_or(now))
    }
}

/// A set of keys to read or delete.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum KeyRange {
    /// Every key starting with this prefix.
    Prefix(Key),
    /// Keys `k` with `start <= k < end`.
    Between { start: Key, end: Key },
}

impl KeyRange {
    /// Every key under `prefix`.
    pub fn prefix(prefix: &str) -> Result<KeyRange, BackendError> {
        Ok(KeyRange::Prefix(Key::new(prefix)?))
    }

    pub fn contains(&self, key: &Key) -> bool {
        match self {
            KeyRange::Prefix(prefix) => key.starts_with(prefix),
            KeyRange::Between { start, end } => start <= key && key < end,
        }
    }
}

/// A precondition of [`Backend::atomic_write`](crate::Backend::atomic_write).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Condition {
    /// The key exists (and has not expired).
    Exists(Key),
    /// The key does not exist (or has expired).
    NotExists(Key),
    /// The key exists at exactly this revision.
    Revision(Key, Revision),
}

impl Condition {
    pub fn key(&self) -> &Key {
        match self {
            Condition::Exists(key) | Condition::NotExists(key) | Condition::Revision(key, _) => key,
        }
    }

    /// Whether the condition holds, given the key's current live item (if any).
    pub(crate) fn holds(&self, current: Option<Revision>) -> bool {
        match self {
            Condition::Exists(_) => current.is_some(),
            Condition::NotExists(_) => current.is_none(),
            Condition::Revision(_, expected) => current == Some(*expected),
        }
    }
}

/// A write inside [`Backend::atomic_write`](crate::Backend::atomic_write).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Action {
    Put(NewItem),
    /// Deletes the key if it exists; a missing key is not an error here.
    Delete(Key),
}

/// What a [`Watcher`](crate::Watcher) yields.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// The watch is established: every change from now on will be delivered.
    /// Read the current state after this to start a cache.
    Ready,
    /// An item was written.
    Put(Item),
    /// An item was deleted, or expired.
    Delete { key: Key, revision: Revision },
}

impl Event {
    /// The key this event is about (`None` for [`Event::Ready`]).
    pub fn key(&self) -> Option<&Key> {
        match self {
            Event::Ready => None,
            Event::Put(item) => Some(&item.key),
            Event::Delete { key, .. } => Some(key),
        }
    }
}

/// Milliseconds since the Unix epoch, the form expiries are stored in.
pub(crate) fn to_unix_millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        // Before 1970: already expired for every purpose.
        Err(_) => 0,
    }
}

pub(crate) fn from_unix_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// Whether an item with this expiry is gone at `now`.
pub(crate) fn is_expired(expires: Option<SystemTime>, now: SystemTime) -> bool {
    matches!(expires, Some(at) if at <= now)
}
