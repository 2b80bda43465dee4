//! The PostgreSQL backend (`storage.type: postgresql`), for clusters with several auth
//! servers that already run PostgreSQL.
//!
//! Decisions:
//! - **Finding the primary** is left to the connection string: several hosts plus
//!   `target_session_attrs=read-write` make tokio-postgres try each host until one takes
//!   writes, so after a failover a reconnect lands on the promoted standby by itself.
//!   Connections that fail (or land on a server that turned read-only) are dropped and
//!   made again on the next call.
//! - **Tables** (created if missing, under an advisory lock so two auth servers starting
//!   together do not race): `jumpgate_items` (key, value, expires, revision),
//!   `jumpgate_changes` (one row per put or delete, in revision order) and
//!   `jumpgate_meta` (the revision counter, how far the change log was pruned, the schema
//!   version). Keys are `bytea`, so ranges order bytewise as on every other backend.
//! - **Revisions** come from one counter row, bumped first thing in every write
//!   transaction. Its row lock serialises writers until commit, so revisions are handed
//!   out in commit order, and every read a write makes after taking it sees the latest
//!   committed state: conditional and atomic writes need no retry loop. A `SEQUENCE`
//!   would not do: it hands out numbers in start order, so a watcher reading "after
//!   revision N" could skip a slower transaction's lower number. The cost: one writer
//!   at a time across the cluster, a few hundred writes a second, plenty for cluster
//!   state (logins and heartbeats), not for audit events (which have their own store).
//! - **Expiry** uses the writer's clock, as on the other backends: reads filter out rows
//!   whose expiry has passed, and a sweeper on every auth server deletes them and logs
//!   each as a delete in the change log (the sweepers serialise on the counter; the
//!   second finds nothing). Auth servers' clocks must agree to well under a TTL.
//! - **Watch: a change log plus `LISTEN/NOTIFY`**, not logical decoding. Each write
//!   transaction appends its changes to `jumpgate_changes` and sends a `NOTIFY`
//!   (delivered at commit). A watcher remembers the last change it delivered and reads
//!   the rows after it; the notification only wakes it up (a poll every few seconds is
//!   the safety net). Because the position is a row in a table, a watcher resumes
//!   after a reconnect, a server restart or a failover to a standby with nothing lost or
//!   doubled. Logical decoding (wal2json) was rejected: it needs a server extension,
//!   `wal_level=logical` and the replication privilege, a replication slot per watcher
//!   that holds WAL on the primary if its auth server disappears, and slots that (before
//!   PostgreSQL 17) do not survive a failover. The cost of our choice: every change is
//!   written twice (item and log row), and the log must be pruned: the sweeper deletes
//!   rows older than `change_retention` (10 minutes by default) and records the highest
//!   pruned revision; a watcher that was further behind than that ends with
//!   `FellBehind` and its subscriber re-reads, as after an etcd compaction.

use crate::Backend;
use crate::error::{BackendError, Result};
use crate::pg::{CheckoutError, PgTarget, Pool};
use crate::sqlite::prefix_end;
use crate::tasks::{abort_tasks, jitter};
use crate::types::{
    Action, Condition, Event, Item, Key, KeyRange, NewItem, Revision, from_unix_millis, is_expired,
    to_unix_millis,
};
use crate::watch::{WatchError, Watcher};
use async_trait::async_trait;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client};

