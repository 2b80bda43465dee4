//! Session recordings for `jsh recordings ls` and `jsh play` (DESIGN.md, "Flows:
//! Recording"): the auth API's `ListRecordings` and `GetRecording`, through the proxy's
//! auth passthrough with the user's TLS identity, as [`crate::nodes`] reaches it. Auth
//! allows them to roles with the `session` rule: the built-in `access` role for the user's
//! own sessions (its rule's `where`), the built-in `auditor` role for all.
//!
//! A recording is read in parts of [`CHUNK_LEN`] until the size auth reported, then
//! checked with [`jumpgate_audit::recording::parse_cast`] before anything is shown: it
//! was written by a node, so it is untrusted input.

use crate::error::ClientError;
use crate::profile::Profile;
use jumpgate_api::proto::{GetRecordingRequest, ListRecordingsRequest, RecordingInfo};
use jumpgate_api::{ApiError, AuthClient};
use jumpgate_audit::recording::{
    DEFAULT_MAX_RECORDING_LEN, ParseOptions, Recording, RecordingError, SessionId, parse_cast,
};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::Code;

/// The part read per `GetRecording` call (auth's own limit too).
pub const CHUNK_LEN: u64 = 4 * 1024 * 1024;
/// How much of a recording is read for its header in `jsh recordings ls`.
const HEADER_PROBE_LEN: u64 = 16 * 1024;

/// What can go wrong reading recordings.
#[derive(Debug, thiserror::Error)]
pub enum RecordingsError {
    /// Reaching the cluster, or an unusable profile.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The user's roles do not allow reading recordings, or this one.
    #[error(
        "access denied: {message}. The built-in `access` role plays back only your own \
         sessions; other recordings need a role with the `session` rule (list, read), such as \
         the built-in `auditor` role: ask an administrator to give it to your user, then run \
         `jsh login` again"
    )]
    PermissionDenied { message: String },
    /// No recording with that session id.
    #[error("{message}")]
    NotFound { message: String },
    /// A session id that cannot name a recording.
    #[error(transparent)]
    InvalidSessionId(RecordingError),
    /// The recording is not valid asciicast v2 (or too large to read).
    #[error("the recording of session {session_id} is unusable: {source}")]
    Invalid {
        session_id: String,
        #[source]
        source: RecordingError,
    },
    /// Auth's answers do not add up (say, a recording that shrank while being read).
    #[error("reading the recording of session {session_id} failed: {reason}")]
    Read { session_id: String, reason: String },
}

/// One recording, as `jsh recordings ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordingSummary {
    pub session_id: String,
    /// Bytes stored so far.
    pub size: u64,
    /// The node uploaded the end of the session.
    pub completed: bool,
    pub modified_unix_millis: i64,
    /// From the recording's header; empty if it has none (or could not be read).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub login: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// When the session started (Unix seconds), from the header's `timestamp`; with
    /// `modified_unix_millis`, about how long it ran (the web UI's list shows both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_unix: Option<i64>,
}

impl RecordingSummary {
    fn from_info(info: &RecordingInfo) -> RecordingSummary {
        RecordingSummary {
            session_id: info.session_id.clone(),
            size: info.size,
            completed: info.completed,
            modified_unix_millis: info.modified_unix_millis,
            user: String::new(),
            login: String::new(),
            node: String::new(),
            started_unix: None,
        }
    }

    /// When it was last written, as RFC 3339 (UTC, seconds).
    pub fn modified_text(&self) -> String {
        let millis = u64::try_from(self.modified_unix_millis).unwrap_or(0);
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(millis)).to_string()
    }
}

async fn auth_client(profile: &Profile) -> Result<AuthClient, ClientError> {
    profile.check_valid(SystemTime::now())?;
    let tls = profile.tls_credentials()?.client_config()?;
    jumpgate_api::connect(&profile.meta.proxy, tls)
        .await
        .map_err(|err| match err {
            ApiError::Connect { addr, reason } => ClientError::Connect { addr, reason },
            other => ClientError::Credentials(other),
        })
}

