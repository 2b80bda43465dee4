//! Administering the cluster (DESIGN.md "Programs": `jctl`): users, join tokens,
//! resources, locks, certificate authorities, certificates and the audit log, as typed
//! calls on the auth API.
//!
//! [`AdminClient`] wraps the generated [`AuthClient`]: its methods take and return typed
//! values, and every failure is an [`AdminError`]. It works with any identity: `jctl` on
//! the auth host dials with the admin identity from the data directory
//! ([`AdminClient::connect`]); elsewhere with a `jsh login` profile, through the proxy
//! ([`AdminClient::connect_with_profile`]), and may then do what the user's roles allow.
//!
//! Resources the auth service sends back are kept as the [`Document`]s it sent (what
//! `jctl get` prints, and `jctl create` takes back), with typed views for the kinds `jctl`
//! shows in tables ([`UserRecord`], [`NodeRecord`]). Resources built here are typed
//! ([`jumpgate_types::Lock`]). [`text`] renders the answers for people.

mod error;
pub mod text;

#[cfg(test)]
mod tests;

pub use error::AdminError;

use crate::login::Password;
use crate::profile::Profile;
use jumpgate_api::{AuthClient, ClientConfig, proto};
use jumpgate_pki::SshKeyPair;
use jumpgate_types::{
    Lock, LockSpec, LockTarget, Metadata, NodePresence, Resource, ResourceError, ResourceName,
    ResourceSpec,
};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The largest resource document the auth API takes: its message limit, less room for
/// the rest of the request.
pub const MAX_DOCUMENT_LEN: usize = jumpgate_api::MAX_MESSAGE_SIZE - 4096;

/// The name locks made by [`AdminClient::create_lock`] are read under, in the auth
/// service's messages (`jctl lock: spec.target: ...`).
pub const LOCK_SOURCE: &str = "jctl lock";

/// The auth API, for administration.
#[derive(Debug, Clone)]
pub struct AdminClient {
    auth: AuthClient,
}

impl AdminClient {
    /// Wraps a connected auth client.
    pub fn new(auth: AuthClient) -> AdminClient {
        AdminClient { auth }
    }

    /// Dials the auth service at `addr` (`host:port`) with `tls` (an identity's client
    /// config).
    pub async fn connect(addr: &str, tls: Arc<ClientConfig>) -> Result<AdminClient, AdminError> {
        Ok(AdminClient::new(jumpgate_api::connect(addr, tls).await?))
    }

    /// Dials the auth API with the user identity of a `jsh login` profile, through the
    /// proxy (or `auth_server` when given), as Teleport's `tctl` uses a `tsh` profile.
    /// The profile must be valid at `now`.
    pub async fn connect_with_profile(
        profile: &Profile,
        auth_server: Option<&str>,
        now: SystemTime,
    ) -> Result<AdminClient, AdminError> {
        profile.check_valid(now)?;
        let addr = auth_server.unwrap_or(&profile.meta.proxy);
        let tls = profile.tls_credentials()?.client_config()?;
        AdminClient::connect(addr, tls).await
    }

    /// The cluster's name, version and authorities, and who the caller is.
    pub async fn status(&mut self) -> Result<ClusterStatus, AdminError> {
        let status = self
            .auth
            .status(proto::StatusRequest {})
            .await?
            .into_inner();
        Ok(ClusterStatus::from_proto(status))
    }

    /// Adds a local user. Without a password the answer holds a one-time signup token;
    /// with one, the `otpauth://` URI to enrol when the cluster asks for a second factor.
    pub async fn create_user(&mut self, user: NewUser) -> Result<UserEnrollment, AdminError> {
        let response = self
            .auth
            .create_user(proto::CreateUserRequest {
                name: user.name,
                roles: user.roles,
                logins: user.logins,
                password: user
                    .password
                    .map(|password| password.expose().to_string())
                    .unwrap_or_default(),
            })
            .await?
            .into_inner();
        Ok(UserEnrollment {
            signup: SignupToken::from_parts(response.signup_token, response.signup_expires_unix),
            otpauth_uri: Some(response.otpauth_uri).filter(|uri| !uri.is_empty()),
        })
    }

