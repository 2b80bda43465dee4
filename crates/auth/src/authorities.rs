//! The cluster's certificate authorities, kept in the backend.
//!
//! On the first start of a cluster, the cluster name and all three CAs (user SSH, host
//! SSH, TLS) are written in **one atomic write that succeeds only if none of them exist**.
//! Several auth servers starting at once on one shared backend therefore agree: one
//! write wins, the others read what it wrote. The stored form follows Teleport's
//! `cert_authority` resource (`kind`/`version`/`metadata`/`spec`), so `jctl get
//! cert_authorities` can show it (without private keys).

use jumpgate_backend::{Action, Backend, BackendError, Condition, Key, NewItem, Revision};
use jumpgate_pki::{CaKind, PkiError, SshCa, TlsCa};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    Audit(#[source] jumpgate_audit::Error),
    /// A stored record (user, credentials) that this version cannot use.
    #[error("stored record at {key} is unusable: {detail}; restore a backup")]
    CorruptRecord { key: String, detail: String },
    /// Stored CA data that this version cannot use.
    #[error("stored certificate authority at {key} is unusable: {detail}; restore a backup")]
    CorruptAuthority { key: String, detail: String },
}

/// The three CAs of a cluster, as trusted at the moment they were loaded: keys whose
/// rotation grace period has ended are left out.
#[derive(Debug)]
pub struct ClusterAuthorities {
    pub cluster: String,
    pub user: SshCa,
    pub host: SshCa,
    pub tls: TlsCa,
    /// Certificates of newer TLS CAs signed by older ones still in their grace period,
    /// newest first: sent after a certificate of the active TLS CA, they let peers that
    /// still trust only an old CA accept it.
    pub tls_cross_certs: Vec<String>,
    /// Rotation state per CA, in the order user, host, tls.
    pub rotations: Vec<RotationState>,
}

/// One of a cluster's three certificate authorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityType {
    User,
    Host,
    Tls,
}

impl AuthorityType {
    pub const ALL: [AuthorityType; 3] =
        [AuthorityType::User, AuthorityType::Host, AuthorityType::Tls];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthorityType::User => "user",
            AuthorityType::Host => "host",
            AuthorityType::Tls => "tls",
        }
    }

    /// `user`, `host`, `tls`, or `all` for the three.
    pub fn parse_list(text: &str) -> Result<Vec<AuthorityType>, AuthError> {
        match text {
            "user" => Ok(vec![AuthorityType::User]),
            "host" => Ok(vec![AuthorityType::Host]),
            "tls" => Ok(vec![AuthorityType::Tls]),
            "all" => Ok(AuthorityType::ALL.to_vec()),
            other => Err(AuthError::InvalidRequest(format!(
                "unknown CA type {other:?}: use user, host, tls or all"
            ))),
        }
    }
}

/// Where a CA stands in its rotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationState {
    pub authority: AuthorityType,
    pub last_rotated: Option<SystemTime>,
    /// The earlier keys still trusted, each until the end of its grace period: SSH
    /// fingerprints, or `ca_pin`s for the TLS CA.
    pub previous: Vec<(String, SystemTime)>,
}

/// How long old keys stay trusted after a rotation unless the caller says otherwise: as
/// long as Teleport's default, so that certificates issued just before (12 h by default)
/// and agents that reconnect daily get through.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30 * 3600);
/// The longest grace period: an old key must not stay trusted indefinitely by a typo.
pub const MAX_GRACE_PERIOD: Duration = Duration::from_secs(30 * 24 * 3600);

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
    /// Public keys trusted without an end (none are written; kept for stored data).
    #[serde(default)]
    additional_trusted_ssh_keys: Vec<String>,
    /// Earlier keys still trusted after a rotation, each until its grace period ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    previous_keys: Vec<PreviousKey>,
    /// When the CA was last rotated (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_rotated: Option<u64>,
}

