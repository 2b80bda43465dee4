//! The embedded default backend: one SQLite file in `data_dir`.
//!
//! Decisions:
//! - **Durability**: WAL journal with `synchronous=FULL`, so a write that returned is on
//!   disk even if the machine loses power right after (the seed's "a changed password
//!   reverts" must not happen because of us).
//! - **Revisions**: one counter in the `meta` table, bumped inside each write transaction,
//!   so revisions survive restarts and stay strictly increasing.
//! - **Watch is in-process**: every write goes through this process's single connection,
//!   and the change is published after commit while the connection lock is still held,
//!   so watchers see revision order. A second process writing the same file would not
//!   be seen by this process's watchers; the daemon prevents that with a lock on its
//!   `data_dir`. Clusters with several auth servers use etcd instead.
//! - **Expiry**: reads filter out expired rows; a background sweeper deletes them and
//!   announces each as a delete event.
//! - **Backup** uses SQLite's online backup API from a separate read connection: one
//!   consistent snapshot, taken while the daemon keeps writing.

use crate::Backend;
use crate::error::{BackendError, Result};
use crate::types::{
    Action, Condition, Event, Item, Key, KeyRange, NewItem, Revision, from_unix_millis,
    to_unix_millis,
};
use crate::watch::{EventBus, Watcher};
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

const BACKEND: &str = "sqlite";
/// Bumped when the table layout changes; older binaries refuse newer files.
const SCHEMA_VERSION: i64 = 1;

/// Where and how to open the SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The database file, usually `DATA_DIR/backend/jumpgate.db`.
    pub path: PathBuf,
    /// How often expired items are swept out.
    pub sweep_interval: Duration,
    /// How many events a watcher may lag behind before it is told to re-sync.
    pub watch_buffer: usize,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> SqliteOptions {
        SqliteOptions {
            path: path.into(),
            sweep_interval: Duration::from_millis(500),
            watch_buffer: 4096,
        }
    }
}

/// A [`Backend`] in one SQLite file. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `None` once [`Backend::close`] ran: later calls fail instead of reopening.
    conn: Mutex<Option<Connection>>,
    bus: EventBus,
    path: PathBuf,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `options.path`. Must be called inside
    /// a Tokio runtime: a background task sweeps expired items.
    pub async fn open(options: SqliteOptions) -> Result<SqliteBackend> {
        let path = options.path.clone();
        let conn = tokio::task::spawn_blocking(move || open_connection(&path))
            .await
            .map_err(join_error)??;
        let backend = SqliteBackend {
            inner: Arc::new(Inner {
                conn: Mutex::new(Some(conn)),
                bus: EventBus::new(options.watch_buffer),
                path: options.path,
            }),
        };
        spawn_sweeper(Arc::downgrade(&backend.inner), options.sweep_interval);
        Ok(backend)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Writes a consistent snapshot of the live database to `dest` (see [`backup_sqlite`]).
    pub async fn backup_to(&self, dest: &Path) -> Result<()> {
        let source = self.inner.path.clone();
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || backup_sqlite(&source, &dest))
            .await
            .map_err(join_error)?
    }

    /// Runs `op` in a write transaction on the blocking pool; publishes the events it
    /// produced after the commit, still under the connection lock (revision order).
    async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut guard = lock(&inner.conn);
            let conn = guard.as_mut().ok_or_else(closed)?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_error)?;
            let mut write = WriteTx {
                tx,
                events: Vec::new(),
                now: SystemTime::now(),
                revision: None,
            };
            let result = op(&mut write)?;
            let WriteTx { tx, events, .. } = write;
            tx.commit().map_err(sql_error)?;
            for event in events {
                inner.bus.publish(event);
            }
            Ok(result)
        })
        .await
        .map_err(join_error)?
    }

    async fn read<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, SystemTime) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let guard = lock(&inner.conn);
            let conn = guard.as_ref().ok_or_else(closed)?;
            op(conn, SystemTime::now())
        })
        .await
        .map_err(join_error)?
    }
}

