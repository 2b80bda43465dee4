//! The audit event: one Teleport-shaped JSON object per thing that happened.
//!
//! An event is made with [`AuditEvent::success`] or [`AuditEvent::failure`] (which takes
//! the error text), so every event says how it went; the rest is optional builder calls.
//! The error text is exactly the string the caller gives: nothing is `Debug`-formatted
//! into an event behind the caller's back, so a secret can only get in if a caller puts it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::Timestamp;

/// What happened. The wire name (`user.login`, ...) is what the JSON `event` field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "user.login")]
    UserLogin,
    #[serde(rename = "user.create")]
    UserCreate,
    #[serde(rename = "user.update")]
    UserUpdate,
    #[serde(rename = "user.delete")]
    UserDelete,
    #[serde(rename = "role.created")]
    RoleCreated,
    #[serde(rename = "role.deleted")]
    RoleDeleted,
    #[serde(rename = "join_token.create")]
    JoinTokenCreate,
    #[serde(rename = "cert.create")]
    CertCreate,
    /// An access decision that refused someone (bad certificate, denied by role, ...).
    #[serde(rename = "auth")]
    Auth,
    #[serde(rename = "session.start")]
    SessionStart,
    #[serde(rename = "session.end")]
    SessionEnd,
    #[serde(rename = "exec")]
    Exec,
    #[serde(rename = "scp")]
    Scp,
    #[serde(rename = "sftp")]
    Sftp,
    #[serde(rename = "port")]
    Port,
    /// A host joined the cluster with a join token (or was refused).
    #[serde(rename = "instance.join")]
    InstanceJoin,
    /// A user set or changed a password (signup, reset).
    #[serde(rename = "user.password_change")]
    UserPasswordChange,
    /// A join token was deleted.
    #[serde(rename = "join_token.delete")]
    JoinTokenDelete,
    /// A certificate authority was rotated.
    #[serde(rename = "cert_authority.rotate")]
    CertAuthorityRotate,
    /// A lock was created (a user, role, login or node cut off).
    #[serde(rename = "lock.created")]
    LockCreated,
    /// A lock was removed.
    #[serde(rename = "lock.deleted")]
    LockDeleted,
    /// A user logged out of the web UI (one session, or every one of theirs).
    #[serde(rename = "user.logout")]
    UserLogout,
    /// An OIDC connector was created or replaced.
    #[serde(rename = "oidc.created")]
    OidcCreated,
    /// An OIDC connector was removed.
    #[serde(rename = "oidc.deleted")]
    OidcDeleted,
    /// A SAML connector was created or replaced.
    #[serde(rename = "saml.created")]
    SamlCreated,
    /// A SAML connector was removed.
    #[serde(rename = "saml.deleted")]
    SamlDeleted,
    /// A GitHub connector was created or replaced.
    #[serde(rename = "github.created")]
    GithubCreated,
    /// A GitHub connector was removed.
    #[serde(rename = "github.deleted")]
    GithubDeleted,
    /// A user registered a security key or passkey (WebAuthn), or was refused.
    #[serde(rename = "mfa.add")]
    MfaDeviceAdd,
    /// A user removed a security key, or was refused.
    #[serde(rename = "mfa.delete")]
    MfaDeviceDelete,
}

