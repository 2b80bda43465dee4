//! The default store: one SQLite file in `data_dir`.
//!
//! One table; the whole event is kept as its JSON (`data`), and the columns searched on are
//! copied out next to it with indexes on (time), (event, time), (user, time), (sid, time).
//! Each index also carries the rowid, so every search walks (time, row) order, which is the
//! order cursors are defined in.
//!
//! WAL with `synchronous=FULL` makes every committed append fsync the WAL, so an event is
//! durable when `append` returns. SQLite calls block, so they run on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params, params_from_iter};

use crate::query::Position;
use crate::{AuditEvent, AuditLog, BoxFuture, Error, Order, Page, Result, SearchQuery};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    event   TEXT NOT NULL,
    user    TEXT,
    sid     TEXT,
    uid     TEXT NOT NULL UNIQUE,
    data    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time_ms);
CREATE INDEX IF NOT EXISTS events_event_time ON events (event, time_ms);
CREATE INDEX IF NOT EXISTS events_user_time ON events (user, time_ms);
CREATE INDEX IF NOT EXISTS events_sid_time ON events (sid, time_ms);
";

/// The SQLite audit store. Cheap to clone; clones share one connection.
#[derive(Debug, Clone)]
pub struct SqliteAuditLog {
    path: PathBuf,
    // `None` once closed. One connection serialises writers, which SQLite does anyway.
    conn: Arc<Mutex<Option<Connection>>>,
}

impl SqliteAuditLog {
    /// Opens (or creates) the store at `path`, creating missing parent directories (0700)
    /// and the file itself with mode 0600: audit events name users and addresses.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteAuditLog> {
        let path = path.as_ref().to_path_buf();
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_connection(&p))
            .await
            .map_err(Error::Task)??;
        Ok(SqliteAuditLog {
            path,
            conn: Arc::new(Mutex::new(Some(conn))),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written (an open
            // transaction rolls back when dropped), so a poisoned lock is still usable.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let conn = guard.as_mut().ok_or(Error::Closed)?;
            f(conn)
        })
        .await
        .map_err(Error::Task)?
    }

    async fn append_event(&self, event: AuditEvent) -> Result<()> {
        let data = event.to_json()?;
        self.run(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO events (time_ms, event, user, sid, uid, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    event.time().unix_millis(),
                    event.event_type().name(),
                    event.user_name(),
                    event.sid(),
                    event.uid().to_string(),
                    data,
                ],
            )
            .map_err(Error::sqlite("appending an event"))?;
            Ok(())
        })
        .await
    }

    async fn search_events(&self, query: SearchQuery) -> Result<Page> {
        let after = query.validate()?;
        self.run(move |conn| search(conn, &query, after)).await
    }

    async fn close_store(&self) -> Result<()> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let taken = conn.lock().unwrap_or_else(|p| p.into_inner()).take();
            let Some(conn) = taken else {
                return Ok(()); // already closed
            };
            // Fold the WAL back into the main file so the database is one self-contained
            // file for backups; the events were already durable in the WAL.
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(Error::sqlite("checkpointing on close"))?;
            conn.close().map_err(|(_, source)| Error::Sqlite {
                action: "closing",
                source,
            })
        })
        .await
        .map_err(Error::Task)?
    }
}

impl AuditLog for SqliteAuditLog {
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

fn open_connection(path: &Path) -> Result<Connection> {
    create_private_file(path)?;
    let conn = Connection::open(path).map_err(Error::sqlite("opening the database"))?;
    // WAL lets searches run beside appends; FULL fsyncs the WAL on every commit.
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .map_err(Error::sqlite("enabling WAL"))?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
        .map_err(Error::sqlite("setting pragmas"))?;
    conn.execute_batch(SCHEMA)
        .map_err(Error::sqlite("creating the schema"))?;
    Ok(conn)
}

/// Creates the database file 0600 before SQLite opens it (SQLite would use the umask), and
/// tightens an existing one. SQLite gives its -wal and -shm files the database's mode.
fn create_private_file(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(parent).map_err(Error::io(parent))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(Error::io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(Error::io(path))?;
    }
    Ok(())
}

fn search(conn: &Connection, query: &SearchQuery, after: Option<Position>) -> Result<Page> {
    let mut sql =
        String::from("SELECT id, time_ms, data FROM events WHERE time_ms >= ? AND time_ms < ?");
    let mut args: Vec<SqlValue> = vec![
        SqlValue::Integer(query.from.unix_millis()),
        SqlValue::Integer(query.to.unix_millis()),
    ];
    if !query.event_types.is_empty() {
        let marks = vec!["?"; query.event_types.len()].join(", ");
        sql.push_str(&format!(" AND event IN ({marks})"));
        args.extend(
            query
                .event_types
                .iter()
                .map(|t| SqlValue::Text(t.name().into())),
        );
    }
    if let Some(user) = &query.user {
        sql.push_str(" AND user = ?");
        args.push(SqlValue::Text(user.clone()));
    }
    if let Some(sid) = &query.session_id {
        sql.push_str(" AND sid = ?");
        args.push(SqlValue::Text(sid.clone()));
    }
    let (cmp, dir) = match query.order {
        Order::Ascending => (">", "ASC"),
        Order::Descending => ("<", "DESC"),
    };
    if let Some(pos) = after {
        sql.push_str(&format!(" AND (time_ms, id) {cmp} (?, ?)"));
        args.push(SqlValue::Integer(pos.time_ms));
        args.push(SqlValue::Integer(pos.row));
    }
    // One extra row tells whether another page exists.
    sql.push_str(&format!(" ORDER BY time_ms {dir}, id {dir} LIMIT ?"));
    args.push(SqlValue::Integer(i64::from(query.limit) + 1));

    let mut stmt = conn
        .prepare(&sql)
        .map_err(Error::sqlite("preparing a search"))?;
    let rows = stmt
        .query_map(params_from_iter(args), |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .map_err(Error::sqlite("searching"))?;

    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    let mut events = Vec::with_capacity(limit.min(1024));
    let mut last = None;
    let mut more = false;
    for row in rows {
        let (id, time_ms, data) = row.map_err(Error::sqlite("reading search results"))?;
        if events.len() == limit {
            more = true;
            break;
        }
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