/// A write transaction plus the events to publish once it commits.
struct WriteTx<'conn> {
    tx: rusqlite::Transaction<'conn>,
    events: Vec<Event>,
    now: SystemTime,
    /// Set when the transaction shares one revision among its writes (atomic writes).
    revision: Option<Revision>,
}

impl WriteTx<'_> {
    fn next_revision(&self) -> Result<Revision> {
        let raw: i64 = self
            .tx
            .query_row(
                "UPDATE meta SET value = value + 1 WHERE name = 'revision' RETURNING value",
                [],
                |row| row.get(0),
            )
            .map_err(sql_error)?;
        Ok(Revision(raw))
    }

    fn revision_for_write(&self) -> Result<Revision> {
        match self.revision {
            Some(revision) => Ok(revision),
            None => self.next_revision(),
        }
    }

    /// The key's current item, or `None` if it is missing or expired.
    fn live(&self, key: &Key) -> Result<Option<Item>> {
        live_item(&self.tx, key, self.now)
    }

    fn put(&mut self, item: NewItem) -> Result<Revision> {
        let revision = self.revision_for_write()?;
        self.tx
            .execute(
                "INSERT INTO items (key, value, expires, revision) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                     expires = excluded.expires, revision = excluded.revision",
                params![
                    item.key.as_str().as_bytes(),
                    item.value,
                    item.expires.map(to_unix_millis),
                    revision.0
                ],
            )
            .map_err(sql_error)?;
        self.events.push(Event::Put(Item {
            key: item.key,
            value: item.value,
            expires: item.expires,
            revision,
        }));
        Ok(revision)
    }

    /// Deletes the row (live or expired); announces it only if it existed.
    fn remove(&mut self, key: &Key) -> Result<bool> {
        let removed = self
            .tx
            .execute(
                "DELETE FROM items WHERE key = ?1",
                params![key.as_str().as_bytes()],
            )
            .map_err(sql_error)?;
        if removed == 0 {
            return Ok(false);
        }
        let revision = self.revision_for_write()?;
        self.events.push(Event::Delete {
            key: key.clone(),
            revision,
        });
        Ok(true)
    }
}

fn closed() -> BackendError {
    BackendError::Unavailable {
        backend: BACKEND,
        detail: "the database was closed".to_string(),
    }
}

fn lock(conn: &Mutex<Option<Connection>>) -> MutexGuard<'_, Option<Connection>> {
    // A panic while holding the lock would have rolled back its transaction on drop,
    // so the connection is still usable.
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn open_connection(path: &Path) -> Result<Connection> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        std::fs::create_dir_all(parent).map_err(|err| BackendError::Unavailable {
            backend: BACKEND,
            detail: format!("cannot create directory {}: {err}", parent.display()),
        })?;
        restrict_permissions(parent, 0o700);
    }
    let conn = Connection::open(path).map_err(|err| BackendError::Unavailable {
        backend: BACKEND,
        detail: format!("cannot open {}: {err}", path.display()),
    })?;
    restrict_permissions(path, 0o600);
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql_error)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|err| corrupt_or(path, err))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql_error)?;
    create_schema(&conn, path)?;
    Ok(conn)
}

/// The database holds CA private keys: only its owner may read it.
fn restrict_permissions(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(err) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(path = %path.display(), %err, mode = format!("{mode:o}"), "cannot restrict permissions");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

fn create_schema(conn: &Connection, path: &Path) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
         INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0);
         CREATE TABLE IF NOT EXISTS items (
             key BLOB PRIMARY KEY,
             value BLOB NOT NULL,
             expires INTEGER,
             revision INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS items_by_expiry ON items (expires) WHERE expires IS NOT NULL;",
    )
    .map_err(|err| corrupt_or(path, err))?;
    let version: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql_error)?;
    match version {
        None => {
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('schema_version', ?1)",
                params![SCHEMA_VERSION],
            )
            .map_err(sql_error)?;
        }
        Some(version) if version > SCHEMA_VERSION => {
            return Err(BackendError::Corrupt {
                backend: BACKEND,
                location: path.display().to_string(),
                detail: format!(
                    "schema version {version} was written by a newer Jumpgate (this one knows \
                     {SCHEMA_VERSION}); upgrade jumpgate or restore an older backup"
                ),
            });
        }
        Some(_) => {}
    }
    Ok(())
}

