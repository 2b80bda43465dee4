//! `jctl get / create / rm`: resources by kind, in Teleport's document shape, and the
//! presence records heartbeats write.
//!
//! Storage keys: roles `/roles/NAME` (the role's JSON document), users `/users/NAME`
//! (with their secrets apart under `/credentials/NAME`), presence
//! `/presence/{node,proxy,auth_server}/NAME` with a TTL. Join tokens live in `tokens`.
//! Certificate authorities are shown without their private keys and cannot be
//! created or removed here.

use super::caller::Caller;
use super::errors::ServiceError;
use super::{AuthServer, Settled, unix};
use crate::users::User;
use jumpgate_api::proto;
use jumpgate_audit::{AuditEvent, EventType};
use jumpgate_backend::{BackendError, Key, KeyRange, NewItem};
use jumpgate_pki::IdentityKind;
use jumpgate_types::resource::ResourceVersion;
use jumpgate_types::role::{is_valid_login, kinds, verbs};
use jumpgate_types::{NodePresence, Resource, ResourceSpec, Role, peek_kind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// How long a presence record lives without a new heartbeat, unless the heartbeat says.
const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(10 * 60);
const MAX_PRESENCE_TTL: Duration = Duration::from_secs(3600);

/// The kind names `jctl` accepts (singular, plural, short), mapped to the canonical one.
pub fn canonical_kind(kind: &str) -> Option<&'static str> {
    Some(match kind.to_ascii_lowercase().as_str() {
        "user" | "users" => kinds::USER,
        "role" | "roles" => kinds::ROLE,
        "token" | "tokens" => kinds::TOKEN,
        "node" | "nodes" => kinds::NODE,
        "proxy" | "proxies" => kinds::PROXY,
        "auth_server" | "auth_servers" | "auth" => kinds::AUTH_SERVER,
        "cert_authority" | "cert_authorities" | "ca" | "cas" => kinds::CERT_AUTHORITY,
        "lock" | "locks" => kinds::LOCK,
        "oidc" | "oidc_connector" | "oidc_connectors" => kinds::OIDC,
        "saml" | "saml_connector" | "saml_connectors" => kinds::SAML,
        "github" | "github_connector" | "github_connectors" => kinds::GITHUB,
        _ => return None,
    })
}

/// The kind role rules name for `kind`: every connector kind is `auth_connector`.
fn rule_kind(kind: &'static str) -> &'static str {
    match kind {
        kinds::OIDC | kinds::SAML | kinds::GITHUB => kinds::AUTH_CONNECTOR,
        other => other,
    }
}

fn unknown_kind(kind: &str) -> ServiceError {
    ServiceError::invalid(format!(
        "unknown resource kind {kind:?}; known kinds: user, role, token, node, proxy, \
         auth_server, cert_authority, lock, oidc, saml, github"
    ))
}

/// A user's `spec`, as Teleport writes it (`traits.logins` feeds `{{internal.logins}}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub traits: BTreeMap<String, Vec<String>>,
    /// Teleport writes these; Jumpgate keeps its own state and ignores them on input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Value>,
}

impl ResourceSpec for UserSpec {
    const KIND: &'static str = "user";
    const VERSION: ResourceVersion = ResourceVersion::V2;
}

/// `unix` seconds as RFC 3339 (UTC), as resource documents write times.
fn rfc3339_unix(unix: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Every login must be a usable Unix login.
pub fn check_logins(logins: &[String]) -> Result<(), ServiceError> {
    for login in logins {
        if !is_valid_login(login) {
            return Err(ServiceError::invalid(format!(
                "login {login:?} is not a valid Unix login (1-64 letters, digits, . _ - @ $ \\ +, \
                 not starting with -)"
            )));
        }
    }
    Ok(())
}

fn to_json(value: &Value) -> Result<String, ServiceError> {
    serde_json::to_string_pretty(value).map_err(ServiceError::internal)
}

fn key(text: String) -> Result<Key, ServiceError> {
    Key::new(text).map_err(|err| ServiceError::invalid(err.to_string()))
}

/// Names that can be part of a key: no `/`, nothing odd.
fn check_name(kind: &str, name: &str) -> Result<(), ServiceError> {
    if crate::names::is_plain_name(name, &['@', ':']) {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "{kind} name {name:?} must be 1-253 letters, digits, '-', '_', '.', '@', ':'"
        )))
    }
}