    /// Every local user, with lock state.
    pub async fn users(&mut self) -> Result<Vec<UserRecord>, AdminError> {
        let documents = self.resources("user", None).await?;
        Ok(documents
            .into_iter()
            .map(UserRecord::from_document)
            .collect())
    }

    /// The public address of a proxy of the cluster (the first, by name, of those that
    /// heartbeat), for links users open: its `public_addr`, else the address it listens
    /// on if that is a specific one; `None` when no proxy runs.
    pub async fn proxy_public_addr(&mut self) -> Result<Option<String>, AdminError> {
        let mut proxies = self.resources("proxy", None).await?;
        proxies.sort_by(|a, b| a.text_at("/metadata/name").cmp(b.text_at("/metadata/name")));
        let public = proxies
            .iter()
            .flat_map(|proxy| proxy.strings_at("/spec/public_addr"))
            .find(|addr| !addr.is_empty());
        // A proxy without `public_addr` (a dev cluster) is reached where it listens,
        // unless that is every address of the host.
        let bound = || {
            proxies
                .iter()
                .map(|proxy| proxy.text_at("/spec/addr").to_string())
                .find(|addr| {
                    !addr.is_empty() && !addr.starts_with("0.0.0.0:") && !addr.starts_with("[::]:")
                })
        };
        Ok(public.or_else(bound))
    }

    /// Deletes a user (and its signup tokens).
    pub async fn delete_user(&mut self, name: &str) -> Result<(), AdminError> {
        self.delete_resource("user", name).await
    }

    /// Forgets a user's password and second factor; the answer is a new signup token.
    pub async fn reset_user(&mut self, name: &str) -> Result<SignupToken, AdminError> {
        let response = self
            .auth
            .reset_user(proto::ResetUserRequest {
                name: name.to_string(),
            })
            .await?
            .into_inner();
        Ok(SignupToken {
            token: response.signup_token,
            expires: unix_time(response.signup_expires_unix),
        })
    }

    /// Lifts a lock after failed logins.
    pub async fn unlock_user(&mut self, name: &str) -> Result<(), AdminError> {
        self.auth
            .unlock_user(proto::UnlockUserRequest {
                name: name.to_string(),
            })
            .await?;
        Ok(())
    }

    /// The nodes whose heartbeat is current.
    pub async fn nodes(&mut self) -> Result<Vec<NodeRecord>, AdminError> {
        let documents = self.documents("node", None, false).await?;
        documents
            .iter()
            .map(|text| {
                let document = Document::parse(text).map_err(AdminError::MalformedResource)?;
                NodeRecord::from_document(document)
            })
            .collect()
    }

    /// The sessions in progress (on every node), newest first.
    pub async fn active_sessions(&mut self) -> Result<Vec<ActiveSessionRecord>, AdminError> {
        let listed = self
            .auth
            .list_active_sessions(proto::ListActiveSessionsRequest {})
            .await
            .map_err(AdminError::from)?
            .into_inner();
        Ok(listed
            .sessions
            .into_iter()
            .map(|active| ActiveSessionRecord {
                started: u64::try_from(active.started_unix_millis)
                    .ok()
                    .map(|millis| UNIX_EPOCH + Duration::from_millis(millis)),
                session_id: active.session_id,
                user: active.user,
                login: active.login,
                node_hostname: active.node_hostname,
                node_uuid: active.node_uuid,
                client_addr: active.client_addr,
                interactive: active.interactive,
            })
            .collect())
    }

    /// Makes a join token.
    pub async fn create_join_token(
        &mut self,
        token: NewJoinToken,
    ) -> Result<JoinToken, AdminError> {
        let response = self
            .auth
            .create_join_token(proto::CreateJoinTokenRequest {
                roles: token.roles.clone(),
                ttl_seconds: seconds(token.ttl),
                reusable: token.reusable,
            })
            .await?
            .into_inner();
        Ok(JoinToken {
            token: response.token,
            id: response.id,
            roles: token.roles,
            expires: unix_time(response.expires_unix),
            ca_pins: response.ca_pins,
            single_use: !token.reusable,
        })
    }

