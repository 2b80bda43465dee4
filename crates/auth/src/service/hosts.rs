//! Auth decides a host's identity (DESIGN.md "Identity"): the names a joining or renewing
//! host asks for are checked against the names reserved for the cluster's own services,
//! and a host UUID belongs to the key that registered it first.
//!
//! Both rules live here, once, for `Join` and `RenewHost`. A registration outlives
//! `jctl rm node/UUID`: a removed node's UUID is never handed to another key. Clients check the role in a
//! peer's certificate too (`jumpgate_api::tls::check_peer_role`); the rules here keep a
//! node's certificate from even naming a service it is not.

use super::AuthServer;
use super::caller::Caller;
use super::errors::ServiceError;
use jumpgate_api::AUTH_SERVER_NAME;
use jumpgate_api::tunnel::PROXY_SERVER_NAME;
use jumpgate_audit::{AuditEvent, EventType};
use jumpgate_backend::{BackendError, Key, KeyRange, NewItem};
use jumpgate_pki::IdentityKind;
use jumpgate_types::ProxyPresence;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// The cluster-internal DNS zone; every name in it belongs to a service.
const INTERNAL_ZONE: &str = "jumpgate.cluster.local";

/// Where the host registry lives: `/hosts/KIND/UUID`.
const HOSTS_PREFIX: &str = "/hosts/";

/// Which field of a request a name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameField {
    /// The host's own name (its nodename): it may equal the cluster's name, which by
    /// default is the auth host's name, so that an all-in-one host can run its agent.
    HostName,
    /// Extra names the host asks to be reachable under.
    Address,
}

impl NameField {
    fn as_str(self) -> &'static str {
        match self {
            NameField::HostName => "host_name",
            NameField::Address => "addresses",
        }
    }
}

/// Why a host may not carry a name, or `None` when it may. `cluster` is the cluster's
/// name, `proxy_hosts` the host parts of every proxy's `public_addr`.
pub(crate) fn reserved_name_reason(
    kind: IdentityKind,
    field: NameField,
    name: &str,
    cluster: &str,
    proxy_hosts: &[String],
) -> Option<String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let is_proxy = kind == IdentityKind::Proxy;
    if name == AUTH_SERVER_NAME {
        return Some(format!("{name:?} is the auth service's name"));
    }
    if name == PROXY_SERVER_NAME {
        return (!is_proxy).then(|| format!("{name:?} is the proxies' name"));
    }
    if name == INTERNAL_ZONE || name.ends_with(&format!(".{INTERNAL_ZONE}")) {
        return Some(format!(
            "{name:?} is in the cluster's internal zone {INTERNAL_ZONE}"
        ));
    }
    if field == NameField::Address && name == cluster.to_ascii_lowercase() {
        return Some(format!("{name:?} is the cluster's name"));
    }
    if is_proxy {
        return None;
    }
    if proxy_hosts
        .iter()
        .any(|host| host.eq_ignore_ascii_case(&name))
    {
        return Some(format!("{name:?} is a proxy's public address"));
    }
    let loopback = name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if loopback {
        return Some(format!(
            "{name:?} names every host's own loopback, so it would let this host answer for \
             any other"
        ));
    }
    None
}

/// What the registry keeps of a host: which key holds its UUID.
#[derive(Debug, Serialize, Deserialize)]
struct HostRecord {
    kind: String,
    uuid: String,
    /// sha256 of the PEM public key the host's X.509 certificate was issued for.
    tls_key_sha256: String,
    host_name: String,
    registered_unix: u64,
}

