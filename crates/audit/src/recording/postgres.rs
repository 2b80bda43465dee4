//! Recordings in PostgreSQL (`audit_sessions_uri: postgresql://...`), for clusters whose
//! auth servers already share a PostgreSQL database (high-availability topology C): every
//! auth server stores and reads the same recordings, and a synchronous standby holds every
//! acknowledged part, so losing an auth server (or the primary) loses no recording.
//!
//! # Layout
//! Two tables, created if missing:
//! - `jumpgate_recordings`: one row per recording: `session_id` (the key), `size` (bytes
//!   stored), `completed`, `created` and `modified` (the database's clock, so every auth
//!   server agrees on the order of the list).
//! - `jumpgate_recording_parts`: the bytes, one row per accepted part (`session_id`,
//!   `part_offset`, `data` bytea of at most [`MAX_PART_LEN`] bytes), keyed by
//!   (`session_id`, `part_offset`). Only a part's *new* bytes are stored, at the stored
//!   length, so the parts of a recording tile `[0, size)` exactly, without gap or overlap.
//!
//! # Appends
//! One transaction each: take the recording's row lock (`SELECT ... FOR UPDATE`, after an
//! `INSERT ... ON CONFLICT DO NOTHING` for a first part), compare the bytes the part shares
//! with stored ones, insert the new bytes and raise `size`, commit. The row lock serializes
//! the appends and the completion of one recording across every auth server: a retried
//! part, or the same part through two servers at once, is stored once; a gap, a conflict,
//! growing past the limit or past completion is refused with the same errors as every
//! store, and rolled back. When `append_part` returns `Ok`, the commit returned: with
//! PostgreSQL's default `synchronous_commit = on` the WAL is flushed, and it is on every
//! synchronous standby the operator configured.
//!
//! # Reads
//! In pages of about [`PAGE_LEN`] bytes, each one query whose rows are cut to the range
//! asked for by the server (`substring`), so memory stays bounded by the answer plus one
//! page, and a read of a header costs one row's slice. Stored bytes never change, so pages
//! read one after another are consistent; a recording still growing is read up to the size
//! seen first.
//!
//! # Connections
//! A small [`Pool`] (shared with the cluster-state backend's code): a transaction needs a
//! connection of its own. A request that failed because the connection broke (a restart, a
//! failover, a cut network) is retried once on a fresh connection, which is safe because
//! appends are idempotent; every request is bounded by the timeout. The password (in the
//! URI, or given apart) is never logged: messages name hosts, ports and database only.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jumpgate_backend::pg::{CheckoutError, PgTarget, Pool};
use tokio_postgres::{Client, GenericClient};
use tracing::{debug, info, warn};