    /// The join tokens (by id: the tokens themselves are stored hashed), static ones too.
    pub async fn join_tokens(&mut self) -> Result<Vec<JoinTokenInfo>, AdminError> {
        let tokens = self
            .auth
            .list_join_tokens(proto::ListJoinTokensRequest {})
            .await?
            .into_inner()
            .tokens;
        Ok(tokens
            .into_iter()
            .map(|token| JoinTokenInfo {
                id: token.id,
                roles: token.roles,
                expires: unix_time(token.expires_unix),
                kind: token.kind,
                single_use: token.single_use,
            })
            .collect())
    }

    /// Revokes a join token, given the token or its id.
    pub async fn delete_join_token(&mut self, token: &str) -> Result<(), AdminError> {
        self.auth
            .delete_join_token(proto::DeleteJoinTokenRequest {
                token: token.to_string(),
            })
            .await?;
        Ok(())
    }

    /// The resources of a kind (`role`, `user`, `lock`, ...; plurals too), or the one
    /// named, as the auth service keeps them.
    pub async fn resources(
        &mut self,
        kind: &str,
        name: Option<&str>,
    ) -> Result<Vec<Document>, AdminError> {
        self.parsed_documents(kind, name, false).await
    }

    /// As [`AdminClient::resources`], with SSO connectors' client secrets.
    pub async fn resources_with_secrets(
        &mut self,
        kind: &str,
        name: Option<&str>,
    ) -> Result<Vec<Document>, AdminError> {
        self.parsed_documents(kind, name, true).await
    }

    async fn parsed_documents(
        &mut self,
        kind: &str,
        name: Option<&str>,
        with_secrets: bool,
    ) -> Result<Vec<Document>, AdminError> {
        let documents = self.documents(kind, name, with_secrets).await?;
        documents
            .iter()
            .map(|text| Document::parse(text).map_err(AdminError::MalformedResource))
            .collect()
    }

    async fn documents(
        &mut self,
        kind: &str,
        name: Option<&str>,
        with_secrets: bool,
    ) -> Result<Vec<String>, AdminError> {
        Ok(self
            .auth
            .get_resources(proto::GetResourcesRequest {
                kind: kind.to_string(),
                name: name.unwrap_or_default().to_string(),
                with_secrets,
            })
            .await?
            .into_inner()
            .documents)
    }

    /// Creates (or with `force`, replaces) the resource in a document from a file; the
    /// auth service parses and checks it, and names `document.source_name` in what it
    /// says.
    pub async fn upsert_document(
        &mut self,
        document: ResourceDocument,
        force: bool,
    ) -> Result<Upserted, AdminError> {
        if document.text.len() > MAX_DOCUMENT_LEN {
            return Err(AdminError::DocumentTooLarge {
                source_name: document.source_name,
                len: document.text.len(),
            });
        }
        let response = self
            .auth
            .upsert_resource(proto::UpsertResourceRequest {
                document: document.text,
                source_name: document.source_name,
                force,
            })
            .await?
            .into_inner();
        Ok(Upserted {
            kind: response.kind,
            name: response.name,
            created: response.created,
            warnings: response.warnings,
        })
    }

    /// Creates (or with `force`, replaces) a typed resource.
    pub async fn upsert_resource<S: ResourceSpec>(
        &mut self,
        resource: &Resource<S>,
        source_name: &str,
        force: bool,
    ) -> Result<Upserted, AdminError> {
        let document = ResourceDocument {
            source_name: source_name.to_string(),
            text: resource.to_json()?,
        };
        self.upsert_document(document, force).await
    }

    /// Creates a lock named by a fresh UUID (as Teleport's `tctl lock`); the auth service
    /// records who made it and when. Returns the lock as sent.
    pub async fn create_lock(&mut self, lock: NewLock) -> Result<Lock, AdminError> {
        let lock = lock.into_lock(uuid::Uuid::new_v4())?;
        self.upsert_resource(&lock, LOCK_SOURCE, false).await?;
        Ok(lock)
    }

    /// Deletes a resource.
    pub async fn delete_resource(&mut self, kind: &str, name: &str) -> Result<(), AdminError> {
        self.auth
            .delete_resource(proto::DeleteResourceRequest {
                kind: kind.to_string(),
                name: name.to_string(),
            })
            .await?;
        Ok(())
    }

