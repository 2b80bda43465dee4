//! The administration answers as text for people (`jctl ... --format text`): aligned
//! tables and short reports. The JSON and YAML forms are the values' `Serialize`.

use super::{
    ActiveSessionRecord, ClusterStatus, Document, JoinToken, JoinTokenInfo, NodeRecord, Rotation,
    UserRecord,
};
use serde::Serializer;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first second RFC 3339 cannot write (year 10000).
const RFC3339_LIMIT: Duration = Duration::from_secs(253_402_300_800);

/// A time as RFC 3339 in whole seconds (UTC), or `never` for none.
pub fn time_text(time: Option<SystemTime>) -> String {
    let Some(time) = time else {
        return "never".to_string();
    };
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) if since < RFC3339_LIMIT => humantime::format_rfc3339_seconds(time).to_string(),
        // humantime cannot write these (and would panic); the auth service never sends them.
        Ok(since) => format!("{} s after 1970", since.as_secs()),
        Err(_) => "before 1970".to_string(),
    }
}

/// `serialize_with` for the times of values printed as JSON or YAML: as [`time_text`].
pub(super) fn serialize_time<S: Serializer>(
    time: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time_text(*time))
}

/// A simple aligned table: two spaces between columns, no trailing blanks.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (cell, width) in cells.iter().zip(&widths) {
            out.push_str(&format!("{cell:<width$}  "));
        }
        out.trim_end().to_string() + "\n"
    };
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = line(&headers);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rule));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// `jctl status`: the cluster, who is asking, and each CA's active key with the old keys
/// still trusted after a rotation.
pub fn status_text(status: &ClusterStatus) -> String {
    let mut text = format!(
        "Cluster:        {}\nVersion:        {}\nYou are:        {}\n",
        status.cluster_name, status.server_version, status.caller,
    );
    for ca in &status.authorities {
        let label = match ca.ca_type.as_str() {
            "user" => "User CA:",
            "host" => "Host CA:",
            _ => "CA pin:",
        };
        text.push_str(&format!("{label:<16}{}", ca.active));
        if ca.last_rotated.is_some() {
            text.push_str(&format!(" (rotated {})", time_text(ca.last_rotated)));
        }
        text.push('\n');
        for key in &ca.previous {
            text.push_str(&format!(
                "{:<16}{} (old, trusted until {})\n",
                "",
                key.key,
                time_text(key.trusted_until)
            ));
        }
    }
    text
}

/// `jctl users ls`.
pub fn users_table(users: &[UserRecord]) -> String {
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|user| {
            vec![
                user.name.clone(),
                user.roles.join(","),
                user.logins.join(","),
                user.connector
                    .clone()
                    .unwrap_or_else(|| "local".to_string()),
                user.locked_until
                    .map(|until| format!("locked until {}", time_text(Some(until))))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(&["User", "Roles", "Logins", "Source", "Status"], &rows)
}

/// `jctl nodes ls`.
pub fn nodes_table(nodes: &[NodeRecord]) -> String {
    if nodes.is_empty() {
        return "No nodes have joined (or none sent a heartbeat in the last 15 s).\n".to_string();
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|node| {
            let labels: Vec<String> = node
                .labels
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            vec![
                node.hostname.clone(),
                node.uuid.clone(),
                labels.join(","),
                if node.tunnels.is_empty() {
                    "none".to_string()
                } else {
                    format!("up via {}", node.tunnels.join(","))
                },
            ]
        })
        .collect();
    table(&["Host", "UUID", "Labels", "Tunnel"], &rows)
}

/// `jctl sessions ls`.
pub fn active_sessions_table(sessions: &[ActiveSessionRecord]) -> String {
    if sessions.is_empty() {
        return "No sessions in progress.\n".to_string();
    }
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|session| {
            vec![
                session.session_id.clone(),
                session.user.clone(),
                format!("{}@{}", session.login, session.node_hostname),
                if session.interactive {
                    "shell".to_string()
                } else {
                    "command".to_string()
                },
                session.client_addr.clone(),
                time_text(session.started),
            ]
        })
        .collect();
    table(
        &["Session", "User", "Login@Node", "Kind", "From", "Since"],
        &rows,
    )
}

/// `jctl tokens add`: the token, and the config lines for the host that joins with it.
pub fn join_token_text(token: &JoinToken) -> String {
    format!(
        "The join token {} (id {}) lets {} join as {} until {}.\n\n\
         On the host, put this in /etc/jumpgate.yaml:\n\
         \x20 jumpgate:\n\
         \x20   join_params:\n\
         \x20     method: token\n\
         \x20     token_name: {}\n\
         \x20   ca_pin: \"{}\"\n\
         \x20   proxy_server: <the proxy's public address>   # or auth_server: <this auth server>\n\n\
         The token is shown once; jctl tokens rm {} revokes it.\n",
        token.token,
        token.id,
        if token.single_use {
            "one host (once)"
        } else {
            "any number of hosts"
        },
        token.roles.join(","),
        time_text(token.expires),
        token.token,
        token.ca_pins.join(","),
        token.id,
    )
}

/// `jctl tokens ls`.
pub fn join_tokens_table(tokens: &[JoinTokenInfo]) -> String {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|token| {
            vec![
                token.id.clone(),
                token.roles.join(","),
                time_text(token.expires),
                if token.single_use {
                    "once"
                } else {
                    "until expiry"
                }
                .to_string(),
                token.kind.clone(),
            ]
        })
        .collect();
    table(&["Id", "Type", "Expires", "Use", "Source"], &rows)
}

/// `jctl auth rotate`: what was rotated, how long the old keys stay trusted, and what
/// to redistribute.
pub fn rotation_text(rotation: &Rotation) -> String {
    let mut text = format!(
        "Rotated the {} CA{}. New certificates are signed by the new keys.\n",
        rotation.rotated.join(", "),
        if rotation.rotated.len() > 1 { "s" } else { "" },
    );
    if rotation.grace_period.is_zero() {
        text.push_str(
            "The old keys were retired at once: nothing they signed is trusted any more.\n",
        );
    } else {
        text.push_str(&format!(
            "The old keys stay trusted until {}.\n",
            time_text(rotation.grace_period_ends)
        ));
    }
    if rotation.rotated.iter().any(|t| t == "user") {
        text.push_str(
            "OpenSSH servers: install `jctl auth export --type user` as TrustedUserCAKeys again.\n",
        );
    }
    if rotation.rotated.iter().any(|t| t == "host") {
        text.push_str("Clients: replace the @cert-authority lines with `jctl auth export --type host`, and re-sign OpenSSH host certificates (`jctl auth sign --host`).\n");
    }
    text
}

/// `jctl audit search`: one line per event, refusals with their reason.
pub fn events_table(events: &[Document]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|event| {
            let outcome = if event.value().get("success").and_then(|v| v.as_bool()) == Some(false) {
                format!("refused: {}", event.field_text("error"))
            } else {
                "ok".to_string()
            };
            vec![
                event.field_text("time"),
                event.field_text("event"),
                event.field_text("code"),
                event.field_text("user"),
                event.field_text("addr.remote"),
                outcome,
            ]
        })
        .collect();
    table(
        &["Time", "Event", "Code", "User", "Address", "Outcome"],
        &rows,
    )
}