/// The labels of a node's presence record, read as the proxy reads them (none when it
/// is no node record).
fn node_labels(document: &str) -> BTreeMap<String, String> {
    NodePresence::from_json("auth:node", document)
        .map(|node| node.labels)
        .unwrap_or_default()
}

impl AuthServer {
    pub(crate) async fn get_resources_for(
        &self,
        caller: &Caller,
        kind: &str,
        name: &str,
        with_secrets: bool,
    ) -> Result<Vec<String>, ServiceError> {
        let kind = canonical_kind(kind).ok_or_else(|| unknown_kind(kind))?;
        let verb = if name.is_empty() {
            verbs::LIST
        } else {
            verbs::READ
        };
        // A user sees the nodes their roles let them log in to, whatever their rules say
        // (as `jsh ls` in Teleport); everything else is up to the rules.
        let node_filter = match &caller.identity {
            Some(identity) if identity.kind == IdentityKind::User && kind == kinds::NODE => {
                match self.user_checker(identity) {
                    Ok(checker) => Some(checker),
                    Err(err) => return Err(self.refuse(caller, "GetResources", err).await),
                }
            }
            _ => {
                self.require_rule(caller, "GetResources", rule_kind(kind), verb)
                    .await?;
                None
            }
        };
        if !name.is_empty() {
            check_name(kind, name)?;
        }
        let mut documents = match kind {
            kinds::ROLE => self.role_documents(name)?,
            kinds::USER => self.user_documents(name).await?,
            kinds::TOKEN => self.token_documents().await?,
            kinds::CERT_AUTHORITY => self.authority_documents()?,
            kinds::LOCK => self.lock_documents(name),
            kinds::OIDC | kinds::SAML | kinds::GITHUB => {
                self.connector_documents(kind, name, with_secrets)?
            }
            presence => self.presence_documents(presence).await?,
        };
        if let Some(checker) = node_filter {
            documents
                .retain(|(_, document)| !checker.allowed_logins(&node_labels(document)).is_empty());
        }
        if !name.is_empty() {
            documents.retain(|(doc_name, _)| doc_name == name);
            if documents.is_empty() {
                return Err(ServiceError::NotFound(format!(
                    "{kind} {name:?} does not exist; `jctl get {kind}` lists them"
                )));
            }
        }
        Ok(documents.into_iter().map(|(_, doc)| doc).collect())
    }

    fn role_documents(&self, name: &str) -> Result<Vec<(String, String)>, ServiceError> {
        let prefix = if name.is_empty() {
            "/roles/".to_string()
        } else {
            format!("/roles/{name}")
        };
        Ok(self
            .inner
            .cache
            .list(&prefix)
            .into_iter()
            .filter_map(|(key, value)| {
                let name = key.strip_prefix("/roles/")?.to_string();
                Some((name, String::from_utf8_lossy(&value).into_owned()))
            })
            .collect())
    }

    async fn user_documents(&self, name: &str) -> Result<Vec<(String, String)>, ServiceError> {
        let authorities = self.authorities();
        let users = self.users(&authorities);
        let now = SystemTime::now();
        let mut out = Vec::new();
        for (_, value) in self.inner.cache.list("/users/") {
            let Ok(user) = serde_json::from_slice::<User>(&value) else {
                continue;
            };
            if !name.is_empty() && user.name != name {
                continue;
            }
            let locked_until = users
                .locked_until(&user.name, now)
                .await
                .map_err(ServiceError::from)?;
            // An SSO user, as Teleport shows one: the connector that made it, and when it
            // expires (with its certificates).
            let created_by = user
                .sso
                .as_ref()
                .map(|sso| json!({ "connector": { "type": sso.kind, "id": sso.connector } }));
            let expires = user.sso.as_ref().map(|sso| rfc3339_unix(sso.expires_unix));
            let mut metadata = json!({ "name": user.name });
            let mut spec = json!({
                "roles": user.roles,
                "traits": super::caller::traits_of(&user),
            });
            if let (Some(expires), Some(created_by)) = (expires, created_by) {
                if let Some(metadata) = metadata.as_object_mut() {
                    metadata.insert("expires".to_string(), json!(expires));
                }
                if let Some(spec) = spec.as_object_mut() {
                    spec.insert("created_by".to_string(), created_by);
                }
            }
            let document = json!({
                "kind": "user",
                "version": "v2",
                "metadata": metadata,
                "spec": spec,
                "status": {
                    "is_locked": locked_until.is_some(),
                    "locked_until": locked_until.map(unix),
                },
            });
            out.push((user.name.clone(), to_json(&document)?));
        }
        Ok(out)
    }