    /// A CA's public keys: the user CA as `TrustedUserCAKeys` lines, the host CA as
    /// `@cert-authority` known_hosts lines, the TLS CA as PEM.
    pub async fn export_authority(&mut self, ca: CaType) -> Result<String, AdminError> {
        Ok(self
            .auth
            .export_authority(proto::ExportAuthorityRequest {
                r#type: ca.as_str().to_string(),
            })
            .await?
            .into_inner()
            .text)
    }

    /// Rotates CAs: new certificates are signed by fresh keys at once, and the old keys
    /// stay trusted for `grace_period` (zero retires them at once).
    pub async fn rotate_authorities(
        &mut self,
        which: RotateScope,
        grace_period: Duration,
    ) -> Result<Rotation, AdminError> {
        let response = self
            .auth
            .rotate_authority(proto::RotateAuthorityRequest {
                r#type: which.as_str().to_string(),
                grace_period_seconds: seconds(grace_period),
            })
            .await?
            .into_inner();
        Ok(Rotation {
            rotated: response.rotated,
            grace_period_ends: unix_time(response.grace_period_ends_unix),
            grace_period,
        })
    }

    /// Makes an SSH key here and has the user CA sign it for `user` (automation); `ttl`
    /// is capped by the user's roles, and `None` takes the cluster's default.
    pub async fn sign_user_ssh(
        &mut self,
        user: &str,
        ttl: Option<Duration>,
    ) -> Result<UserSshCertificate, AdminError> {
        let key = jumpgate_pki::generate_ssh_key(&format!("{user} (jctl auth sign)"))?;
        let response = self
            .auth
            .sign_user(proto::SignUserRequest {
                user: user.to_string(),
                ssh_public_key: key.public_openssh.clone(),
                tls_public_key_pem: String::new(),
                ttl_seconds: ttl.map_or(0, seconds),
            })
            .await?
            .into_inner();
        Ok(UserSshCertificate {
            key,
            certificate: response.ssh_certificate,
            principals: response.principals,
            expires: unix_time(response.expires_unix),
        })
    }

    /// Makes a TLS key here and has the TLS CA sign an X.509 identity of `user` for it
    /// (mutual TLS with the auth API).
    pub async fn sign_user_tls(
        &mut self,
        user: &str,
        ttl: Option<Duration>,
    ) -> Result<UserTlsCertificate, AdminError> {
        let (key_pem, public_key_pem) = jumpgate_pki::generate_tls_key()?;
        let response = self
            .auth
            .sign_user(proto::SignUserRequest {
                user: user.to_string(),
                ssh_public_key: String::new(),
                tls_public_key_pem: public_key_pem,
                ttl_seconds: ttl.map_or(0, seconds),
            })
            .await?
            .into_inner();
        Ok(UserTlsCertificate {
            key_pem,
            certificate_pem: response.tls_certificate_pem,
            ca_pems: response.tls_ca_pems,
            expires: unix_time(response.expires_unix),
        })
    }

    /// Makes an SSH host key here and has the host CA sign it for `host` and
    /// `principals`: an OpenSSH server without the Jumpgate agent.
    pub async fn sign_host(
        &mut self,
        host: &str,
        principals: Vec<String>,
        ttl: Option<Duration>,
    ) -> Result<HostCertificate, AdminError> {
        let key = jumpgate_pki::generate_ssh_key(host)?;
        let response = self
            .auth
            .sign_host(proto::SignHostRequest {
                host: host.to_string(),
                ssh_public_key: key.public_openssh.clone(),
                principals,
                ttl_seconds: ttl.map_or(0, seconds),
            })
            .await?
            .into_inner();
        Ok(HostCertificate {
            key,
            certificate: response.ssh_certificate,
            user_ca_keys: response.user_ca_keys,
            expires: unix_time(response.expires_unix),
        })
    }

