//! JSON-lines files, for `audit_events_uri: file://DIR`: one event per line in
//! `DIR/YYYY-MM-DD.log`, the UTC day of the event's own time (not of the write), so a file
//! holds exactly one day whatever the clock did while writing.
//!
//! Every append is written with one `write` of the whole line and `fsync`ed before it
//! returns: no batching, because durability on return is the audit log's promise and the
//! volume (logins, sessions, commands) is far below what a disk syncs per second.
//!
//! Search reads the day files that overlap the queried range, in order, keeping only the
//! best `limit + 1` matches in memory. Events are ordered by (time, line number in their
//! day's file); a cursor is that position, so paging works as on the SQLite store. A
//! retried append writes its line twice: search shows the first line of each `uid` only.
//! A last line without its newline is an append in progress (or one a crash tore, which was
//! never acknowledged): search skips it, and the next open for append cuts it off.

use std::collections::{BinaryHeap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::query::Position;
use crate::{AuditEvent, AuditLog, BoxFuture, Error, Order, Page, Result, SearchQuery, Timestamp};

/// The longest line search reads; longer ones are corrupt (events are a few KiB).
const MAX_LINE_LEN: u64 = 16 * 1024 * 1024;

const DAY_MILLIS: i64 = 24 * 60 * 60 * 1000;

/// The JSON-lines store: one file per UTC day, searchable by scanning the days a query
/// covers.
#[derive(Debug, Clone)]
pub struct FileAuditLog {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    closed: bool,
    /// The file of the day last written, kept open for the next append of that day.
    current: Option<(String, File)>,
}

impl FileAuditLog {
    /// Opens the store in `dir`, creating it (0700) if missing. Files are created 0600.
    pub async fn open(dir: impl AsRef<Path>) -> Result<FileAuditLog> {
        let dir = dir.as_ref().to_path_buf();
        let d = dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(&d).map_err(Error::io(&d))
        })
        .await
        .map_err(Error::Task)??;
        Ok(FileAuditLog {
            dir,
            state: Arc::new(Mutex::new(State::default())),
        })
    }

    /// The directory of an `audit_events_uri` such as `file:///var/lib/jumpgate/log`.
    pub fn dir_from_uri(uri: &str) -> Result<PathBuf> {
        let invalid = |reason: &'static str| Error::InvalidUri {
            uri: uri.to_owned(),
            reason,
        };
        let path = uri
            .strip_prefix("file://")
            .ok_or_else(|| invalid("expected a file:// URI"))?;
        if !path.starts_with('/') {
            return Err(invalid(
                "expected an absolute path, as in file:///var/lib/jumpgate/log",
            ));
        }
        Ok(PathBuf::from(path))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds events of `day` (`YYYY-MM-DD`).
    pub fn file_for_day(&self, day: &str) -> PathBuf {
        self.dir.join(format!("{day}.log"))
    }

    async fn append_event(&self, event: AuditEvent) -> Result<()> {
        let mut line = event.to_json()?;
        line.push('\n');
        let day = event.time().utc_date();
        let path = self.file_for_day(&day);
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || {
            // The lock keeps lines whole and in order; a panic elsewhere cannot leave a
            // half-written line behind it (writes are single calls), so poison is harmless.
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            if state.closed {
                return Err(Error::Closed);
            }
            let file = match &mut state.current {
                Some((open_day, file)) if *open_day == day => file,
                current => {
                    let file = open_private_append(&path)?;
                    &mut current.insert((day, file)).1
                }
            };
            file.write_all(line.as_bytes()).map_err(Error::io(&path))?;
            file.sync_data().map_err(Error::io(&path))
        })
        .await
        .map_err(Error::Task)?
    }

    async fn search_events(&self, query: SearchQuery) -> Result<Page> {
        let after = query.validate()?;
        if self.state.lock().unwrap_or_else(|p| p.into_inner()).closed {
            return Err(Error::Closed);
        }
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || search(&dir, &query, after))
            .await
            .map_err(Error::Task)?
    }

    async fn close_store(&self) -> Result<()> {
        let state = Arc::clone(&self.state);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            state.closed = true;
            match state.current.take() {
                Some((_, file)) => file.sync_all().map_err(Error::io(dir)),
                None => Ok(()),
            }
        })
        .await
        .map_err(Error::Task)?
    }
}

/// Opens a day file for appending, first cutting off a torn last line (a write a crash
/// interrupted, never acknowledged), so the next line starts on a line of its own.
fn open_private_append(path: &Path) -> Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true).read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(Error::io(path))?;
    let whole = last_newline_end(&mut file).map_err(Error::io(path))?;
    let len = file.metadata().map_err(Error::io(path))?.len();
    if whole < len {
        tracing::warn!(
            path = %path.display(),
            bytes = len - whole,
            "cutting off a torn last audit line (an append a crash interrupted)"
        );
        file.set_len(whole).map_err(Error::io(path))?;
        file.sync_data().map_err(Error::io(path))?;
    }
    Ok(file)
}

