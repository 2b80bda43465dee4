//! The web terminal (issue 17): `GET /webapi/web/terminal?node=NODE&login=LOGIN&cols=&rows=`,
//! upgraded to a WebSocket, is an interactive SSH session on the node as the web session's
//! user.
//!
//! The proxy decides and dials exactly as for `jsh ssh` ([`crate::ssh::SshRouting`]: from
//! memory, through the node's tunnel or a peer proxy), then speaks SSH to the node itself
//! with the session's own key and certificate (made by auth at the web login), checking the
//! node's host certificate against the cluster's host CA. So the node sees the user's
//! certificate: the same RBAC, `session.start`/`session.end` audit events and recording as
//! from `jsh`.
//!
//! On the socket: binary frames carry terminal bytes both ways; a text frame from the
//! page is a JSON command, `{"resize": [COLS, ROWS]}`. The proxy ends the socket with a
//! close frame whose reason says why (the shell exited with its status, a lock, the node
//! went away), so the page can say so and offer to reconnect. It pings every
//! [`PING_EVERY`] so an idle terminal is not taken for a dead connection.
//!
//! A socket opened from a page of another site is refused: the upgrade must carry our own
//! `Origin` (a WebSocket is not bound by the same-origin policy, and its handshake is a GET
//! that carries the cookie).
//!
//! A node or login the user's roles refuse (or a node that is not there) is told over the
//! socket: the upgrade is accepted and at once closed with [`CLOSE_REFUSED`] and the reason.
//! A browser's `WebSocket` cannot read the body of a refused upgrade (it only sees "closed,
//! 1006"), so that is the one way the page can show the user why.

use crate::web::{ApiError, ClientAddr, WebState};
use crate::websession::{authority, refuse_other_origins, session_of};
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::get;
use jumpgate_api::proto;
use jumpgate_client::SshIdentity;
use russh::ChannelMsg;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info};

/// How often the proxy pings an open terminal's socket.
const PING_EVERY: Duration = Duration::from_secs(20);
/// The largest terminal a page may ask for.
const MAX_COLS: u32 = 1000;
const MAX_ROWS: u32 = 500;
/// WebSocket close codes: 1000 normal (the shell ended), 1011 an error, 4001 refused.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_ERROR: u16 = 1011;
/// The node or login is refused (RBAC, a lock, no such node, offline): the reason follows.
const CLOSE_REFUSED: u16 = 4001;

pub(crate) fn routes() -> Router<Arc<WebState>> {
    Router::new().route("/webapi/web/terminal", get(terminal))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TerminalQuery {
    node: String,
    login: String,
    #[serde(default = "default_cols")]
    cols: u32,
    #[serde(default = "default_rows")]
    rows: u32,
}

fn default_cols() -> u32 {
    80
}

fn default_rows() -> u32 {
    24
}

/// A command from the page, as a text frame.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageCommand {
    resize: Option<(u32, u32)>,
}

async fn terminal(
    State(state): State<Arc<WebState>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    query: Result<Query<TerminalQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if !headers.contains_key(header::ORIGIN) {
        return Err(ApiError::forbidden(
            "refused: a terminal socket must come from a page of this site (no Origin)",
        ));
    }
    refuse_other_origins(&headers, authority(&uri))?;
    let Query(query) = query.map_err(|err| {
        ApiError::bad_request(format!(
            "{}; ask for ?node=NODE&login=LOGIN&cols=80&rows=24",
            err.body_text()
        ))
    })?;
    if !(1..=MAX_COLS).contains(&query.cols) || !(1..=MAX_ROWS).contains(&query.rows) {
        return Err(ApiError::bad_request(format!(
            "a terminal of {}x{} characters: from 1x1 to {MAX_COLS}x{MAX_ROWS}",
            query.cols, query.rows
        )));
    }
    let cached = session_of(&state, &headers).await?;
    let session = cached.session.clone();
    let routing = state
        .ssh
        .get()
        .ok_or_else(|| ApiError::unavailable("this proxy does not route SSH yet; try again"))?
        .clone();
    let identity = session_tls_identity(&session)?;
    let dialled = match routing
        .open_for_web(&identity, &query.node, &query.login, client)
        .await
    {
        Ok(dialled) => dialled,
        Err(refusal) => {
            let auth = state.auth();
            report(
                auth,
                client,
                refusal.audit_reason().to_string(),
                identity.to_uri(),
            );
            let reason = refusal.reason;
            return Ok(upgrade.on_upgrade(move |mut socket| async move {
                close(&mut socket, CLOSE_REFUSED, &reason).await;
            }));
        }
    };
    let ssh_identity = SshIdentity::from_openssh(
        &session.ssh_private_key,
        &session.ssh_certificate,
        &session.host_ca_known_hosts,
        session.principals.clone(),
    )
    .map_err(|err| ApiError::internal(err.to_string()))?;
    Ok(upgrade.on_upgrade(move |socket| async move {
        let crate::ssh::WebDial {
            node,
            stream,
            live,
            ended,
        } = dialled;
        let run = run_terminal(
            socket,
            ssh_identity,
            stream,
            node.uuid.clone(),
            node.hostname.clone(),
            query,
        );
        tokio::select! {
            () = run => {}
            Some(reason) = ended.wait() => {
                info!(node = %node.hostname, %reason, "ended a web terminal");
            }
        }
        drop(live);
    }))
}

