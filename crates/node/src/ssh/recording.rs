//! Recording sessions: every session with a PTY is written as an asciicast v2 file to
//! the node's own disk first (`DATA_DIR/log/upload/sessions/<sid>.cast`), then uploaded
//! to the auth service in parts. The disk copy is what makes a recording survive a
//! dropped tunnel, an unreachable auth service, or a node restart: the uploader sends
//! whatever is not yet stored, resuming at the offset auth acknowledges, and deletes the
//! local copy only once auth holds the complete recording.
//!
//! The SSH relay never waits for the disk: output goes to the recorder task through an
//! unbounded channel (the disk is faster than any terminal).

use bytes::Bytes;
use jumpgate_api::{AuthClient, mirror::Connect, proto};
use jumpgate_audit::recording::{
    Header, MAX_PART_LEN, RecordingWriter, SessionId, SessionMeta, SpoolOptions, read_part,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

const FLUSH_EVERY: Duration = Duration::from_secs(2);
const UPLOAD_EVERY: Duration = Duration::from_secs(5);
/// Marks a local recording whose session has ended.
const DONE_SUFFIX: &str = "done";

/// What a session sends its recorder.
#[derive(Debug)]
enum Event {
    Output(Duration, Bytes),
    Input(Duration, Bytes),
    Resize(Duration, u16, u16),
}

/// A session's handle on its recording; dropping it ends the recording.
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    events: mpsc::UnboundedSender<Event>,
    record_input: bool,
}

impl Recorder {
    pub fn output(&self, bytes: &Bytes) {
        let _ = self
            .events
            .send(Event::Output(self.started.elapsed(), bytes.clone()));
    }

    pub fn input(&self, bytes: &[u8]) {
        if self.record_input {
            let _ = self.events.send(Event::Input(
                self.started.elapsed(),
                Bytes::copy_from_slice(bytes),
            ));
        }
    }

    pub fn resize(&self, cols: u32, rows: u32) {
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        let _ = self.events.send(Event::Resize(
            self.started.elapsed(),
            clamp(cols),
            clamp(rows),
        ));
    }
}

/// The node's recordings: where they are spooled, and the uploader's wake-up.
#[derive(Debug, Clone)]
pub struct Recordings {
    dir: PathBuf,
    wake: Arc<Notify>,
    /// Record what users type, too (off by default: it holds passwords typed at prompts).
    record_input: bool,
}

/// What a recording's header says about its session.
#[derive(Debug, Clone)]
pub struct RecordingStart {
    pub session_id: String,
    pub user: String,
    pub login: String,
    pub node: String,
    pub node_uuid: String,
    pub cluster: String,
    pub cols: u32,
    pub rows: u32,
    pub term: String,
    pub command: Option<String>,
}