/// Checks that `path` is a Jumpgate state database that this version can read.
fn verify_database(path: &Path) -> Result<()> {
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|err| {
            BackendError::InvalidArgument(format!("cannot open {}: {err}", path.display()))
        })?;
    let not_ours = |detail: String| BackendError::Corrupt {
        backend: BACKEND,
        location: path.display().to_string(),
        detail,
    };
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|err| not_ours(format!("not a readable SQLite database: {err}")))?;
    if check != "ok" {
        return Err(not_ours(format!("integrity check failed: {check}")));
    }
    let version: i64 = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .map_err(|err| not_ours(format!("not a Jumpgate state database ({err})")))?;
    if version > SCHEMA_VERSION {
        return Err(not_ours(format!(
            "schema version {version} is newer than this Jumpgate supports ({SCHEMA_VERSION})"
        )));
    }
    conn.query_row("SELECT count(*) FROM items", [], |row| row.get::<_, i64>(0))
        .map_err(|err| not_ours(format!("not a Jumpgate state database ({err})")))?;
    Ok(())
}

/// Writes a consistent snapshot of the database at `source` to `dest`, safely while
/// another process keeps writing to `source`.
///
/// The snapshot is built in a fresh private (0600) temporary file next to `dest`, checked,
/// and only then renamed over `dest`: a failed backup never destroys an earlier one, and
/// nobody can read the CA keys through a planted file or symlink meanwhile.
pub fn backup_sqlite(source: &Path, dest: &Path) -> Result<()> {
    if !source.exists() {
        return Err(BackendError::InvalidArgument(format!(
            "no state database at {}; is the data directory right?",
            source.display()
        )));
    }
    if same_file(source, dest) {
        return Err(BackendError::InvalidArgument(format!(
            "{} is the live database itself; write the backup somewhere else",
            dest.display()
        )));
    }
    let src =
        Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|err| {
            BackendError::Unavailable {
                backend: BACKEND,
                detail: format!("cannot open {}: {err}", source.display()),
            }
        })?;
    src.busy_timeout(Duration::from_secs(10))
        .map_err(sql_error)?;
    let dir = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Created with O_EXCL and mode 0600 by tempfile.
    let staging = tempfile::Builder::new()
        .prefix(".jumpgate-backup-")
        .suffix(".partial")
        .tempfile_in(&dir)
        .map_err(|err| {
            BackendError::InvalidArgument(format!(
                "cannot create a file in {}: {err}",
                dir.display()
            ))
        })?;
    {
        let mut out = Connection::open(staging.path()).map_err(|err| BackendError::Internal {
            backend: BACKEND,
            detail: format!("cannot open {}: {err}", staging.path().display()),
        })?;
        let backup = rusqlite::backup::Backup::new(&src, &mut out).map_err(sql_error)?;
        // All pages in one step (-1): a single read transaction, hence one consistent
        // snapshot, without blocking the daemon's writers (WAL).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match backup.step(-1).map_err(sql_error)? {
                rusqlite::backup::StepResult::Done => break,
                _ if std::time::Instant::now() > deadline => {
                    return Err(BackendError::Unavailable {
                        backend: BACKEND,
                        detail: format!("{} stayed locked for 30s during backup", source.display()),
                    });
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        drop(backup);
        // A backup is one self-contained file: no -wal/-shm companions to forget.
        out.pragma_update(None, "journal_mode", "DELETE")
            .map_err(sql_error)?;
    }
    verify_database(staging.path())?;
    staging
        .persist(dest)
        .map_err(|err| BackendError::Internal {
            backend: BACKEND,
            detail: format!(
                "cannot move the backup to {}: {}",
                dest.display(),
                err.error
            ),
        })?;
    Ok(())
}