/// The length of the file up to and including its last newline (0 if it has none).
fn last_newline_end(file: &mut File) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = file.metadata()?.len();
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let len = usize::try_from(end - start).unwrap_or(buf.len());
        let chunk = buf.get_mut(..len).unwrap_or_default();
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(at) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The first instant of a day file's day, from its name (`YYYY-MM-DD.log`).
fn day_start(file_name: &str) -> Option<i64> {
    let day = file_name.strip_suffix(".log")?;
    if day.len() != 10 {
        return None;
    }
    Timestamp::parse_rfc3339(&format!("{day}T00:00:00Z"))
        .ok()
        .map(Timestamp::unix_millis)
}

/// The day files whose day overlaps `[from, to)`, in the query's order.
fn day_files(dir: &Path, query: &SearchQuery) -> Result<Vec<(i64, PathBuf)>> {
    let (from, to) = (query.from.unix_millis(), query.to.unix_millis());
    let mut days = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(days),
        Err(e) => return Err(Error::io(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io(dir))?;
        let name = entry.file_name();
        let Some(start) = name.to_str().and_then(day_start) else {
            continue; // not a day file
        };
        if start < to && start.saturating_add(DAY_MILLIS) > from {
            days.push((start, entry.path()));
        }
    }
    days.sort_unstable_by_key(|(start, _)| *start);
    if query.order == Order::Descending {
        days.reverse();
    }
    Ok(days)
}

/// A match's place in the query's order: smaller comes first, in both orders.
type SortKey = (i64, i64);

fn sort_key(order: Order, position: Position) -> SortKey {
    match order {
        Order::Ascending => (position.time_ms, position.row),
        // Times are within years 0..=9999 and rows positive: negating cannot overflow.
        Order::Descending => (-position.time_ms, -position.row),
    }
}

/// A candidate result, ordered by its key alone (the heap keeps the `limit + 1` smallest).
struct Match {
    key: SortKey,
    position: Position,
    event: AuditEvent,
}

impl PartialEq for Match {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Match {}
impl PartialOrd for Match {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Match {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

fn matches(query: &SearchQuery, event: &AuditEvent) -> bool {
    let time = event.time();
    time >= query.from
        && time < query.to
        && (query.event_types.is_empty() || query.event_types.contains(&event.event_type()))
        && query
            .user
            .as_deref()
            .is_none_or(|user| event.user_name() == Some(user))
        && query
            .session_id
            .as_deref()
            .is_none_or(|sid| event.sid() == Some(sid))
}

fn search(dir: &Path, query: &SearchQuery, after: Option<Position>) -> Result<Page> {
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    let after_key = after.map(|position| sort_key(query.order, position));
    // A max-heap of the best `limit + 1` matches so far: the extra one says "more pages".
    let mut best: BinaryHeap<Match> = BinaryHeap::new();
    for (_, path) in day_files(dir, query)? {
        // Every event of a later day sorts after every event of this one: once the heap is
        // full, later days cannot improve it.
        if best.len() > limit {
            break;
        }
        scan_day(&path, query, after_key, limit, &mut best)?;
    }
    let mut found = best.into_sorted_vec();
    let more = found.len() > limit;
    found.truncate(limit);
    let next_cursor = if more {
        found.last().map(|m| m.position.encode())
    } else {
        None
    };
    Ok(Page {
        events: found.into_iter().map(|m| m.event).collect(),
        next_cursor,
    })
}

fn scan_day(
    path: &Path,
    query: &SearchQuery,
    after_key: Option<SortKey>,
    limit: usize,
    best: &mut BinaryHeap<Match>,
) -> Result<()> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path)(e)),
    };
    let mut reader = BufReader::new(file);
    let mut seen_uids = HashSet::new();
    let mut line = Vec::new();
    let mut row: i64 = 0;
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_LEN + 1)
            .read_until(b'\n', &mut line)
            .map_err(Error::io(path))?;
        if read == 0 {
            return Ok(());
        }
        row += 1;
        if line.last() != Some(&b'\n') {
            if u64::try_from(line.len()).unwrap_or(u64::MAX) > MAX_LINE_LEN {
                return Err(Error::CorruptLine {
                    path: path.to_path_buf(),
                    line: row,
                    reason: format!("longer than {MAX_LINE_LEN} bytes"),
                });
            }
            // The last line, still being written or torn by a crash: not an event yet.
            return Ok(());
        }
        let event: AuditEvent =
            serde_json::from_slice(&line).map_err(|source| Error::CorruptLine {
                path: path.to_path_buf(),
                line: row,
                reason: source.to_string(),
            })?;
        // The first line of a uid is the event; later ones are retries.
        if !seen_uids.insert(event.uid()) || !matches(query, &event) {
            continue;
        }
        let position = Position {
            time_ms: event.time().unix_millis(),
            row,
        };
        let key = sort_key(query.order, position);
        if after_key.is_some_and(|after| key <= after) {
            continue;
        }
        if best.len() > limit && best.peek().is_some_and(|worst| key >= worst.key) {
            continue;
        }
        best.push(Match {
            key,
            position,
            event,
        });
        if best.len() > limit + 1 {
            best.pop();
        }
    }
}

impl AuditLog for FileAuditLog {
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