fn status_error(status: &tonic::Status) -> RecordingsError {
    let message = status.message().to_string();
    match status.code() {
        Code::PermissionDenied => RecordingsError::PermissionDenied { message },
        Code::NotFound => RecordingsError::NotFound { message },
        code => RecordingsError::Client(ClientError::Auth {
            code: format!("{code:?}"),
            message,
        }),
    }
}

/// Every recording the cluster keeps, oldest first, with the user, login and node from
/// each header (one small read per recording).
pub async fn list_recordings(profile: &Profile) -> Result<Vec<RecordingSummary>, RecordingsError> {
    let mut auth = auth_client(profile).await?;
    list_recordings_with(&mut auth).await
}

/// [`list_recordings`] through an auth client of the caller's own (the web UI's, with a
/// web session's identity).
pub async fn list_recordings_with(
    auth: &mut AuthClient,
) -> Result<Vec<RecordingSummary>, RecordingsError> {
    let infos = auth
        .list_recordings(ListRecordingsRequest {})
        .await
        .map_err(|status| status_error(&status))?
        .into_inner()
        .recordings;
    let mut summaries = Vec::with_capacity(infos.len());
    for info in &infos {
        let mut summary = RecordingSummary::from_info(info);
        // Details only: a recording whose header cannot be read is still listed.
        if let Some(header) = read_header(auth, &info.session_id).await {
            summary.started_unix = header.timestamp;
            if let Some(meta) = header.jumpgate {
                summary.user = meta.user;
                summary.login = meta.login;
                summary.node = meta.node;
            }
        }
        summaries.push(summary);
    }
    summaries.sort_by(|a, b| {
        a.modified_unix_millis
            .cmp(&b.modified_unix_millis)
            .then_with(|| a.session_id.cmp(&b.session_id))
    });
    Ok(summaries)
}

async fn read_header(
    auth: &mut AuthClient,
    session_id: &str,
) -> Option<jumpgate_audit::recording::Header> {
    let part = auth
        .get_recording(GetRecordingRequest {
            session_id: session_id.to_string(),
            offset: 0,
            max_len: HEADER_PROBE_LEN,
        })
        .await
        .ok()?
        .into_inner()
        .data;
    let end = part.iter().position(|&byte| byte == b'\n')?;
    let line = part.get(..=end)?;
    parse_cast(line, &ParseOptions::tolerant())
        .ok()
        .map(|cast| cast.header)
}

/// The bytes of a recording as stored (asciicast v2), read in parts of [`CHUNK_LEN`].
pub async fn fetch_recording(
    profile: &Profile,
    session_id: &str,
) -> Result<Vec<u8>, RecordingsError> {
    SessionId::new(session_id).map_err(RecordingsError::InvalidSessionId)?;
    let mut auth = auth_client(profile).await?;
    fetch_recording_with(&mut auth, session_id).await
}

/// [`fetch_recording`] through an auth client of the caller's own.
pub async fn fetch_recording_with(
    auth: &mut AuthClient,
    session_id: &str,
) -> Result<Vec<u8>, RecordingsError> {
    let session_id = SessionId::new(session_id)
        .map_err(RecordingsError::InvalidSessionId)?
        .to_string();
    let read_error = |reason: String| RecordingsError::Read {
        session_id: session_id.clone(),
        reason,
    };
    let mut data: Vec<u8> = Vec::new();
    loop {
        let offset = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let part = auth
            .get_recording(GetRecordingRequest {
                session_id: session_id.clone(),
                offset,
                max_len: CHUNK_LEN,
            })
            .await
            .map_err(|status| status_error(&status))?
            .into_inner();
        let info = part
            .info
            .ok_or_else(|| read_error("the auth service sent no size".to_string()))?;
        let end = offset.saturating_add(u64::try_from(part.data.len()).unwrap_or(u64::MAX));
        if end > DEFAULT_MAX_RECORDING_LEN {
            return Err(RecordingsError::Invalid {
                session_id: session_id.clone(),
                source: RecordingError::TooLarge {
                    size: info.size.max(end),
                    max: DEFAULT_MAX_RECORDING_LEN,
                },
            });
        }
        data.extend_from_slice(&part.data);
        if end >= info.size {
            return Ok(data);
        }
        if part.data.is_empty() {
            return Err(read_error(format!(
                "no bytes at offset {offset} of a recording of {} bytes",
                info.size
            )));
        }
    }
}