const BACKEND: &str = "postgresql";
/// Bumped when the table layout changes; older binaries refuse a newer layout.
const SCHEMA_VERSION: i64 = 1;
/// The `NOTIFY` channel writers wake watchers on.
const CHANNEL: &str = "jumpgate_changes";
/// How many change rows a watcher reads per query.
const WATCH_BATCH: i64 = 512;
/// A watcher position "after every change of this revision".
const END_OF_REVISION: i32 = i32::MAX;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jumpgate_meta (
    name text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO jumpgate_meta (name, value)
    VALUES ('revision', 0), ('pruned_through', 0), ('schema_version', 1)
    ON CONFLICT (name) DO NOTHING;
CREATE TABLE IF NOT EXISTS jumpgate_items (
    key bytea PRIMARY KEY,
    value bytea NOT NULL,
    expires bigint,
    revision bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS jumpgate_items_expires
    ON jumpgate_items (expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS jumpgate_changes (
    revision bigint NOT NULL,
    seq integer NOT NULL,
    key bytea NOT NULL,
    value bytea,
    expires bigint,
    at bigint NOT NULL,
    PRIMARY KEY (revision, seq)
);
CREATE INDEX IF NOT EXISTS jumpgate_changes_at ON jumpgate_changes (at);
";

/// How to reach PostgreSQL.
#[derive(Clone)]
pub struct PostgresOptions {
    /// A libpq connection string, as a URL (`postgresql://user@h1:5432,h2:5432/db?...`)
    /// or as `key=value` pairs. Several hosts and `target_session_attrs` are honoured.
    pub conn_string: String,
    /// The password, when it is not in the connection string (read from `password_file`).
    pub password: Option<String>,
    /// Connections kept open for requests (the watch notifications use one more).
    pub pool_size: usize,
    /// How long connecting to one host may take, unless the connection string says.
    pub connect_timeout: Duration,
    /// How long one request may take before it fails as `Unavailable`.
    pub request_timeout: Duration,
    /// How often expired items are swept out (and the change log pruned).
    pub sweep_interval: Duration,
    /// How long change-log rows are kept for watchers that reconnect.
    pub change_retention: Duration,
    /// How often a watcher looks for changes when no notification woke it.
    pub poll_interval: Duration,
    /// How many events a watcher may lag behind before it is told to re-sync.
    pub watch_buffer: usize,
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = self
            .endpoint()
            .unwrap_or_else(|_| "[unparsable]".to_string());
        f.debug_struct("PostgresOptions")
            .field("endpoint", &endpoint)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("sweep_interval", &self.sweep_interval)
            .field("change_retention", &self.change_retention)
            .field("poll_interval", &self.poll_interval)
            .field("watch_buffer", &self.watch_buffer)
            .finish()
    }
}

impl PostgresOptions {
    /// The hosts, ports and database of the connection string, for messages (never the
    /// password); `InvalidArgument` if the string does not parse.
    pub fn endpoint(&self) -> Result<String> {
        Ok(self.target()?.endpoint().to_string())
    }

    /// The parsed connection string with the password and timeouts filled in.
    fn target(&self) -> Result<PgTarget> {
        let mut target =
            PgTarget::parse(&self.conn_string, self.password.as_deref()).map_err(|reason| {
                BackendError::InvalidArgument(format!(
                    "the PostgreSQL connection string (storage.conn_string) is invalid: {reason}"
                ))
            })?;
        let config = target.config_mut();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.connect_timeout);
        }
        Ok(target)
    }

    pub fn new(conn_string: impl Into<String>) -> PostgresOptions {
        PostgresOptions {
            conn_string: conn_string.into(),
            password: None,
            pool_size: 4,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            sweep_interval: Duration::from_millis(500),
            change_retention: Duration::from_secs(600),
            poll_interval: Duration::from_secs(2),
            watch_buffer: 4096,
        }
    }
}

/// A [`Backend`] on a PostgreSQL database. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct PostgresBackend {
    inner: Arc<Inner>,
}

struct Inner {
    target: PgTarget,
    /// Hosts, ports and database, for messages (never the password).
    endpoint: String,
    options: PostgresOptions,
    /// The request connections (made on first use and again after one failed).
    pool: Pool,
    closed: AtomicBool,
    /// Bumped on every notification (and on every reconnect of the listener).
    wake: watch::Receiver<u64>,
    tasks: StdMutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        abort_tasks(&self.tasks);
    }
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("endpoint", &self.inner.endpoint)
            .finish()
    }
}

/// What a request failed with: the caller's outcome, or the database's.
enum Fail {
    Refused(BackendError),
    Sql(tokio_postgres::Error),
}

impl From<BackendError> for Fail {
    fn from(err: BackendError) -> Fail {
        Fail::Refused(err)
    }
}

impl From<tokio_postgres::Error> for Fail {
    fn from(err: tokio_postgres::Error) -> Fail {
        Fail::Sql(err)
    }
}

type Op<'c, T> = BoxFuture<'c, std::result::Result<T, Fail>>;

/// One write of a transaction.
enum Write {
    Put(NewItem),
    Delete(Key),
    DeleteRange(KeyRange),
    DeleteExpired,
}

/// The live items of the keys a write looked at.
type Live = HashMap<Key, Item>;
type Decide = Box<dyn FnOnce(&Live) -> Result<Vec<Write>> + Send>;

