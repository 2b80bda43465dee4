//! Audit events in PostgreSQL (`audit_events_uri: postgresql://...`), so that every auth
//! server of a highly available cluster writes to and searches one log.
//!
//! One table, `jumpgate_audit_events`, like the SQLite store's: the whole event as JSON
//! text (`data`; text, not `jsonb`, because `jsonb` refuses the `\u0000` an event may
//! carry) and copies of the searched columns, with an index per filter that ends in
//! (time, id), so every search walks the order cursors are defined in. `id` is a
//! `BIGSERIAL`; `uid` is unique and an append is `INSERT ... ON CONFLICT DO NOTHING`, so a
//! retry (after a lost acknowledgement, or through another auth server) stores nothing twice.
//!
//! Ordering: `id` is handed out when an insert starts, so two auth servers appending in the
//! same millisecond may commit in the other order. A pager that passed (t, 7) never sees a
//! (t, 6) that committed after it read: the same as an event appended behind the cursor on
//! SQLite. Events are written as things happen, so this needs two appends within one
//! millisecond racing one reader.
//!
//! Durability: the insert commits before `append` returns, and PostgreSQL's default
//! `synchronous_commit` flushes the WAL at commit (and waits for synchronous standbys,
//! when the operator configured some).
//!
//! Connection: one `tokio_postgres` client, which pipelines concurrent requests. When it
//! breaks (a restart, a failover, a cut network) the next request connects again; a
//! request that failed on a broken connection is retried once on a fresh one (appends are
//! idempotent, searches read-only). Every request is bounded by a timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jumpgate_backend::pg::PgTarget;
use tokio::sync::Mutex;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::query::Position;
use crate::{AuditEvent, AuditLog, BoxFuture, Error, Order, Page, Result, SearchQuery};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jumpgate_audit_events (
    id        BIGSERIAL PRIMARY KEY,
    time_ms   BIGINT NOT NULL,
    event     TEXT NOT NULL,
    user_name TEXT,
    sid       TEXT,
    uid       UUID NOT NULL UNIQUE,
    data      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jumpgate_audit_events_time
    ON jumpgate_audit_events (time_ms, id);
CREATE INDEX IF NOT EXISTS jumpgate_audit_events_event_time
    ON jumpgate_audit_events (event, time_ms, id);
CREATE INDEX IF NOT EXISTS jumpgate_audit_events_user_time
    ON jumpgate_audit_events (user_name, time_ms, id);
CREATE INDEX IF NOT EXISTS jumpgate_audit_events_sid_time
    ON jumpgate_audit_events (sid, time_ms, id);
";

/// Serialises schema creation across auth servers starting together (an arbitrary
/// constant: "jg-audit" in ASCII).
const SCHEMA_LOCK: i64 = 0x6a67_2d61_7564_6974;

/// How long connecting, or one request, may take.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL audit store. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct PostgresAuditLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    target: PgTarget,
    timeout: Duration,
    /// The one connection; requests pipeline through it from any number of tasks.
    client: Mutex<Option<Arc<Client>>>,
    closed: AtomicBool,
}

/// Whether a failed request may succeed on a fresh connection.
enum Failure {
    Retry(Error),
    Final(Error),
}

impl PostgresAuditLog {
    /// Connects to the database of `uri` (a `postgresql://` URL as libpq takes it) and
    /// creates the table if missing. Fails with the server named (never the password).
    pub async fn open(uri: &str) -> Result<PostgresAuditLog> {
        let target =
            PgTarget::parse(uri, None).map_err(|reason| Error::InvalidPostgresUri { reason })?;
        PostgresAuditLog::open_target(target, DEFAULT_TIMEOUT).await
    }