    /// Audit events matching `query`, oldest first.
    /// Up to `query.limit` events, oldest first, and whether more match: pages of at
    /// most [`jumpgate_audit::MAX_LIMIT`] events (what auth returns for one request), followed by their
    /// cursors until the limit is reached or the log has no more.
    pub async fn search_events(&mut self, query: EventQuery) -> Result<SearchedEvents, AdminError> {
        let to_unix_millis = match query.to {
            Some(to) => unix_millis("to", to)?,
            None => 0,
        };
        let from_unix_millis = unix_millis("from", query.from)?;
        let mut events = Vec::new();
        let mut cursor = String::new();
        loop {
            let wanted = query
                .limit
                .saturating_sub(u32::try_from(events.len()).unwrap_or(u32::MAX));
            let response = self
                .auth
                .search_events(proto::SearchEventsRequest {
                    from_unix_millis,
                    to_unix_millis,
                    types: query.types.clone(),
                    user: query.user.clone().unwrap_or_default(),
                    session_id: query.session.clone().unwrap_or_default(),
                    limit: wanted.clamp(1, jumpgate_audit::MAX_LIMIT),
                    cursor,
                    descending: false,
                })
                .await?
                .into_inner();
            for event in &response.events {
                events.push(Document::parse(event).map_err(AdminError::MalformedEvent)?);
            }
            cursor = response.next_cursor;
            let full = u32::try_from(events.len()).unwrap_or(u32::MAX) >= query.limit;
            if cursor.is_empty() || full || response.events.is_empty() {
                return Ok(SearchedEvents {
                    events,
                    more: !cursor.is_empty(),
                });
            }
        }
    }
}

/// Seconds for the API, which takes them signed.
fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// A time from the API's seconds since 1970, where zero (or less) means none.
fn unix_time(seconds: i64) -> Option<SystemTime> {
    if seconds <= 0 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds.unsigned_abs()))
}

/// A time as the API's milliseconds since 1970.
fn unix_millis(what: &'static str, time: SystemTime) -> Result<i64, AdminError> {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| AdminError::BeforeEpoch { what })?
        .as_millis();
    Ok(i64::try_from(millis).unwrap_or(i64::MAX))
}

/// A JSON document as the auth service sent it: a resource or an audit event. It is
/// printed as it came (`jctl get`), so nothing is lost or reordered for a reader who
/// feeds it back to `jctl create`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Document(Value);

impl Document {
    /// Parses one document.
    pub fn parse(text: &str) -> Result<Document, serde_json::Error> {
        serde_json::from_str(text).map(Document)
    }

    /// The document as JSON.
    pub fn value(&self) -> &Value {
        &self.0
    }