impl PostgresBackend {
    /// Connects, checks that PostgreSQL answers and creates the tables if missing; a clear
    /// `Unavailable` error naming the hosts otherwise. Must be called inside a Tokio
    /// runtime: background tasks sweep expired items and listen for notifications.
    pub async fn connect(options: PostgresOptions) -> Result<PostgresBackend> {
        let target = options.target()?;
        let endpoint = target.endpoint().to_string();
        let (wake_tx, wake_rx) = watch::channel(0u64);
        let pool = Pool::new(target.clone(), options.pool_size);
        let backend = PostgresBackend {
            inner: Arc::new(Inner {
                target,
                endpoint,
                pool,
                options,
                closed: AtomicBool::new(false),
                wake: wake_rx,
                tasks: StdMutex::new(Vec::new()),
            }),
        };
        backend.create_schema().await?;
        let listener = tokio::spawn(listen(
            backend.inner.target.clone(),
            backend.inner.options.connect_timeout,
            wake_tx,
        ));
        let sweeper = spawn_sweeper(
            Arc::downgrade(&backend.inner),
            backend.inner.options.sweep_interval,
        );
        if let Ok(mut tasks) = backend.inner.tasks.lock() {
            tasks.push(listener);
            tasks.push(sweeper);
        }
        Ok(backend)
    }

    /// The hosts, ports and database this backend talks to (no password).
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    fn unavailable(&self, detail: impl fmt::Display) -> BackendError {
        BackendError::Unavailable {
            backend: BACKEND,
            detail: format!("PostgreSQL at {}: {detail}", self.inner.endpoint),
        }
    }