    async fn token_documents(&self) -> Result<Vec<(String, String)>, ServiceError> {
        let tokens = self
            .tokens()
            .list(SystemTime::now())
            .await
            .map_err(ServiceError::from)?;
        let mut out = Vec::new();
        for token in tokens {
            let document = json!({
                "kind": "token",
                "version": "v2",
                "metadata": {
                    "name": token.id,
                    "expires": token.expires.map(unix),
                },
                "spec": { "roles": token.roles, "join_method": "token", "source": token.kind },
            });
            out.push((token.id.clone(), to_json(&document)?));
        }
        Ok(out)
    }

    fn authority_documents(&self) -> Result<Vec<(String, String)>, ServiceError> {
        let authorities = self.authorities();
        let cluster = authorities.cluster.clone();
        let ssh = |kind: &str, ca: &jumpgate_pki::SshCa| -> Result<Value, ServiceError> {
            let keys = ca.export_openssh().map_err(ServiceError::internal)?;
            Ok(json!({
                "kind": "cert_authority",
                "version": "v2",
                "metadata": { "name": format!("{cluster}-{kind}") },
                "spec": {
                    "type": kind,
                    "cluster_name": cluster,
                    "trusted_ssh_keys": keys.lines().collect::<Vec<_>>(),
                    "fingerprints": ca.trusted_fingerprints().iter().map(ToString::to_string).collect::<Vec<_>>(),
                },
            }))
        };
        let tls = json!({
            "kind": "cert_authority",
            "version": "v2",
            "metadata": { "name": format!("{cluster}-tls") },
            "spec": {
                "type": "tls",
                "cluster_name": cluster,
                "tls_cert": authorities.tls.cert_pem(),
                "ca_pin": authorities.tls.ca_pin(),
                "trusted_tls_certs": authorities.tls.trusted_cert_pems(),
                "trusted_ca_pins": authorities.tls.trusted_pins(),
            },
        });
        Ok(vec![
            (
                format!("{cluster}-user"),
                to_json(&ssh("user", &authorities.user)?)?,
            ),
            (
                format!("{cluster}-host"),
                to_json(&ssh("host", &authorities.host)?)?,
            ),
            (format!("{cluster}-tls"), to_json(&tls)?),
        ])
    }

    async fn presence_documents(&self, kind: &str) -> Result<Vec<(String, String)>, ServiceError> {
        let prefix = format!("/presence/{kind}/");
        // Nodes and proxies are in the watch-fed cache (they are watched too); the
        // rest (auth servers) are few and read from the store.
        if kind == kinds::NODE || kind == kinds::PROXY {
            return Ok(self
                .inner
                .cache
                .list(&prefix)
                .into_iter()
                .filter_map(|(key, value)| {
                    let name = key.strip_prefix(&prefix)?.to_string();
                    Some((name, String::from_utf8_lossy(&value).into_owned()))
                })
                .collect());
        }
        let range = KeyRange::prefix(&prefix).map_err(ServiceError::internal)?;
        let items = self
            .inner
            .backend
            .get_range(&range, None)
            .await
            .map_err(|err| ServiceError::from(crate::AuthError::from(err)))?;
        Ok(items
            .into_iter()
            .filter_map(|item| {
                let name = item.key.as_str().strip_prefix(&prefix)?.to_string();
                Some((name, String::from_utf8_lossy(&item.value).into_owned()))
            })
            .collect())
    }

