//! The cluster's certificate authorities, kept in the backend.
//!
//! On the first start of a cluster, the cluster name and all three CAs (user SSH, host
//! SSH, TLS) are written in **one atomic write that succeeds only if none of them exist**.
//! Several auth servers starting at once on one shared backend therefore agree: one
//! write wins, the others read what it wrote. The stored form follows Teleport's
//! `cert_authority` resource (`kind`/`version`/`metadata`/`spec`), so `jctl get
//! cert_authorities` can show it (without private keys).

use jumpgate_backend::{Action, Backend, BackendError, Condition, Key, NewItem};
use jumpgate_pki::{CaKind, PkiError, SshCa, TlsCa};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// Errors of the auth service.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The config names another cluster than the one this state belongs to.
    #[error(
        "auth_service.cluster_name is {configured:?} but this cluster's state belongs to \
         {stored:?}; a cluster's name cannot change (its certificates carry it): put \
         {stored:?} back in the config, or start a new cluster with an empty data directory"
    )]
    ClusterNameChanged { configured: String, stored: String },
    /// The caller asked for something invalid; the message says what.
    #[error("{0}")]
    InvalidRequest(String),
    /// The audit log refused an event: the action is refused too, as nothing may
    /// happen unaudited.
    #[error("cannot write the audit log: {0}")]
    Audit(String),
    /// A stored record (user, credentials) that this version cannot use.
    #[error("stored record at {key} is unusable: {detail}; restore a backup")]
    CorruptRecord { key: String, detail: String },
    /// Stored CA data that this version cannot use.
    #[error("stored certificate authority at {key} is unusable: {detail}; restore a backup")]
    CorruptAuthority { key: String, detail: String },
}

/// The three CAs of a cluster.
#[derive(Debug)]
pub struct ClusterAuthorities {
    pub cluster: String,
    pub user: SshCa,
    pub host: SshCa,
    pub tls: TlsCa,
}

const CLUSTER_NAME_KEY: &str = "/cluster/name";

fn authority_key(kind: &str, cluster: &str) -> Result<Key, BackendError> {
    Key::new(format!("/authorities/{kind}/{cluster}"))
}

/// The stored `cert_authority` resource.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredAuthority {
    kind: String,
    version: String,
    metadata: Metadata,
    spec: AuthoritySpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthoritySpec {
    /// `user`, `host` or `tls`.
    #[serde(rename = "type")]
    kind: String,
    cluster_name: String,
    active_keys: ActiveKeys,
    /// Public keys still trusted during a rotation's grace period.
    #[serde(default)]
    additional_trusted_ssh_keys: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActiveKeys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ssh_private_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ssh_public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_key: Option<String>,
}

impl StoredAuthority {
    fn new(kind: &str, cluster: &str, keys: ActiveKeys) -> StoredAuthority {
        StoredAuthority {
            kind: "cert_authority".to_string(),
            version: "v2".to_string(),
            metadata: Metadata {
                name: cluster.to_string(),
            },
            spec: AuthoritySpec {
                kind: kind.to_string(),
                cluster_name: cluster.to_string(),
                active_keys: keys,
                additional_trusted_ssh_keys: Vec::new(),
            },
        }
    }

    fn ssh(ca: &SshCa, cluster: &str) -> Result<StoredAuthority, AuthError> {
        let kind = match ca.kind() {
            CaKind::User => "user",
            CaKind::Host => "host",
        };
        Ok(StoredAuthority::new(
            kind,
            cluster,
            ActiveKeys {
                ssh_private_key: Some(ca.private_key_openssh()?),
                ssh_public_key: Some(ca.public_key().to_openssh().map_err(PkiError::from)?),
                ..ActiveKeys::default()
            },
        ))
    }

    fn tls(ca: &TlsCa, cluster: &str) -> StoredAuthority {
        StoredAuthority::new(
            "tls",
            cluster,
            ActiveKeys {
                tls_cert: Some(ca.cert_pem().to_string()),
                tls_key: Some(ca.key_pem()),
                ..ActiveKeys::default()
            },
        )
    }
}

fn encode(stored: &StoredAuthority) -> Result<Vec<u8>, AuthError> {
    serde_json::to_vec(stored).map_err(|err| AuthError::CorruptAuthority {
        key: stored.spec.kind.clone(),
        detail: format!("cannot encode: {err}"),
    })
}

impl ClusterAuthorities {
    /// Loads the cluster's CAs, creating the cluster (name and CAs) if the backend holds
    /// none yet. `configured_name` is `auth_service.cluster_name` (or the host name).
    pub async fn load_or_create(
        backend: &dyn Backend,
        configured_name: &str,
        now: SystemTime,
    ) -> Result<ClusterAuthorities, AuthError> {
        let name_key = Key::new(CLUSTER_NAME_KEY)?;
        // Two rounds: if another auth server creates the cluster between our read and
        // our write, our write fails its conditions and the second round loads theirs.
        for _ in 0..2 {
            match backend.get(&name_key).await {
                Ok(item) => {
                    let stored =
                        String::from_utf8(item.value).map_err(|_| AuthError::CorruptAuthority {
                            key: CLUSTER_NAME_KEY.to_string(),
                            detail: "not UTF-8".to_string(),
                        })?;
                    if stored != configured_name {
                        return Err(AuthError::ClusterNameChanged {
                            configured: configured_name.to_string(),
                            stored,
                        });
                    }
                    return ClusterAuthorities::load(backend, &stored).await;
                }
                Err(BackendError::NotFound { .. }) => {}
                Err(err) => return Err(err.into()),
            }
            match ClusterAuthorities::create(backend, configured_name, now).await {
                Ok(created) => return Ok(created),
                Err(AuthError::Backend(BackendError::ConditionFailed { .. })) => continue,
                Err(err) => return Err(err),
            }
        }
        ClusterAuthorities::load(backend, configured_name).await
    }