/// Checks the bytes of a recording (a cut-off last line, as of a session still being
/// uploaded, is dropped).
pub fn parse_recording(session_id: &str, bytes: &[u8]) -> Result<Recording, RecordingsError> {
    parse_cast(bytes, &ParseOptions::tolerant()).map_err(|source| RecordingsError::Invalid {
        session_id: session_id.to_string(),
        source,
    })
}

/// `12 B`, `3.4 KiB`, `56.7 MiB`.
fn size_text(size: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if size < 1024 {
        return format!("{size} B");
    }
    // Display only: the precision lost in the conversion does not show.
    #[allow(clippy::cast_precision_loss)]
    let mut value = size as f64 / 1024.0;
    let mut unit = "KiB";
    for next in UNITS.iter().skip(1) {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// The `jsh recordings ls` table: Session, Size, Completed, Modified, User, Login, Node.
pub fn recordings_table(recordings: &[RecordingSummary]) -> String {
    let dash = |text: &str| {
        if text.is_empty() {
            "-".to_string()
        } else {
            text.to_string()
        }
    };
    let header: [String; 7] = [
        "Session",
        "Size",
        "Completed",
        "Modified",
        "User",
        "Login",
        "Node",
    ]
    .map(str::to_string);
    let rows: Vec<[String; 7]> = recordings
        .iter()
        .map(|r| {
            [
                r.session_id.clone(),
                size_text(r.size),
                if r.completed { "yes" } else { "no" }.to_string(),
                r.modified_text(),
                dash(&r.user),
                dash(&r.login),
                dash(&r.node),
            ]
        })
        .collect();
    let mut widths = [0usize; 7];
    for row in std::iter::once(&header).chain(rows.iter()) {
        for (width, cell) in widths.iter_mut().zip(row.iter()) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 7], out: &mut String| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths.iter())
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    let mut out = String::new();
    line(&header, &mut out);
    line(&widths.map(|width| "-".repeat(width)), &mut out);
    for row in &rows {
        line(row, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(size_text(0), "0 B");
        assert_eq!(size_text(1023), "1023 B");
        assert_eq!(size_text(1536), "1.5 KiB");
        assert_eq!(size_text(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(size_text(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn the_table_has_every_column() {
        let table = recordings_table(&[RecordingSummary {
            session_id: "5b0c".to_string(),
            size: 2048,
            completed: true,
            modified_unix_millis: 1_700_000_000_000,
            user: "alice".to_string(),
            login: "root".to_string(),
            node: String::new(),
            started_unix: Some(1_699_999_990),
        }]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("Session  Size     Completed  Modified"),
            "{table}"
        );
        assert!(lines[0].ends_with("User   Login  Node"), "{table}");
        assert!(lines[2].contains("5b0c"), "{table}");
        assert!(lines[2].contains("2.0 KiB  yes"), "{table}");
        assert!(lines[2].contains("2023-11-14T22:13:20Z"), "{table}");
        assert!(lines[2].ends_with("alice  root   -"), "{table}");
    }

    #[test]
    fn auth_refusals_say_what_to_do() {
        let err = status_error(&tonic::Status::permission_denied("no session rule"));
        let text = err.to_string();
        assert!(
            text.contains("auditor") && text.contains("no session rule"),
            "{text}"
        );
        assert!(matches!(
            status_error(&tonic::Status::not_found("no recording")),
            RecordingsError::NotFound { .. }
        ));
        assert!(matches!(
            status_error(&tonic::Status::unavailable("down")),
            RecordingsError::Client(ClientError::Auth { .. })
        ));
    }
}