impl HostRecord {
    fn new(kind: IdentityKind, uuid: &str, host_name: &str, tls_key_sha256: String) -> Self {
        HostRecord {
            kind: kind.to_string(),
            uuid: uuid.to_string(),
            tls_key_sha256,
            host_name: host_name.to_string(),
            registered_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    fn to_vec(&self) -> Result<Vec<u8>, ServiceError> {
        serde_json::to_vec(self).map_err(ServiceError::internal)
    }
}

fn key_digest(public_key_pem: &str) -> String {
    hex::encode(Sha256::digest(public_key_pem.trim().as_bytes()))
}

fn host_key(kind: IdentityKind, uuid: &str) -> Result<Key, ServiceError> {
    Key::new(format!("{HOSTS_PREFIX}{kind}/{uuid}"))
        .map_err(|err| ServiceError::invalid(err.to_string()))
}

fn backend_error(err: BackendError) -> ServiceError {
    ServiceError::from(crate::AuthError::from(err))
}

/// How many fresh UUIDs to try when the requested one is taken (a collision of v4
/// UUIDs is not going to happen twice).
const ASSIGN_ATTEMPTS: usize = 3;

impl AuthServer {
    /// The host parts of every proxy's advertised `public_addr` (from their heartbeats).
    async fn proxy_public_hosts(&self) -> Result<Vec<String>, ServiceError> {
        let range = KeyRange::prefix("/presence/proxy/").map_err(ServiceError::internal)?;
        let items = self
            .inner
            .backend
            .get_range(&range, None)
            .await
            .map_err(backend_error)?;
        let mut hosts = Vec::new();
        for item in items {
            let Some(proxy) = std::str::from_utf8(&item.value)
                .ok()
                .and_then(|text| ProxyPresence::from_json("auth:proxy", text).ok())
            else {
                continue;
            };
            for addr in proxy.public_addr.iter().map(String::as_str) {
                let host = match addr.rsplit_once(':') {
                    Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
                    _ => addr,
                };
                hosts.push(host.trim_matches(['[', ']']).to_string());
            }
        }
        Ok(hosts)
    }

    /// Refuses (and audits) a join or renewal that asks for a name reserved for the
    /// cluster's services: the message names the field and the name.
    pub(crate) async fn check_host_names(
        &self,
        caller: &Caller,
        method: &str,
        kind: IdentityKind,
        host_name: &str,
        addresses: &[String],
    ) -> Result<(), ServiceError> {
        let cluster = self.authorities().cluster.clone();
        let proxy_hosts = if kind == IdentityKind::Proxy {
            Vec::new()
        } else {
            self.proxy_public_hosts().await?
        };
        let fields = std::iter::once((NameField::HostName, host_name)).chain(
            addresses
                .iter()
                .map(|address| (NameField::Address, address.as_str())),
        );
        for (field, name) in fields {
            if let Some(reason) = reserved_name_reason(kind, field, name, &cluster, &proxy_hosts) {
                let err = ServiceError::PermissionDenied(format!(
                    "{}: {reason}; a {kind} may not carry it in its certificates \
                     (set this host's nodename, or remove it from the addresses)",
                    field.as_str()
                ));
                return Err(self.refuse(caller, method, err).await);
            }
        }
        Ok(())
    }

    /// Registers `requested` as the UUID of the host holding `tls_public_key_pem`, or,
    /// when another key already holds that UUID (or a host with that UUID is online and
    /// predates the registry), assigns a fresh one: a join token never lets a host take
    /// over another's identity. Returns the UUID to issue certificates for.
    pub(crate) async fn register_host_uuid(
        &self,
        caller: &Caller,
        remote: Option<&str>,
        kind: IdentityKind,
        requested: &str,
        host_name: &str,
        tls_public_key_pem: &str,
    ) -> Result<String, ServiceError> {
        let digest = key_digest(tls_public_key_pem);
        let mut candidate = requested.to_string();
        for _ in 0..ASSIGN_ATTEMPTS {
            match self
                .try_register(kind, &candidate, host_name, &digest)
                .await?
            {
                true => {
                    if candidate != requested {
                        let event = AuditEvent::failure(
                            EventType::InstanceJoin,
                            format!(
                                "host UUID {requested} belongs to another host's key; \
                                 assigned {candidate} instead"
                            ),
                        )
                        .user(caller.audit_name())
                        .server_id(candidate.as_str())
                        .field("requested_host_uuid", requested)
                        .field("role", kind.as_str())
                        .field("host_name", host_name);
                        let event = match remote {
                            Some(addr) => event.remote_addr(addr),
                            None => event,
                        };
                        self.audit(event).await?;
                    }
                    return Ok(candidate);
                }
                false => candidate = uuid::Uuid::new_v4().to_string(),
            }
        }
        Err(ServiceError::Unavailable(
            "could not register a host UUID; try joining again".to_string(),
        ))
    }

    /// `true` when `uuid` is now (or already was) registered to the key `digest`.
    async fn try_register(
        &self,
        kind: IdentityKind,
        uuid: &str,
        host_name: &str,
        digest: &str,
    ) -> Result<bool, ServiceError> {
        let key = host_key(kind, uuid)?;
        match self.inner.backend.get(&key).await {
            Ok(item) => {
                let record: Option<HostRecord> = serde_json::from_slice(&item.value).ok();
                return Ok(record.is_some_and(|record| record.tls_key_sha256 == digest));
            }
            Err(BackendError::NotFound { .. }) => {}
            Err(err) => return Err(backend_error(err)),
        }
        // A host online under this UUID from before the registry existed keeps it.
        let presence = Key::new(format!("/presence/{kind}/{uuid}"))
            .map_err(|err| ServiceError::invalid(err.to_string()))?;
        match self.inner.backend.get(&presence).await {
            Ok(_) => return Ok(false),
            Err(BackendError::NotFound { .. }) => {}
            Err(err) => return Err(backend_error(err)),
        }
        let value = HostRecord::new(kind, uuid, host_name, digest.to_string()).to_vec()?;
        match self.inner.backend.create(NewItem::new(key, value)).await {
            Ok(_) => Ok(true),
            // Another join registered it a moment ago.
            Err(BackendError::AlreadyExists { .. }) => Ok(false),
            Err(err) => Err(backend_error(err)),
        }
    }

    /// A renewing host keeps its UUID (from its certificate) and moves it to its new key.
    pub(crate) async fn reregister_host_uuid(
        &self,
        kind: IdentityKind,
        uuid: &str,
        host_name: &str,
        tls_public_key_pem: &str,
    ) -> Result<(), ServiceError> {
        let value =
            HostRecord::new(kind, uuid, host_name, key_digest(tls_public_key_pem)).to_vec()?;
        self.inner
            .backend
            .put(NewItem::new(host_key(kind, uuid)?, value))
            .await
            .map_err(backend_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{NameField, reserved_name_reason};
    use jumpgate_pki::IdentityKind::{Node, Proxy};

    fn reserved_as(kind: jumpgate_pki::IdentityKind, field: NameField, name: &str) -> bool {
        let proxies = ["teleport.example.com".to_string()];
        reserved_name_reason(kind, field, name, "example", &proxies).is_some()
    }

    fn reserved(kind: jumpgate_pki::IdentityKind, name: &str) -> bool {
        reserved_as(kind, NameField::HostName, name) && reserved_as(kind, NameField::Address, name)
    }

    #[test]
    fn service_names_are_reserved() {
        for name in [
            "jumpgate.cluster.local",
            "JUMPGATE.cluster.local.",
            "x.jumpgate.cluster.local",
        ] {
            assert!(reserved(Node, name), "{name}");
            assert!(reserved(Proxy, name), "{name}");
        }
        // The cluster's name is reserved as an address; as a host name it is the
        // default cluster name's own host (an all-in-one server runs its agent).
        assert!(reserved_as(Node, NameField::Address, "example"));
        assert!(!reserved_as(Node, NameField::HostName, "example"));
        assert!(reserved(Node, "proxy.jumpgate.cluster.local"));
        assert!(!reserved(Proxy, "proxy.jumpgate.cluster.local"));
    }

    #[test]
    fn proxy_addresses_and_loopback_only_for_proxies() {
        for name in [
            "teleport.example.com",
            "localhost",
            "a.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "0.0.0.0",
        ] {
            assert!(reserved(Node, name), "{name}");
            assert!(!reserved(Proxy, name), "{name}");
        }
        for name in ["node-1", "10.0.0.5", "node-1.example.com"] {
            assert!(!reserved(Node, name), "{name}");
        }
    }
}
