//! The single sign-on RPCs (`CreateSsoLogin`, `FinishSsoLogin`, `GetSsoLoginResult`) and the
//! connectors they use; the flow is described in [`crate::sso`].

use super::caller::Caller;
use super::errors::ServiceError;
use super::web_sessions::{ID_BYTES, backend_error, is_random_id, random_hex};
use super::{AuthServer, trust_roots, unix};
use crate::sso::{self, ExternalIdentity, PendingLogin, Purpose, SsoError};
use crate::users::{SsoOrigin, User};
use jumpgate_api::proto;
use jumpgate_audit::{AuditEvent, EventType};
use jumpgate_backend::{BackendError, Key, NewItem};
use jumpgate_types::config::AuthType;
use jumpgate_types::connector::{ConnectorKind, ConnectorSpec, ConnectorSummary};
use jumpgate_types::{GithubConnector, OidcConnector, SamlConnector};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};

/// Where connectors are kept: `/connectors/KIND/NAME`, auth's cache reads them.
pub const CONNECTORS_PREFIX: &str = "/connectors/";
const LOGINS_PREFIX: &str = "/sso/logins/";
const RESULTS_PREFIX: &str = "/sso/results/";

/// What `auth_service.authentication` says about SSO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoSettings {
    pub kind: AuthType,
    pub connector_name: Option<String>,
    pub local_auth: bool,
}

impl Default for SsoSettings {
    fn default() -> Self {
        Self {
            kind: AuthType::Local,
            connector_name: None,
            local_auth: true,
        }
    }
}

/// The `type` keyword of `kind`.
pub fn auth_type_name(kind: AuthType) -> &'static str {
    match kind {
        AuthType::Oidc => "oidc",
        AuthType::Saml => "saml",
        AuthType::Github => "github",
        _ => "local",
    }
}

/// A connector of any kind, as stored.
enum AnyConnector {
    Oidc(OidcConnector),
    Github(GithubConnector),
    Saml(SamlConnector),
}

impl AnyConnector {
    fn name(&self) -> &str {
        match self {
            Self::Oidc(connector) => connector.name(),
            Self::Github(connector) => connector.name(),
            Self::Saml(connector) => connector.name(),
        }
    }

    fn max_session_ttl(&self) -> Duration {
        match self {
            Self::Oidc(connector) => connector.spec.max_session_ttl(),
            Self::Github(connector) => connector.spec.max_session_ttl(),
            Self::Saml(connector) => connector.spec.max_session_ttl(),
        }
    }
}

/// A jsh login's certificates, waiting to be collected.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredResult {
    secret_sha256: String,
    response: StoredLoginResponse,
}

/// [`proto::LoginResponse`]'s fields (prost messages are not serde).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredLoginResponse {
    ssh_certificate: String,
    tls_certificate_pem: String,
    expires_unix: i64,
    principals: Vec<String>,
    roles: Vec<String>,
}

fn hashed_key(prefix: &str, id: &str) -> Result<Key, ServiceError> {
    Key::new(format!(
        "{prefix}{}",
        hex::encode(Sha256::digest(id.as_bytes()))
    ))
    .map_err(ServiceError::internal)
}

fn sso_error(err: SsoError) -> ServiceError {
    match err {
        SsoError::Provider { .. } => ServiceError::Unavailable(err.to_string()),
        _ => ServiceError::PermissionDenied(err.to_string()),
    }
}

impl AuthServer {
    fn http(&self) -> Result<&sso::http::HttpClient, ServiceError> {
        self.inner.http.as_ref().map_err(|err| {
            ServiceError::internal_in("the HTTP client for identity providers", err.clone())
        })
    }