/// Whether two paths name the same file (a missing `b` is never the same).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Replaces the database at `target` with the backup at `backup`, after checking that
/// the backup is a sound Jumpgate database. The caller must make sure no daemon is
/// using `target`.
///
/// The current files (`target` and its `-wal`/`-shm`) are first moved aside, byte for
/// byte, to `target.before-restore-<unix seconds>[-N]` (a name never used before), and
/// that path is returned: a restore never loses data by itself, even when `target` is
/// damaged and cannot be read.
pub fn restore_sqlite(backup: &Path, target: &Path) -> Result<Option<PathBuf>> {
    verify_database(backup)?;
    if same_file(backup, target) {
        return Err(BackendError::InvalidArgument(format!(
            "{} is the live database itself",
            backup.display()
        )));
    }
    let saved = if target.exists() {
        Some(move_aside(target)?)
    } else {
        None
    };
    let mut conn = open_connection(target)?;
    // The backup API in reverse: fills the fresh database inside SQLite's own locking,
    // rather than copying files under its feet.
    conn.restore(
        rusqlite::MAIN_DB,
        backup,
        None::<fn(rusqlite::backup::Progress)>,
    )
    .map_err(sql_error)?;
    // Revisions must keep moving forward for anyone who remembers the old numbers:
    // never go below what the replaced database had handed out.
    if let Some(old) = &saved {
        match read_revision(old) {
            Ok(old_revision) => {
                conn.execute(
                    "UPDATE meta SET value = max(value, ?1) WHERE name = 'revision'",
                    params![old_revision],
                )
                .map_err(sql_error)?;
            }
            Err(err) => tracing::warn!(
                %err,
                "the replaced database is unreadable; revisions restart from the backup's"
            ),
        }
    }
    Ok(saved)
}

/// Renames `target` and its WAL companions to a fresh `.before-restore-*` name.
fn move_aside(target: &Path) -> Result<PathBuf> {
    let stamp = to_unix_millis(SystemTime::now()) / 1000;
    let io = |what: String, err: std::io::Error| BackendError::Internal {
        backend: BACKEND,
        detail: format!("{what}: {err}"),
    };
    let companion =
        |base: &Path, suffix: &str| PathBuf::from(format!("{}{suffix}", base.display()));
    for attempt in 0u32..1000 {
        let keep = if attempt == 0 {
            PathBuf::from(format!("{}.before-restore-{stamp}", target.display()))
        } else {
            PathBuf::from(format!(
                "{}.before-restore-{stamp}-{attempt}",
                target.display()
            ))
        };
        let taken = ["", "-wal", "-shm"]
            .iter()
            .any(|suffix| companion(&keep, suffix).exists());
        if taken {
            continue;
        }
        for suffix in ["-wal", "-shm", ""] {
            let from = companion(target, suffix);
            if from.exists() {
                let to = companion(&keep, suffix);
                std::fs::rename(&from, &to).map_err(|err| {
                    io(
                        format!("cannot move {} to {}", from.display(), to.display()),
                        err,
                    )
                })?;
            }
        }
        return Ok(keep);
    }
    Err(BackendError::Internal {
        backend: BACKEND,
        detail: format!("no free .before-restore name next to {}", target.display()),
    })
}

fn read_revision(path: &Path) -> Result<i64> {
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql_error)?;
    conn.query_row(
        "SELECT value FROM meta WHERE name = 'revision'",
        [],
        |row| row.get(0),
    )
    .map_err(sql_error)
}

fn live_item(conn: &Connection, key: &Key, now: SystemTime) -> Result<Option<Item>> {
    conn.query_row(
        "SELECT value, expires, revision FROM items
         WHERE key = ?1 AND (expires IS NULL OR expires > ?2)",
        params![key.as_str().as_bytes(), to_unix_millis(now)],
        |row| {
            Ok(Item {
                key: key.clone(),
                value: row.get(0)?,
                expires: row.get::<_, Option<i64>>(1)?.map(from_unix_millis),
                revision: Revision(row.get(2)?),
            })
        },
    )
    .optional()
    .map_err(sql_error)
}