    /// As [`Self::open`], with a password from elsewhere and a request timeout.
    pub async fn open_with(
        uri: &str,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<PostgresAuditLog> {
        let target = PgTarget::parse(uri, password)
            .map_err(|reason| Error::InvalidPostgresUri { reason })?;
        PostgresAuditLog::open_target(target, timeout).await
    }

    async fn open_target(mut target: PgTarget, timeout: Duration) -> Result<PostgresAuditLog> {
        if target.config_mut().get_connect_timeout().is_none() {
            target.config_mut().connect_timeout(timeout);
        }
        let log = PostgresAuditLog {
            inner: Arc::new(Inner {
                target,
                timeout,
                client: Mutex::new(None),
                closed: AtomicBool::new(false),
            }),
        };
        log.run("creating the audit table", |client: Arc<Client>| {
            Box::pin(async move {
                client
                    .batch_execute(&format!(
                        "BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); {SCHEMA} COMMIT;"
                    ))
                    .await
            })
        })
        .await?;
        Ok(log)
    }

    /// The hosts, ports and database this store writes to.
    pub fn endpoint(&self) -> &str {
        self.inner.target.endpoint()
    }

    fn unavailable(&self, action: &'static str, detail: impl std::fmt::Display) -> Error {
        Error::Unavailable {
            store: "PostgreSQL",
            endpoint: self.endpoint().to_string(),
            action,
            detail: detail.to_string(),
        }
    }

    /// Sorts a database error: connection trouble may pass on a fresh connection; a
    /// refused login or a bad statement will not.
    fn classify(&self, action: &'static str, err: &tokio_postgres::Error) -> Failure {
        let Some(db) = err.as_db_error() else {
            return Failure::Retry(self.unavailable(action, jumpgate_backend::pg::describe(err)));
        };
        let class = db.code().code().get(..2).unwrap_or_default();
        match class {
            // Connection exceptions, operator intervention (shutdown), too many connections,
            // read-only transaction (a standby after failover).
            "08" | "57" | "53" | "25" => Failure::Retry(self.unavailable(action, err)),
            "28" => Failure::Final(Error::Refused {
                store: "PostgreSQL",
                endpoint: self.endpoint().to_string(),
                detail: format!(
                    "{}; check the user, password and client certificate of the \
                     postgresql:// audit_events_uri",
                    jumpgate_backend::pg::describe(err)
                ),
            }),
            _ => Failure::Final(self.unavailable(action, err)),
        }
    }

    async fn client(&self, action: &'static str) -> Result<Arc<Client>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let mut guard = self.inner.client.lock().await;
        if let Some(client) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        *guard = None;
        let connected = tokio::time::timeout(self.inner.timeout, self.inner.target.connect())
            .await
            .map_err(|_| {
                self.unavailable(
                    action,
                    format_args!("no connection within {:?}", self.inner.timeout),
                )
            })?;
        let (client, messages) = connected.map_err(|err| match self.classify(action, &err) {
            Failure::Retry(e) | Failure::Final(e) => e,
        })?;
        jumpgate_backend::pg::drive(messages, self.endpoint().to_string());
        let client = Arc::new(client);
        *guard = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Runs `op` within the timeout, once more on a fresh connection if the first failed
    /// for connection trouble.
    async fn run<'op, T, F>(&self, action: &'static str, op: F) -> Result<T>
    where
        F: Fn(Arc<Client>) -> BoxFuture<'op, std::result::Result<T, tokio_postgres::Error>>,
    {
        let mut last = None;
        for _attempt in 0..2 {
            let client = self.client(action).await?;
            let outcome = tokio::time::timeout(self.inner.timeout, op(client)).await;
            let failure = match outcome {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => self.classify(action, &err),
                Err(_) => Failure::Retry(self.unavailable(
                    action,
                    format_args!("no answer within {:?}", self.inner.timeout),
                )),
            };
            match failure {
                Failure::Final(err) => return Err(err),
                Failure::Retry(err) => {
                    // Drop the connection so the next attempt makes a fresh one.
                    let mut guard = self.inner.client.lock().await;
                    *guard = None;
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or(Error::Closed))
    }

    async fn append_event(&self, event: AuditEvent) -> Result<()> {
        let data = event.to_json()?;
        let time_ms = event.time().unix_millis();
        let kind = event.event_type().name();
        let user = event.user_name().map(searchable);
        let sid = event.sid().map(searchable);
        let uid = event.uid();
        let (data, user, sid) = (&data, &user, &sid);
        self.run("appending an event", |client: Arc<Client>| {
            Box::pin(async move {
                client
                    .execute(
                        "INSERT INTO jumpgate_audit_events
                             (time_ms, event, user_name, sid, uid, data)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (uid) DO NOTHING",
                        &[&time_ms, &kind, user, sid, &uid, data],
                    )
                    .await
                    .map(drop)
            })
        })
        .await
    }

    async fn search_events(&self, query: SearchQuery) -> Result<Page> {
        let after = query.validate()?;
        let (sql, args) = search_statement(&query, after);
        let (sql, args) = (&sql, &args);
        let rows = self
            .run("searching events", |client: Arc<Client>| {
                Box::pin(async move {
                    let params: Vec<&(dyn ToSql + Sync)> = args
                        .iter()
                        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
                        .collect();
                    client.query(sql.as_str(), &params).await
                })
            })
            .await?;
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let mut events = Vec::with_capacity(limit.min(1024));
        let mut last = None;
        let mut more = false;
        for row in rows {
            if events.len() == limit {
                more = true;
                break;
            }
            let read = |err: tokio_postgres::Error| self.unavailable("reading search results", err);
            let id: i64 = row.try_get(0).map_err(read)?;
            let time_ms: i64 = row.try_get(1).map_err(read)?;
            let data: String = row.try_get(2).map_err(read)?;
            let event: AuditEvent =
                serde_json::from_str(&data).map_err(|source| Error::Corrupt { row: id, source })?;
            events.push(event);
            last = Some(Position { time_ms, row: id });
        }
        Ok(Page {
            events,
            next_cursor: if more {
                last.map(Position::encode)
            } else {
                None
            },
        })
    }

    async fn close_store(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        // Dropping the client ends the connection; appends already committed.
        self.inner.client.lock().await.take();
        Ok(())
    }
}

/// PostgreSQL text cannot hold NUL: the search columns keep U+FFFD in its place (the event
/// itself, in `data`, keeps it escaped in JSON). Searches map their filter the same way.
fn searchable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

type Arg = Box<dyn ToSql + Sync + Send>;

fn search_statement(query: &SearchQuery, after: Option<Position>) -> (String, Vec<Arg>) {
    let mut sql = String::from(
        "SELECT id, time_ms, data FROM jumpgate_audit_events WHERE time_ms >= $1 AND time_ms < $2",
    );
    let mut args: Vec<Arg> = vec![
        Box::new(query.from.unix_millis()),
        Box::new(query.to.unix_millis()),
    ];
    let next = |args: &mut Vec<Arg>, value: Arg| {
        args.push(value);
        format!("${}", args.len())
    };
    if !query.event_types.is_empty() {
        let names: Vec<String> = query
            .event_types
            .iter()
            .map(|t| t.name().to_string())
            .collect();
        let mark = next(&mut args, Box::new(names));
        sql.push_str(&format!(" AND event = ANY({mark})"));
    }
    if let Some(user) = &query.user {
        let mark = next(&mut args, Box::new(searchable(user)));
        sql.push_str(&format!(" AND user_name = {mark}"));
    }
    if let Some(sid) = &query.session_id {
        let mark = next(&mut args, Box::new(searchable(sid)));
        sql.push_str(&format!(" AND sid = {mark}"));
    }
    let (cmp, dir) = match query.order {
        Order::Ascending => (">", "ASC"),
        Order::Descending => ("<", "DESC"),
    };
    if let Some(pos) = after {
        let time = next(&mut args, Box::new(pos.time_ms));
        let row = next(&mut args, Box::new(pos.row));
        sql.push_str(&format!(" AND (time_ms, id) {cmp} ({time}, {row})"));
    }
    // One extra row tells whether another page exists.
    let limit = next(&mut args, Box::new(i64::from(query.limit) + 1));
    sql.push_str(&format!(" ORDER BY time_ms {dir}, id {dir} LIMIT {limit}"));
    (sql, args)
}

impl AuditLog for PostgresAuditLog {
    fn append(&self, event: AuditEvent) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.append_event(event))
    }

    fn search(&self, query: SearchQuery) -> BoxFuture<'_, Result<Page>> {
        Box::pin(self.search_events(query))
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.close_store())
    }
}