    /// Every connector, for the login page and `jsh login` (no secrets).
    pub(crate) fn connector_summaries(&self) -> Vec<ConnectorSummary> {
        self.inner
            .cache
            .list(CONNECTORS_PREFIX)
            .into_iter()
            .filter_map(|(key, value)| {
                let kind = key
                    .strip_prefix(CONNECTORS_PREFIX)?
                    .split('/')
                    .next()
                    .and_then(ConnectorKind::parse)?;
                let text = std::str::from_utf8(&value).ok()?;
                match kind {
                    ConnectorKind::Oidc => OidcConnector::from_json(&key, text)
                        .ok()
                        .map(|connector| connector.summary()),
                    ConnectorKind::Github => GithubConnector::from_json(&key, text)
                        .ok()
                        .map(|connector| connector.summary()),
                    ConnectorKind::Saml => SamlConnector::from_json(&key, text)
                        .ok()
                        .map(|connector| connector.summary()),
                }
            })
            .collect()
    }

    /// The connector a login names, or the configured default.
    fn find_connector(&self, kind: &str, name: &str) -> Result<AnyConnector, ServiceError> {
        let settings = &self.inner.sso;
        let kind = if kind.is_empty() {
            match settings.kind {
                AuthType::Local => {
                    return Err(ServiceError::invalid(
                        "name a connector (jsh login --auth NAME); the cluster's default login \
                         is local",
                    ));
                }
                other => auth_type_name(other).to_owned(),
            }
        } else {
            kind.to_owned()
        };
        let kind = ConnectorKind::parse(&kind).ok_or_else(|| {
            ServiceError::invalid(format!(
                "unknown connector kind {kind:?}; expected oidc, saml or github"
            ))
        })?;
        let of_kind: Vec<ConnectorSummary> = self
            .connector_summaries()
            .into_iter()
            .filter(|summary| summary.kind == kind.as_str())
            .collect();
        let name = if !name.is_empty() {
            name.to_owned()
        } else if let Some(default) = settings
            .connector_name
            .as_ref()
            .filter(|_| auth_type_name(settings.kind) == kind.as_str())
        {
            default.clone()
        } else {
            match of_kind.as_slice() {
                [only] => only.name.clone(),
                [] => {
                    return Err(ServiceError::NotFound(format!(
                        "there is no {kind} connector; an admin adds one with `jctl create`"
                    )));
                }
                several => {
                    let names: Vec<&str> = several.iter().map(|s| s.name.as_str()).collect();
                    return Err(ServiceError::invalid(format!(
                        "there are several {kind} connectors ({}); name one",
                        names.join(", ")
                    )));
                }
            }
        };
        let key = format!("{CONNECTORS_PREFIX}{kind}/{name}");
        let Some(value) = self.inner.cache.get(&key) else {
            let names: Vec<String> = self
                .connector_summaries()
                .into_iter()
                .map(|summary| format!("{}/{}", summary.kind, summary.name))
                .collect();
            return Err(ServiceError::NotFound(format!(
                "there is no {kind} connector {name:?}; the cluster has: {}",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )));
        };
        let text = std::str::from_utf8(&value).map_err(ServiceError::internal)?;
        match kind {
            ConnectorKind::Oidc => Ok(AnyConnector::Oidc(
                OidcConnector::from_json(&key, text)
                    .map_err(|err| ServiceError::internal_in("stored connector", err))?,
            )),
            ConnectorKind::Github => Ok(AnyConnector::Github(
                GithubConnector::from_json(&key, text)
                    .map_err(|err| ServiceError::internal_in("stored connector", err))?,
            )),
            ConnectorKind::Saml => Ok(AnyConnector::Saml(
                SamlConnector::from_json(&key, text)
                    .map_err(|err| ServiceError::internal_in("stored connector", err))?,
            )),
        }
    }