/// The user identity of a web session's TLS certificate (made by auth, so trusted).
fn session_tls_identity(
    session: &proto::WebSession,
) -> Result<jumpgate_pki::TlsIdentity, ApiError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(session.tls_certificate_pem.as_bytes())
        .map_err(|err| ApiError::internal(format!("the web session's certificate: {err}")))?;
    jumpgate_pki::TlsIdentity::from_cert_der(&der)
        .map_err(|err| ApiError::internal(format!("the web session's certificate: {err}")))
}

/// Sends a refused terminal to the audit log (as the router does for `jsh`).
fn report(
    mut auth: jumpgate_api::AuthClient,
    client: std::net::SocketAddr,
    reason: String,
    identity: String,
) {
    info!(%client, %reason, "web terminal refused");
    tokio::spawn(async move {
        let _ = auth
            .report_refusal(proto::ReportRefusalRequest {
                remote_addr: client.to_string(),
                protocol: "web:terminal".to_string(),
                reason,
                identity,
            })
            .await;
    });
}

/// Speaks SSH to the node over `stream` and relays the session to and from `socket`.
async fn run_terminal(
    mut socket: WebSocket,
    identity: SshIdentity,
    stream: jumpgate_api::tunnel::H2Stream,
    node_uuid: String,
    node_name: String,
    query: TerminalQuery,
) {
    let connection = match jumpgate_client::connect_stream_as(
        identity,
        stream,
        &node_uuid,
        &node_name,
        &query.login,
        None,
    )
    .await
    {
        Ok(connection) => connection,
        Err(err) => {
            close(&mut socket, CLOSE_ERROR, &err.to_string()).await;
            return;
        }
    };
    let channel = match connection.open_session_channel().await {
        Ok(channel) => channel,
        Err(err) => {
            close(&mut socket, CLOSE_ERROR, &err.to_string()).await;
            return;
        }
    };
    let started = async {
        channel
            .request_pty(true, "xterm-256color", query.cols, query.rows, 0, 0, &[])
            .await?;
        channel.request_shell(true).await
    };
    if let Err(err) = started.await {
        close(
            &mut socket,
            CLOSE_ERROR,
            &format!("the node refused a terminal: {err}"),
        )
        .await;
        return;
    }
    let (mut reader, writer) = channel.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut exit_status = None;
    let reason = loop {
        tokio::select! {
            from_node = reader.wait() => match from_node {
                Some(ChannelMsg::Data { data }) => {
                    if socket.send(Message::Binary(data.to_vec().into())).await.is_err() {
                        break None;
                    }
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    if socket.send(Message::Binary(data.to_vec().into())).await.is_err() {
                        break None;
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status: status }) => exit_status = Some(status),
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    break Some((CLOSE_NORMAL, format!("the shell ended by signal {signal_name:?}")));
                }
                Some(ChannelMsg::Close) | None => {
                    let said = connection.disconnect_reason();
                    break Some(match (exit_status, said) {
                        (Some(status), _) => (CLOSE_NORMAL, format!("the shell exited with status {status}")),
                        (None, Some(reason)) => (CLOSE_ERROR, reason),
                        (None, None) => (CLOSE_ERROR, "the node closed the session".to_string()),
                    });
                }
                Some(_) => {}
            },
            from_page = socket.recv() => match from_page {
                Some(Ok(Message::Binary(bytes))) => {
                    if writer.data_bytes(bytes).await.is_err() {
                        break Some((CLOSE_ERROR, "the node stopped taking input".to_string()));
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<PageCommand>(text.as_str()) {
                        Ok(PageCommand { resize: Some((cols, rows)) })
                            if (1..=MAX_COLS).contains(&cols) && (1..=MAX_ROWS).contains(&rows) =>
                        {
                            let _ = writer.window_change(cols, rows, 0, 0).await;
                        }
                        Ok(_) | Err(_) => {
                            debug!(command = %text.as_str(), "ignored an unusable terminal command");
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break None;
                }
            }
        }
    };
    let _ = writer.eof().await;
    connection.disconnect().await;
    if let Some((code, reason)) = reason {
        close(&mut socket, code, &reason).await;
    }
}

/// Ends the socket with `code` and `reason` (cut to the 123 bytes a close frame holds).
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let mut cut = reason.to_string();
    while cut.len() > 123 {
        cut.pop();
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(cut),
        })))
        .await;
}
