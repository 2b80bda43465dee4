//! What the web UI's recordings and audit pages read (issue 17), each asked of auth with the
//! web session's own identity, so the user sees what their roles allow and nothing more
//! (their own sessions with `access`, every one with `auditor`; the audit log with the
//! `event` rule):
//!
//! - `GET /webapi/web/recordings`: every recording the user may list, newest first, with
//!   user, login and node from each header.
//! - `GET /webapi/web/recordings/{session_id}.cast`: the recording as stored (asciicast v2,
//!   what asciinema-player plays and `asciinema play` reads); `?download=1` makes it a file.
//! - `GET /webapi/web/events?from=&to=&type=&user=&session=&limit=&cursor=&order=`: one page
//!   of the audit log (times in Unix milliseconds; `type` may repeat; `order` `desc` or
//!   `asc`), each event as the audit log stores it, and the next page's cursor.
//! - `GET /webapi/web/active-sessions`: the sessions in progress the user may list (auth's
//!   `ListActiveSessions`, fed by the nodes' `session.start`/`session.end` and heartbeats),
//!   newest first.

use crate::web::{ApiError, WebState};
use crate::websession::{Cached, session_of};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jumpgate_api::proto;
use jumpgate_client::recordings::{
    RecordingSummary, RecordingsError, fetch_recording_with, list_recordings_with,
};
use serde::Serialize;
use std::sync::Arc;

const DEFAULT_EVENTS: u32 = 100;
const MAX_EVENTS: u32 = 1000;

pub(crate) fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/webapi/web/recordings", get(recordings))
        .route("/webapi/web/recordings/{file}", get(recording))
        .route("/webapi/web/events", get(events))
        .route("/webapi/web/active-sessions", get(active_sessions))
}

fn recordings_error(err: RecordingsError) -> ApiError {
    match err {
        RecordingsError::PermissionDenied { .. } => ApiError::forbidden(err.to_string()),
        RecordingsError::NotFound { .. } => ApiError::not_found(err.to_string()),
        RecordingsError::InvalidSessionId(_) => ApiError::bad_request(err.to_string()),
        other => ApiError::unavailable(other.to_string()),
    }
}

async fn user_client(
    state: &WebState,
    headers: &HeaderMap,
) -> Result<(Cached, jumpgate_api::AuthClient), ApiError> {
    let cached = session_of(state, headers).await?;
    let client = state.sessions.user_client(state, &cached).await?;
    Ok((cached, client))
}

#[derive(Debug, Serialize)]
struct RecordingsPage {
    recordings: Vec<RecordingSummary>,
}

async fn recordings(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
) -> Result<Json<RecordingsPage>, ApiError> {
    let (_, mut client) = user_client(&state, &headers).await?;
    let mut recordings = list_recordings_with(&mut client)
        .await
        .map_err(recordings_error)?;
    recordings.reverse();
    Ok(Json(RecordingsPage { recordings }))
}

async fn recording(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Path(file): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let session_id = file
        .strip_suffix(".cast")
        .ok_or_else(|| ApiError::not_found("ask for /webapi/web/recordings/SESSION_ID.cast"))?;
    let (_, mut client) = user_client(&state, &headers).await?;
    let bytes = fetch_recording_with(&mut client, session_id)
        .await
        .map_err(recordings_error)?;
    let download = query
        .iter()
        .any(|(key, value)| key == "download" && value == "1");
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-asciicast"),
    );
    // A recording shows what a terminal showed: never let a browser render it as a page.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if download {
        // The id is checked ([`SessionId`]): letters, digits and dashes only.
        if let Ok(value) =
            HeaderValue::from_str(&format!("attachment; filename=\"{session_id}.cast\""))
        {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response)
}

#[derive(Debug, Serialize)]
struct EventsPage {
    events: Vec<serde_json::Value>,
    next_cursor: Option<String>,
}

fn events_request(pairs: Vec<(String, String)>) -> Result<proto::SearchEventsRequest, ApiError> {
    let mut request = proto::SearchEventsRequest {
        limit: DEFAULT_EVENTS,
        descending: true,
        ..proto::SearchEventsRequest::default()
    };
    let millis = |key: &str, value: &str| {
        value.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("{key} {value:?}: a time in Unix milliseconds"))
        })
    };
    for (key, value) in pairs {
        match key.as_str() {
            "from" => request.from_unix_millis = millis(&key, &value)?,
            "to" => request.to_unix_millis = millis(&key, &value)?,
            "type" => request.types.push(value),
            "user" => request.user = value,
            "session" => request.session_id = value,
            "cursor" => request.cursor = value,
            "limit" => {
                request.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=MAX_EVENTS).contains(limit))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit {value:?}: a number from 1 to {MAX_EVENTS}"
                        ))
                    })?;
            }
            "order" => {
                request.descending = match value.as_str() {
                    "desc" => true,
                    "asc" => false,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "order {other:?}: desc (newest first) or asc"
                        )));
                    }
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}; use from, to, type, user, session, limit, \
                     cursor, order"
                )));
            }
        }
    }
    Ok(request)
}

async fn events(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<EventsPage>, ApiError> {
    let request = events_request(pairs)?;
    let (_, mut client) = user_client(&state, &headers).await?;
    let found = client.search_events(request).await?.into_inner();
    let events = found
        .events
        .iter()
        .filter_map(|event| serde_json::from_str(event).ok())
        .collect();
    Ok(Json(EventsPage {
        events,
        next_cursor: Some(found.next_cursor).filter(|cursor| !cursor.is_empty()),
    }))
}

#[derive(Debug, Serialize)]
struct ActiveSession {
    session_id: String,
    user: String,
    login: String,
    node_uuid: String,
    node_hostname: String,
    client_addr: String,
    interactive: bool,
    started_unix_millis: i64,
}

#[derive(Debug, Serialize)]
struct ActiveSessionsPage {
    sessions: Vec<ActiveSession>,
}

async fn active_sessions(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
) -> Result<Json<ActiveSessionsPage>, ApiError> {
    let (_, mut client) = user_client(&state, &headers).await?;
    let listed = client
        .list_active_sessions(proto::ListActiveSessionsRequest {})
        .await?
        .into_inner();
    let sessions = listed
        .sessions
        .into_iter()
        .map(|active| ActiveSession {
            session_id: active.session_id,
            user: active.user,
            login: active.login,
            node_uuid: active.node_uuid,
            node_hostname: active.node_hostname,
            client_addr: active.client_addr,
            interactive: active.interactive,
            started_unix_millis: active.started_unix_millis,
        })
        .collect();
    Ok(Json(ActiveSessionsPage { sessions }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn event_queries_are_checked() {
        let request = events_request(vec![
            ("type".into(), "session.start".into()),
            ("type".into(), "user.login".into()),
            ("from".into(), "1700000000000".into()),
            ("order".into(), "asc".into()),
        ])
        .unwrap();
        assert_eq!(request.types, ["session.start", "user.login"]);
        assert!(!request.descending);
        assert_eq!(request.limit, DEFAULT_EVENTS);
        for bad in [
            ("from", "yesterday"),
            ("limit", "0"),
            ("order", "up"),
            ("q", "x"),
        ] {
            assert!(
                events_request(vec![(bad.0.into(), bad.1.into())]).is_err(),
                "{bad:?}"
            );
        }
    }
}