/// A retired key, trusted until `trusted_until` (Unix seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviousKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ssh_public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_cert: Option<String>,
    /// The CA that replaced this one, signed by this one (TLS only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_cross_cert: Option<String>,
    trusted_until: u64,
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn from_unix_seconds(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
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
                previous_keys: Vec::new(),
                last_rotated: None,
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
                    return ClusterAuthorities::load(backend, &stored, now).await;
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
        ClusterAuthorities::load(backend, configured_name, now).await
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
            tls_cross_certs: Vec::new(),
            rotations: AuthorityType::ALL
                .iter()
                .map(|&authority| RotationState {
                    authority,
                    last_rotated: None,
                    previous: Vec::new(),
                })
                .collect(),
        })
    }

    /// Loads the cluster's CAs as trusted at `now`: retired keys whose grace period has
    /// ended are left out.
    pub async fn load(
        backend: &dyn Backend,
        cluster: &str,
        now: SystemTime,
    ) -> Result<ClusterAuthorities, AuthError> {
        let (user, user_rotation) = load_ssh(backend, CaKind::User, cluster, now).await?;
        let (host, host_rotation) = load_ssh(backend, CaKind::Host, cluster, now).await?;
        let key = authority_key("tls", cluster)?;
        let stored = read(backend, &key, "tls", cluster).await?.0;
        let corrupt = |detail: String| AuthError::CorruptAuthority {
            key: key.to_string(),
            detail,
        };
        let (Some(cert), Some(private)) = (
            stored.spec.active_keys.tls_cert.as_deref(),
            stored.spec.active_keys.tls_key.as_deref(),
        ) else {
            return Err(corrupt("the TLS certificate or key is missing".to_string()));
        };
        let mut tls =
            TlsCa::from_pem(cluster, cert, private).map_err(|err| corrupt(err.to_string()))?;
        let mut tls_cross_certs = Vec::new();
        let mut previous = Vec::new();
        for retired in live_previous_keys(&stored.spec, now) {
            let (Some(cert), Some(cross)) = (&retired.tls_cert, &retired.tls_cross_cert) else {
                return Err(corrupt(
                    "a previous TLS CA lacks its certificate or cross certificate".to_string(),
                ));
            };
            tls.trust_previous(cert)
                .map_err(|err| corrupt(format!("previous CA: {err}")))?;
            let pin = TlsCa::pin_of_cert_pem(cert).map_err(|err| corrupt(err.to_string()))?;
            previous.push((pin, from_unix_seconds(retired.trusted_until)));
            tls_cross_certs.push(cross.clone());
        }
        let tls_rotation = RotationState {
            authority: AuthorityType::Tls,
            last_rotated: stored.spec.last_rotated.map(from_unix_seconds),
            previous,
        };
        Ok(ClusterAuthorities {
            cluster: cluster.to_string(),
            user,
            host,
            tls,
            tls_cross_certs,
            rotations: vec![user_rotation, host_rotation, tls_rotation],
        })
    }

    /// Whether `other` signs with the same keys and trusts the same ones (rotation
    /// state included): whether anything that follows the CAs must change.
    pub fn same_trust(&self, other: &ClusterAuthorities) -> bool {
        self.cluster == other.cluster
            && self.user.trusted_fingerprints() == other.user.trusted_fingerprints()
            && self.host.trusted_fingerprints() == other.host.trusted_fingerprints()
            && self.tls.trusted_pins() == other.tls.trusted_pins()
            && self.tls_cross_certs == other.tls_cross_certs
            && self.rotations == other.rotations
    }

    /// When the trusted set changes on its own next: the earliest end of a grace period.
    pub fn next_trust_change(&self) -> Option<SystemTime> {
        self.rotations
            .iter()
            .flat_map(|rotation| rotation.previous.iter().map(|(_, until)| *until))
            .min()
    }

    /// Rotates the given CAs in one atomic write: each gets a fresh key and certificate
    /// and signs with it from now on, while its current key (and those of earlier
    /// rotations still in their grace period) stays trusted until `now + grace`. A grace
    /// of zero retires every earlier key at once, for a key that may be compromised.
    ///
    /// The write is conditioned on the revisions read, so two concurrent rotations cannot
    /// both win and lose a key; the loser gets `ConditionFailed` and may retry.
    pub async fn rotate(
        backend: &dyn Backend,
        cluster: &str,
        which: &[AuthorityType],
        grace: Duration,
        now: SystemTime,
    ) -> Result<ClusterAuthorities, AuthError> {
        if grace > MAX_GRACE_PERIOD {
            return Err(AuthError::InvalidRequest(format!(
                "a grace period of {} hours is longer than the maximum of {} hours",
                grace.as_secs() / 3600,
                MAX_GRACE_PERIOD.as_secs() / 3600
            )));
        }
        let grace_end = unix_seconds(now + grace);
        let mut conditions = Vec::new();
        let mut actions = Vec::new();
        for &authority in which {
            let kind = authority.as_str();
            let key = authority_key(kind, cluster)?;
            let (mut stored, revision) = read(backend, &key, kind, cluster).await?;
            let corrupt = |detail: &str| AuthError::CorruptAuthority {
                key: key.to_string(),
                detail: detail.to_string(),
            };
            // Earlier retirees keep their end, but never past the new one.
            let mut previous: Vec<PreviousKey> = if grace.is_zero() {
                Vec::new()
            } else {
                live_previous_keys(&stored.spec, now)
                    .map(|retired| PreviousKey {
                        trusted_until: retired.trusted_until.min(grace_end),
                        ..retired.clone()
                    })
                    .collect()
            };
            let active = match authority {
                AuthorityType::User | AuthorityType::Host => {
                    let ca_kind = if authority == AuthorityType::User {
                        CaKind::User
                    } else {
                        CaKind::Host
                    };
                    let retiring = stored
                        .spec
                        .active_keys
                        .ssh_public_key
                        .clone()
                        .ok_or_else(|| corrupt("the SSH public key is missing"))?;
                    if !grace.is_zero() {
                        previous.insert(
                            0,
                            PreviousKey {
                                ssh_public_key: Some(retiring),
                                tls_cert: None,
                                tls_cross_cert: None,
                                trusted_until: grace_end,
                            },
                        );
                    }
                    StoredAuthority::ssh(&SshCa::generate(ca_kind, cluster)?, cluster)?
                        .spec
                        .active_keys
                }
                AuthorityType::Tls => {
                    let (Some(cert), Some(private)) = (
                        stored.spec.active_keys.tls_cert.as_deref(),
                        stored.spec.active_keys.tls_key.as_deref(),
                    ) else {
                        return Err(corrupt("the TLS certificate or key is missing"));
                    };
                    let retiring = TlsCa::from_pem(cluster, cert, private)
                        .map_err(|err| corrupt(&err.to_string()))?;
                    let new = TlsCa::generate(cluster, now)?;
                    if !grace.is_zero() {
                        previous.insert(
                            0,
                            PreviousKey {
                                ssh_public_key: None,
                                tls_cert: Some(cert.to_string()),
                                tls_cross_cert: Some(retiring.cross_sign(
                                    &new,
                                    now,
                                    from_unix_seconds(grace_end),
                                )?),
                                trusted_until: grace_end,
                            },
                        );
                    }
                    StoredAuthority::tls(&new, cluster).spec.active_keys
                }
            };
            stored.spec.active_keys = active;
            stored.spec.previous_keys = previous;
            stored.spec.last_rotated = Some(unix_seconds(now));
            conditions.push(Condition::Revision(key.clone(), revision));
            actions.push(Action::Put(NewItem::new(key, encode(&stored)?)));
        }
        backend.atomic_write(conditions, actions).await?;
        tracing::info!(
            cluster,
            rotated = ?which.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            grace_seconds = grace.as_secs(),
            "rotated certificate authorities"
        );
        ClusterAuthorities::load(backend, cluster, now).await
    }
}