    pub(crate) async fn upsert_resource_for(
        &self,
        caller: &Caller,
        request: proto::UpsertResourceRequest,
    ) -> Result<proto::UpsertResourceResponse, ServiceError> {
        let source = if request.source_name.is_empty() {
            "request".to_string()
        } else {
            request.source_name.clone()
        };
        self.require_identity(caller, "UpsertResource").await?;
        let kind_text = match peek_kind(&source, &request.document) {
            Ok(kind) => kind,
            Err(err) => {
                return Err(self
                    .refuse_malformed(caller, EventType::Auth, &err.to_string())
                    .await);
            }
        };
        let kind = canonical_kind(&kind_text).ok_or_else(|| unknown_kind(&kind_text))?;
        let verb = if request.force {
            verbs::UPDATE
        } else {
            verbs::CREATE
        };
        self.require_rule(caller, "UpsertResource", rule_kind(kind), verb)
            .await?;
        match kind {
            kinds::ROLE => self.upsert_role(caller, &source, &request).await,
            kinds::USER => self.upsert_user(caller, &source, &request).await,
            kinds::LOCK => self.upsert_lock(caller, &source, &request).await,
            kinds::OIDC | kinds::SAML | kinds::GITHUB => {
                self.upsert_connector(caller, kind, &source, &request).await
            }
            kinds::TOKEN => Err(ServiceError::invalid(
                "join tokens are made with `jctl tokens add`, which stores them hashed",
            )),
            kinds::CERT_AUTHORITY => Err(ServiceError::invalid(
                "certificate authorities cannot be created or replaced; `jctl auth rotate` \
                 makes new keys",
            )),
            other => Err(ServiceError::invalid(format!(
                "{other} records are written by the hosts' heartbeats, not by `jctl create`"
            ))),
        }
    }

    /// Audits a document that could not be parsed, and returns the parse error.
    pub(crate) async fn refuse_malformed(
        &self,
        caller: &Caller,
        event: EventType,
        reason: &str,
    ) -> ServiceError {
        let mut audit = AuditEvent::failure(event, reason)
            .user(caller.audit_name())
            .field("method", "UpsertResource");
        if let Some(addr) = caller.addr {
            audit = audit.remote_addr(addr);
        }
        if let Err(err) = self.audit(audit).await {
            return err;
        }
        ServiceError::invalid(reason)
    }

    async fn upsert_role(
        &self,
        caller: &Caller,
        source: &str,
        request: &proto::UpsertResourceRequest,
    ) -> Result<proto::UpsertResourceResponse, ServiceError> {
        let role: Role = match Resource::from_yaml(source, &request.document) {
            Ok(role) => role,
            Err(err) => {
                return Err(self
                    .refuse_malformed(caller, EventType::RoleCreated, &err.to_string())
                    .await);
            }
        };
        let name = role.name().to_string();
        let warnings: Vec<String> = role
            .unsupported_fields()
            .iter()
            .map(|field| format!("{field:?}"))
            .collect();
        let document = role.to_json().map_err(ServiceError::internal)?;
        let role_key = format!("/roles/{name}");
        let item = NewItem::new(key(role_key.clone())?, document.clone());
        let outcome = if request.force {
            self.inner.backend.put(item).await.map(|_| ())
        } else {
            self.inner.backend.create(item).await.map(|_| ())
        };
        if outcome.is_ok() {
            self.settle(&role_key, Settled::Value(document.as_bytes()))
                .await;
        }
        let existed = matches!(outcome, Err(BackendError::AlreadyExists { .. }));
        let event = match &outcome {
            Ok(()) => AuditEvent::success(EventType::RoleCreated),
            Err(err) => AuditEvent::failure(EventType::RoleCreated, err.to_string()),
        }
        .user(caller.audit_name())
        .field("name", name.as_str());
        self.audit(event).await?;
        match outcome {
            Ok(()) => Ok(proto::UpsertResourceResponse {
                kind: kinds::ROLE.to_string(),
                name,
                created: !request.force,
                warnings,
            }),
            Err(_) if existed => Err(ServiceError::AlreadyExists(format!(
                "role {name:?} already exists; use --force to overwrite it"
            ))),
            Err(err) => Err(crate::AuthError::from(err).into()),
        }
    }