/// The SQL bounds of a range: `key >= start AND (end IS NULL OR key < end)`.
fn range_bounds(range: &KeyRange) -> (Vec<u8>, Option<Vec<u8>>) {
    match range {
        KeyRange::Prefix(prefix) => {
            let start = prefix.as_str().as_bytes().to_vec();
            let end = prefix_end(&start);
            (start, end)
        }
        KeyRange::Between { start, end } => (
            start.as_str().as_bytes().to_vec(),
            Some(end.as_str().as_bytes().to_vec()),
        ),
    }
}

/// The smallest byte string greater than every string starting with `prefix`
/// (`None` if there is none, i.e. the prefix is all 0xFF).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn row_key(raw: Vec<u8>) -> rusqlite::Result<Key> {
    String::from_utf8(raw)
        .ok()
        .and_then(|text| Key::new(text).ok())
        .ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Blob,
                "stored key is not valid UTF-8".into(),
            )
        })
}

fn range_items(
    conn: &Connection,
    range: &KeyRange,
    limit: Option<usize>,
    now: SystemTime,
) -> Result<Vec<Item>> {
    let (start, end) = range_bounds(range);
    let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let mut stmt = conn
        .prepare_cached(
            "SELECT key, value, expires, revision FROM items
             WHERE key >= ?1 AND (?2 IS NULL OR key < ?2)
               AND (expires IS NULL OR expires > ?3)
             ORDER BY key LIMIT ?4",
        )
        .map_err(sql_error)?;
    let rows = stmt
        .query_map(params![start, end, to_unix_millis(now), limit], |row| {
            Ok(Item {
                key: row_key(row.get(0)?)?,
                value: row.get(1)?,
                expires: row.get::<_, Option<i64>>(2)?.map(from_unix_millis),
                revision: Revision(row.get(3)?),
            })
        })
        .map_err(sql_error)?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql_error)
}

fn spawn_sweeper(inner: std::sync::Weak<Inner>, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            if lock(&inner.conn).is_none() {
                return;
            }
            let backend = SqliteBackend { inner };
            if let Err(err) = backend.sweep_expired().await {
                tracing::warn!(%err, "sweeping expired items failed; will retry");
            }
        }
    });
}