    async fn create(
        backend: &dyn Backend,
        cluster: &str,
        now: SystemTime,
    ) -> Result<ClusterAuthorities, AuthError> {
        let user = SshCa::generate(CaKind::User, cluster)?;
        let host = SshCa::generate(CaKind::Host, cluster)?;
        let tls = TlsCa::generate(cluster, now)?;
        let name_key = Key::new(CLUSTER_NAME_KEY)?;
        let keys = [
            (
                authority_key("user", cluster)?,
                encode(&StoredAuthority::ssh(&user, cluster)?)?,
            ),
            (
                authority_key("host", cluster)?,
                encode(&StoredAuthority::ssh(&host, cluster)?)?,
            ),
            (
                authority_key("tls", cluster)?,
                encode(&StoredAuthority::tls(&tls, cluster))?,
            ),
        ];
        let mut conditions = vec![Condition::NotExists(name_key.clone())];
        let mut actions = vec![Action::Put(NewItem::new(
            name_key,
            cluster.as_bytes().to_vec(),
        ))];
        for (key, value) in keys {
            conditions.push(Condition::NotExists(key.clone()));
            actions.push(Action::Put(NewItem::new(key, value)));
        }
        backend.atomic_write(conditions, actions).await?;
        tracing::info!(cluster, "created the cluster's certificate authorities");
        Ok(ClusterAuthorities {
            cluster: cluster.to_string(),
            user,
            host,
            tls,
        })
    }

    async fn load(backend: &dyn Backend, cluster: &str) -> Result<ClusterAuthorities, AuthError> {
        let user = load_ssh(backend, CaKind::User, cluster).await?;
        let host = load_ssh(backend, CaKind::Host, cluster).await?;
        let key = authority_key("tls", cluster)?;
        let stored = read(backend, &key, "tls", cluster).await?;
        let (Some(cert), Some(private)) = (
            stored.spec.active_keys.tls_cert,
            stored.spec.active_keys.tls_key,
        ) else {
            return Err(AuthError::CorruptAuthority {
                key: key.to_string(),
                detail: "the TLS certificate or key is missing".to_string(),
            });
        };
        let tls = TlsCa::from_pem(cluster, &cert, &private).map_err(|err| {
            AuthError::CorruptAuthority {
                key: key.to_string(),
                detail: err.to_string(),
            }
        })?;
        Ok(ClusterAuthorities {
            cluster: cluster.to_string(),
            user,
            host,
            tls,
        })
    }
}

async fn read(
    backend: &dyn Backend,
    key: &Key,
    kind: &str,
    cluster: &str,
) -> Result<StoredAuthority, AuthError> {
    let corrupt = |detail: String| AuthError::CorruptAuthority {
        key: key.to_string(),
        detail,
    };
    let item = match backend.get(key).await {
        Ok(item) => item,
        Err(BackendError::NotFound { .. }) => {
            return Err(corrupt(
                "missing, although the cluster exists (a partial restore?)".to_string(),
            ));
        }
        Err(err) => return Err(err.into()),
    };
    let stored: StoredAuthority =
        serde_json::from_slice(&item.value).map_err(|err| corrupt(err.to_string()))?;
    if stored.kind != "cert_authority"
        || stored.spec.kind != kind
        || stored.spec.cluster_name != cluster
    {
        return Err(corrupt(format!(
            "expected a {kind} cert_authority of cluster {cluster:?}, found a {} {} of {:?}",
            stored.spec.kind, stored.kind, stored.spec.cluster_name
        )));
    }
    Ok(stored)
}

async fn load_ssh(backend: &dyn Backend, kind: CaKind, cluster: &str) -> Result<SshCa, AuthError> {
    let name = match kind {
        CaKind::User => "user",
        CaKind::Host => "host",
    };
    let key = authority_key(name, cluster)?;
    let stored = read(backend, &key, name, cluster).await?;
    let corrupt = |detail: String| AuthError::CorruptAuthority {
        key: key.to_string(),
        detail,
    };
    let private = stored
        .spec
        .active_keys
        .ssh_private_key
        .ok_or_else(|| corrupt("the SSH private key is missing".to_string()))?;
    let mut ca =
        SshCa::from_openssh(kind, cluster, &private).map_err(|err| corrupt(err.to_string()))?;
    for line in &stored.spec.additional_trusted_ssh_keys {
        let key =
            ssh_public_key(line).map_err(|err| corrupt(format!("trusted key {line:?}: {err}")))?;
        ca.trust_previous(key);
    }
    Ok(ca)
}

fn ssh_public_key(line: &str) -> Result<jumpgate_pki::ssh_key::PublicKey, PkiError> {
    Ok(jumpgate_pki::ssh_key::PublicKey::from_openssh(line)?)
}