    async fn upsert_user(
        &self,
        caller: &Caller,
        source: &str,
        request: &proto::UpsertResourceRequest,
    ) -> Result<proto::UpsertResourceResponse, ServiceError> {
        let resource: Resource<UserSpec> = match Resource::from_yaml(source, &request.document) {
            Ok(resource) => resource,
            Err(err) => {
                return Err(self
                    .refuse_malformed(caller, EventType::UserCreate, &err.to_string())
                    .await);
            }
        };
        let name = resource.name().to_string();
        let logins = resource
            .spec
            .traits
            .get("logins")
            .cloned()
            .unwrap_or_default();
        let mut warnings: Vec<String> = resource
            .spec
            .traits
            .keys()
            .filter(|trait_name| trait_name.as_str() != "logins")
            .map(|trait_name| format!("trait {trait_name:?} is kept by Teleport but not used by Jumpgate; only `logins` is"))
            .collect();
        if resource.spec.status.is_some() {
            warnings.push("spec.status is ignored; Jumpgate keeps its own".to_string());
        }
        let checked = check_logins(&logins)
            .and_then(|()| self.check_roles_exist(&resource.spec.roles))
            .and_then(|()| {
                if resource.spec.roles.is_empty() {
                    Err(ServiceError::invalid(
                        "spec.roles: a user needs at least one role",
                    ))
                } else {
                    Ok(())
                }
            });
        if let Err(err) = checked {
            let reason = match &err {
                ServiceError::InvalidArgument(message) => message.clone(),
                other => other.to_string(),
            };
            return Err(self
                .refuse_malformed(
                    caller,
                    EventType::UserCreate,
                    &format!("{source}: {reason}"),
                )
                .await);
        }
        let user = User::local(name.clone(), resource.spec.roles.clone(), logins);
        let authorities = self.authorities();
        let exists = self.cached_user(&name).is_some();
        if !exists {
            self.users(&authorities)
                .create(&user, None, SystemTime::now())
                .await
                .map_err(ServiceError::from)?;
            self.settle(&format!("/users/{name}"), Settled::Present)
                .await;
            warnings.push(format!(
                "user {name:?} has no password yet: `jctl users reset {name}` makes a signup token"
            ));
            return Ok(proto::UpsertResourceResponse {
                kind: kinds::USER.to_string(),
                name,
                created: true,
                warnings,
            });
        }
        if !request.force {
            let err = format!("user {name:?} already exists; use --force to overwrite it");
            let event = AuditEvent::failure(EventType::UserUpdate, err.as_str())
                .user(name.as_str())
                .field("by", caller.audit_name());
            self.audit(event).await?;
            return Err(ServiceError::AlreadyExists(err));
        }
        let value = serde_json::to_vec(&user).map_err(ServiceError::internal)?;
        let outcome = self
            .inner
            .backend
            .update(NewItem::new(key(format!("/users/{name}"))?, value.clone()))
            .await;
        if outcome.is_ok() {
            self.settle(&format!("/users/{name}"), Settled::Value(&value))
                .await;
        }
        let event = match &outcome {
            Ok(_) => AuditEvent::success(EventType::UserUpdate),
            Err(err) => AuditEvent::failure(EventType::UserUpdate, err.to_string()),
        }
        .user(name.as_str())
        .field("by", caller.audit_name())
        .field("roles", user.roles.join(","));
        self.audit(event).await?;
        outcome.map_err(|err| ServiceError::from(crate::AuthError::from(err)))?;
        Ok(proto::UpsertResourceResponse {
            kind: kinds::USER.to_string(),
            name,
            created: false,
            warnings,
        })
    }