    /// The string at a JSON pointer (`/metadata/name`), or "" when there is none.
    pub fn text_at(&self, pointer: &str) -> &str {
        self.0
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The strings of the list at a JSON pointer (other items skipped), or none.
    pub fn strings_at(&self, pointer: &str) -> Vec<String> {
        self.0
            .pointer(pointer)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A top-level field as text: a string as it is, null or absent as "", anything
    /// else as JSON. Audit events are flat (`addr.remote` is one key).
    pub fn field_text(&self, name: &str) -> String {
        match self.0.get(name) {
            Some(Value::String(text)) => text.clone(),
            None | Some(Value::Null) => String::new(),
            Some(other) => other.to_string(),
        }
    }
}

impl From<Value> for Document {
    fn from(value: Value) -> Document {
        Document(value)
    }
}

/// `jctl status`; serialised as `jctl status --format json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    pub cluster_name: String,
    pub server_version: String,
    /// SHA256 fingerprints of the user CA's trusted keys.
    pub user_ca_fingerprints: Vec<String>,
    pub host_ca_fingerprints: Vec<String>,
    /// The TLS CA's `ca_pin`s, which joining hosts need.
    pub ca_pins: Vec<String>,
    /// Who the auth service takes the caller for.
    pub caller: String,
    pub authorities: Vec<AuthorityStatus>,
}

impl ClusterStatus {
    fn from_proto(status: proto::StatusResponse) -> ClusterStatus {
        ClusterStatus {
            cluster_name: status.cluster_name,
            server_version: status.server_version,
            user_ca_fingerprints: status.user_ca_fingerprints,
            host_ca_fingerprints: status.host_ca_fingerprints,
            ca_pins: status.ca_pins,
            caller: status.caller,
            authorities: status
                .authorities
                .into_iter()
                .map(|ca| AuthorityStatus {
                    ca_type: ca.r#type,
                    active: ca.active,
                    last_rotated: unix_time(ca.last_rotated_unix),
                    previous: ca
                        .previous
                        .into_iter()
                        .map(|key| PreviousKey {
                            key: key.key,
                            trusted_until: unix_time(key.trusted_until_unix),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// One CA in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorityStatus {
    /// `user`, `host` or `tls`.
    #[serde(rename = "type")]
    pub ca_type: String,
    /// The signing key: its fingerprint (SSH) or `ca_pin` (TLS).
    pub active: String,
    /// When it was last rotated; none: never.
    #[serde(serialize_with = "text::serialize_time")]
    pub last_rotated: Option<SystemTime>,
    /// Keys retired by a rotation and still trusted.
    pub previous: Vec<PreviousKey>,
}

/// A retired CA key still trusted during the grace period of a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviousKey {
    pub key: String,
    #[serde(serialize_with = "text::serialize_time")]
    pub trusted_until: Option<SystemTime>,
}

/// A user to add.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub roles: Vec<String>,
    /// The `{{internal.logins}}` trait.
    pub logins: Vec<String>,
    /// None: the user sets one with a signup token.
    pub password: Option<Password>,
}

/// How a new user gets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEnrollment {
    /// Made when no password was given: the user signs up with it.
    pub signup: Option<SignupToken>,
    /// When a password was given and the cluster asks for a second factor: the URI to
    /// enrol in an authenticator app.
    pub otpauth_uri: Option<String>,
}

/// The web UI's invite link for a signup token, at the proxy's public address
/// (`host:port`). The token is in the fragment, which browsers never send to the server:
/// it reaches no access log and no `Referer` header (docs/web.md).
pub fn invite_link(proxy_public_addr: &str, token: &str) -> String {
    format!("https://{proxy_public_addr}/web/invite#{token}")
}

/// A one-time signup token: whoever holds it sets the user's password.
#[derive(Clone, PartialEq, Eq)]
pub struct SignupToken {
    pub token: String,
    pub expires: Option<SystemTime>,
}

impl SignupToken {
    fn from_parts(token: String, expires_unix: i64) -> Option<SignupToken> {
        (!token.is_empty()).then(|| SignupToken {
            token,
            expires: unix_time(expires_unix),
        })
    }
}

impl fmt::Debug for SignupToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignupToken")
            .field("token", &"[redacted]")
            .field("expires", &self.expires)
            .finish()
    }
}

/// A local user, from its `kind: user` document.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub name: String,
    pub roles: Vec<String>,
    /// The `logins` trait.
    pub logins: Vec<String>,
    /// Set while failed logins keep the user out.
    pub locked_until: Option<SystemTime>,
    /// For a user single sign-on made: `KIND/CONNECTOR` (`oidc/okta`).
    pub connector: Option<String>,
    /// The document itself (`jctl users ls --format json`).
    pub document: Document,
}

impl UserRecord {
    /// Reads what a table shows; a field that is missing or of another type reads as
    /// empty, so one odd record does not hide the others.
    pub fn from_document(document: Document) -> UserRecord {
        UserRecord {
            name: document.text_at("/metadata/name").to_string(),
            roles: document.strings_at("/spec/roles"),
            logins: document.strings_at("/spec/traits/logins"),
            locked_until: document
                .value()
                .pointer("/status/locked_until")
                .and_then(Value::as_i64)
                .and_then(unix_time),
            connector: Some(format!(
                "{}/{}",
                document.text_at("/spec/created_by/connector/type"),
                document.text_at("/spec/created_by/connector/id")
            ))
            .filter(|connector| connector != "/"),
            document,
        }
    }
}

/// A session in progress, as `jctl sessions ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActiveSessionRecord {
    pub session_id: String,
    pub user: String,
    pub login: String,
    pub node_hostname: String,
    pub node_uuid: String,
    pub client_addr: String,
    pub interactive: bool,
    #[serde(serialize_with = "text::serialize_time")]
    pub started: Option<SystemTime>,
}