/// The one table of event names and codes: (type, name, success code, failure code).
///
/// Codes follow Teleport's where it has one (`T1000I`/`T1000W` for a local login,
/// `T2000I` session start, `T3002I` exec, ...), so Teleport users' alerting keeps working.
/// The last letter is the severity: `I` info, `W` warning (refused), `E` error (failed).
/// Where Teleport has no failure code we use the success code with `W`.
const TABLE: [(EventType, &str, &str, &str); 30] = [
    (EventType::UserLogin, "user.login", "T1000I", "T1000W"),
    (EventType::UserCreate, "user.create", "T1002I", "T1002W"),
    (EventType::UserUpdate, "user.update", "T1003I", "T1003W"),
    (EventType::UserDelete, "user.delete", "T1004I", "T1004W"),
    (EventType::RoleCreated, "role.created", "T9000I", "T9000W"),
    (EventType::RoleDeleted, "role.deleted", "T9001I", "T9001W"),
    (
        EventType::JoinTokenCreate,
        "join_token.create",
        "TJT00I",
        "TJT00W",
    ),
    (EventType::CertCreate, "cert.create", "TC000I", "TC000W"),
    (EventType::Auth, "auth", "T3007I", "T3007W"),
    (EventType::SessionStart, "session.start", "T2000I", "T2000W"),
    (EventType::SessionEnd, "session.end", "T2004I", "T2004W"),
    (EventType::Exec, "exec", "T3002I", "T3002E"),
    (EventType::Scp, "scp", "T3004I", "T3004E"),
    (EventType::Sftp, "sftp", "TS001I", "TS001E"),
    (EventType::Port, "port", "T3003I", "T3003E"),
    (EventType::InstanceJoin, "instance.join", "TJ001I", "TJ001E"),
    (
        EventType::UserPasswordChange,
        "user.password_change",
        "T1005I",
        "T1005W",
    ),
    (
        EventType::JoinTokenDelete,
        "join_token.delete",
        "TJT01I",
        "TJT01W",
    ),
    (
        EventType::CertAuthorityRotate,
        "cert_authority.rotate",
        "TCA01I",
        "TCA01W",
    ),
    (EventType::LockCreated, "lock.created", "TLK00I", "TLK00W"),
    (EventType::LockDeleted, "lock.deleted", "TLK01I", "TLK01W"),
    (EventType::UserLogout, "user.logout", "TLO00I", "TLO00W"),
    // Teleport's codes for connector changes.
    (
        EventType::GithubCreated,
        "github.created",
        "T8000I",
        "T8000W",
    ),
    (
        EventType::GithubDeleted,
        "github.deleted",
        "T8001I",
        "T8001W",
    ),
    (EventType::OidcCreated, "oidc.created", "T8100I", "T8100W"),
    (EventType::OidcDeleted, "oidc.deleted", "T8101I", "T8101W"),
    (EventType::SamlCreated, "saml.created", "T8200I", "T8200W"),
    (EventType::SamlDeleted, "saml.deleted", "T8201I", "T8201W"),
    (EventType::MfaDeviceAdd, "mfa.add", "T1006I", "T1006W"),
    (EventType::MfaDeviceDelete, "mfa.delete", "T1007I", "T1007W"),
];

impl EventType {
    /// Every event type, in table order.
    pub fn all() -> impl Iterator<Item = EventType> {
        TABLE.iter().map(|row| row.0)
    }

    fn row(self) -> (EventType, &'static str, &'static str, &'static str) {
        // The table lists every variant (checked by a test), so the fallback is never used.
        TABLE
            .iter()
            .copied()
            .find(|row| row.0 == self)
            .unwrap_or((self, "unknown", "T0000I", "T0000W"))
    }