    pub(crate) async fn delete_resource_for(
        &self,
        caller: &Caller,
        kind: &str,
        name: &str,
    ) -> Result<(), ServiceError> {
        let kind = canonical_kind(kind).ok_or_else(|| unknown_kind(kind))?;
        self.require_rule(caller, "DeleteResource", rule_kind(kind), verbs::DELETE)
            .await?;
        let now = SystemTime::now();
        match kind {
            kinds::ROLE => {
                check_name(kind, name)?;
                self.delete_role(caller, name).await
            }
            kinds::USER => {
                check_name(kind, name)?;
                let authorities = self.authorities();
                self.users(&authorities)
                    .delete(name, now)
                    .await
                    .map_err(ServiceError::from)?;
                self.settle(&format!("/users/{name}"), Settled::Absent)
                    .await;
                self.tokens()
                    .delete_signups_for(name)
                    .await
                    .map_err(ServiceError::from)?;
                Ok(())
            }
            kinds::TOKEN => self
                .tokens()
                .delete(name, now)
                .await
                .map_err(ServiceError::from),
            kinds::CERT_AUTHORITY => Err(ServiceError::invalid(
                "certificate authorities cannot be removed: every certificate of the cluster \
                 depends on them; `jctl auth rotate` replaces their keys",
            )),
            kinds::LOCK => {
                check_name(kind, name)?;
                self.delete_lock(caller, name).await
            }
            kinds::OIDC | kinds::SAML | kinds::GITHUB => {
                check_name(kind, name)?;
                self.delete_connector(caller, kind, name).await
            }
            presence => {
                check_name(presence, name)?;
                match self
                    .inner
                    .backend
                    .delete(&key(format!("/presence/{presence}/{name}"))?)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(BackendError::NotFound { .. }) => Err(ServiceError::NotFound(format!(
                        "{presence} {name:?} does not exist; `jctl get {presence}` lists them"
                    ))),
                    Err(err) => Err(crate::AuthError::from(err).into()),
                }
            }
        }
    }

    async fn delete_role(&self, caller: &Caller, name: &str) -> Result<(), ServiceError> {
        let holders: Vec<String> = self
            .inner
            .cache
            .list("/users/")
            .into_iter()
            .filter_map(|(_, value)| serde_json::from_slice::<User>(&value).ok())
            .filter(|user| user.roles.iter().any(|role| role == name))
            .map(|user| user.name)
            .collect();
        let outcome = if holders.is_empty() {
            match self
                .inner
                .backend
                .delete(&key(format!("/roles/{name}"))?)
                .await
            {
                Ok(()) => {
                    self.settle(&format!("/roles/{name}"), Settled::Absent)
                        .await;
                    Ok(())
                }
                Err(BackendError::NotFound { .. }) => Err(ServiceError::NotFound(format!(
                    "role {name:?} does not exist; `jctl get roles` lists them"
                ))),
                Err(err) => Err(crate::AuthError::from(err).into()),
            }
        } else {
            Err(ServiceError::invalid(format!(
                "role {name:?} is assigned to {}; take it from them first",
                holders.join(", ")
            )))
        };
        let event = match &outcome {
            Ok(()) => AuditEvent::success(EventType::RoleDeleted),
            Err(err) => AuditEvent::failure(EventType::RoleDeleted, err.to_string()),
        }
        .user(caller.audit_name())
        .field("name", name);
        self.audit(event).await?;
        outcome
    }

    /// Stores a node's, proxy's or auth server's presence record. A host may only
    /// write its own record (its certificate's name); admins may write any.
    pub(crate) async fn store_heartbeat(
        &self,
        caller: &Caller,
        document: &str,
        ttl_seconds: i64,
    ) -> Result<(), ServiceError> {
        let value: Value = serde_json::from_str(document)
            .map_err(|err| ServiceError::invalid(format!("heartbeat document: {err}")))?;
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .and_then(canonical_kind)
            .filter(|kind| [kinds::NODE, kinds::PROXY, kinds::AUTH_SERVER].contains(kind))
            .ok_or_else(|| {
                ServiceError::invalid("heartbeat document: kind must be node, proxy or auth_server")
            })?;
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| ServiceError::invalid("heartbeat document: metadata.name is required"))?
            .to_string();
        check_name(kind, &name)?;
        let expected_kind = match kind {
            kinds::NODE => IdentityKind::Node,
            kinds::PROXY => IdentityKind::Proxy,
            _ => IdentityKind::Auth,
        };
        let own = caller
            .identity
            .as_ref()
            .is_some_and(|identity| identity.kind == expected_kind && identity.name == name);
        if !own && !caller.is_admin() {
            return Err(self
                .refuse(
                    caller,
                    "Heartbeat",
                    ServiceError::PermissionDenied(format!(
                        "access denied: {} may not write the {kind} record {name:?}",
                        caller.describe()
                    )),
                )
                .await);
        }
        let ttl = match ttl_seconds {
            s if s <= 0 => DEFAULT_PRESENCE_TTL,
            s => Duration::from_secs(s.unsigned_abs()).min(MAX_PRESENCE_TTL),
        };
        let item = NewItem::new(
            key(format!("/presence/{kind}/{name}"))?,
            document.as_bytes().to_vec(),
        )
        .expiring(SystemTime::now() + ttl);
        self.inner
            .backend
            .put(item)
            .await
            .map_err(|err| ServiceError::from(crate::AuthError::from(err)))?;
        Ok(())
    }
}
