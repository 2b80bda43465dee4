//! The node's local copy of a recording: lines are buffered in memory, written to the spool
//! file when the buffer fills or the flush interval passed, and synced to disk at the end.
//! An uploader reads the file back from the last acknowledged offset with [`read_part`], during
//! the session or after a crash, and sends the parts to a [`super::RecordingStore`].
//!
//! The relay task should not await disk writes itself (DESIGN.md: nothing on the hot path
//! blocks on disk): the node feeds events to one recorder task per session through a channel,
//! and that task owns the [`RecordingWriter`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::time::Instant;

use super::{CastEncoder, Header, RecordingError};

/// When a [`SpoolFile`] writes its buffer to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Write once this much is buffered.
    pub flush_bytes: usize,
    /// Write on the next append once the last write is this old. For an idle session, call
    /// [`RecordingWriter::flush`] from a timer as well.
    pub flush_interval: Duration,
}

impl Default for SpoolOptions {
    /// 64 KiB or 2 s, whichever comes first.
    fn default() -> SpoolOptions {
        SpoolOptions {
            flush_bytes: 64 * 1024,
            flush_interval: Duration::from_secs(2),
        }
    }
}

/// An append-only file with a write buffer. Created 0600; never overwrites an existing file.
#[derive(Debug)]
pub struct SpoolFile {
    path: PathBuf,
    file: File,
    buffer: Vec<u8>,
    flushed: u64,
    last_flush: Instant,
    options: SpoolOptions,
    /// A write failed: how much of the buffer reached the file is unknown, so writing more
    /// could only produce a corrupt recording.
    failed: bool,
}

impl SpoolFile {
    /// Creates the file (its directory must exist); fails if it already exists, so two
    /// sessions can never write one file.
    pub async fn create(
        path: impl Into<PathBuf>,
        options: SpoolOptions,
    ) -> Result<SpoolFile, RecordingError> {
        let path = path.into();
        let mut open = OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        open.mode(0o600);
        let file = open.open(&path).await.map_err(RecordingError::io(&path))?;
        Ok(SpoolFile {
            path,
            file,
            buffer: Vec::with_capacity(options.flush_bytes),
            flushed: 0,
            last_flush: Instant::now(),
            options,
            failed: false,
        })
    }

    /// Buffers `bytes`, writing the buffer out if it is full or old.
    pub async fn append(&mut self, bytes: &[u8]) -> Result<(), RecordingError> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= self.options.flush_bytes
            || self.last_flush.elapsed() >= self.options.flush_interval
        {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the buffer to the file (not synced: see [`SpoolFile::finish`]). After a failed
    /// write every later call fails too: end the recording.
    pub async fn flush(&mut self) -> Result<(), RecordingError> {
        if self.failed {
            return Err(RecordingError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(
                    "an earlier write to this spool file failed; the recording is incomplete",
                ),
            });
        }
        self.last_flush = Instant::now();
        if self.buffer.is_empty() {
            return Ok(());
        }
        let written = match self.file.write_all(&self.buffer).await {
            Ok(()) => self.file.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            self.failed = true;
            return Err(RecordingError::io(&self.path)(e));
        }
        self.flushed = self
            .flushed
            .saturating_add(u64::try_from(self.buffer.len()).unwrap_or(u64::MAX));
        self.buffer.clear();
        Ok(())
    }

    /// Flushes and syncs the data to disk; returns the file's length.
    pub async fn finish(mut self) -> Result<u64, RecordingError> {
        self.flush().await?;
        self.file
            .sync_data()
            .await
            .map_err(RecordingError::io(&self.path))?;
        Ok(self.flushed)
    }

    /// Bytes written to the file so far (what [`read_part`] can see).
    pub fn flushed_len(&self) -> u64 {
        self.flushed
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Up to `max_len` bytes of the file at `path` from `offset`; fewer at the end of the file,
/// none past it. Parts need not end at a line boundary: the store only appends bytes.
pub async fn read_part(
    path: &Path,
    offset: u64,
    max_len: usize,
) -> Result<Vec<u8>, RecordingError> {
    let io = || RecordingError::io(path);
    let mut file = File::open(path).await.map_err(io())?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(io())?;
    let mut part = Vec::new();
    file.take(u64::try_from(max_len).unwrap_or(u64::MAX))
        .read_to_end(&mut part)
        .await
        .map_err(io())?;
    Ok(part)
}

/// A session's recording on the node: a [`CastEncoder`] writing into a [`SpoolFile`].
#[derive(Debug)]
pub struct RecordingWriter {
    encoder: CastEncoder,
    spool: SpoolFile,
    line: Vec<u8>,
}

impl RecordingWriter {
    /// Creates the spool file at `path` and writes the header.
    pub async fn create(
        path: impl Into<PathBuf>,
        header: &Header,
        options: SpoolOptions,
    ) -> Result<RecordingWriter, RecordingError> {
        let mut spool = SpoolFile::create(path, options).await?;
        let mut line = Vec::new();
        CastEncoder::header(header, &mut line);
        spool.append(&line).await?;
        line.clear();
        Ok(RecordingWriter {
            encoder: CastEncoder::new(),
            spool,
            line,
        })
    }

    /// Terminal output at `at` since the session started.
    pub async fn output(&mut self, at: Duration, bytes: &[u8]) -> Result<(), RecordingError> {
        self.encoder.output(at, bytes, &mut self.line);
        self.write().await
    }

    /// What the user typed.
    pub async fn input(&mut self, at: Duration, bytes: &[u8]) -> Result<(), RecordingError> {
        self.encoder.input(at, bytes, &mut self.line);
        self.write().await
    }

    pub async fn resize(
        &mut self,
        at: Duration,
        cols: u16,
        rows: u16,
    ) -> Result<(), RecordingError> {
        self.encoder.resize(at, cols, rows, &mut self.line);
        self.write().await
    }

    pub async fn marker(&mut self, at: Duration, label: &str) -> Result<(), RecordingError> {
        self.encoder.marker(at, label, &mut self.line);
        self.write().await
    }

    /// Writes buffered lines to the file now (call it from a timer for idle sessions).
    pub async fn flush(&mut self) -> Result<(), RecordingError> {
        self.spool.flush().await
    }

    /// Ends the recording: pending partial UTF-8 is written as U+FFFD, everything is flushed
    /// and synced. Returns the file's final length; upload up to it, then
    /// [`super::RecordingStore::complete`].
    pub async fn finish(mut self, at: Duration) -> Result<u64, RecordingError> {
        self.encoder.finish(at, &mut self.line);
        self.spool.append(&self.line).await?;
        self.spool.finish().await
    }

    pub fn flushed_len(&self) -> u64 {
        self.spool.flushed_len()
    }

    pub fn path(&self) -> &Path {
        self.spool.path()
    }

    async fn write(&mut self) -> Result<(), RecordingError> {
        if self.line.is_empty() {
            return Ok(());
        }
        let result = self.spool.append(&self.line).await;
        self.line.clear();
        result
    }
}