impl SqliteBackend {
    async fn sweep_expired(&self) -> Result<()> {
        self.write(|tx| {
            let expired: Vec<Key> = {
                let mut stmt = tx
                    .tx
                    .prepare_cached(
                        "SELECT key FROM items WHERE expires IS NOT NULL AND expires <= ?1
                         ORDER BY key LIMIT 1000",
                    )
                    .map_err(sql_error)?;
                let rows = stmt
                    .query_map(params![to_unix_millis(tx.now)], |row| row_key(row.get(0)?))
                    .map_err(sql_error)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sql_error)?
            };
            for key in expired {
                tx.remove(&key)?;
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    async fn get(&self, key: &Key) -> Result<Item> {
        let key = key.clone();
        self.read(move |conn, now| {
            live_item(conn, &key, now)?.ok_or(BackendError::NotFound { key })
        })
        .await
    }

    async fn put(&self, item: NewItem) -> Result<Revision> {
        self.write(move |tx| tx.put(item)).await
    }

    async fn create(&self, item: NewItem) -> Result<Revision> {
        self.write(move |tx| {
            if tx.live(&item.key)?.is_some() {
                return Err(BackendError::AlreadyExists { key: item.key });
            }
            tx.put(item)
        })
        .await
    }

    async fn update(&self, item: NewItem) -> Result<Revision> {
        self.write(move |tx| {
            if tx.live(&item.key)?.is_none() {
                return Err(BackendError::NotFound { key: item.key });
            }
            tx.put(item)
        })
        .await
    }

    async fn compare_and_swap(&self, expected: &[u8], item: NewItem) -> Result<Revision> {
        let expected = expected.to_vec();
        self.write(move |tx| match tx.live(&item.key)? {
            None => Err(BackendError::NotFound { key: item.key }),
            Some(current) if current.value != expected => {
                Err(BackendError::CompareFailed { key: item.key })
            }
            Some(_) => tx.put(item),
        })
        .await
    }

    async fn conditional_update(&self, expected: Revision, item: NewItem) -> Result<Revision> {
        self.write(move |tx| match tx.live(&item.key)? {
            None => Err(BackendError::NotFound { key: item.key }),
            Some(current) if current.revision != expected => {
                Err(BackendError::CompareFailed { key: item.key })
            }
            Some(_) => tx.put(item),
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let key = key.clone();
        self.write(move |tx| {
            if tx.live(&key)?.is_none() {
                return Err(BackendError::NotFound { key });
            }
            tx.remove(&key).map(|_| ())
        })
        .await
    }

    async fn conditional_delete(&self, key: &Key, expected: Revision) -> Result<()> {
        let key = key.clone();
        self.write(move |tx| match tx.live(&key)? {
            None => Err(BackendError::NotFound { key }),
            Some(current) if current.revision != expected => {
                Err(BackendError::CompareFailed { key })
            }
            Some(_) => tx.remove(&key).map(|_| ()),
        })
        .await
    }

    async fn get_range(&self, range: &KeyRange, limit: Option<usize>) -> Result<Vec<Item>> {
        let range = range.clone();
        self.read(move |conn, now| range_items(conn, &range, limit, now))
            .await
    }

    async fn delete_range(&self, range: &KeyRange) -> Result<u64> {
        let range = range.clone();
        self.write(move |tx| {
            let doomed = range_items(&tx.tx, &range, None, tx.now)?;
            for item in &doomed {
                tx.remove(&item.key)?;
            }
            Ok(doomed.len() as u64)
        })
        .await
    }

    async fn keep_alive(&self, key: &Key, expires: SystemTime) -> Result<Revision> {
        let key = key.clone();
        self.write(move |tx| {
            let Some(current) = tx.live(&key)? else {
                return Err(BackendError::NotFound { key });
            };
            tx.put(NewItem {
                key,
                value: current.value,
                expires: Some(expires),
            })
        })
        .await
    }

    async fn atomic_write(
        &self,
        conditions: Vec<Condition>,
        actions: Vec<Action>,
    ) -> Result<Revision> {
        self.write(move |tx| {
            for (index, condition) in conditions.iter().enumerate() {
                let current = tx.live(condition.key())?.map(|item| item.revision);
                if !condition.holds(current) {
                    return Err(BackendError::ConditionFailed {
                        index,
                        condition: format!("{condition:?}"),
                    });
                }
            }
            let revision = tx.next_revision()?;
            tx.revision = Some(revision);
            for action in actions {
                match action {
                    Action::Put(item) => {
                        tx.put(item)?;
                    }
                    Action::Delete(key) => {
                        tx.remove(&key)?;
                    }
                }
            }
            Ok(revision)
        })
        .await
    }

    async fn watch(&self, prefixes: Vec<Key>) -> Result<Watcher> {
        Ok(self.inner.bus.subscribe(prefixes))
    }

    async fn close(&self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let Some(conn) = lock(&inner.conn).take() else {
                return Ok(());
            };
            // Closing checkpoints the WAL into the main file and removes it.
            conn.close().map_err(|(_, err)| sql_error(err))
        })
        .await
        .map_err(join_error)?
    }
}

fn sql_error(err: rusqlite::Error) -> BackendError {
    BackendError::Internal {
        backend: BACKEND,
        detail: err.to_string(),
    }
}

fn corrupt_or(path: &Path, err: rusqlite::Error) -> BackendError {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) | Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            BackendError::Corrupt {
                backend: BACKEND,
                location: path.display().to_string(),
                detail: format!(
                    "{err}; restore it with `jumpgate backup restore` or move it aside"
                ),
            }
        }
        _ => sql_error(err),
    }
}

fn join_error(err: tokio::task::JoinError) -> BackendError {
    BackendError::Internal {
        backend: BACKEND,
        detail: format!("database task failed: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_skips_trailing_ff() {
        assert_eq!(prefix_end(b"/a"), Some(b"/b".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xFF]), Some(vec![b'b']));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    }
}