/// A node, as `jctl nodes ls` shows it: the parts of the [`NodePresence`] of its last
/// heartbeat a table shows, and the document as it came.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    /// Empty when the record names none.
    pub hostname: String,
    /// Its UUID (the document's name).
    pub uuid: String,
    /// Labels; a value that is not a string reads as "".
    pub labels: BTreeMap<String, String>,
    /// The proxies holding its reverse tunnels.
    pub tunnels: Vec<String>,
    /// The document itself (`jctl nodes ls --format json`).
    pub document: Document,
}

impl NodeRecord {
    /// Reads the record. Fields that are missing or of another type read as empty, so
    /// one odd record does not hide the others; a document that is no node record (no
    /// name) is refused.
    pub fn from_document(document: Document) -> Result<NodeRecord, AdminError> {
        let node = NodePresence::from_value("auth:node", document.value())
            .map_err(AdminError::MalformedNode)?;
        Ok(NodeRecord {
            hostname: node.hostname,
            uuid: node.uuid,
            labels: node.labels,
            tunnels: node
                .tunnels
                .into_iter()
                .map(|tunnel| tunnel.proxy)
                .collect(),
            document,
        })
    }
}

/// A join token to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJoinToken {
    /// What hosts may join as: `node`, `proxy`.
    pub roles: Vec<String>,
    pub ttl: Duration,
    /// Any number of hosts may join with it until it expires; otherwise the first join
    /// consumes it.
    pub reusable: bool,
}

/// A join token just made: the only time the token itself is shown. Serialised as
/// `jctl tokens add --format json` prints it.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct JoinToken {
    pub token: String,
    /// What `jctl tokens ls` and `jctl tokens rm` know it by.
    pub id: String,
    pub roles: Vec<String>,
    #[serde(serialize_with = "text::serialize_time")]
    pub expires: Option<SystemTime>,
    /// The TLS CA's pins, for the joining host's `ca_pin`.
    pub ca_pins: Vec<String>,
    pub single_use: bool,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("token", &"[redacted]")
            .field("id", &self.id)
            .field("roles", &self.roles)
            .field("expires", &self.expires)
            .field("single_use", &self.single_use)
            .finish_non_exhaustive()
    }
}

/// A join token as listed: by id. Serialised as `jctl tokens ls --format json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JoinTokenInfo {
    pub id: String,
    pub roles: Vec<String>,
    #[serde(serialize_with = "text::serialize_time")]
    pub expires: Option<SystemTime>,
    /// `dynamic` (made by `jctl tokens add`) or `static` (from the config).
    pub kind: String,
    pub single_use: bool,
}

/// One resource document of a file for [`AdminClient::upsert_document`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDocument {
    /// How the auth service names it in errors: the file, and which document in it.
    pub source_name: String,
    /// YAML or JSON.
    pub text: String,
}

impl ResourceDocument {
    /// Splits the text of a file (named `source`) into its documents, at `---` lines;
    /// documents with nothing but blank lines and comments are dropped. Each is named
    /// after the file, and when there are several, after its place in it.
    pub fn split(source: &str, text: &str) -> Result<Vec<ResourceDocument>, AdminError> {
        let mut documents = vec![String::new()];
        for line in text.lines() {
            if line.trim_end() == "---" {
                documents.push(String::new());
                continue;
            }
            if let Some(current) = documents.last_mut() {
                current.push_str(line);
                current.push('\n');
            }
        }
        documents.retain(|document| {
            document
                .lines()
                .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        });
        if documents.is_empty() {
            return Err(AdminError::NoResource {
                source_name: source.to_string(),
            });
        }
        let many = documents.len() > 1;
        Ok(documents
            .into_iter()
            .enumerate()
            .map(|(i, text)| ResourceDocument {
                source_name: if many {
                    format!("{source} (document {})", i + 1)
                } else {
                    source.to_string()
                },
                text,
            })
            .collect())
    }
}

/// What [`AdminClient::upsert_document`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted {
    /// The kind as the auth service names it (`role`).
    pub kind: String,
    pub name: String,
    /// Created, rather than replaced.
    pub created: bool,
    /// Accepted, but probably not what was meant.
    pub warnings: Vec<String>,
}

/// A lock to make: whom it locks out, why, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLock {
    /// Exactly one field set (the auth service refuses anything else).
    pub target: LockTarget,
    /// Shown to whoever is refused.
    pub message: String,
    /// None: until removed.
    pub expires: Option<SystemTime>,
}