    /// The wire name, e.g. `user.login`.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The event code for this type and outcome, e.g. `T1000W` for a failed login.
    pub fn code(self, success: bool) -> &'static str {
        let (_, _, ok, failed) = self.row();
        if success { ok } else { failed }
    }

    /// Parses a wire name; `None` for names this version does not know.
    pub fn from_name(name: &str) -> Option<EventType> {
        TABLE.iter().find(|row| row.1 == name).map(|row| row.0)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Keys of the fixed fields; [`AuditEvent::field`] refuses them so the flattened JSON never
/// has a key twice.
pub const RESERVED_KEYS: [&str; 11] = [
    "event",
    "code",
    "uid",
    "time",
    "user",
    "login",
    "server_id",
    "sid",
    "addr.remote",
    "success",
    "error",
];

/// One audit event. Serialised as a flat JSON object, e.g.
/// `{"event":"user.login","code":"T1000W","uid":"…","time":"2026-11-22T14:09:06.123Z",
///   "user":"alice","addr.remote":"10.0.0.5:51234","success":false,"error":"bad password"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    event: EventType,
    code: String,
    #[serde(serialize_with = "ser_uuid", deserialize_with = "de_uuid")]
    uid: Uuid,
    time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    login: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(
        rename = "addr.remote",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    addr_remote: Option<String>,
    success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

impl AuditEvent {
    fn new(event: EventType, success: bool, error: Option<String>) -> AuditEvent {
        AuditEvent {
            event,
            code: event.code(success).to_owned(),
            uid: Uuid::new_v4(),
            time: Timestamp::now(),
            user: None,
            login: None,
            server_id: None,
            sid: None,
            addr_remote: None,
            success,
            error,
            fields: Map::new(),
        }
    }

    /// Something that was allowed / succeeded. Time is now; override with [`Self::at`].
    pub fn success(event: EventType) -> AuditEvent {
        AuditEvent::new(event, true, None)
    }

    /// Something that was refused or failed, with the reason shown to auditors. Pass a
    /// message written for the log, never a `Debug` dump of a request or credential.
    pub fn failure(event: EventType, error: impl Into<String>) -> AuditEvent {
        AuditEvent::new(event, false, Some(error.into()))
    }

    /// Sets the event time (the SQLite store indexes it; the file store picks the day by it).
    pub fn at(mut self, time: Timestamp) -> Self {
        self.time = time;
        self
    }

    /// The Jumpgate user who acted.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// The OS login (SSH principal) used on a node.
    pub fn login(mut self, login: impl Into<String>) -> Self {
        self.login = Some(login.into());
        self
    }

    /// The node (or auth/proxy server) the event happened on.
    pub fn server_id(mut self, server_id: impl Into<String>) -> Self {
        self.server_id = Some(server_id.into());
        self
    }

    /// The session the event belongs to.
    pub fn session_id(mut self, sid: impl Into<String>) -> Self {
        self.sid = Some(sid.into());
        self
    }

    /// The client address (the real one when the proxy got it through the PROXY protocol).
    pub fn remote_addr(mut self, addr: impl ToString) -> Self {
        self.addr_remote = Some(addr.to_string());
        self
    }

    /// An event-specific field (e.g. `command` for `exec`, `roles` for `cert.create`).
    /// A key of a fixed field ([`RESERVED_KEYS`]) is ignored with a warning: the fixed
    /// field has its own setter, and the JSON must not carry a key twice.
    pub fn field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        let key = key.into();
        if RESERVED_KEYS.contains(&key.as_str()) {
            tracing::warn!(key = %key, event = %self.event, "ignoring audit field with a reserved key");
        } else {
            self.fields.insert(key, value.into());
        }
        self
    }

    pub fn event_type(&self) -> EventType {
        self.event
    }
    pub fn code(&self) -> &str {
        &self.code
    }
    pub fn uid(&self) -> Uuid {
        self.uid
    }
    pub fn time(&self) -> Timestamp {
        self.time
    }
    pub fn user_name(&self) -> Option<&str> {
        self.user.as_deref()
    }
    pub fn login_name(&self) -> Option<&str> {
        self.login.as_deref()
    }
    pub fn server(&self) -> Option<&str> {
        self.server_id.as_deref()
    }
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }
    pub fn addr_remote(&self) -> Option<&str> {
        self.addr_remote.as_deref()
    }
    pub fn is_success(&self) -> bool {
        self.success
    }
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// The event as one line of JSON (no trailing newline).
    pub fn to_json(&self) -> crate::Result<String> {
        serde_json::to_string(self).map_err(crate::Error::Encode)
    }
}

fn ser_uuid<S: Serializer>(uid: &Uuid, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(uid)
}

fn de_uuid<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
    let s = String::deserialize(d)?;
    Uuid::parse_str(&s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use super::*;

    #[test]
    fn table_covers_every_variant_once_and_names_round_trip() {
        for (i, row) in TABLE.iter().enumerate() {
            assert_eq!(
                TABLE.iter().filter(|r| r.0 == row.0).count(),
                1,
                "{}",
                row.1
            );
            assert_eq!(EventType::from_name(row.1), Some(row.0));
            // The serde name and the table name agree.
            assert_eq!(
                serde_json::to_value(row.0).unwrap(),
                Value::String(row.1.into()),
                "row {i}"
            );
            assert_ne!(row.2, row.3);
        }
        assert_eq!(EventType::UserLogin.code(true), "T1000I");
        assert_eq!(EventType::UserLogin.code(false), "T1000W");
        assert_eq!(EventType::from_name("nope"), None);
    }

    #[test]
    fn json_shape() {
        let t = Timestamp::from_unix_millis(1_700_000_000_123).unwrap();
        let e = AuditEvent::failure(EventType::UserLogin, "bad password")
            .at(t)
            .user("alice")
            .remote_addr("10.0.0.5:51234")
            .field("method", "local")
            .field("success", true); // reserved: ignored
        let v: Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "user.login");
        assert_eq!(v["code"], "T1000W");
        assert_eq!(v["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["addr.remote"], "10.0.0.5:51234");
        assert_eq!(v["success"], false);
        assert_eq!(v["error"], "bad password");
        assert_eq!(v["method"], "local");
        assert!(v.get("addr_remote").is_none());
        assert!(v.get("fields").is_none());
        assert_eq!(
            Uuid::parse_str(v["uid"].as_str().unwrap())
                .unwrap()
                .get_version_num(),
            4
        );
        let back: AuditEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