use super::store::{MAX_PART_LEN, RecordingInfo, RecordingStore};
use super::{DEFAULT_MAX_RECORDING_LEN, RecordingError, SessionId};
use crate::BoxFuture;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jumpgate_recordings (
    session_id TEXT PRIMARY KEY,
    size       BIGINT NOT NULL CHECK (size >= 0),
    completed  BOOLEAN NOT NULL DEFAULT FALSE,
    created    TIMESTAMPTZ NOT NULL,
    modified   TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS jumpgate_recordings_modified
    ON jumpgate_recordings (modified, session_id);
CREATE TABLE IF NOT EXISTS jumpgate_recording_parts (
    session_id  TEXT NOT NULL REFERENCES jumpgate_recordings (session_id) ON DELETE CASCADE,
    part_offset BIGINT NOT NULL CHECK (part_offset >= 0),
    data        BYTEA NOT NULL,
    PRIMARY KEY (session_id, part_offset)
);
";

/// Serialises table creation across auth servers starting together (an arbitrary
/// constant: "jg-recs" in ASCII).
const SCHEMA_LOCK: i64 = 0x006a_672d_7265_6373;

/// How long connecting, or one request, may take.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections per store: appends of different recordings run in parallel, up to this.
const POOL_SIZE: usize = 4;

/// About how many bytes one read query returns (plus at most one part).
const PAGE_LEN: u64 = 8 * 1024 * 1024;

/// The PostgreSQL recording store; see the module docs. Cheap to clone; clones share the
/// connections; any number of instances (auth servers) may share one database.
#[derive(Debug, Clone)]
pub struct PostgresRecordingStore {
    inner: Arc<Inner>,
    max_len: u64,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    timeout: Duration,
}

/// How a request failed: the store's answer to the caller, or the database's error.
enum Fail {
    Refused(RecordingError),
    Sql(tokio_postgres::Error),
}

impl From<RecordingError> for Fail {
    fn from(err: RecordingError) -> Fail {
        Fail::Refused(err)
    }
}

impl From<tokio_postgres::Error> for Fail {
    fn from(err: tokio_postgres::Error) -> Fail {
        Fail::Sql(err)
    }
}

type Op<'c, T> = BoxFuture<'c, Result<T, Fail>>;

impl PostgresRecordingStore {
    /// Connects to the database of `uri` (a `postgresql://` URL or libpq `key=value`
    /// pairs, with libpq's TLS parameters: see `jumpgate_backend::pg`) and creates the
    /// tables if missing. Fails with the server named (never the password).
    pub async fn open(uri: &str) -> Result<PostgresRecordingStore, RecordingError> {
        PostgresRecordingStore::open_with(uri, None, DEFAULT_TIMEOUT).await
    }

    /// As [`Self::open`], with a password from elsewhere (it replaces one in `uri`) and a
    /// request timeout.
    pub async fn open_with(
        uri: &str,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<PostgresRecordingStore, RecordingError> {
        let mut target =
            PgTarget::parse(uri, password).map_err(|reason| RecordingError::StoreConfig {
                reason: format!("the postgresql:// audit_sessions_uri is invalid: {reason}"),
            })?;
        if target.config_mut().get_connect_timeout().is_none() {
            target.config_mut().connect_timeout(timeout);
        }
        let store = PostgresRecordingStore {
            inner: Arc::new(Inner {
                pool: Pool::new(target, POOL_SIZE),
                timeout,
            }),
            max_len: DEFAULT_MAX_RECORDING_LEN,
        };
        store
            .run("creating the recording tables", |client| {
                Box::pin(async move {
                    let tx = client.transaction().await?;
                    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
                        .await?;
                    tx.batch_execute(SCHEMA).await?;
                    tx.commit().await?;
                    Ok(())
                })
            })
            .await?;
        info!(endpoint = %store.endpoint(), "session recordings are stored in PostgreSQL");
        Ok(store)
    }

    /// Checks a connection string without connecting (its parameters, and that the TLS
    /// files it names can be read), for the daemon's checks before it binds a socket.
    pub fn check_uri(uri: &str) -> Result<(), RecordingError> {
        PgTarget::parse(uri, None)
            .map(drop)
            .map_err(|reason| RecordingError::StoreConfig {
                reason: format!("the postgresql:// audit_sessions_uri is invalid: {reason}"),
            })
    }

    /// Refuse to grow (and to read) recordings beyond `max_len` bytes.
    pub fn with_max_len(self, max_len: u64) -> PostgresRecordingStore {
        PostgresRecordingStore { max_len, ..self }
    }

    /// The hosts, ports and database this store uses (no password).
    pub fn endpoint(&self) -> &str {
        self.inner.pool.endpoint()
    }

    fn unavailable(&self, action: &str, detail: impl std::fmt::Display) -> RecordingError {
        RecordingError::StoreUnavailable {
            endpoint: format!("postgresql {}", self.endpoint()),
            reason: format!("{action}: {detail}"),
        }
    }

    /// Sorts a database error; `true` if a fresh connection may do better (the server
    /// restarted, failed over, or the network broke).
    fn classify(&self, action: &str, err: &tokio_postgres::Error) -> (RecordingError, bool) {
        let Some(db) = err.as_db_error() else {
            return (
                self.unavailable(action, jumpgate_backend::pg::describe(err)),
                true,
            );
        };
        match db.code().code().get(..2).unwrap_or_default() {
            // Connection exceptions, operator intervention (shutdown), too many connections,
            // read-only transaction (a standby after a failover), serialization failure or
            // deadlock (a retry may pass).
            "08" | "57" | "53" | "25" | "40" => (self.unavailable(action, err), true),
            "28" => (
                RecordingError::StoreConfig {
                    reason: format!(
                        "PostgreSQL at {} refused the login: {}; check the user, password and \
                         client certificate of the postgresql:// audit_sessions_uri",
                        self.endpoint(),
                        jumpgate_backend::pg::describe(err)
                    ),
                },
                false,
            ),
            _ => (
                RecordingError::Database {
                    endpoint: self.endpoint().to_string(),
                    detail: format!("{action}: {}", jumpgate_backend::pg::describe(err)),
                },
                false,
            ),
        }
    }

    /// Runs `op` on a pooled connection within the timeout, once more on a fresh one if the
    /// first failed for connection trouble. Every `op` is safe to run twice.
    async fn run<T, F>(&self, action: &str, op: F) -> Result<T, RecordingError>
    where
        F: for<'c> Fn(&'c mut Client) -> Op<'c, T>,
    {
        let timeout = self.inner.timeout;
        let mut last = None;
        for _attempt in 0..2 {
            let mut guard = match self.inner.pool.checkout(timeout).await {
                Ok(guard) => guard,
                Err(CheckoutError::Busy) => {
                    return Err(self.unavailable(
                        action,
                        format_args!("no free connection within {timeout:?}"),
                    ));
                }
                Err(CheckoutError::ConnectTimeout) => {
                    last = Some(
                        self.unavailable(action, format_args!("no connection within {timeout:?}")),
                    );
                    continue;
                }
                Err(CheckoutError::Connect(err)) => match self.classify(action, &err) {
                    (err, true) => {
                        last = Some(err);
                        continue;
                    }
                    (err, false) => return Err(err),
                },
            };
            let Some(client) = guard.as_mut() else {
                continue;
            };
            let failed = match tokio::time::timeout(timeout, op(client)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(Fail::Refused(err))) => return Err(err),
                Ok(Err(Fail::Sql(err))) => self.classify(action, &err),
                Err(_) => (
                    self.unavailable(action, format_args!("no answer within {timeout:?}")),
                    true,
                ),
            };
            match failed {
                (err, true) => {
                    // Drop the connection: the next attempt makes a fresh one.
                    *guard = None;
                    last = Some(err);
                }
                (err, false) => return Err(err),
            }
        }
        Err(last.unwrap_or_else(|| self.unavailable(action, "no connection")))
    }

    async fn append(
        &self,
        session_id: &SessionId,
        offset: u64,
        bytes: Vec<u8>,
    ) -> Result<u64, RecordingError> {
        if bytes.len() > MAX_PART_LEN {
            return Err(RecordingError::PartTooLarge {
                len: bytes.len(),
                max: MAX_PART_LEN,
            });
        }
        if bytes.is_empty() {
            // Nothing to store: only where the recording ends matters.
            return match self.info(session_id).await? {
                None if offset == 0 => Ok(0),
                None => Err(gap(session_id, offset, 0)),
                Some(info) if offset > info.size => Err(gap(session_id, offset, info.size)),
                Some(info) => Ok(info.size),
            };
        }
        let bytes = Arc::new(bytes);
        let max_len = self.max_len;
        let end = self
            .run("appending a recording part", |client| {
                let (session_id, bytes) = (session_id.clone(), Arc::clone(&bytes));
                Box::pin(
                    async move { append_part(client, &session_id, offset, &bytes, max_len).await },
                )
            })
            .await?;
        Ok(end)
    }

    async fn info(&self, session_id: &SessionId) -> Result<Option<RecordingInfo>, RecordingError> {
        self.run("reading a recording's state", |client| {
            let session_id = session_id.clone();
            Box::pin(async move {
                let row = client
                    .query_opt(
                        "SELECT size, completed, modified FROM jumpgate_recordings
                         WHERE session_id = $1",
                        &[&session_id.as_str()],
                    )
                    .await?;
                row.map(|row| info_from_row(&session_id, &row)).transpose()
            })
        })
        .await
    }

    async fn complete_recording(
        &self,
        session_id: &SessionId,
    ) -> Result<RecordingInfo, RecordingError> {
        let info = self
            .run("completing a recording", |client| {
                let session_id = session_id.clone();
                Box::pin(async move {
                    // The row lock waits for an append in flight: its bytes are in, or it
                    // sees the recording complete and is refused.
                    let row = client
                        .query_opt(
                            "UPDATE jumpgate_recordings SET completed = TRUE
                             WHERE session_id = $1
                             RETURNING size, completed, modified",
                            &[&session_id.as_str()],
                        )
                        .await?;
                    match row {
                        Some(row) => info_from_row(&session_id, &row),
                        None => Err(Fail::Refused(RecordingError::NotFound { session_id })),
                    }
                })
            })
            .await?;
        debug!(%session_id, size = info.size, "recording completed");
        Ok(info)
    }

    async fn list_all(&self) -> Result<Vec<RecordingInfo>, RecordingError> {
        let rows = self
            .run("listing recordings", |client| {
                Box::pin(async move {
                    Ok(client
                        .query(
                            "SELECT session_id, size, completed, modified
                             FROM jumpgate_recordings ORDER BY modified, session_id",
                            &[],
                        )
                        .await?)
                })
            })
            .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row
                .try_get(0)
                .map_err(|err| self.classify("listing recordings", &err).0)?;
            // Only valid ids are ever written; a row edited by hand is skipped, not shown.
            let Ok(session_id) = SessionId::new(&id) else {
                warn!(id = %id.escape_debug(), "skipping a recording row with an invalid session id");
                continue;
            };
            let info = row_info(&session_id, &row, 1).map_err(|fail| match fail {
                Fail::Refused(err) => err,
                Fail::Sql(err) => self.classify("listing recordings", &err).0,
            })?;
            found.push(info);
        }
        Ok(found)
    }

    async fn read_all(&self, session_id: &SessionId) -> Result<Vec<u8>, RecordingError> {
        let Some(info) = self.info(session_id).await? else {
            return Err(RecordingError::NotFound {
                session_id: session_id.clone(),
            });
        };
        if info.size > self.max_len {
            return Err(RecordingError::TooLarge {
                size: info.size,
                max: self.max_len,
            });
        }
        self.read_bytes(session_id, 0, info.size).await
    }

    async fn range(
        &self,
        session_id: &SessionId,
        offset: u64,
        max_len: u64,
    ) -> Result<Vec<u8>, RecordingError> {
        let Some(info) = self.info(session_id).await? else {
            return Err(RecordingError::NotFound {
                session_id: session_id.clone(),
            });
        };
        if offset >= info.size {
            return Ok(Vec::new());
        }
        let to = offset
            .saturating_add(max_len.min(self.max_len))
            .min(info.size);
        self.read_bytes(session_id, offset, to).await
    }

    /// The bytes `[from, to)` (all stored), a page per request.
    async fn read_bytes(
        &self,
        session_id: &SessionId,
        from: u64,
        to: u64,
    ) -> Result<Vec<u8>, RecordingError> {
        let mut out = Vec::with_capacity(usize::try_from(to.saturating_sub(from)).unwrap_or(0));
        let mut pos = from;
        while pos < to {
            let page_end = to.min(pos.saturating_add(PAGE_LEN));
            let page = self
                .run("reading a recording", |client| {
                    let session_id = session_id.clone();
                    Box::pin(async move { read_page(&*client, &session_id, pos, page_end).await })
                })
                .await?;
            pos = pos.saturating_add(len_u64(page.len()));
            out.extend_from_slice(&page);
        }
        Ok(out)
    }
}