impl Recordings {
    /// Spools under `data_dir/log/upload/sessions/`. Call once at start, before any
    /// session: a recording left there by an earlier run (the node crashed or was
    /// killed mid-session) is finished as it is, so it gets uploaded and completed.
    pub fn new(data_dir: &Path, record_input: bool) -> Recordings {
        let dir = data_dir.join("log").join("upload").join("sessions");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for path in entries.flatten().map(|entry| entry.path()) {
                let done = path.with_extension(DONE_SUFFIX);
                if path.extension().is_some_and(|ext| ext == "cast") && !done.exists() {
                    info!(recording = %path.display(), "a session recording from before a restart; uploading it as it is");
                    if let Err(err) = std::fs::write(&done, b"") {
                        warn!(%err, "cannot mark a recording complete");
                    }
                }
            }
        }
        Recordings {
            dir,
            wake: Arc::new(Notify::new()),
            record_input,
        }
    }

    /// Starts recording a session; `None` (logged) when the session id is unusable.
    pub fn start(&self, start: RecordingStart) -> Option<Recorder> {
        let session_id = match SessionId::new(start.session_id.clone()) {
            Ok(id) => id,
            Err(err) => {
                warn!(%err, "cannot record a session");
                return None;
            }
        };
        let clamp =
            |v: u32, default: u16| u16::try_from(v).ok().filter(|v| *v > 0).unwrap_or(default);
        let mut header = Header::new(clamp(start.cols, 80), clamp(start.rows, 24));
        header.timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        header.env.insert("TERM".to_string(), start.term.clone());
        header.command = start.command.clone();
        header.title = Some(format!("{}@{} ({})", start.login, start.node, start.user));
        header.jumpgate = Some(SessionMeta {
            session_id: session_id.clone(),
            user: start.user,
            login: start.login,
            node: start.node,
            node_uuid: start.node_uuid,
            cluster: start.cluster,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_recording(
            self.dir.clone(),
            session_id,
            header,
            rx,
            self.wake.clone(),
        ));
        Some(Recorder {
            started: Instant::now(),
            events: tx,
            record_input: self.record_input,
        })
    }

    /// Uploads spooled recordings until `stop` resolves: at once when a session ends,
    /// and every few seconds (live sessions, and retries while auth is away).
    pub async fn upload(self, connect: Connect, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut client: Option<AuthClient> = None;
        let mut progress = Progress::default();
        loop {
            if let Err(err) = self.upload_pass(&mut client, &connect, &mut progress).await {
                debug!(%err, "recording upload pass incomplete; will retry");
                client = None;
            }
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(UPLOAD_EVERY) => {}
            }
        }
    }

    async fn upload_pass(
        &self,
        client: &mut Option<AuthClient>,
        connect: &Connect,
        progress: &mut Progress,
    ) -> Result<(), UploadError> {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else {
            return Ok(()); // nothing recorded yet
        };
        let mut casts = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "cast") {
                casts.push(path);
            }
        }
        // Oldest session ids first is not knowable from v4 UUIDs; a fixed order at least
        // makes every pass try the same recordings in the same order.
        casts.sort();
        let mut failed = None;
        for path in casts {
            let Some(session) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if client.is_none() {
                *client = Some(connect().await?);
            }
            let Some(api) = client.as_mut() else { continue };
            // One recording's failure does not hold up the others: each is tried in
            // turn, every pass. A failed one stays in the spool (nothing is deleted that
            // auth has not stored) and is tried again next pass.
            match upload_one(api, &path, &session, progress).await {
                Ok(()) => {
                    progress.refused.remove(&session);
                }
                Err(err) if err.is_transient() => {
                    // Auth away, or a session whose session.start has not reached it yet.
                    debug!(%session, %err, "recording not uploaded yet; retried next pass");
                    failed = Some(err);
                }
                Err(err) => {
                    // Said once, not every few seconds.
                    if progress.refused.insert(session.clone()) {
                        warn!(%session, %err, "a session recording was refused; it stays in the spool and is retried, the others go on");
                    }
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// What the uploader knows between passes.
#[derive(Debug, Default)]
struct Progress {
    /// The length auth has stored, per session.
    acknowledged: HashMap<String, u64>,
    /// Sessions whose last upload was refused (warned about once).
    refused: std::collections::HashSet<String>,
}

/// Uploads what is new of one spooled recording, and completes it once the session has
/// ended and everything is stored (then the spool file goes).
async fn upload_one(
    api: &mut AuthClient,
    path: &Path,
    session: &str,
    progress: &mut Progress,
) -> Result<(), UploadError> {
    // Read "done" before the data: a session that ends meanwhile is finished on the next
    // pass, never completed with its tail missing.
    let done_path = path.with_extension(DONE_SUFFIX);
    let done = tokio::fs::try_exists(&done_path).await.unwrap_or(false);
    let mut offset = progress.acknowledged.get(session).copied().unwrap_or(0);
    loop {
        let part = read_part(path, offset, MAX_PART_LEN)
            .await
            .map_err(UploadError::Read)?;
        let last = part.len() < MAX_PART_LEN;
        let complete = done && last;
        if part.is_empty() && !complete {
            return Ok(());
        }
        let stored = api
            .upload_recording(proto::UploadRecordingRequest {
                session_id: session.to_string(),
                offset,
                data: part,
                complete,
            })
            .await
            .map_err(|status| UploadError::Refused {
                session: session.to_string(),
                status,
            })?
            .into_inner()
            .stored;
        offset = stored;
        progress.acknowledged.insert(session.to_string(), offset);
        if complete {
            info!(%session, bytes = offset, "session recording uploaded");
            let _ = tokio::fs::remove_file(path).await;
            let _ = tokio::fs::remove_file(&done_path).await;
            progress.acknowledged.remove(session);
            return Ok(());
        }
        if last {
            return Ok(());
        }
    }
}

/// Why an upload pass stopped early (it is retried).
#[derive(Debug, thiserror::Error)]
enum UploadError {
    #[error(transparent)]
    Connect(#[from] jumpgate_api::ApiError),
    #[error(transparent)]
    Read(jumpgate_audit::RecordingError),
    #[error("session {session}: {}", status.message())]
    Refused {
        session: String,
        #[source]
        status: tonic::Status,
    },
}

impl UploadError {
    /// Whether trying again later may work (auth away or busy, or a session it has not
    /// heard of yet), rather than a refusal of this recording.
    fn is_transient(&self) -> bool {
        match self {
            UploadError::Connect(_) => true,
            UploadError::Read(_) => false,
            UploadError::Refused { status, .. } => matches!(
                status.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown
                    | tonic::Code::ResourceExhausted
            ),
        }
    }
}

async fn write_recording(
    dir: PathBuf,
    session_id: SessionId,
    header: Header,
    mut events: mpsc::UnboundedReceiver<Event>,
    wake: Arc<Notify>,
) {
    if let Err(err) = create_dir_private(&dir).await {
        warn!(dir = %dir.display(), %err, "cannot create the recordings directory; the session is not recorded");
        return;
    }
    let path = dir.join(format!("{session_id}.cast"));
    let mut writer = match RecordingWriter::create(&path, &header, SpoolOptions::default()).await {
        Ok(writer) => writer,
        Err(err) => {
            warn!(%err, "cannot record a session");
            return;
        }
    };
    let started = Instant::now();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    let failed = |err: jumpgate_audit::RecordingError| {
        warn!(session = %session_id, %err, "writing a session recording failed");
    };
    loop {
        tokio::select! {
            event = events.recv() => {
                let written = match event {
                    Some(Event::Output(at, bytes)) => writer.output(at, &bytes).await,
                    Some(Event::Input(at, bytes)) => writer.input(at, &bytes).await,
                    Some(Event::Resize(at, cols, rows)) => writer.resize(at, cols, rows).await,
                    None => break,
                };
                if let Err(err) = written {
                    failed(err);
                    return;
                }
            }
            _ = tick.tick() => {
                if let Err(err) = writer.flush().await {
                    failed(err);
                    return;
                }
            }
        }
    }
    match writer.finish(started.elapsed()).await {
        Ok(_) => {
            let done = path.with_extension(DONE_SUFFIX);
            if let Err(err) = tokio::fs::write(&done, b"").await {
                warn!(%err, "cannot mark a recording complete");
            }
            wake.notify_one();
        }
        Err(err) => failed(err),
    }
}

async fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
    })
    .await
    .map_err(std::io::Error::other)?
}