    pub(crate) async fn create_sso_login(
        &self,
        request: proto::CreateSsoLoginRequest,
    ) -> Result<proto::CreateSsoLoginResponse, ServiceError> {
        let connector = self.find_connector(&request.kind, &request.connector)?;
        let purpose = if request.client_redirect_url.is_empty() {
            Purpose::Web {
                redirect_path: sso::web_redirect_path(&request.web_redirect_path),
            }
        } else {
            let url = sso::client_redirect_url(&request.client_redirect_url)
                .map_err(ServiceError::invalid)?;
            if request.ssh_public_key.trim().is_empty()
                && request.tls_public_key_pem.trim().is_empty()
            {
                return Err(ServiceError::invalid(
                    "send an ssh_public_key, a tls_public_key_pem, or both",
                ));
            }
            let secret = request.client_secret_sha256.to_ascii_lowercase();
            if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ServiceError::invalid(
                    "client_secret_sha256 must be the hex SHA-256 of a secret jsh keeps",
                ));
            }
            Purpose::Cli {
                redirect_url: url.to_string(),
                ssh_public_key: request.ssh_public_key,
                tls_public_key_pem: request.tls_public_key_pem,
                ttl_seconds: request.ttl_seconds,
                secret_sha256: secret,
            }
        };
        let state = random_hex(ID_BYTES);
        let (pending, redirect_url) = match &connector {
            AnyConnector::Oidc(oidc) => {
                let started = sso::oidc::start(self.http()?, oidc, &state)
                    .await
                    .map_err(sso_error)?;
                (
                    PendingLogin {
                        kind: ConnectorKind::Oidc.as_str().to_owned(),
                        connector: oidc.name().to_owned(),
                        nonce: started.nonce,
                        pkce_verifier: started.pkce_verifier,
                        saml_request_id: String::new(),
                        purpose,
                    },
                    started.redirect_url,
                )
            }
            AnyConnector::Github(github) => {
                let started = sso::github::start(github, &state).map_err(sso_error)?;
                (
                    PendingLogin {
                        kind: ConnectorKind::Github.as_str().to_owned(),
                        connector: github.name().to_owned(),
                        nonce: String::new(),
                        pkce_verifier: started.pkce_verifier,
                        saml_request_id: String::new(),
                        purpose,
                    },
                    started.redirect_url,
                )
            }
            AnyConnector::Saml(saml) => {
                let started = sso::saml::start(self.http()?, saml, &state, SystemTime::now())
                    .await
                    .map_err(sso_error)?;
                (
                    PendingLogin {
                        kind: ConnectorKind::Saml.as_str().to_owned(),
                        connector: saml.name().to_owned(),
                        nonce: String::new(),
                        pkce_verifier: String::new(),
                        saml_request_id: started.request_id,
                        purpose,
                    },
                    started.redirect_url,
                )
            }
        };
        let value = serde_json::to_vec(&pending).map_err(ServiceError::internal)?;
        let item = NewItem::new(hashed_key(LOGINS_PREFIX, &state)?, value)
            .expiring(SystemTime::now() + sso::LOGIN_TTL);
        self.inner
            .backend
            .create(item)
            .await
            .map_err(backend_error)?;
        Ok(proto::CreateSsoLoginResponse {
            redirect_url,
            state,
        })
    }

    /// Takes the pending login `state` names, once.
    async fn take_pending_login(&self, state: &str) -> Result<PendingLogin, ServiceError> {
        let unknown = || {
            ServiceError::PermissionDenied(
                "this login is unknown, expired (after 10 minutes) or already used; start \
                 again from the login page or jsh login"
                    .to_owned(),
            )
        };
        if !is_random_id(state) {
            return Err(unknown());
        }
        let key = hashed_key(LOGINS_PREFIX, state)?;
        let item = match self.inner.backend.get(&key).await {
            Ok(item) => item,
            Err(BackendError::NotFound { .. }) => return Err(unknown()),
            Err(err) => return Err(backend_error(err)),
        };
        // Deleting is what makes the state single-use: of two callbacks racing with one
        // state, only the one whose delete succeeds goes on.
        match self.inner.backend.delete(&key).await {
            Ok(()) => {}
            Err(BackendError::NotFound { .. }) => return Err(unknown()),
            Err(err) => return Err(backend_error(err)),
        }
        serde_json::from_slice(&item.value)
            .map_err(|err| ServiceError::internal_in("pending SSO login", err))
    }

    pub(crate) async fn finish_sso_login(
        &self,
        caller: &Caller,
        request: proto::FinishSsoLoginRequest,
    ) -> Result<proto::FinishSsoLoginResponse, ServiceError> {
        let remote = Self::client_addr_text(caller, &request.client_addr);
        let param = |name: &str| request.params.get(name).map(String::as_str).unwrap_or("");
        // SAML carries the state as RelayState.
        let state = if request.kind == ConnectorKind::Saml.as_str() {
            param("RelayState")
        } else {
            param("state")
        };
        // A user the answer names but who cannot be written (a local user's name, a role
        // that does not exist) is a refused login too, and audited as one.
        let outcome = match self.finish_checked(&request, state).await {
            Ok((pending, connector, identity)) => {
                match self.upsert_sso_user(&pending, &connector, identity).await {
                    Ok(user) => Ok((pending, connector, user)),
                    Err(err) => Err(Refused::of(&pending, err)),
                }
            }
            Err(failed) => Err(failed),
        };
        let (pending, connector, user) = match outcome {
            Ok(done) => done,
            Err(refused) => {
                let mut event =
                    AuditEvent::failure(EventType::UserLogin, refused.error.to_string())
                        .field("method", request.kind.as_str())
                        .field("connector", refused.connector.as_str());
                if let Some(addr) = &remote {
                    event = event.remote_addr(addr.as_str());
                }
                self.audit(event).await?;
                jumpgate_telemetry::count(|m| &m.user_logins, &["failure"]);
                return refused.answer();
            }
        };
        let mut event = AuditEvent::success(EventType::UserLogin)
            .user(user.name.as_str())
            .field("method", pending.kind.as_str())
            .field("connector", pending.connector.as_str())
            .field("roles", user.roles.join(","));
        if let Some(addr) = &remote {
            event = event.remote_addr(addr.as_str());
        }
        self.audit(event).await?;
        jumpgate_telemetry::count(|m| &m.user_logins, &["success"]);
        match pending.purpose {
            Purpose::Web { redirect_path } => {
                let session = self
                    .open_web_session(&user, caller, remote.as_deref())
                    .await?;
                Ok(proto::FinishSsoLoginResponse {
                    user: user.name,
                    web_session: Some(session),
                    web_redirect_path: redirect_path,
                    client_redirect_url: String::new(),
                    refused: String::new(),
                })
            }
            Purpose::Cli {
                redirect_url,
                ssh_public_key,
                tls_public_key_pem,
                ttl_seconds,
                secret_sha256,
            } => {
                let ttl = super::requested_ttl(ttl_seconds, "the certificate TTL")?
                    .map(|ttl| ttl.min(connector.max_session_ttl()));
                let issued = self
                    .issue_user_certs(
                        &user,
                        &ssh_public_key,
                        &tls_public_key_pem,
                        Some(ttl.unwrap_or(connector.max_session_ttl())),
                        caller,
                        remote.as_deref(),
                    )
                    .await?;
                let result_id = random_hex(ID_BYTES);
                let stored = StoredResult {
                    secret_sha256,
                    response: StoredLoginResponse {
                        ssh_certificate: issued.ssh_certificate,
                        tls_certificate_pem: issued.tls_certificate_pem,
                        expires_unix: unix(issued.expires),
                        principals: issued.principals,
                        roles: user.roles.clone(),
                    },
                };
                let value = serde_json::to_vec(&stored).map_err(ServiceError::internal)?;
                let item = NewItem::new(hashed_key(RESULTS_PREFIX, &result_id)?, value)
                    .expiring(SystemTime::now() + sso::RESULT_TTL);
                self.inner
                    .backend
                    .create(item)
                    .await
                    .map_err(backend_error)?;
                let mut url = url::Url::parse(&redirect_url).map_err(ServiceError::internal)?;
                url.query_pairs_mut().append_pair("result", &result_id);
                Ok(proto::FinishSsoLoginResponse {
                    user: user.name,
                    web_session: None,
                    web_redirect_path: String::new(),
                    client_redirect_url: url.to_string(),
                    refused: String::new(),
                })
            }
        }
    }

    /// The provider's answer checked: the pending login, its connector and who the user is.
    async fn finish_checked(
        &self,
        request: &proto::FinishSsoLoginRequest,
        state: &str,
    ) -> Result<(PendingLogin, AnyConnector, ExternalIdentity), Refused> {
        let param = |name: &str| request.params.get(name).map(String::as_str).unwrap_or("");
        if request.kind == ConnectorKind::Saml.as_str() {
            // Before the pending login is taken, so a replay is refused as what it is.
            self.refuse_replayed_saml(param("SAMLResponse"))
                .await
                .map_err(|error| Refused {
                    connector: request.connector.clone(),
                    client_redirect_url: None,
                    error,
                })?;
        }
        let pending = self
            .take_pending_login(state)
            .await
            .map_err(|error| Refused {
                connector: String::new(),
                client_redirect_url: None,
                error,
            })?;
        let fail = |err: ServiceError| Refused::of(&pending, err);
        // A web login finishes only in the browser that started it: its state cookie must
        // match. Else an attacker's own answer, sent to a victim, would log the victim in
        // as the attacker.
        if matches!(pending.purpose, Purpose::Web { .. })
            && !constant_time_eq(request.browser_state.as_bytes(), state.as_bytes())
        {
            return Err(fail(ServiceError::PermissionDenied(
                "this login was started in another browser (or its cookie was lost); start \
                 again from the login page"
                    .to_owned(),
            )));
        }
        if !request.connector.is_empty() && request.connector != pending.connector {
            return Err(fail(ServiceError::PermissionDenied(format!(
                "this login was started for connector {:?}, but the answer reached the \
                 assertion consumer service of {:?}",
                pending.connector, request.connector
            ))));
        }
        if pending.kind != request.kind {
            return Err(fail(ServiceError::PermissionDenied(format!(
                "this login was started with a connector of kind {}, but the answer reached \
                 the {} callback",
                pending.kind, request.kind
            ))));
        }
        if !param("error").is_empty() {
            let mut said = param("error").to_owned();
            if !param("error_description").is_empty() {
                said = format!("{said}: {}", param("error_description"));
            }
            return Err(fail(sso_error(SsoError::ProviderSaid(
                jumpgate_types::text::shorten(&said, 300),
            ))));
        }
        let connector = self
            .find_connector(&pending.kind, &pending.connector)
            .map_err(fail)?;
        let identity = match &connector {
            AnyConnector::Oidc(oidc) => {
                let code = param("code");
                if code.is_empty() {
                    return Err(fail(ServiceError::invalid(
                        "the provider's answer has no code",
                    )));
                }
                sso::oidc::finish(
                    self.http().map_err(fail)?,
                    oidc,
                    code,
                    &pending.nonce,
                    &pending.pkce_verifier,
                )
                .await
                .map_err(|err| fail(sso_error(err)))?
            }
            AnyConnector::Github(github) => {
                let code = param("code");
                if code.is_empty() {
                    return Err(fail(ServiceError::invalid("GitHub's answer has no code")));
                }
                let http = self.http().map_err(fail)?;
                sso::github::finish(http, github, code, &pending.pkce_verifier)
                    .await
                    .map_err(|err| fail(sso_error(err)))?
            }
            AnyConnector::Saml(saml) => {
                let (identity, assertion) = sso::saml::finish(
                    self.http().map_err(fail)?,
                    saml,
                    param("SAMLResponse"),
                    &pending.saml_request_id,
                    SystemTime::now(),
                )
                .await
                .map_err(|err| fail(sso_error(err)))?;
                self.record_saml_assertion(&assertion).await.map_err(fail)?;
                identity
            }
        };
        Ok((pending, connector, identity))
    }

    /// Writes the SSO user as the provider describes them now, expiring with the longest
    /// certificate the connector issues, or when the provider says the login ends if that
    /// is sooner. A local user of the same name is never replaced, nor one another
    /// connector signed in: whoever controls an identity provider must not take over a
    /// password account or another provider's user.
    async fn upsert_sso_user(
        &self,
        pending: &PendingLogin,
        connector: &AnyConnector,
        identity: ExternalIdentity,
    ) -> Result<User, ServiceError> {
        if !crate::users::valid_name(&identity.username) {
            return Err(ServiceError::PermissionDenied(format!(
                "the provider names the user {:?}, which is not a valid Jumpgate user name \
                 (letters, digits and -_.@:); choose another username_claim",
                identity.username
            )));
        }
        match self
            .cached_user(&identity.username)
            .map(|existing| existing.sso)
        {
            Some(None) => {
                return Err(ServiceError::PermissionDenied(format!(
                    "a local user named {:?} exists; single sign-on does not log in as a \
                     local user (an admin can delete the local user to let SSO take the name)",
                    identity.username
                )));
            }
            // Nor does one connector take over another's user: whoever runs the second
            // provider must not inherit the first one's user (their locks, sessions and
            // name in the audit log), as in Teleport.
            Some(Some(origin))
                if origin.kind != pending.kind || origin.connector != pending.connector =>
            {
                return Err(ServiceError::PermissionDenied(format!(
                    "the user {:?} signed in through the {} connector {:?}, not through {} \
                     connector {:?}; the name is taken until that login ends or an admin \
                     deletes the user (jctl users rm)",
                    identity.username,
                    origin.kind,
                    origin.connector,
                    pending.kind,
                    pending.connector
                )));
            }
            _ => {}
        }
        let missing: Vec<&String> = identity
            .roles
            .iter()
            .filter(|role| self.cached_role(role).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(ServiceError::PermissionDenied(format!(
                "connector {:?} maps the user to roles that do not exist: {missing:?}; create \
                 them or fix the connector's mapping",
                connector.name()
            )));
        }
        let longest = SystemTime::now() + connector.max_session_ttl();
        let expires = identity
            .session_ends
            .map_or(longest, |ends| ends.min(longest));
        let user = User {
            name: identity.username,
            roles: identity.roles,
            logins: identity.logins,
            traits: identity.traits,
            sso: Some(SsoOrigin {
                kind: pending.kind.clone(),
                connector: pending.connector.clone(),
                expires_unix: unix(expires),
            }),
        };
        let key = Key::new(format!("/users/{}", user.name)).map_err(ServiceError::internal)?;
        let value = serde_json::to_vec(&user).map_err(ServiceError::internal)?;
        self.inner
            .backend
            .put(NewItem::new(key, value.clone()).expiring(expires))
            .await
            .map_err(backend_error)?;
        self.settle(
            &format!("/users/{}", user.name),
            super::Settled::Value(&value),
        )
        .await;
        Ok(user)
    }

    pub(crate) async fn sso_login_result(
        &self,
        request: proto::GetSsoLoginResultRequest,
    ) -> Result<proto::LoginResponse, ServiceError> {
        let unknown = || {
            ServiceError::PermissionDenied(
                "no such login result (each is collected once, within 2 minutes)".to_owned(),
            )
        };
        if !is_random_id(&request.result_id) {
            return Err(unknown());
        }
        let key = hashed_key(RESULTS_PREFIX, &request.result_id)?;
        let item = match self.inner.backend.get(&key).await {
            Ok(item) => item,
            Err(BackendError::NotFound { .. }) => return Err(unknown()),
            Err(err) => return Err(backend_error(err)),
        };
        let stored: StoredResult = serde_json::from_slice(&item.value)
            .map_err(|err| ServiceError::internal_in("SSO login result", err))?;
        let presented = hex::encode(Sha256::digest(request.client_secret.as_bytes()));
        if !constant_time_eq(presented.as_bytes(), stored.secret_sha256.as_bytes()) {
            return Err(unknown());
        }
        match self.inner.backend.delete(&key).await {
            Ok(()) => {}
            Err(BackendError::NotFound { .. }) => return Err(unknown()),
            Err(err) => return Err(backend_error(err)),
        }
        let (tls_ca_pems, host_ca_known_hosts) = trust_roots(&self.authorities())?;
        let response = stored.response;
        Ok(proto::LoginResponse {
            ssh_certificate: response.ssh_certificate,
            tls_certificate_pem: response.tls_certificate_pem,
            tls_ca_pems,
            host_ca_known_hosts,
            expires_unix: response.expires_unix,
            principals: response.principals,
            roles: response.roles,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The audit events a connector kind's changes are: created (or replaced), deleted.
fn connector_events(kind: &str) -> (EventType, EventType) {
    match kind {
        "oidc" => (EventType::OidcCreated, EventType::OidcDeleted),
        "saml" => (EventType::SamlCreated, EventType::SamlDeleted),
        _ => (EventType::GithubCreated, EventType::GithubDeleted),
    }
}

/// A connector document read and checked as its kind: its name and canonical JSON.
fn parse_connector(kind: &str, source: &str, document: &str) -> Result<(String, String), String> {
    fn parsed<S: ConnectorSpec + jumpgate_types::ResourceSpec>(
        source: &str,
        document: &str,
    ) -> Result<(String, String), String> {
        let connector = jumpgate_types::Resource::<S>::from_yaml(source, document)
            .map_err(|err| err.to_string())?;
        let json = connector.to_json().map_err(|err| err.to_string())?;
        Ok((connector.name().to_owned(), json))
    }
    use jumpgate_types::connector::{GithubConnectorSpec, OidcConnectorSpec, SamlConnectorSpec};
    match kind {
        "oidc" => parsed::<OidcConnectorSpec>(source, document),
        "saml" => {
            let (name, json) = parsed::<SamlConnectorSpec>(source, document)?;
            let connector = SamlConnector::from_json(source, &json).map_err(|e| e.to_string())?;
            sso::saml::check_connector(&connector)
                .map_err(|reason| format!("{source}: {reason}"))?;
            Ok((name, json))
        }
        _ => parsed::<GithubConnectorSpec>(source, document),
    }
}

/// `document` (a stored connector) without its secrets.
fn redacted(kind: &str, key: &str, document: &str) -> Option<String> {
    fn redact<S: ConnectorSpec + jumpgate_types::ResourceSpec>(
        key: &str,
        document: &str,
    ) -> Option<String> {
        let mut connector = jumpgate_types::Resource::<S>::from_json(key, document).ok()?;
        connector.spec.redact();
        connector.to_json().ok()
    }
    use jumpgate_types::connector::{GithubConnectorSpec, OidcConnectorSpec, SamlConnectorSpec};
    match kind {
        "oidc" => redact::<OidcConnectorSpec>(key, document),
        "saml" => redact::<SamlConnectorSpec>(key, document),
        _ => redact::<GithubConnectorSpec>(key, document),
    }
}

impl AuthServer {
    /// `jctl get oidc|saml|github [NAME]`: secrets only `with_secrets`.
    pub(crate) fn connector_documents(
        &self,
        kind: &str,
        name: &str,
        with_secrets: bool,
    ) -> Result<Vec<(String, String)>, ServiceError> {
        let prefix = format!("{CONNECTORS_PREFIX}{kind}/");
        Ok(self
            .inner
            .cache
            .list(&prefix)
            .into_iter()
            .filter_map(|(key, value)| {
                let connector = key.strip_prefix(&prefix)?.to_owned();
                if !name.is_empty() && connector != name {
                    return None;
                }
                let text = String::from_utf8_lossy(&value).into_owned();
                let document = if with_secrets {
                    text
                } else {
                    redacted(kind, &key, &text)?
                };
                Some((connector, document))
            })
            .collect())
    }

    /// `jctl create` of a connector: parsed and checked (URLs, mapping patterns) first.
    pub(crate) async fn upsert_connector(
        &self,
        caller: &Caller,
        kind: &'static str,
        source: &str,
        request: &proto::UpsertResourceRequest,
    ) -> Result<proto::UpsertResourceResponse, ServiceError> {
        let (created, _) = connector_events(kind);
        let (name, document) = match parse_connector(kind, source, &request.document) {
            Ok(parsed) => parsed,
            Err(reason) => return Err(self.refuse_malformed(caller, created, &reason).await),
        };
        let key_text = format!("{CONNECTORS_PREFIX}{kind}/{name}");
        let item = NewItem::new(
            Key::new(key_text.clone()).map_err(|err| ServiceError::invalid(err.to_string()))?,
            document.clone(),
        );
        let outcome = if request.force {
            self.inner.backend.put(item).await.map(|_| ())
        } else {
            self.inner.backend.create(item).await.map(|_| ())
        };
        if outcome.is_ok() {
            self.settle(&key_text, super::Settled::Value(document.as_bytes()))
                .await;
        }
        let existed = matches!(outcome, Err(BackendError::AlreadyExists { .. }));
        let event = match &outcome {
            Ok(()) => AuditEvent::success(created),
            Err(err) => AuditEvent::failure(created, err.to_string()),
        }
        .user(caller.audit_name())
        .field("name", name.as_str());
        self.audit(event).await?;
        match outcome {
            Ok(()) => Ok(proto::UpsertResourceResponse {
                kind: kind.to_string(),
                name,
                created: !request.force,
                warnings: Vec::new(),
            }),
            Err(_) if existed => Err(ServiceError::AlreadyExists(format!(
                "{kind} connector {name:?} already exists; use --force to overwrite it"
            ))),
            Err(err) => Err(crate::AuthError::from(err).into()),
        }
    }

    /// `jctl rm oidc/NAME`. SSO users it made keep their certificates until they expire
    /// (at most the connector's max_session_ttl); nobody logs in through it again.
    pub(crate) async fn delete_connector(
        &self,
        caller: &Caller,
        kind: &str,
        name: &str,
    ) -> Result<(), ServiceError> {
        let key_text = format!("{CONNECTORS_PREFIX}{kind}/{name}");
        let key =
            Key::new(key_text.clone()).map_err(|err| ServiceError::invalid(err.to_string()))?;
        let outcome = self.inner.backend.delete(&key).await;
        if outcome.is_ok() {
            self.settle(&key_text, super::Settled::Absent).await;
        }
        let (_, deleted) = connector_events(kind);
        let event = match &outcome {
            Ok(()) => AuditEvent::success(deleted),
            Err(err) => AuditEvent::failure(deleted, err.to_string()),
        }
        .user(caller.audit_name())
        .field("name", name);
        self.audit(event).await?;
        match outcome {
            Ok(()) => Ok(()),
            Err(BackendError::NotFound { .. }) => Err(ServiceError::NotFound(format!(
                "{kind} connector {name:?} does not exist; `jctl get {kind}` lists them"
            ))),
            Err(err) => Err(crate::AuthError::from(err).into()),
        }
    }
}

/// A login refused in its second leg: why, and what the answer needs.
struct Refused {
    /// The connector's name when the pending login was found, for the audit event.
    connector: String,
    /// A jsh login's loopback URL: the refusal goes there too, so jsh stops waiting and
    /// says why instead of waiting minutes for a browser that will not come back.
    client_redirect_url: Option<String>,
    error: ServiceError,
}

impl Refused {
    fn of(pending: &PendingLogin, error: ServiceError) -> Self {
        let client_redirect_url = match &pending.purpose {
            Purpose::Cli { redirect_url, .. } => Some(redirect_url.clone()),
            Purpose::Web { .. } => None,
        };
        Self {
            connector: pending.connector.clone(),
            client_redirect_url,
            error,
        }
    }

    /// A web login's refusal is an error (the proxy shows it in the browser); a jsh login's
    /// sends the browser to jsh's listener with the reason, which jsh shows and ends with.
    fn answer(self) -> Result<proto::FinishSsoLoginResponse, ServiceError> {
        let Some(redirect_url) = self.client_redirect_url else {
            return Err(self.error);
        };
        let Ok(mut url) = url::Url::parse(&redirect_url) else {
            return Err(self.error);
        };
        // What the caller would read in the status (internal details stay in the log).
        let status = tonic::Status::from(self.error);
        url.query_pairs_mut().append_pair("error", status.message());
        Ok(proto::FinishSsoLoginResponse {
            user: String::new(),
            web_session: None,
            web_redirect_path: String::new(),
            client_redirect_url: url.to_string(),
            refused: status.message().to_owned(),
        })
    }
}