fn gap(session_id: &SessionId, offset: u64, stored: u64) -> RecordingError {
    RecordingError::Gap {
        session_id: session_id.clone(),
        offset,
        stored,
    }
}

fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn corrupt(session_id: &SessionId, reason: impl Into<String>) -> Fail {
    Fail::Refused(RecordingError::Corrupt {
        session_id: session_id.clone(),
        reason: reason.into(),
    })
}

fn info_from_row(session_id: &SessionId, row: &tokio_postgres::Row) -> Result<RecordingInfo, Fail> {
    row_info(session_id, row, 0)
}

/// `size, completed, modified` from column `first` on.
fn row_info(
    session_id: &SessionId,
    row: &tokio_postgres::Row,
    first: usize,
) -> Result<RecordingInfo, Fail> {
    let size: i64 = row.try_get(first)?;
    let completed: bool = row.try_get(first + 1)?;
    let modified: SystemTime = row.try_get(first + 2)?;
    let size = u64::try_from(size)
        .map_err(|_| corrupt(session_id, format!("its size is negative ({size})")))?;
    Ok(RecordingInfo {
        session_id: session_id.clone(),
        size,
        completed,
        modified,
    })
}

/// One append, in one transaction; see the module docs.
async fn append_part(
    client: &mut Client,
    session_id: &SessionId,
    offset: u64,
    bytes: &[u8],
    max_len: u64,
) -> Result<u64, Fail> {
    let sid = session_id.as_str();
    let tx = client.transaction().await?;
    if offset == 0 {
        // A first part makes the row, so that there is one to lock; a refusal rolls it back.
        tx.execute(
            "INSERT INTO jumpgate_recordings (session_id, size, completed, created, modified)
             VALUES ($1, 0, FALSE, now(), now())
             ON CONFLICT (session_id) DO NOTHING",
            &[&sid],
        )
        .await?;
    }
    let Some(row) = tx
        .query_opt(
            "SELECT size, completed FROM jumpgate_recordings WHERE session_id = $1 FOR UPDATE",
            &[&sid],
        )
        .await?
    else {
        return Err(gap(session_id, offset, 0).into());
    };
    let stored: i64 = row.try_get(0)?;
    let completed: bool = row.try_get(1)?;
    let stored = u64::try_from(stored)
        .map_err(|_| corrupt(session_id, format!("its size is negative ({stored})")))?;
    if offset > stored {
        return Err(gap(session_id, offset, stored).into());
    }
    let end = offset.saturating_add(len_u64(bytes.len()));
    // Bytes of this part that are already stored must match them.
    let overlap = stored.min(end);
    if overlap > offset {
        let old = read_page(&tx, session_id, offset, overlap).await?;
        if Some(old.as_slice()) != bytes.get(..old.len()) {
            return Err(RecordingError::Conflict {
                session_id: session_id.clone(),
                offset,
            }
            .into());
        }
    }
    if end <= stored {
        return Ok(stored);
    }
    if completed {
        return Err(RecordingError::AlreadyComplete {
            session_id: session_id.clone(),
            stored,
        }
        .into());
    }
    if end > max_len {
        return Err(RecordingError::TooLarge {
            size: end,
            max: max_len,
        }
        .into());
    }
    let new = bytes
        .get(usize::try_from(stored - offset).unwrap_or(usize::MAX)..)
        .unwrap_or_default();
    tx.execute(
        "INSERT INTO jumpgate_recording_parts (session_id, part_offset, data)
         VALUES ($1, $2, $3)",
        &[&sid, &to_i64(stored), &new],
    )
    .await?;
    tx.execute(
        "UPDATE jumpgate_recordings SET size = $2, modified = now() WHERE session_id = $1",
        &[&sid, &to_i64(end)],
    )
    .await?;
    tx.commit().await?;
    debug!(%session_id, offset = stored, len = end - stored, "recording part stored");
    Ok(end)
}