/// The retired keys of a stored CA whose grace period has not ended at `now`.
fn live_previous_keys(spec: &AuthoritySpec, now: SystemTime) -> impl Iterator<Item = &PreviousKey> {
    let now = unix_seconds(now);
    spec.previous_keys
        .iter()
        .filter(move |retired| retired.trusted_until > now)
}

async fn read(
    backend: &dyn Backend,
    key: &Key,
    kind: &str,
    cluster: &str,
) -> Result<(StoredAuthority, Revision), AuthError> {
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
    Ok((stored, item.revision))
}

async fn load_ssh(
    backend: &dyn Backend,
    kind: CaKind,
    cluster: &str,
    now: SystemTime,
) -> Result<(SshCa, RotationState), AuthError> {
    let (name, authority) = match kind {
        CaKind::User => ("user", AuthorityType::User),
        CaKind::Host => ("host", AuthorityType::Host),
    };
    let key = authority_key(name, cluster)?;
    let (stored, _) = read(backend, &key, name, cluster).await?;
    let corrupt = |detail: String| AuthError::CorruptAuthority {
        key: key.to_string(),
        detail,
    };
    let private = stored
        .spec
        .active_keys
        .ssh_private_key
        .as_deref()
        .ok_or_else(|| corrupt("the SSH private key is missing".to_string()))?;
    let mut ca =
        SshCa::from_openssh(kind, cluster, private).map_err(|err| corrupt(err.to_string()))?;
    for line in &stored.spec.additional_trusted_ssh_keys {
        let key =
            ssh_public_key(line).map_err(|err| corrupt(format!("trusted key {line:?}: {err}")))?;
        ca.trust_previous(key);
    }
    let mut previous = Vec::new();
    for retired in live_previous_keys(&stored.spec, now) {
        let line = retired
            .ssh_public_key
            .as_deref()
            .ok_or_else(|| corrupt("a previous key lacks its SSH public key".to_string()))?;
        let key =
            ssh_public_key(line).map_err(|err| corrupt(format!("previous key {line:?}: {err}")))?;
        previous.push((
            key.fingerprint(jumpgate_pki::ssh_key::HashAlg::Sha256)
                .to_string(),
            from_unix_seconds(retired.trusted_until),
        ));
        ca.trust_previous(key);
    }
    let rotation = RotationState {
        authority,
        last_rotated: stored.spec.last_rotated.map(from_unix_seconds),
        previous,
    };
    Ok((ca, rotation))
}

fn ssh_public_key(line: &str) -> Result<jumpgate_pki::ssh_key::PublicKey, PkiError> {
    Ok(jumpgate_pki::ssh_key::PublicKey::from_openssh(line)?)
}