    /// Turns a database error into a [`BackendError`]; the flag says whether the
    /// connection is no good any more.
    fn classify(&self, err: &tokio_postgres::Error) -> (BackendError, bool) {
        let Some(db) = err.as_db_error() else {
            // I/O, a closed connection, a failed connect: the server is out of reach.
            let io = std::error::Error::source(err)
                .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some());
            if io || err.is_closed() || err.to_string().starts_with("timeout") {
                return (self.unavailable(crate::pg::describe(err)), true);
            }
            // A value that would not encode or decode: our bug, not the server's state.
            return (
                BackendError::Internal {
                    backend: BACKEND,
                    detail: format!(
                        "PostgreSQL at {}: {}",
                        self.inner.endpoint,
                        crate::pg::describe(err)
                    ),
                },
                true,
            );
        };
        let code = db.code();
        let class = code.code().get(..2).unwrap_or_default();
        if class == "08"
            || class == "57"
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION
            || *code == SqlState::TOO_MANY_CONNECTIONS
        {
            // Connection trouble, shutdown, or a server that is now a standby: another
            // connection (to the new primary) may work.
            return (self.unavailable(crate::pg::describe(err)), true);
        }
        if class == "28" {
            return (
                BackendError::Internal {
                    backend: BACKEND,
                    detail: format!(
                        "PostgreSQL at {} refused the login: {}; check the user and the \
                         client certificate in storage.conn_string, and storage.password_file",
                        self.inner.endpoint,
                        crate::pg::describe(err)
                    ),
                },
                true,
            );
        }
        (
            BackendError::Internal {
                backend: BACKEND,
                detail: format!(
                    "PostgreSQL at {}: {}",
                    self.inner.endpoint,
                    crate::pg::describe(err)
                ),
            },
            false,
        )
    }

    /// Runs `op` on a pooled connection within the request timeout; a connection that
    /// failed or timed out is dropped, so the next request connects afresh. Waiting for a
    /// free connection is bounded by the request timeout too: behind a hung server, a
    /// queue of requests fails after one timeout each, not after the ones ahead of it.
    async fn with_conn<T, F>(&self, op: F) -> Result<T>
    where
        F: for<'c> FnOnce(&'c mut Client) -> Op<'c, T>,
    {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let timeout = self.inner.options.request_timeout;
        let mut guard = self
            .inner
            .pool
            .checkout(timeout)
            .await
            .map_err(|err| match err {
                CheckoutError::Busy => self.unavailable(format_args!(
                    "no free connection within {timeout:?}: every pooled connection is \
                     waiting on the server"
                )),
                CheckoutError::ConnectTimeout => {
                    self.unavailable(format_args!("no connection within {timeout:?}"))
                }
                CheckoutError::Connect(err) => self.classify(&err).0,
            })?;
        let Some(client) = guard.as_mut() else {
            return Err(closed());
        };
        match tokio::time::timeout(timeout, op(client)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(Fail::Refused(err))) => Err(err),
            Ok(Err(Fail::Sql(err))) => {
                let (err, broken) = self.classify(&err);
                if broken {
                    *guard = None;
                }
                Err(err)
            }
            Err(_) => {
                *guard = None;
                Err(self.unavailable(format_args!("no answer within {timeout:?}")))
            }
        }
    }

    async fn create_schema(&self) -> Result<()> {
        let version = self
            .with_conn(|client| {
                Box::pin(async move {
                    let tx = client.transaction().await?;
                    // Two auth servers starting together must not both create the tables.
                    tx.execute("SELECT pg_advisory_xact_lock(7236518823497)", &[])
                        .await?;
                    tx.batch_execute(SCHEMA).await?;
                    let version: i64 = tx
                        .query_one(
                            "SELECT value FROM jumpgate_meta WHERE name = 'schema_version'",
                            &[],
                        )
                        .await?
                        .try_get(0)?;
                    tx.commit().await?;
                    Ok(version)
                })
            })
            .await?;
        if version > SCHEMA_VERSION {
            return Err(BackendError::Corrupt {
                backend: BACKEND,
                location: format!("{} (table jumpgate_meta)", self.inner.endpoint),
                detail: format!(
                    "the tables have layout version {version}, written by a newer Jumpgate \
                     (this one knows {SCHEMA_VERSION}); upgrade this auth server"
                ),
            });
        }
        Ok(())
    }

    /// One write transaction: takes the next revision (and with it the writers' lock),
    /// reads the live items of `keys`, lets `decide` turn them into writes (or refuse),
    /// applies them, logs each change and wakes the watchers at commit. Returns the
    /// revision and how many live items were deleted.
    async fn transact(&self, keys: Vec<Key>, decide: Decide) -> Result<(Revision, u64)> {
        self.with_conn(move |client| {
            Box::pin(async move {
                let now = to_unix_millis(SystemTime::now());
                let tx = client.transaction().await?;
                let revision: i64 = tx
                    .query_one(
                        "UPDATE jumpgate_meta SET value = value + 1 WHERE name = 'revision'
                         RETURNING value",
                        &[],
                    )
                    .await?
                    .try_get(0)?;
                let mut live = Live::new();
                if !keys.is_empty() {
                    let raw: Vec<&[u8]> = keys.iter().map(|k| k.as_str().as_bytes()).collect();
                    let rows = tx
                        .query(
                            "SELECT key, value, expires, revision FROM jumpgate_items
                             WHERE key = ANY($1) AND (expires IS NULL OR expires > $2)",
                            &[&raw, &now],
                        )
                        .await?;
                    for row in rows {
                        let item = item_from_row(&row)?;
                        live.insert(item.key.clone(), item);
                    }
                }
                let writes = decide(&live)?;
                let mut seq: i32 = 0;
                let mut deleted = 0u64;
                for write in writes {
                    match write {
                        Write::Put(item) => {
                            let key = item.key.as_str().as_bytes();
                            let expires = item.expires.map(to_unix_millis);
                            tx.execute(
                                "INSERT INTO jumpgate_items (key, value, expires, revision)
                                 VALUES ($1, $2, $3, $4)
                                 ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                                     expires = excluded.expires, revision = excluded.revision",
                                &[&key, &item.value, &expires, &revision],
                            )
                            .await?;
                            tx.execute(
                                "INSERT INTO jumpgate_changes
                                     (revision, seq, key, value, expires, at)
                                 VALUES ($1, $2, $3, $4, $5, $6)",
                                &[&revision, &seq, &key, &item.value, &expires, &now],
                            )
                            .await?;
                            seq = seq.saturating_add(1);
                        }
                        Write::Delete(key) => {
                            let key = key.as_str().as_bytes().to_vec();
                            let (live, total) =
                                delete_where(&tx, "key = $5", &[&key], (revision, seq, now))
                                    .await?;
                            deleted += live;
                            seq = seq.saturating_add(total);
                        }
                        Write::DeleteRange(range) => {
                            let (start, end) = range_bounds(&range);
                            let (live, total) = delete_where(
                                &tx,
                                "key >= $5 AND ($6::bytea IS NULL OR key < $6)",
                                &[&start, &end],
                                (revision, seq, now),
                            )
                            .await?;
                            deleted += live;
                            seq = seq.saturating_add(total);
                        }
                        Write::DeleteExpired => {
                            let (_, total) = delete_where(
                                &tx,
                                "expires IS NOT NULL AND expires <= $5",
                                &[&now],
                                (revision, seq, now),
                            )
                            .await?;
                            seq = seq.saturating_add(total);
                        }
                    }
                }
                if seq > 0 {
                    tx.execute(
                        "SELECT pg_notify($1, $2)",
                        &[&CHANNEL, &revision.to_string()],
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok((Revision(revision), deleted))
            })
        })
        .await
    }

    /// A write of one key decided on its live item.
    async fn write_key<F>(&self, key: &Key, decide: F) -> Result<Revision>
    where
        F: FnOnce(Option<&Item>) -> Result<Write> + Send + 'static,
    {
        let lookup = key.clone();
        let decide: Decide = Box::new(move |live: &Live| Ok(vec![decide(live.get(&lookup))?]));
        Ok(self.transact(vec![key.clone()], decide).await?.0)
    }

    /// Deletes expired items (logging each as a delete) and prunes the change log.
    async fn sweep(&self) -> Result<()> {
        let now = to_unix_millis(SystemTime::now());
        let any_expired = self
            .with_conn(move |client| {
                Box::pin(async move {
                    let row = client
                        .query_opt(
                            "SELECT 1 FROM jumpgate_items
                             WHERE expires IS NOT NULL AND expires <= $1 LIMIT 1",
                            &[&now],
                        )
                        .await?;
                    Ok(row.is_some())
                })
            })
            .await?;
        if any_expired {
            self.transact(Vec::new(), Box::new(|_| Ok(vec![Write::DeleteExpired])))
                .await?;
        }
        let retention =
            i64::try_from(self.inner.options.change_retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.saturating_sub(retention);
        self.with_conn(move |client| {
            Box::pin(async move {
                let tx = client.transaction().await?;
                let newest_old: Option<i64> = tx
                    .query_one(
                        "SELECT max(revision) FROM jumpgate_changes WHERE at < $1",
                        &[&cutoff],
                    )
                    .await?
                    .try_get(0)?;
                if let Some(through) = newest_old {
                    tx.execute(
                        "DELETE FROM jumpgate_changes WHERE revision <= $1",
                        &[&through],
                    )
                    .await?;
                    tx.execute(
                        "UPDATE jumpgate_meta SET value = greatest(value, $1)
                         WHERE name = 'pruned_through'",
                        &[&through],
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            })
        })
        .await
    }

    /// The changes after `cursor`, read in one snapshot with the counter and how far
    /// the log was pruned.
    async fn changes_after(&self, cursor: (i64, i32)) -> Result<ChangeBatch> {
        self.with_conn(move |client| {
            Box::pin(async move {
                let tx = client
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                let meta = tx
                    .query(
                        "SELECT name, value FROM jumpgate_meta
                         WHERE name IN ('revision', 'pruned_through')",
                        &[],
                    )
                    .await?;
                let mut counter = 0;
                let mut pruned_through = 0;
                for row in meta {
                    let name: &str = row.try_get(0)?;
                    let value: i64 = row.try_get(1)?;
                    match name {
                        "revision" => counter = value,
                        _ => pruned_through = value,
                    }
                }
                let rows = tx
                    .query(
                        "SELECT revision, seq, key, value, expires FROM jumpgate_changes
                         WHERE (revision, seq) > ($1, $2) ORDER BY revision, seq LIMIT $3",
                        &[&cursor.0, &cursor.1, &WATCH_BATCH],
                    )
                    .await?;
                tx.commit().await?;
                let mut changes = Vec::with_capacity(rows.len());
                for row in rows {
                    let revision: i64 = row.try_get(0)?;
                    let seq: i32 = row.try_get(1)?;
                    let key = key_from_bytes(row.try_get(2)?)?;
                    let value: Option<Vec<u8>> = row.try_get(3)?;
                    let expires: Option<i64> = row.try_get(4)?;
                    let event = match value {
                        Some(value) => Event::Put(Item {
                            key,
                            value,
                            expires: expires.map(from_unix_millis),
                            revision: Revision(revision),
                        }),
                        None => Event::Delete {
                            key,
                            revision: Revision(revision),
                        },
                    };
                    changes.push(((revision, seq), event));
                }
                Ok(ChangeBatch {
                    counter,
                    pruned_through,
                    changes,
                })
            })
        })
        .await
    }

    async fn current_revision(&self) -> Result<i64> {
        self.with_conn(|client| {
            Box::pin(async move {
                Ok(client
                    .query_one(
                        "SELECT value FROM jumpgate_meta WHERE name = 'revision'",
                        &[],
                    )
                    .await?
                    .try_get(0)?)
            })
        })
        .await
    }
}

struct ChangeBatch {
    /// The revision counter in the snapshot the changes were read from.
    counter: i64,
    pruned_through: i64,
    changes: Vec<((i64, i32), Event)>,
}

/// Deletes the items matching `predicate` (whose parameters start at `$5`) and logs a
/// delete for each, in one statement. Returns (live items deleted, rows deleted).
async fn delete_where(
    tx: &tokio_postgres::Transaction<'_>,
    predicate: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    (revision, seq, now): (i64, i32, i64),
) -> std::result::Result<(u64, i32), Fail> {
    // Data-modifying CTEs always run to completion, so `logged` inserts every row.
    let sql = format!(
        "WITH gone AS (
             DELETE FROM jumpgate_items WHERE {predicate} RETURNING key, expires
         ), logged AS (
             INSERT INTO jumpgate_changes (revision, seq, key, value, expires, at)
             SELECT $1, ($2::integer + row_number() OVER (ORDER BY key) - 1)::integer, key, NULL, NULL, $3
             FROM gone
             RETURNING 1
         )
         SELECT count(*) FILTER (WHERE expires IS NULL OR expires > $4), count(*) FROM gone"
    );
    let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        vec![&revision, &seq, &now, &now];
    all.extend_from_slice(params);
    let row = tx.query_one(&sql, &all).await?;
    let live: i64 = row.try_get(0)?;
    let total: i64 = row.try_get(1)?;
    Ok((
        u64::try_from(live).unwrap_or(0),
        i32::try_from(total).unwrap_or(i32::MAX),
    ))
}

fn closed() -> BackendError {
    BackendError::Unavailable {
        backend: BACKEND,
        detail: "the backend was closed".to_string(),
    }
}

fn key_from_bytes(raw: Vec<u8>) -> std::result::Result<Key, Fail> {
    String::from_utf8(raw)
        .ok()
        .and_then(|text| Key::new(text).ok())
        .ok_or_else(|| {
            Fail::Refused(BackendError::Corrupt {
                backend: BACKEND,
                location: "table jumpgate_items".to_string(),
                detail: "a stored key is not a Jumpgate key (UTF-8, starting with '/')".to_string(),
            })
        })
}

fn item_from_row(row: &tokio_postgres::Row) -> std::result::Result<Item, Fail> {
    let expires: Option<i64> = row.try_get(2)?;
    Ok(Item {
        key: key_from_bytes(row.try_get(0)?)?,
        value: row.try_get(1)?,
        expires: expires.map(from_unix_millis),
        revision: Revision(row.try_get(3)?),
    })
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

fn spawn_sweeper(inner: Weak<Inner>, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            if inner.closed.load(Ordering::Acquire) {
                return;
            }
            let backend = PostgresBackend { inner };
            if let Err(err) = backend.sweep().await {
                tracing::warn!(%err, "sweeping expired items failed; will retry");
            }
        }
    })
}

/// Keeps one connection listening on [`CHANNEL`] and bumps `wake` on every notification,
/// and after every (re)connect, since notifications sent meanwhile are lost.
async fn listen(target: PgTarget, connect_timeout: Duration, wake: watch::Sender<u64>) {
    let endpoint = target.endpoint().to_string();
    let mut delay = Duration::from_millis(100);
    loop {
        let connected = tokio::time::timeout(connect_timeout * 2, target.connect()).await;
        match connected {
            Ok(Ok((client, mut messages))) => {
                let statement = format!("LISTEN {CHANNEL}");
                let listen = client.batch_execute(&statement);
                let mut listen = std::pin::pin!(listen);
                let mut listening = false;
                loop {
                    tokio::select! {
                        done = &mut listen, if !listening => match done {
                            Ok(()) => {
                                listening = true;
                                delay = Duration::from_millis(100);
                                wake.send_modify(|n| *n = n.wrapping_add(1));
                            }
                            Err(err) => {
                                tracing::warn!(%endpoint, %err, "PostgreSQL LISTEN failed");
                                break;
                            }
                        },
                        message = futures::StreamExt::next(&mut messages) => {
                            match message {
                                Some(Ok(AsyncMessage::Notification(_))) => {
                                    wake.send_modify(|n| *n = n.wrapping_add(1));
                                }
                                Some(Ok(_)) => {}
                                Some(Err(err)) => {
                                    tracing::warn!(%endpoint, %err,
                                        "PostgreSQL notification connection lost; reconnecting");
                                    break;
                                }
                                None => break,
                            }
                        }
                    }
                }
            }
            Ok(Err(err)) => {
                tracing::debug!(%endpoint, %err, retry_in = ?delay,
                    "cannot connect to PostgreSQL for notifications");
            }
            Err(_) => {
                tracing::debug!(%endpoint, retry_in = ?delay,
                    "connecting to PostgreSQL for notifications timed out");
            }
        }
        // Watchers poll while we are away; wake them so they notice quickly.
        wake.send_modify(|n| *n = n.wrapping_add(1));
        tokio::time::sleep(jitter(delay)).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    async fn get(&self, key: &Key) -> Result<Item> {
        let lookup = key.as_str().as_bytes().to_vec();
        let found = self
            .with_conn(move |client| {
                Box::pin(async move {
                    let now = to_unix_millis(SystemTime::now());
                    let row = client
                        .query_opt(
                            "SELECT key, value, expires, revision FROM jumpgate_items
                             WHERE key = $1 AND (expires IS NULL OR expires > $2)",
                            &[&lookup, &now],
                        )
                        .await?;
                    row.map(|row| item_from_row(&row)).transpose()
                })
            })
            .await?;
        found.ok_or_else(|| BackendError::NotFound { key: key.clone() })
    }

    async fn put(&self, item: NewItem) -> Result<Revision> {
        let decide: Decide = Box::new(move |_| Ok(vec![Write::Put(item)]));
        Ok(self.transact(Vec::new(), decide).await?.0)
    }

    async fn create(&self, item: NewItem) -> Result<Revision> {
        let key = item.key.clone();
        self.write_key(&key, move |live| match live {
            Some(_) => Err(BackendError::AlreadyExists { key: item.key }),
            None => Ok(Write::Put(item)),
        })
        .await
    }

    async fn update(&self, item: NewItem) -> Result<Revision> {
        let key = item.key.clone();
        self.write_key(&key, move |live| match live {
            None => Err(BackendError::NotFound { key: item.key }),
            Some(_) => Ok(Write::Put(item)),
        })
        .await
    }

    async fn compare_and_swap(&self, expected: &[u8], item: NewItem) -> Result<Revision> {
        let key = item.key.clone();
        let expected = expected.to_vec();
        self.write_key(&key, move |live| match live {
            None => Err(BackendError::NotFound { key: item.key }),
            Some(current) if current.value != expected => {
                Err(BackendError::CompareFailed { key: item.key })
            }
            Some(_) => Ok(Write::Put(item)),
        })
        .await
    }

    async fn conditional_update(&self, expected: Revision, item: NewItem) -> Result<Revision> {
        let key = item.key.clone();
        self.write_key(&key, move |live| match live {
            None => Err(BackendError::NotFound { key: item.key }),
            Some(current) if current.revision != expected => {
                Err(BackendError::CompareFailed { key: item.key })
            }
            Some(_) => Ok(Write::Put(item)),
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let owned = key.clone();
        self.write_key(key, move |live| match live {
            None => Err(BackendError::NotFound { key: owned }),
            Some(_) => Ok(Write::Delete(owned)),
        })
        .await
        .map(|_| ())
    }

    async fn conditional_delete(&self, key: &Key, expected: Revision) -> Result<()> {
        let owned = key.clone();
        self.write_key(key, move |live| match live {
            None => Err(BackendError::NotFound { key: owned }),
            Some(current) if current.revision != expected => {
                Err(BackendError::CompareFailed { key: owned })
            }
            Some(_) => Ok(Write::Delete(owned)),
        })
        .await
        .map(|_| ())
    }

    async fn get_range(&self, range: &KeyRange, limit: Option<usize>) -> Result<Vec<Item>> {
        let (start, end) = range_bounds(range);
        let limit = limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        self.with_conn(move |client| {
            Box::pin(async move {
                let now = to_unix_millis(SystemTime::now());
                let rows = client
                    .query(
                        "SELECT key, value, expires, revision FROM jumpgate_items
                         WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2)
                           AND (expires IS NULL OR expires > $3)
                         ORDER BY key LIMIT $4",
                        &[&start, &end, &now, &limit],
                    )
                    .await?;
                rows.iter().map(item_from_row).collect()
            })
        })
        .await
    }

    async fn delete_range(&self, range: &KeyRange) -> Result<u64> {
        let range = range.clone();
        let decide: Decide = Box::new(move |_| Ok(vec![Write::DeleteRange(range)]));
        Ok(self.transact(Vec::new(), decide).await?.1)
    }

    async fn keep_alive(&self, key: &Key, expires: SystemTime) -> Result<Revision> {
        let owned = key.clone();
        self.write_key(key, move |live| match live {
            None => Err(BackendError::NotFound { key: owned }),
            Some(current) => Ok(Write::Put(NewItem {
                key: owned,
                value: current.value.clone(),
                expires: Some(expires),
            })),
        })
        .await
    }

    async fn atomic_write(
        &self,
        conditions: Vec<Condition>,
        actions: Vec<Action>,
    ) -> Result<Revision> {
        let keys = conditions.iter().map(|c| c.key().clone()).collect();
        let decide: Decide = Box::new(move |live: &Live| {
            for (index, condition) in conditions.iter().enumerate() {
                let current = live
                    .get(condition.key())
                    .filter(|item| !is_expired(item.expires, SystemTime::now()))
                    .map(|item| item.revision);
                if !condition.holds(current) {
                    return Err(BackendError::ConditionFailed {
                        index,
                        condition: format!("{condition:?}"),
                    });
                }
            }
            Ok(actions
                .into_iter()
                .map(|action| match action {
                    Action::Put(item) => Write::Put(item),
                    Action::Delete(key) => Write::Delete(key),
                })
                .collect())
        });
        Ok(self.transact(keys, decide).await?.0)
    }

    async fn watch(&self, prefixes: Vec<Key>) -> Result<Watcher> {
        let mut wake = self.inner.wake.clone();
        wake.borrow_and_update();
        let start = self.current_revision().await?;
        let (tx, rx) = mpsc::channel(self.inner.options.watch_buffer.max(2));
        let overflowed = Arc::new(AtomicBool::new(false));
        // Room is guaranteed: the channel is new and holds at least two.
        let _ = tx.try_send(Ok(Event::Ready));
        let feeder = WatchFeeder {
            backend: self.clone(),
            prefixes,
            tx,
            overflowed: Arc::clone(&overflowed),
            cursor: (start, END_OF_REVISION),
            wake,
        };
        let task = tokio::spawn(feeder.run());
        Ok(Watcher::from_channel(rx, overflowed, task))
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        abort_tasks(&self.inner.tasks);
        self.inner.pool.clear().await;
        Ok(())
    }
}

/// Reads the change log after its cursor and hands matching events to one subscriber.
struct WatchFeeder {
    backend: PostgresBackend,
    prefixes: Vec<Key>,
    tx: mpsc::Sender<Result<Event, WatchError>>,
    overflowed: Arc<AtomicBool>,
    /// The last change delivered (or skipped): `(revision, seq)`.
    cursor: (i64, i32),
    wake: watch::Receiver<u64>,
}

impl WatchFeeder {
    async fn run(mut self) {
        let mut delay = Duration::from_millis(100);
        loop {
            self.wake.borrow_and_update();
            match self.backend.changes_after(self.cursor).await {
                Ok(batch) => {
                    delay = Duration::from_millis(100);
                    let (pruned, (revision, seq)) = (batch.pruned_through, self.cursor);
                    if pruned > revision || (pruned == revision && seq != END_OF_REVISION) {
                        // Rows this watcher still needed were pruned.
                        self.finish(Err(WatchError::FellBehind));
                        return;
                    }
                    let full =
                        i64::try_from(batch.changes.len()).unwrap_or(i64::MAX) >= WATCH_BATCH;
                    for (position, event) in batch.changes {
                        self.cursor = position;
                        if !self.wanted(&event) {
                            continue;
                        }
                        match self.tx.try_send(Ok(event)) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                self.overflowed.store(true, Ordering::Release);
                                return;
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => return,
                        }
                    }
                    if full {
                        continue;
                    }
                    // Everything up to the counter is read: a quiet watcher's position
                    // stays current, so pruning old rows does not strand it.
                    self.cursor = (batch.counter.max(self.cursor.0), END_OF_REVISION);
                }
                Err(err) if err.is_retryable() => {
                    if self.backend.inner.closed.load(Ordering::Acquire) {
                        self.finish(Err(WatchError::Closed("backend closed".to_string())));
                        return;
                    }
                    tracing::warn!(%err, retry_in = ?delay, "PostgreSQL watch lost; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(jitter(delay)) => {}
                        () = self.tx.closed() => return,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(err) => {
                    self.finish(Err(WatchError::Closed(err.to_string())));
                    return;
                }
            }
            let poll = self.backend.inner.options.poll_interval;
            tokio::select! {
                changed = self.wake.changed() => {
                    if changed.is_err() {
                        // The listener is gone (backend closed): keep polling.
                        tokio::time::sleep(poll).await;
                    }
                }
                () = tokio::time::sleep(poll) => {}
                () = self.tx.closed() => return,
            }
        }
    }

    fn wanted(&self, event: &Event) -> bool {
        match event.key() {
            Some(key) => {
                self.prefixes.is_empty() || self.prefixes.iter().any(|p| key.starts_with(p))
            }
            None => true,
        }
    }

    fn finish(&self, outcome: Result<Event, WatchError>) {
        if self.tx.try_send(outcome).is_err() {
            // Full: the subscriber will learn it fell behind once it drains the buffer.
            self.overflowed.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_hosts_and_database_but_never_the_password() {
        let target = PgTarget::parse(
            "postgresql://jg:s3cret@db1:5433,db2/cluster?target_session_attrs=read-write",
            None,
        )
        .unwrap();
        assert_eq!(target.endpoint(), "db1:5433,db2:5432/cluster");
        assert!(!format!("{target:?}").contains("s3cret"));
        let options = PostgresOptions {
            password: Some("other-secret".to_string()),
            ..PostgresOptions::new("postgresql://jg:s3cret@db1/cluster")
        };
        let debug = format!("{options:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("other-secret"),
            "{debug}"
        );
    }
}