/// The stored bytes `[from, to)` of a recording, or fewer: those of the parts starting
/// before `to`, up to about [`PAGE_LEN`] past `from`. Each row comes cut to the range by
/// the server. Parts tile the recording, so anything missing inside it is damage.
async fn read_page<C: GenericClient + Sync>(
    client: &C,
    session_id: &SessionId,
    from: u64,
    to: u64,
) -> Result<Vec<u8>, Fail> {
    let to = to.min(from.saturating_add(PAGE_LEN));
    let (from_i, to_i) = (to_i64(from), to_i64(to));
    // The part holding byte `from` starts less than MAX_PART_LEN bytes before it, so the
    // primary key's range finds it without a scan of the parts before.
    let window = to_i64(len_u64(MAX_PART_LEN));
    let rows = client
        .query(
            "SELECT part_offset,
                    substring(data
                        FROM (GREATEST($2::bigint - part_offset, 0) + 1)::integer
                        FOR (LEAST(part_offset + octet_length(data), $3::bigint)
                             - GREATEST(part_offset, $2))::integer)
             FROM jumpgate_recording_parts
             WHERE session_id = $1::text
               AND part_offset > $2 - $4::bigint AND part_offset < $3
               AND part_offset + octet_length(data) > $2
             ORDER BY part_offset",
            &[&session_id.as_str(), &from_i, &to_i, &window],
        )
        .await?;
    let mut out = Vec::new();
    let mut pos = from;
    for row in rows {
        let start: i64 = row.try_get(0)?;
        let slice: &[u8] = row.try_get(1)?;
        let start = u64::try_from(start).unwrap_or(0).max(from);
        if start != pos {
            return Err(corrupt(
                session_id,
                format!("the bytes from offset {pos} to {start} are missing"),
            ));
        }
        out.extend_from_slice(slice);
        pos = pos.saturating_add(len_u64(slice.len()));
    }
    if pos < to {
        return Err(corrupt(
            session_id,
            format!("the bytes from offset {pos} to {to} are missing"),
        ));
    }
    Ok(out)
}

impl RecordingStore for PostgresRecordingStore {
    fn append_part<'a>(
        &'a self,
        session_id: &'a SessionId,
        offset: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64, RecordingError>> {
        Box::pin(self.append(session_id, offset, bytes))
    }

    fn complete<'a>(
        &'a self,
        session_id: &'a SessionId,
    ) -> BoxFuture<'a, Result<RecordingInfo, RecordingError>> {
        Box::pin(self.complete_recording(session_id))
    }

    fn stat<'a>(
        &'a self,
        session_id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<RecordingInfo>, RecordingError>> {
        Box::pin(self.info(session_id))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<RecordingInfo>, RecordingError>> {
        Box::pin(self.list_all())
    }

    fn read<'a>(
        &'a self,
        session_id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Vec<u8>, RecordingError>> {
        Box::pin(self.read_all(session_id))
    }

    fn read_range<'a>(
        &'a self,
        session_id: &'a SessionId,
        offset: u64,
        max_len: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, RecordingError>> {
        Box::pin(self.range(session_id, offset, max_len))
    }
}
