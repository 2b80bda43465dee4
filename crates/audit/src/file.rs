//! JSON-lines files, for `audit_events_uri: file://DIR`: one event per line in
//! `DIR/YYYY-MM-DD.log`, the UTC day of the event's own time (not of the write), so a file
//! holds exactly one day whatever the clock did while writing.
//!
//! Every append is written with one `write` of the whole line and `fsync`ed before it
//! returns: no batching, because durability on return is the audit log's promise and the
//! volume (logins, sessions, commands) is far below what a disk syncs per second.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::{AuditEvent, AuditLog, BoxFuture, Error, Page, Result, SearchQuery};

/// The JSON-lines store. Write-only: `search` says to use the SQLite store.
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

fn open_private_append(path: &Path) -> Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(Error::io(path))
}

impl AuditLog for FileAuditLog {
    fn append(&self, event: AuditEvent) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.append_event(event))
    }

    fn search(&self, _query: SearchQuery) -> BoxFuture<'_, Result<Page>> {
        Box::pin(async { Err(Error::SearchUnsupported { store: "file" }) })
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.close_store())
    }
}
