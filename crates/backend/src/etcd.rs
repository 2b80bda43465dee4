//! The etcd backend (v3 API), for clusters with several auth servers.
//!
//! Decisions:
//! - **Namespacing**: every key is stored under the configured prefix (default
//!   `/jumpgate`), so one etcd can serve other applications too.
//! - **Expiry**: an item with an expiry is written with an etcd lease, so etcd deletes
//!   it (and watchers see the delete) even if no Jumpgate process is running. The exact
//!   expiry is also kept in a small header in front of the value, because leases have
//!   whole-second granularity and a minimum TTL: reads treat an item as gone from its
//!   exact expiry on, even before etcd has revoked the lease.
//! - **Conditional writes** read the item, check the condition locally (value, expiry),
//!   and commit with an etcd transaction conditioned on the revision they read, so no
//!   concurrent writer can slip in between.
//! - **Watch**: one etcd watch over the whole prefix, filtered here, so events for all
//!   of a subscriber's prefixes arrive in one revision order. When the connection drops
//!   the watch resumes from the last revision it delivered, so nothing is missed across
//!   an etcd restart; if etcd compacted that history meanwhile, or the subscriber does
//!   not keep up with its buffer, the watcher ends with `FellBehind`.

use crate::Backend;
use crate::error::{BackendError, Result};
use crate::tasks::jitter;
use crate::types::{
    Action, Condition, Event, Item, Key, KeyRange, NewItem, Revision, from_unix_millis, is_expired,
    to_unix_millis,
};
use crate::watch::{WatchError, Watcher};
use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, KeyValue,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

const BACKEND: &str = "etcd";
/// Magic and version byte in front of every stored value.
const ENVELOPE_MAGIC: [u8; 2] = [b'J', 1];
const ENVELOPE_HEADER_LEN: usize = 10;
/// How often an optimistic write is retried when other writers keep winning.
const MAX_CONFLICT_RETRIES: usize = 64;
/// How long a request is tried again while etcd cannot take it for a moment: a member
/// was killed and the client moves to another, or the cluster elects a new leader (about
/// a second with etcd's defaults). A user's login must not fail for that (issue 16: an
/// etcd member killed, no error a user sees); a store that stays away still gives a clear
/// `Unavailable` within this bound.
const RETRY_FOR: Duration = Duration::from_secs(3);

/// TLS material for talking to etcd (PEM contents, already read from files).
#[derive(Clone)]
pub struct EtcdTls {
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key, for etcd servers that require client certificates.
    pub client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "[set]"))
            .field(
                "client_cert_pem",
                &self.client_cert_pem.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// How to reach etcd.
#[derive(Clone)]
pub struct EtcdOptions {
    /// Client URLs such as `https://10.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Every key is stored under this prefix.
    pub prefix: String,
    pub tls: Option<EtcdTls>,
    /// User name and password, when etcd has authentication enabled.
    pub credentials: Option<(String, String)>,
    pub dial_timeout: Duration,
    pub request_timeout: Duration,
    /// How many events a watcher may lag behind before it is told to re-sync.
    pub watch_buffer: usize,
}

impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("tls", &self.tls)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "[redacted]")),
            )
            .field("dial_timeout", &self.dial_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("watch_buffer", &self.watch_buffer)
            .finish()
    }
}

impl EtcdOptions {
    pub fn new(endpoints: Vec<String>, prefix: impl Into<String>) -> EtcdOptions {
        EtcdOptions {
            endpoints,
            prefix: prefix.into(),
            tls: None,
            credentials: None,
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            watch_buffer: 4096,
        }
    }
}

/// A [`Backend`] on an etcd cluster. Cheap to clone.
#[derive(Clone)]
pub struct EtcdBackend {
    client: Client,
    /// The prefix without its trailing `/`; keys (which start with `/`) are appended.
    prefix: String,
    endpoints: Arc<str>,
    watch_buffer: usize,
}

