//! Where auth keeps recordings: the [`RecordingStore`] interface and its file implementation.
//!
//! A recording is uploaded in parts, each at the offset where the previous one ended. Retries
//! are safe: a part that is already stored (the acknowledgement was lost) is acknowledged
//! again, and one that overlaps the end of what is stored appends only its new bytes, after
//! checking that the overlap is identical. A part that would leave a gap is refused with the
//! stored length, so the uploader knows where to resume.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::SystemTime;

use crate::BoxFuture;

use super::{
    DEFAULT_MAX_RECORDING_LEN, Header, MAX_LINE_LEN, ParseOptions, RecordingError, SessionId,
    parse_cast,
};

/// The largest part [`RecordingStore::append_part`] accepts.
pub const MAX_PART_LEN: usize = 1024 * 1024;

/// What the store knows about one recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    pub session_id: SessionId,
    /// Bytes stored so far.
    pub size: u64,
    /// [`RecordingStore::complete`] was called: the recording will not grow.
    pub completed: bool,
    /// When it was last written.
    pub modified: SystemTime,
}

/// The recordings store on the auth side. Object-safe (boxed futures, like
/// [`crate::AuditLog`]), so auth holds an `Arc<dyn RecordingStore>` chosen by config.
pub trait RecordingStore: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` at `offset` and returns the recording's new length. `offset` must be at
    /// most the stored length: see the module docs for retries and overlaps. At most
    /// [`MAX_PART_LEN`] bytes. When this returns `Ok`, the bytes are durable.
    fn append_part<'a>(
        &'a self,
        session_id: &'a SessionId,
        offset: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64, RecordingError>>;

    /// Marks the recording complete (idempotent) and makes it durable.
    fn complete<'a>(
        &'a self,
        session_id: &'a SessionId,
    ) -> BoxFuture<'a, Result<RecordingInfo, RecordingError>>;

    /// One recording's state; `None` if nothing was stored for it. An uploader that lost
    /// track of what was acknowledged resumes from its `size`.
    fn stat<'a>(
        &'a self,
        session_id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<RecordingInfo>, RecordingError>>;

    /// Every recording, oldest first.
    fn list(&self) -> BoxFuture<'_, Result<Vec<RecordingInfo>, RecordingError>>;

    /// The whole recording, if it is within the store's size limit. A recording still being
    /// uploaded may end in the middle of a line: parse it with [`super::ParseOptions::tolerant`].
    fn read<'a>(
        &'a self,
        session_id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Vec<u8>, RecordingError>>;

    /// Up to `max_len` bytes of the recording from `offset`: fewer at its end, none from past
    /// it. For reading a part of a recording (its header) without all of it.
    fn read_range<'a>(
        &'a self,
        session_id: &'a SessionId,
        offset: u64,
        max_len: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, RecordingError>>;
}

/// What [`read_header`] reads first: real headers are a few hundred bytes.
const HEADER_PROBE_LEN: u64 = 4096;

/// The header of a stored recording, read without the rest of it: what auth needs to decide
/// who may see a recording (its [`SessionMeta`](super::SessionMeta) names the user). A header
/// still being uploaded, or malformed, is an error naming the problem.
pub async fn read_header(
    store: &dyn RecordingStore,
    session_id: &SessionId,
) -> Result<Header, RecordingError> {
    let mut head = store.read_range(session_id, 0, HEADER_PROBE_LEN).await?;
    if !head.contains(&b'\n') && len_u64(head.len()) == HEADER_PROBE_LEN {
        // A long header (a long command): read up to the longest line allowed, and one byte
        // more so that a longer one is reported as such.
        let max = len_u64(MAX_LINE_LEN).saturating_add(1);
        head = store.read_range(session_id, 0, max).await?;
    }
    let line = match head.iter().position(|&b| b == b'\n') {
        Some(end) => head.get(..end).unwrap_or_default(),
        None => &head,
    };
    Ok(parse_cast(line, &ParseOptions::strict())?.header)
}

/// Recordings as files: `DIR/<session_id>.cast` holds the bytes, and an empty
/// `DIR/<session_id>.complete` marks a completed recording. The directory is created 0700 and
/// the files 0600. One auth process owns the directory: writes to one recording are serialized
/// inside this process, not across processes.
#[derive(Debug, Clone)]
pub struct FileRecordingStore {
    dir: PathBuf,
    max_len: u64,
    locks: Arc<Mutex<HashMap<SessionId, Weak<tokio::sync::Mutex<()>>>>>,
}

impl FileRecordingStore {
    /// Opens the store in `dir`, creating it (0700) if missing. Recordings may grow to
    /// [`DEFAULT_MAX_RECORDING_LEN`] bytes.
    pub async fn open(dir: impl AsRef<Path>) -> Result<FileRecordingStore, RecordingError> {
        let dir = dir.as_ref().to_path_buf();
        let d = dir.clone();
        blocking(move || {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(&d).map_err(RecordingError::io(&d))
        })
        .await?;
        Ok(FileRecordingStore {
            dir,
            max_len: DEFAULT_MAX_RECORDING_LEN,
            locks: Arc::default(),
        })
    }

    /// Refuse to grow (and to read) recordings beyond `max_len` bytes.
    pub fn with_max_len(self, max_len: u64) -> FileRecordingStore {
        FileRecordingStore { max_len, ..self }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding a recording's bytes.
    pub fn cast_path(&self, session_id: &SessionId) -> PathBuf {
        self.dir.join(format!("{session_id}.cast"))
    }

    fn complete_path(&self, session_id: &SessionId) -> PathBuf {
        self.dir.join(format!("{session_id}.complete"))
    }

    /// The lock serializing writes to one recording. Entries of finished writers are dropped
    /// when a new one is made, so the map only holds recordings being written.
    fn lock(&self, session_id: &SessionId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lock) = locks.get(session_id).and_then(Weak::upgrade) {
            return lock;
        }
        locks.retain(|_, lock| lock.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(session_id.clone(), Arc::downgrade(&lock));
        lock
    }

    fn paths(&self, session_id: &SessionId) -> Paths {
        Paths {
            session_id: session_id.clone(),
            dir: self.dir.clone(),
            cast: self.cast_path(session_id),
            complete: self.complete_path(session_id),
        }
    }
}

impl RecordingStore for FileRecordingStore {
    fn append_part<'a>(
        &'a self,
        session_id: &'a SessionId,
        offset: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64, RecordingError>> {
        Box::pin(async move {
            if bytes.len() > MAX_PART_LEN {
                return Err(RecordingError::PartTooLarge {
                    len: bytes.len(),
                    max: MAX_PART_LEN,
                });
            }
            let lock = self.lock(session_id);
            let _guard = lock.lock().await;
            let paths = self.paths(session_id);
            let max_len = self.max_len;
            blocking(move || append_blocking(&paths, offset, &bytes, max_len)).await
        })
    }

    fn complete<'a>(
        &'a self,
        session_id: &'a SessionId,
    ) -> BoxFuture<'a, Result<RecordingInfo, RecordingError>> {
        Box::pin(async move {
            let lock = self.lock(session_id);
            let _guard = lock.lock().await;
            let paths = self.paths(session_id);
            blocking(move || complete_blocking(&paths)).await
        })
    }

    fn stat<'a>(
        &'a self,
        session_id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<RecordingInfo>, RecordingError>> {
        Box::pin(async move {
            let paths = self.paths(session_id);
            blocking(move || stat_blocking(&paths)).await
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<RecordingInfo>, RecordingError>> {
        Box::pin(async move {
            let dir = self.dir.clone();
            blocking(move || list_blocking(&dir)).await
        })
    }

    fn read<'a>(
        &'a self,
        session_id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Vec<u8>, RecordingError>> {
        Box::pin(async move {
            let paths = self.paths(session_id);
            let max_len = self.max_len;
            blocking(move || read_blocking(&paths, max_len)).await
        })
    }

    fn read_range<'a>(
        &'a self,
        session_id: &'a SessionId,
        offset: u64,
        max_len: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, RecordingError>> {
        Box::pin(async move {
            let paths = self.paths(session_id);
            // Never more than a whole recording may hold.
            let max_len = max_len.min(self.max_len);
            blocking(move || read_range_blocking(&paths, offset, max_len)).await
        })
    }
}

#[derive(Debug)]
struct Paths {
    session_id: SessionId,
    dir: PathBuf,
    cast: PathBuf,
    complete: PathBuf,
}

impl Paths {
    fn not_found(&self) -> RecordingError {
        RecordingError::NotFound {
            session_id: self.session_id.clone(),
        }
    }
}

async fn blocking<T, F>(f: F) -> Result<T, RecordingError>
where
    F: FnOnce() -> Result<T, RecordingError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(RecordingError::Task)?
}

fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

fn append_blocking(
    paths: &Paths,
    offset: u64,
    bytes: &[u8],
    max_len: u64,
) -> Result<u64, RecordingError> {
    let io = || RecordingError::io(&paths.cast);
    let gap = |stored| RecordingError::Gap {
        session_id: paths.session_id.clone(),
        offset,
        stored,
    };
    let (mut file, created) = match OpenOptions::new().read(true).write(true).open(&paths.cast) {
        Ok(file) => (file, false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if offset > 0 {
                return Err(gap(0));
            }
            if bytes.is_empty() {
                return Ok(0);
            }
            let mut open = OpenOptions::new();
            open.read(true).write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
            (open.open(&paths.cast).map_err(io())?, true)
        }
        Err(e) => return Err(io()(e)),
    };
    let stored = file.metadata().map_err(io())?.len();
    if offset > stored {
        return Err(gap(stored));
    }
    // Bytes of this part that are already stored must match what is there.
    let overlap = usize::try_from(stored - offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let (old, new) = bytes.split_at_checked(overlap).unwrap_or((bytes, &[]));
    if !old.is_empty() {
        let mut stored_bytes = vec![0; old.len()];
        file.seek(SeekFrom::Start(offset)).map_err(io())?;
        file.read_exact(&mut stored_bytes).map_err(io())?;
        if stored_bytes != old {
            return Err(RecordingError::Conflict {
                session_id: paths.session_id.clone(),
                offset,
            });
        }
    }
    if new.is_empty() {
        return Ok(stored);
    }
    if paths.complete.try_exists().map_err(io())? {
        return Err(RecordingError::AlreadyComplete {
            session_id: paths.session_id.clone(),
            stored,
        });
    }
    let new_len = stored.saturating_add(len_u64(new.len()));
    if new_len > max_len {
        return Err(RecordingError::TooLarge {
            size: new_len,
            max: max_len,
        });
    }
    file.seek(SeekFrom::Start(stored)).map_err(io())?;
    file.write_all(new).map_err(io())?;
    file.sync_data().map_err(io())?;
    if created {
        sync_dir(&paths.dir)?;
    }
    Ok(new_len)
}

fn complete_blocking(paths: &Paths) -> Result<RecordingInfo, RecordingError> {
    let io = || RecordingError::io(&paths.cast);
    let file = match File::open(&paths.cast) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(paths.not_found()),
        Err(e) => return Err(io()(e)),
    };
    file.sync_all().map_err(io())?;
    let meta = file.metadata().map_err(io())?;
    let mut open = OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let marker = open
        .open(&paths.complete)
        .map_err(RecordingError::io(&paths.complete))?;
    marker
        .sync_all()
        .map_err(RecordingError::io(&paths.complete))?;
    sync_dir(&paths.dir)?;
    Ok(RecordingInfo {
        session_id: paths.session_id.clone(),
        size: meta.len(),
        completed: true,
        modified: meta.modified().map_err(io())?,
    })
}

fn stat_blocking(paths: &Paths) -> Result<Option<RecordingInfo>, RecordingError> {
    let io = || RecordingError::io(&paths.cast);
    let meta = match fs::metadata(&paths.cast) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io()(e)),
    };
    Ok(Some(RecordingInfo {
        session_id: paths.session_id.clone(),
        size: meta.len(),
        completed: paths
            .complete
            .try_exists()
            .map_err(RecordingError::io(&paths.complete))?,
        modified: meta.modified().map_err(io())?,
    }))
}

fn list_blocking(dir: &Path) -> Result<Vec<RecordingInfo>, RecordingError> {
    let io = || RecordingError::io(dir);
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io())? {
        let entry = entry.map_err(io())?;
        let name = entry.file_name();
        // Anything that is not `<valid id>.cast` (a marker, a stray file) is not a recording.
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".cast")) else {
            continue;
        };
        let Ok(session_id) = SessionId::new(id) else {
            continue;
        };
        let meta = entry.metadata().map_err(RecordingError::io(entry.path()))?;
        if !meta.is_file() {
            continue;
        }
        let complete = dir.join(format!("{session_id}.complete"));
        found.push(RecordingInfo {
            session_id,
            size: meta.len(),
            completed: complete
                .try_exists()
                .map_err(RecordingError::io(&complete))?,
            modified: meta.modified().map_err(RecordingError::io(entry.path()))?,
        });
    }
    found.sort_by(|a, b| (a.modified, &a.session_id).cmp(&(b.modified, &b.session_id)));
    Ok(found)
}

fn read_blocking(paths: &Paths, max_len: u64) -> Result<Vec<u8>, RecordingError> {
    let io = || RecordingError::io(&paths.cast);
    let file = match File::open(&paths.cast) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(paths.not_found()),
        Err(e) => return Err(io()(e)),
    };
    let size = file.metadata().map_err(io())?.len();
    if size > max_len {
        return Err(RecordingError::TooLarge { size, max: max_len });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // The file may grow while being read: read no more than the limit allows.
    file.take(max_len.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io())?;
    let read = len_u64(bytes.len());
    if read > max_len {
        return Err(RecordingError::TooLarge {
            size: read,
            max: max_len,
        });
    }
    Ok(bytes)
}

fn read_range_blocking(
    paths: &Paths,
    offset: u64,
    max_len: u64,
) -> Result<Vec<u8>, RecordingError> {
    let io = || RecordingError::io(&paths.cast);
    let mut file = match File::open(&paths.cast) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(paths.not_found()),
        Err(e) => return Err(io()(e)),
    };
    let size = file.metadata().map_err(io())?.len();
    if offset >= size {
        return Ok(Vec::new());
    }
    file.seek(SeekFrom::Start(offset)).map_err(io())?;
    let want = max_len.min(size.saturating_sub(offset));
    let mut bytes = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
    file.take(want).read_to_end(&mut bytes).map_err(io())?;
    Ok(bytes)
}

/// Makes a new directory entry durable.
fn sync_dir(dir: &Path) -> Result<(), RecordingError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(RecordingError::io(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