impl NewLock {
    /// A lock's end `ttl` after `now`, in whole seconds (how it is shown); none if the
    /// time cannot be represented.
    pub fn expires_after(now: SystemTime, ttl: Duration) -> Option<SystemTime> {
        let end = now.checked_add(ttl)?.duration_since(UNIX_EPOCH).ok()?;
        UNIX_EPOCH.checked_add(Duration::from_secs(end.as_secs()))
    }

    /// An end given as text (`jctl lock --expires`): RFC 3339, read as the auth service
    /// reads a lock's `spec.expires`, and refused in the words it would use.
    pub fn parse_expires(text: &str) -> Result<SystemTime, ResourceError> {
        jumpgate_types::resource::parse_rfc3339(text).map_err(|err| ResourceError::Field {
            source_name: LOCK_SOURCE.to_string(),
            path: "spec.expires".to_string(),
            reason: err.to_string(),
        })
    }

    fn into_lock(self, name: uuid::Uuid) -> Result<Lock, AdminError> {
        Ok(Resource::new(
            Metadata::new(ResourceName::new(name.to_string())?),
            LockSpec {
                target: self.target,
                message: self.message,
                expires: self.expires,
                created_by: String::new(),
                created_at: None,
            },
        ))
    }
}

/// A certificate authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaType {
    /// Signs users' SSH certificates.
    User,
    /// Signs hosts' SSH certificates.
    Host,
    /// Signs the X.509 identities of mutual TLS.
    Tls,
}

impl CaType {
    /// As the auth API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            CaType::User => "user",
            CaType::Host => "host",
            CaType::Tls => "tls",
        }
    }
}

/// Which CAs to rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateScope {
    One(CaType),
    All,
}

impl RotateScope {
    /// As the auth API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            RotateScope::One(ca) => ca.as_str(),
            RotateScope::All => "all",
        }
    }
}

/// What a rotation did. Serialised as `jctl auth rotate --format json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rotation {
    /// The CAs rotated (`user`, `host`, `tls`).
    pub rotated: Vec<String>,
    /// Until when the old keys stay trusted.
    #[serde(serialize_with = "text::serialize_time")]
    pub grace_period_ends: Option<SystemTime>,
    /// As asked for; zero: the old keys were retired at once.
    #[serde(skip)]
    pub grace_period: Duration,
}

/// A user's key made here and its SSH certificate.
#[derive(Debug, Clone)]
pub struct UserSshCertificate {
    /// The key (its `Debug` leaves out the private half).
    pub key: SshKeyPair,
    /// The `-cert.pub` line.
    pub certificate: String,
    /// The logins it allows.
    pub principals: Vec<String>,
    pub expires: Option<SystemTime>,
}

/// A user's TLS key made here and its X.509 certificate.
#[derive(Clone)]
pub struct UserTlsCertificate {
    /// The private key, PEM. Never log it.
    pub key_pem: String,
    pub certificate_pem: String,
    /// The cluster's TLS CA certificates, to trust.
    pub ca_pems: Vec<String>,
    pub expires: Option<SystemTime>,
}

impl fmt::Debug for UserTlsCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserTlsCertificate")
            .field("certificate_pem", &self.certificate_pem)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// A host key made here, its SSH host certificate, and the user CA its `sshd` is to
/// trust.
#[derive(Debug, Clone)]
pub struct HostCertificate {
    /// The key (its `Debug` leaves out the private half).
    pub key: SshKeyPair,
    pub certificate: String,
    /// `TrustedUserCAKeys` lines.
    pub user_ca_keys: String,
    pub expires: Option<SystemTime>,
}

/// What an audit search found.
#[derive(Debug, Clone)]
pub struct SearchedEvents {
    /// Oldest first.
    pub events: Vec<Document>,
    /// Whether more events match than the search's limit let through.
    pub more: bool,
}

/// An audit search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    pub from: SystemTime,
    /// None: now.
    pub to: Option<SystemTime>,
    /// Event types (`user.login`); none: all.
    pub types: Vec<String>,
    pub user: Option<String>,
    pub session: Option<String>,
    /// How many events at most.
    pub limit: u32,
}