impl fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl EtcdBackend {
    /// Connects and checks that etcd answers; a clear `Unavailable` error otherwise.
    pub async fn connect(options: EtcdOptions) -> Result<EtcdBackend> {
        if options.endpoints.is_empty() {
            return Err(BackendError::InvalidArgument(
                "etcd needs at least one endpoint (storage.peers)".to_string(),
            ));
        }
        let endpoints: Arc<str> = options.endpoints.join(",").into();
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.dial_timeout)
            .with_timeout(options.request_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let Some((user, password)) = &options.credentials {
            connect = connect.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &options.tls {
            let mut config = etcd_client::TlsOptions::new();
            if let Some(ca) = &tls.ca_pem {
                config = config.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &tls.client_cert_pem {
                config = config.identity(etcd_client::Identity::from_pem(cert, key));
            }
            connect = connect.with_tls(config);
        }
        let unavailable = |err: etcd_client::Error| BackendError::Unavailable {
            backend: BACKEND,
            detail: format!("cannot reach etcd at {endpoints}: {err}"),
        };
        let mut client = tokio::time::timeout(
            options.dial_timeout,
            Client::connect(&options.endpoints, Some(connect)),
        )
        .await
        .map_err(|_| BackendError::Unavailable {
            backend: BACKEND,
            detail: format!(
                "no answer from etcd at {endpoints} within {:?}",
                options.dial_timeout
            ),
        })?
        .map_err(unavailable)?;
        // Connecting is lazy; make one round trip so a wrong address fails here.
        client.status().await.map_err(unavailable)?;
        Ok(EtcdBackend {
            client,
            prefix: options.prefix.trim_end_matches('/').to_string(),
            endpoints,
            watch_buffer: options.watch_buffer,
        })
    }

    fn full_key(&self, key: &Key) -> Vec<u8> {
        format!("{}{}", self.prefix, key.as_str()).into_bytes()
    }

    fn strip_key(&self, raw: &[u8]) -> Result<Key> {
        std::str::from_utf8(raw)
            .ok()
            .and_then(|text| text.strip_prefix(self.prefix.as_str()))
            .and_then(|key| Key::new(key).ok())
            .ok_or_else(|| BackendError::Corrupt {
                backend: BACKEND,
                location: String::from_utf8_lossy(raw).into_owned(),
                detail: format!("key is not a Jumpgate key under {:?}", self.prefix),
            })
    }

    fn error(&self, err: etcd_client::Error) -> BackendError {
        let unavailable = is_unavailable(&err);
        if unavailable {
            BackendError::Unavailable {
                backend: BACKEND,
                detail: format!("etcd at {} is unreachable: {err}", self.endpoints),
            }
        } else {
            BackendError::Internal {
                backend: BACKEND,
                detail: err.to_string(),
            }
        }
    }

    /// Runs `request` until it succeeds, fails for a reason a retry cannot fix, or
    /// [`RETRY_FOR`] has passed. A write that is not `idempotent` (a transaction) is tried
    /// again only after an error that says etcd never applied it.
    async fn retrying<T, F, Fut>(&self, idempotent: bool, mut request: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + RETRY_FOR;
        let mut wait = Duration::from_millis(50);
        loop {
            match request().await {
                Ok(answer) => return Ok(answer),
                Err(err) => {
                    let again = if idempotent {
                        is_unavailable(&err)
                    } else {
                        never_applied(&err)
                    };
                    if !again || tokio::time::Instant::now() + wait > deadline {
                        return Err(self.error(err));
                    }
                    tracing::debug!(%err, ?wait, "etcd cannot take the request now; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(400));
                }
            }
        }
    }

    fn decode(&self, kv: &KeyValue) -> Result<Item> {
        let key = self.strip_key(kv.key())?;
        let (expires, value) =
            decode_envelope(kv.value()).ok_or_else(|| BackendError::Corrupt {
                backend: BACKEND,
                location: key.to_string(),
                detail: "value was not written by Jumpgate (bad header)".to_string(),
            })?;
        Ok(Item {
            key,
            value: value.to_vec(),
            expires,
            revision: Revision(kv.mod_revision()),
        })
    }

    /// The key's item as etcd holds it, expired or not: conditional writes compare
    /// against its revision even when readers already treat it as gone.
    async fn stored(&self, key: &Key) -> Result<Option<Item>> {
        let full = self.full_key(key);
        let response = self
            .retrying(true, || {
                let mut kv = self.client.kv_client();
                let full = full.clone();
                async move { kv.get(full, None).await }
            })
            .await?;
        response.kvs().first().map(|kv| self.decode(kv)).transpose()
    }

    /// The key's live item, if any.
    async fn live(&self, key: &Key) -> Result<Option<Item>> {
        let stored = self.stored(key).await?;
        Ok(stored.filter(|item| !is_expired(item.expires, SystemTime::now())))
    }

    /// A put operation for `item`, with a new lease if it expires (returned, so the
    /// caller can revoke it if the write does not happen).
    async fn put_op(&self, item: &NewItem) -> Result<(TxnOp, Option<i64>)> {
        let mut options = PutOptions::new().with_prev_key();
        let mut lease = None;
        if let Some(expires) = item.expires {
            let id = self.lease_until(expires).await?;
            options = options.with_lease(id);
            lease = Some(id);
        }
        let op = TxnOp::put(
            self.full_key(&item.key),
            encode_envelope(item.expires, &item.value),
            Some(options),
        );
        Ok((op, lease))
    }

    fn delete_op(&self, key: &Key) -> TxnOp {
        TxnOp::delete(
            self.full_key(key),
            Some(DeleteOptions::new().with_prev_key()),
        )
    }

    /// Commits `ops` if every compare holds. Leases are one per written item: on success
    /// the leases of the values it replaced or deleted are revoked, on failure the
    /// leases granted for this attempt are, so no lease outlives its item.
    async fn commit(
        &self,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        new_leases: Vec<i64>,
    ) -> Result<Option<Revision>> {
        let txn = Txn::new().when(compares).and_then(ops);
        let response = self
            .retrying(false, || {
                let mut kv = self.client.kv_client();
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await;
        let response = match response {
            Ok(response) => response,
            Err(err) => {
                self.revoke_quietly(new_leases);
                return Err(err);
            }
        };
        if !response.succeeded() {
            self.revoke_quietly(new_leases);
            return Ok(None);
        }
        let replaced = response
            .op_responses()
            .iter()
            .flat_map(|op| match op {
                TxnOpResponse::Put(put) => {
                    put.prev_key().map(KeyValue::lease).into_iter().collect()
                }
                TxnOpResponse::Delete(delete) => {
                    delete.prev_kvs().iter().map(KeyValue::lease).collect()
                }
                _ => Vec::new(),
            })
            .filter(|lease| *lease != 0)
            .collect();
        self.revoke_quietly(replaced);
        Ok(Some(Revision(
            response.header().map(|h| h.revision()).unwrap_or_default(),
        )))
    }

    /// Revokes leases in the background; a failure only means etcd drops them at
    /// their TTL instead.
    fn revoke_quietly(&self, leases: Vec<i64>) {
        if leases.is_empty() {
            return;
        }
        let mut client = self.client.lease_client();
        tokio::spawn(async move {
            for lease in leases {
                if let Err(err) = client.revoke(lease).await {
                    tracing::debug!(lease, %err, "could not revoke a superseded etcd lease");
                }
            }
        });
    }

    /// A lease that runs out at (or, rounding up to whole seconds, just after) `expires`.
    async fn lease_until(&self, expires: SystemTime) -> Result<i64> {
        let remaining = expires
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let seconds = i64::try_from(remaining.as_secs())
            .unwrap_or(i64::MAX / 2)
            .saturating_add(i64::from(remaining.subsec_nanos() > 0))
            .max(1);
        // A grant whose answer was lost leaves a lease nobody uses, which etcd drops at
        // its TTL: harmless, so grants are retried like reads.
        let lease = self
            .retrying(true, || {
                let mut leases = self.client.lease_client();
                async move { leases.grant(seconds, None).await }
            })
            .await?;
        Ok(lease.id())
    }

    /// A compare that holds while the key is still at `revision` (`None`: absent).
    fn unchanged(&self, key: &Key, revision: Option<Revision>) -> Compare {
        match revision {
            Some(revision) => {
                Compare::mod_revision(self.full_key(key), CompareOp::Equal, revision.0)
            }
            None => Compare::version(self.full_key(key), CompareOp::Equal, 0),
        }
    }

    /// Reads the key, lets `decide` check it and return the write to make, and commits
    /// that write only if the key did not change meanwhile; retries on a lost race.
    async fn optimistic<F>(&self, key: &Key, mut decide: F) -> Result<Revision>
    where
        F: FnMut(Option<&Item>) -> Result<Option<NewItem>> + Send,
    {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let stored = self.stored(key).await?;
            let stored_revision = stored.as_ref().map(|item| item.revision);
            let live = stored.filter(|item| !is_expired(item.expires, SystemTime::now()));
            let (op, lease) = match decide(live.as_ref())? {
                Some(item) => self.put_op(&item).await?,
                None => (self.delete_op(key), None),
            };
            let compare = self.unchanged(key, stored_revision);
            let committed = self
                .commit(vec![compare], vec![op], lease.into_iter().collect())
                .await?;
            if let Some(revision) = committed {
                return Ok(revision);
            }
        }
        Err(BackendError::Unavailable {
            backend: BACKEND,
            detail: format!(
                "gave up writing {key} after {MAX_CONFLICT_RETRIES} lost races with other writers"
            ),
        })
    }

    async fn range_get(&self, range: &KeyRange, limit: Option<i64>) -> Result<Vec<KeyValue>> {
        let (start, options) = self.range_options(range);
        let mut options = GetOptions::new().with_range(options);
        if let Some(limit) = limit {
            options = options.with_limit(limit);
        }
        let mut response = self
            .retrying(true, || {
                let mut kv = self.client.kv_client();
                let (start, options) = (start.clone(), options.clone());
                async move { kv.get(start, Some(options)).await }
            })
            .await?;
        Ok(response.take_kvs())
    }

    /// The etcd start key and range end for a key range.
    fn range_options(&self, range: &KeyRange) -> (Vec<u8>, Vec<u8>) {
        match range {
            KeyRange::Prefix(prefix) => {
                let start = self.full_key(prefix);
                let end = crate::sqlite::prefix_end(&start).unwrap_or_else(|| vec![0]);
                (start, end)
            }
            KeyRange::Between { start, end } => (self.full_key(start), self.full_key(end)),
        }
    }

    /// Opens an etcd watch over the whole prefix from `start_revision` (`None`: now),
    /// and waits for etcd to confirm it. Returns the stream and the revision the watch
    /// starts after.
    async fn open_watch(
        &self,
        start_revision: Option<i64>,
    ) -> Result<(WatchStream, i64), OpenWatchError> {
        let (start, end) = self.range_options(&KeyRange::Prefix(Key::root()));
        // Progress notifications let a quiet watch advance its resume point, so a
        // reconnect after compaction does not needlessly report FellBehind.
        let mut options = WatchOptions::new().with_range(end).with_progress_notify();
        if let Some(revision) = start_revision {
            options = options.with_start_revision(revision);
        }
        let mut stream = self
            .client
            .watch_client()
            .watch(start, Some(options))
            .await
            .map_err(|err| OpenWatchError::Backend(self.error(err)))?;
        let created = stream
            .message()
            .await
            .map_err(|err| OpenWatchError::Backend(self.error(err)))?
            .ok_or_else(|| {
                OpenWatchError::Backend(BackendError::Unavailable {
                    backend: BACKEND,
                    detail: "etcd closed the watch before confirming it".to_string(),
                })
            })?;
        if created.compact_revision() > 0 {
            return Err(OpenWatchError::Compacted);
        }
        if created.canceled() {
            return Err(OpenWatchError::Backend(BackendError::Internal {
                backend: BACKEND,
                detail: format!("etcd refused the watch: {}", created.cancel_reason()),
            }));
        }
        let revision = created.header().map(|h| h.revision()).unwrap_or_default();
        Ok((stream, revision))
    }
}

enum OpenWatchError {
    Compacted,
    Backend(BackendError),
}

/// etcd rejects a transaction that touches one key twice; the other backends apply the
/// actions in order, so the last action on each key is the one that counts.
fn last_action_per_key(actions: &[Action]) -> Vec<&Action> {
    let key_of = |action: &Action| match action {
        Action::Put(item) => item.key.clone(),
        Action::Delete(key) => key.clone(),
    };
    let mut last = std::collections::HashMap::new();
    for (index, action) in actions.iter().enumerate() {
        last.insert(key_of(action), index);
    }
    actions
        .iter()
        .enumerate()
        .filter(|(index, action)| last.get(&key_of(action)) == Some(index))
        .map(|(_, action)| action)
        .collect()
}

fn encode_envelope(expires: Option<SystemTime>, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENVELOPE_HEADER_LEN + value.len());
    out.extend_from_slice(&ENVELOPE_MAGIC);
    // 0 means "never expires", so an expiry at or before the epoch is stored as 1 ms:
    // already expired, as on the other backends.
    let millis = expires.map(|at| to_unix_millis(at).max(1)).unwrap_or(0);
    out.extend_from_slice(&millis.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn decode_envelope(raw: &[u8]) -> Option<(Option<SystemTime>, &[u8])> {
    let (header, value) = raw.split_at_checked(ENVELOPE_HEADER_LEN)?;
    let (magic, millis) = header.split_at_checked(ENVELOPE_MAGIC.len())?;
    if magic != ENVELOPE_MAGIC {
        return None;
    }
    let millis = i64::from_be_bytes(millis.try_into().ok()?);
    let expires = (millis != 0).then(|| from_unix_millis(millis));
    Some((expires, value))
}

#[async_trait]
impl Backend for EtcdBackend {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    async fn get(&self, key: &Key) -> Result<Item> {
        self.live(key)
            .await?
            .ok_or_else(|| BackendError::NotFound { key: key.clone() })
    }

    async fn put(&self, item: NewItem) -> Result<Revision> {
        let (op, lease) = self.put_op(&item).await?;
        self.commit(Vec::new(), vec![op], lease.into_iter().collect())
            .await?
            .ok_or_else(|| BackendError::Internal {
                backend: BACKEND,
                detail: "etcd refused an unconditional write".to_string(),
            })
    }

    async fn create(&self, item: NewItem) -> Result<Revision> {
        let key = item.key.clone();
        self.optimistic(&key, |live| match live {
            Some(_) => Err(BackendError::AlreadyExists { key: key.clone() }),
            None => Ok(Some(item.clone())),
        })
        .await
    }

    async fn update(&self, item: NewItem) -> Result<Revision> {
        let key = item.key.clone();
        self.optimistic(&key, |live| match live {
            None => Err(BackendError::NotFound { key: key.clone() }),
            Some(_) => Ok(Some(item.clone())),
        })
        .await
    }

    async fn compare_and_swap(&self, expected: &[u8], item: NewItem) -> Result<Revision> {
        let key = item.key.clone();
        self.optimistic(&key, |live| match live {
            None => Err(BackendError::NotFound { key: key.clone() }),
            Some(current) if current.value != expected => {
                Err(BackendError::CompareFailed { key: key.clone() })
            }
            Some(_) => Ok(Some(item.clone())),
        })
        .await
    }

    async fn conditional_update(&self, expected: Revision, item: NewItem) -> Result<Revision> {
        let key = item.key.clone();
        self.optimistic(&key, |live| match live {
            None => Err(BackendError::NotFound { key: key.clone() }),
            Some(current) if current.revision != expected => {
                Err(BackendError::CompareFailed { key: key.clone() })
            }
            Some(_) => Ok(Some(item.clone())),
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.optimistic(key, |live| match live {
            None => Err(BackendError::NotFound { key: key.clone() }),
            Some(_) => Ok(None),
        })
        .await
        .map(|_| ())
    }

    async fn conditional_delete(&self, key: &Key, expected: Revision) -> Result<()> {
        self.optimistic(key, |live| match live {
            None => Err(BackendError::NotFound { key: key.clone() }),
            Some(current) if current.revision != expected => {
                Err(BackendError::CompareFailed { key: key.clone() })
            }
            Some(_) => Ok(None),
        })
        .await
        .map(|_| ())
    }

    async fn get_range(&self, range: &KeyRange, limit: Option<usize>) -> Result<Vec<Item>> {
        let wanted = limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        // Expired items that etcd has not revoked yet are skipped, so ask for a little
        // more than the limit and widen the request until enough live items came back.
        let mut request = wanted.map(|n| n.saturating_add(16));
        loop {
            let kvs = self.range_get(range, request).await?;
            let fetched = kvs.len();
            let now = SystemTime::now();
            let mut items = Vec::with_capacity(fetched);
            for kv in &kvs {
                let item = self.decode(kv)?;
                if !is_expired(item.expires, now) {
                    items.push(item);
                }
            }
            match (limit, request) {
                (Some(limit), Some(asked))
                    if items.len() < limit && i64::try_from(fetched).unwrap_or(0) >= asked =>
                {
                    request = Some(asked.saturating_mul(2));
                }
                (Some(limit), _) => {
                    items.truncate(limit);
                    return Ok(items);
                }
                (None, _) => return Ok(items),
            }
        }
    }

    async fn delete_range(&self, range: &KeyRange) -> Result<u64> {
        let (start, end) = self.range_options(range);
        let response = self
            .client
            .kv_client()
            .delete(
                start,
                Some(DeleteOptions::new().with_range(end).with_prev_key()),
            )
            .await
            .map_err(|err| self.error(err))?;
        let now = SystemTime::now();
        let mut live = 0;
        let mut leases = Vec::new();
        for kv in response.prev_kvs() {
            if kv.lease() != 0 {
                leases.push(kv.lease());
            }
            // Expired items etcd had not revoked yet were already gone for readers.
            if self
                .decode(kv)
                .is_ok_and(|item| !is_expired(item.expires, now))
            {
                live += 1;
            }
        }
        self.revoke_quietly(leases);
        Ok(live)
    }

    async fn keep_alive(&self, key: &Key, expires: SystemTime) -> Result<Revision> {
        self.optimistic(key, |live| match live {
            None => Err(BackendError::NotFound { key: key.clone() }),
            Some(current) => Ok(Some(NewItem {
                key: key.clone(),
                value: current.value.clone(),
                expires: Some(expires),
            })),
        })
        .await
    }

    async fn atomic_write(
        &self,
        conditions: Vec<Condition>,
        actions: Vec<Action>,
    ) -> Result<Revision> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            // Evaluate the conditions here (they must honour exact expiry), then commit
            // only if every key they looked at is still at the revision we saw.
            let mut compares = Vec::with_capacity(conditions.len());
            for (index, condition) in conditions.iter().enumerate() {
                let key = condition.key();
                let stored = self.stored(key).await?;
                let stored_revision = stored.as_ref().map(|item| item.revision);
                let live = stored
                    .filter(|item| !is_expired(item.expires, SystemTime::now()))
                    .map(|item| item.revision);
                if !condition.holds(live) {
                    return Err(BackendError::ConditionFailed {
                        index,
                        condition: format!("{condition:?}"),
                    });
                }
                compares.push(match stored_revision {
                    Some(revision) => {
                        Compare::mod_revision(self.full_key(key), CompareOp::Equal, revision.0)
                    }
                    None => Compare::version(self.full_key(key), CompareOp::Equal, 0),
                });
            }
            let mut ops = Vec::with_capacity(actions.len());
            let mut leases = Vec::new();
            for action in last_action_per_key(&actions) {
                ops.push(match action {
                    Action::Put(item) => {
                        let (op, lease) = self.put_op(item).await?;
                        leases.extend(lease);
                        op
                    }
                    Action::Delete(key) => self.delete_op(key),
                });
            }
            if let Some(revision) = self.commit(compares, ops, leases).await? {
                return Ok(revision);
            }
        }
        Err(BackendError::Unavailable {
            backend: BACKEND,
            detail: format!(
                "gave up on an atomic write after {MAX_CONFLICT_RETRIES} lost races with other writers"
            ),
        })
    }

    async fn watch(&self, prefixes: Vec<Key>) -> Result<Watcher> {
        let (stream, revision) = match self.open_watch(None).await {
            Ok(opened) => opened,
            Err(OpenWatchError::Backend(err)) => return Err(err),
            Err(OpenWatchError::Compacted) => {
                return Err(BackendError::Internal {
                    backend: BACKEND,
                    detail: "etcd reported a compaction for a watch from now".to_string(),
                });
            }
        };
        let (tx, rx) = mpsc::channel(self.watch_buffer.max(2));
        let overflowed = Arc::new(AtomicBool::new(false));
        // Room is guaranteed: the channel is new and holds at least two.
        let _ = tx.try_send(Ok(Event::Ready));
        let feeder = WatchFeeder {
            backend: self.clone(),
            prefixes,
            tx,
            overflowed: Arc::clone(&overflowed),
            next_revision: revision + 1,
        };
        let task = tokio::spawn(feeder.run(stream));
        Ok(Watcher::from_channel(rx, overflowed, task))
    }
}

/// Moves events from an etcd watch stream to one subscriber, reconnecting as needed.
struct WatchFeeder {
    backend: EtcdBackend,
    prefixes: Vec<Key>,
    tx: mpsc::Sender<Result<Event, WatchError>>,
    overflowed: Arc<AtomicBool>,
    /// The first revision not yet delivered: where a new watch resumes.
    next_revision: i64,
}

enum Deliver {
    Continue,
    Stop,
}

impl WatchFeeder {
    async fn run(mut self, mut stream: WatchStream) {
        loop {
            match stream.message().await {
                Ok(Some(response)) => {
                    if response.compact_revision() > 0 {
                        self.finish(Err(WatchError::FellBehind));
                        return;
                    }
                    if response.canceled() {
                        let reason =
                            format!("etcd cancelled the watch: {}", response.cancel_reason());
                        self.finish(Err(WatchError::Closed(reason)));
                        return;
                    }
                    if response.events().is_empty() && !response.created() {
                        // A progress notification: everything up to its revision was sent.
                        if let Some(header) = response.header() {
                            self.next_revision = self.next_revision.max(header.revision() + 1);
                        }
                    }
                    for event in response.events() {
                        if let Deliver::Stop = self.deliver(event) {
                            return;
                        }
                    }
                }
                Ok(None) | Err(_) => match self.reconnect().await {
                    Some(next) => stream = next,
                    None => return,
                },
            }
        }
    }

    fn deliver(&mut self, event: &etcd_client::Event) -> Deliver {
        let Some(kv) = event.kv() else {
            return Deliver::Continue;
        };
        self.next_revision = self.next_revision.max(kv.mod_revision() + 1);
        let converted = match event.event_type() {
            EventType::Put => match self.backend.decode(kv) {
                Ok(item) => Event::Put(item),
                Err(err) => {
                    tracing::warn!(%err, "skipping an etcd value Jumpgate did not write");
                    return Deliver::Continue;
                }
            },
            EventType::Delete => match self.backend.strip_key(kv.key()) {
                Ok(key) => Event::Delete {
                    key,
                    revision: Revision(kv.mod_revision()),
                },
                Err(_) => return Deliver::Continue,
            },
        };
        let wanted = match converted.key() {
            Some(key) => {
                self.prefixes.is_empty() || self.prefixes.iter().any(|p| key.starts_with(p))
            }
            None => true,
        };
        if !wanted {
            return Deliver::Continue;
        }
        match self.tx.try_send(Ok(converted)) {
            Ok(()) => Deliver::Continue,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflowed.store(true, Ordering::Release);
                Deliver::Stop
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Deliver::Stop,
        }
    }

    /// Re-opens the watch where it left off, retrying with backoff while etcd is down.
    /// `None` when the watch cannot continue (the subscriber left or history is gone).
    async fn reconnect(&mut self) -> Option<WatchStream> {
        let mut delay = Duration::from_millis(100);
        loop {
            if self.tx.is_closed() {
                return None;
            }
            match self.backend.open_watch(Some(self.next_revision)).await {
                Ok((stream, _)) => {
                    tracing::info!(revision = self.next_revision, "etcd watch resumed");
                    return Some(stream);
                }
                Err(OpenWatchError::Compacted) => {
                    self.finish(Err(WatchError::FellBehind));
                    return None;
                }
                Err(OpenWatchError::Backend(err)) if err.is_retryable() => {
                    tracing::warn!(%err, retry_in = ?delay, "etcd watch lost; retrying");
                }
                Err(OpenWatchError::Backend(err)) => {
                    // E.g. permission denied: retrying cannot help; say so instead of
                    // leaving the subscriber's cache silently stale.
                    self.finish(Err(WatchError::Closed(err.to_string())));
                    return None;
                }
            }
            tokio::time::sleep(jitter(delay)).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    fn finish(&self, outcome: Result<Event, WatchError>) {
        if self.tx.try_send(outcome).is_err() {
            // Full: the subscriber will learn it fell behind once it drains the buffer.
            self.overflowed.store(true, Ordering::Release);
        }
    }
}

/// Whether an error means etcd could not be reached or could not serve the request now.
fn is_unavailable(err: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match err {
        E::TransportError(_) | E::IoError(_) => true,
        E::GRpcStatus(status) => {
            matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ) || (status.code() == tonic::Code::Unknown
                // A broken connection arrives as "Unknown: transport error" with
                // the I/O error as its source.
                && (std::error::Error::source(status).is_some()
                    || status.message().contains("transport error")))
        }
        _ => false,
    }
}

/// Whether an error says etcd never applied the request, so that even a conditional write
/// may be sent again: the member has no leader (refused before proposing), or the
/// connection was never made.
fn never_applied(err: &etcd_client::Error) -> bool {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.contains("no leader")
        || text.contains("Connection refused")
        || text.contains("tcp connect error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_and_rejects_foreign_values() {
        let expires = from_unix_millis(1_700_000_000_123);
        let raw = encode_envelope(Some(expires), b"hello");
        assert_eq!(decode_envelope(&raw), Some((Some(expires), &b"hello"[..])));
        let raw = encode_envelope(None, b"");
        assert_eq!(decode_envelope(&raw), Some((None, &b""[..])));
        assert_eq!(decode_envelope(b"plain value from someone else"), None);
        assert_eq!(decode_envelope(b"J"), None);
    }
}
